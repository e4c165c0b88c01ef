"""The NPU's vector operators: one descriptor each, and the integer constants golden and RTL share.

A descriptor (:class:`VectorOp`) holds what the hardware/software contract says about one operator of the shared
vector instruction format (``spec.isa.VecOp``, opcodes 0x31..0x37): its opcode, its operands, the layout of its
parameter block at scratchpad byte ``param_page * 256`` (a fixed record or header, then per-item records: table
entries, channels, table rows) with stdlib pack/unpack, the reserved ``flags`` / ``imm`` / ``src2_addr`` values
(ILLEGAL_INSTRUCTION) and the header rules (BAD_PARAM). The golden model (``golden/``), the RTL (``rtl/vector``,
the controller's vector engine), the ISA simulator, the compiler, the performance model and the testbenches read
their limits and layouts from here; ``gen.isa.ops`` pairs each descriptor with its golden function and cycle cost.

Adding an operator: a descriptor in :data:`VECTOR_OPS` (the opcode is its position), its RTL, and its entry in
``gen.isa.ops``. Stdlib only (the ground floor imports neither NumPy nor Amaranth).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from npuforge.spec.records import BitField, Record

__all__ = [
    # requant (VEC_REQUANT and every requant-format record)
    "Q31_MIN", "Q31_MAX", "MULTIPLIER_BITS", "SHIFT_MIN", "SHIFT_MAX", "TOTAL_SHIFT_MIN", "TOTAL_SHIFT_MAX",
    "ROW_SHIFT_MAX",
    # softmax
    "SOFTMAX_CAUSAL", "SOFTMAX_SCORE_LSB", "SOFTMAX_SCORE_BITS", "SOFTMAX_Q15", "SOFTMAX_PAD", "SOFTMAX_FLAGS",
    "softmax_format", "SOFTMAX_Q15_MAX", "RECIP_Q15_BITS", "SOFTMAX_MAX_LEN", "SOFTMAX_OUT_MAX", "EXP_FRAC_BITS", "EXP_OUT_FRAC_BITS", "EXP_C1", "EXP_C2", "D_MAX",
    "U_MAX", "RECIP_BITS", "EXP_SHIFT_MIN", "EXP_SHIFT_MAX",
    # norms
    "NORM_MAX_D", "NORM_FRAC_BITS", "NORM_RECIP_FRAC_BITS", "GAMMA_SHIFT_MIN", "GAMMA_SHIFT_MAX", "EPS_TERM_BITS",
    "EPS_TERM_MAX", "VAR_FRAC_BITS_MAX", "NORM_WIDE_IN_BITS", "NORM_WIDE_ROW_BITS", "NORM_EPS_SHIFTS", "NORM_WIDE",
    "NORM_OUT16", "NORM_TOKEN", "NORM_TOKEN_BITS", "NORM_TOKEN_SHIFT_MAX", "NORM_FLAGS", "RMSNORM_FLAGS",
    "EPS_ENTRY", "norm_item", "norm_token",
    # rope
    "ROPE_FRAC_BITS", "ROPE_FRAC_BITS_MIN", "ROPE_FRAC_BITS_MAX", "ROPE_MAX_POSITIONS", "ROPE_MAX_HEAD_DIM",
    "ROPE_POSITIONS", "ROPE_HEADS_BITS", "ROPE_MAX_HEADS", "ROPE_IN16", "ROPE_OUT16", "rope_heads", "rope_format",
    "rope_flags",
    # act, residual
    "TABLE_ENTRIES", "INTERP_SHIFT", "INTERP_ENTRIES", "ACT_INTERP", "ACT_FLAGS", "RESIDUAL_SHIFT_MIN", "RESIDUAL_SHIFT_MAX", "RESIDUAL_WIDE", "RESIDUAL_A_LSB", "RESIDUAL_B_LSB",
    "RESIDUAL_OUT32", "RESIDUAL_FLAGS", "ELEM_BITS", "residual_format",
    # gate
    "GATE_IN16", "GATE_OUT16", "GATE_OUT32", "GATE_FLAGS", "GATE_PRODUCT_FLAGS", "gate_format", "gate_flags",
    # parameter-block layout
    "BitField", "Record", "REQUANT_RECORD", "SOFTMAX_RECORD", "RESIDUAL_RECORD", "NORM_HEADER", "ROPE_HEADER", "ROPE_ENTRY",
    "TABLE_ENTRY", "INTERP_ENTRY", "VEC_HEADER_BYTES", "VEC_RECORD_BYTES", "norm_channel", "rope_positions",
    # descriptors
    "VectorOp", "VECTOR_OPS", "VEC_OPS", "VEC_OPCODE_BASE", "by_name", "by_opcode",
]

# -- requant: one 64-bit record per channel (VEC_REQUANT), also the softmax and gate records ------------------------
Q31_MIN = 1 << 30               #: smallest normalised Q31 multiplier (bit 30 set); the hardware checks it
Q31_MAX = (1 << 31) - 1         #: largest Q31 multiplier (unsigned 31 bit)
MULTIPLIER_BITS = 31
SHIFT_MIN, SHIFT_MAX = -30, 31  #: requant ``shift``: the total right shift 31 + shift is in [1, 62]
TOTAL_SHIFT_MIN, TOTAL_SHIFT_MAX = 1, 62   #: the total right shift t = 31 + shift (VEC_REQUANT.row_shift: - k_r)
#: VEC_REQUANT.row_shift: the largest per-row shift k_r (a byte at ``bias_addr + r``; larger is BAD_PARAM). The
#: per-token scale of an int16-operand product (|a b| <= 2^30, ``vec.gate`` GATE_OUT32) into int16 is k <= 16.
ROW_SHIFT_MAX = 16

# -- softmax (golden.softmax steps 1-9; rtl.vector.softmax) --------------------------------------------------------
SOFTMAX_MAX_LEN = 8192          #: longest row (scores per row)
SOFTMAX_OUT_MAX = 255           #: probabilities are uint8 in units of 1/255
EXP_FRAC_BITS = 15              #: g and P in Q.15
EXP_OUT_FRAC_BITS = 22          #: e in Q1.22
EXP_C1 = -21861                 #: round(-0.66716 * 2^15), the linear coefficient of the 2^-g polynomial
EXP_C2 = 5534                   #: round(0.16888 * 2^15), its quadratic coefficient
D_MAX = (1 << 31) - 1           #: max - x is clamped to 31 bits
U_MAX = (1 << 20) - 1           #: u = d * s / ln 2 in Q5.15, clamped to 20 bits
RECIP_BITS = 54                 #: Rcp = floor(2^54 / S)
EXP_SHIFT_MIN, EXP_SHIFT_MAX = SHIFT_MIN, SHIFT_MAX   #: the exp multiplier is a requant-format record
SOFTMAX_Q15_MAX = (1 << 15) - 1 #: Q0.15 probabilities (golden.softmax.softmax_q15): int16 codes 0 .. 2^15 - 1
RECIP_Q15_BITS = 53             #: Q0.15 output: Rcp = floor(2^53 / S) = floor(2^54 / S) >> 1
# vec.softmax flags: bit 0 causal; bits [2:1] the score width code (SOFTMAX_SCORE_BITS: 0 int8, 1 int16, 2 int32;
# 3 reserved); bit 3 the Q0.15 int16 output (else uint8 in units of 1/255); bit 4 the padding mask (columns
# j >= the record's valid_len masked); bits [7:5] reserved.
SOFTMAX_CAUSAL = 1 << 0
SOFTMAX_SCORE_LSB = 1
SOFTMAX_SCORE_BITS = (8, 16, 32)   #: score width by code (flags bits [2:1]), ELEM_BITS
SOFTMAX_Q15 = 1 << 3
SOFTMAX_PAD = 1 << 4
SOFTMAX_FLAGS = 0x1F            #: every defined flag bit

# -- LayerNorm / RMSNorm (golden.norms; rtl.vector.norm) -----------------------------------------------------------
NORM_MAX_D = 8192               #: longest row (channels)
NORM_FRAC_BITS = 16             #: the normalised value y in Q.16
NORM_RECIP_FRAC_BITS = 61       #: Rcp = floor(2^61 / isqrt(N))
GAMMA_SHIFT_MIN, GAMMA_SHIFT_MAX = -15, 16   #: per-layer gamma_shift window
EPS_TERM_BITS = 61
EPS_TERM_MAX = (1 << EPS_TERM_BITS) - 1      #: eps_term = round(D^2 eps / in_scale^2 * 2^f) < 2^61
VAR_FRAC_BITS_MAX = 28          #: var_frac_bits f is even and <= 28
# The int32 residual stream's norm (golden.models.intops.norm_wide): the row is shifted right by
# k = max(0, bitlength(max |x|) - 15), rounded, into int16; eps comes from a table indexed by k.
NORM_WIDE_IN_BITS = 16          #: the pre-shifted row is int16
NORM_WIDE_ROW_BITS = 32         #: int32 rows
NORM_EPS_SHIFTS = NORM_WIDE_ROW_BITS + 1 - NORM_WIDE_IN_BITS + 1   #: k = 0 .. 17 (|x| <= 2^31): 18 eps terms
# vec.layernorm / vec.rmsnorm flags: bit 0 int32 rows (norm_wide; the block holds the eps table after the header,
# the header's eps_term is ignored); bit 1 int16 output (else int8); vec.rmsnorm bit 2 "token scale only" (needs
# bits 0 and 1): dst row = golden.models.intops.token_shift(src row, 16)[0] (the wide norm's pre-shift, int16) and
# scratchpad byte src2_addr + r = k_r (uint8) for row r; no parameter block (param_page 0). Other bits reserved.
NORM_WIDE = 1 << 0
NORM_OUT16 = 1 << 1
NORM_TOKEN = 1 << 2
NORM_FLAGS = 0x3                #: every defined layernorm flag bit
RMSNORM_FLAGS = 0x7             #: every defined rmsnorm flag bit
NORM_TOKEN_BITS = NORM_WIDE_IN_BITS   #: the token-scale-only output: int16
#: Largest k_r of the token scale: 17 for a row holding -2^31 (bitlength 2^31 = 32), else <= 16.
NORM_TOKEN_SHIFT_MAX = NORM_WIDE_ROW_BITS + 1 - NORM_TOKEN_BITS

# -- RoPE (golden.elementwise.rope; rtl.vector.rope) ---------------------------------------------------------------
ROPE_FRAC_BITS = 14             #: default table precision Q1.14
ROPE_FRAC_BITS_MIN, ROPE_FRAC_BITS_MAX = 1, 14   #: accepted table precisions (1.0 = 2^F fits int16)
ROPE_MAX_POSITIONS = 1 << 20    #: longest table the golden model builds
ROPE_MAX_HEAD_DIM = 256         #: longest vec.rope row (head_dim) the NPU's RoPE operator holds
ROPE_POSITIONS = 8              #: table positions resident in the NPU's RoPE operator (one instruction spans <= 8)
# vec.rope flags: bits [5:0] heads - 1 (row i at position imm + i // heads); bit 6 int16 rows in (else int8), bit 7
# int16 results (else int8; golden.elementwise.rope out_bits).
ROPE_HEADS_BITS = 6
ROPE_MAX_HEADS = 1 << ROPE_HEADS_BITS   #: heads one vec.rope interleaves (64)
ROPE_IN16 = 1 << 6
ROPE_OUT16 = 1 << 7

# -- act, residual -------------------------------------------------------------------------------------------------
TABLE_ENTRIES = 256             #: an int8 -> int8 table: entry x + 128 for every int8 x
INTERP_SHIFT = 6                #: 16-bit GELU / SiLU: 2^6 input codes per segment, 1024 segments
INTERP_ENTRIES = (1 << (16 - INTERP_SHIFT)) + 1   #: 1025 int16 entries (golden.models.intops.interp_table)
# vec.act flags: bit 0 the table slot (GELU 0 / SiLU 1), bit 1 the 16-bit interpolated table (int16 in and out,
# INTERP_ENTRIES int16 entries); bits [7:2] reserved.
ACT_INTERP = 1 << 1
ACT_FLAGS = 0x3
RESIDUAL_SHIFT_MIN, RESIDUAL_SHIFT_MAX = 1, 62   #: vec.residual total right shift T (imm)
#: Element widths by a 2-bit width code (flags fields of softmax and residual): 0 int8, 1 int16, 2 int32; 3 reserved.
ELEM_BITS = (8, 16, 32)
# vec.residual flags: bit 0 the residual stream's add (golden.models.intops.residual_add_wide: dst = clamp(
# requant(src, a_multiplier, T) + src2), b_multiplier 0); then bits [2:1] the src width code, [4:3] the src2 width
# code, bit 5 an int32 output (else int16); bits [7:6] reserved. Without bit 0 every other bit is 0 (int8).
RESIDUAL_WIDE = 1 << 0
RESIDUAL_A_LSB = 1
RESIDUAL_B_LSB = 3
RESIDUAL_OUT32 = 1 << 5
RESIDUAL_FLAGS = 0x3F
# vec.gate flags: bit 0 int16 operands (src and src2: the SiLU output and up of the a16 schemes, else int8), bit 1 an
# int16 result (golden.elementwise.GateParams.out_bits 16, else int8); bit 2 an int32 result, the exact product a*b
# of int16 operands (needs bit 0, bit 1 0; no requant, the record is not read: the -pt schemes' SwiGLU product);
# bits [7:3] reserved.
GATE_IN16 = 1 << 0
GATE_OUT16 = 1 << 1
GATE_OUT32 = 1 << 2
GATE_FLAGS = 0x3                #: the flag bits of the requantizing gate (flags 0..3)
GATE_PRODUCT_FLAGS = GATE_IN16 | GATE_OUT32   #: the one legal flags value with bit 2: the exact int32 product (5)


# -- parameter-block layout (spec.records) ------------------------------------------------------------------
#: VEC_REQUANT per-channel record, and the softmax (exp multiplier / shift) and gate records: the low 38 bits are
#: rtl.vector.requant.RequantParamWord.
REQUANT_RECORD = Record("requant record", 8, (BitField("multiplier", 0, MULTIPLIER_BITS),
                                              BitField("shift", 31, 7, signed=True)))
#: vec.softmax record: the exp multiplier / shift in the requant format and, read only with the padding flag
#: (SOFTMAX_PAD), ``valid_len``: columns j >= valid_len of every row are masked (BERT padding keys); 0 is BAD_PARAM.
SOFTMAX_RECORD = Record("softmax record", 8, REQUANT_RECORD.fields + (BitField("valid_len", 48, 16),))
#: vec.residual record: the two multipliers of ``golden.elementwise.ResidualParams`` (the shift is ``imm``).
RESIDUAL_RECORD = Record("residual record", 8, (BitField("a_multiplier", 0, MULTIPLIER_BITS),
                                                BitField("b_multiplier", 31, MULTIPLIER_BITS)))
#: vec.layernorm / vec.rmsnorm header.
NORM_HEADER = Record("norm header", 16, (BitField("eps_term", 0, EPS_TERM_BITS), BitField("var_frac_bits", 64, 8),
                                         BitField("gamma_shift", 72, 8, signed=True)))
#: vec.rope header: the table's positions and its Q1.frac_bits precision.
ROPE_HEADER = Record("rope header", 16, (BitField("positions", 0, 32), BitField("frac_bits", 32, 8)))
#: One RoPE table entry (position p, pair i): cos, sin int16 in Q1.frac_bits (rtl.vector.rope.RopeTableWord).
ROPE_ENTRY = Record("rope entry", 4, (BitField("cos", 0, 16, signed=True), BitField("sin", 16, 16, signed=True)))
#: One entry of the 16-bit interpolated activation table (vec.act flags bit 1): int16 ``T[j]``.
INTERP_ENTRY = Record("interp entry", 2, (BitField("value", 0, 16, signed=True),))
#: One activation-table entry: int8 ``table[x + 128]``.
TABLE_ENTRY = Record("table entry", 1, (BitField("value", 0, 8, signed=True),))
VEC_HEADER_BYTES = 16           #: the header of layernorm / rmsnorm / rope blocks
VEC_RECORD_BYTES = 8            #: the one record of softmax / residual / gate


#: One entry of the wide norms' eps table (entry k: the eps term of a row pre-shifted by k).
EPS_ENTRY = Record("eps entry", 8, (BitField("eps_term", 0, EPS_TERM_BITS),))


def norm_item(kind: str, out_bits: int) -> Record:
    """The ISA's channel record of a norm with ``out_bits`` outputs: :func:`norm_channel` for int8 (8 / 2 bytes), and
    for int16 its fields padded to a power-of-two record (LayerNorm 16 bytes: G int24, B int56; RMSNorm 4 bytes),
    so that a record never straddles a scratchpad word."""
    ch = norm_channel(kind, out_bits)
    size = 1 << (ch.nbytes - 1).bit_length()
    return ch if size == ch.nbytes else Record(f"{ch.name} ({out_bits}-bit output)", size, ch.fields)


def norm_channel(kind: str, out_bits: int = 8) -> Record:
    """Per-channel norm word of an ``out_bits`` output: G (signed out_bits + 8) in the low bits, then (LayerNorm)
    B (signed out_bits + 40). ``out_bits = 8`` is the ISA's channel record (8 / 2 bytes); the operator's
    ``param_data`` port takes the same word for any ``out_bits`` (rtl.vector.norm.LayerNormParamWord)."""
    if kind not in ("layernorm", "rmsnorm"):
        raise ValueError(f"kind must be 'layernorm' or 'rmsnorm', got {kind!r}")
    if out_bits not in (8, 16):
        raise ValueError(f"out_bits must be 8 or 16, got {out_bits!r}")
    g = BitField("gamma", 0, out_bits + 8, signed=True)
    if kind == "rmsnorm":
        return Record("rmsnorm channel", -(-g.width // 8), (g,))
    b = BitField("beta", g.width, out_bits + 40, signed=True)
    return Record("layernorm channel", -(-(g.width + b.width) // 8), (g, b))


def rope_heads(flags: int) -> int:
    """Heads a ``vec.rope`` interleaves: ``flags`` bits [5:0] + 1 (row i at position ``imm + i // heads``)."""
    return (flags & (ROPE_MAX_HEADS - 1)) + 1


def rope_format(flags: int) -> tuple[int, int]:
    """(input bits, output bits) of a ``vec.rope`` ``flags`` value: int8 or int16 rows (bit 6), int8 or int16 results
    (bit 7)."""
    return 16 if flags & ROPE_IN16 else 8, 16 if flags & ROPE_OUT16 else 8


def rope_flags(heads: int, in_bits: int = 8, out_bits: int = 8) -> int:
    """The ``vec.rope`` flags of ``heads`` interleaved heads (1..64), ``in_bits`` rows and ``out_bits`` results."""
    if isinstance(heads, bool) or not isinstance(heads, int) or not 1 <= heads <= ROPE_MAX_HEADS:
        raise ValueError(f"vec.rope heads must be an integer in [1, {ROPE_MAX_HEADS}], got {heads!r}")
    for name, v in (("in_bits", in_bits), ("out_bits", out_bits)):
        if v not in (8, 16):
            raise ValueError(f"vec.rope {name} must be 8 or 16, got {v!r}")
    return (heads - 1) | (ROPE_IN16 if in_bits == 16 else 0) | (ROPE_OUT16 if out_bits == 16 else 0)


def rope_positions(instr) -> int:
    """Table positions one ``vec.rope`` spans: ``ceil(m / heads)``, heads = ``flags`` bits [5:0] + 1 (row i at
    ``imm + i // heads``)."""
    return -(-instr.m // rope_heads(instr.flags))


# -- descriptors ---------------------------------------------------------------------------------------------------
def _zero(op: str, instr, *names: str) -> str | None:
    for name in names:
        if getattr(instr, name):
            return f"vec.{op} {name} must be 0, got {getattr(instr, name)}"
    return None


def _act_rules(instr, lanes):
    if instr.flags & ~ACT_FLAGS:
        return (f"vec.act flags must be 0..3 (bit 0: GELU 0 / SiLU 1 slot, bit 1: 16-bit interpolated table), "
                f"got 0x{instr.flags:x}")
    if instr.imm:
        return f"vec.act imm must be 0, got {instr.imm}"
    if instr.src2_addr:
        return f"vec.act src2_addr must be 0, got 0x{instr.src2_addr:x}"
    return None


def softmax_format(flags: int) -> tuple[int, int]:
    """(score bits, output bits) of a vec.softmax ``flags`` value: scores int8 / int16 / int32 (bits [2:1]),
    probabilities uint8 (8) or Q0.15 int16 (16, bit 3). ``ValueError`` for the reserved score code 3."""
    code = (flags >> SOFTMAX_SCORE_LSB) & 3
    if code >= len(SOFTMAX_SCORE_BITS):
        raise ValueError(f"vec.softmax flags bits [2:1] (score width) must be 0 (int8), 1 (int16) or 2 (int32), "
                         f"got {code}")
    return SOFTMAX_SCORE_BITS[code], 16 if flags & SOFTMAX_Q15 else 8


def _softmax_rules(instr, lanes):
    if instr.flags & ~SOFTMAX_FLAGS or (instr.flags >> SOFTMAX_SCORE_LSB) & 3 == 3:
        return (f"vec.softmax flags must have bits [7:5] 0 and score width code (bits [2:1]) 0..2, "
                f"got 0x{instr.flags:x}")
    if instr.imm < 0 or (instr.imm and not instr.flags & SOFTMAX_CAUSAL):
        return (f"vec.softmax imm (causal row offset) must be 0, or >= 0 with flags bit 0 (causal) set, "
                f"got {instr.imm} with flags 0x{instr.flags:x}")
    if instr.src2_addr:
        return f"vec.softmax src2_addr must be 0, got 0x{instr.src2_addr:x}"
    return None


def residual_format(flags: int) -> tuple[int, int, int]:
    """(src bits, src2 bits, dst bits) of a vec.residual ``flags`` value: 8, 8, 8 without the wide bit, else the
    width codes of bits [2:1] / [4:3] (:data:`ELEM_BITS`) and 32 or 16 by bit 5. ``ValueError`` for a code 3."""
    if not flags & RESIDUAL_WIDE:
        return 8, 8, 8
    codes = ((flags >> RESIDUAL_A_LSB) & 3, (flags >> RESIDUAL_B_LSB) & 3)
    if 3 in codes:
        raise ValueError(f"vec.residual flags width codes (bits [2:1], [4:3]) must be 0..2, got {codes}")
    return ELEM_BITS[codes[0]], ELEM_BITS[codes[1]], 32 if flags & RESIDUAL_OUT32 else 16


def _residual_rules(instr, lanes):
    f = instr.flags
    if f & RESIDUAL_WIDE:
        if f & ~RESIDUAL_FLAGS or (f >> RESIDUAL_A_LSB) & 3 == 3 or (f >> RESIDUAL_B_LSB) & 3 == 3:
            return (f"vec.residual flags (wide) must have bits [7:6] 0 and width codes (bits [2:1], [4:3]) 0..2, "
                    f"got 0x{f:x}")
        return None
    return f"vec.residual flags must be 0 (int8), or have bit 0 set (wide), got 0x{f:x}" if f else None


def gate_format(flags: int) -> tuple[int, int]:
    """(operand bits, result bits) of a ``vec.gate`` ``flags`` value: int8 / int16 operands (bit 0, both), int8 /
    int16 result (bit 1) or the exact int32 product (bit 2)."""
    return 16 if flags & GATE_IN16 else 8, 32 if flags & GATE_OUT32 else 16 if flags & GATE_OUT16 else 8


def gate_flags(in_bits: int, out_bits: int) -> int:
    """The ``vec.gate`` flags of ``in_bits`` operands (both; 8 or 16) and ``out_bits`` results (8, 16 or, with int16
    operands, 32: the exact product)."""
    if in_bits not in (8, 16):
        raise ValueError(f"vec.gate in_bits must be 8 or 16, got {in_bits!r}")
    if out_bits not in (8, 16, 32) or out_bits == 32 and in_bits != 16:
        raise ValueError(f"vec.gate out_bits must be 8, 16 or (int16 operands) 32, got {out_bits!r} with in_bits "
                         f"{in_bits}")
    out = {8: 0, 16: GATE_OUT16, 32: GATE_OUT32}[out_bits]
    return (GATE_IN16 if in_bits == 16 else 0) | out


def _gate_rules(instr, lanes):
    f = instr.flags
    if f & ~GATE_FLAGS and f != GATE_PRODUCT_FLAGS:
        return (f"vec.gate flags must be 0..3 (bit 0: int16 operands, bit 1: int16 result) or 5 (bit 2: the exact "
                f"int32 product of int16 operands), got 0x{f:x}")
    return f"vec.gate imm must be 0, got {instr.imm}" if instr.imm else None


def norm_token(instr) -> bool:
    """True for a ``vec.rmsnorm`` with flags bit 2 (token scale only: int16 rows of token_shift and the k bytes)."""
    return instr.op == "rmsnorm" and bool(instr.flags & NORM_TOKEN)


def _norm_rules(op):
    def rules(instr, lanes):
        if op == "rmsnorm" and instr.flags & NORM_TOKEN:
            if instr.flags != RMSNORM_FLAGS:
                return (f"vec.rmsnorm flags bit 2 (token scale only) needs bits 0 (int32 rows) and 1 (int16 output) "
                        f"and bits [7:3] 0, got 0x{instr.flags:x}")
            return _zero(op, instr, "imm", "param_page")
        if instr.flags & ~NORM_FLAGS:
            more = " or 7 (bit 2: token scale only)" if op == "rmsnorm" else ""
            return (f"vec.{op} flags must be 0..3 (bit 0 int32 rows, bit 1 int16 output){more}, "
                    f"got 0x{instr.flags:x}")
        return _zero(op, instr, "imm", "src2_addr")
    return rules


def _rope_rules(instr, lanes):
    if instr.imm < 0:
        return f"vec.rope imm (first position) must be >= 0, got {instr.imm}"
    if instr.src2_addr:
        return f"vec.rope src2_addr must be 0, got 0x{instr.src2_addr:x}"
    if instr.n % 2 or instr.n > ROPE_MAX_HEAD_DIM:
        return f"vec.rope n (head_dim) must be even and in [2, {ROPE_MAX_HEAD_DIM}], got {instr.n}"
    if lanes is not None and instr.n % (2 * lanes):
        return f"vec.rope n (head_dim) must be a multiple of 2 * lanes = {2 * lanes} on this NPU, got {instr.n}"
    heads = rope_heads(instr.flags)
    if instr.m > ROPE_POSITIONS * heads:
        return (f"vec.rope m must be <= {ROPE_POSITIONS} positions * heads (flags bits [5:0] + 1 = {heads}) = "
                f"{ROPE_POSITIONS * heads}, got {instr.m}")
    return None


def _requant_record_check(op):
    def check(rec: dict, instr) -> str | None:
        mult, sh = rec["multiplier"], rec["shift"]
        if Q31_MIN <= mult <= Q31_MAX and SHIFT_MIN <= sh <= SHIFT_MAX:
            return None
        return (f"vec.{op} record: multiplier {mult} must be in [{Q31_MIN}, {Q31_MAX}] and shift {sh} in "
                f"[{SHIFT_MIN}, {SHIFT_MAX}]")
    return check


def _softmax_check(rec: dict, instr) -> str | None:
    why = _requant_record_check("softmax")(rec, instr)
    if why is None and instr.flags & SOFTMAX_PAD and rec["valid_len"] == 0:
        return "vec.softmax record: valid_len must be >= 1 with the padding flag (a row with every column masked)"
    return why


def _residual_check(rec: dict, instr) -> str | None:
    if not RESIDUAL_SHIFT_MIN <= instr.imm <= RESIDUAL_SHIFT_MAX:
        return f"vec.residual shift (imm) {instr.imm} must be in [{RESIDUAL_SHIFT_MIN}, {RESIDUAL_SHIFT_MAX}]"
    if instr.flags & RESIDUAL_WIDE and (rec["a_multiplier"] < Q31_MIN or rec["b_multiplier"]):
        return (f"vec.residual record (wide): a_multiplier {rec['a_multiplier']} must be in [{Q31_MIN}, {Q31_MAX}] "
                f"and b_multiplier {rec['b_multiplier']} 0")
    return None


def _gate_check(rec: dict, instr) -> str | None:
    return None if instr.flags & GATE_OUT32 else _requant_record_check("gate")(rec, instr)


def _norm_check(op):
    def check(head: dict, instr) -> str | None:
        if norm_token(instr):
            return None
        frac, gshift = head["var_frac_bits"], head["gamma_shift"]
        if frac % 2 or frac > VAR_FRAC_BITS_MAX or not GAMMA_SHIFT_MIN <= gshift <= GAMMA_SHIFT_MAX:
            return (f"vec.{op} header: var_frac_bits {frac} must be even and <= {VAR_FRAC_BITS_MAX}, gamma_shift "
                    f"{gshift} in [{GAMMA_SHIFT_MIN}, {GAMMA_SHIFT_MAX}]")
        return None
    return check


def _rope_check(head: dict, instr) -> str | None:
    frac, positions = head["frac_bits"], head["positions"]
    npos = rope_positions(instr)
    if ROPE_FRAC_BITS_MIN <= frac <= ROPE_FRAC_BITS_MAX and instr.imm + npos <= positions:
        return None
    return (f"vec.rope header: frac_bits {frac} must be in [{ROPE_FRAC_BITS_MIN}, {ROPE_FRAC_BITS_MAX}] and the "
            f"positions {instr.imm}..{instr.imm + npos - 1} inside the table's {positions}")


@dataclass(frozen=True)
class VectorOp:
    """One operator of the shared vector format.

    ``operands``: 1, or 2 (``src2_addr`` is the second int8 operand). Parameter block at ``param_page * 256``:
    ``record`` (the fixed record or header at its start, or None), then ``item`` records: ``items`` says how
    many the instruction reads, "table" (:data:`TABLE_ENTRIES` entries), "channels" (``n``), "positions" (the
    table rows ``imm .. imm + rope_positions - 1`` of ``n / 2`` entries each, a separate range after the
    header) or "" (none). ``rules(instr, lanes)``: why the instruction is ILLEGAL_INSTRUCTION by its fields alone
    (None if it is not); ``param_rule(record fields, instr)``: why it is BAD_PARAM (None if not); ``param_fault_at_block``:
    the BAD_PARAM fault address is the block's (else 0: residual's rule is on ``imm``).
    """
    name: str
    opcode: int
    operands: int
    record: Record | None
    item: Record | None
    items: str
    rules: Callable = field(repr=False, compare=False)
    param_rule: Callable | None = field(default=None, repr=False, compare=False)
    param_fault_at_block: bool = True

    @property
    def mnemonic(self) -> str:
        return f"vec.{self.name}"

    @property
    def header_bytes(self) -> int:
        return self.record.nbytes if self.record is not None else 0

    @property
    def item_bytes(self) -> int:
        return self.item.nbytes if self.item is not None else 0

    def static_error(self, instr, lanes: int | None = None) -> str | None:
        return self.rules(instr, lanes)

    def param_error(self, record: dict, instr) -> str | None:
        return self.param_rule(record, instr) if self.param_rule is not None else None

    def elem_bytes(self, instr) -> tuple[int, int, int]:
        """Bytes per element of (src, src2, dst) rows: 1 (int8) but for vec.softmax (scores 1 / 2 / 4 bytes, output
        1 or 2 by ``flags``, :func:`softmax_format`), the wide vec.residual (:func:`residual_format`), the norms, the
        16-bit vec.act, vec.rope (:func:`rope_format`) and vec.gate (:func:`gate_format`). Rows sit at the scratchpad-word stride of ``n * bytes``."""
        if self.name == "softmax":
            score_bits, out_bits = softmax_format(instr.flags)
            return score_bits // 8, 1, out_bits // 8
        if self.name == "residual":
            return tuple(bits // 8 for bits in residual_format(instr.flags))
        if self.name in ("layernorm", "rmsnorm"):
            return (4 if instr.flags & NORM_WIDE else 1), 1, (2 if instr.flags & NORM_OUT16 else 1)
        if self.name == "act" and instr.flags & ACT_INTERP:
            return 2, 1, 2
        if self.name == "rope":
            in_bits, out_bits = rope_format(instr.flags)
            return in_bits // 8, 1, out_bits // 8
        if self.name == "gate":
            in_bits, out_bits = gate_format(instr.flags)
            return in_bits // 8, in_bits // 8, out_bits // 8
        return 1, 1, 1

    def side_writes(self, instr) -> list[tuple[int, int]]:
        """Scratchpad byte ranges ``[lo, hi)`` written besides the ``dst`` rows: the token-scale-only
        ``vec.rmsnorm`` writes k_r (uint8) to byte ``src2_addr + r`` of each row r (no other byte of those words)."""
        return [(instr.src2_addr, instr.src2_addr + instr.m)] if norm_token(instr) else []

    def items_at(self, instr) -> tuple[int, Record | None]:
        """(byte offset of the first item in the block, the item record) of an instruction: the norms' records
        follow the eps table of a wide (int32-row) norm and are :func:`norm_item` of their output width."""
        if self.name in ("layernorm", "rmsnorm"):
            eps = NORM_EPS_SHIFTS * EPS_ENTRY.nbytes if instr.flags & NORM_WIDE else 0
            return self.header_bytes + eps, norm_item(self.name, 16 if instr.flags & NORM_OUT16 else 8)
        return self.header_bytes, self.item

    def param_bytes(self, n: int = 1) -> int:
        """Bytes of the block read from its start: the record / header and, but for rope, its items."""
        if self.items == "table":
            return self.header_bytes + TABLE_ENTRIES * self.item_bytes
        if self.items == "channels":
            return self.header_bytes + n * self.item_bytes
        return self.header_bytes

    def param_ranges(self, instr) -> list[tuple[int, int]]:
        """Byte ranges ``[lo, hi)`` relative to ``param_page * 256`` that the instruction reads (rope: the header,
        then the table rows of its positions, row p at ``16 + 2 n p``; none for the exact int32 ``vec.gate`` product
        and the token-scale-only ``vec.rmsnorm``)."""
        if self.name == "gate" and instr.flags & GATE_OUT32 or norm_token(instr):
            return []
        if self.items == "positions":
            row = self.item_bytes * (instr.n // 2)
            lo = self.header_bytes + row * instr.imm
            return [(0, self.header_bytes), (lo, lo + row * rope_positions(instr))]
        if self.items == "channels":
            start, item = self.items_at(instr)
            return [(0, start + instr.n * item.nbytes)]
        if self.items == "table" and instr.flags & ACT_INTERP:
            return [(0, INTERP_ENTRIES * INTERP_ENTRY.nbytes)]
        return [(0, self.param_bytes(instr.n))]


#: The vector operators in opcode order (opcode 0x31 + index).
VEC_OPCODE_BASE = 0x31
_OPS = (
    ("softmax", 1, SOFTMAX_RECORD, None, "", _softmax_rules, _softmax_check, True),
    ("layernorm", 1, NORM_HEADER, norm_channel("layernorm"), "channels", _norm_rules("layernorm"),
     _norm_check("layernorm"), True),
    ("rmsnorm", 1, NORM_HEADER, norm_channel("rmsnorm"), "channels", _norm_rules("rmsnorm"),
     _norm_check("rmsnorm"), True),
    ("act", 1, None, TABLE_ENTRY, "table", _act_rules, None, True),
    ("residual", 2, RESIDUAL_RECORD, None, "", _residual_rules, _residual_check, False),
    ("gate", 2, REQUANT_RECORD, None, "", _gate_rules, _gate_check, True),
    ("rope", 1, ROPE_HEADER, ROPE_ENTRY, "positions", _rope_rules, _rope_check, True),
)
VECTOR_OPS: tuple[VectorOp, ...] = tuple(
    VectorOp(name, VEC_OPCODE_BASE + i, operands, record, item, items, rules, check, at_block)
    for i, (name, operands, record, item, items, rules, check, at_block) in enumerate(_OPS))
#: Operator names in opcode order.
VEC_OPS = tuple(op.name for op in VECTOR_OPS)
_BY_NAME = {op.name: op for op in VECTOR_OPS}
_BY_OPCODE = {op.opcode: op for op in VECTOR_OPS}


def by_name(name: str) -> VectorOp:
    """The descriptor of vector operator ``name``; ``ValueError`` names the allowed ones."""
    try:
        return _BY_NAME[name]
    except (KeyError, TypeError):
        raise ValueError(f"op must be one of {', '.join(VEC_OPS)}, got {name!r}") from None


def by_opcode(opcode: int) -> VectorOp:
    try:
        return _BY_OPCODE[int(opcode)]
    except KeyError:
        raise ValueError(f"opcode 0x{int(opcode):02x} is not a vector operator") from None
