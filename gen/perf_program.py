r"""Cycle model of NPU programs: each ISA instruction alone, and whole programs with the controller's overlap.

What it models (rtl/controller.py, rtl/dma.py, rtl/npu.py; the DRAM is the cocotbext-axi AXI RAM of sim/tb_npu.py)
====================================================================================================================
All times are clock cycles of the NPU. ``latency`` (``L``) is the harness's DRAM latency parameter: the AXI RAM
starts a read burst's first R beat ``L + 2`` cycles after its AR handshake (``READ_FIRST_BEAT`` = 2 is the RAM
model's own pipeline, measured at ``L = 0``) and accepts a write burst's data ``L`` cycles after its AW
handshake. No random stalls: with stalls the RTL cycle counts vary from run to run, the model gives the
stall-free count.

Controller (one instruction at a time through FETCH -> FETCH_DATA -> DECODE)
    *Fetch*: one AXI read burst of 16 bytes (``ceil(16 / bus_bytes)`` beats) per instruction, issued when the
    previous instruction has been issued: ``fetch = READ_FIRST_BEAT + L + beats`` cycles on a quiet bus. The AR
    channel and the R data of the AXI RAM are shared with the DMA's loads and served in AR order, so a fetch
    that follows a DMA_LOAD waits for the load bursts already requested (:class:`_ReadChannel`).
    *Decode / issue*: 1 cycle, or longer while the instruction's unit is busy: every unit runs **one**
    instruction at a time (DMA_LOAD and DMA_STORE share the one DMA engine), a DMA touching the accumulator
    waits for MATMUL and VEC_* to finish and they wait for it; ``FENCE u=0`` waits until unit ``u`` is idle
    (``count >= 1`` always holds: at most one instruction is outstanding); ``NOP`` just retires.
    *HALT*: decode, then ``DRAIN`` until every unit is idle, then ``DONE``: busy time ends 2 cycles after the
    later of the HALT decode and the last unit becoming idle. The RTL's BUSY_CYCLES counter counts from START
    to DONE inclusive, which is what :func:`program_cycles` returns.

Units (occupancy = cycles from the issue cycle until the unit takes its next instruction)
    DMA_LOAD: 3 descriptor-check cycles, then bursts of whole bus words, at most 256 beats and never across a
    4 KiB boundary (``min(4096, 256 * bus_bytes)``), one AR per cycle while fewer than 4 bursts are outstanding;
    one R beat per cycle; a row whose start is not word aligned and whose bytes need one local word more than
    its beats minus one costs one flush cycle (R paused). Done 3 cycles after the last beat.
    ``occupancy = DMA_AR_FIRST + L + READ_FIRST_BEAT + (beats + flushes - 1) + DMA_LOAD_TAIL`` when the
    bursts stream back to back; short bursts with a long latency are limited to 4 per ``L + 2`` round trip.
    DMA_STORE: the same bursts on AW/W: ``occupancy = DMA_STORE_BASE + beats + max(0, L - 1)`` plus the
    per-burst write-response round trip when the 4 outstanding bursts do not cover it.
    MATMUL: the PE array's weight-stationary schedule from :func:`gen.perf.gemm_cycles` (so it follows the
    array model) plus ``MATMUL_OVERHEAD`` cycles (parameter latch, operand read and realignment, accumulator
    read-modify-write). In int4 a result beat carries two output rows, which the accumulator writes in two
    cycles: the array is back-pressured to one beat per two cycles, i.e. the w4a8 schedule of ``2 ceil(m/2)``
    rows. Operand beats wider than a scratchpad word take one cycle per word.
    VEC_REQUANT: setup, one record per ``max(1, 8 / bus_bytes) + 1`` cycles, then one accumulator word
    (``bus_bytes / 4`` int32) per cycle through the 4-stage requant pipeline.

The constants are fitted on isolated instructions (sim/bench_perf_model.py prints the calibration programs) and
the whole-program model is validated against compiled GEMMs (tests/gen/test_perf_program.py, ``python -m
sim.bench_perf_model``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Iterable, Sequence, Union

from .isa import (INSTR_BYTES, DmaLoad, DmaStore, Fence, Halt, Instr, MatMul, Nop, Unit, VecOp, VecRequant,
                  decode_program)
from .npu_config import NPUConfig
from .perf import gemm_cycles

__all__ = ["READ_FIRST_BEAT", "DMA_AR_FIRST", "DMA_LOAD_TAIL", "DMA_STORE_BASE", "MATMUL_OVERHEAD",
           "MAX_OUTSTANDING", "dma_bursts", "fetch_cycles", "dma_cycles", "matmul_cycles", "requant_cycles",
           "instruction_cycles", "UnitStats", "ProgramCycles", "program_cycles"]

#: Cycles from an AR handshake to the first R beat of the AXI RAM at latency 0.
READ_FIRST_BEAT = 2
#: Cycles from the DMA command's issue to its first AR handshake (MEASURE, CHECK, DECIDE, address register).
DMA_AR_FIRST = 5
#: Cycles from the last R beat of a load to the cycle the DMA takes its next command (FINISH, run flag).
DMA_LOAD_TAIL = 3
#: Store occupancy at latency 0 beyond one cycle per W beat (checks, local read pipeline, AW, last B response).
DMA_STORE_BASE = 10
#: MATMUL occupancy beyond the array schedule of gen.perf (start latch 2, read + realign 2, acc RMW 3).
MATMUL_OVERHEAD = 7
#: Bursts in flight per direction (rtl/npu.py: DmaConfig(max_outstanding=4)).
MAX_OUTSTANDING = 4
#: VEC_REQUANT cycles besides records and rows: SETUP, ZP, pipeline fill/drain, DONE.
REQUANT_BASE = 10

_UNITS = ("load", "store", "matrix", "vector")


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _check_latency(latency) -> int:
    if isinstance(latency, bool) or not isinstance(latency, int) or latency < 0:
        raise ValueError(f"latency must be an integer >= 0 cycles, got {latency!r}")
    return latency


def _check_cfg(cfg) -> NPUConfig:
    if not isinstance(cfg, NPUConfig):
        raise ValueError(f"npu_cfg must be an NPUConfig, got {type(cfg).__name__}")
    return cfg


# -- DMA ---------------------------------------------------------------------------------------------------------
def dma_bursts(instr: Union[DmaLoad, DmaStore], bus_bytes: int) -> list[tuple[int, int]]:
    """The AXI bursts of a DMA command as ``(beats, flush)`` in issue order.

    A row covers the bus words from ``floor(start / B)`` to ``floor((start + row_bytes - 1) / B)``; it is cut at
    every ``min(4096, 256 * B)``-byte boundary (<= 256 beats, no 4 KiB crossing). ``flush`` is 1 on a load's last
    burst of a row when the row needs one more local word than it has beats minus the unaligned first one.
    """
    B = bus_bytes
    P = min(4096, 256 * B)
    load = isinstance(instr, DmaLoad)
    out = []
    for r in range(instr.rows):
        start = instr.ext_addr + r * instr.ext_stride
        first = start - start % B
        last = (start + instr.row_bytes - 1) // B * B
        cur = first
        while True:
            block_end = (cur // P + 1) * P - B     # last beat address before the next boundary
            end = min(last, block_end)
            out.append([(end - cur) // B + 1, 0])
            if end == last:
                break
            cur = end + B
        if load:
            off = start % B
            beats = (last - first) // B + 1
            emitted = beats if off == 0 else beats - 1
            if emitted < _cdiv(instr.row_bytes, B):
                out[-1][1] = 1
    return [tuple(b) for b in out]


#: Bursts the AXI RAM holds at once (one being served + an AR queue of 2): AR ``j`` waits for the data of ``j - 3``.
RAM_BURSTS = 3
#: Beats the AXI RAM queues on R ahead of the bus; it takes its next AR that many beats before a burst's end.
RAM_RUN_AHEAD = 1


def _burst_schedule(bursts, first_ar: int, lat: int, data_free: int, fetches: list) -> tuple[int, int]:
    """AR and data times of a DMA command's bursts (``(beats, flush)``) with the fetches ``[{"t", "beats"}]``
    merged in; fills each fetch's ``done`` (its DECODE cycle). Returns (last DMA data cycle incl. flush, data
    channel free cycle).

    One AR per cycle on the bus (the fetcher wins a tie), AR ``i`` (DMA or fetch, in bus order) not before the data
    of AR ``i - RAM_BURSTS`` has ended (the RAM's queue is full), a DMA AR not before the data of DMA burst
    ``j - MAX_OUTSTANDING`` has ended; data ``READ_FIRST_BEAT + lat`` after the AR, one beat per cycle, in AR order,
    plus one pause cycle after a load row's flush.
    """
    ends: list[int] = []        # data end (incl. flush) of every AR in bus order
    dma_ends: list[int] = []
    a_prev = -1
    dma_ready = first_ar
    j = fi = 0
    last_dma = first_ar
    inf = 1 << 62
    while j < len(bursts) or fi < len(fetches):
        dma_req = inf
        if j < len(bursts):
            dma_req = dma_ready
            if j >= MAX_OUTSTANDING:
                dma_req = max(dma_req, dma_ends[j - MAX_OUTSTANDING] + 1)
        f_req = fetches[fi]["t"] if fi < len(fetches) else inf
        is_fetch = f_req <= dma_req
        a = max(f_req if is_fetch else dma_req, a_prev + 1)
        if len(ends) >= RAM_BURSTS:
            a = max(a, ends[-RAM_BURSTS])
        beats, flush = (fetches[fi]["beats"], 0) if is_fetch else bursts[j]
        start = max(a + READ_FIRST_BEAT + lat, data_free)
        end = start + beats - 1
        data_free = end + 1 + flush
        # The RAM takes its next AR once the burst's last beats are queued on R (2-beat R queue).
        ends.append(end + flush - min(RAM_RUN_AHEAD, beats - 1))
        a_prev = a
        if is_fetch:
            fetches[fi]["done"] = end + 1
            fi += 1
        else:
            dma_ends.append(end)
            last_dma = end + flush
            dma_ready = a + 1
            j += 1
    return last_dma, data_free


class _ReadChannel:
    """AR + R of the AXI RAM shared by the DMA's loads and the command fetcher (:func:`_burst_schedule`).

    A load's bursts are scheduled when it is issued; a fetch during the load is merged into the schedule at its
    request cycle (after the bursts already requested) and the load's later bursts are recomputed.
    """

    def __init__(self, latency: int):
        self.lat = latency
        self.r_free = 0                 # first cycle the R channel is free after everything scheduled
        self.load: dict | None = None   # the running load: bursts, issue time, fetches merged into it

    def _schedule(self, load: dict) -> int:
        last, load["r_end"] = _burst_schedule(load["bursts"], load["issue"] + DMA_AR_FIRST, self.lat,
                                              load["r_free0"], load["fetches"])
        return last + DMA_LOAD_TAIL

    def start_load(self, instr: DmaLoad, issue: int, bus_bytes: int) -> int:
        self.load = {"bursts": dma_bursts(instr, bus_bytes), "issue": issue, "fetches": [], "r_free0": self.r_free}
        done = self._schedule(self.load)
        self.r_free = max(self.r_free, self.load["r_end"])
        return done

    def fetch(self, t: int, beats: int) -> tuple[int, int]:
        """A fetch whose FETCH state starts at ``t``: (DECODE cycle, new completion of the running load or -1)."""
        ld = self.load
        if ld is not None and t < ld["r_end"]:
            ld["fetches"].append({"t": t, "beats": beats})
            done = self._schedule(ld)
            self.r_free = max(self.r_free, ld["r_end"])
            return ld["fetches"][-1]["done"], done
        self.load = None
        start = max(t + READ_FIRST_BEAT + self.lat, self.r_free)
        self.r_free = start + beats
        return start + beats, -1


def fetch_cycles(npu_cfg: NPUConfig, *, latency: int = 0) -> int:
    """Cycles of one command fetch on a quiet bus (FETCH to DECODE): ``READ_FIRST_BEAT + latency + beats``."""
    cfg = _check_cfg(npu_cfg)
    return READ_FIRST_BEAT + _check_latency(latency) + _cdiv(INSTR_BYTES, cfg.axi_bytes)


def _store_cycles(instr: DmaStore, bus_bytes: int, latency: int) -> int:
    # The write side has the same burst pacing; the RAM takes W data at least one cycle after the AW.
    last, _ = _burst_schedule(dma_bursts(instr, bus_bytes), DMA_AR_FIRST, max(1, latency), 0, [])
    return last + DMA_LOAD_TAIL


def dma_cycles(instr: Union[DmaLoad, DmaStore], npu_cfg: NPUConfig, *, latency: int = 0) -> int:
    """Occupancy of the DMA engine by one DMA_LOAD / DMA_STORE on a quiet bus (issue to next command)."""
    cfg = _check_cfg(npu_cfg)
    lat = _check_latency(latency)
    if isinstance(instr, DmaLoad):
        return _ReadChannel(lat).start_load(instr, 0, cfg.axi_bytes)
    if isinstance(instr, DmaStore):
        return _store_cycles(instr, cfg.axi_bytes, lat)
    raise ValueError(f"dma_cycles needs a DmaLoad or DmaStore, got {type(instr).__name__}")


# -- compute units -----------------------------------------------------------------------------------------------
def matmul_cycles(instr: MatMul, npu_cfg: NPUConfig) -> int:
    """Occupancy of the MATMUL engine: gen.perf's weight-stationary array schedule + ``MATMUL_OVERHEAD``.

    The controller runs every MATMUL weight-stationary (an ``os`` MATMUL on a ``both`` NPU too).
    """
    cfg = _check_cfg(npu_cfg)
    arr = cfg.array
    if instr.mode not in arr.precisions:
        raise ValueError(f"MATMUL mode {instr.mode!r} is not built into this NPU (precisions: "
                         f"{', '.join(arr.precisions)})")
    B = cfg.spad_word_bytes
    # Operand beats spanning two scratchpad words are gathered one word per cycle (rows or cols > bus bytes).
    a_words = _cdiv(arr.rows, B)
    arr_model, mode = arr, instr.mode
    if mode == "int4":
        # A result beat carries two output rows and the accumulator writes one row per cycle, so the array runs at
        # the pace of m single-row beats: the w4a8 schedule (same column packing) of m rows.
        mode = "w4a8"
        if mode not in arr.precisions:
            arr_model = replace(arr, precisions=tuple(arr.precisions) + ("w4a8",))
    g = gemm_cycles(arr_model, instr.m * a_words, instr.k, instr.n, mode=mode,
                    dataflow="ws" if arr.dataflow != "os" else "os")
    return g.cycles + MATMUL_OVERHEAD


def requant_cycles(instr: VecRequant, npu_cfg: NPUConfig) -> int:
    """Occupancy of the requant engine: records (``n``), then ``m`` rows of ``ceil(4 n / bus_bytes)`` words."""
    cfg = _check_cfg(npu_cfg)
    B = cfg.axi_bytes
    rec = instr.n * (1 + max(1, 8 // B))
    rows = instr.m * _cdiv(4 * instr.n, B)
    return REQUANT_BASE + rec + rows


def instruction_cycles(instr: Instr, npu_cfg: NPUConfig, *, latency: int = 0) -> int:
    """Cycles of one instruction alone, on a quiet bus.

    DMA_LOAD / DMA_STORE / MATMUL / VEC_REQUANT: the occupancy of its unit (issue cycle to the cycle the unit takes
    the next instruction). NOP and a satisfied FENCE: fetch + 1 decode cycle. HALT with idle units: fetch +
    decode + DRAIN + DONE. The fetch of the instruction itself is not part of a unit's occupancy.
    """
    cfg = _check_cfg(npu_cfg)
    lat = _check_latency(latency)
    if isinstance(instr, (DmaLoad, DmaStore)):
        return dma_cycles(instr, cfg, latency=lat)
    if isinstance(instr, MatMul):
        return matmul_cycles(instr, cfg)
    if isinstance(instr, VecRequant):
        return requant_cycles(instr, cfg)
    if isinstance(instr, (Nop, Fence)):
        return fetch_cycles(cfg, latency=lat) + 1
    if isinstance(instr, Halt):
        return fetch_cycles(cfg, latency=lat) + 3
    if isinstance(instr, VecOp):
        raise ValueError(f"vec.{instr.op} has no cycle model (the controller of this NPU does not execute it)")
    raise ValueError(f"not an instruction: {instr!r}")


# -- whole programs ----------------------------------------------------------------------------------------------
@dataclass
class UnitStats:
    """Per unit: ``instructions``; ``busy`` cycles running them; ``stalled`` cycles the controller's issue
    waited for this unit (its previous instruction, a FENCE on it, or an accumulator conflict)."""
    instructions: int = 0
    busy: int = 0
    stalled: int = 0


@dataclass
class ProgramCycles:
    """Result of :func:`program_cycles`. ``cycles``: START to DONE (the BUSY_CYCLES counter)."""
    cycles: int
    instructions: int
    fetch_cycles: int
    units: dict = field(default_factory=dict)
    macs: int = 0
    halted: bool = True

    def to_dict(self) -> dict:
        return {"cycles": self.cycles, "instructions": self.instructions, "fetch_cycles": self.fetch_cycles,
                "macs": self.macs, "halted": self.halted,
                "units": {u: vars(s).copy() for u, s in self.units.items()}}


def program_cycles(program: Union[bytes, Sequence[Instr]], npu_cfg: NPUConfig, *, latency: int = 0,
                   trace: list | None = None) -> ProgramCycles:
    """Cycles of a whole program from START to DONE with the controller's real overlap (module docstring).

    ``program``: instructions or encoded bytes (run up to the first HALT; a program without HALT is a
    ``ValueError``, the RTL reports PROGRAM_OVERRUN). ``trace``, if given, receives one dict per instruction
    (``pc``, ``op``, ``fetch``, ``issue``, ``done``).
    """
    cfg = _check_cfg(npu_cfg)
    lat = _check_latency(latency)
    if isinstance(program, (bytes, bytearray)):
        program = decode_program(bytes(program))
    program = list(program)
    B = cfg.axi_bytes
    fetch_beats = _cdiv(INSTR_BYTES, B)
    rc = _ReadChannel(lat)
    units = {u: UnitStats() for u in _UNITS}
    free = {"dma": 0, "matrix": 0, "vector": 0}   # cycle each unit takes its next instruction
    dma_acc = False                                 # the last DMA command touched the accumulator
    dma_unit = "load"
    t = 0                                           # FETCH state entry of the current instruction
    fetch_total = 0
    macs = 0
    for pc, instr in enumerate(program):
        decode, load_done = rc.fetch(t, fetch_beats)
        if load_done >= 0:
            free["dma"] = load_done
        fetch_total += decode - t
        issue = decode
        op = f"vec.{instr.op}" if isinstance(instr, VecOp) else getattr(instr, "MNEMONIC", type(instr).__name__)
        rec = {"pc": pc, "op": op, "fetch": t, "decode": decode}
        if isinstance(instr, Halt):
            idle = max(free.values())
            end = max(decode + 1, idle) + 2
            rec.update(issue=decode, done=end)
            if trace is not None:
                trace.append(rec)
            return ProgramCycles(cycles=end, instructions=pc + 1, fetch_cycles=fetch_total, units=units, macs=macs)
        if isinstance(instr, Fence):
            waits = instr.waits()
            for unit, count in waits.items():
                if count > 0:
                    continue   # at most one instruction per unit is ever outstanding
                key = {Unit.LOAD: "dma", Unit.STORE: "dma", Unit.MATRIX: "matrix", Unit.VECTOR: "vector"}[unit]
                if key == "dma" and dma_unit != unit.name.lower():
                    continue   # the running DMA command is of the other direction
                if free[key] > issue:
                    units[unit.name.lower()].stalled += free[key] - issue
                    issue = free[key]
        elif isinstance(instr, (DmaLoad, DmaStore)):
            name = "load" if isinstance(instr, DmaLoad) else "store"
            ready = free["dma"]
            blocker = dma_unit
            if instr.mem == "acc":
                for key in ("matrix", "vector"):
                    if free[key] > ready:
                        ready, blocker = free[key], key
            if ready > issue:
                units[blocker].stalled += ready - issue
                issue = ready
            if isinstance(instr, DmaLoad):
                done = rc.start_load(instr, issue, B)
            else:
                done = issue + _store_cycles(instr, B, lat)
            free["dma"] = done
            dma_acc, dma_unit = instr.mem == "acc", name
            units[name].instructions += 1
            units[name].busy += done - issue
            rec["done"] = done
        elif isinstance(instr, (MatMul, VecRequant)):
            key = "matrix" if isinstance(instr, MatMul) else "vector"
            ready, blocker = free[key], key
            if dma_acc and free["dma"] > ready:
                ready, blocker = free["dma"], dma_unit
            if ready > issue:
                units[blocker].stalled += ready - issue
                issue = ready
            occ = matmul_cycles(instr, cfg) if key == "matrix" else requant_cycles(instr, cfg)
            free[key] = issue + occ
            units[key].instructions += 1
            units[key].busy += occ
            if key == "matrix":
                macs += instr.m * instr.k * instr.n
            rec["done"] = issue + occ
        elif isinstance(instr, Nop):
            pass
        else:
            raise ValueError(f"instruction {pc}: {op} has no cycle model (not executed by this controller)")
        rec["issue"] = issue
        if trace is not None:
            trace.append(rec)
        t = issue + 1
    raise ValueError("program has no HALT (the NPU would stop with PROGRAM_OVERRUN)")
