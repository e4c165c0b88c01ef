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
    previous instruction has been issued, then ``DECODE_CYCLES`` = 3 in which the controller registers the decoder's
    checks (operands, products) and their outcome: ``fetch = READ_FIRST_BEAT + L + beats + DECODE_CYCLES`` cycles on a quiet bus. AR and
    R are shared with the DMA's loads and served in AR order, so a fetch that follows a DMA_LOAD waits for the
    load bursts already requested (:func:`_burst_schedule` merges fetches into a load's burst schedule).
    *Decode / issue*: 1 cycle, or longer while the instruction's unit is busy: every unit runs **one**
    instruction at a time (DMA_LOAD and DMA_STORE share the one DMA engine; VEC_REQUANT and vec.* the vector
    unit); a DMA touching the accumulator waits for MATMUL and VEC_REQUANT and they wait for it; ``FENCE u=0``
    waits until unit ``u`` is idle (``count >= 1`` always holds: at most one instruction is outstanding); ``NOP``
    just retires. *HALT*: decode, then DRAIN until every unit is idle, then DONE: the run ends 2 cycles after the
    later of the HALT decode + 1 and the last unit becoming idle. :func:`program_cycles` returns START to DONE
    inclusive, the RTL's BUSY_CYCLES counter.

Units (occupancy = cycles from the issue cycle until the unit takes its next instruction; DMA and MATMUL: the
unit model of gen.perf.cost, which the compiler's tiling choice uses too; vector operators: gen.isa.ops)
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
    VEC_REQUANT: records (one per ``REQUANT_WORD_CYCLES * ceil(8 / bus_bytes)`` cycles), then one accumulator word
    (``bus_bytes / 4`` int32) per cycle, + ``REQUANT_BASE``. Beside the DMA it shares two scratchpad ports with,
    at the DMA's priority: each record (bias, k_r) word read waits for a cycle no DMA_STORE reads the scratchpad
    (one local read per W beat, up to 4 ahead of them), each result beat for a cycle no DMA_LOAD writes it (one
    local write per R beat): the requant is re-priced against every load and store issued while it runs
    (:func:`requant_phases`; exact on requants beside aligned, unaligned, short and long loads and after stores, and
    on the compiled GEMMs of tests/rtl/npu/test_npu_fast_cocotb.py's 4-byte-word NPU, whose requants run beside the
    next tile's loads).
    vec.act / vec.residual / vec.gate: parameters (act: 256-entry table, one entry per cycle plus a read per
    word; residual/gate: one 64-bit record), then per row its beats ``ceil(n / lanes)`` or, when an operand or the
    result is wider than a word's share of a beat (the int32 residual stream, 16-bit GELU / SiLU), its largest
    word count, + ``VEC_BASE[op]`` + the last result beat's extra words (each operator's cost lives with its
    descriptor in the registry, ``gen.isa.ops``).
    vec.softmax: the record, then the input, sum (exp pipeline + division) and output engines of
    rtl.vector.softmax over its two row buffers, row by row (``gen.isa.op_cycles._softmax_rows``); int16 / int32 scores
    enter and Q0.15 results leave at a scratchpad word per cycle.
    vec.layernorm / vec.rmsnorm / vec.rope: the 16-byte header, then the items one per cycle plus a read per word
    (wide norms: the eps table first), then the rows (norms: input pass, per-row computation R (isqrt +
    division; wide rows also the statistics pass), output pass over two row buffers, ``gen.isa.op_cycles._norm_rows``;
    rope: ``b + 1`` per row), + ``VEC_HDR_BASE[op]``.
    Every vector format the layer programs use was measured on the NPU (native harness, 8- and 16-byte words,
    rows of 32..256, 1..8 rows): within 1.8 % an instruction (``python -m npuforge.sim.bench.layer --ops``).

The constants were fitted on isolated instructions on the RTL (loads/stores of 1..512 beats, aligned and not,
strided rows, 4 KiB crossings, latencies 0/1/4/8/16; MATMUL in every mode; requant and vector ops of many
shapes); the whole-program model is validated on compiled GEMMs (tests/gen/test_perf_program.py and
``python -m npuforge.sim.bench.perf_model``, which writes build/bench/perf_model.json).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence, Union

from npuforge.spec.isa import (INSTR_BYTES, REQUANT_PARAM_BYTES, DmaLoad, DmaStore, Fence, Halt, Instr, MatMul, Nop,
                               Unit, VecOp, VecRequant, decode_program)
from npuforge.gen.config.npu import NPUConfig
from npuforge.gen.isa.ops import operator
# The MATMUL and DMA units' cycle model, shared with the compiler's tiling choice (re-exported here).
from npuforge.gen.perf.cost import (DMA_AR_FIRST, DMA_LOAD_TAIL, FAST_STORE_TAIL, FAST_W_FIRST, HARNESSES,
                                    MATMUL_OVERHEAD, MAX_OUTSTANDING, RAM_BURSTS, RAM_RUN_AHEAD, READ_FIRST_BEAT,
                                    REQUANT_WORD_CYCLES,
                                    ReadChannel, _cdiv, _check_cfg, _check_harness, _check_latency, _store_cycles,
                                    dma_bursts, dma_cycles, matmul_cycles, store_read_spans, store_timing)


__all__ = ["READ_FIRST_BEAT", "DMA_AR_FIRST", "DMA_LOAD_TAIL", "MATMUL_OVERHEAD", "MAX_OUTSTANDING", "HARNESSES",
           "dma_bursts", "fetch_cycles", "dma_cycles", "matmul_cycles", "requant_cycles", "vec_cycles",
           "instruction_cycles", "UnitStats", "ProgramCycles", "program_cycles"]

#: VEC_REQUANT cycles besides records and rows: SETUP, ZP, pipeline fill/drain, DONE.
REQUANT_BASE = 11
#: Of :data:`REQUANT_BASE`: the cycles from the issue to the first record read (SETUP), and after the last result
#: beat (DONE, the unit's release); the others (ZP, the row reader's and the requant pipeline's fill) lie between the
#: last parameter word and the first result beat at the result packer.
REQUANT_REC_START = 2
REQUANT_TAIL = 2
#: VEC_REQUANT.row_shift: cycles per scratchpad word of the m k_r bytes, read after the zero point's check into the
#: requant unit's bias memory (a parameter word like the others, gen.perf.cost.REQUANT_WORD_CYCLES; fitted on the RTL
#: by pt-rtl at 2 before the word was registered, exact on 17x12 / 4x64).
REQUANT_ROW_SHIFT = REQUANT_WORD_CYCLES

#: The fetcher's DECODE state: cycles after a command's last beat before it is held for issue, in which the
#: controller registers the decoder's checks and the range checks' operands, then their products, then the outcome
#: (rtl.controller.fetch / decode / top: Decoder.LATENCY + 1).
DECODE_CYCLES = 3

_UNITS = ("load", "store", "matrix", "vector")


def fetch_cycles(npu_cfg: NPUConfig, *, latency: int = 0, harness: str = "axi") -> int:
    """Cycles of one command fetch on a quiet bus (FETCH to the held command):
    ``READ_FIRST_BEAT + latency + beats + DECODE_CYCLES``."""
    cfg = _check_cfg(npu_cfg)
    return (_check_harness(harness)["first_beat"] + _check_latency(latency) + _cdiv(INSTR_BYTES, cfg.axi_bytes)
            + DECODE_CYCLES)


def requant_cycles(instr: VecRequant, npu_cfg: NPUConfig) -> int:
    """Occupancy of the requant engine: records (``n``), the bias words (``ceil(4 n / bus_bytes)``, with ``bias``),
    then ``m`` rows of ``ceil(4 n / bus_bytes)`` words (with ``row_shift``: :data:`REQUANT_ROW_SHIFT` cycles per
    scratchpad word of the ``m`` k_r bytes, ``ceil(m / bus_bytes)`` words); alone, with no DMA load beside it."""
    words, fill, beats = requant_phases(instr, npu_cfg)
    return REQUANT_REC_START + REQUANT_WORD_CYCLES * words + fill + beats + REQUANT_TAIL


def requant_phases(instr: VecRequant, npu_cfg: NPUConfig) -> tuple[int, int, int]:
    """(scratchpad words read before the rows, cycles from the last word's data to the first result beat at the
    result packer, result beats) of a VEC_REQUANT. From :data:`REQUANT_REC_START` cycles after its issue it reads
    the ``n`` records (a word each, two on 32 bits), the bias words (``ceil(4 n / bus_bytes)``, with ``bias``) or
    the k_r words (``ceil(m / bus_bytes)``, with ``row_shift``): :data:`REQUANT_WORD_CYCLES` per word, each read in a
    cycle no DMA_STORE reads the scratchpad (the store has priority on that read port); then the pipeline fill; then
    one accumulator word per result beat, each beat taking a cycle in which no DMA_LOAD writes the scratchpad (the
    load has priority on its write port)."""
    cfg = _check_cfg(npu_cfg)
    B = cfg.axi_bytes
    words = instr.n * max(1, REQUANT_PARAM_BYTES // B)
    if instr.bias:
        words += _cdiv(4 * instr.n, B)
    if getattr(instr, "row_shift", 0):
        words += _cdiv(instr.m, B)
    beats = instr.m * _cdiv(4 * instr.n, B)
    return words, REQUANT_BASE - REQUANT_TAIL - REQUANT_REC_START, beats


def _port_walk(t: int, words: int, spans) -> int:
    """The cycle after the check cycle of the last of ``words`` scratchpad reads (:data:`REQUANT_WORD_CYCLES` per
    word: the read, the word registered, the check), the first read at ``t`` at the earliest and each in a cycle no
    span of ``spans`` (in time order) holds."""
    for a, b in spans:
        if b < t:
            continue
        if a > t:
            k = min(words, _cdiv(a - t, REQUANT_WORD_CYCLES))
            words, t = words - k, t + REQUANT_WORD_CYCLES * k
            if words == 0:
                return t
        t = max(t, b + 1)
    return t + REQUANT_WORD_CYCLES * words


#: A DMA_LOAD's scratchpad write of an R beat, as the result packer sees it, relative to the beat's data cycle in
#: :func:`gen.perf.cost._burst_schedule` (fitted on the RTL: requant beside aligned, unaligned, short and long loads;
#: -1 before rtl.npu registered the DMA's local write).
LOAD_WRITE_OFFSET = 0


def _load_write_spans(load: dict, skips: list) -> list:
    """The cycles a DMA_LOAD writes the scratchpad, as ``(first, last)`` spans: its bursts' data beats (a row's
    first beat writes nothing when the row starts off a word boundary: ``skips``) and the flush cycles."""
    o = LOAD_WRITE_OFFSET
    return [(a + skip + o, b + o) for (a, b), skip in zip(load["spans"], skips) if a + skip <= b]


def _rows_end(start: int, beats: int, spans) -> int:
    """The cycle the last of ``beats`` result beats leaves the requant pipeline, the first at ``start`` at the
    earliest, one per cycle that no span of ``spans`` (DMA scratchpad writes, in time order) blocks."""
    t, left = start, beats
    for a, b in spans:
        if b < t:
            continue
        if a > t:
            if a - t >= left:
                break
            left -= a - t
        t = max(t, b + 1)
    return t + left - 1


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
    (``pc``, ``op``, ``fetch``, ``decode``, ``issue``, ``done``, and ``blocker``: the unit the issue waited for, when it
    waited).
    """
    cfg = _check_cfg(npu_cfg)
    lat = _check_latency(latency)
    if isinstance(program, (bytes, bytearray)):
        program = decode_program(bytes(program))
    program = list(program)
    B = cfg.axi_bytes
    fetch_beats = _cdiv(INSTR_BYTES, B)
    rc = ReadChannel(lat, harness)
    units = {u: UnitStats() for u in _UNITS}
    free = {"dma": 0, "matrix": 0, "vector": 0}   # cycle each unit takes its next instruction
    dma_acc = False                                 # the last DMA command touched the accumulator
    dma_unit = "load"
    t = 0                                           # FETCH state entry of the current instruction
    fetch_total = 0
    macs = 0
    spad_loads: list = []                           # (ReadChannel load, write skips) of every scratchpad DMA_LOAD
    requant = None                                  # the last VEC_REQUANT: its rows wait for the loads' writes

    spad_stores: list = []                          # scratchpad read spans of every scratchpad DMA_STORE

    def requant_done(rq) -> int:
        reads = [s for spans in spad_stores[rq["stores"]:] for s in spans]
        rows = _port_walk(rq["issue"] + REQUANT_REC_START, rq["words"], reads) + rq["fill"]
        writes = [s for ld, skips in spad_loads[rq["loads"]:] for s in _load_write_spans(ld, skips)]
        return _rows_end(rows, rq["beats"], writes) + 1 + REQUANT_TAIL

    def settle() -> None:
        """Count the last VEC_REQUANT's busy cycles once nothing later can move its end (the next vector
        instruction, its end before a fetch, HALT)."""
        nonlocal requant
        if requant is not None:
            units["vector"].busy += free["vector"] - requant["issue"]
            requant = None

    for pc, instr in enumerate(program):
        decode, load_done = rc.fetch(t, fetch_beats)
        decode += DECODE_CYCLES     # the registered decode stages (the R channel is free after the last beat)
        if load_done >= 0:
            free["dma"] = load_done
        if requant is not None:
            free["vector"] = requant_done(requant)
            if free["vector"] <= t:     # over before this fetch: no later load or store can reach it
                settle()
        fetch_total += decode - t
        issue = decode
        op = f"vec.{instr.op}" if isinstance(instr, VecOp) else getattr(instr, "MNEMONIC", type(instr).__name__)
        rec = {"pc": pc, "op": op, "fetch": t, "decode": decode}
        if isinstance(instr, Halt):
            settle()
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
                    rec["blocker"] = unit.name.lower()
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
                rec["blocker"] = blocker
                issue = ready
            if isinstance(instr, DmaLoad):
                done = rc.start_load(instr, issue, B)
                if instr.mem == "spad":
                    skips: list = []
                    dma_bursts(instr, B, skips=skips)
                    spad_loads.append((rc.load, skips))
            else:
                w_spans: list = []
                occ, _ = store_timing(instr, B, lat, harness, spans=w_spans)
                done = issue + occ
                if instr.mem == "spad":
                    spad_stores.append([(issue + a, issue + b) for a, b in store_read_spans(w_spans)])
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
                rec["blocker"] = blocker
                issue = ready
            if key == "matrix":
                occ = matmul_cycles(instr, cfg)
                units[key].busy += occ
                macs += instr.m * instr.k * instr.n
            else:
                # Its parameter reads yield the scratchpad's read port to DMA stores (the running one and later
                # ones), its result beats the write port to DMA loads (those issued later included: requant_done()
                # re-prices it before every instruction, and at HALT).
                settle()
                words, fill, beats = requant_phases(instr, cfg)
                requant = {"issue": issue, "words": words, "fill": fill, "beats": beats,
                           "loads": max(0, len(spad_loads) - 1), "stores": max(0, len(spad_stores) - 1)}
                occ = requant_done(requant) - issue
            free[key] = issue + occ
            units[key].instructions += 1
            rec["done"] = issue + occ
        elif isinstance(instr, VecOp):
            # Scratchpad-only operator: waits just for the vector unit.
            occ = vec_cycles(instr, cfg)
            if free["vector"] > issue:
                units["vector"].stalled += free["vector"] - issue
                rec["blocker"] = "vector"
                issue = free["vector"]
            settle()
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
