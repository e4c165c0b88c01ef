"""The NPU command ISA's records: opcodes, execution units, status codes, one frozen dataclass per instruction with
its field layout and range checks, and the per-operator rules of the vector instructions.

The ISA overview and the word-level encode/decode are :mod:`npuforge.spec.isa` (which re-exports this module: import
from there); the field machinery is :mod:`npuforge.spec.isa_fields`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, fields
from typing import ClassVar, Union

from npuforge.spec.block_scale import b16_error, block_error
from npuforge.spec.dataflow import DATAFLOWS as RUN_DATAFLOWS
from npuforge.spec.isa_fields import ADDR_BITS, TILE_MAX, Field, InstrBase, addr_field, tile_field
from npuforge.spec.precision import MODE_BITS, MODE_CODES, MODE_NAMES, PRECISION_MODES
from npuforge.spec.vector_ops import (REQUANT_RECORD, RESIDUAL_SHIFT_MAX, RESIDUAL_SHIFT_MIN, ROPE_ENTRY,
                                      ROPE_MAX_HEAD_DIM, ROPE_POSITIONS, TABLE_ENTRIES, TABLE_ENTRY,
                                      VEC_HEADER_BYTES, VEC_OPS as _VEC_OP_NAMES, VEC_RECORD_BYTES, VECTOR_OPS,
                                      by_name as _vec_op, by_opcode as _vec_op_of, rope_positions)

__all__ = [
    "Opcode", "Unit", "ErrorCode", "MODES", "DATAFLOWS", "MEMS", "VEC_OPS", "INSTR_BYTES", "ADDR_BITS",
    "TILE_MAX", "REQUANT_PARAM_BYTES", "REQUANT_BIAS_BYTES", "PARAM_PAGE_BYTES", "VEC_EXECUTABLE", "ACT_TABLE_BYTES",
    "VEC_RECORD_BYTES", "RESIDUAL_SHIFT_MIN", "RESIDUAL_SHIFT_MAX", "VEC_HEADER_BYTES", "NORM_CHANNEL_BYTES",
    "ROPE_ENTRY_BYTES", "ROPE_MAX_HEAD_DIM", "ROPE_POSITIONS", "vec_static_error", "vec_param_bytes",
    "vec_param_ranges", "rope_positions", "Field", "VECTOR_OPS",
    "Nop", "Halt", "Fence", "DmaLoad", "DmaStore", "MatMul", "VecRequant", "VecOp", "Instr", "INSTR_CLASSES",
    "FORMATS", "opcode_of", "unit_of", "instr_fields",
]

INSTR_BYTES = 16
PARAM_PAGE_BYTES = 256  #: vector parameter blocks start at param_page * 256 in the scratchpad
REQUANT_PARAM_BYTES = REQUANT_RECORD.nbytes  #: one per-channel requant record (64-bit word, see docs/isa.md)
REQUANT_BIAS_BYTES = 4  #: one per-channel VEC_REQUANT bias: int32 little-endian, channel c at bias_addr + 4 c

MODES = MODE_NAMES                 #: MATMUL.mode names, in code order (spec.precision; codes 4..6 are reserved)
DATAFLOWS = RUN_DATAFLOWS          #: MATMUL.dataflow encodings 0 ws, 1 os (spec.dataflow)
MEMS = ("spad", "acc")             #: DMA local memory encodings 0, 1
#: Vector operators of the shared vector format (opcodes 0x31..0x37, in this order; spec.vector_ops).
VEC_OPS = _VEC_OP_NAMES
#: The vector operators an NPU can be generated to execute (``NPUConfig.vector_ops``), in opcode order: all seven.
#: One left out of an NPU's ``vector_ops`` decodes but executes as ILLEGAL_INSTRUCTION.
VEC_EXECUTABLE = VEC_OPS
ACT_TABLE_BYTES = TABLE_ENTRIES * TABLE_ENTRY.nbytes   #: vec.act: one int8 table, entry x + 128, at param_page * 256
#: Bytes per channel after the norm header: LayerNorm (G int16, B int48) = 8, RMSNorm (G int16) = 2.
NORM_CHANNEL_BYTES = {op.name: op.item_bytes for op in VECTOR_OPS if op.items == "channels"}
ROPE_ENTRY_BYTES = ROPE_ENTRY.nbytes     #: one RoPE table entry: cos int16, sin int16 (Q1.frac_bits)

#: The opcodes (0x00 is deliberately illegal: a controller that runs into zeroed memory traps instead of spinning);
#: the vector operators' come from their descriptors (spec.vector_ops: 0x31 + position).
Opcode = enum.IntEnum("Opcode", [("NOP", 0x01), ("HALT", 0x02), ("FENCE", 0x03), ("DMA_LOAD", 0x10),
                                 ("DMA_STORE", 0x11), ("MATMUL", 0x20), ("VEC_REQUANT", 0x30)]
                      + [(f"VEC_{op.name.upper()}", op.opcode) for op in VECTOR_OPS], module=__name__)


_VEC_OPCODE = {op.name: Opcode(op.opcode) for op in VECTOR_OPS}


class Unit(enum.IntEnum):
    """Execution units; also the FENCE mask bit positions."""
    LOAD = 0
    STORE = 1
    MATRIX = 2
    VECTOR = 3


class ErrorCode(enum.IntEnum):
    """Program status codes (what the controller writes to the status register; 4 bits)."""
    NONE = 0                 #: halted normally
    ILLEGAL_INSTRUCTION = 1  #: undecodable word, reserved opcode, or a mode/dataflow this NPU was not built with
    DMA_WINDOW = 2           #: a DMA's external extent is not inside one window with the needed permission
    LOCAL_RANGE = 3          #: a local (spad/acc) operand is misaligned or runs past the end of its memory
    BUS_ERROR = 4            #: AXI SLVERR/DECERR (in the simulator: an address beyond the memory image)
    BAD_PARAM = 5            #: a parameter record out of range (e.g. requant multiplier < 2^30, norm gamma_shift)
    PROGRAM_OVERRUN = 6      #: the command stream ended without HALT
    HAZARD = 7               #: simulator only: two units touch the same bytes with no FENCE between them


@dataclass(frozen=True)
class Nop(InstrBase):
    """No operation."""
    OPCODE: ClassVar[Opcode] = Opcode.NOP
    MNEMONIC: ClassVar[str] = "nop"


@dataclass(frozen=True)
class Halt(InstrBase):
    """Wait for every unit to drain, then stop with status DONE (error code NONE)."""
    OPCODE: ClassVar[Opcode] = Opcode.HALT
    MNEMONIC: ClassVar[str] = "halt"


_COUNT_MAX = 255


@dataclass(frozen=True)
class Fence(InstrBase):
    """Block issue until each given unit has at most that many instructions outstanding (None: do not wait).

    ``Fence(load=0)`` waits for every issued DMA load; ``Fence(matrix=1)`` lets the newest MATMUL keep running.
    """
    OPCODE: ClassVar[Opcode] = Opcode.FENCE
    MNEMONIC: ClassVar[str] = "fence"
    load: int | None = None
    store: int | None = None
    matrix: int | None = None
    vector: int | None = None

    UNIT_FIELDS: ClassVar[tuple[str, ...]] = ("load", "store", "matrix", "vector")
    # Raw layout: w0[8 + u] = wait enable of unit u, w1[8u + 7 : 8u] = its count (0 when disabled).
    FIELDS: ClassVar[tuple[Field, ...]] = tuple(
        [Field(f"{u}_en", 0, 8 + i, 1, 0, 1, doc=f"1: wait on the {u.upper()} unit") for i, u in
         enumerate(("load", "store", "matrix", "vector"))]
        + [Field(f"{u}_count", 1, 8 * i, 8, 0, _COUNT_MAX, doc=f"max outstanding {u.upper()} instructions")
           for i, u in enumerate(("load", "store", "matrix", "vector"))])

    def __post_init__(self) -> None:
        for u in self.UNIT_FIELDS:
            v = getattr(self, u)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= _COUNT_MAX:
                raise ValueError(f"Fence.{u} must be None or an integer in [0, {_COUNT_MAX}], got {v!r}")

    def raw_fields(self) -> dict[str, int]:
        raw = {}
        for u in self.UNIT_FIELDS:
            v = getattr(self, u)
            raw[f"{u}_en"] = int(v is not None)
            raw[f"{u}_count"] = 0 if v is None else v
        return raw

    @classmethod
    def from_raw(cls, raw: dict[str, int]) -> "Fence":
        kwargs = {}
        for u in cls.UNIT_FIELDS:
            if raw[f"{u}_en"]:
                kwargs[u] = raw[f"{u}_count"]
            elif raw[f"{u}_count"]:
                raise ValueError(f"Fence.{u}_count must be 0 when {u}_en is 0, got {raw[f'{u}_count']}")
        return cls(**kwargs)

    def waits(self) -> dict[Unit, int]:
        return {Unit[u.upper()]: getattr(self, u) for u in self.UNIT_FIELDS if getattr(self, u) is not None}


_DMA_FIELDS = (
    Field("mem", 0, 8, 1, 0, 1, enum=MEMS, doc="local memory: 0 scratchpad, 1 accumulator"),
    Field("local_addr", 0, 12, ADDR_BITS, 0, (1 << ADDR_BITS) - 1,
          doc="local byte address (aligned to the local word)"),
    Field("ext_addr", 1, 0, 32, 0, (1 << 32) - 1, doc="external byte address of row 0"),
    Field("ext_stride", 2, 0, 32, 0, (1 << 32) - 1, doc="external row-to-row stride, bytes"),
    Field("rows", 3, 0, 16, 1, 65535, doc="number of rows"),
    Field("row_bytes", 3, 16, 16, 1, 65535, doc="bytes per row"),
)


@dataclass(frozen=True)
class _DmaTransfer(InstrBase):
    """The DMA descriptor both transfer directions share (the fields of :data:`_DMA_FIELDS`)."""
    FIELDS: ClassVar[tuple[Field, ...]] = _DMA_FIELDS
    mem: str
    local_addr: int
    ext_addr: int
    ext_stride: int
    rows: int
    row_bytes: int


@dataclass(frozen=True)
class DmaLoad(_DmaTransfer):
    """External -> local: ``rows`` rows of ``row_bytes`` bytes; local rows packed at the local-word stride."""
    OPCODE: ClassVar[Opcode] = Opcode.DMA_LOAD
    MNEMONIC: ClassVar[str] = "dma.load"
    UNIT: ClassVar[Unit] = Unit.LOAD


@dataclass(frozen=True)
class DmaStore(_DmaTransfer):
    """Local -> external, same descriptor as :class:`DmaLoad`."""
    OPCODE: ClassVar[Opcode] = Opcode.DMA_STORE
    MNEMONIC: ClassVar[str] = "dma.store"
    UNIT: ClassVar[Unit] = Unit.STORE


@dataclass(frozen=True)
class MatMul(InstrBase):
    """acc[m, n] (+)= A[m, k] @ B[k, n]; A and B tiles in the scratchpad, the int32 result in the accumulator.

    ``b_trans = 1``: the operand at ``b_addr`` is B^T [n, k] row-major (n rows of k bytes), so the result is
    A @ (stored)^T: Q.K^T with K as the K projection and the KV cache store it. Weight-stationary, int8 B only.

    ``blocks = 1``: block-scaled weights (``spec.block_scale``): B holds codes s, the block records (D, O int16 per
    block of 32 K values and column) follow the B tile, and the result is the 48-bit ``A @ (D s + O)`` (low 32 bits
    at ``acc_addr``, high 16 in the accumulator extension). Modes w4a16 / w8a16, ws, k a multiple of 32.

    ``b16 = 1 / 2`` (an int16 B: the int16 K / V caches of the ``*-kv16`` schemes, ``spec.block_scale.B16_PLANES``):
    the operand at ``b_addr`` holds int16 elements (B [k, n] rows of 2n bytes, or with ``b_trans`` B^T [n, k] rows of
    2k bytes) and the MATMUL multiplies A by one byte plane of it: 1 the high bytes times 256, 2 the low bytes
    (unsigned, 0..255), into the 48-bit accumulator (as ``blocks``), so ``b16 = 1`` then ``b16 = 2`` with
    ``accumulate`` gives ``A @ B`` exactly. Mode w8a16, ws, ``blocks = 0``.
    """
    OPCODE: ClassVar[Opcode] = Opcode.MATMUL
    MNEMONIC: ClassVar[str] = "matmul"
    UNIT: ClassVar[Unit] = Unit.MATRIX
    FIELDS: ClassVar[tuple[Field, ...]] = (
        # 3 bits: [1:0] at w0[9:8] where the 2-bit field always was, bit 2 at w0[12] (spec.precision encoding).
        Field("mode", 0, 8, MODE_BITS, 0, (1 << MODE_BITS) - 1, enum=MODES, hi_lsb=12, low_width=2,
              codes=tuple(MODE_CODES[n] for n in MODES),
              doc="int8 x int8, w4a8 int4 weight x int8, int4 x int4, w8a16 int8 weight x int16, "
                  "w4a16 int4 weight x int16; 4..6 reserved"),
        Field("dataflow", 0, 10, 1, 0, 1, enum=DATAFLOWS, doc="0 weight-stationary, 1 output-stationary"),
        Field("accumulate", 0, 11, 1, 0, 1, doc="1: add to the accumulator, 0: overwrite it"),
        tile_field("m", 0, "rows of A and of the result, 1..4095"),
        addr_field("a_addr", 1, "scratchpad byte address of A [m, k] (aligned to the scratchpad word)"),
        tile_field("k", 1, "reduction length, 1..4095"),
        addr_field("b_addr", 2, "scratchpad byte address of B [k, n] (aligned to the scratchpad word)"),
        tile_field("n", 2, "columns of B and of the result, 1..4095"),
        addr_field("acc_addr", 3, "accumulator byte address of the int32 result [m, n] (aligned to the acc word)"),
        Field("b_trans", 0, 13, 1, 0, 1,
              doc="1: B is stored transposed, [n, k] row-major (the K matrix of Q.K^T); ws and an int8 B only"),
        Field("blocks", 0, 14, 1, 0, 1,
              doc="1: block-scaled B (codes, then D/O records per block of 32 K values after the B tile); 48-bit "
                  "result; w4a16 / w8a16, ws, k a multiple of 32 (spec.block_scale)"),
        Field("b16", 0, 15, 2, 0, 2,
              doc="int16 B (2 bytes per element, also with b_trans), one byte plane: 1 high byte x 256, 2 low byte "
                  "(unsigned); 48-bit result; w8a16, ws, blocks 0; 3 reserved"),
    )
    mode: str
    dataflow: str
    accumulate: int
    m: int
    k: int
    n: int
    a_addr: int
    b_addr: int
    acc_addr: int
    b_trans: int = 0
    blocks: int = 0
    b16: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.b16:
            why = b16_error(self.mode, self.dataflow, self.blocks)
            if why is not None:
                raise ValueError(why)
        if self.blocks:
            why = block_error(self.mode, self.dataflow, self.k, self.b_trans)
            if why is not None:
                raise ValueError(why)
        if self.b_trans and (self.dataflow != "ws" or PRECISION_MODES[self.mode].weight_bits != 8):
            raise ValueError(f"MatMul.b_trans needs dataflow ws and a mode with int8 B (int8, w8a16), got "
                             f"mode {self.mode} dataflow {self.dataflow}")


@dataclass(frozen=True)
class VecRequant(InstrBase):
    """Scratchpad int8/int16 [m, n] = requantize(accumulator int32 [m, n] (+ bias[n])) with per-channel (column)
    records. ``bias = 1``: the int32 bias of channel c (at scratchpad ``bias_addr + 4 c``) is added to every
    accumulator of column c in 33 bits (no wrap, no saturation) before the Q31 multiply; ``bias_addr`` must be 0
    otherwise. ``wide = 1``: the input is the 48-bit result of a block-scaled MATMUL (low word at ``src_addr``, high
    16 bits in the accumulator extension), requantized exactly (bias added in 49 bits; ``spec.block_scale``).
    ``row_shift = 1`` (``bias`` must be 0): ``bias_addr`` is the scratchpad byte address of ``m`` bytes k_r (uint8,
    the per-token shifts of ``vec.rmsnorm`` flags bit 2); row r is requantized with the total right shift
    ``31 + shift[c] - k_r`` (``golden.models.intops.requant_wide(acc, M, shift - k)``, ``golden.models.qlinear.
    linear_apply`` without a bias), which must lie in [1, 62] and k_r <= ``ROW_SHIFT_MAX`` (16), else BAD_PARAM."""
    OPCODE: ClassVar[Opcode] = Opcode.VEC_REQUANT
    MNEMONIC: ClassVar[str] = "vec.requant"
    UNIT: ClassVar[Unit] = Unit.VECTOR
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("out16", 0, 8, 1, 0, 1, doc="0: int8 output, 1: int16 output"),
        Field("bias", 0, 9, 1, 0, 1, doc="1: add the int32 bias vector at bias_addr before the requant"),
        Field("out32", 0, 10, 1, 0, 1, doc="1: int32 output (out16 must be 0)"),
        Field("wide", 0, 11, 1, 0, 1,
              doc="1: 48-bit input (int32 word + accumulator extension) of a block-scaled MATMUL"),
        Field("row_shift", 0, 12, 1, 0, 1,
              doc="1: per-row shifts k_r (m uint8 at bias_addr) subtracted from every total shift; bias must be 0"),
        Field("zero_point", 0, 16, 16, -(1 << 15), (1 << 15) - 1, signed=True,
              doc="output zero point (must fit the output type at run time)"),
        addr_field("src_addr", 1, "accumulator byte address of the int32 input"),
        tile_field("m", 1, "rows, 1..4095"),
        addr_field("dst_addr", 2, "scratchpad byte address of the output"),
        tile_field("n", 2, "columns (channels), 1..4095"),
        addr_field("bias_addr", 3, "scratchpad byte address of the n int32 biases (bias = 1) or of the m uint8 "
                              "row shifts (row_shift = 1), aligned to the scratchpad word; else 0"),
        Field("param_page", 3, 20, 12, 0, (1 << 12) - 1,
              doc="requant records at scratchpad byte param_page * 256, 8 bytes per channel"),
    )
    m: int
    n: int
    src_addr: int
    dst_addr: int
    param_page: int
    zero_point: int = 0
    out16: int = 0
    bias: int = 0
    bias_addr: int = 0
    out32: int = 0
    wide: int = 0
    row_shift: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.bias and self.row_shift:
            raise ValueError("VecRequant.bias and row_shift are exclusive (bias_addr holds one vector), got both set")
        if not self.bias and not self.row_shift and self.bias_addr:
            raise ValueError(f"VecRequant.bias_addr must be 0 when bias and row_shift are 0, got {self.bias_addr}")
        if self.out16 and self.out32:
            raise ValueError("VecRequant.out16 and out32 are exclusive (one output width), got both set")

    @property
    def out_bytes(self) -> int:
        """Bytes per output element: 1 (int8), 2 (int16) or 4 (int32)."""
        return 4 if self.out32 else 2 if self.out16 else 1


@dataclass(frozen=True)
class VecOp(InstrBase):
    """A vector operator on scratchpad rows (shared format, opcode ``0x31 + VEC_OPS.index(op)``).

    ``src`` [m, n] (and ``src2`` [m, n] for residual/gate) -> ``dst`` [m, n], int8 (softmax: int8 / int16 / int32
    scores and uint8 / Q0.15 int16 outputs by its flags, ``VectorOp.elem_bytes``), each operand's rows at the
    scratchpad-word stride of its row bytes; ``flags`` and the signed ``imm`` are operator-specific, the parameter block (table or record) starts
    at scratchpad byte ``param_page * 256``. Executed: ``act`` (flags bit 0: GELU 0 / SiLU 1 table slot, 256-byte
    table), ``residual`` (imm = total shift 1..62, record: two 31-bit multipliers; flags bit 0: the int32 residual stream's
    add), ``gate`` (record in the
    requant format; flags bit 0 int16 operands, bit 1 int16 result, bit 2 the exact int32 product, no record),
    ``softmax`` (flags bit 0 causal with imm = row offset, bits [2:1] score width, bit 3 Q0.15
    output, bit 4 padding mask; record: the exp multiplier / shift in the requant format and valid_len), ``layernorm`` / ``rmsnorm`` (16-byte header + one word per channel; rmsnorm flags bit 2: the
    token scale only, int16 rows of ``token_shift`` and k_r bytes at ``src2_addr``, no block),
    ``rope`` (flags bits [5:0] = heads - 1, bit 6 int16 rows, bit 7 int16 results; imm = first position; header +
    cos/sin table). See docs/isa.md and
    :func:`vec_static_error` for the per-operator rules.
    """
    OPCODE: ClassVar[Opcode] = Opcode.VEC_SOFTMAX  # per instance: see opcode_of
    MNEMONIC: ClassVar[str] = "vec"
    UNIT: ClassVar[Unit] = Unit.VECTOR
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("flags", 0, 8, 8, 0, 255,
              doc="operator-specific flags (act: bit 0 = 0 GELU / 1 SiLU, bit 1 16-bit interpolated table; softmax: bit 0 causal, bits [2:1] scores "
                  "int8 / int16 / int32, bit 3 Q0.15 int16 output, bit 4 padding mask; residual: bit 0 the int32 "
                  "residual stream, bits [2:1] / [4:3] src / src2 widths, bit 5 int32 dst; layernorm / rmsnorm: bit 0 int32 "
                  "rows, bit 1 int16 dst, rmsnorm bit 2 token scale only; gate: bit 0 int16 src / src2, bit 1 int16 dst, bit 2 "
                  "exact int32 product; rope: bits [5:0] heads - 1, bit 6 int16 src, bit 7 int16 dst; else 0)"),
        Field("imm", 0, 16, 16, -(1 << 15), (1 << 15) - 1, signed=True,
              doc="operator-specific immediate (residual: total right shift 1..62; softmax: causal row offset; "
                  "rope: position of row 0)"),
        addr_field("src_addr", 1, "scratchpad byte address of the input [m, n] (int8; softmax: by flags)"),
        tile_field("m", 1, "rows, 1..4095"),
        addr_field("dst_addr", 2, "scratchpad byte address of the output"),
        tile_field("n", 2, "row length, 1..4095"),
        addr_field("src2_addr", 3, "scratchpad byte address of the second operand (residual, gate) or of the m k_r "
                               "bytes (rmsnorm token scale), else 0"),
        Field("param_page", 3, 20, 12, 0, (1 << 12) - 1,
              doc="table / record at scratchpad byte param_page * 256"),
    )
    op: str
    m: int
    n: int
    src_addr: int
    dst_addr: int
    src2_addr: int = 0
    param_page: int = 0
    flags: int = 0
    imm: int = 0

    def __post_init__(self) -> None:
        if self.op not in VEC_OPS:
            raise ValueError(f"VecOp.op must be one of {', '.join(VEC_OPS)}, got {self.op!r}")
        super().__post_init__()

    @classmethod
    def from_raw_op(cls, opcode: int, raw: dict[str, int]) -> "VecOp":
        kw = {}
        for f in cls.FIELDS:
            v = raw[f.name]
            kw[f.name] = v - (1 << f.width) if f.signed and v >> (f.width - 1) else v
        return cls(op=_vec_op_of(opcode).name, **kw)


Instr = Union[Nop, Halt, Fence, DmaLoad, DmaStore, MatMul, VecRequant, VecOp]

#: Opcode -> instruction record.
INSTR_CLASSES: dict[Opcode, type] = {Opcode.NOP: Nop, Opcode.HALT: Halt, Opcode.FENCE: Fence,
                                     Opcode.DMA_LOAD: DmaLoad, Opcode.DMA_STORE: DmaStore, Opcode.MATMUL: MatMul,
                                     Opcode.VEC_REQUANT: VecRequant}
for _op in _VEC_OPCODE.values():
    INSTR_CLASSES[_op] = VecOp

#: Opcode -> field layout (for docs and the controller's decoder).
FORMATS: dict[Opcode, tuple[Field, ...]] = {op: cls.FIELDS for op, cls in INSTR_CLASSES.items()}


def vec_static_error(instr: VecOp, lanes: int | None = None) -> str | None:
    """Why an executable vector instruction is ILLEGAL_INSTRUCTION by its fields alone (None if it is not).

    Operator-specific reserved values (``spec.vector_ops``, each descriptor's ``rules``): ``act`` takes flags 0..3 (bit 1: the 16-bit interpolated table),
    imm 0 and src2_addr 0; ``softmax`` flags bits [7:5] 0 and score width code (bits [2:1]) 0..2, imm >= 0 (the causal row offset; 0 unless causal) and
    src2_addr 0; ``residual`` flags 0 or (wide, bit 0) bits [7:6] 0 and width codes 0..2; ``gate`` flags 0..3 (bit 0 int16
    operands, bit 1 int16 result) or 5 (the exact int32 product) and imm 0; ``layernorm`` / ``rmsnorm`` flags 0..3, imm 0,
    src2_addr 0 (``rmsnorm`` also flags 7, the token scale only: imm 0 and param_page 0, src2_addr the k bytes); ``rope`` imm >= 0 (the first position), src2_addr 0, n even and <= :data:`ROPE_MAX_HEAD_DIM`,
    m <= :data:`ROPE_POSITIONS` * heads (heads = flags bits [5:0] + 1) and, given the NPU's vector ``lanes``
    (``min(vector_lanes, word bytes)``), n a multiple of 2 * lanes (each half row whole beats).
    """
    if not isinstance(instr, VecOp):
        raise ValueError(f"not a vector instruction: {instr!r}")
    return _vec_op(instr.op).static_error(instr, lanes)


def vec_param_bytes(op: str, n: int = 1) -> int:
    """Bytes of the parameter block an executable vector operator reads at ``param_page * 256`` (norms: for a
    row of ``n`` channels; rope: the header only, see :func:`vec_param_ranges` for the table rows it reads)."""
    return _vec_op(op).param_bytes(n)


def vec_param_ranges(instr: VecOp) -> list[tuple[int, int]]:
    """Byte ranges ``[lo, hi)`` relative to ``param_page * 256`` that the instruction reads. vec.rope: the header
    and the table rows of positions ``imm .. imm + rope_positions - 1`` (row p at ``16 + 2 n p``)."""
    return _vec_op(instr.op).param_ranges(instr)


def opcode_of(instr: Instr) -> Opcode:
    """The opcode of an instruction (a vector operator's from its ``op``)."""
    return _VEC_OPCODE[instr.op] if isinstance(instr, VecOp) else instr.OPCODE


def unit_of(instr: Instr) -> Unit | None:
    """The execution unit of an instruction (None for NOP, HALT, FENCE, which the controller handles itself)."""
    return instr.UNIT


def instr_fields(instr: Instr) -> dict:
    """The user-visible fields of an instruction, in declaration order."""
    return {f.name: getattr(instr, f.name) for f in fields(instr)}
