"""ISA-level simulator (the second golden tier): runs an NPU program on NumPy memories exactly as the RTL should.

State: the external memory image (uint8, byte address = index), the scratchpad and the accumulator SRAM (uint8,
int32 values little-endian), and on an NPU built with ``block_scaled`` the accumulator extension (uint8, the high
16 bits of each 48-bit block-scaled result, int16 little-endian, element i = accumulator bytes [4i, 4i + 4)). Instructions execute one at a time in program order, using the golden operators
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
``golden.softmax.softmax`` / ``softmax_q15`` (flags bits [2:1]: int8 / int16 / int32 scores; bit 3: Q0.15 int16
probabilities, else uint8 in units of 1/255; bit 0 causal with row offset ``imm``; bit 4 padding mask: columns
>= the record's valid_len; record ``spec.vector_ops.SOFTMAX_RECORD``), rows of 1/2/4-byte elements at the
scratchpad-word stride of their row bytes; ``layernorm`` / ``rmsnorm`` =
``golden.norms.layernorm`` / ``rmsnorm`` (int8 in and out; block: :func:`pack_norm_params`, header checked:
var_frac_bits even and <= 28, gamma_shift in [-15, 16], else BAD_PARAM at the block address); ``rope`` =
``golden.elementwise.rope`` (block: :func:`pack_rope_params`; row i at position ``imm + i // heads``, heads = flags bits [5:0] + 1, bit 6 int16 rows, bit 7 int16 results;
frac_bits outside [1, 14] or a position past the table's: BAD_PARAM at the block address; the table rows read
running past the scratchpad: LOCAL_RANGE at the block address).

Block-scaled MATMUL (``blocks = 1``, ``spec.block_scale``): W = D s + O from the codes at ``b_addr`` and the block
records after them (``gen.isa.layout.block_records_addr``; records past the scratchpad: LOCAL_RANGE at ``b_addr``),
``acc48 = (accumulate ? acc48 : 0) + A @ W`` exactly (``golden.models.intops.exact_matmul``), wrapped to 48 bits;
ILLEGAL_INSTRUCTION on an NPU without ``block_scaled``. ``VEC_REQUANT.wide`` reads the 48-bit elements and
requantizes them exactly (:func:`requant_wide_exact`: ``golden.models.intops.requant_wide`` with a zero point).

The ``-pt`` additions (docs/isa.md): ``vec.gate`` flags 5 writes the exact int32 product of its int16 operands (no
record read); ``vec.rmsnorm`` flags 7 writes ``golden.models.intops.token_shift(row, 16)`` (int16) and the byte k_r at
``src2_addr + r`` (no block read); ``VEC_REQUANT.row_shift`` requantizes row r with the total shift
``31 + shift[c] - k_r`` (the m bytes at ``bias_addr``; LOCAL_RANGE at ``bias_addr``, then BAD_PARAM at
``bias_addr + r`` for k_r > 16 or a total shift below 1).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Sequence, Union

import numpy as np

from npuforge.golden.gemm import MODES as GOLDEN_MODES, gemm, max_reduction_length
from npuforge.golden.models.intops import SPLIT_BITS, exact_matmul
from npuforge.golden.requant import requantize, requantize_biased
from npuforge.spec.isa import (INSTR_BYTES, PARAM_PAGE_BYTES, REQUANT_BIAS_BYTES, REQUANT_PARAM_BYTES, VEC_EXECUTABLE, DmaLoad, DmaStore,
                               ErrorCode, Fence, Halt, Instr, MatMul, Nop, Unit, VecOp, VecRequant, decode,
                               vec_static_error)
from npuforge.spec.block_scale import B16_PLANES, BLOCK, WIDE_ACC_BITS, b16_plane
from npuforge.spec.vector_ops import (Q31_MAX, Q31_MIN, ROW_SHIFT_MAX, SHIFT_MAX, SHIFT_MIN, TOTAL_SHIFT_MAX,
                                      TOTAL_SHIFT_MIN)
from npuforge.gen.config.npu import NPUConfig
# The memory layout shared with the compiler, and the vector operators' registry (re-exported: the parameter-block
# packers have always been importable from here).
from npuforge.gen.isa.layout import (Access, Window, a_tile_shape, b_elem_bits, b_k_packed, b_tile_shape, block_records_addr,
                                     block_records_shape, read_block_records, unpack_a_tile, unpack_b_tile,
                                     dma_extent as _dma_extent, footprint, pack_requant_params, read_requant_params)
from npuforge.gen.isa.ops import (operator, pack_norm_params, pack_residual_params, pack_rope_params, read_norm_header,
                                  read_residual_params, read_rope_header)

__all__ = ["Window", "Access", "SimResult", "run", "requant_wide_exact", "wide_acc_values", "footprint", "instruction_work", "a_tile_shape", "b_tile_shape", "read_requant_params",
           "pack_requant_params", "pack_residual_params", "read_residual_params", "pack_norm_params", "read_norm_header",
           "pack_rope_params", "read_rope_header"]


@dataclass
class SimResult:
    """Outcome of :func:`run`.

    ``status`` is the error code (NONE after HALT); ``pc`` the index of the HALT or faulting instruction;
    ``fault_addr`` the faulting address for DMA_WINDOW / LOCAL_RANGE / BUS_ERROR (else 0); ``memory``, ``spad``,
    ``acc`` the final memories (uint8), ``acc_ext`` the accumulator extension (uint8, empty without
    ``block_scaled``; :func:`wide_acc_values` reads 48-bit results); ``stats`` totals and ``trace`` one record per
    executed instruction (the work the performance model prices).
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
    acc_ext: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint8))

    @property
    def ok(self) -> bool:
        return self.status == ErrorCode.NONE


class _Fault(Exception):
    def __init__(self, code: ErrorCode, message: str, addr: int = 0):
        super().__init__(message)
        self.code, self.message, self.addr = code, message, addr


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
                "k": instr.k, "n": instr.n, "macs": instr.m * instr.k * instr.n, "blocks": instr.blocks}
    if isinstance(instr, (VecRequant, VecOp)):
        op = "vec.requant" if isinstance(instr, VecRequant) else f"vec.{instr.op}"
        return {"op": op, "unit": unit, "m": instr.m, "n": instr.n, "elements": instr.m * instr.n}
    return {"op": instr.MNEMONIC, "unit": None}


class _Machine:
    def __init__(self, cfg: NPUConfig, memory: np.ndarray, windows: Sequence[Window], check_hazards: bool):
        self.cfg = cfg
        self.mem = memory
        self.spad = np.zeros(cfg.spad_bytes, dtype=np.uint8)
        self.acc = np.zeros(cfg.acc_bytes, dtype=np.uint8)
        self.acc_ext = np.zeros(cfg.acc_ext_bytes, dtype=np.uint8)
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
        return unpack_a_tile(self._rows(self.spad, addr, rows, self.cfg.local_stride("spad", rb), rb), m, bits)

    def _b_operand(self, addr: int, k: int, n: int, bits: int, k_packed: bool = False) -> np.ndarray:
        rows, rb = b_tile_shape(k, n, bits, k_packed=k_packed)
        raw = self._rows(self.spad, addr, rows, self.cfg.local_stride("spad", rb), rb)
        return unpack_b_tile(raw, k, n, bits, k_packed=k_packed)

    def _acc_view(self, addr: int, rows: int, n: int) -> np.ndarray:
        stride = self.cfg.local_stride("acc", 4 * n)
        return self.acc[addr:addr + rows * stride].view("<i4").reshape(rows, stride // 4)[:, :n]

    def _ext_view(self, addr: int, rows: int, n: int) -> np.ndarray:
        """The extension's int16 high parts of the [rows, n] accumulator elements at ``addr``."""
        stride = self.cfg.local_stride("acc", 4 * n) // 4
        e0 = addr // 4
        return self.acc_ext[2 * e0:2 * (e0 + rows * stride)].view("<i2").reshape(rows, stride)[:, :n]

    def _wide_read(self, addr: int, rows: int, n: int) -> np.ndarray:
        lo = self._acc_view(addr, rows, n).astype(np.int64) & 0xFFFFFFFF
        return (self._ext_view(addr, rows, n).astype(np.int64) << 32) | lo

    def _wide_write(self, addr: int, rows: int, n: int, values: np.ndarray) -> None:
        """Store int64 values wrapped to 48 bits (two's complement, as the 48-bit adder does)."""
        half = np.int64(1) << (WIDE_ACC_BITS - 1)
        v = ((values + half) & ((np.int64(1) << WIDE_ACC_BITS) - 1)) - half
        self._acc_view(addr, rows, n)[:, :] = (v & 0xFFFFFFFF).astype(np.uint32).view(np.int32)
        self._ext_view(addr, rows, n)[:, :] = (v >> 32).astype(np.int16)

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
        if isinstance(instr, MatMul) and instr.blocks and not self.cfg.block_scaled:
            raise _Fault(ErrorCode.ILLEGAL_INSTRUCTION, "matmul blocks=1 needs an NPU built with block_scaled")
        if isinstance(instr, MatMul) and instr.b16 and not self.cfg.kv16:
            raise _Fault(ErrorCode.ILLEGAL_INSTRUCTION, "matmul b16 != 0 needs an NPU built with kv16")
        if isinstance(instr, VecRequant) and instr.wide and not self.cfg.block_scaled:
            raise _Fault(ErrorCode.ILLEGAL_INSTRUCTION, "vec.requant wide=1 needs an NPU built with block_scaled")
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
        trans = bool(instr.b_trans)
        for name, addr, (rows, rb) in (("A", instr.a_addr, a_tile_shape(instr.m, instr.k, a_bits)),
                                       ("B", instr.b_addr, b_tile_shape(instr.k, instr.n, b_elem_bits(instr.mode, instr.b16),
                                                                        transposed=trans,
                                                                        k_packed=b_k_packed(instr.mode,
                                                                                            instr.blocks)))):
            self._local("spad", addr, rows * cfg.local_stride("spad", rb), f"matmul {name}")
        self._local("acc", instr.acc_addr, instr.m * cfg.local_stride("acc", 4 * instr.n), "matmul result")
        if instr.blocks:
            self._block_matmul(instr, a_bits, b_bits)
            return
        if instr.b16:
            self._b16_matmul(instr, a_bits)
            return
        a = self._a_operand(instr.a_addr, instr.m, instr.k, a_bits)
        if trans:   # B^T [n, k] row-major (int8): the stored K matrix
            b = self._b_operand(instr.b_addr, instr.n, instr.k, 8).T
        else:
            b = self._b_operand(instr.b_addr, instr.k, instr.n, b_bits)
        if instr.k <= max_reduction_length(a_bits, b_bits):
            product = gemm(a, b, a_bits=a_bits, b_bits=b_bits).astype(np.int64)
        else:
            # Past the mode's exact int32 bound (w8a16 K > 511, a hand-written program: the compiler never emits
            # one) the hardware's int32 sums wrap; two's-complement wrap is order-free, so the exact int64
            # product wrapped below is what the array and accumulator compute.
            product = a.astype(np.int64) @ b.astype(np.int64)
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

    def _block_matmul(self, instr: MatMul, a_bits: int, b_bits: int) -> None:
        cfg = self.cfg
        rec = block_records_addr(cfg, instr)
        r_rows, r_rb = block_records_shape(instr.k, instr.n)
        r_stride = cfg.local_stride("spad", r_rb)
        if rec + r_rows * r_stride > cfg.spad_bytes:
            raise _Fault(ErrorCode.LOCAL_RANGE, f"matmul block records [0x{rec:x}, 0x{rec + r_rows * r_stride:x}) "
                         f"run past the scratchpad ({cfg.spad_bytes} bytes)", instr.b_addr)
        a = self._a_operand(instr.a_addr, instr.m, instr.k, a_bits).astype(np.int64)
        s = self._b_operand(instr.b_addr, instr.k, instr.n, b_bits,
                            b_k_packed(instr.mode, instr.blocks)).astype(np.int64)
        d, o = read_block_records(self._rows(self.spad, rec, r_rows, r_stride, r_rb), instr.n)
        w = np.repeat(d, BLOCK, axis=0) * s + np.repeat(o, BLOCK, axis=0)       # [k, n]: D s + O
        product = exact_matmul(a, w, a_max=1 << 15, b_max=int(np.abs(w).max(initial=0)))
        self._wide_result(instr, product, "macs_blocks")

    def _wide_result(self, instr: MatMul, product: np.ndarray, kind: str) -> None:
        """A 48-bit MATMUL's product into the accumulator and its extension (added with ``accumulate``), counted."""
        if instr.accumulate:
            product = product + self._wide_read(instr.acc_addr, instr.m, instr.n)
        self._wide_write(instr.acc_addr, instr.m, instr.n, product)
        macs = instr.m * instr.k * instr.n
        self.stats["matmul"] += 1
        self.stats["macs"] += macs
        self.stats[f"macs_{instr.mode}"] += macs
        self.stats[kind] += macs
        self.trace.append({"pc": self._pc, **instruction_work(instr)})

    def _b16_matmul(self, instr: MatMul, a_bits: int) -> None:
        """MATMUL.b16: A times one byte plane of an int16 B (spec.block_scale.B16_PLANES), 48-bit result."""
        a = self._a_operand(instr.a_addr, instr.m, instr.k, a_bits).astype(np.int64)
        if instr.b_trans:
            b16 = self._b_operand(instr.b_addr, instr.n, instr.k, 16).T
        else:
            b16 = self._b_operand(instr.b_addr, instr.k, instr.n, 16)
        d, o = B16_PLANES[instr.b16]
        w = d * b16_plane(b16.astype(np.int64), instr.b16) + o
        # |A| <= 2^15, |w| <= 2^15, k < 2^12: exact in int64, |sum| < 2^42
        self._wide_result(instr, a @ w, "macs_b16")

    def _bias_vector(self, instr: VecRequant) -> np.ndarray:
        """int64 [n]: the int32 biases at ``bias_addr`` (little-endian)."""
        raw = self.spad[instr.bias_addr:instr.bias_addr + instr.n * REQUANT_BIAS_BYTES]
        return raw.view("<i4").astype(np.int64)

    def _requant(self, instr: VecRequant) -> None:
        cfg = self.cfg
        ob = instr.out_bytes
        p = instr.param_page * PARAM_PAGE_BYTES
        self._local("acc", instr.src_addr, instr.m * cfg.local_stride("acc", 4 * instr.n), "requant source")
        self._local("spad", instr.dst_addr, instr.m * cfg.local_stride("spad", ob * instr.n), "requant output")
        if p + instr.n * REQUANT_PARAM_BYTES > cfg.spad_bytes:
            raise _Fault(ErrorCode.LOCAL_RANGE, f"requant records [0x{p:x}, 0x{p + 8 * instr.n:x}) run past the "
                         f"scratchpad ({cfg.spad_bytes} bytes)", p)
        if instr.bias:
            self._local("spad", instr.bias_addr, instr.n * REQUANT_BIAS_BYTES, "requant bias")
        if instr.row_shift:
            self._local("spad", instr.bias_addr, instr.m, "requant row shifts")
        mult, sh = read_requant_params(self.spad[p:p + instr.n * REQUANT_PARAM_BYTES])
        bad = np.flatnonzero((mult < Q31_MIN) | (sh < SHIFT_MIN) | (sh > SHIFT_MAX))
        if bad.size:
            c = int(bad[0])
            raise _Fault(ErrorCode.BAD_PARAM, f"requant record {c}: multiplier {int(mult[c])} must be in "
                         f"[{Q31_MIN}, {Q31_MAX}] and shift {int(sh[c])} in [{SHIFT_MIN}, {SHIFT_MAX}]",
                         p + REQUANT_PARAM_BYTES * c)
        lo, hi = (-128, 127) if ob == 1 else (-(1 << 15), (1 << 15) - 1)   # int16/int32: any 16-bit zero point
        if not lo <= instr.zero_point <= hi:
            raise _Fault(ErrorCode.BAD_PARAM, f"requant zero_point {instr.zero_point} must be in [{lo}, {hi}] "
                         f"for int{8 * ob} output")
        if instr.row_shift:     # row r: total shift 31 + shift[c] - k_r (int32 or 48-bit input alike)
            shift = self._row_shifts(instr, sh)
            acc = (self._wide_read(instr.src_addr, instr.m, instr.n) if instr.wide
                   else self._acc_view(instr.src_addr, instr.m, instr.n))
            y = requant_wide_exact(acc, mult, shift, zero_point=instr.zero_point, out_bits=8 * ob)
        elif instr.wide:      # the 48-bit result of a block-scaled MATMUL (int32 word + extension)
            y = requant_wide_exact(self._wide_read(instr.src_addr, instr.m, instr.n), mult, sh,
                                   bias=self._bias_vector(instr) if instr.bias else None,
                                   zero_point=instr.zero_point, out_bits=8 * ob)
        elif instr.bias:
            y = requantize_biased(self._acc_view(instr.src_addr, instr.m, instr.n), self._bias_vector(instr), mult,
                                  sh, zero_point=instr.zero_point, out_bits=8 * ob)
        else:
            y = requantize(self._acc_view(instr.src_addr, instr.m, instr.n), mult, sh, zero_point=instr.zero_point,
                           out_bits=8 * ob)
        stride = cfg.local_stride("spad", ob * instr.n)
        dst = self._rows(self.spad, instr.dst_addr, instr.m, stride, stride)
        dst[:, :] = 0  # lanes past the row end are written as 0
        dst[:, :ob * instr.n] = np.ascontiguousarray(y.astype({1: np.int8, 2: "<i2", 4: "<i4"}[ob])).view(np.uint8)
        self.stats["vec_requant"] += 1
        self.stats["vector_elements"] += instr.m * instr.n
        self.trace.append({"pc": self._pc, **instruction_work(instr)})


    def _row_shifts(self, instr: VecRequant, shift: np.ndarray) -> np.ndarray:
        """int64 [m, n]: ``shift[c] - k_r`` of VEC_REQUANT.row_shift; BAD_PARAM at ``bias_addr + r`` for the first row
        r whose k_r exceeds ROW_SHIFT_MAX or gives a channel a total shift outside [1, 62]."""
        k = self.spad[instr.bias_addr:instr.bias_addr + instr.m].astype(np.int64)
        t = 31 + shift[None, :] - k[:, None]
        bad = (k > ROW_SHIFT_MAX) | ((t < TOTAL_SHIFT_MIN) | (t > TOTAL_SHIFT_MAX)).any(axis=1)
        if bad.any():
            r = int(np.flatnonzero(bad)[0])
            raise _Fault(ErrorCode.BAD_PARAM, f"requant row {r}: row shift k {int(k[r])} must be <= {ROW_SHIFT_MAX} "
                         f"and every total shift 31 + shift - k in [{TOTAL_SHIFT_MIN}, {TOTAL_SHIFT_MAX}] (shift "
                         f"{int(shift.min())}..{int(shift.max())})", instr.bias_addr + r)
        return t - 31

    def _vec(self, instr: VecOp) -> None:
        cfg = self.cfg
        op = operator(instr.op)
        spec = op.spec
        # Element bytes of src, src2, dst (int8; softmax: scores 1/2/4, output 1/2 by flags); each operand's rows
        # sit at the scratchpad-word stride of its row bytes.
        eb_src, eb_src2, eb_dst = spec.elem_bytes(instr)
        stride, stride2, stride_dst = (cfg.local_stride("spad", instr.n * e) for e in (eb_src, eb_src2, eb_dst))
        p = instr.param_page * PARAM_PAGE_BYTES
        self._local("spad", instr.src_addr, instr.m * stride, f"vec.{spec.name} source")
        if spec.operands == 2:
            self._local("spad", instr.src2_addr, instr.m * stride2, f"vec.{spec.name} second operand")
        side = spec.side_writes(instr)      # the token scale's k_r bytes
        for lo, hi in side:
            self._local("spad", lo, hi - lo, f"vec.{spec.name} row shifts")
        self._local("spad", instr.dst_addr, instr.m * stride_dst, f"vec.{spec.name} output")
        reads = spec.param_ranges(instr)    # none: the gate's int32 product, the token scale
        (h_lo, h_hi), *more = reads or [(0, 0)]
        p = p if reads else 0
        if p + h_hi > cfg.spad_bytes:
            raise _Fault(ErrorCode.LOCAL_RANGE, f"vec.{spec.name} parameters [0x{p:x}, 0x{p + h_hi:x}) run past the "
                         f"scratchpad ({cfg.spad_bytes} bytes)", p)
        raw = self.spad[p:p + h_hi]
        x = _elements(self._rows(self.spad, instr.src_addr, instr.m, stride, instr.n * eb_src), eb_src)
        record = spec.record.unpack(bytes(raw[:spec.header_bytes])) if spec.record is not None and reads else {}
        why = spec.param_error(record, instr)
        if why is not None:
            raise _Fault(ErrorCode.BAD_PARAM, why, p if spec.param_fault_at_block else 0)
        if more:   # rope: the table rows of the instruction's positions, after the header
            t_lo, t_hi = more[0]
            if p + t_hi > cfg.spad_bytes:
                raise _Fault(ErrorCode.LOCAL_RANGE, f"vec.{spec.name} table rows [0x{p + t_lo:x}, 0x{p + t_hi:x}) run "
                             f"past the scratchpad ({cfg.spad_bytes} bytes)", p)
            items = self.spad[p + t_lo:p + t_hi]
        else:
            items = raw[spec.header_bytes:]
        x2 = (_elements(self._rows(self.spad, instr.src2_addr, instr.m, stride2, instr.n * eb_src2), eb_src2)
              if spec.operands == 2 else None)
        y = op.execute(instr, x, x2, record, items)
        if side:            # (rows, k_r): the k_r bytes go to src2_addr + r, no other byte of their words
            y, k = y
            lo, hi = side[0]
            self.spad[lo:hi] = np.asarray(k, dtype=np.int64).ravel().astype(np.uint8)
        y = np.asarray(y)
        if y.dtype.kind not in "iu" or y.dtype.itemsize != eb_dst:
            raise AssertionError(f"vec.{spec.name} produced {y.dtype}, expected {eb_dst}-byte integers")
        dst = self._rows(self.spad, instr.dst_addr, instr.m, stride_dst, stride_dst)
        dst[:, :] = 0  # lanes past the row end are written as 0
        dst[:, :instr.n * eb_dst] = np.ascontiguousarray(y.astype(y.dtype.newbyteorder("<"))).view(np.uint8)
        self.stats[f"vec_{spec.name}"] += 1
        self.stats["vector_elements"] += instr.m * instr.n
        self.trace.append({"pc": self._pc, **instruction_work(instr)})


def wide_acc_values(result: SimResult, cfg: NPUConfig, addr: int, rows: int, n: int) -> np.ndarray:
    """The 48-bit results (int64 [rows, n]) of a block-scaled MATMUL at accumulator byte ``addr`` of a run."""
    m = _Machine(cfg, np.zeros(0, dtype=np.uint8), [], False)
    m.acc, m.acc_ext = result.acc, result.acc_ext
    return m._wide_read(addr, rows, n)


def requant_wide_exact(acc, multiplier, shift, *, bias=None, zero_point: int = 0, out_bits: int = 8) -> np.ndarray:
    """VEC_REQUANT.wide: ``clamp(((acc + bias) * M + 2^(t-1)) >> t) + zero_point)``, t = 31 + shift, exact for a
    48-bit ``acc`` and an int32 ``bias`` (49-bit sum), per channel along the last axis.

    The rounding is ``golden.models.intops.requant_wide``'s (its split ``hi * 2^24 + lo`` for t >= 25, int64 when
    |acc + bias| <= 2^31); with t < 25 and |acc + bias| > 2^31 the value is at least 2^37 in magnitude, so it
    saturates to the sign (which golden refuses to compute)."""
    v = np.asarray(acc, dtype=np.int64)
    if bias is not None:
        v = v + np.asarray(bias, dtype=np.int64)
    mult = np.broadcast_to(np.asarray(multiplier, dtype=np.int64), v.shape)
    t = np.broadcast_to(np.asarray(shift, dtype=np.int64) + 31, v.shape)
    small = np.abs(v) <= 1 << 31
    one = np.int64(1)
    # int32-sized values: |v * M| < 2^62 in int64; wide values with t >= 25: the exact split of golden requant_wide
    narrow = (np.where(small, v, 0) * mult + (one << (t - 1))) >> t
    ts = np.maximum(t, SPLIT_BITS + 1)
    hi, lo = v >> SPLIT_BITS, v & ((one << SPLIT_BITS) - 1)
    split = (hi * mult + (one << (ts - SPLIT_BITS - 1)) + ((lo * mult) >> SPLIT_BITS)) >> (ts - SPLIT_BITS)
    sat = np.where(v < 0, -(one << 40), one << 40)
    rounded = np.where(small, narrow, np.where(t > SPLIT_BITS, split, sat))
    lo_b, hi_b = -(1 << (out_bits - 1)), (1 << (out_bits - 1)) - 1
    y = np.clip(rounded + int(zero_point), lo_b, hi_b)
    return y.astype({8: np.int8, 16: np.int16, 32: np.int32}[out_bits])


def _elements(raw: np.ndarray, nbytes: int) -> np.ndarray:
    """Rows of little-endian signed ``nbytes``-byte elements (1, 2, 4) from their bytes."""
    return np.ascontiguousarray(raw).view({1: np.int8, 2: "<i2", 4: "<i4"}[nbytes]).astype(
        {1: np.int8, 2: np.int16, 4: np.int32}[nbytes])


def _as_image(memory) -> np.ndarray:
    if isinstance(memory, np.ndarray):
        if memory.dtype != np.uint8 or memory.ndim != 1:
            raise ValueError(f"memory must be a 1-D uint8 array, got {memory.dtype} with shape {memory.shape}")
        return memory.copy()
    if isinstance(memory, (bytes, bytearray, memoryview)):
        return np.frombuffer(bytes(memory), dtype=np.uint8).copy()
    raise ValueError(f"memory must be bytes or a 1-D uint8 array, got {type(memory).__name__}")


def run(cfg: NPUConfig, program: Union[bytes, Sequence[Instr]], memory, windows: Iterable[Window], *,
        check_hazards: bool = True, own_memory: bool = False) -> SimResult:
    """Execute ``program`` (encoded bytes, decoded lazily like the controller does, or a list of instructions).

    ``memory`` (bytes or uint8 array; byte address = index) is copied, never modified, unless ``own_memory``: then
    a uint8 array is used in place (the caller hands over a private copy; a 100 MB model image is not copied twice).
    ``windows`` are the host's window registers (at most ``cfg.windows``). The scratchpad and accumulator start
    zeroed."""
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
    own = own_memory and isinstance(memory, np.ndarray) and memory.dtype == np.uint8 and memory.ndim == 1
    machine = _Machine(cfg, memory if own else _as_image(memory), windows, check_hazards)
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
    return SimResult(status, pc, addr, message, machine.mem, machine.spad, machine.acc, stats, machine.trace,
                     machine.acc_ext)
