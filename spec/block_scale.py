"""Block-scaled MATMUL (``MATMUL.blocks``): weights in a checkpoint's own blocks of 32 along K, run exactly.

A GGUF checkpoint stores a linear weight W [N, K] in blocks of :data:`BLOCK` consecutive K values with one scale
and (Q4_1) one minimum per block. The host (``golden.models.qlinear.weight_from_blocks``) turns them into
integers::

    W[n, k] = D[b, n] * s[k, n] + O[b, n],     b = k // 32
    s  : signed int4 (Q4_1 / Q4_0: code - 8 in [-8, 7], mode w4a16) or int8 (Q8_0: q, mode w8a16)
    D, O: signed 16-bit block multipliers (O = 0 for Q4_0 and Q8_0)

and the NPU computes ``acc[t, n] = sum_k x[t, k] * W[n, k]`` exactly for int16 activations x::

    per k-fold f of the array (``rows`` K values, all inside one block b):
        P_f[t, n] = sum_{k in f} x[t, k] * s[k, n]   the PE array in w4a16 / w8a16, int32
        S_f[t]    = sum_{k in f} x[t, k]             the activation beat the operand generator feeds, summed
        acc[t, n] += D[b, n] * P_f[t, n] + O[b, n] * S_f[t]           (48-bit accumulator element)

which equals the per-block form ``sum_b D_b P_b + O_b S_b`` by linearity (P_b, S_b are sums over the block's
folds), hence ``x @ W^T``. Bounds: |P_f| < rows * 2^15 * 2^7 (int8 s) <= 2^27, |S_f| < rows * 2^15 <= 2^20, and
the golden model guarantees |acc| < 2^47 (``golden.models.intops.requant_wide``); the 48-bit adder wraps mod 2^48
like the int32 one wraps mod 2^32.

Contract (``docs/isa.md``, MATMUL.blocks):

* **Instruction**: ``MATMUL`` with ``blocks = 1`` (w0[14]): mode w4a16 or w8a16, dataflow ws, ``b_trans = 0``,
  ``k`` a multiple of 32 (so k-folds never straddle a block: the NPU option needs ``rows`` dividing 32). Other
  combinations are ``ILLEGAL_INSTRUCTION`` (:func:`block_error`), as is ``blocks = 1`` on an NPU built without
  ``NPUConfig.block_scaled``.
* **B operand** at ``b_addr``: the codes s [k, n] exactly as a w4a16 / w8a16 B tile (int4 packed two per byte
  along n, low nibble first; int8 one per byte), k rows at the scratchpad-word stride. **Block records** right
  after it, at ``b_addr + k * stride(B row bytes)``: ``k / 32`` rows (one per block), each ``n`` records of
  :data:`BLOCK_RECORD` (4 bytes: D int16 at bytes [0, 2), O int16 at [2, 4), little-endian), row stride
  ``stride(4 n)``. The host converts Q4_1's unsigned codes to s = code - 8 (and folds the 8 into O).
* **Result** (the key decision): a 48-bit accumulator element per output. Its low 32 bits sit where an int32
  result would (``acc_addr``, 4 bytes per element, the int32 layout and addressing every other instruction and the
  DMA use), its high :data:`ACC_EXT_BITS` bits in the **accumulator extension**, a second SRAM of the same depth
  and half the width (2 bytes per int32 element, element index = accumulator byte address / 4) that only
  block-scaled MATMULs write and only ``VEC_REQUANT.wide`` reads. ``accumulate`` adds to the 48-bit value.
* **Requant**: ``VEC_REQUANT`` with ``wide = 1`` (w0[11]) reads the 48-bit element (low word and extension at once)
  and computes ``clamp((((acc48 + bias) * M + 2^(t-1)) >> t) + zero_point)`` exactly (bias int32 added in 49
  bits; t = 31 + shift), i.e. ``golden.models.intops.requant_wide`` plus the zero point; in hardware the split
  ``acc = hi * 2^24 + lo`` of that function (two 25 x 31 and 24 x 31 products instead of one 49 x 31).

Why this form of the wide result (hardware cost; the array must keep its rate):

* **Extension SRAM (chosen)**: +16 bits per accumulator element (+50 % accumulator bits, only on NPUs built with
  the option), no change to any address or to the DMA; the accumulator writer does its read-modify-write of the
  low word and of the extension in the same cycle (two SRAMs side by side), so one result row per cycle as today.
* int64 pairs in the existing SRAM: no new SRAM, but a result row is two accumulator words, so the writer needs
  two read-modify-writes per row: the array would run at half rate in block mode (or the port doubles: the same
  bits as the extension, plus wider muxes).
* A 48-bit accumulator everywhere (``acc_width = 48``): the same +50 % bits, but every int32 instruction, the DMA's
  accumulator rows and the requant's addressing change, for no gain outside block mode.

The block stage in the accumulator writer costs two multipliers per array column (16 x 28-bit D * P and 16 x 21-bit
O * S at one result row per cycle) plus a ``rows``-input adder of the activation beat (S_f), delayed to meet the
fold's result row; the weight operand generator reads a block's ``cols`` records (4 * cols bytes) once, with the
block's first fold's ``rows`` weight beats (the ``32 / rows`` folds of a block run back to back in one n-fold;
``gen.perf.cost.block_record_reads``).
"""

from __future__ import annotations

from npuforge.spec.vector_ops import BitField, Record

__all__ = ["BLOCK", "BLOCK_MODES", "BLOCK_RECORD", "BLOCK_RECORD_BYTES", "WIDE_ACC_BITS", "ACC_EXT_BITS",
           "ACC_EXT_BYTES", "WIDE_SPLIT_BITS", "block_error", "B16_PLANES", "b16_error", "b16_plane"]

BLOCK = 32                       #: K values per block (GGUF Q4_0 / Q4_1 / Q8_0)
BLOCK_MODES = ("w8a16", "w4a16")  #: MATMUL modes that take ``blocks = 1``: int8 (Q8_0) or int4 (Q4_x) codes s
#: One per (block, output column): the block multiplier D and offset O, signed 16 bit each.
BLOCK_RECORD = Record("block record", 4, (BitField("d", 0, 16, signed=True), BitField("o", 16, 16, signed=True)))
BLOCK_RECORD_BYTES = BLOCK_RECORD.nbytes
WIDE_ACC_BITS = 48               #: bits of a block-scaled accumulator element (int32 word + extension)
ACC_EXT_BITS = WIDE_ACC_BITS - 32  #: bits per element of the accumulator extension
ACC_EXT_BYTES = ACC_EXT_BITS // 8
WIDE_SPLIT_BITS = 24             #: the wide requant's split acc = hi * 2^24 + lo (golden.models.intops.SPLIT_BITS)


def block_error(mode: str, dataflow: str, k: int, b_trans: int) -> str | None:
    """Why a MATMUL with ``blocks = 1`` and these fields is illegal (None when it is legal by its fields)."""
    if mode not in BLOCK_MODES:
        return f"MatMul.blocks needs mode {' or '.join(BLOCK_MODES)} (int16 activations), got {mode}"
    if dataflow != "ws":
        return f"MatMul.blocks needs dataflow ws, got {dataflow}"
    if b_trans:
        return "MatMul.blocks and b_trans are exclusive (block records follow a [k, n] B tile)"
    if k % BLOCK:
        return f"MatMul.blocks needs k a multiple of {BLOCK} (whole blocks), got {k}"
    return None


#: ``MATMUL.b16`` (an int16 B read one byte plane at a time, the ``*-kv16`` K / V caches): code -> (D, O) of the
#: constant block record the plane stands for. B = 256 hi + lo_u with hi = B >> 8 (int8) and lo_u = B & 255: the high
#: plane is ``D s + O`` with s = hi, D = 256, O = 0; the low plane with s = lo_u - 128 (the byte with bit 7 flipped,
#: read as int8), D = 1, O = 128. So the block-scaled datapath (P_f and the activation sum S_f per k-fold, acc48 +=
#: D P_f + O S_f) computes each plane with constants in place of the records, for any k.
B16_PLANES = {1: (256, 0), 2: (1, 128)}


def b16_plane(b, code: int):
    """The codes s (int8 values) of plane ``code`` of int16 B (ints or an int64 array): the high bytes, or the low
    bytes - 128."""
    return b >> 8 if code == 1 else (b & 0xFF) - 128


def b16_error(mode: str, dataflow: str, blocks: int) -> str | None:
    """Why a MATMUL with ``b16`` != 0 and these fields is illegal (None when it is legal by its fields)."""
    if mode != "w8a16":
        return f"MatMul.b16 needs mode w8a16 (int16 activations, int8 planes), got {mode}"
    if dataflow != "ws":
        return f"MatMul.b16 needs dataflow ws, got {dataflow}"
    if blocks:
        return "MatMul.b16 and blocks are exclusive (the plane's D / O are constants, no records)"
    return None
