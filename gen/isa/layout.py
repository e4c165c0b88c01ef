"""Memory layout of NPU programs, shared by the compiler and the ISA simulator (neither imports the other for it).

* Operand tiles in the scratchpad: :func:`a_tile_shape`, :func:`b_tile_shape` (int4 packing, int16 A words),
  :func:`pack_a_tile` / :func:`unpack_a_tile`, :func:`a_elem_offset`.
* What each instruction touches: :class:`Access`, :func:`footprint` (FENCE insertion and hazard checks),
  :func:`dma_extent`; the host's DMA windows: :class:`Window`.
* Block-scaled weights (``MATMUL.blocks``, ``spec.block_scale``): :func:`block_records_addr`,
  :func:`block_records_shape`, :func:`pack_block_records` / :func:`read_block_records`, and the host's DRAM image
  of a whole weight :func:`pack_block_weight`.
* Parameter records as NumPy byte arrays, from the field tables of ``spec.vector_ops``: :func:`pack_records`,
  :func:`read_records`, and the VEC_REQUANT per-channel records :func:`pack_requant_params` /
  :func:`read_requant_params`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from npuforge.gen.config.npu import NPUConfig
from npuforge.golden.quant import pack_int4, unpack_int4
from npuforge.spec.isa import (PARAM_PAGE_BYTES, REQUANT_BIAS_BYTES, REQUANT_PARAM_BYTES, DmaLoad, DmaStore, Instr,
                               MatMul, VecOp, VecRequant)
from npuforge.spec.block_scale import BLOCK, BLOCK_RECORD
from npuforge.spec.precision import PRECISION_MODES
from npuforge.spec.vector_ops import REQUANT_RECORD, Record, by_name

__all__ = ["cdiv", "align", "Window", "Access", "a_tile_shape", "a_elem_offset", "pack_a_tile", "unpack_a_tile", "b_k_packed", "b_elem_bits",
           "b_tile_shape",
           "pack_b_tile", "unpack_b_tile",
           "dma_extent", "footprint", "block_records_shape", "block_records_addr", "pack_block_records",
           "read_block_records", "BlockWeightImage", "pack_block_weight", "pack_records", "read_records", "pack_requant_params", "read_requant_params"]


def cdiv(a: int, b: int) -> int:
    """ceil(a / b) for non-negative integers."""
    return -(-a // b)


def align(x: int, a: int) -> int:
    """x rounded up to a multiple of a."""
    return cdiv(x, a) * a


@dataclass(frozen=True)
class Window:
    """A host-programmed DMA window: external bytes ``[base, base + size)``; ``read`` lets DMA_LOAD use it,
    ``write`` lets DMA_STORE use it."""
    base: int
    size: int
    read: bool = True
    write: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.base <= 0xFFFFFFFF:
            raise ValueError(f"Window.base must be in [0, 0xFFFFFFFF], got {self.base!r}")
        if not 0 <= self.size <= (1 << 32) - self.base:
            raise ValueError(f"Window.size must be in [0, 2^32 - base = {(1 << 32) - self.base}], got {self.size!r}")


@dataclass(frozen=True)
class Access:
    """Bytes ``[lo, hi)`` of memory ``space`` ("ext", "spad", "acc") that an instruction reads or writes."""
    space: str
    lo: int
    hi: int
    write: bool

    def conflicts(self, other: "Access") -> bool:
        return (self.space == other.space and (self.write or other.write)
                and self.lo < other.hi and other.lo < self.hi)


def a_tile_shape(m: int, k: int, a_bits: int) -> tuple[int, int]:
    """(local rows, bytes per row) of an A [m, k] tile. int8: m rows of k bytes. int4: ceil(m/2) rows of k
    bytes, byte (p, j) = A[2p, j] in the low nibble | A[2p+1, j] in the high nibble (the PE array's row-pair
    activation byte; ``golden.quant.pack_int4`` along M); the high nibbles of an odd m's last row are ignored.
    int16 (w8a16, w4a16): m rows of 2k bytes, element (i, j) the little-endian 16-bit word at bytes 2j, 2j+1 of
    row i (the PE array's 16-bit activation word)."""
    if a_bits == 16:
        return m, 2 * k
    return ((m + 1) // 2 if a_bits == 4 else m), k


def a_elem_offset(k0: int, a_bits: int) -> int:
    """Byte offset of A column ``k0`` inside a stored A row (int16: 2 bytes per element)."""
    return 2 * k0 if a_bits == 16 else k0


def pack_a_tile(a, a_bits: int):
    """A int [m, k] -> uint8 [rows, bytes per row] in the layout of :func:`a_tile_shape`."""
    a = np.asarray(a).astype(np.int64)
    if a_bits == 4:
        return pack_int4(a.T).T
    if a_bits == 16:
        return np.ascontiguousarray(a.astype("<i2")).view(np.uint8)
    return a.astype(np.int8).view(np.uint8)


def unpack_a_tile(raw, m: int, a_bits: int):
    """Inverse of :func:`pack_a_tile`: uint8 [rows, bytes per row] -> int [m, k]."""
    raw = np.ascontiguousarray(np.asarray(raw, dtype=np.uint8))
    if a_bits == 4:
        return unpack_int4(np.ascontiguousarray(raw.T), m).T.copy()
    if a_bits == 16:
        return raw.view("<i2").astype(np.int16)
    return raw.view(np.int8).copy()


def b_k_packed(mode: str, blocks) -> bool:
    """Whether a MATMUL's B is packed along K: the codes of a block-scaled w4a16 MATMUL (``MATMUL.blocks``), so one
    scratchpad row of ``cols`` bytes carries two K rows and the array loads a k-fold in ``rows / 2`` beats."""
    return mode == "w4a16" and bool(blocks)


def b_elem_bits(mode: str, b16) -> int:
    """Bits of a MATMUL's stored B element: 16 with ``MATMUL.b16`` (an int16 B, one byte plane per MATMUL), else the
    mode's weight bits."""
    return 16 if b16 else PRECISION_MODES[mode].weight_bits


def b_tile_shape(k: int, n: int, b_bits: int, *, transposed: bool = False,
                 k_packed: bool = False) -> tuple[int, int]:
    """(local rows, bytes per row) of a B [k, n] tile: k rows of n bytes (int8) or ceil(n/2) bytes (int4,
    byte (k, i) = B[k, 2i] low nibble | B[k, 2i+1] high nibble, ``golden.quant.pack_int4`` along N).
    ``transposed`` (MATMUL.b_trans, int8 only): B^T [n, k], n rows of k bytes. ``k_packed`` (int4, see
    :func:`b_k_packed`): ceil(k/2) rows of n bytes, byte (p, c) = B[2p, c] low nibble | B[2p+1, c] high nibble
    (``pack_int4`` along K). ``b_bits`` 16 (``MATMUL.b16``: int16 elements, little-endian): k rows of 2n bytes, or
    transposed n rows of 2k bytes."""
    if b_bits == 16:
        return (n, 2 * k) if transposed else (k, 2 * n)
    if transposed:
        return n, k
    if k_packed:
        return (k + 1) // 2, n
    return k, ((n + 1) // 2 if b_bits == 4 else n)


def pack_b_tile(b, b_bits: int, *, k_packed: bool = False) -> np.ndarray:
    """B int [k, n] -> uint8 [rows, bytes per row] in the layout of :func:`b_tile_shape` (not transposed)."""
    b = np.asarray(b).astype(np.int64)
    if b_bits == 8:
        return b.astype(np.int8).view(np.uint8)
    return np.ascontiguousarray(pack_int4(b.T).T) if k_packed else pack_int4(b)


def unpack_b_tile(raw, k: int, n: int, b_bits: int, *, k_packed: bool = False) -> np.ndarray:
    """Inverse of :func:`pack_b_tile`: uint8 [rows, >= bytes per row] -> int [k, n]."""
    raw = np.ascontiguousarray(np.asarray(raw, dtype=np.uint8))
    if b_bits == 16:
        return np.ascontiguousarray(raw[:, :2 * n]).view("<i2").copy()
    if b_bits == 8:
        return raw[:, :n].view(np.int8).copy()
    if k_packed:
        return unpack_int4(np.ascontiguousarray(raw[:, :n].T), k).T.copy()
    return unpack_int4(raw, n)


def block_records_shape(k: int, n: int) -> tuple[int, int]:
    """(local rows, bytes per row) of the block records of a [k, n] block-scaled B tile: one row per block of 32 K
    values, ``n`` records of 4 bytes (D int16, O int16) each."""
    return k // BLOCK, n * BLOCK_RECORD.nbytes


def block_records_addr(cfg: NPUConfig, instr: MatMul) -> int:
    """Scratchpad byte address of a block-scaled MATMUL's records: right after its B tile (k rows of codes at the
    scratchpad-word stride), so one B slot holds codes and records and the instruction needs no extra field."""
    rows, rb = b_tile_shape(instr.k, instr.n, PRECISION_MODES[instr.mode].weight_bits,
                            k_packed=b_k_packed(instr.mode, instr.blocks))
    return instr.b_addr + rows * cfg.local_stride("spad", rb)


def pack_block_records(d, o) -> np.ndarray:
    """uint8 [blocks, 4 n]: record (b, c) = D[b, c] int16 at bytes [0, 2), O[b, c] int16 at [2, 4) (little-endian);
    ``d``, ``o`` int [blocks, n] within int16 (``ValueError`` otherwise)."""
    d, o = np.asarray(d, dtype=np.int64), np.asarray(o, dtype=np.int64)
    if d.ndim != 2 or d.shape != o.shape:
        raise ValueError(f"d and o must be 2-D [blocks, n] of one shape, got {d.shape} and {o.shape}")
    for name, v in (("d", d), ("o", o)):
        f = BLOCK_RECORD.field(name)
        if v.size and (v.min() < f.lo or v.max() > f.hi):
            raise ValueError(f"block {name} must be in [{f.lo}, {f.hi}] (signed 16 bit), got "
                             f"{int(v.min() if v.min() < f.lo else v.max())}")
    return pack_records(BLOCK_RECORD, d=d, o=o).reshape(d.shape[0], d.shape[1] * BLOCK_RECORD.nbytes)


def read_block_records(raw, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`pack_block_records`: uint8 [blocks, >= 4 n] -> (D, O) int64 [blocks, n]."""
    raw = np.asarray(raw, dtype=np.uint8)
    rec = read_records(BLOCK_RECORD, np.ascontiguousarray(raw[:, :n * BLOCK_RECORD.nbytes]).ravel())
    return rec["d"].reshape(raw.shape[0], n), rec["o"].reshape(raw.shape[0], n)


@dataclass(frozen=True)
class BlockWeightImage:
    """The DRAM image of one block-scaled weight W [N, K] (the B operand [K, N] of ``x @ W^T``): ``codes`` uint8
    (s^T row-major: int4 K-packed, :func:`b_k_packed`: [K / 2, N], byte (p, c) = s^T[2p, c] low nibble |
    s^T[2p + 1, c] high nibble; int8 [K, N]) and ``records`` uint8 [K / 32, 4 N] (:func:`pack_block_records` of D^T,
    O^T). A MATMUL's B slot gets a [tk, tn] block of ``codes`` (tk / 2 rows of tn bytes in int4) and the matching
    [tk / 32, 4 tn] block of ``records`` right after it."""
    codes: np.ndarray
    records: np.ndarray
    bits: int

    @property
    def shape(self) -> tuple[int, int]:
        """(K, N) of the B operand."""
        k = self.codes.shape[0] * (2 if self.bits == 4 else 1)
        return k, self.records.shape[1] // BLOCK_RECORD.nbytes


def pack_block_weight(s, d, o, *, bits: int) -> BlockWeightImage:
    """Host: the image of W[n, k] = D[n, k // 32] * s[n, k] + O[n, k // 32] from ``s`` int [N, K] (signed: int4 in
    [-8, 7] with ``bits`` 4, int8 with 8) and ``d``, ``o`` int16 [N, K / 32] (e.g. ``golden.models.qlinear.
    BlockInts``). ``ValueError`` names a bad shape or value."""
    s = np.asarray(s, dtype=np.int64)
    if bits not in (4, 8):
        raise ValueError(f"bits must be 4 (Q4_0 / Q4_1 codes) or 8 (Q8_0), got {bits!r}")
    if s.ndim != 2 or s.shape[1] % BLOCK:
        raise ValueError(f"s must be [N, K] with K a multiple of {BLOCK}, got {s.shape}")
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if s.size and (s.min() < lo or s.max() > hi):
        raise ValueError(f"s must be in [{lo}, {hi}] (signed {bits} bit), got {int(s.min() if s.min() < lo else s.max())}")
    n, k = s.shape
    if np.shape(d) != (n, k // BLOCK) or np.shape(o) != (n, k // BLOCK):
        raise ValueError(f"d and o must be [N, K / 32] = [{n}, {k // BLOCK}], got {np.shape(d)} and {np.shape(o)}")
    codes = pack_b_tile(s.T, bits, k_packed=bits == 4)
    return BlockWeightImage(codes=np.ascontiguousarray(codes), records=pack_block_records(np.asarray(d).T,
                                                                                          np.asarray(o).T), bits=bits)


def dma_extent(instr) -> tuple[int, int]:
    """External bytes [start, end) a DMA touches (rows are increasing, so this covers every byte)."""
    start = instr.ext_addr
    return start, start + (instr.rows - 1) * instr.ext_stride + instr.row_bytes


def footprint(cfg: NPUConfig, instr: Instr) -> list[Access]:
    """Every memory range the instruction reads or writes (for FENCE/hazard analysis; local rows incl. padding)."""
    if isinstance(instr, (DmaLoad, DmaStore)):
        lo, hi = dma_extent(instr)
        local_hi = instr.local_addr + instr.rows * cfg.local_stride(instr.mem, instr.row_bytes)
        load = isinstance(instr, DmaLoad)
        return [Access("ext", lo, hi, not load), Access(instr.mem, instr.local_addr, local_hi, load)]
    if isinstance(instr, MatMul):
        a_bits, b_bits = PRECISION_MODES[instr.mode].act_bits, b_elem_bits(instr.mode, instr.b16)
        a_rows, a_rb = a_tile_shape(instr.m, instr.k, a_bits)
        b_rows, b_rb = b_tile_shape(instr.k, instr.n, b_bits, transposed=bool(instr.b_trans),
                                    k_packed=b_k_packed(instr.mode, instr.blocks))
        sc = cfg.local_stride("acc", 4 * instr.n)
        b_hi = instr.b_addr + b_rows * cfg.local_stride("spad", b_rb)
        if instr.blocks:    # the block records right after the codes (the accumulator extension shares acc's indices)
            r_rows, r_rb = block_records_shape(instr.k, instr.n)
            b_hi += r_rows * cfg.local_stride("spad", r_rb)
        return [Access("spad", instr.a_addr, instr.a_addr + a_rows * cfg.local_stride("spad", a_rb), False),
                Access("spad", instr.b_addr, b_hi, False),
                Access("acc", instr.acc_addr, instr.acc_addr + instr.m * sc, True)]
    if isinstance(instr, VecRequant):
        ob = instr.out_bytes
        p = instr.param_page * PARAM_PAGE_BYTES
        bias = [Access("spad", instr.bias_addr, instr.bias_addr + instr.n * REQUANT_BIAS_BYTES, False)] \
            if instr.bias else [Access("spad", instr.bias_addr, instr.bias_addr + instr.m, False)] \
            if instr.row_shift else []
        return [Access("acc", instr.src_addr, instr.src_addr + instr.m * cfg.local_stride("acc", 4 * instr.n), False),
                Access("spad", p, p + instr.n * REQUANT_PARAM_BYTES, False), *bias,
                Access("spad", instr.dst_addr, instr.dst_addr + instr.m * cfg.local_stride("spad", ob * instr.n), True)]
    if isinstance(instr, VecOp):
        spec = by_name(instr.op)
        src_b, src2_b, dst_b = spec.elem_bytes(instr)       # wide softmax / residual rows: 2 or 4 bytes per element

        def rows(elem_bytes: int) -> int:
            return instr.m * cfg.local_stride("spad", instr.n * elem_bytes)
        p = instr.param_page * PARAM_PAGE_BYTES
        out = [Access("spad", instr.src_addr, instr.src_addr + rows(src_b), False)]
        if spec.operands == 2:
            out.append(Access("spad", instr.src2_addr, instr.src2_addr + rows(src2_b), False))
        out += [Access("spad", p + lo, p + hi, False) for lo, hi in spec.param_ranges(instr)]
        out += [Access("spad", lo, hi, True) for lo, hi in spec.side_writes(instr)]     # the token scale's k_r
        out += [Access("spad", instr.dst_addr, instr.dst_addr + rows(dst_b), True)]
        return out
    return []


# -- parameter records as NumPy arrays --------------------------------------------------------------------------
def pack_records(record: Record, **columns) -> np.ndarray:
    """uint8 [N * record.nbytes]: record i holds ``columns[field][i]`` in every field (values already checked by
    the caller; they are masked to the field widths). Records of at most 8 bytes."""
    if record.nbytes > 8:
        raise ValueError(f"{record.name} is {record.nbytes} bytes; pack_records handles records of <= 8 bytes")
    cols = {f.name: np.asarray(columns[f.name], dtype=np.int64).ravel() for f in record.fields}
    n = len(next(iter(cols.values())))
    words = np.zeros(n, dtype=np.uint64)
    for f in record.fields:
        words |= (cols[f.name] & f.mask).astype(np.uint64) << np.uint64(f.lsb)
    return words.astype("<u8").view(np.uint8).reshape(n, 8)[:, :record.nbytes].ravel().copy()


def read_records(record: Record, raw) -> dict[str, np.ndarray]:
    """Inverse of :func:`pack_records`: field -> int64 [N] (bits no field covers ignored, as the hardware does)."""
    raw = np.ascontiguousarray(np.asarray(raw, dtype=np.uint8))
    if raw.size % record.nbytes:
        raise ValueError(f"{record.name} records are {record.nbytes} bytes each, got {raw.size} bytes")
    padded = np.zeros((raw.size // record.nbytes, 8), dtype=np.uint8)
    padded[:, :record.nbytes] = raw.reshape(-1, record.nbytes)
    words = padded.view("<u8").ravel().astype(np.uint64)
    out = {}
    for f in record.fields:
        v = ((words >> np.uint64(f.lsb)) & np.uint64(f.mask)).astype(np.int64)
        out[f.name] = np.where(v >= 1 << (f.width - 1), v - (1 << f.width), v) if f.signed else v
    return out


def pack_requant_params(multiplier, shift) -> np.ndarray:
    """Per-channel (multiplier, shift) -> uint8 [N * 8]: one little-endian 64-bit record per channel with
    ``multiplier`` in bits [0, 31) and ``shift`` (signed 7 bit) in bits [31, 38); bits [38, 64) are 0
    (``spec.vector_ops.REQUANT_RECORD``)."""
    mult = np.asarray(multiplier, dtype=np.int64).ravel()
    sh = np.asarray(shift, dtype=np.int64).ravel()
    if mult.shape != sh.shape:
        raise ValueError(f"multiplier and shift need equal lengths, got {mult.size} and {sh.size}")
    for name, v in (("multiplier", mult), ("shift", sh)):
        f = REQUANT_RECORD.field(name)
        if v.size and (v.min() < f.lo or v.max() > f.hi):
            bad = int(v.min() if v.min() < f.lo else v.max())
            what = f"fit {f.width} signed bits" if f.signed else "be in"
            raise ValueError(f"{name} must {what} [{f.lo}, {f.hi}], got {bad}")
    return pack_records(REQUANT_RECORD, multiplier=mult, shift=sh)


def read_requant_params(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`pack_requant_params` (bits [38, 64) ignored, as the hardware does)."""
    rec = read_records(REQUANT_RECORD, raw)
    return rec["multiplier"], rec["shift"]
