"""The NPU command ISA: one dataclass per instruction, binary encode/decode with range checks.

Every instruction is 128 bits = four little-endian 32-bit words ``w0..w3`` (16 bytes, ``w0`` at the lowest
address). The opcode is always ``w0[7:0]``; every other field sits at a fixed word/bit position (tables in
``docs/isa.md``, generated from :data:`FORMATS`). Bits not covered by a field are reserved and must be 0:
:func:`decode` raises ``ValueError`` on a set reserved bit, an unknown opcode, an out-of-range enumeration or a
zero in a field that must be >= 1, which is what the controller reports as ``ILLEGAL_INSTRUCTION``.

Addresses inside the NPU (scratchpad ``spad``, accumulator ``acc``) are byte addresses of 20 bits (1 MiB per
memory); external addresses and strides are 32 bits. Tile sizes ``m``, ``k``, ``n`` are 12 bits (1..4095).

Execution units (instructions to one unit start and complete in program order; different units overlap):

    LOAD    DMA_LOAD            (AXI read channel)
    STORE   DMA_STORE           (AXI write channel)
    MATRIX  MATMUL              (PE array)
    VECTOR  VEC_*               (vector unit)

``FENCE`` blocks issue until each selected unit has at most ``count`` instructions outstanding; ``HALT`` waits
for every unit to drain and then stops with status DONE.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, fields
from typing import ClassVar, Iterable, Sequence, Union

from npuforge.spec.dataflow import DATAFLOWS as RUN_DATAFLOWS
from npuforge.spec.precision import MODE_BITS, MODE_CODES, MODE_NAMES, PRECISION_MODES
from npuforge.spec.vector_ops import (REQUANT_RECORD, RESIDUAL_SHIFT_MAX, RESIDUAL_SHIFT_MIN, ROPE_ENTRY,
                                      ROPE_MAX_HEAD_DIM, ROPE_POSITIONS, TABLE_ENTRIES, TABLE_ENTRY,
                                      VEC_HEADER_BYTES, VEC_OPS as _VEC_OP_NAMES, VEC_RECORD_BYTES, VECTOR_OPS,
                                      by_name as _vec_op, by_opcode as _vec_op_of, rope_positions)

__all__ = [
    "Opcode", "Unit", "ErrorCode", "MODES", "DATAFLOWS", "MEMS", "VEC_OPS", "INSTR_BYTES", "ADDR_BITS",
    "TILE_MAX", "REQUANT_PARAM_BYTES", "REQUANT_BIAS_BYTES", "PARAM_PAGE_BYTES", "VEC_EXECUTABLE", "ACT_TABLE_BYTES", "VEC_RECORD_BYTES",
    "RESIDUAL_SHIFT_MIN", "RESIDUAL_SHIFT_MAX", "VEC_HEADER_BYTES", "NORM_CHANNEL_BYTES", "ROPE_ENTRY_BYTES",
    "ROPE_MAX_HEAD_DIM", "ROPE_POSITIONS", "vec_static_error", "vec_param_bytes", "vec_param_ranges",
    "rope_positions", "encoding_tables", "write_docs",
    "Nop", "Halt", "Fence", "DmaLoad", "DmaStore", "MatMul", "VecRequant", "VecOp", "Instr", "FORMATS",
    "encode", "encode_words", "decode", "decode_words", "encode_program", "decode_program", "unit_of",
]

INSTR_BYTES = 16
ADDR_BITS = 20          #: local (scratchpad / accumulator) byte address width
TILE_MAX = (1 << 12) - 1  #: largest m / k / n of one MATMUL or vector instruction
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
class Field:
    """One instruction field: ``width`` bits at ``w[word][lsb + width - 1 : lsb]``.

    A split field (``hi_lsb`` set) keeps its low ``low_width`` bits at ``lsb`` and the rest at ``w[word][hi_lsb...]``:
    how a field grows without moving its neighbours. ``codes`` gives the raw value of each ``enum`` name (default:
    its index); other raw values are reserved.
    """
    name: str
    word: int
    lsb: int
    width: int
    lo: int
    hi: int
    signed: bool = False
    enum: tuple[str, ...] | None = None
    doc: str = ""
    hi_lsb: int | None = None
    low_width: int = 0
    codes: tuple[int, ...] | None = None

    @property
    def parts(self) -> list[tuple[int, int, int]]:
        """``(bit offset in the 128-bit instruction, first bit of the raw value, width)`` of each part, low first
        (one part unless the field is split): what a hardware decoder concatenates."""
        return self._parts()

    def _parts(self) -> list[tuple[int, int, int]]:
        base = 32 * self.word
        if self.hi_lsb is None:
            return [(base + self.lsb, 0, self.width)]
        return [(base + self.lsb, 0, self.low_width), (base + self.hi_lsb, self.low_width, self.width - self.low_width)]

    @property
    def mask(self) -> int:
        return sum(((1 << w) - 1) << pos for pos, _, w in self._parts())

    def place(self, raw: int) -> int:
        """The raw field value at its bit positions in the 128-bit instruction."""
        return sum(((raw >> first) & ((1 << w) - 1)) << pos for pos, first, w in self._parts())

    def extract(self, value: int) -> int:
        """The raw field value out of a 128-bit instruction."""
        return sum(((value >> pos) & ((1 << w) - 1)) << first for pos, first, w in self._parts())

    def enum_code(self, name: str) -> int:
        return self.codes[self.enum.index(name)] if self.codes is not None else self.enum.index(name)

    def enum_name(self, raw: int) -> str | None:
        """The enum name encoded by ``raw`` (None: reserved)."""
        codes = self.codes if self.codes is not None else tuple(range(len(self.enum)))
        return self.enum[codes.index(raw)] if raw in codes else None

    @property
    def bits_text(self) -> str:
        """``[hi:lo]`` of each part, high part first (docs)."""
        out = []
        for pos, _, w in reversed(self._parts()):
            lo = pos - 32 * self.word
            out.append(f"[{lo + w - 1}:{lo}]" if w > 1 else f"[{lo}]")
        return "".join(out)


def _check(cls_name: str, f: Field, value) -> int:
    """Validate a field value and return its raw (unsigned, in-field) integer."""
    if f.enum is not None:
        if value not in f.enum:
            raise ValueError(f"{cls_name}.{f.name} must be one of {', '.join(f.enum)}, got {value!r}")
        return f.enum_code(value)
    if isinstance(value, bool):
        value = int(value)
    if not isinstance(value, int):
        raise ValueError(f"{cls_name}.{f.name} must be an integer in [{f.lo}, {f.hi}], got {value!r}")
    if not f.lo <= value <= f.hi:
        raise ValueError(f"{cls_name}.{f.name} must be in [{f.lo}, {f.hi}], got {value!r}")
    return value & ((1 << f.width) - 1)


def _addr(name: str, word: int, doc: str) -> Field:
    return Field(name, word, 0, ADDR_BITS, 0, (1 << ADDR_BITS) - 1, doc=doc)


def _tile(name: str, word: int, doc: str) -> Field:
    return Field(name, word, 20, 12, 1, TILE_MAX, doc=doc)


class _Instr:
    """Mixin: validation from FIELDS, mnemonic, raw field access."""
    OPCODE: ClassVar[Opcode]
    MNEMONIC: ClassVar[str]
    UNIT: ClassVar[Unit | None] = None
    FIELDS: ClassVar[tuple[Field, ...]] = ()

    def __post_init__(self) -> None:
        for f in self.FIELDS:
            value = getattr(self, f.name)
            if isinstance(value, bool) and f.enum is None:
                object.__setattr__(self, f.name, int(value))
            _check(type(self).__name__, f, value)

    def raw_fields(self) -> dict[str, int]:
        return {f.name: _check(type(self).__name__, f, getattr(self, f.name)) for f in self.FIELDS}

    @classmethod
    def from_raw(cls, raw: dict[str, int]):
        kwargs = {}
        for f in cls.FIELDS:
            v = raw[f.name]
            if f.enum is not None:
                name = f.enum_name(v)
                if name is None:
                    valid = ", ".join(f"{f.enum_code(e)} {e}" for e in f.enum)
                    raise ValueError(f"{cls.__name__}.{f.name} encoding {v} is reserved (valid: {valid})")
                v = name
            elif f.signed and v >> (f.width - 1):
                v -= 1 << f.width
            kwargs[f.name] = v
        return cls(**kwargs)


@dataclass(frozen=True)
class Nop(_Instr):
    """No operation."""
    OPCODE: ClassVar[Opcode] = Opcode.NOP
    MNEMONIC: ClassVar[str] = "nop"


@dataclass(frozen=True)
class Halt(_Instr):
    """Wait for every unit to drain, then stop with status DONE (error code NONE)."""
    OPCODE: ClassVar[Opcode] = Opcode.HALT
    MNEMONIC: ClassVar[str] = "halt"


_COUNT_MAX = 255


@dataclass(frozen=True)
class Fence(_Instr):
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
class DmaLoad(_Instr):
    """External -> local: ``rows`` rows of ``row_bytes`` bytes; local rows packed at the local-word stride."""
    OPCODE: ClassVar[Opcode] = Opcode.DMA_LOAD
    MNEMONIC: ClassVar[str] = "dma.load"
    UNIT: ClassVar[Unit] = Unit.LOAD
    FIELDS: ClassVar[tuple[Field, ...]] = _DMA_FIELDS
    mem: str
    local_addr: int
    ext_addr: int
    ext_stride: int
    rows: int
    row_bytes: int


@dataclass(frozen=True)
class DmaStore(_Instr):
    """Local -> external, same descriptor as :class:`DmaLoad`."""
    OPCODE: ClassVar[Opcode] = Opcode.DMA_STORE
    MNEMONIC: ClassVar[str] = "dma.store"
    UNIT: ClassVar[Unit] = Unit.STORE
    FIELDS: ClassVar[tuple[Field, ...]] = _DMA_FIELDS
    mem: str
    local_addr: int
    ext_addr: int
    ext_stride: int
    rows: int
    row_bytes: int


@dataclass(frozen=True)
class MatMul(_Instr):
    """acc[m, n] (+)= A[m, k] @ B[k, n]; A and B tiles in the scratchpad, the int32 result in the accumulator.

    ``b_trans = 1``: the operand at ``b_addr`` is B^T [n, k] row-major (n rows of k bytes), so the result is
    A @ (stored)^T: Q.K^T with K as the K projection and the KV cache store it. Weight-stationary, int8 B only.
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
        _tile("m", 0, "rows of A and of the result, 1..4095"),
        _addr("a_addr", 1, "scratchpad byte address of A [m, k] (aligned to the scratchpad word)"),
        _tile("k", 1, "reduction length, 1..4095"),
        _addr("b_addr", 2, "scratchpad byte address of B [k, n] (aligned to the scratchpad word)"),
        _tile("n", 2, "columns of B and of the result, 1..4095"),
        _addr("acc_addr", 3, "accumulator byte address of the int32 result [m, n] (aligned to the acc word)"),
        Field("b_trans", 0, 13, 1, 0, 1,
              doc="1: B is stored transposed, [n, k] row-major (the K matrix of Q.K^T); ws and an int8 B only"),
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

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.b_trans and (self.dataflow != "ws" or PRECISION_MODES[self.mode].weight_bits != 8):
            raise ValueError(f"MatMul.b_trans needs dataflow ws and a mode with int8 B (int8, w8a16), got "
                             f"mode {self.mode} dataflow {self.dataflow}")


@dataclass(frozen=True)
class VecRequant(_Instr):
    """Scratchpad int8/int16 [m, n] = requantize(accumulator int32 [m, n] (+ bias[n])) with per-channel (column)
    records. ``bias = 1``: the int32 bias of channel c (at scratchpad ``bias_addr + 4 c``) is added to every
    accumulator of column c in 33 bits (no wrap, no saturation) before the Q31 multiply; ``bias_addr`` must be 0
    otherwise."""
    OPCODE: ClassVar[Opcode] = Opcode.VEC_REQUANT
    MNEMONIC: ClassVar[str] = "vec.requant"
    UNIT: ClassVar[Unit] = Unit.VECTOR
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("out16", 0, 8, 1, 0, 1, doc="0: int8 output, 1: int16 output"),
        Field("bias", 0, 9, 1, 0, 1, doc="1: add the int32 bias vector at bias_addr before the requant"),
        Field("out32", 0, 10, 1, 0, 1, doc="1: int32 output (out16 must be 0)"),
        Field("zero_point", 0, 16, 16, -(1 << 15), (1 << 15) - 1, signed=True,
              doc="output zero point (must fit the output type at run time)"),
        _addr("src_addr", 1, "accumulator byte address of the int32 input"),
        _tile("m", 1, "rows, 1..4095"),
        _addr("dst_addr", 2, "scratchpad byte address of the output"),
        _tile("n", 2, "columns (channels), 1..4095"),
        _addr("bias_addr", 3, "scratchpad byte address of the n int32 biases (aligned to the scratchpad word); "
                              "0 when bias = 0"),
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

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.bias and self.bias_addr:
            raise ValueError(f"VecRequant.bias_addr must be 0 when bias is 0, got {self.bias_addr}")
        if self.out16 and self.out32:
            raise ValueError("VecRequant.out16 and out32 are exclusive (one output width), got both set")

    @property
    def out_bytes(self) -> int:
        """Bytes per output element: 1 (int8), 2 (int16) or 4 (int32)."""
        return 4 if self.out32 else 2 if self.out16 else 1


@dataclass(frozen=True)
class VecOp(_Instr):
    """A vector operator on scratchpad rows (shared format, opcode ``0x31 + VEC_OPS.index(op)``).

    ``src`` [m, n] (and ``src2`` [m, n] for residual/gate) -> ``dst`` [m, n], int8 (softmax: int8 / int16 / int32
    scores and uint8 / Q0.15 int16 outputs by its flags, ``VectorOp.elem_bytes``), each operand's rows at the
    scratchpad-word stride of its row bytes; ``flags`` and the signed ``imm`` are operator-specific, the parameter block (table or record) starts
    at scratchpad byte ``param_page * 256``. Executed: ``act`` (flags bit 0: GELU 0 / SiLU 1 table slot, 256-byte
    table), ``residual`` (imm = total shift 1..62, record: two 31-bit multipliers; flags bit 0: the int32 residual stream's
    add), ``gate`` (record in the
    requant format), ``softmax`` (flags bit 0 causal with imm = row offset, bits [2:1] score width, bit 3 Q0.15
    output, bit 4 padding mask; record: the exp multiplier / shift in the requant format and valid_len), ``layernorm`` / ``rmsnorm`` (16-byte header + one word per channel),
    ``rope`` (flags = heads - 1, imm = first position; header + cos/sin table). See docs/isa.md and
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
                  "rows, bit 1 int16 dst; rope: heads - 1; else 0)"),
        Field("imm", 0, 16, 16, -(1 << 15), (1 << 15) - 1, signed=True,
              doc="operator-specific immediate (residual: total right shift 1..62; softmax: causal row offset; "
                  "rope: position of row 0)"),
        _addr("src_addr", 1, "scratchpad byte address of the input [m, n] (int8; softmax: by flags)"),
        _tile("m", 1, "rows, 1..4095"),
        _addr("dst_addr", 2, "scratchpad byte address of the output"),
        _tile("n", 2, "row length, 1..4095"),
        _addr("src2_addr", 3, "scratchpad byte address of the second int8 operand (residual, gate), else 0"),
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

_CLASSES: dict[Opcode, type] = {Opcode.NOP: Nop, Opcode.HALT: Halt, Opcode.FENCE: Fence,
                                Opcode.DMA_LOAD: DmaLoad, Opcode.DMA_STORE: DmaStore, Opcode.MATMUL: MatMul,
                                Opcode.VEC_REQUANT: VecRequant}
for _op in _VEC_OPCODE.values():
    _CLASSES[_op] = VecOp

#: Opcode -> field layout (for docs and the controller's decoder).
FORMATS: dict[Opcode, tuple[Field, ...]] = {op: cls.FIELDS for op, cls in _CLASSES.items()}


def vec_static_error(instr: VecOp, lanes: int | None = None) -> str | None:
    """Why an executable vector instruction is ILLEGAL_INSTRUCTION by its fields alone (None if it is not).

    Operator-specific reserved values (``spec.vector_ops``, each descriptor's ``rules``): ``act`` takes flags 0..3 (bit 1: the 16-bit interpolated table),
    imm 0 and src2_addr 0; ``softmax`` flags bits [7:5] 0 and score width code (bits [2:1]) 0..2, imm >= 0 (the causal row offset; 0 unless causal) and
    src2_addr 0; ``residual`` flags 0 or (wide, bit 0) bits [7:6] 0 and width codes 0..2; ``gate`` flags 0 and imm 0; ``layernorm`` / ``rmsnorm`` flags 0..3, imm 0,
    src2_addr 0; ``rope`` imm >= 0 (the first position), src2_addr 0, n even and <= :data:`ROPE_MAX_HEAD_DIM`,
    m <= :data:`ROPE_POSITIONS` * heads (heads = flags + 1) and, given the NPU's vector ``lanes``
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
    return _VEC_OPCODE[instr.op] if isinstance(instr, VecOp) else instr.OPCODE


def unit_of(instr: Instr) -> Unit | None:
    """The execution unit of an instruction (None for NOP, HALT, FENCE, which the controller handles itself)."""
    return instr.UNIT


def encode(instr: Instr) -> bytes:
    """16 bytes: words w0..w3, each little-endian, w0 first."""
    return b"".join(w.to_bytes(4, "little") for w in encode_words(instr))


def encode_words(instr: Instr) -> tuple[int, int, int, int]:
    if type(instr) not in set(_CLASSES.values()):
        raise ValueError(f"not an instruction: {instr!r}")
    value = int(opcode_of(instr))
    raw = instr.raw_fields()
    for f in instr.FIELDS:
        value |= f.place(raw[f.name])
    return tuple((value >> (32 * i)) & 0xFFFFFFFF for i in range(4))


def decode_words(words: Sequence[int]) -> Instr:
    """Inverse of :func:`encode_words`; ``ValueError`` for anything the controller would treat as illegal."""
    if len(words) != 4:
        raise ValueError(f"an instruction is 4 words, got {len(words)}")
    value = 0
    for i, w in enumerate(words):
        if not 0 <= w <= 0xFFFFFFFF:
            raise ValueError(f"instruction word {i} must be in [0, 0xFFFFFFFF], got {w!r}")
        value |= w << (32 * i)
    code = value & 0xFF
    try:
        op = Opcode(code)
    except ValueError:
        raise ValueError(f"opcode 0x{code:02x} is not defined (valid: "
                         f"{', '.join(f'0x{o:02x}' for o in Opcode)})") from None
    cls = _CLASSES[op]
    used = 0xFF
    for f in cls.FIELDS:
        used |= f.mask
    reserved = value & ~used & ((1 << 128) - 1)
    if reserved:
        bit = (reserved & -reserved).bit_length() - 1
        raise ValueError(f"{cls.__name__}: reserved bit w{bit // 32}[{bit % 32}] must be 0")
    raw = {f.name: f.extract(value) for f in cls.FIELDS}
    if cls is VecOp:
        instr = VecOp.from_raw_op(op, raw)
    else:
        instr = cls.from_raw(raw)
    return instr


def decode(data: bytes) -> Instr:
    if len(data) != INSTR_BYTES:
        raise ValueError(f"an instruction is {INSTR_BYTES} bytes, got {len(data)}")
    return decode_words([int.from_bytes(data[4 * i:4 * i + 4], "little") for i in range(4)])


def encode_program(program: Iterable[Instr]) -> bytes:
    return b"".join(encode(i) for i in program)


def decode_program(data: bytes) -> list[Instr]:
    """Decode a whole command stream; ``ValueError`` names the index of the first bad instruction."""
    if len(data) % INSTR_BYTES:
        raise ValueError(f"program length must be a multiple of {INSTR_BYTES} bytes, got {len(data)}")
    out = []
    for i in range(0, len(data), INSTR_BYTES):
        try:
            out.append(decode(data[i:i + INSTR_BYTES]))
        except ValueError as e:
            raise ValueError(f"instruction {i // INSTR_BYTES}: {e}") from None
    return out


def instr_fields(instr: Instr) -> dict:
    """The user-visible fields of an instruction, in declaration order."""
    return {f.name: getattr(instr, f.name) for f in fields(instr)}


def encoding_tables() -> str:
    """The "Encoding tables" section of docs/isa.md, generated from :data:`FORMATS` (Markdown)."""
    out = ["## Encoding tables", ""]
    done = set()
    for op, fmt in FORMATS.items():
        if _CLASSES[op] is VecOp:
            if VecOp in done:
                continue
            done.add(VecOp)
            opcode = f"0x{VECTOR_OPS[0].opcode:02x}..0x{VECTOR_OPS[-1].opcode:02x}"
            title = f"### {opcode} " + ", ".join(_VEC_OPCODE[op.name].name for op in VECTOR_OPS)
        else:
            title = f"### 0x{int(op):02x} {op.name}"
            opcode = f"0x{int(op):02x}"
        out += [title, "", "| field | word | bits | range | meaning |", "|---|---|---|---|---|",
                f"| opcode | w0 | [7:0] | {opcode} | |"]
        for f in fmt:
            bits = f.bits_text
            if f.enum is not None:
                rng = ", ".join(f"{f.enum_code(e)} {e}" for e in f.enum)
            else:
                rng = f"{f.lo}..{f.hi}" + (" signed" if f.signed else "")
            out.append(f"| {f.name} | w{f.word} | {bits} | {rng} | {f.doc} |")
        out += ["", "All other bits: reserved, must be 0.", ""]
    return "\n".join(out)


def write_docs(path=None) -> None:
    """Rewrite the "Encoding tables" section (the end) of docs/isa.md from :data:`FORMATS`."""
    from pathlib import Path

    path = Path(path) if path is not None else Path(__file__).resolve().parent.parent / "docs" / "isa.md"
    text = path.read_text()
    head = text[:text.index("## Encoding tables")] if "## Encoding tables" in text else text + "\n"
    path.write_text(head + encoding_tables() + "\n")


if __name__ == "__main__":
    write_docs()
