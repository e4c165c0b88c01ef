"""Named quantization schemes: the precision contract between a model and the NPU.

A scheme fixes, at every point of a layer, the bits and the granularity (see docs/quantization.md for what the
NPU executes in each). Fields:

    weights        "int8": per-output-channel int8;  "int4": asymmetric int4 groups of 32 (Q4_1 layout).
                   A checkpoint that is already quantized (GGUF Q4_0/Q4_1/Q8_0) always runs its OWN blocks
                   exactly, whatever this field says (never re-rounded); the field then only names the class.
    linear_input   "a8-static": int8 per tensor, calibrated;  "a8-token": int16 producer output scaled per token
                   by a power of two into int8;  "a16": int16 per tensor, calibrated.
    residual_bits  16 (per-tensor static int16 residual stream) or 32 (int32 at one scale).
    softmax        "u8": uint8 probabilities 1/255 (golden.softmax.softmax);  "q15": int16 Q0.15 (softmax_q15).
    kv_bits        K (after RoPE) and V cache width, per-tensor static: 8 or 16.
    headroom       calibration maximum x headroom = full scale, for the static 16-bit points (8-bit: 1.0).
    swiglu_token   Llama only: the down-projection input is the exact SwiGLU product silu(gate) * up (31 bit),
                   scaled per token by a power of two into the linear-input width (int16, or int8 in a8 schemes):
                   no static scale at the point with the worst outliers.

Norm / activation / attention-context outputs are int8 in "a8-static" schemes and int16 otherwise; q is int8 in the
a8 schemes (q.k^T on the int8 x int8 MAC) and int16 in a16 schemes; scores are int32 at 2^-16 in all.
"""

from __future__ import annotations

from dataclasses import dataclass

LINEAR_INPUTS = ("a8-static", "a8-token", "a16")


@dataclass(frozen=True)
class Scheme:
    name: str
    weights: str
    linear_input: str
    residual_bits: int
    softmax: str
    kv_bits: int
    headroom: float
    summary: str
    swiglu_token: bool = False

    @property
    def act_bits(self) -> int:
        """Width of norm / activation / context outputs (the vector unit's results)."""
        return 8 if self.linear_input == "a8-static" else 16

    @property
    def q_bits(self) -> int:
        return 16 if self.linear_input == "a16" else 8

    @property
    def token_bits(self) -> int | None:
        return 8 if self.linear_input == "a8-token" else None

    @property
    def weight_bits(self) -> int:
        return 8 if self.weights == "int8" else 4

    @property
    def activation_bits(self) -> int:
        return 16 if self.linear_input == "a16" else 8


SCHEMES = {s.name: s for s in (
    Scheme("w8a8-static", "int8", "a8-static", 16, "u8", 8, 1.0,
           "the pre-#12 design: every activation int8 per tensor, int16 residual, uint8 softmax"),
    Scheme("w8a8", "int8", "a8-token", 32, "u8", 8, 2.0,
           "int8 weights; int8 per-token linear inputs; int16 norm/activation outputs; int32 residual"),
    Scheme("w4a8", "int4", "a8-token", 32, "u8", 8, 2.0,
           "w8a8 with int4 weights (the checkpoint's own 4-bit blocks when it has them)"),
    Scheme("w8a16", "int8", "a16", 32, "q15", 8, 2.0,
           "int8 weights; int16 activations per tensor; int32 residual; Q0.15 softmax; int8 KV cache"),
    Scheme("w4a16", "int4", "a16", 32, "q15", 8, 2.0,
           "w8a16 with int4 weights (checkpoint's own blocks); int8 KV cache"),
    Scheme("w4a16-kv16", "int4", "a16", 32, "q15", 16, 2.0,
           "w4a16 with an int16 KV cache (q.k^T and p.v as two w8a16 passes each)"),
    Scheme("w8a16-kv16", "int8", "a16", 32, "q15", 16, 2.0,
           "w8a16 with an int16 KV cache"),
    Scheme("w8a8-pt", "int8", "a8-token", 32, "u8", 8, 2.0,
           "w8a8 with the SwiGLU product scaled per token into int8 (Llama; BERT: as w8a8)", True),
    Scheme("w4a16-kv16-pt", "int4", "a16", 32, "q15", 16, 2.0,
           "w4a16-kv16 with the SwiGLU product scaled per token into int16 (Llama; BERT: as w4a16-kv16)", True),
    Scheme("w4a16-pt", "int4", "a16", 32, "q15", 8, 2.0,
           "w4a16 (int8 KV cache) with the SwiGLU product scaled per token into int16 (Llama; BERT: as w4a16)", True),
    Scheme("w8a16-pt", "int8", "a16", 32, "q15", 8, 2.0,
           "w8a16 (int8 KV cache) with the SwiGLU product scaled per token into int16 (Llama; BERT: as w8a16)", True),
)}

#: The best scheme found per model (by measurement, see `make accuracy`); the commands' default.
BEST = {"bert": "w8a16-kv16", "llama": "w4a16-kv16-pt"}


def static_scale(peak: float, bits: int, headroom: float) -> float:
    """Per-tensor scale of a static point: calibration max |x| (x headroom for 16-bit points) / (2^(bits-1) - 1)."""
    return max(peak, 1e-6) * (headroom if bits == 16 else 1.0) / ((1 << (bits - 1)) - 1)


def get_scheme(name: str, family: str) -> Scheme:
    """A scheme by name ("best" = the model family's best); ValueError naming the allowed names."""
    if name == "best":
        name = BEST[family]
    if name not in SCHEMES:
        raise ValueError(f"scheme must be one of best, {', '.join(SCHEMES)} (or 'list'), got {name!r}")
    return SCHEMES[name]


def describe(s: Scheme) -> str:
    """One line for ``--scheme list``: name, weight and activation bits, the rest of the contract."""
    return (f"{s.name:<14} W{s.weight_bits}A{s.activation_bits:<3} linear-in {s.linear_input}, residual "
            f"int{s.residual_bits}, softmax {s.softmax}, KV int{s.kv_bits}: {s.summary}")
