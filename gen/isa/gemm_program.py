"""One GEMM as a whole NPU program with its memory image: :func:`compile_gemm` (plan, lowering, operands, requant
records, poisoned output, DMA windows) and its result :class:`CompiledGemm`, for the GEMM tests, benchmarks and
``npuforge run gemm``. The tiling and lowering themselves are :mod:`npuforge.gen.isa.compiler`'s."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from npuforge.gen.config.npu import NPUConfig
from npuforge.gen.isa.compiler import POISON_BYTE, GemmPlan, lower_gemm, plan_gemm
from npuforge.gen.isa.isasim import SimResult
from npuforge.gen.isa.layout import Window, pack_a_tile, pack_block_weight, pack_requant_params
from npuforge.golden.gemm import MODES, gemm
from npuforge.golden.models.intops import exact_matmul, requant_wide
from npuforge.golden.quant import pack_int4
from npuforge.golden.requant import requantize, requantize_biased
from npuforge.spec.block_scale import BLOCK
from npuforge.spec.isa import encode_program

__all__ = ["CompiledGemm", "compile_gemm"]


@dataclass
class CompiledGemm:
    """A compiled GEMM: the program, the memory image with the program and operands, the windows the host
    programs, and the golden result ``expected`` (int8/int16 [M, N])."""
    plan: GemmPlan
    program: list
    image: np.ndarray
    windows: list
    expected: np.ndarray

    @property
    def program_bytes(self) -> bytes:
        return encode_program(self.program)

    def read_output(self, memory: np.ndarray) -> np.ndarray:
        """C [M, N] from a final memory image."""
        p = self.plan
        raw = np.asarray(memory, dtype=np.uint8)[p.c_base:p.c_base + p.m * p.c_row_bytes]
        dtype = {8: np.int8, 16: np.dtype("<i2"), 32: np.dtype("<i4")}[p.out_bits]
        return raw.view(dtype).reshape(p.m, p.n).copy()

    def check(self, result: SimResult) -> int:
        """Number of output elements that differ from ``expected`` (all of them when the run failed)."""
        if not result.ok:
            return int(self.expected.size)
        return int(np.count_nonzero(self.read_output(result.memory) != self.expected))


def compile_gemm(cfg: NPUConfig, a, b, multiplier, shift, *, mode: str = "int8", zero_point: int = 0,
                 out_bits: int = 8, dataflow: str | None = None, tiles: tuple[int, int, int] | None = None,
                 order: str | None = None, bias=None, b_trans: bool = False, blocks=None) -> CompiledGemm:
    """Compile ``C = requantize(gemm(a, b) (+ bias), multiplier, shift, zero_point, out_bits)`` for this NPU.

    ``blocks=(d, o)``: block-scaled B (module docstring): ``b`` is the codes s [K, N] (signed int4 for w4a16, int8
    for w8a16) and ``d``, ``o`` int16 [K / 32, N] the block multipliers, so B = D s + O; the golden result is
    ``golden.models.intops.requant_wide(A @ B (+ bias))`` (zero_point must be 0: the golden wide requant has none).

    ``a`` int [M, K] and ``b`` int [K, N] within the mode's bit widths, ``multiplier``/``shift`` per output
    channel [N] (from ``golden.requant.quantize_multiplier``), ``bias`` None or int32 [N] in accumulator units
    (``golden.layers.QuantLinear.bias``; added in 33 bits, ``golden.requant.requantize_biased``). The golden model
    computes ``expected`` and validates every operand (``ValueError`` names the bad one). ``b_trans``: ``b`` is
    B^T int8 [N, K] (e.g. the K matrix for scores = Q @ K^T) and stays [N, K] row-major in memory.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if blocks is not None:
        return _compile_block_gemm(cfg, a, b, blocks, multiplier, shift, mode=mode, zero_point=zero_point,
                                   out_bits=out_bits, dataflow=dataflow, tiles=tiles, order=order, bias=bias)
    a_bits, b_bits = MODES[mode]
    if b_trans and np.ndim(b) != 2:
        raise ValueError(f"b must be 2-D (B^T [N, K] with b_trans), got shape {np.shape(b)}")
    acc = gemm(a, np.asarray(b).T if b_trans else b, a_bits=a_bits, b_bits=b_bits)
    if acc.ndim != 2:
        raise ValueError(f"a and b must be 2-D (a [M, K], b [K, N]), got a {np.shape(a)} and b {np.shape(b)}")
    mult = np.asarray(multiplier)
    sh = np.asarray(shift)
    if mult.ndim != 1 or sh.ndim != 1:
        raise ValueError(f"multiplier and shift must be per-channel vectors [N={acc.shape[1]}], got shapes "
                         f"{mult.shape} and {sh.shape}")
    if bias is None:
        expected = requantize(acc, mult, sh, zero_point=zero_point, out_bits=out_bits)
    else:
        expected = requantize_biased(acc, bias, mult, sh, zero_point=zero_point, out_bits=out_bits)
    m, k = np.shape(a)
    n = np.shape(b)[0 if b_trans else 1]
    plan = plan_gemm(cfg, int(m), int(k), int(n), mode=mode, dataflow=dataflow, out_bits=out_bits, tiles=tiles,
                     order=order, bias=bias is not None, b_trans=b_trans)
    program = lower_gemm(plan, zero_point=zero_point)

    image = np.zeros(plan.image_bytes, dtype=np.uint8)
    prog = np.frombuffer(encode_program(program), dtype=np.uint8)
    image[:prog.size] = prog
    a_arr = np.asarray(a).astype(np.int64)
    b_arr = np.asarray(b).astype(np.int64)
    # int4 A: row pairs packed (pack_int4 along M), the PE array's activation byte; B: pack_int4 along N.
    # int16 A (w8a16, w4a16): little-endian 16-bit words, 2k bytes a row (gen.isa.layout.a_tile_shape).
    a_raw = pack_a_tile(a_arr, a_bits)
    b_raw = pack_int4(b_arr) if b_bits == 4 else b_arr.astype(np.int8).view(np.uint8)
    image[plan.a_base:plan.a_base + a_raw.size] = a_raw.ravel()
    image[plan.b_base:plan.b_base + b_raw.size] = b_raw.ravel()
    return _finish_image(cfg, plan, program, image, mult, sh, bias, expected)


def _finish_image(cfg, plan, program, image, mult, sh, bias, expected) -> CompiledGemm:
    """The requant records, the bias, the poisoned C and the windows of a compiled GEMM's image."""
    params = pack_requant_params(mult, sh)
    image[plan.p_base:plan.p_base + params.size] = params
    if bias is not None:
        raw = np.asarray(bias, dtype=np.int64).astype("<i4").view(np.uint8)
        image[plan.bias_base:plan.bias_base + raw.size] = raw
    c_size = plan.m * plan.c_row_bytes
    image[plan.c_base:plan.c_base + c_size] = POISON_BYTE

    if cfg.windows >= 2:
        windows = [Window(plan.a_base, plan.c_base - plan.a_base, read=True, write=False),
                   Window(plan.c_base, c_size, read=False, write=True)]
    else:
        windows = [Window(plan.a_base, plan.c_base + c_size - plan.a_base, read=True, write=True)]
    return CompiledGemm(plan=plan, program=program, image=image, windows=windows, expected=expected)


def _compile_block_gemm(cfg: NPUConfig, a, s, blocks, multiplier, shift, *, mode: str, zero_point: int,
                        out_bits: int, dataflow, tiles, order, bias) -> CompiledGemm:
    """compile_gemm of a block-scaled B (codes ``s`` [K, N], ``blocks = (d, o)`` [K / 32, N])."""
    if zero_point:
        raise ValueError(f"a block-scaled GEMM's golden requant (requant_wide) has no zero point; got {zero_point}")
    a_bits, b_bits = MODES[mode]
    a_arr, s_arr = np.asarray(a).astype(np.int64), np.asarray(s).astype(np.int64)
    if a_arr.ndim != 2 or s_arr.ndim != 2 or a_arr.shape[1] != s_arr.shape[0]:
        raise ValueError(f"a [M, K] and the codes [K, N] must chain, got {a_arr.shape} and {s_arr.shape}")
    if a_arr.size and (a_arr.min() < -(1 << 15) or a_arr.max() >= 1 << 15):
        raise ValueError(f"a must be int16 [-32768, 32767], got {int(a_arr.min() if a_arr.min() < 0 else a_arr.max())}")
    d, o = (np.asarray(v).astype(np.int64) for v in blocks)
    img = pack_block_weight(s_arr.T, d.T, o.T, bits=b_bits)      # validates codes, d, o and their shapes
    w = np.repeat(d, BLOCK, axis=0) * s_arr + np.repeat(o, BLOCK, axis=0)
    acc = exact_matmul(a_arr, w)
    if bias is not None and np.abs(np.asarray(bias, dtype=np.int64)).max(initial=0) >= 1 << 31:
        raise ValueError(f"bias must fit int32 in accumulator units (VEC_REQUANT.bias), got "
                         f"{int(np.abs(np.asarray(bias, dtype=np.int64)).max())}")
    mult, sh = np.asarray(multiplier), np.asarray(shift)
    expected = requant_wide(acc if bias is None else acc + np.asarray(bias, dtype=np.int64), mult, sh,
                            out_bits=out_bits)
    m, k = a_arr.shape
    n = s_arr.shape[1]
    bound = (1 << 15) * int(np.abs(w).sum(axis=0).max(initial=0))
    plan = plan_gemm(cfg, m, k, n, mode=mode, dataflow=dataflow, out_bits=out_bits, tiles=tiles, order=order,
                     bias=bias is not None, blocks=True, acc_bound=bound)
    program = lower_gemm(plan)
    image = np.zeros(plan.image_bytes, dtype=np.uint8)
    prog = np.frombuffer(encode_program(program), dtype=np.uint8)
    image[:prog.size] = prog
    a_raw = pack_a_tile(a_arr, a_bits)
    image[plan.a_base:plan.a_base + a_raw.size] = a_raw.ravel()
    image[plan.b_base:plan.b_base + img.codes.size] = img.codes.ravel()
    image[plan.s_base:plan.s_base + img.records.size] = img.records.ravel()
    return _finish_image(cfg, plan, program, image, mult, sh, bias, expected)
