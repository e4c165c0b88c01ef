"""MATMUL dataflow=os on an NPU built with both dataflows (4x4 array, 16 KiB scratchpad, no vector unit, all five
precision modes), in the fast harness (Verilator): the output-stationary schedule runs, bit-exact against both
golden tiers (the ISA simulator's DRAM image and golden ``requantize(gemm)``) in int8, w4a8 and int4, ragged
shapes, k = 1, the
longest K one MATMUL of this config can hold, edge values, accumulate=1 chains (tiles with K split), and the same
output bytes as the same programs run weight-stationary on the same build. The cycle counts prove OS ran: a
MATMUL's cycles as a function of K follow the OS schedule's count derived by hand
(tests/rtl/test_matmul_os_amaranth.py ``os_cycles``), which differs from the ws count.
"""

from __future__ import annotations

import numpy as np
import pytest

from npuforge.gen.config.array import ArrayConfig
from npuforge.spec.isa import DmaLoad, DmaStore, Fence, Halt, MatMul, encode_program
from npuforge.gen.isa.isasim import Window
from npuforge.gen.config.npu import NPUConfig
from npuforge.gen.perf.program import program_cycles
from npuforge.golden.gemm import gemm_mode
from npuforge.sim.harness.npu_run import gemm_job, program_job, run_jobs
from tests.conftest import require_simulator
from tests.rtl.npu.checks import assert_fast_exact
from tests.rtl.test_matmul_os_amaranth import os_cycles

#: Also built with the 16-bit-activation modes: tests/rtl/npu/test_npu_a16_cocotb.py shares this Verilator build.
CFG = NPUConfig(array=ArrayConfig(rows=4, cols=4, dataflow="both",
                                  precisions=("int8", "w4a8", "int4", "w8a16", "w4a16")),
                spad_bytes=16384, spad_banks=2, acc_bytes=4096, axi_data_bits=64, windows=2, vector_ops=())
#: The longest K one MATMUL holds here: a 1 x K A tile and a K x 1 B tile (K words: one per B row), both
#: double-buffered in 16 KiB (gen.isa.compiler.plan_gemm rejects tk = 867).
K_LONGEST = 866


def _gemms(dataflow):
    """(mode, m, k, n, compile options): ragged shapes, k = 1, K split into accumulate chains, longest K."""
    return [
        ("int8", 1, 1, 1, {}),
        ("int8", 5, 7, 6, {}),
        ("int8", 17, 33, 21, {}),                                  # auto tiles (os: whole K; ws: K split)
        ("int8", 13, 20, 11, {"tiles": (8, 12, 8), "order": "nm"}),  # K split 12 + 8
        ("int8", 6, 1, 9, {}),
        ("int8", 1, K_LONGEST, 1, {"tiles": (1, K_LONGEST, 1)}),
        ("w4a8", 9, 64, 40, {}),
        ("w4a8", 5, 7, 6, {}),
        ("w4a8", 3, 30, 10, {"tiles": (3, 16, 10)}),               # K split 16 + 14
        ("w4a8", 1, K_LONGEST, 1, {"tiles": (1, K_LONGEST, 1)}),
        ("int4", 17, 33, 21, {}),
        ("int4", 5, 7, 6, {}),
        ("int4", 11, 24, 18, {"tiles": (6, 8, 10)}),               # M, K and N split
        ("int4", 1, K_LONGEST, 1, {"tiles": (1, K_LONGEST, 1)}),
    ]


@pytest.mark.cocotb
def test_os_gemms_bit_exact_and_same_bytes_as_ws():
    require_simulator("verilator")
    jobs, plans = [], []
    chained = False
    for df in ("os", "ws"):
        for i, (mode, m, k, n, kw) in enumerate(_gemms(df)):
            job, comp = gemm_job(CFG, m, k, n, mode, seed=100 + i, dataflow=df, name=f"{df}_{mode}_{m}x{k}x{n}",
                                 **kw)
            assert comp.plan.dataflow == df
            assert all(ins.dataflow == df for ins in comp.program if isinstance(ins, MatMul))
            jobs.append(job)
            plans.append(comp.plan)
            if df == "os":
                chained = chained or any(isinstance(ins, MatMul) and ins.accumulate for ins in comp.program)
    # K split into chained accumulate=1 MATMULs is among the os programs (forced tiles).
    assert chained
    results = run_jobs(CFG, jobs, harness="fast", latency=5, stall=0.2, seed=7, keep_memory=True)
    assert_fast_exact(jobs, results)
    half = len(jobs) // 2
    for j_os, j_ws, r_os, r_ws in zip(jobs[:half], jobs[half:], results[:half], results[half:]):
        lo, hi = j_os.c_range
        assert (lo, hi) == j_ws.c_range
        got_os = r_os["memory"][lo:hi]
        got_ws = r_ws["memory"][lo:hi]
        assert np.array_equal(got_os, got_ws), j_os.name


def _cycle_program(dataflow, k):
    """Load A [8, 12] and B [12, 8] int8, one MATMUL (m = n = 8, ``k`` <= 12 of them), store the int32 result."""
    rng = np.random.default_rng(5)
    a = rng.integers(-128, 128, size=(8, 12))
    b = rng.integers(-128, 128, size=(12, 8))
    a[0, :], b[:, 0] = -128, -128
    a[1, :], b[:, 1] = 127, 127
    image = np.zeros(1 << 16, dtype=np.uint8)
    image[0x1000:0x1000 + a.size] = (a & 255).astype(np.uint8).ravel()
    image[0x2000:0x2000 + b.size] = (b & 255).astype(np.uint8).ravel()
    prog = encode_program([
        DmaLoad("spad", 0, 0x1000, 12, 8, 12),          # A rows at the 2-word stride of K in 9..16
        DmaLoad("spad", 1024, 0x2000, 8, 12, 8),
        Fence(load=0),
        MatMul("int8", dataflow, 0, 8, k, 8, 0, 1024, 0),
        Fence(matrix=0),
        DmaStore("acc", 0, 0x3000, 32, 8, 32),
        Halt(),
    ])
    job = program_job(CFG, f"cycles_{dataflow}_k{k}", prog, image, [Window(0, 1 << 16, read=True, write=True)])
    return job, gemm_mode(a[:, :k], b[:k], "int8")


@pytest.mark.cocotb
def test_os_cycle_count_follows_the_os_schedule():
    """Two programs that differ only in the MATMUL's K (9 vs 12, same layouts and DMA): the difference of their
    busy cycles is the MATMUL's, which for OS is os_cycles(8, 12, 8) - os_cycles(8, 9, 8) = 3 (four 4x4 tiles,
    each tile bound by the previous one's drain, so only the first tile's K shows), and for ws 0 (both K fold
    into three k-folds of 4). Results bit-exact (ISA simulator image and golden GEMM)."""
    require_simulator("verilator")
    jobs, wants = [], []
    for df in ("os", "ws"):
        for k in (9, 12):
            job, want = _cycle_program(df, k)
            jobs.append(job)
            wants.append(want)
    results = run_jobs(CFG, jobs, harness="fast", latency=0, stall=0.0, seed=3, keep_memory=True)
    for job, res, want in zip(jobs, results, wants):
        assert not res["timeout"] and res["error"] == job.expect_status == 0, (job.name, res)
        assert res["isasim_mismatch_bytes"] == 0 and res["tail"] == job.expect_tail, (job.name, res)
        got = res["memory"][0x3000:0x3000 + 256].view("<i4").reshape(8, 8)
        assert np.array_equal(got, want), job.name
    cyc = {job.name: res["counters"]["BUSY_CYCLES"] for job, res in zip(jobs, results)}
    os_delta = cyc["cycles_os_k12"] - cyc["cycles_os_k9"]
    ws_delta = cyc["cycles_ws_k12"] - cyc["cycles_ws_k9"]
    assert os_delta == os_cycles(8, 12, 8) - os_cycles(8, 9, 8) == 3, cyc
    assert ws_delta == 0, cyc
    assert cyc["cycles_os_k12"] != cyc["cycles_ws_k12"], cyc
    # gen.perf.program (its os MATMUL model) within its 3 % target.
    for job, res in zip(jobs, results):
        model = program_cycles(job.image[:job.program_len].tobytes(), CFG, latency=0, harness="fast").cycles
        assert abs(model - res["counters"]["BUSY_CYCLES"]) <= 0.03 * res["counters"]["BUSY_CYCLES"], (job.name, model)
