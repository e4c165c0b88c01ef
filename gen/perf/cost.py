r"""Cycle model of the NPU's MATMUL and DMA units: the one model the compiler's tiling choice and the
whole-program model (:mod:`gen.perf.program`) use.

Two tiers, one module:

* **Exact occupancy** of one instruction, fitted on the RTL (derivations in :mod:`gen.perf.program`'s docstring):
  :func:`dma_cycles` (AXI bursts of whole bus words, at most 256 beats and never across 4 KiB, with the harness's
  DRAM timing, :data:`HARNESSES`; :func:`dma_bursts`, and the read channel shared with command fetches,
  :class:`ReadChannel`) and :func:`matmul_cycles` (the PE array's schedule from the array-level reference model
  :func:`gen.perf.model.gemm_cycles` plus :data:`MATMUL_OVERHEAD`; an ``os`` MATMUL on an NPU with both
  dataflows: the output-stationary engine's schedule). :func:`gen.perf.program.program_cycles` composes these with
  the controller's fetch, issue and interlocks.
* **Tiling estimate** (:func:`gemm_tiling_estimate`): the closed-form cost the compiler ranks tilings and loop
  orders with, thousands of candidates per GEMM, built from :func:`dma_estimate` (bus beats per row plus a
  per-row burst overhead) and :func:`matmul_estimate` (ws: per array fold the streamed beats, at least the
  ``rows`` weight beats that load under the previous fold, plus one fill/drain per MATMUL; or for ``os`` the K
  pairs, at least the previous tile's drain), DMA and array overlapped, plus the last tile's requant
  (:func:`requant_estimate`), which nothing overlaps. It only ranks: the compiler keeps a tiling within 2 % of the
  fastest estimate with the least DRAM traffic. Ranking with the exact tier instead picks other tilings for many
  GEMMs (measured: 349 of 810 compiled GEMMs change), so that switch is a separate, measured change of the
  compiler's output, not part of this model. (The ws fold and requant-tail terms replaced a per-fold fill and no
  tail; measured with gen.perf.program on 8x8/64-bit and 16x16/128-bit NPUs, 7 shapes x 4 modes: 64x384x384
  w8a16/w4a16 on 8x8 from 94.0/94.2 % to 96.0/96.4 % of peak, int8 unchanged at 96.5 %, 16x16 64x384x384 int8
  +4.7 %, w4a8 +16 %; worst change -2.7 % on a 17x33x21 w4a8 GEMM of 800 cycles.)
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Union

from npuforge.gen.config.npu import NPUConfig
from npuforge.gen.isa.layout import a_tile_shape, b_k_packed, b_tile_shape
from npuforge.gen.perf.model import EDGE, gemm_cycles
from npuforge.spec.isa import REQUANT_PARAM_BYTES, DmaLoad, DmaStore, MatMul
from npuforge.spec.block_scale import BLOCK, BLOCK_RECORD_BYTES
from npuforge.spec.precision import PRECISION_MODES

__all__ = ["READ_FIRST_BEAT", "DMA_AR_FIRST", "DMA_LOAD_TAIL", "MATMUL_OVERHEAD", "MAX_OUTSTANDING", "RAM_BURSTS",
           "RAM_RUN_AHEAD", "HARNESSES", "FAST_W_FIRST", "FAST_STORE_TAIL", "dma_bursts", "ReadChannel", "store_read_spans",
           "dma_cycles", "matmul_cycles", "PLAN_ROW_OVERHEAD", "PLAN_STEP_ISSUE", "dma_estimate",
           "matmul_estimate", "requant_estimate", "gemm_tiling_estimate", "block_record_reads", "REQUANT_WORD_CYCLES"]

#: Cycles from an AR handshake to the first R beat of the AXI RAM at latency 0.
READ_FIRST_BEAT = 2
#: Cycles from the DMA command's issue to its first AR handshake (MEASURE, CHECK, DECIDE, address register).
DMA_AR_FIRST = 5
#: Cycles from the last R beat of a load to the cycle the DMA takes its next command (FINISH, run flag).
DMA_LOAD_TAIL = 3
#: MATMUL occupancy beyond the array schedule of gen.perf.model (start latch 2, read + realign 2, acc RMW 3).
MATMUL_OVERHEAD = 7
#: VEC_REQUANT: cycles per scratchpad word of its parameters (a record word, a bias word, a k_r word): the read, the
#: word registered, the check and write (rtl.controller.requant: REC_READ / REC_WAIT / REC_DATA, BIAS_*).
REQUANT_WORD_CYCLES = 3
#: Extra MATMUL cycles with ``b_trans`` (B^T [n, k]): the B transposer fills its first bank (one read per stored
#: row) before the first weight row; afterwards rows flow at one per cycle (measured 3 on the 4x4 engine at every
#: size, tests/rtl/test_matmul_bt_amaranth.py).
MATMUL_BT_OVERHEAD = 3
#: Cycles per block-record read of a block-scaled MATMUL (``blocks``, spec.block_scale): the weight operand
#: generator reads a block's ``cols`` records (4 * cols bytes) on the weight port with the block's first fold's
#: ``rows`` weight beats, one wide read (``word_bytes * read_words`` bytes) a cycle (:func:`block_record_reads`).
#: The RTL's record reader (rtl/controller/matmul.py) takes the weight port so; the program model meets the RTL's
#: block programs within 0.3 % (tests/rtl/npu/test_npu_blocks_cocotb.py).
RECORD_READ_CYCLE = 1
#: Bursts in flight per direction (rtl/npu.py: DmaConfig(max_outstanding=4)).
MAX_OUTSTANDING = 4



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
def dma_bursts(instr: Union[DmaLoad, DmaStore], bus_bytes: int, *,
               skips: list | None = None) -> list[tuple[int, int]]:
    """The AXI bursts of a DMA command as ``(beats, flush)`` in issue order.

    A row covers the bus words from ``floor(start / B)`` to ``floor((start + row_bytes - 1) / B)``; it is cut at
    every ``min(4096, 256 * B)``-byte boundary (<= 256 beats, no 4 KiB crossing). ``flush`` is 1 on a load's last
    burst of a row when the row needs one more local word than it has beats minus the unaligned first one.
    ``skips``, if given, receives per burst 1 when its first beat writes no local word (a row's first burst when
    the row starts off a bus word: the beat is held for realignment), else 0.
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
            if skips is not None:
                skips.append(int(cur == first and start % B != 0))
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
                    run_ahead: int = 1, first_beat: int = READ_FIRST_BEAT, retire: int = 0,
                    spans: list | None = None) -> tuple[int, int]:
    """AR and data times of a DMA command's bursts (``(beats, flush)``) with the fetches ``[{"t", "beats"}]``
    merged in; fills each fetch's ``done`` (its DECODE cycle) and, if given, ``spans`` with each DMA burst's
    ``(first data cycle, last data cycle incl. flush)``. Returns (last DMA data cycle incl. flush, data channel free
    cycle).

    One AR per cycle on the bus (the fetcher wins a tie), AR ``i`` (DMA or fetch, in bus order) not before the data
    of AR ``i - RAM_BURSTS`` has ended (the RAM's queue is full), a DMA AR not before the data of DMA burst
    ``j - MAX_OUTSTANDING`` has retired (``retire`` cycles after its data: a store's write response); data ``READ_FIRST_BEAT + lat`` after the AR, one beat per cycle, in AR order,
    plus one pause cycle after a load row's flush (for the DMA's next beats only: a fetch's beats may take it).
    """
    fetch_free = data_free      # first cycle the R channel can take a fetch's beat (a load's flush cycle too)
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
        # A load row's flush pauses only the DMA's R beats: a fetch's beats (routed by RID) may use that cycle.
        start = max(a + first_beat + lat, fetch_free if is_fetch else data_free)
        end = start + beats - 1
        fetch_free = end + 1
        data_free = max(data_free, end + 1 + flush)
        # The RAM takes its next AR once the burst's last beats are queued on R (2-beat R queue).
        ends.append(end - min(run_ahead, beats - 1))
        a_prev = a
        if is_fetch:
            fetches[fi]["done"] = end + 1
            fi += 1
        else:
            dma_ends.append(end + min(retire, beats - 1))
            last_dma = end + flush
            if spans is not None:
                spans.append((start, end + flush))
            dma_ready = a + 1
            j += 1
    return last_dma, data_free


class ReadChannel:
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
        load["spans"] = []
        last, load["r_end"] = _burst_schedule(load["bursts"], load["issue"] + DMA_AR_FIRST, self.lat,
                                              load["r_free0"], load["fetches"], spans=load["spans"], **self.dram)
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


def _store_cycles(instr: DmaStore, bus_bytes: int, latency: int, harness: str = "axi") -> int:
    return store_timing(instr, bus_bytes, latency, harness)[0]


def store_timing(instr: DmaStore, bus_bytes: int, latency: int, harness: str = "axi", *,
                 spans: list | None = None) -> tuple[int, int]:
    """(occupancy, cycle of the last W beat) of a DMA_STORE from its issue; ``spans``, if given, receives each
    burst's ``(first, last)`` W beat cycles (:func:`store_read_spans` derives the scratchpad reads from them)."""
    dram = _check_harness(harness)
    bursts = dma_bursts(instr, bus_bytes)
    if harness == "axi":
        # AxiRam: the same burst pacing as reads; the RAM takes W data at least one cycle after the AW.
        # A store burst of >= 2 beats stays outstanding one cycle past its last W beat (the AXI RAM's response).
        last, _ = _burst_schedule(bursts, DMA_AR_FIRST, max(1, latency), 0, [], retire=1, spans=spans, **dram)
        return last + DMA_LOAD_TAIL, last
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
        if spans is not None:
            spans.append((start, end))
    return max(resp) + FAST_STORE_TAIL, w_free - 1


#: The store's first scratchpad read, cycles after its issue (the read stage runs from the transfer's start; the
#: read request is registered, rtl/dma.py: decided in the transfer's first cycle, read the cycle after).
STORE_READ_FIRST = 5
#: Scratchpad words a store reads ahead of its W beats (rtl/dma.py: the read request, the read stage and a 4-entry
#: W FIFO, the request decided against all three).
STORE_READ_AHEAD = 4
#: A read ``j`` is decided the cycle after the W beat ``j - STORE_READ_AHEAD`` frees its FIFO entry and made the
#: cycle after that (the registered request).
STORE_READ_LAG = 2


def store_read_spans(w_spans: list) -> list[tuple[int, int]]:
    """The cycles (from the issue) a DMA_STORE reads the scratchpad, as ``(first, last)`` spans, from its W beats
    (:func:`store_timing` ``spans``): one local read per W beat, from :data:`STORE_READ_FIRST` on, at most
    :data:`STORE_READ_AHEAD` words ahead of the W beats (read ``j`` waits :data:`STORE_READ_LAG` cycles past the W
    beat ``j - STORE_READ_AHEAD``)."""
    w = [t for a, b in w_spans for t in range(a, b + 1)]
    out: list[list[int]] = []
    r = STORE_READ_FIRST - 1
    for j in range(len(w)):
        r = max(r + 1, w[j - STORE_READ_AHEAD] + STORE_READ_LAG if j >= STORE_READ_AHEAD else 0)
        if out and out[-1][1] == r - 1:
            out[-1][1] = r
        else:
            out.append([r, r])
    return [tuple(x) for x in out]


def dma_cycles(instr: Union[DmaLoad, DmaStore], npu_cfg: NPUConfig, *, latency: int = 0,
               harness: str = "axi") -> int:
    """Occupancy of the DMA engine by one DMA_LOAD / DMA_STORE on a quiet bus (issue to next command)."""
    cfg = _check_cfg(npu_cfg)
    lat = _check_latency(latency)
    if isinstance(instr, DmaLoad):
        return ReadChannel(lat, harness).start_load(instr, 0, cfg.axi_bytes)
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
    lat = arr.mac_pipeline - 1 + EDGE(arr.mac_pipeline)   # the input edge registers (rtl.array.edge_stages)
    m, k, n = instr.m, instr.k, instr.n
    int4 = instr.mode == "int4"
    a_rows = _cdiv(m, 2) if int4 else m
    m_tiles = _cdiv(a_rows, R)
    n_tiles = _cdiv(n, C if PRECISION_MODES[instr.mode].weight_lanes == 1 else 2 * C)
    kb = cfg.spad_word_bytes * cfg.spad_read_words
    if PRECISION_MODES[instr.mode].wide_act:     # int16 A: a transposer chunk holds half as many k values
        kb //= 2
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


def block_record_reads(cfg: NPUConfig) -> int:
    """Weight-port reads of one fold's block records (a block-scaled MATMUL): ``4 * cols`` bytes in wide reads of
    ``word_bytes * spad_read_words`` bytes."""
    return _cdiv(BLOCK_RECORD_BYTES * cfg.array.cols, cfg.spad_word_bytes * cfg.spad_read_words)


def matmul_cycles(instr: MatMul, npu_cfg: NPUConfig) -> int:
    """Occupancy of the MATMUL engine: gen.perf.model's weight-stationary array schedule + ``MATMUL_OVERHEAD``; an
    ``os`` MATMUL on an NPU built with both dataflows: the output-stationary schedule (:func:`_os_matmul_cycles`).

    Block-scaled (``blocks``, spec.block_scale): the fold that starts a block (k0 a multiple of 32; the ``32 / rows``
    folds of a block in one n-fold run back to back and share its records) also reads the block's records
    (:func:`block_record_reads`) with its ``W`` weight beats, under the previous fold's ``m`` activation beats: each
    such fold after the first waits ``max(0, W + reads - max(m beats, W))`` more cycles, the first ``reads``; the
    accumulator writer's block stage keeps one result row per cycle. ``W = rows``, or ``rows / 2`` for w4a16, whose
    codes are K-packed (gen.isa.layout.b_k_packed: two K rows per weight beat, the array's row pairs with their bank
    hold, gen.perf.model ``row_pairs``). Exact against the engine for decode GEMVs (m = 1); for longer m within 4 %
    (tests/rtl/test_matmul_blocks_amaranth.py): it charges record reads the weight queue hides when the bank hold
    or the activation beats leave the weight port slack.
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
    # 16-bit-activation modes: an activation beat is 2 * rows bytes (spad_read_words covers it in one read).
    a_beat = arr.rows * (2 if PRECISION_MODES[instr.mode].wide_act else 1)
    a_words = _cdiv(_cdiv(a_beat, B), cfg.spad_read_words)
    arr_model, mode = arr, instr.mode
    if mode == "int4":
        # A result beat carries two output rows and the accumulator writes one row per cycle, so the array runs at
        # the pace of m single-row beats: the w4a8 schedule (same column packing) of m rows.
        mode = "w4a8"
        if mode not in arr.precisions:
            arr_model = replace(arr, precisions=tuple(arr.precisions) + ("w4a8",))
    pairs = b_k_packed(instr.mode, instr.blocks)
    g = gemm_cycles(arr_model, instr.m * a_words, instr.k, instr.n, mode=mode,
                    dataflow="ws" if arr.dataflow != "os" else "os", row_pairs=pairs)
    extra = 0
    if instr.blocks:
        reads = block_record_reads(cfg) * RECORD_READ_CYCLE
        beats = instr.m * a_words
        w_beats = arr.rows // 2 if pairs else arr.rows
        block_folds = _cdiv(instr.n, arr.cols) * (instr.k // BLOCK)
        extra = (block_folds - 1) * max(0, w_beats + reads - max(beats, w_beats)) + reads
    return g.cycles + MATMUL_OVERHEAD + (MATMUL_BT_OVERHEAD if instr.b_trans else 0) + extra


# -- tiling estimate (the compiler's ranking) ---------------------------------------------------------------------
#: Per-row cycles of a DMA transfer beyond its bus beats in the tiling estimate (~2: burst address phase,
#: realignment).
PLAN_ROW_OVERHEAD = 2
#: Issue cycles per tiling step in the tiling estimate (fetch and decode of the step's instructions, rounded).
PLAN_STEP_ISSUE = 8


def dma_estimate(cfg: NPUConfig, rows: int, row_bytes: int) -> int:
    """Rough DMA time of one transfer: whole bus beats per row plus :data:`PLAN_ROW_OVERHEAD` cycles a row."""
    return rows * (_cdiv(row_bytes, cfg.axi_bytes) + PLAN_ROW_OVERHEAD)


def matmul_estimate(cfg: NPUConfig, m: int, k: int, n: int, *, mode: str, dataflow: str = "ws",
                    count: int = 1, blocks: bool = False) -> int:
    """Rough array time of ``count`` MATMULs of [m, k] x [k, n] (rounded down once, over all of them).

    ws: per (K fold, N fold) the ``m`` activation beats, at least the ``rows`` weight beats of the next fold that
    load under them (double-buffered weights), plus one pipeline fill ``rows + cols`` per MATMUL; os: per (M fold,
    N fold) the ``k`` (A column, B row) pairs, at least ``2 rows + cols`` apart (the drain of the previous output
    tile), so os prefers long K tiles. Divided by the mode's products per PE. ``blocks``: a block's records load
    with its first fold's weights (:func:`block_record_reads` every ``32 / rows`` folds, averaged).
    """
    rows, cols = cfg.array.rows, cfg.array.cols
    if dataflow == "os":
        work = _cdiv(m, rows) * _cdiv(n, cols) * max(k, 2 * rows + cols)
    else:
        # K-packed w4a16 codes (blocks): two K rows per weight beat.
        w_beats = rows // 2 if b_k_packed(mode, blocks) else rows
        load = w_beats + (block_record_reads(cfg) * RECORD_READ_CYCLE * rows // BLOCK if blocks else 0)
        work = _cdiv(k, rows) * _cdiv(n, cols) * max(m, load) + rows + cols
    return count * work // PRECISION_MODES[mode].products


def requant_estimate(cfg: NPUConfig, m: int, n: int) -> int:
    """Requant engine cycles of an [m, n] tile beyond its fixed start: ``n`` records, then ``m`` rows of
    ``ceil(4 n / bus_bytes)`` accumulator words (gen.perf.program.requant_cycles adds the start)."""
    B = cfg.axi_bytes
    return n * REQUANT_WORD_CYCLES * max(1, REQUANT_PARAM_BYTES // B) + m * _cdiv(4 * n, B)


def gemm_tiling_estimate(cfg: NPUConfig, m: int, k: int, n: int, tm: int, tk: int, tn: int, order: str, *,
                         mode: str, dataflow: str = "ws", out_bits: int = 8,
                         blocks: bool = False) -> tuple[int, int, int]:
    """(estimated cycles, external bytes loaded, steps) of the compiler's tiled GEMM (gen.isa.compiler) with
    tiles (tm, tk, tn) and loop order ``order`` ("mn": M outer; "nm": N outer; K innermost).

    DMA and array overlap (the max of the two), plus the unoverlapped first loads and last store, plus
    :data:`PLAN_STEP_ISSUE` a step. A tile that is the same in consecutive steps is not reloaded: with one K
    tile, A stays resident across N tiles (order mn), or B across M tiles (order nm).
    """
    a_bits, b_bits = PRECISION_MODES[mode].bits
    ob = out_bits // 8
    nm, nk, nn = _cdiv(m, tm), _cdiv(k, tk), _cdiv(n, tn)
    tm_, tk_, tn_ = min(tm, m), min(tk, k), min(tn, n)
    if order == "mn":
        a_times = 1 if nk == 1 else nn
        b_times = 1 if (nk == 1 and nn == 1) else nm
    else:
        b_times = 1 if nk == 1 else nm
        a_times = 1 if (nk == 1 and nm == 1) else nn
    a_load = dma_estimate(cfg, *a_tile_shape(tm_, tk_, a_bits))
    k_packed = b_k_packed(mode, blocks)
    b_load = dma_estimate(cfg, *b_tile_shape(tk_, tn_, b_bits, k_packed=k_packed))
    if blocks:      # the tile's block records: tk / 32 rows of 4 tn bytes
        b_load += dma_estimate(cfg, tk_ // BLOCK, tn_ * BLOCK_RECORD_BYTES)
    p_load = dma_estimate(cfg, 1, tn_ * REQUANT_PARAM_BYTES)
    c_store = dma_estimate(cfg, tm_, tn_ * ob)
    steps = nm * nk * nn
    dma = a_times * nm * nk * a_load + b_times * nk * nn * b_load + nm * nn * (p_load + c_store)
    compute = matmul_estimate(cfg, tm_, tk_, tn_, mode=mode, dataflow=dataflow, count=steps, blocks=blocks)
    # The last tile's requant and store follow its last MATMUL; nothing overlaps them.
    cycles = (max(dma, compute) + a_load + b_load + p_load + requant_estimate(cfg, tm_, tn_) + c_store
              + PLAN_STEP_ISSUE * steps)
    b_bytes = (math.prod(b_tile_shape(k, n, b_bits, k_packed=k_packed))
               + (k // BLOCK * n * BLOCK_RECORD_BYTES if blocks else 0))
    traffic = (a_times * math.prod(a_tile_shape(m, k, a_bits)) + b_times * b_bytes + nm * n * REQUANT_PARAM_BYTES)
    return cycles, traffic, steps
