"""Registry of the NPU's vector operators: each ``spec.vector_ops`` descriptor with its golden function, its
parameter-block packer and its cycle cost.

One :class:`VectorOperator` per operator, in :data:`OPERATORS` (opcode order), used by

* the ISA simulator (``gen.isa.isasim``): :meth:`VectorOperator.execute` runs the golden operator on the rows and
  the decoded parameter block;
* the performance model (``gen.perf.program.vec_cycles``): :meth:`VectorOperator.cycles`;
* the compiler and the testbenches (``sim.harness.npu_vec_jobs``): :meth:`VectorOperator.block` packs golden
  parameters into the block the instruction reads, :meth:`VectorOperator.golden` is the expected output (tier 1,
  from the operands, never from a simulator).

Adding an operator: its descriptor in ``spec.vector_ops``, its RTL, and one entry here.

Cycle costs (the occupancy of the controller's vector sequencer, fitted on the RTL) live in
:mod:`gen.isa.op_cycles`.

The ``-pt`` forms have no parameter block: ``vec.gate`` flags 5 (the exact int32 product; golden parameters None)
and ``vec.rmsnorm`` flags 7 (the token scale only; parameters None; :meth:`VectorOperator.execute` and
:meth:`VectorOperator.golden` return the int16 rows and the k_r vector, ``golden.models.intops.token_shift``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from npuforge.gen.config.npu import NPUConfig
from npuforge.gen.isa.layout import pack_records, pack_requant_params, read_records
from npuforge.gen.isa.op_cycles import (NORM_TAIL, ROPE16_TAIL, ROPE_TAIL, SOFTMAX_BASE, VEC_BASE, VEC_HDR_BASE,
                                        cycles_act, cycles_norm, cycles_record, cycles_rope, cycles_softmax)
from npuforge.golden.activations import lookup
from npuforge.golden.elementwise import GateParams, ResidualParams, gate_mul, residual_add, rope
from npuforge.golden.models.intops import interp_lookup, norm_wide, residual_add_wide, token_shift
from npuforge.golden.norms import LayerNormParams, RMSNormParams, layernorm, rmsnorm
from npuforge.golden.softmax import SoftmaxParams, softmax, softmax_q15
from npuforge.spec.isa import VecOp
from npuforge.spec.vector_ops import (EPS_TERM_MAX, NORM_HEADER, RESIDUAL_RECORD, ROPE_ENTRY, ROPE_HEADER,
                                      ACT_INTERP, INTERP_ENTRIES, EPS_ENTRY, NORM_EPS_SHIFTS, NORM_OUT16, NORM_WIDE, NORM_WIDE_IN_BITS,
                                      RESIDUAL_WIDE, SOFTMAX_CAUSAL, SOFTMAX_PAD, SOFTMAX_RECORD, TABLE_ENTRIES,
                                      VECTOR_OPS, VectorOp, by_name, gate_format, norm_item, residual_format, rope_format,
                                      rope_heads, rope_positions, softmax_format, GATE_OUT32, NORM_TOKEN, NORM_TOKEN_BITS,
                                      norm_token)

__all__ = ["VectorOperator", "OPERATORS", "operator", "SoftmaxBlock", "pack_softmax_params", "WideResidualParams", "pack_residual_params", "read_residual_params",
           "pack_norm_params", "read_norm_header", "pack_rope_params", "read_rope_header",
           "VEC_BASE", "SOFTMAX_BASE", "VEC_HDR_BASE", "NORM_TAIL", "ROPE_TAIL", "ROPE16_TAIL"]


# -- parameter blocks -------------------------------------------------------------------------------------------
def pack_residual_params(a_multiplier: int, b_multiplier: int) -> np.ndarray:
    """The vec.residual record: uint8 [8], one little-endian 64-bit word with ``a_multiplier`` in bits [0, 31)
    and ``b_multiplier`` in bits [31, 62) (``golden.elementwise.ResidualParams``); bits [62, 64) are 0."""
    for name, v in (("a_multiplier", a_multiplier), ("b_multiplier", b_multiplier)):
        f = RESIDUAL_RECORD.field(name)
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not f.lo <= int(v) <= f.hi:
            raise ValueError(f"{name} must be an integer in [{f.lo}, {f.hi}], got {v!r}")
    word = RESIDUAL_RECORD.pack(a_multiplier=int(a_multiplier), b_multiplier=int(b_multiplier))
    return np.frombuffer(word, dtype=np.uint8).copy()


def read_residual_params(raw: np.ndarray) -> tuple[int, int]:
    """Inverse of :func:`pack_residual_params` (bits [62, 64) ignored, as the hardware does)."""
    rec = RESIDUAL_RECORD.unpack(bytes(np.asarray(raw, dtype=np.uint8)[:RESIDUAL_RECORD.nbytes]))
    return rec["a_multiplier"], rec["b_multiplier"]


@dataclass(frozen=True)
class SoftmaxBlock:
    """What a vec.softmax parameter block holds: golden ``SoftmaxParams`` and the padding mask's ``valid_len``
    (columns j >= valid_len masked when the instruction sets the padding flag; 0: no padding block)."""
    params: SoftmaxParams
    valid_len: int = 0


def _softmax_block(params) -> SoftmaxBlock:
    if isinstance(params, SoftmaxParams):
        return SoftmaxBlock(params)
    if isinstance(params, SoftmaxBlock) and isinstance(params.params, SoftmaxParams):
        return params
    raise ValueError(f"vec.softmax needs golden.softmax.SoftmaxParams or a SoftmaxBlock, got {type(params).__name__}")


def pack_softmax_params(params) -> np.ndarray:
    """The vec.softmax record (``spec.vector_ops.SOFTMAX_RECORD``), uint8 [8]: exp multiplier bits [30:0], exp shift
    bits [37:31] (the requant format), valid_len bits [63:48] (read only with the padding flag); ``params`` a
    ``SoftmaxParams`` (valid_len 0) or a :class:`SoftmaxBlock`."""
    blk = _softmax_block(params)
    word = SOFTMAX_RECORD.pack(multiplier=blk.params.exp_multiplier, shift=blk.params.exp_shift,
                               valid_len=blk.valid_len)
    return np.frombuffer(word, dtype=np.uint8).copy()


def _softmax_run(x, params: SoftmaxParams, flags: int, imm: int, valid_len: int) -> np.ndarray:
    """The golden softmax an instruction's ``flags`` select: score width, uint8 or Q0.15 output, causal (row offset
    ``imm``) and padding masks."""
    score_bits, out_bits = softmax_format(flags)
    x = np.asarray(x)
    params = SoftmaxParams(input_bits=score_bits, exp_multiplier=params.exp_multiplier, exp_shift=params.exp_shift)
    mask = np.arange(x.shape[-1]) >= valid_len if flags & SOFTMAX_PAD else None
    fn = softmax_q15 if out_bits == 16 else softmax
    return fn(x, params, causal=bool(flags & SOFTMAX_CAUSAL), row_offset=imm, mask=mask)


@dataclass(frozen=True)
class WideResidualParams:
    """The residual stream's add (``golden.models.intops.residual_add_wide``): src brought to the residual scale by
    ``requant_wide(src, multiplier, shift)`` (``golden.models.intops.IDENTITY_REQUANT`` when the scales are equal);
    the instruction's imm is the total shift 31 + shift and its flags give the widths."""
    multiplier: int
    shift: int


def _residual_pack(params) -> np.ndarray:
    if isinstance(params, WideResidualParams):
        return pack_residual_params(params.multiplier, 0)
    if isinstance(params, ResidualParams):
        return pack_residual_params(params.a_multiplier, params.b_multiplier)
    raise ValueError(f"vec.residual needs golden.elementwise.ResidualParams or WideResidualParams, got "
                     f"{type(params).__name__}")


def _int_vector(name: str, values, bits: int, n: int | None = None) -> np.ndarray:
    v = np.asarray(values)
    if v.dtype.kind not in "iu" or v.ndim != 1 or (n is not None and v.size != n):
        raise ValueError(f"{name} must be a 1-D integer vector{'' if n is None else f' of length {n}'}, got "
                         f"{v.dtype} {v.shape}")
    v = v.astype(np.int64)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if v.size and (v.min() < lo or v.max() > hi):
        raise ValueError(f"{name} must be in [{lo}, {hi}] (signed {bits} bit), got "
                         f"{int(v.min() if v.min() < lo else v.max())}")
    return v


def pack_norm_params(params, eps_table=None) -> np.ndarray:
    """The vec.layernorm / vec.rmsnorm parameter block of ``golden.norms`` parameters -> uint8: int8 rows
    (``params.input_bits`` 8), or with ``eps_table`` (``golden.models.intops.wide_norm_params``, input_bits 16) the
    int32 rows of ``golden.models.intops.norm_wide``; int8 or int16 outputs (``params.out_bits``).

    Header (16 bytes, ``spec.vector_ops.NORM_HEADER``): bytes [0, 8) little-endian eps_term (bits [0, 61); bits
    [61, 64) 0, ignored; wide: 0, the table holds the eps terms), byte 8 var_frac_bits, byte 9 gamma_shift (int8),
    bytes [10, 16) 0 (ignored). Wide: the 18 eps terms, 8 bytes each (``EPS_ENTRY``), at 16. Then channel c
    (``spec.vector_ops.norm_item``): int8 output at ``16 + 8 c`` (LayerNorm: G int16 at bytes [0, 2), B int48 at
    [2, 8), little-endian) or ``16 + 2 c`` (RMSNorm: G int16); int16 output 16 bytes (G int24, B int56) / 4 bytes
    (G int24) per channel.
    """
    if not isinstance(params, (LayerNormParams, RMSNormParams)):
        raise ValueError(f"params must be a LayerNormParams or RMSNormParams, got {type(params).__name__}")
    wide = eps_table is not None
    if params.input_bits != (NORM_WIDE_IN_BITS if wide else 8) or params.out_bits not in (8, 16):
        raise ValueError(f"the NPU's norms take int8 rows (input_bits 8) or, with an eps table, int32 rows "
                         f"(input_bits {NORM_WIDE_IN_BITS}), and int8 / int16 outputs: got input_bits "
                         f"{params.input_bits}{' with' if wide else ' without'} an eps table, out_bits "
                         f"{params.out_bits}")
    if wide:
        eps_table = np.asarray(eps_table)
        if eps_table.shape != (NORM_EPS_SHIFTS,) or eps_table.min() < 0 or eps_table.max() > EPS_TERM_MAX:
            raise ValueError(f"eps_table must hold {NORM_EPS_SHIFTS} eps terms in [0, 2^61 - 1], got "
                             f"{eps_table.shape} {eps_table.min() if eps_table.size else ''}..")
    if not 0 <= params.eps_term <= EPS_TERM_MAX:
        raise ValueError(f"eps_term must be in [0, 2^61 - 1], got {params.eps_term}")
    for name in ("var_frac_bits", "gamma_shift"):
        f = NORM_HEADER.field(name)
        if not f.lo <= getattr(params, name) <= f.hi:
            what = "int8" if f.signed else "one byte"
            raise ValueError(f"{name} must fit {what} [{f.lo}, {f.hi}], got {getattr(params, name)}")
    kind = "layernorm" if isinstance(params, LayerNormParams) else "rmsnorm"
    channel = norm_item(kind, params.out_bits)
    head = np.frombuffer(NORM_HEADER.pack(eps_term=0 if wide else int(params.eps_term),
                                          var_frac_bits=int(params.var_frac_bits),
                                          gamma_shift=int(params.gamma_shift)), dtype=np.uint8)
    cols = {"gamma": _int_vector("gamma_q", params.gamma_q, channel.field("gamma").width, params.dim)}
    if kind == "layernorm":
        cols["beta"] = _int_vector("beta_q", params.beta_q, channel.field("beta").width, params.dim)
    if channel.nbytes <= 8:
        items = pack_records(channel, **cols)
    else:
        items = np.frombuffer(channel.pack_many({k: int(v[c]) for k, v in cols.items()} for c in range(params.dim)),
                              dtype=np.uint8)
    parts = [head]
    if wide:
        parts.append(np.frombuffer(EPS_ENTRY.pack_many({"eps_term": int(e)} for e in eps_table), dtype=np.uint8))
    return np.concatenate(parts + [items])


def read_norm_header(raw: np.ndarray) -> tuple[int, int, int]:
    """(eps_term, var_frac_bits, gamma_shift) of a norm header (bits the hardware ignores ignored)."""
    head = NORM_HEADER.unpack(bytes(np.asarray(raw, dtype=np.uint8)[:NORM_HEADER.nbytes]))
    return head["eps_term"], head["var_frac_bits"], head["gamma_shift"]


def pack_rope_params(cos: np.ndarray, sin: np.ndarray, frac_bits: int = 14) -> np.ndarray:
    """The vec.rope parameter block of int16 tables [P, head_dim / 2] (``golden.elementwise.rope_table``) -> uint8.

    Header (16 bytes, ``spec.vector_ops.ROPE_HEADER``): bytes [0, 4) the table's positions P (uint32), byte 4
    frac_bits, bytes [5, 16) 0 (ignored). Then entry (p, i) at ``16 + 4 (p * head_dim / 2 + i)``: cos int16, sin
    int16 (little-endian).
    """
    for name, t in (("cos", cos), ("sin", sin)):
        if not isinstance(t, np.ndarray) or t.dtype != np.int16 or t.ndim != 2:
            raise ValueError(f"{name} must be an int16 table [P, head_dim / 2], got "
                             f"{getattr(t, 'dtype', type(t).__name__)} {getattr(t, 'shape', '')}")
    if cos.shape != sin.shape:
        raise ValueError(f"cos and sin must have the same shape, got {cos.shape} and {sin.shape}")
    f = ROPE_HEADER.field("frac_bits")
    if not f.lo <= frac_bits <= f.hi:
        raise ValueError(f"frac_bits must fit one byte [{f.lo}, {f.hi}], got {frac_bits}")
    head = np.frombuffer(ROPE_HEADER.pack(positions=int(cos.shape[0]), frac_bits=int(frac_bits)), dtype=np.uint8)
    return np.concatenate([head, pack_records(ROPE_ENTRY, cos=cos, sin=sin)])


def read_rope_header(raw: np.ndarray) -> tuple[int, int]:
    """(table positions, frac_bits) of a RoPE header."""
    head = ROPE_HEADER.unpack(bytes(np.asarray(raw, dtype=np.uint8)[:ROPE_HEADER.nbytes]))
    return head["positions"], head["frac_bits"]


def _act_block(table) -> np.ndarray:
    """An int8 table [256] (``golden.activations``), or a 16-bit interpolated table [1025] of int16 values
    (``golden.models.intops.interp_table``; vec.act flags bit 1) as little-endian int16."""
    table = np.asarray(table)
    if table.shape == (INTERP_ENTRIES,) and table.dtype.kind == "i":
        if table.min() < -(1 << 15) or table.max() >= 1 << 15:
            raise ValueError(f"a 16-bit act table must hold int16 values, got {int(np.abs(table).max())}")
        return table.astype("<i2").view(np.uint8).copy()
    if table.shape != (TABLE_ENTRIES,) or table.dtype != np.int8:
        raise ValueError(f"an act table must be int8 of shape ({TABLE_ENTRIES},) or int16 values of shape "
                         f"({INTERP_ENTRIES},), got {table.dtype} {table.shape}")
    return table.view(np.uint8).copy()


# -- execution on decoded blocks (the ISA simulator) --------------------------------------------------------------
# Each takes the instruction, the rows x [m, n] (and x2; int8, softmax scores int8 / int16 / int32 by its flags),
# the decoded record / header (a dict of its fields, spec.vector_ops) and the bytes of the block's items (the
# table, the channels, the table rows read).
def _exec_softmax(instr, x, x2, rec, items):
    # uint8 probabilities (units of 1/255) or Q0.15 int16, by flags.
    params = SoftmaxParams(input_bits=32, exp_multiplier=rec["multiplier"], exp_shift=rec["shift"])
    return _softmax_run(x, params, instr.flags, instr.imm, rec["valid_len"])


def _exec_norm(kind):
    def run(instr, x, x2, head, items):
        if norm_token(instr):                   # token scale only: (int16 rows, k_r)
            y, k = token_shift(x, NORM_TOKEN_BITS)
            return y, k.ravel()
        spec = by_name(kind)
        start, item = spec.items_at(instr)
        wide = bool(instr.flags & NORM_WIDE)
        eps = None
        if wide:
            eps = np.array([r["eps_term"] for r in EPS_ENTRY.unpack_many(
                bytes(items[:NORM_EPS_SHIFTS * EPS_ENTRY.nbytes]))], dtype=np.int64)
        ch_raw = bytes(items[start - spec.header_bytes:])
        ch = {f.name: [r[f.name] for r in item.unpack_many(ch_raw)] for f in item.fields}
        common = dict(dim=instr.n, input_bits=NORM_WIDE_IN_BITS if wide else 8, var_frac_bits=head["var_frac_bits"],
                      eps_term=int(eps[0]) if wide else head["eps_term"], gamma_q=tuple(int(v) for v in ch["gamma"]),
                      gamma_shift=head["gamma_shift"], out_bits=16 if instr.flags & NORM_OUT16 else 8)
        if kind == "layernorm":
            params = LayerNormParams(**common, beta_q=tuple(int(v) for v in ch["beta"]))
        else:
            params = RMSNormParams(**common)
        if wide:
            return norm_wide(x, params, eps)
        return layernorm(x, params) if kind == "layernorm" else rmsnorm(x, params)
    return run


def _exec_act(instr, x, x2, rec, items):
    if instr.flags & ACT_INTERP:
        return interp_lookup(x, np.ascontiguousarray(items).view("<i2").astype(np.int64))
    return lookup(x, items.view(np.int8).copy())


def _golden_act(a, b, table, flags, imm):
    if flags & ACT_INTERP:
        return interp_lookup(a, np.asarray(table))
    return lookup(a, np.asarray(table))


def _exec_residual(instr, x, x2, rec, items):
    if instr.flags & RESIDUAL_WIDE:
        return residual_add_wide(x, x2, rec["a_multiplier"], instr.imm - 31, out_bits=residual_format(instr.flags)[2])
    return residual_add(x, x2, ResidualParams(a_multiplier=rec["a_multiplier"], b_multiplier=rec["b_multiplier"],
                                              shift=instr.imm))


def _golden_residual(a, b, params, flags, imm):
    if flags & RESIDUAL_WIDE:
        if not isinstance(params, WideResidualParams):
            raise ValueError(f"the wide vec.residual needs WideResidualParams, got {type(params).__name__}")
        return residual_add_wide(a, b, params.multiplier, params.shift, out_bits=residual_format(flags)[2])
    return residual_add(a, b, params)


def _gate_product(a, b) -> np.ndarray:
    """vec.gate flags 5: the exact int32 product of int16 operands (|a b| <= 2^30; the -pt schemes' SwiGLU product,
    ``a.astype(int64) * up`` in ``golden.models.llama.int_forward``)."""
    return (np.asarray(a, dtype=np.int64) * np.asarray(b, dtype=np.int64)).astype(np.int32)


def _exec_gate(instr, x, x2, rec, items):
    if instr.flags & GATE_OUT32:
        return _gate_product(x, x2)
    return gate_mul(x, x2, GateParams(multiplier=rec["multiplier"], shift=rec["shift"],
                                      out_bits=gate_format(instr.flags)[1]))


def _golden_gate(a, b, params, flags, imm):
    """``golden.elementwise.gate_mul``; the instruction's result width (flags bit 1) must be ``params.out_bits``;
    flags 5: the exact product (params None)."""
    if flags & GATE_OUT32:
        if params is not None:
            raise ValueError(f"vec.gate's exact int32 product takes no parameters, got {type(params).__name__}")
        return _gate_product(a, b)
    if not isinstance(params, GateParams):
        raise ValueError(f"vec.gate needs golden.elementwise.GateParams, got {type(params).__name__}")
    if params.out_bits != gate_format(flags)[1]:
        raise ValueError(f"vec.gate flags 0x{flags:x} give int{gate_format(flags)[1]} results, the GateParams "
                         f"out_bits {params.out_bits}")
    return gate_mul(a, b, params)


def _exec_rope(instr, x, x2, head, items):
    entries = read_records(ROPE_ENTRY, items)
    shape = (rope_positions(instr), instr.n // 2)
    cos, sin = (entries[k].reshape(shape).astype(np.int16) for k in ("cos", "sin"))
    return rope(x, np.arange(instr.m) // rope_heads(instr.flags), cos, sin, frac_bits=head["frac_bits"],
                out_bits=rope_format(instr.flags)[1])


# -- golden outputs from golden parameters (tier 1) --------------------------------------------------------------
def _golden_softmax(a, b, params, flags, imm):
    blk = _softmax_block(params)
    return _softmax_run(a, blk.params, flags, imm, blk.valid_len)


def _golden_rope(a, b, params, flags, imm):
    """``params`` = (cos, sin) of ``golden.elementwise.rope_table`` (Q1.14), or (cos, sin, frac_bits)."""
    cos, sin, *frac = params
    return rope(a, imm + np.arange(a.shape[0]) // rope_heads(flags), cos, sin, out_bits=rope_format(flags)[1],
                **({"frac_bits": frac[0]} if frac else {}))


# -- the registry ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VectorOperator:
    """A vector operator: its ``spec.vector_ops`` descriptor and the gen-side functions.

    ``pack(params)``: golden parameters -> the uint8 parameter block; ``run(instr, x, x2, record, items)``: the
    golden operator on decoded parameters (the ISA simulator); ``reference(a, b, params, flags, imm)``: the golden
    output from golden parameters; ``cost(spec, instr, word_bytes, lanes)``: sequencer cycles; ``imm_of(params)``:
    the ``imm`` an instruction carries for these parameters (residual: the shift), else 0.
    """
    spec: VectorOp
    pack: Callable = field(repr=False)
    run: Callable = field(repr=False)
    reference: Callable = field(repr=False)
    cost: Callable = field(repr=False)
    imm_of: Callable = field(default=lambda params: 0, repr=False)

    @property
    def name(self) -> str:
        return self.spec.name

    def block(self, params) -> np.ndarray:
        """The parameter block (uint8) of golden parameters."""
        return self.pack(params)

    def execute(self, instr: VecOp, x: np.ndarray, x2: np.ndarray | None, record: dict,
                items: np.ndarray) -> np.ndarray:
        return self.run(instr, x, x2, record, items)

    def golden(self, a: np.ndarray, b: np.ndarray | None, params, *, flags: int = 0, imm: int = 0) -> np.ndarray:
        """The golden operator's output (int8; softmax: uint8 or Q0.15 int16 probabilities by ``flags``) for an
        instruction's flags/imm."""
        return self.reference(a, b, params, flags, imm)

    def cycles(self, instr: VecOp, cfg: NPUConfig) -> int:
        """Occupancy of the vector sequencer (scratchpad word ``cfg.spad_word_bytes``, ``cfg.sequencer_lanes``)."""
        return self.cost(self.spec, instr, cfg.spad_word_bytes, cfg.sequencer_lanes)


def _norm_reference(kind):
    fn = layernorm if kind == "layernorm" else rmsnorm

    def reference(a, b, params, flags, imm):
        if kind == "rmsnorm" and flags & NORM_TOKEN:    # token scale only: (int16 rows, k_r), no parameters
            if params is not None:
                raise ValueError(f"the token-scale-only vec.rmsnorm takes no parameters, got {type(params).__name__}")
            y, k = token_shift(a, NORM_TOKEN_BITS)
            return y, k.ravel()
        if isinstance(params, tuple):               # (params, eps table): the int32 rows' norm_wide
            return norm_wide(a, *params)
        return fn(a, params)
    return reference


def _norm_pack(kind):
    kind_cls = LayerNormParams if kind == "layernorm" else RMSNormParams

    def pack(params):
        """golden.norms parameters (int8 rows), or (parameters, eps table) of wide_norm_params (int32 rows); None:
        no block (rmsnorm's token scale only)."""
        if params is None and kind == "rmsnorm":
            return np.zeros(0, dtype=np.uint8)
        eps = None
        if isinstance(params, tuple):
            params, eps = params
        if not isinstance(params, kind_cls):
            raise ValueError(f"vec.{kind} needs golden.norms parameters, got {type(params).__name__}")
        return pack_norm_params(params, eps)
    return pack


_ENTRIES = {
    "softmax": dict(pack=pack_softmax_params, run=_exec_softmax,
                    reference=_golden_softmax, cost=cycles_softmax),
    "layernorm": dict(pack=_norm_pack("layernorm"), run=_exec_norm("layernorm"),
                      reference=_norm_reference("layernorm"), cost=cycles_norm),
    "rmsnorm": dict(pack=_norm_pack("rmsnorm"), run=_exec_norm("rmsnorm"), reference=_norm_reference("rmsnorm"),
                    cost=cycles_norm),
    "act": dict(pack=_act_block, run=_exec_act, reference=_golden_act, cost=cycles_act),
    "residual": dict(pack=_residual_pack, run=_exec_residual, reference=_golden_residual, cost=cycles_record,
                     imm_of=lambda p: 31 + p.shift if isinstance(p, WideResidualParams) else p.shift),
    "gate": dict(pack=lambda p: np.zeros(0, dtype=np.uint8) if p is None else
                 pack_requant_params([p.multiplier], [p.shift]), run=_exec_gate,
                 reference=_golden_gate, cost=cycles_record),
    "rope": dict(pack=lambda p: pack_rope_params(*p), run=_exec_rope, reference=_golden_rope, cost=cycles_rope),
}
#: Every vector operator, in opcode order (one per ``spec.vector_ops.VECTOR_OPS`` descriptor).
OPERATORS: dict[str, VectorOperator] = {spec.name: VectorOperator(spec, **_ENTRIES[spec.name]) for spec in VECTOR_OPS}


def operator(name: str) -> VectorOperator:
    """The registry entry of vector operator ``name``; ``ValueError`` names the allowed ones."""
    by_name(name)
    return OPERATORS[name]
