"""PE array on the Amaranth simulator: small GEMMs in every mode/dataflow vs the golden GEMM, stalls, errors.

The same beat plans as the cocotb runs (``sim.harness.array_gemm.plan_gemm``), driven here without Verilator, so
the array logic is checked on every ``make test-fast`` too. Also: the generator's config -> RTL mapping and
parameter errors.
"""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from npuforge.gen.build.units import array_kwargs, build_array
from npuforge.spec.dataflow import DATAFLOW_CODES
from npuforge.spec.precision import MODE_NAMES, MODE_CODES
from npuforge.gen.config.array import ArrayConfig
from npuforge.spec.precision import PRECISION_MODES
from npuforge.gen.perf.model import gemm_cycles
from npuforge.rtl.array import PEArray
from npuforge.rtl.mac import MAC
from npuforge.sim.harness.array_gemm import golden_gemm, plan_gemm


def run_pysim(cfg, jobs, *, stalls=0.0, seed=0, c_stalls=None, pairs=False):
    """Run (mode, dataflow, plan) jobs back to back on the Amaranth simulator; return (result beats, cycles) per
    job. ``stalls``: probability that an input source idles before a beat; ``c_stalls`` (default ``stalls``):
    probability that ``c.ready`` is low in a cycle. Cycles count as in sim.tb.array (first offer to last result)."""
    c_stalls = stalls if c_stalls is None else c_stalls
    dut = build_array(cfg)
    rng = random.Random(seed)
    results = []

    async def tb(ctx):
        for mode, dataflow, plan in jobs:
            ctx.set(dut.mode, MODE_CODES[mode])
            ctx.set(dut.dataflow, DATAFLOW_CODES[dataflow])
            ctx.set(dut.w_pairs, int(pairs))
            ai = wi = 0
            a_on = w_on = False
            outs = []
            cycles = 0
            while len(outs) < plan.n_out:
                # A source keeps valid until the transfer; new beats start with probability 1 - stalls.
                a_on = a_on or (ai < len(plan.a_beats) and rng.random() >= stalls)
                w_on = w_on or (wi < len(plan.w_beats) and rng.random() >= stalls)
                c_ready = rng.random() >= c_stalls
                ctx.set(dut.a.valid, a_on)
                ctx.set(dut.w.valid, w_on)
                if a_on:
                    ctx.set(dut.a.payload.as_value(), plan.a_beats[ai])
                if w_on:
                    ctx.set(dut.w.payload.as_value(), plan.w_beats[wi])
                ctx.set(dut.c.ready, c_ready)
                await ctx.delay(1e-9)
                assert not ctx.get(dut.error)
                if a_on and ctx.get(dut.a.ready):
                    ai, a_on = ai + 1, False
                if w_on and ctx.get(dut.w.ready):
                    wi, w_on = wi + 1, False
                if c_ready and ctx.get(dut.c.valid):
                    outs.append(ctx.get(dut.c.payload.as_value()))
                await ctx.tick()
                cycles += 1
                assert cycles < 2000, "array hung"
            ctx.set(dut.a.valid, 0)
            ctx.set(dut.w.valid, 0)
            results.append((outs, cycles))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return results


def _operands(rng, mode, m, k, n):
    a_bits, b_bits = PRECISION_MODES[mode].bits
    a = rng.integers(-(1 << (a_bits - 1)), 1 << (a_bits - 1), (m, k))
    b = rng.integers(-(1 << (b_bits - 1)), 1 << (b_bits - 1), (k, n))
    # Edge values in the first row/column: the most negative and most positive operands.
    a[0, :] = -(1 << (a_bits - 1))
    b[:, 0] = -(1 << (b_bits - 1))
    b[-1, -1] = (1 << (b_bits - 1)) - 1
    return a, b


@pytest.mark.parametrize("cfg", [
    ArrayConfig(rows=2, cols=3, dataflow="both"),
    ArrayConfig(rows=3, cols=2, dataflow="both", mac_pipeline=3),
    ArrayConfig(rows=2, cols=2, dataflow="both", precisions=("int8",), mac_pipeline=1),
    ArrayConfig(rows=2, cols=3, dataflow="both", precisions=MODE_NAMES, mac_pipeline=4),
    ArrayConfig(rows=3, cols=2, dataflow="both", precisions=MODE_NAMES, mac_pipeline=5),
], ids=["2x3-both", "3x2-both-pipe3", "2x2-int8only-pipe1", "2x3-both-all-pipe4", "3x2-both-all-pipe5"])
def test_array_gemm_all_modes_pysim(cfg):
    rng = np.random.default_rng(cfg.rows * 10 + cfg.cols)
    jobs, operands = [], []
    for mode in cfg.precisions:
        for dataflow in ("ws", "os"):
            m, k, n = (int(x) for x in rng.integers(2, [2 * cfg.rows + 3, 2 * cfg.rows + 3, 4 * cfg.cols + 2]))
            a, b = _operands(rng, mode, m, k, n)
            jobs.append((mode, dataflow, plan_gemm(cfg, a, b, mode=mode, dataflow=dataflow)))
            operands.append((a, b, mode))
    for stalls in (0.0, 0.4):
        results = run_pysim(cfg, jobs, stalls=stalls, seed=3)
        for (mode, dataflow, plan), (a, b, _), (outs, _cycles) in zip(jobs, operands, results):
            assert np.array_equal(plan.assemble(outs), golden_gemm(a, b, mode)), (mode, dataflow, stalls)


@pytest.mark.parametrize("cfg", [
    ArrayConfig(rows=3, cols=4, dataflow="ws"),
    ArrayConfig(rows=4, cols=2, dataflow="both", precisions=("int8", "w4a8"), mac_pipeline=1),
    ArrayConfig(rows=3, cols=2, dataflow="ws", precisions=("int8", "w8a16", "w4a16"), mac_pipeline=4),
    ArrayConfig(rows=2, cols=3, dataflow="ws", precisions=("int8",), mac_pipeline=4),
    ArrayConfig(rows=1, cols=3, dataflow="ws", precisions=("int8", "w4a8")),
    ArrayConfig(rows=2, cols=2, dataflow="ws", precisions=MODE_NAMES, mac_pipeline=5),
], ids=["3x4-ws", "4x2-both-pipe1", "3x2-ws-a16-pipe4", "2x3-ws-int8-pipe4", "1x3-ws", "2x2-ws-all-pipe5"])
def test_gemv_weight_release_pysim(cfg):
    """Decode-like GEMVs (M = 1, 2, 3) over many weight tiles: each tile's weight rows are written right behind the
    previous tile's last activation (rows released by its wavefront). Bit-exact with no stalls, with stalls on
    every stream, and with full-rate weights against a stalling result stream (the bank writes must wait with the
    frozen activations); without stalls the cycle count is exactly gen.perf.model's (one fold per ``rows`` cycles)."""
    rng = np.random.default_rng(cfg.rows * 7 + cfg.cols)
    cases = []
    for mode in cfg.precisions:
        for m in (1, 2, 3):
            k, n = 5 * cfg.rows - 1, 3 * cfg.cols * (2 if mode == "w4a8" else 1) + 1
            a, b = _operands(rng, mode, m, k, n)
            cases.append((mode, a, b, plan_gemm(cfg, a, b, mode=mode, dataflow="ws")))
    for mode, a, b, plan in cases:
        # One simulation per GEMM so the cycle count starts from reset, as the model assumes.
        (outs, cycles), = run_pysim(cfg, [(mode, "ws", plan)])
        assert np.array_equal(plan.assemble(outs), golden_gemm(a, b, mode)), (mode, a.shape)
        m, k = a.shape
        assert cycles == gemm_cycles(cfg, m, k, b.shape[1], mode=mode, dataflow="ws").cycles, (mode, a.shape)
    jobs = [(mode, "ws", plan) for mode, _a, _b, plan in cases]
    for stalls, c_stalls in ((0.4, 0.4), (0.0, 0.6)):
        results = run_pysim(cfg, jobs, stalls=stalls, c_stalls=c_stalls, seed=5)
        for (mode, a, b, plan), (outs, _cycles) in zip(cases, results):
            assert np.array_equal(plan.assemble(outs), golden_gemm(a, b, mode)), (mode, a.shape, stalls, c_stalls)


def test_cycles_from_reset_both_dataflows_pipe5_pysim():
    """One GEMM per simulation from reset, ws and os, at depth 5: the cycle count is exactly gen.perf.model's with the
    registered edges (rtl.array.edge_stages: two more ws cycles, one more os cycle), and bit-exact."""
    cfg = ArrayConfig(rows=3, cols=2, dataflow="both", precisions=("int8", "w4a8"), mac_pipeline=5)
    rng = np.random.default_rng(5)
    for mode in cfg.precisions:
        for dataflow in ("ws", "os"):
            for m, k, n in ((1, 4, 3), (7, 5, 5)):
                a, b = _operands(rng, mode, m, k, n)
                plan = plan_gemm(cfg, a, b, mode=mode, dataflow=dataflow)
                (outs, cycles), = run_pysim(cfg, [(mode, dataflow, plan)])
                assert np.array_equal(plan.assemble(outs), golden_gemm(a, b, mode)), (mode, dataflow, m, k, n)
                expect = gemm_cycles(cfg, m, k, n, mode=mode, dataflow=dataflow).cycles
                assert cycles == expect, (mode, dataflow, m, k, n)


def test_illegal_mode_raises_error_and_blocks():
    """int8-only array, ws only: w4a8 / int4 / code 3 and the os dataflow raise ``error`` and accept nothing."""
    dut = PEArray(rows=2, cols=2, dataflows=("ws",), precisions=("int8",))
    seen = []

    async def tb(ctx):
        ctx.set(dut.a.valid, 1)
        ctx.set(dut.w.valid, 1)
        ctx.set(dut.c.ready, 1)
        for mode, dataflow in ((1, 0), (2, 0), (3, 0), (0, 1), (0, 0)):
            ctx.set(dut.mode, mode)
            ctx.set(dut.dataflow, dataflow)
            await ctx.delay(1e-9)
            seen.append((mode, dataflow, ctx.get(dut.error), ctx.get(dut.w.ready)))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    assert seen == [(1, 0, 1, 0), (2, 0, 1, 0), (3, 0, 1, 0), (0, 1, 1, 0), (0, 0, 0, 1)]


@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_build_maps_config_fields():
    cfg = ArrayConfig(rows=4, cols=8, dataflow="both", precisions=("int8", "w4a8"), acc_width=24, max_k=256,
                      mac_pipeline=3)
    assert array_kwargs(cfg) == {"rows": 4, "cols": 8, "dataflows": ("ws", "os"), "precisions": ("int8", "w4a8"),
                                 "pipeline": 3, "acc_width": 24}
    arr = build_array(cfg)
    assert (arr.rows, arr.cols, arr.lanes, arr.acc_width) == (4, 8, 2, 24)
    assert arr.c.payload.shape().size == 8 * 2 * 24 + 1
    assert build_array(ArrayConfig(precisions=("int8",))).lanes == 1


@pytest.mark.filterwarnings("ignore:.*created but never used")
@pytest.mark.parametrize("kwargs, message", [
    ({"rows": 0}, "rows must be an integer in [1, 64], got 0"),
    ({"cols": 65}, "cols must be an integer in [1, 64], got 65"),
    ({"dataflows": ("wx",)}, "dataflows must be"),
    ({"precisions": ("int4",)}, "precisions must be a subset"),
    ({"pipeline": 6}, "pipeline must be an integer in [1, 5], got 6"),
    ({"acc_width": 8}, "acc_width must be an integer in [16, 64], got 8"),
])
def test_rtl_parameter_errors(kwargs, message):
    with pytest.raises(ValueError) as e:
        PEArray(**kwargs)
    assert message in str(e.value)
    if "rows" not in kwargs and "cols" not in kwargs and "dataflows" not in kwargs:
        with pytest.raises(ValueError):
            MAC(**{k: v for k, v in kwargs.items()})


def _paired(plan, cfg):
    """A w4a16 ws plan's weight beats as row pairs (PEArray.w_pairs): beats 2j and 2j + 1 of each tile in the low and
    high nibbles of one beat."""
    beats, out = plan.w_beats, []
    for j in range(0, len(beats), 2):
        out.append(sum((((beats[j] >> 8 * c) & 0xF) | (((beats[j + 1] >> 8 * c) & 0xF) << 4)) << 8 * c
                       for c in range(cfg.cols)))
    return dataclasses.replace(plan, w_beats=out)


@pytest.mark.parametrize("cfg", [
    ArrayConfig(rows=4, cols=3, dataflow="ws", precisions=("int8", "w8a16", "w4a16")),
    ArrayConfig(rows=6, cols=2, dataflow="ws", precisions=("int8", "w8a16", "w4a16"), mac_pipeline=5),
    ArrayConfig(rows=8, cols=2, dataflow="both", precisions=("int8", "w4a8", "w8a16", "w4a16")),
], ids=["4x3-ws", "6x2-ws-pipe5-edges", "8x2-both"])
def test_w4a16_row_pairs_pysim(cfg):
    """w4a16 weight beats of two K rows (``w_pairs``, the K-packed block codes): GEMVs (M = 1..3, the decode case
    where the pairs outrun the retired tile's wavefront and the bank hold matters) and a longer M, bit-exact without
    stalls (cycles exactly gen.perf.model's row-pair schedule: rows / 2 weight beats a tile), with stalls on every
    stream, and with full-rate weights against a stalling result stream."""
    rng = np.random.default_rng(cfg.rows * 11 + cfg.cols)
    cases = []
    for m in (1, 2, 3, 2 * cfg.rows + 1):
        k, n = 5 * cfg.rows - 1, 3 * cfg.cols + 1
        a, b = _operands(rng, "w4a16", m, k, n)
        cases.append((a, b, _paired(plan_gemm(cfg, a, b, mode="w4a16", dataflow="ws"), cfg)))
    for a, b, plan in cases:
        (outs, cycles), = run_pysim(cfg, [("w4a16", "ws", plan)], pairs=True)
        assert np.array_equal(plan.assemble(outs), golden_gemm(a, b, "w4a16")), a.shape
        m, k = a.shape
        assert cycles == gemm_cycles(cfg, m, k, b.shape[1], mode="w4a16", dataflow="ws", row_pairs=True).cycles
    jobs = [("w4a16", "ws", plan) for _a, _b, plan in cases]
    for stalls, c_stalls in ((0.4, 0.4), (0.0, 0.6)):
        results = run_pysim(cfg, jobs, stalls=stalls, c_stalls=c_stalls, seed=7, pairs=True)
        for (a, b, plan), (outs, _cycles) in zip(cases, results):
            assert np.array_equal(plan.assemble(outs), golden_gemm(a, b, "w4a16")), (a.shape, stalls, c_stalls)
