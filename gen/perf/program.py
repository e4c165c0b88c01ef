r"""Cycle model of NPU programs: each ISA instruction alone, and whole programs with the controller's overlap.

What it models (rtl/controller/, rtl/dma.py, rtl/npu.py and the DRAM of the harness, sim/harness/npu_run.py)
======================================================================================================
All times are NPU clock cycles. ``latency`` (``L``) is the harness's DRAM latency parameter; precisely:

* reads (both harnesses): the first R beat of a burst comes ``L + 2`` cycles after its AR handshake at the
  earliest (``READ_FIRST_BEAT = 2`` is the DRAM model's own pipeline), then one beat per cycle, bursts in AR
  order;
* writes, ``harness="axi"`` (cocotbext-axi AxiRam, sim/tb/npu.py, the default of ``run_jobs``): the RAM takes a
  burst's W data ``max(L, 1) + 2`` cycles after its AW handshake; it holds 3 bursts (one served, an AR/AW queue
  of 2), so request ``i`` waits for the data of request ``i - 3``;
* writes, ``harness="fast"`` (the HDL DRAM model, sim/hdl/axi_dram.v): W beats follow their AW at once; the
  write response comes ``1 + L`` cycles after the last W beat; it queues 8 reads.

No random stalls: with stalls the RTL cycle counts vary from run to run; the model gives the stall-free count.

Controller (one instruction at a time through FETCH -> FETCH_DATA -> DECODE)
    *Fetch*: one AXI read burst of 16 bytes (``ceil(16 / bus_bytes)`` beats) per instruction, issued when the
    previous instruction has been issued: ``fetch = READ_FIRST_BEAT + L + beats`` cycles on a quiet bus. AR and
    R are shared with the DMA's loads and served in AR order, so a fetch that follows a DMA_LOAD waits for the
    load bursts already requested (:func:`_burst_schedule` merges fetches into a load's burst schedule).
    *Decode / issue*: 1 cycle, or longer while the instruction's unit is busy: every unit runs **one**
    instruction at a time (DMA_LOAD and DMA_STORE share the one DMA engine; VEC_REQUANT and vec.* the vector
    unit); a DMA touching the accumulator waits for MATMUL and VEC_REQUANT and they wait for it; ``FENCE u=0``
    waits until unit ``u`` is idle (``count >= 1`` always holds: at most one instruction is outstanding); ``NOP``
    just retires. *HALT*: decode, then DRAIN until every unit is idle, then DONE: the run ends 2 cycles after the
    later of the HALT decode + 1 and the last unit becoming idle. :func:`program_cycles` returns START to DONE
    inclusive, the RTL's BUSY_CYCLES counter.

Units (occupancy = cycles from the issue cycle until the unit takes its next instruction)
    DMA_LOAD: 3 descriptor-check cycles, then bursts of whole bus words, at most 256 beats and never across a
    4 KiB boundary (``min(4096, 256 * bus_bytes)``, :func:`dma_bursts`), one AR per cycle while fewer than 4
    bursts are outstanding; one R beat per cycle; a row whose realigned bytes need one more local word than its
    beats minus the first costs one flush cycle (R paused). Done 3 cycles after the last beat. Streaming:
    ``DMA_AR_FIRST + L + READ_FIRST_BEAT + (beats + flushes - 1) + DMA_LOAD_TAIL``; short bursts with a long
    latency are limited by the outstanding bursts the DRAM and the DMA allow (e.g. 3 per ``L + 2`` on AxiRam).
    DMA_STORE: the same bursts on AW/W with the harness's write timing above.
    MATMUL: the PE array's weight-stationary schedule from :func:`gen.perf.model.gemm_cycles` (so it follows the
    array model) plus ``MATMUL_OVERHEAD`` (parameter latch, operand read and realignment, accumulator
    read-modify-write). int4: a result beat carries two output rows, which the accumulator writes one per
    cycle, so the array runs at the pace of the w4a8 schedule of ``m`` rows (exact on 7 of 9 shapes; when the
    weight load bounds the folds of a short odd ``m`` the RTL is slower, e.g. 3x9x17 on 4x4: 64 vs 56 cycles).
    Operand beats wider than a scratchpad word (array rows > bus bytes) take one cycle per wide scratchpad read
    of ``I = NPUConfig.spad_read_words`` words: one. An ``os`` MATMUL on an NPU built with both dataflows: the
    engine's output-stationary schedule (:func:`_os_matmul_cycles`, exact against the engine in
    tests/rtl/test_matmul_os_amaranth.py).
    VEC_REQUANT: records (one per ``2 * ceil(8 / bus_bytes)`` cycles), then one accumulator word
    (``bus_bytes / 4`` int32) per cycle, + ``REQUANT_BASE``.
    vec.act / vec.residual / vec.gate: parameters (act: 256-entry table, one entry per cycle plus a read per
    word; residual/gate: one 64-bit record), then ``m * ceil(n / vector_lanes)`` beats, + ``VEC_BASE[op]``
    (each operator's cost lives with its descriptor in the registry, ``gen.isa.ops``).
    vec.softmax: the record, then three passes over the first row (``b = ceil(n / lanes)`` beats each) and one
    row per ``max(b + 28, (3 b + 30) / 2)`` cycles (sum engine with the division, or the two-row buffer).
    vec.layernorm / vec.rmsnorm / vec.rope: the 16-byte header, then the items one per cycle plus a read per word,
    then the rows (norms: ``max(b + ceil(R / 2) + 1, R + 2)`` per row, R the per-row isqrt + division; rope:
    ``b + 1`` per row), + ``VEC_HDR_BASE[op]`` (within ~10 cycles of the sequencer on Amaranth's simulator over
    4/8/16-byte words and 4/8/16 lanes, exact to 0.3% on 16-row tiles; checked against the NPU in
    tests/npu/test_npu_vector_cocotb.py).

The constants were fitted on isolated instructions on the RTL (loads/stores of 1..512 beats, aligned and not,
strided rows, 4 KiB crossings, latencies 0/1/4/8/16; MATMUL in every mode; requant and vector ops of many
shapes); the whole-program model is validated on compiled GEMMs (tests/gen/test_perf_program.py and
``python -m npuforge.sim.bench.perf_model``, which writes build/bench/perf_model.json).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence, Union

from npuforge.spec.isa import (INSTR_BYTES, REQUANT_PARAM_BYTES, DmaLoad, DmaStore, Fence, Halt, Instr, MatMul, Nop,
                               Unit, VecOp, VecRequant, decode_program)
from npuforge.gen.config.npu import NPUConfig
from npuforge.gen.isa.ops import operator
from npuforge.gen.perf.model import gemm_cycles

__all__ = ["READ_FIRST_BEAT", "DMA_AR_FIRST", "DMA_LOAD_TAIL", "MATMUL_OVERHEAD", "MAX_OUTSTANDING", "HARNESSES",
           "dma_bursts", "fetch_cycles", "dma_cycles", "matmul_cycles", "requant_cycles", "vec_cycles",
           "instruction_cycles", "UnitStats", "ProgramCycles", "program_cycles"]

#: Cycles from an AR handshake to the first R beat of the AXI RAM at latency 0.
READ_FIRST_BEAT = 2
#: Cycles from the DMA command's issue to its first AR handshake (MEASURE, CHECK, DECIDE, address register).
DMA_AR_FIRST = 5
#: Cycles from the last R beat of a load to the cycle the DMA takes its next command (FINISH, run flag).
DMA_LOAD_TAIL = 3
#: MATMUL occupancy beyond the array schedule of gen.perf.model (start latch 2, read + realign 2, acc RMW 3).
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


#: DRAM models of the NPU harnesses (sim/harness/npu_run.py ``run_jobs(harness=...)``): bursts the DRAM holds at once
#: (AR ``i`` waits for the data of AR ``i - n``), beats it runs ahead of the R bus before taking the next AR.
HARNESSES = {"axi": {"ram_bursts": RAM_BURSTS, "run_ahead": RAM_RUN_AHEAD, "first_beat": READ_FIRST_BEAT},
             "fast": {"ram_bursts": 8, "run_ahead": 0, "first_beat": READ_FIRST_BEAT + 1}}
#: fast harness (sim/hdl/axi_dram.v) stores: W beats start this many cycles after the AW handshake; the B
#: handshake comes ``2 + latency`` after the last W beat (response time 1 + latency, registered BVALID).
FAST_W_FIRST = 2
FAST_STORE_TAIL = 3


def _check_harness(harness) -> dict:
    if harness not in HARNESSES:
        raise ValueError(f"harness must be one of {', '.join(HARNESSES)}, got {harness!r}")
    return HARNESSES[harness]


def _burst_schedule(bursts, first_ar: int, lat: int, data_free: int, fetches: list, *, ram_bursts: int = 3,
                    run_ahead: int = 1, first_beat: int = READ_FIRST_BEAT, retire: int = 0) -> tuple[int, int]:
    """AR and data times of a DMA command's bursts (``(beats, flush)``) with the fetches ``[{"t", "beats"}]``
    merged in; fills each fetch's ``done`` (its DECODE cycle). Returns (last DMA data cycle incl. flush, data
    channel free cycle).

    One AR per cycle on the bus (the fetcher wins a tie), AR ``i`` (DMA or fetch, in bus order) not before the data
    of AR ``i - RAM_BURSTS`` has ended (the RAM's queue is full), a DMA AR not before the data of DMA burst
    ``j - MAX_OUTSTANDING`` has retired (``retire`` cycles after its data: a store's write response); data ``READ_FIRST_BEAT + lat`` after the AR, one beat per cycle, in AR order,
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
        if len(ends) >= ram_bursts:
            a = max(a, ends[-ram_bursts])
        beats, flush = (fetches[fi]["beats"], 0) if is_fetch else bursts[j]
        start = max(a + first_beat + lat, data_free)
        end = start + beats - 1
        data_free = end + 1 + flush
        # The RAM takes its next AR once the burst's last beats are queued on R (2-beat R queue).
        ends.append(end - min(run_ahead, beats - 1))
        a_prev = a
        if is_fetch:
            fetches[fi]["done"] = end + 1
            fi += 1
        else:
            dma_ends.append(end + min(retire, beats - 1))
            last_dma = end + flush
            dma_ready = a + 1
            j += 1
    return last_dma, data_free


class _ReadChannel:
    """AR + R of the AXI RAM shared by the DMA's loads and the command fetcher (:func:`_burst_schedule`).

    A load's bursts are scheduled when it is issued; a fetch during the load is merged into the schedule at its
    request cycle (after the bursts already requested) and the load's later bursts are recomputed.
    """

    def __init__(self, latency: int, harness: str = "axi"):
        self.lat = latency
        self.dram = _check_harness(harness)
        self.r_free = 0                 # first cycle the R channel is free after everything scheduled
        self.load: dict | None = None   # the running load: bursts, issue time, fetches merged into it

    def _schedule(self, load: dict) -> int:
        last, load["r_end"] = _burst_schedule(load["bursts"], load["issue"] + DMA_AR_FIRST, self.lat,
                                              load["r_free0"], load["fetches"], **self.dram)
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
        start = max(t + self.dram["first_beat"] + self.lat, self.r_free)
        self.r_free = start + beats
        return start + beats, -1


def fetch_cycles(npu_cfg: NPUConfig, *, latency: int = 0, harness: str = "axi") -> int:
    """Cycles of one command fetch on a quiet bus (FETCH to DECODE): ``READ_FIRST_BEAT + latency + beats``."""
    cfg = _check_cfg(npu_cfg)
    return _check_harness(harness)["first_beat"] + _check_latency(latency) + _cdiv(INSTR_BYTES, cfg.axi_bytes)


def _store_cycles(instr: DmaStore, bus_bytes: int, latency: int, harness: str = "axi") -> int:
    dram = _check_harness(harness)
    bursts = dma_bursts(instr, bus_bytes)
    if harness == "axi":
        # AxiRam: the same burst pacing as reads; the RAM takes W data at least one cycle after the AW.
        # A store burst of >= 2 beats stays outstanding one cycle past its last W beat (the AXI RAM's response).
        last, _ = _burst_schedule(bursts, DMA_AR_FIRST, max(1, latency), 0, [], retire=1, **dram)
        return last + DMA_LOAD_TAIL
    # HDL DRAM: W beats follow their AW without the latency; the write response comes 1 + latency after the
    # burst's last W beat; at most MAX_OUTSTANDING bursts wait for their response.
    resp: list[int] = []
    a_prev, w_free = None, 0
    for j, (beats, _) in enumerate(bursts):
        a = DMA_AR_FIRST if a_prev is None else a_prev + 1
        if j >= MAX_OUTSTANDING:
            a = max(a, resp[j - MAX_OUTSTANDING] + 1)
        start = max(a + FAST_W_FIRST, w_free)
        end = start + beats - 1
        w_free = end + 1
        resp.append(end + 2 + latency)     # BVALID is registered: handshake 1 + latency + 1 after it
        a_prev = a
    return max(resp) + FAST_STORE_TAIL


def dma_cycles(instr: Union[DmaLoad, DmaStore], npu_cfg: NPUConfig, *, latency: int = 0,
               harness: str = "axi") -> int:
    """Occupancy of the DMA engine by one DMA_LOAD / DMA_STORE on a quiet bus (issue to next command)."""
    cfg = _check_cfg(npu_cfg)
    lat = _check_latency(latency)
    if isinstance(instr, DmaLoad):
        return _ReadChannel(lat, harness).start_load(instr, 0, cfg.axi_bytes)
    if isinstance(instr, DmaStore):
        return _store_cycles(instr, cfg.axi_bytes, lat, harness)
    raise ValueError(f"dma_cycles needs a DmaLoad or DmaStore, got {type(instr).__name__}")


# -- compute units -----------------------------------------------------------------------------------------------
def _os_matmul_cycles(instr: MatMul, cfg: NPUConfig) -> int:
    """Start-to-done cycles of an ``os`` MATMUL in rtl.controller.MatmulEngine (derivation in
    tests/rtl/test_matmul_os_amaranth.py ``os_cycles``, which this generalises).

    Tiles (n outer, m inner) of ``rows`` A rows (row pairs in int4) x ``cols`` (int8) / ``2 cols`` result
    columns. The first pair is taken in cycle rows + 4, then one pair per cycle, except: a pair reaches the
    corner PE's sum ``rows + cols - 1 + (mac_pipeline - 1)`` cycles after it is taken, the ``rows`` drained beats
    cost a cycle each (int4: two when the beat holds two result rows), and a tile's last pair waits for the
    previous tile's drain; the A transposer refills a bank (``rows`` reads, ready ``rows + 1`` cycles later) from
    the take of its last column, so a next tile's first chunk waits ``rows - r`` cycles after a short last chunk
    of ``r < rows`` k values (K mod ``word_bytes * read_words``).
    """
    arr = cfg.array
    R, C = arr.rows, arr.cols
    lat = arr.mac_pipeline - 1
    m, k, n = instr.m, instr.k, instr.n
    int4 = instr.mode == "int4"
    a_rows = _cdiv(m, 2) if int4 else m
    m_tiles = _cdiv(a_rows, R)
    n_tiles = _cdiv(n, C if instr.mode == "int8" else 2 * C)
    kb = cfg.spad_word_bytes * cfg.spad_read_words
    chunks = _cdiv(k, kb)
    rem = k - (chunks - 1) * kb                  # k values in a tile's last chunk
    reach = R + C - 1 + lat                      # last pair taken -> corner capture

    def drain(m0):                               # cycles per drained beat of the m-tile at A row (pair) m0
        return [2 if int4 and 2 * (m0 + i) + 1 < m else 1 for i in range(R)]

    full, last = drain(0), drain((m_tiles - 1) * R)
    first = R + 4                                # first pair of the tile
    last_pair = first + k - 1
    costs = full if m_tiles > 1 else last
    for t in range(1, m_tiles * n_tiles):
        nxt = last_pair + 1
        if chunks > 1:                           # its first chunk's refill started at the previous tile's
            nxt = max(nxt, first + k - rem + R)  # second-to-last chunk's end
        last_pair, first = max(nxt + k - 1, last_pair + reach + sum(costs[:-1]) + 2), nxt
        costs = last if t % m_tiles == m_tiles - 1 else full
    return last_pair + reach + 3 + sum(costs)


def matmul_cycles(instr: MatMul, npu_cfg: NPUConfig) -> int:
    """Occupancy of the MATMUL engine: gen.perf.model's weight-stationary array schedule + ``MATMUL_OVERHEAD``; an
    ``os`` MATMUL on an NPU built with both dataflows: the output-stationary schedule (:func:`_os_matmul_cycles`).
    """
    cfg = _check_cfg(npu_cfg)
    arr = cfg.array
    if instr.mode not in arr.precisions:
        raise ValueError(f"MATMUL mode {instr.mode!r} is not built into this NPU (precisions: "
                         f"{', '.join(arr.precisions)})")
    if instr.dataflow == "os" and arr.dataflow == "both":
        return _os_matmul_cycles(instr, cfg)
    B = cfg.spad_word_bytes
    # An operand beat is gathered by wide scratchpad reads of I words (NPUConfig.spad_read_words): one per cycle,
    # so an activation beat of rows > bus bytes costs ceil(ceil(rows / B) / I) cycles (1 with the RTL's I).
    a_words = _cdiv(_cdiv(arr.rows, B), cfg.spad_read_words)
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
    rec = instr.n * 2 * max(1, REQUANT_PARAM_BYTES // B)   # REC_READ + REC_DATA per record word (two on 32 bits)
    rows = instr.m * _cdiv(4 * instr.n, B)
    return REQUANT_BASE + rec + rows


def vec_cycles(instr: VecOp, npu_cfg: NPUConfig) -> int:
    """Occupancy of the vector sequencer by a ``vec.*`` operator: the operator's cost in the registry
    (``gen.isa.ops``: parameters, then rows of ``ceil(n / vector_lanes)`` beats; fitted on the RTL)."""
    cfg = _check_cfg(npu_cfg)
    if instr.op not in getattr(cfg, "vector_ops", ()):
        raise ValueError(f"vec.{instr.op} has no cycle model: this NPU executes only vector ops "
                         f"{', '.join(getattr(cfg, 'vector_ops', ())) or 'none'}")
    return operator(instr.op).cycles(instr, cfg)


def instruction_cycles(instr: Instr, npu_cfg: NPUConfig, *, latency: int = 0, harness: str = "axi") -> int:
    """Cycles of one instruction alone, on a quiet bus.

    DMA_LOAD / DMA_STORE / MATMUL / VEC_REQUANT: the occupancy of its unit (issue cycle to the cycle the unit takes
    the next instruction). NOP and a satisfied FENCE: fetch + 1 decode cycle. HALT with idle units: fetch +
    decode + DRAIN + DONE. The fetch of the instruction itself is not part of a unit's occupancy.
    """
    cfg = _check_cfg(npu_cfg)
    lat = _check_latency(latency)
    _check_harness(harness)
    if isinstance(instr, (DmaLoad, DmaStore)):
        return dma_cycles(instr, cfg, latency=lat, harness=harness)
    if isinstance(instr, MatMul):
        return matmul_cycles(instr, cfg)
    if isinstance(instr, VecRequant):
        return requant_cycles(instr, cfg)
    if isinstance(instr, (Nop, Fence)):
        return fetch_cycles(cfg, latency=lat) + 1
    if isinstance(instr, Halt):
        return fetch_cycles(cfg, latency=lat) + 3
    if isinstance(instr, VecOp):
        return vec_cycles(instr, cfg)
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
                   harness: str = "axi", trace: list | None = None) -> ProgramCycles:
    """Cycles of a whole program from START to DONE with the controller's real overlap (module docstring).

    ``program``: instructions or encoded bytes (run up to the first HALT; a program without HALT is a
    ``ValueError``, the RTL reports PROGRAM_OVERRUN). ``harness``: the DRAM model, ``"axi"`` (cocotbext-axi
    AxiRam, the default of sim/harness/npu_run.py) or ``"fast"`` (the HDL DRAM of sim/hdl/axi_dram.v). ``trace``, if given, receives one dict per instruction
    (``pc``, ``op``, ``fetch``, ``issue``, ``done``).
    """
    cfg = _check_cfg(npu_cfg)
    lat = _check_latency(latency)
    if isinstance(program, (bytes, bytearray)):
        program = decode_program(bytes(program))
    program = list(program)
    B = cfg.axi_bytes
    fetch_beats = _cdiv(INSTR_BYTES, B)
    rc = _ReadChannel(lat, harness)
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
                done = issue + _store_cycles(instr, B, lat, harness)
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
            elif key == "vector" and dma_unit == "store" and free["dma"] - 1 > ready:
                # Requant reads its records through the scratchpad read port a DMA_STORE streams from (the DMA
                # has priority): the records wait for the store's last local read, about 1 cycle before it ends.
                ready, blocker = free["dma"] - 1, "store"
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
        elif isinstance(instr, VecOp):
            # Scratchpad-only operator: waits just for the vector unit.
            occ = vec_cycles(instr, cfg)
            if free["vector"] > issue:
                units["vector"].stalled += free["vector"] - issue
                issue = free["vector"]
            free["vector"] = issue + occ
            units["vector"].instructions += 1
            units["vector"].busy += occ
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
