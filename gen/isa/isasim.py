"""ISA-level simulator (the second golden tier): runs an NPU program on NumPy memories exactly as the RTL should.

State: the external memory image (uint8, byte address = index), the scratchpad and the accumulator SRAM (uint8,
int32 values little-endian). Instructions execute one at a time in program order, using the golden operators
(``golden.gemm.gemm``, ``golden.requant.requantize``, ``golden.quant.unpack_int4``). For a program whose FENCEs
order every pair of conflicting accesses of different units (checked here, status HAZARD otherwise), this
sequential result is the only result the concurrent hardware can produce.

Errors never escape as exceptions: :func:`run` stops at the first faulting instruction and returns a
:class:`SimResult` with the status code the controller reports (:class:`spec.isa.ErrorCode`), the faulting
instruction index ``pc`` and, for memory faults, the faulting address. Checks of one instruction, in order:
decode (ILLEGAL_INSTRUCTION), support by this NPU (ILLEGAL_INSTRUCTION: a mode/dataflow or a vector operator it
was not generated with, or an operator's reserved flags/imm), local operands (LOCAL_RANGE), DMA windows
(DMA_WINDOW), parameters (BAD_PARAM: requant/gate records, the residual shift), the bus (BUS_ERROR). A refused
instruction changes nothing.

Vector operators (``VecOp``, int8 rows at the scratchpad-word stride, row tails written 0): ``act`` =
``golden.activations.lookup`` with the 256-byte table at ``param_page * 256``; ``residual`` =
``golden.elementwise.residual_add`` (record: :func:`pack_residual_params`, shift = ``imm``); ``gate`` =
``golden.elementwise.gate_mul`` (record: :func:`pack_requant_params` format); ``softmax`` =
``golden.softmax.softmax`` of int8 scores (input_bits 8; record: exp multiplier/shift in the requant format;
flags bit 0 causal with row offset ``imm``), uint8 probabilities stored as bytes; ``layernorm`` / ``rmsnorm`` =
``golden.norms.layernorm`` / ``rmsnorm`` (int8 in and out; block: :func:`pack_norm_params`, header checked:
var_frac_bits even and <= 28, gamma_shift in [-15, 16], else BAD_PARAM at the block address); ``rope`` =
``golden.elementwise.rope`` (block: :func:`pack_rope_params`; row i at position ``imm + i // (flags + 1)``;
frac_bits outside [1, 14] or a position past the table's: BAD_PARAM at the block address; the table rows read
running past the scratchpad: LOCAL_RANGE at the block address).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Sequence, Union

import numpy as np

from npuforge.golden.activations import lookup
from npuforge.golden.elementwise import (ROPE_FRAC_BITS_MAX, ROPE_FRAC_BITS_MIN, GateParams, ResidualParams, gate_mul,
                                residual_add, rope)
from npuforge.golden.norms import (EPS_TERM_MAX, GAMMA_SHIFT_MAX, GAMMA_SHIFT_MIN, VAR_FRAC_BITS_MAX, LayerNormParams,
                          RMSNormParams, layernorm, rmsnorm)
from npuforge.golden.gemm import MODES as GOLDEN_MODES, gemm
from npuforge.golden.softmax import SoftmaxParams, softmax
from npuforge.golden.quant import unpack_int4
from npuforge.golden.requant import Q31_MAX, Q31_MIN, SHIFT_MAX, SHIFT_MIN, requantize
from npuforge.spec.isa import (INSTR_BYTES, NORM_CHANNEL_BYTES, PARAM_PAGE_BYTES, REQUANT_PARAM_BYTES, RESIDUAL_SHIFT_MAX,
                     RESIDUAL_SHIFT_MIN, VEC_EXECUTABLE, VEC_HEADER_BYTES, DmaLoad, DmaStore,
                     ErrorCode, Fence, Halt, Instr, MatMul, Nop, Unit, VecOp, VecRequant, decode, rope_positions,
                     vec_param_ranges, vec_static_error)
from npuforge.gen.config.npu import NPUConfig

__all__ = ["Window", "Access", "SimResult", "run", "footprint", "instruction_work", "a_tile_shape", "b_tile_shape", "read_requant_params",
           "pack_requant_params", "pack_residual_params", "read_residual_params", "pack_norm_params", "read_norm_header",
           "pack_rope_params", "read_rope_header"]


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


@dataclass
class SimResult:
    """Outcome of :func:`run`.

    ``status`` is the error code (NONE after HALT); ``pc`` the index of the HALT or faulting instruction;
    ``fault_addr`` the faulting address for DMA_WINDOW / LOCAL_RANGE / BUS_ERROR (else 0); ``memory``, ``spad``,
    ``acc`` the final memories (uint8); ``stats`` totals and ``trace`` one record per executed instruction (the
    work the performance model prices).
    """
    status: ErrorCode
    pc: int
    fault_addr: int
    message: str
    memory: np.ndarray
    spad: np.ndarray
    acc: np.ndarray
    stats: dict = field(default_factory=dict)
    trace: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == ErrorCode.NONE


class _Fault(Exception):
    def __init__(self, code: ErrorCode, message: str, addr: int = 0):
        super().__init__(message)
        self.code, self.message, self.addr = code, message, addr


def a_tile_shape(m: int, k: int, a_bits: int) -> tuple[int, int]:
    """(local rows, bytes per row) of an A [m, k] tile. int8: m rows of k bytes. int4: ceil(m/2) rows of k
    bytes, byte (p, j) = A[2p, j] in the low nibble | A[2p+1, j] in the high nibble (the PE array's row-pair
    activation byte; ``golden.quant.pack_int4`` along M); the high nibbles of an odd m's last row are ignored."""
    return ((m + 1) // 2 if a_bits == 4 else m), k


def b_tile_shape(k: int, n: int, b_bits: int) -> tuple[int, int]:
    """(local rows, bytes per row) of a B [k, n] tile: k rows of n bytes (int8) or ceil(n/2) bytes (int4,
    byte (k, i) = B[k, 2i] low nibble | B[k, 2i+1] high nibble, ``golden.quant.pack_int4`` along N)."""
    return k, ((n + 1) // 2 if b_bits == 4 else n)


def _dma_extent(instr) -> tuple[int, int]:
    """External bytes [start, end) a DMA touches (rows are increasing, so this covers every byte)."""
    start = instr.ext_addr
    return start, start + (instr.rows - 1) * instr.ext_stride + instr.row_bytes


def footprint(cfg: NPUConfig, instr: Instr) -> list[Access]:
    """Every memory range the instruction reads or writes (for FENCE/hazard analysis; local rows incl. padding)."""
    if isinstance(instr, (DmaLoad, DmaStore)):
        lo, hi = _dma_extent(instr)
        local_hi = instr.local_addr + instr.rows * cfg.local_stride(instr.mem, instr.row_bytes)
        load = isinstance(instr, DmaLoad)
        return [Access("ext", lo, hi, not load), Access(instr.mem, instr.local_addr, local_hi, load)]
    if isinstance(instr, MatMul):
        a_bits, b_bits = GOLDEN_MODES[instr.mode]
        a_rows, a_rb = a_tile_shape(instr.m, instr.k, a_bits)
        b_rows, b_rb = b_tile_shape(instr.k, instr.n, b_bits)
        sc = cfg.local_stride("acc", 4 * instr.n)
        out = [Access("spad", instr.a_addr, instr.a_addr + a_rows * cfg.local_stride("spad", a_rb), False),
               Access("spad", instr.b_addr, instr.b_addr + b_rows * cfg.local_stride("spad", b_rb), False),
               Access("acc", instr.acc_addr, instr.acc_addr + instr.m * sc, True)]
        return out
    if isinstance(instr, VecRequant):
        ob = 2 if instr.out16 else 1
        p = instr.param_page * PARAM_PAGE_BYTES
        return [Access("acc", instr.src_addr, instr.src_addr + instr.m * cfg.local_stride("acc", 4 * instr.n), False),
                Access("spad", p, p + instr.n * REQUANT_PARAM_BYTES, False),
                Access("spad", instr.dst_addr, instr.dst_addr + instr.m * cfg.local_stride("spad", ob * instr.n), True)]
    if isinstance(instr, VecOp) and instr.op in VEC_EXECUTABLE:
        rows = instr.m * cfg.local_stride("spad", instr.n)
        p = instr.param_page * PARAM_PAGE_BYTES
        out = [Access("spad", instr.src_addr, instr.src_addr + rows, False)]
        out += [Access("spad", p + lo, p + hi, False) for lo, hi in vec_param_ranges(instr)]
        out += [Access("spad", instr.dst_addr, instr.dst_addr + rows, True)]
        if instr.op in ("residual", "gate"):
            out.insert(1, Access("spad", instr.src2_addr, instr.src2_addr + rows, False))
        return out
    return []


def instruction_work(instr: Instr) -> dict:
    """The work one instruction does, for the performance model (no data needed): ``op`` (mnemonic), ``unit``,
    and per kind ``bytes``/``rows``/``row_bytes``/``mem`` (DMA), ``m``/``k``/``n``/``macs``/``mode``/``dataflow``
    (MATMUL), ``m``/``n``/``elements`` (vector)."""
    unit = instr.UNIT.name.lower() if instr.UNIT is not None else None
    if isinstance(instr, (DmaLoad, DmaStore)):
        return {"op": instr.MNEMONIC, "unit": unit, "mem": instr.mem, "rows": instr.rows,
                "row_bytes": instr.row_bytes, "bytes": instr.rows * instr.row_bytes}
    if isinstance(instr, MatMul):
        return {"op": "matmul", "unit": unit, "mode": instr.mode, "dataflow": instr.dataflow, "m": instr.m,
                "k": instr.k, "n": instr.n, "macs": instr.m * instr.k * instr.n}
    if isinstance(instr, (VecRequant, VecOp)):
        op = "vec.requant" if isinstance(instr, VecRequant) else f"vec.{instr.op}"
        return {"op": op, "unit": unit, "m": instr.m, "n": instr.n, "elements": instr.m * instr.n}
    return {"op": instr.MNEMONIC, "unit": None}


def pack_requant_params(multiplier, shift) -> np.ndarray:
    """Per-channel (multiplier, shift) -> uint8 [N * 8]: one little-endian 64-bit record per channel with
    ``multiplier`` in bits [0, 31) and ``shift`` (signed 7 bit) in bits [31, 38); bits [38, 64) are 0."""
    mult = np.asarray(multiplier, dtype=np.int64).ravel()
    sh = np.asarray(shift, dtype=np.int64).ravel()
    if mult.shape != sh.shape:
        raise ValueError(f"multiplier and shift need equal lengths, got {mult.size} and {sh.size}")
    if mult.size and (mult.min() < 0 or mult.max() > Q31_MAX):
        raise ValueError(f"multiplier must be in [0, {Q31_MAX}], got {int(mult.min() if mult.min() < 0 else mult.max())}")
    if sh.size and (sh.min() < -64 or sh.max() > 63):
        raise ValueError(f"shift must fit 7 signed bits [-64, 63], got {int(sh.min() if sh.min() < -64 else sh.max())}")
    words = (mult.astype(np.uint64) | ((sh & 0x7F).astype(np.uint64) << np.uint64(31))).astype("<u8")
    return words.view(np.uint8).copy()


def read_requant_params(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`pack_requant_params` (bits [38, 64) ignored, as the hardware does)."""
    words = np.ascontiguousarray(raw).view("<u8").astype(np.uint64)
    mult = (words & np.uint64(Q31_MAX)).astype(np.int64)
    sh = ((words >> np.uint64(31)) & np.uint64(0x7F)).astype(np.int64)
    sh = np.where(sh >= 64, sh - 128, sh)
    return mult, sh


def pack_residual_params(a_multiplier: int, b_multiplier: int) -> np.ndarray:
    """The vec.residual record: uint8 [8], one little-endian 64-bit word with ``a_multiplier`` in bits [0, 31)
    and ``b_multiplier`` in bits [31, 62) (``golden.elementwise.ResidualParams``); bits [62, 64) are 0."""
    for name, v in (("a_multiplier", a_multiplier), ("b_multiplier", b_multiplier)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= int(v) <= Q31_MAX:
            raise ValueError(f"{name} must be an integer in [0, {Q31_MAX}], got {v!r}")
    word = int(a_multiplier) | int(b_multiplier) << 31
    return np.frombuffer(word.to_bytes(8, "little"), dtype=np.uint8).copy()


def read_residual_params(raw: np.ndarray) -> tuple[int, int]:
    """Inverse of :func:`pack_residual_params` (bits [62, 64) ignored, as the hardware does)."""
    word = int.from_bytes(bytes(np.asarray(raw, dtype=np.uint8)[:8]), "little")
    return word & Q31_MAX, (word >> 31) & Q31_MAX


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


def pack_norm_params(params) -> np.ndarray:
    """The vec.layernorm / vec.rmsnorm parameter block of ``golden.norms`` parameters (int8 in and out) -> uint8.

    Header (16 bytes): bytes [0, 8) little-endian eps_term (bits [0, 61); bits [61, 64) 0, ignored), byte 8
    var_frac_bits, byte 9 gamma_shift (int8), bytes [10, 16) 0 (ignored). Then channel c at ``16 + 8 c``
    (LayerNorm: G int16 at bytes [0, 2), B int48 at [2, 8), little-endian) or ``16 + 2 c`` (RMSNorm: G int16).
    """
    if not isinstance(params, (LayerNormParams, RMSNormParams)):
        raise ValueError(f"params must be a LayerNormParams or RMSNormParams, got {type(params).__name__}")
    if params.input_bits != 8 or params.out_bits != 8:
        raise ValueError(f"the NPU's norms take int8 in and out: input_bits and out_bits must be 8, got "
                         f"{params.input_bits} and {params.out_bits}")
    if not 0 <= params.eps_term <= EPS_TERM_MAX:
        raise ValueError(f"eps_term must be in [0, 2^61 - 1], got {params.eps_term}")
    if not 0 <= params.var_frac_bits <= 255:
        raise ValueError(f"var_frac_bits must fit one byte [0, 255], got {params.var_frac_bits}")
    if not -128 <= params.gamma_shift <= 127:
        raise ValueError(f"gamma_shift must fit int8 [-128, 127], got {params.gamma_shift}")
    n = params.dim
    head = np.zeros(VEC_HEADER_BYTES, dtype=np.uint8)
    head[:8] = np.frombuffer(int(params.eps_term).to_bytes(8, "little"), dtype=np.uint8)
    head[8] = params.var_frac_bits
    head[9] = params.gamma_shift & 0xFF
    g = _int_vector("gamma_q", params.gamma_q, 16, n)
    if isinstance(params, LayerNormParams):
        b = _int_vector("beta_q", params.beta_q, 48, n)
        words = ((g & 0xFFFF).astype(np.uint64) | ((b & ((1 << 48) - 1)).astype(np.uint64) << np.uint64(16)))
        body = words.astype("<u8").view(np.uint8)
    else:
        body = g.astype("<i2").view(np.uint8)
    return np.concatenate([head, body])


def read_norm_header(raw: np.ndarray) -> tuple[int, int, int]:
    """(eps_term, var_frac_bits, gamma_shift) of a norm header (bits the hardware ignores ignored)."""
    raw = np.asarray(raw, dtype=np.uint8)
    eps = int.from_bytes(bytes(raw[:8]), "little") & ((1 << 61) - 1)
    shift = int(raw[9])
    return eps, int(raw[8]), shift - 256 if shift >= 128 else shift


def pack_rope_params(cos: np.ndarray, sin: np.ndarray, frac_bits: int = 14) -> np.ndarray:
    """The vec.rope parameter block of int16 tables [P, head_dim / 2] (``golden.elementwise.rope_table``) -> uint8.

    Header (16 bytes): bytes [0, 4) the table's positions P (uint32), byte 4 frac_bits, bytes [5, 16) 0 (ignored).
    Then entry (p, i) at ``16 + 4 (p * head_dim / 2 + i)``: cos int16, sin int16 (little-endian).
    """
    for name, t in (("cos", cos), ("sin", sin)):
        if not isinstance(t, np.ndarray) or t.dtype != np.int16 or t.ndim != 2:
            raise ValueError(f"{name} must be an int16 table [P, head_dim / 2], got "
                             f"{getattr(t, 'dtype', type(t).__name__)} {getattr(t, 'shape', '')}")
    if cos.shape != sin.shape:
        raise ValueError(f"cos and sin must have the same shape, got {cos.shape} and {sin.shape}")
    if not 0 <= frac_bits <= 255:
        raise ValueError(f"frac_bits must fit one byte [0, 255], got {frac_bits}")
    head = np.zeros(VEC_HEADER_BYTES, dtype=np.uint8)
    head[:4] = np.frombuffer(int(cos.shape[0]).to_bytes(4, "little"), dtype=np.uint8)
    head[4] = frac_bits
    body = np.stack([cos, sin], axis=-1).astype("<i2").view(np.uint8).ravel()
    return np.concatenate([head, body])


def read_rope_header(raw: np.ndarray) -> tuple[int, int]:
    """(table positions, frac_bits) of a RoPE header."""
    raw = np.asarray(raw, dtype=np.uint8)
    return int.from_bytes(bytes(raw[:4]), "little"), int(raw[4])


class _Machine:
    def __init__(self, cfg: NPUConfig, memory: np.ndarray, windows: Sequence[Window], check_hazards: bool):
        self.cfg = cfg
        self.mem = memory
        self.spad = np.zeros(cfg.spad_bytes, dtype=np.uint8)
        self.acc = np.zeros(cfg.acc_bytes, dtype=np.uint8)
        self.windows = list(windows)
        self.check_hazards = check_hazards
        # Per unit: footprints of issued instructions not yet known complete (oldest first).
        self.outstanding: dict[Unit, list[tuple[int, list[Access]]]] = {u: [] for u in Unit}
        self.stats = Counter()
        self.trace: list[dict] = []

    # -- checks ------------------------------------------------------------------------------------------
    def _local(self, mem: str, addr: int, nbytes: int, what: str) -> None:
        word = self.cfg.word_bytes(mem)
        size = self.cfg.mem_bytes(mem)
        if addr % word:
            raise _Fault(ErrorCode.LOCAL_RANGE, f"{what} address 0x{addr:x} is not aligned to the {word}-byte "
                         f"{mem} word", addr)
        if addr + nbytes > size:
            raise _Fault(ErrorCode.LOCAL_RANGE, f"{what} [0x{addr:x}, 0x{addr + nbytes:x}) runs past the end of "
                         f"{mem} ({size} bytes)", addr)

    def _window(self, instr) -> None:
        start, end = _dma_extent(instr)
        need_write = isinstance(instr, DmaStore)
        allowed = [w for w in self.windows if (w.write if need_write else w.read)]
        if any(w.base <= start and end <= w.base + w.size for w in allowed):
            return
        inside = any(w.base <= start < w.base + w.size for w in allowed)
        addr = (end - 1) & 0xFFFFFFFF if inside else start
        kind = "write" if need_write else "read"
        raise _Fault(ErrorCode.DMA_WINDOW, f"external [0x{start:x}, 0x{end:x}) is not inside one {kind} window; "
                     f"fault address 0x{addr:x}", addr)

    def _hazard(self, pc: int, instr: Instr, unit: Unit, acc: list[Access]) -> None:
        for other, entries in self.outstanding.items():
            if other == unit:
                continue  # one unit executes in order
            for opc, oacc in entries:
                for a in acc:
                    for b in oacc:
                        if a.conflicts(b):
                            raise _Fault(ErrorCode.HAZARD, f"{type(instr).__name__} conflicts with instruction "
                                         f"{opc} on the {other.name} unit ({a.space} [0x{max(a.lo, b.lo):x}, "
                                         f"0x{min(a.hi, b.hi):x})) with no FENCE between them", max(a.lo, b.lo))

    # -- local memory views ---------------------------------------------------------------------------------
    def _rows(self, mem: np.ndarray, addr: int, rows: int, stride: int, row_bytes: int) -> np.ndarray:
        return mem[addr:addr + rows * stride].reshape(rows, stride)[:, :row_bytes]

    def _a_operand(self, addr: int, m: int, k: int, bits: int) -> np.ndarray:
        rows, rb = a_tile_shape(m, k, bits)
        raw = self._rows(self.spad, addr, rows, self.cfg.local_stride("spad", rb), rb)
        if bits == 8:
            return raw.view(np.int8).copy()
        # Row pairs packed along M: unpack the transposed tile along its last axis.
        return unpack_int4(np.ascontiguousarray(raw.T), m).T.copy()

    def _b_operand(self, addr: int, k: int, n: int, bits: int) -> np.ndarray:
        rows, rb = b_tile_shape(k, n, bits)
        raw = self._rows(self.spad, addr, rows, self.cfg.local_stride("spad", rb), rb)
        if bits == 8:
            return raw.view(np.int8).copy()
        return unpack_int4(np.ascontiguousarray(raw), n)

    def _acc_view(self, addr: int, rows: int, n: int) -> np.ndarray:
        stride = self.cfg.local_stride("acc", 4 * n)
        return self.acc[addr:addr + rows * stride].view("<i4").reshape(rows, stride // 4)[:, :n]

    # -- execution -------------------------------------------------------------------------------------------
    def execute(self, pc: int, instr: Instr) -> bool:
        """Run one instruction; True when it was HALT."""
        if isinstance(instr, Halt):
            self.stats["halt"] += 1
            return True
        if isinstance(instr, Nop):
            self.stats["nop"] += 1
            return False
        if isinstance(instr, Fence):
            for unit, count in instr.waits().items():
                lst = self.outstanding[unit]
                del lst[:max(0, len(lst) - count)]
            self.stats["fence"] += 1
            self.trace.append({"pc": pc, **instruction_work(instr)})
            return False
        if isinstance(instr, VecOp):
            if instr.op not in VEC_EXECUTABLE:
                raise _Fault(ErrorCode.ILLEGAL_INSTRUCTION, f"vector operator {instr.op!r} is reserved (no NPU "
                             f"executes it yet; executable: {', '.join(VEC_EXECUTABLE)})")
            if instr.op not in self.cfg.vector_ops:
                raise _Fault(ErrorCode.ILLEGAL_INSTRUCTION, f"vector operator {instr.op!r} is not built into this "
                             f"NPU (vector_ops {self.cfg.vector_ops})")
            why = vec_static_error(instr, self.cfg.sequencer_lanes)
            if why is not None:
                raise _Fault(ErrorCode.ILLEGAL_INSTRUCTION, why)
        if isinstance(instr, MatMul) and not self.cfg.supports(instr.mode, instr.dataflow):
            raise _Fault(ErrorCode.ILLEGAL_INSTRUCTION, f"matmul mode {instr.mode}/dataflow {instr.dataflow} is "
                         f"not built into this NPU (precisions {self.cfg.array.precisions}, dataflow "
                         f"{self.cfg.array.dataflow})")
        acc = footprint(self.cfg, instr)
        unit = instr.UNIT
        if self.check_hazards:
            self._hazard(pc, instr, unit, acc)
        if isinstance(instr, (DmaLoad, DmaStore)):
            self._dma(instr)
        elif isinstance(instr, MatMul):
            self._matmul(instr)
        elif isinstance(instr, VecRequant):
            self._requant(instr)
        elif isinstance(instr, VecOp):
            self._vec(instr)
        else:  # pragma: no cover - decode() only yields the classes above
            raise _Fault(ErrorCode.ILLEGAL_INSTRUCTION, f"unknown instruction {instr!r}")
        self.outstanding[unit].append((pc, acc))
        return False

    def _dma(self, instr) -> None:
        cfg = self.cfg
        stride = cfg.local_stride(instr.mem, instr.row_bytes)
        local = self.spad if instr.mem == "spad" else self.acc
        self._local(instr.mem, instr.local_addr, instr.rows * stride, "DMA local")
        self._window(instr)
        start, end = _dma_extent(instr)
        if end > self.mem.size:
            raise _Fault(ErrorCode.BUS_ERROR, f"external [0x{start:x}, 0x{end:x}) runs past the memory "
                         f"({self.mem.size} bytes)", max(start, self.mem.size))
        rows = self._rows(local, instr.local_addr, instr.rows, stride, stride)
        idx = (instr.ext_addr + instr.ext_stride * np.arange(instr.rows, dtype=np.int64)[:, None]
               + np.arange(instr.row_bytes, dtype=np.int64)[None, :])
        nbytes = instr.rows * instr.row_bytes
        if isinstance(instr, DmaLoad):
            rows[:, :] = 0  # the tail of each row's last local word is written as 0
            rows[:, :instr.row_bytes] = self.mem[idx]
            self.stats["dma_load_bytes"] += nbytes
            self.stats["dma_load"] += 1
        else:
            if instr.ext_stride >= instr.row_bytes:
                self.mem[idx] = rows[:, :instr.row_bytes]
            else:  # overlapping rows: later rows win, as the hardware writes them in order
                for r in range(instr.rows):
                    self.mem[idx[r]] = rows[r, :instr.row_bytes]
            self.stats["dma_store_bytes"] += nbytes
            self.stats["dma_store"] += 1
        self.trace.append({"pc": self._pc, **instruction_work(instr)})

    def _matmul(self, instr: MatMul) -> None:
        cfg = self.cfg
        a_bits, b_bits = GOLDEN_MODES[instr.mode]
        for name, addr, (rows, rb) in (("A", instr.a_addr, a_tile_shape(instr.m, instr.k, a_bits)),
                                       ("B", instr.b_addr, b_tile_shape(instr.k, instr.n, b_bits))):
            self._local("spad", addr, rows * cfg.local_stride("spad", rb), f"matmul {name}")
        self._local("acc", instr.acc_addr, instr.m * cfg.local_stride("acc", 4 * instr.n), "matmul result")
        a = self._a_operand(instr.a_addr, instr.m, instr.k, a_bits)
        b = self._b_operand(instr.b_addr, instr.k, instr.n, b_bits)
        product = gemm(a, b, a_bits=a_bits, b_bits=b_bits).astype(np.int64)
        out = self._acc_view(instr.acc_addr, instr.m, instr.n)
        if instr.accumulate:
            product += out.astype(np.int64)
        # The int32 accumulator wraps (two's complement), as the adder does; the compiler bounds K so it never does.
        out[:, :] = (product & 0xFFFFFFFF).astype(np.uint32).view(np.int32)
        macs = instr.m * instr.k * instr.n
        self.stats["matmul"] += 1
        self.stats["macs"] += macs
        self.stats[f"macs_{instr.mode}"] += macs
        self.trace.append({"pc": self._pc, **instruction_work(instr)})

    def _requant(self, instr: VecRequant) -> None:
        cfg = self.cfg
        ob = 2 if instr.out16 else 1
        p = instr.param_page * PARAM_PAGE_BYTES
        self._local("acc", instr.src_addr, instr.m * cfg.local_stride("acc", 4 * instr.n), "requant source")
        self._local("spad", instr.dst_addr, instr.m * cfg.local_stride("spad", ob * instr.n), "requant output")
        if p + instr.n * REQUANT_PARAM_BYTES > cfg.spad_bytes:
            raise _Fault(ErrorCode.LOCAL_RANGE, f"requant records [0x{p:x}, 0x{p + 8 * instr.n:x}) run past the "
                         f"scratchpad ({cfg.spad_bytes} bytes)", p)
        mult, sh = read_requant_params(self.spad[p:p + instr.n * REQUANT_PARAM_BYTES])
        bad = np.flatnonzero((mult < Q31_MIN) | (sh < SHIFT_MIN) | (sh > SHIFT_MAX))
        if bad.size:
            c = int(bad[0])
            raise _Fault(ErrorCode.BAD_PARAM, f"requant record {c}: multiplier {int(mult[c])} must be in "
                         f"[{Q31_MIN}, {Q31_MAX}] and shift {int(sh[c])} in [{SHIFT_MIN}, {SHIFT_MAX}]",
                         p + REQUANT_PARAM_BYTES * c)
        lo, hi = (-(1 << 15), (1 << 15) - 1) if instr.out16 else (-128, 127)
        if not lo <= instr.zero_point <= hi:
            raise _Fault(ErrorCode.BAD_PARAM, f"requant zero_point {instr.zero_point} must be in [{lo}, {hi}] "
                         f"for int{8 * ob} output")
        acc = self._acc_view(instr.src_addr, instr.m, instr.n)
        y = requantize(acc, mult, sh, zero_point=instr.zero_point, out_bits=8 * ob)
        stride = cfg.local_stride("spad", ob * instr.n)
        dst = self._rows(self.spad, instr.dst_addr, instr.m, stride, stride)
        dst[:, :] = 0  # lanes past the row end are written as 0
        dst[:, :ob * instr.n] = np.ascontiguousarray(y.astype("<i2" if ob == 2 else np.int8)).view(np.uint8)
        self.stats["vec_requant"] += 1
        self.stats["vector_elements"] += instr.m * instr.n
        self.trace.append({"pc": self._pc, **instruction_work(instr)})


    def _vec(self, instr: VecOp) -> None:
        cfg = self.cfg
        op = instr.op
        stride = cfg.local_stride("spad", instr.n)
        p = instr.param_page * PARAM_PAGE_BYTES
        two = op in ("residual", "gate")
        self._local("spad", instr.src_addr, instr.m * stride, f"vec.{op} source")
        if two:
            self._local("spad", instr.src2_addr, instr.m * stride, f"vec.{op} second operand")
        self._local("spad", instr.dst_addr, instr.m * stride, f"vec.{op} output")
        (h_lo, h_hi), *more = vec_param_ranges(instr)
        if p + h_hi > cfg.spad_bytes:
            raise _Fault(ErrorCode.LOCAL_RANGE, f"vec.{op} parameters [0x{p:x}, 0x{p + h_hi:x}) run past the "
                         f"scratchpad ({cfg.spad_bytes} bytes)", p)
        raw = self.spad[p:p + h_hi]
        x = self._rows(self.spad, instr.src_addr, instr.m, stride, instr.n).view(np.int8)
        if op == "act":
            y = lookup(x, raw.view(np.int8).copy())
        elif op in NORM_CHANNEL_BYTES:
            eps, frac, gshift = read_norm_header(raw)
            if frac % 2 or frac > VAR_FRAC_BITS_MAX or not GAMMA_SHIFT_MIN <= gshift <= GAMMA_SHIFT_MAX:
                raise _Fault(ErrorCode.BAD_PARAM, f"vec.{op} header: var_frac_bits {frac} must be even and <= "
                             f"{VAR_FRAC_BITS_MAX}, gamma_shift {gshift} in [{GAMMA_SHIFT_MIN}, {GAMMA_SHIFT_MAX}]", p)
            body = raw[VEC_HEADER_BYTES:]
            if op == "layernorm":
                words = body.view("<u8").astype(np.uint64)
                g = (words & np.uint64(0xFFFF)).astype(np.int64)
                b = (words >> np.uint64(16)).astype(np.int64)
                g = np.where(g >= 1 << 15, g - (1 << 16), g)
                b = np.where(b >= 1 << 47, b - (1 << 48), b)
                y = layernorm(x, LayerNormParams(dim=instr.n, input_bits=8, var_frac_bits=frac, eps_term=eps,
                                                 gamma_q=tuple(int(v) for v in g), gamma_shift=gshift,
                                                 beta_q=tuple(int(v) for v in b)))
            else:
                g = body.view("<i2").astype(np.int64)
                y = rmsnorm(x, RMSNormParams(dim=instr.n, input_bits=8, var_frac_bits=frac, eps_term=eps,
                                             gamma_q=tuple(int(v) for v in g), gamma_shift=gshift))
        elif op == "rope":
            positions, frac = read_rope_header(raw)
            npos = rope_positions(instr)
            if not ROPE_FRAC_BITS_MIN <= frac <= ROPE_FRAC_BITS_MAX or instr.imm + npos > positions:
                raise _Fault(ErrorCode.BAD_PARAM, f"vec.rope header: frac_bits {frac} must be in "
                             f"[{ROPE_FRAC_BITS_MIN}, {ROPE_FRAC_BITS_MAX}] and the "
                             f"positions {instr.imm}..{instr.imm + npos - 1} inside the table's {positions}", p)
            t_lo, t_hi = more[0]
            if p + t_hi > cfg.spad_bytes:
                raise _Fault(ErrorCode.LOCAL_RANGE, f"vec.rope table rows [0x{p + t_lo:x}, 0x{p + t_hi:x}) run past "
                             f"the scratchpad ({cfg.spad_bytes} bytes)", p)
            half = instr.n // 2
            entries = self.spad[p + t_lo:p + t_hi].view("<i2").reshape(npos, half, 2)
            heads = instr.flags + 1
            y = rope(x, np.arange(instr.m) // heads, entries[..., 0].astype(np.int16),
                     entries[..., 1].astype(np.int16), frac_bits=frac)
        elif op == "residual":
            if not RESIDUAL_SHIFT_MIN <= instr.imm <= RESIDUAL_SHIFT_MAX:
                raise _Fault(ErrorCode.BAD_PARAM, f"vec.residual shift (imm) {instr.imm} must be in "
                             f"[{RESIDUAL_SHIFT_MIN}, {RESIDUAL_SHIFT_MAX}]")
            ma, mb = read_residual_params(raw)
            x2 = self._rows(self.spad, instr.src2_addr, instr.m, stride, instr.n).view(np.int8)
            y = residual_add(x, x2, ResidualParams(a_multiplier=ma, b_multiplier=mb, shift=instr.imm))
        else:  # gate, softmax: one record in the requant format
            mult, sh = read_requant_params(raw)
            mult, sh = int(mult[0]), int(sh[0])
            if not (Q31_MIN <= mult <= Q31_MAX and SHIFT_MIN <= sh <= SHIFT_MAX):
                raise _Fault(ErrorCode.BAD_PARAM, f"vec.{op} record: multiplier {mult} must be in [{Q31_MIN}, "
                             f"{Q31_MAX}] and shift {sh} in [{SHIFT_MIN}, {SHIFT_MAX}]", p)
            if op == "gate":
                x2 = self._rows(self.spad, instr.src2_addr, instr.m, stride, instr.n).view(np.int8)
                y = gate_mul(x, x2, GateParams(multiplier=mult, shift=sh))
            else:
                # uint8 probabilities (units of 1/255) stored as bytes.
                y = softmax(x, SoftmaxParams(input_bits=8, exp_multiplier=mult, exp_shift=sh),
                            causal=bool(instr.flags & 1), row_offset=instr.imm).view(np.int8)
        dst = self._rows(self.spad, instr.dst_addr, instr.m, stride, stride)
        dst[:, :] = 0  # lanes past the row end are written as 0
        dst[:, :instr.n] = np.asarray(y, dtype=np.int8).view(np.uint8)
        self.stats[f"vec_{op}"] += 1
        self.stats["vector_elements"] += instr.m * instr.n
        self.trace.append({"pc": self._pc, **instruction_work(instr)})


def _as_image(memory) -> np.ndarray:
    if isinstance(memory, np.ndarray):
        if memory.dtype != np.uint8 or memory.ndim != 1:
            raise ValueError(f"memory must be a 1-D uint8 array, got {memory.dtype} with shape {memory.shape}")
        return memory.copy()
    if isinstance(memory, (bytes, bytearray, memoryview)):
        return np.frombuffer(bytes(memory), dtype=np.uint8).copy()
    raise ValueError(f"memory must be bytes or a 1-D uint8 array, got {type(memory).__name__}")


def run(cfg: NPUConfig, program: Union[bytes, Sequence[Instr]], memory, windows: Iterable[Window], *,
        check_hazards: bool = True) -> SimResult:
    """Execute ``program`` (encoded bytes, decoded lazily like the controller does, or a list of instructions).

    ``memory`` (bytes or uint8 array; byte address = index) is copied, never modified. ``windows`` are the host's
    window registers (at most ``cfg.windows``). The scratchpad and accumulator start zeroed.
    """
    if not isinstance(cfg, NPUConfig):
        raise ValueError(f"cfg must be an NPUConfig, got {type(cfg).__name__}")
    windows = list(windows)
    if len(windows) > cfg.windows:
        raise ValueError(f"this NPU has {cfg.windows} address windows, got {len(windows)}")
    for w in windows:
        if not isinstance(w, Window):
            raise ValueError(f"windows must be Window objects, got {type(w).__name__}")
    if isinstance(program, (bytes, bytearray, memoryview)):
        program = bytes(program)
        if len(program) % INSTR_BYTES:
            raise ValueError(f"program length must be a multiple of {INSTR_BYTES} bytes, got {len(program)}")
        count = len(program) // INSTR_BYTES
        fetch = lambda pc: decode(program[pc * INSTR_BYTES:(pc + 1) * INSTR_BYTES])  # noqa: E731
    else:
        program = list(program)
        for i, instr in enumerate(program):
            if not isinstance(instr, (Nop, Halt, Fence, DmaLoad, DmaStore, MatMul, VecRequant, VecOp)):
                raise ValueError(f"program[{i}] is not an instruction: {instr!r}")
        count = len(program)
        fetch = program.__getitem__
    machine = _Machine(cfg, _as_image(memory), windows, check_hazards)
    status, pc, addr, message = ErrorCode.PROGRAM_OVERRUN, count, 0, "the program ended without HALT"
    for i in range(count):  # no branches in the ISA: every program ends
        machine._pc = i
        try:
            try:
                instr = fetch(i)
            except ValueError as e:
                raise _Fault(ErrorCode.ILLEGAL_INSTRUCTION, str(e)) from None
            if machine.execute(i, instr):
                status, pc, message = ErrorCode.NONE, i, "halted"
                break
        except _Fault as f:
            status, pc, addr, message = f.code, i, f.addr, f.message
            break
    stats = dict(machine.stats)
    stats["instructions"] = pc + (1 if status == ErrorCode.NONE else 0)
    return SimResult(status, pc, addr, message, machine.mem, machine.spad, machine.acc, stats, machine.trace)
