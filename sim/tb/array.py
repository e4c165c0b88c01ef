"""cocotb testbench of the PE array: runs the job list written by :func:`sim.harness.array_gemm.run_gemms`.

One cocotb test walks all jobs in one simulation (one Verilator build per configuration, one process):
GEMMs streamed with optional random valid/ready stalls, resets in the middle of a tile, illegal-mode probes.
Streams follow the valid/ready rules: a source keeps ``valid`` and its payload until the transfer; idle cycles
(stalls) only come between beats. Inputs are written after ``RisingEdge``, handshakes sampled in ``ReadOnly``.
Results (raw result beats, cycles) go to ``$ARRAY_RESULTS``; the caller assembles C and compares with golden.
"""

from __future__ import annotations

import json
import os
import random
import time

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge


def _idle_inputs(dut) -> None:
    dut.a__valid.value = 0
    dut.w__valid.value = 0
    dut.c__ready.value = 0


async def _reset(dut, cycles: int = 2) -> None:
    dut.rst.value = 1
    _idle_inputs(dut)
    for _ in range(cycles):
        await RisingEdge(dut.clk)
    dut.rst.value = 0


class _Source:
    """One input stream: keeps valid until taken; new beats start with probability 1 - stalls."""

    def __init__(self, valid, payload, ready, beats, rng, stalls):
        self.valid, self.payload, self.ready = valid, payload, ready
        self.beats, self.rng, self.stalls = beats, rng, stalls
        self.index, self.offered = 0, False
        self.valid.value = 0
        self.driven = 0  # last value written to valid (writes cost simulator calls; skip repeats)

    def drive(self) -> None:
        if not self.offered and self.index < len(self.beats) and (self.stalls == 0 or self.rng.random() >= self.stalls):
            self.offered = True
            self.payload.value = self.beats[self.index]
        if self.driven != self.offered:
            self.driven = int(self.offered)
            self.valid.value = self.driven

    def sample(self) -> None:
        if self.offered and self.ready.value:
            self.index += 1
            self.offered = False


async def _run_stream_job(dut, job: dict, result: dict, max_cycles: int | None = None) -> None:
    """Drive one GEMM's beats; stop after the last result beat (or after ``max_cycles`` for a reset job)."""
    rng = random.Random(job.get("seed", 0))
    stalls = float(job.get("stalls", 0.0))
    dut.mode.value = job["mode_code"]
    dut.dataflow.value = job["dataflow_code"]
    a_src = _Source(dut.a__valid, dut.a__payload, dut.a__ready, [int(x, 16) for x in job["a_beats"]], rng, stalls)
    w_src = _Source(dut.w__valid, dut.w__payload, dut.w__ready, [int(x, 16) for x in job["w_beats"]], rng, stalls)
    n_out = job["n_out"]
    outs = []
    cycles = 0
    errors = 0
    t0 = time.perf_counter()
    dut.c__ready.value = c_driven = 1
    while len(outs) < n_out:
        a_src.drive()
        w_src.drive()
        c_ready = stalls == 0 or rng.random() >= stalls
        if c_ready != c_driven:
            dut.c__ready.value = c_driven = int(c_ready)
        await ReadOnly()
        errors += int(dut.error.value)
        a_src.sample()
        w_src.sample()
        if c_ready and dut.c__valid.value:
            try:
                outs.append(format(dut.c__payload.value.to_unsigned(), "x"))
            except ValueError:
                raise AssertionError(f"result beat {len(outs)} has X/Z bits: {dut.c__payload.value}") from None
        await RisingEdge(dut.clk)
        cycles += 1
        if max_cycles is not None and cycles >= max_cycles:
            break
        if cycles > 50 * (len(job["a_beats"]) + len(job["w_beats"]) + n_out) + 10_000:
            raise AssertionError(f"array hung: {len(outs)} of {n_out} result beats after {cycles} cycles")
    seconds = time.perf_counter() - t0
    _idle_inputs(dut)
    result.update(out_beats=outs, n_out=n_out, cycles=cycles, sim_seconds=seconds, beats_in=a_src.index + w_src.index,
                  beats_out=len(outs), error_cycles=errors)


async def _illegal_job(dut, job: dict, result: dict) -> None:
    """Offer data under an illegal mode/dataflow: expect the error flag and no transfer in or out."""
    dut.mode.value = job["mode_code"]
    dut.dataflow.value = job["dataflow_code"]
    dut.a__valid.value = 1
    dut.a__payload.value = (1 << (8 * int(job.get("rows", 1)))) - 1  # bytes -1, last clear
    dut.w__valid.value = 1
    dut.w__payload.value = 0x7F
    dut.c__ready.value = 1
    accepted = produced = errors = 0
    for _ in range(int(job["cycles"])):
        await ReadOnly()
        errors += int(dut.error.value)
        accepted += int(dut.a__ready.value) + int(dut.w__ready.value)
        produced += int(dut.c__valid.value)
        await RisingEdge(dut.clk)
    _idle_inputs(dut)
    result.update(error_cycles=errors, accepted=accepted, produced=produced, cycles=int(job["cycles"]))


@cocotb.test()
async def run_jobs(dut):
    with open(os.environ["ARRAY_JOBS"]) as f:
        spec = json.load(f)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    # Icarus evaluates an ``always @*`` block only when one of its inputs changes, so a lane that is constant 0
    # in int8 mode would stay X from time 0: walk every mode/dataflow code once (registers included) first.
    _idle_inputs(dut)
    dut.c__ready.value = 1
    for mode, dataflow in ((2, 1), (1, 0), (2, 0), (0, 1), (0, 0)):
        dut.mode.value = mode
        dut.dataflow.value = dataflow
        for _ in range(4):
            await RisingEdge(dut.clk)
    await _reset(dut)
    results = []
    for job in spec["jobs"]:
        result = {"kind": job.get("kind", "gemm")}
        kind = result["kind"]
        if kind == "gemm":
            await _run_stream_job(dut, job, result)
        elif kind == "reset":
            # Abandon the GEMM mid-tile: pulse reset with data in flight, then the next job must be exact.
            await _run_stream_job(dut, job, result, max_cycles=int(job["reset_after"]))
            await _reset(dut, 3)
        elif kind == "illegal":
            job = dict(job, rows=spec["rows"])
            await _illegal_job(dut, job, result)
        else:
            raise ValueError(f"unknown job kind {kind!r}")
        # Let the array settle between jobs (modes may change only when idle).
        for _ in range(2):
            await RisingEdge(dut.clk)
        results.append(result)
    with open(os.environ["ARRAY_RESULTS"], "w") as f:
        json.dump(results, f)
