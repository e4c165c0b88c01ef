"""w8a16 and w4a16 MATMULs on the whole NPU (int16 activations in the scratchpad, gen.isa.layout), on the fast
harness and the native harness: bit-exact against both golden tiers (the ISA simulator's DRAM image and golden
``requantize(gemm)``) for random operands with every edge value (int16 -32768/32767, int8 -128/127, int4 -8/7),
ragged m/k/n, K at each mode's int32 limit, K split into accumulate=1 chains, int16 outputs; the native harness
cycle for cycle equal to the fast one; MATMUL cycles of gen.perf (one int16 activation beat per cycle) against the
RTL; output-stationary MATMULs (int16 A columns through the transposer) with the same output bytes as ws; an NPU
built without the modes stops such a MATMUL with ILLEGAL_INSTRUCTION. Shares the Verilator build of
tests/rtl/npu/test_npu_os_cocotb.py (4x4, both dataflows, all modes); the native-against-fast comparison runs on
CFG16 (tests/rtl/npu/test_npu_qkt_cocotb.py: 4x4, int8 / w8a16 / w4a16), whose fast and native builds the Llama,
BERT and block tests already make.
"""

from __future__ import annotations

import numpy as np
import pytest

from npuforge.gen.isa.isasim import Window
from npuforge.gen.isa.layout import pack_a_tile
from npuforge.gen.perf.model import gemm_cycles
from npuforge.gen.perf.program import program_cycles
from npuforge.golden.gemm import gemm_mode, max_reduction_length
from npuforge.golden.quant import pack_int4
from npuforge.sim.harness.npu_run import gemm_job, program_job, run_jobs
from npuforge.spec.isa import DmaLoad, DmaStore, ErrorCode, Fence, Halt, MatMul, decode_program, encode_program
from tests.conftest import require_simulator
from tests.rtl.npu.checks import assert_fast_exact
from tests.rtl.npu.test_npu_fast_cocotb import CFG as NARROW_CFG
from tests.rtl.npu.test_npu_os_cocotb import CFG
from tests.rtl.npu.test_npu_qkt_cocotb import CFG16

W8A16_K_LIMIT = max_reduction_length(16, 8)      # 511: K * 2^15 * 2^7 <= 2^31 - 1
W4A16_K_LIMIT = max_reduction_length(16, 4)      # 8191


def _jobs(cfg=CFG):
    """Random + edge operands (sim.harness.npu_run.gemm_operands), ragged shapes, K limits, K chains, int16 out,
    compiled for ``cfg``."""
    jobs = []
    for i, mode in enumerate(("w8a16", "w4a16")):
        s = 10 * i
        jobs += [gemm_job(cfg, 1, 1, 1, mode, seed=s)[0],
                 gemm_job(cfg, 9, 37, 13, mode, seed=s + 1)[0],
                 gemm_job(cfg, 6, 5, 10, mode, seed=s + 2, out_bits=16, name=f"{mode}_out16")[0],
                 gemm_job(cfg, 13, 20, 11, mode, seed=s + 3, tiles=(8, 8, 6), order="nm", name=f"{mode}_chain")[0]]
    jobs.append(gemm_job(cfg, 2, W8A16_K_LIMIT, 3, "w8a16", seed=5, name="w8a16_k_limit")[0])
    jobs.append(gemm_job(cfg, 1, W4A16_K_LIMIT, 2, "w4a16", seed=6, name="w4a16_k_limit")[0])
    return jobs


def test_k_limits_come_from_the_accumulator_and_are_refused_above():
    assert (W8A16_K_LIMIT, W4A16_K_LIMIT) == (511, 8191)
    assert CFG.array.k_limit("w8a16") == 511
    for mode, k in (("w8a16", 512), ("w4a16", 8192)):
        with pytest.raises(ValueError, match=rf"K must be in \[1, {k - 1}\]"):
            gemm_job(CFG, 1, k, 1, mode)


def test_chain_jobs_split_k_into_accumulating_matmuls():
    for job in (j for j in _jobs() if j.name.endswith("_chain")):
        program = decode_program(bytes(job.image[:job.program_len]))
        acc = [ins.accumulate for ins in program if isinstance(ins, MatMul)]
        assert 0 in acc and 1 in acc, job.name


@pytest.mark.cocotb
def test_a16_gemms_bit_exact_fast_with_stalls():
    require_simulator("verilator")
    jobs = _jobs()
    results = run_jobs(CFG, jobs, harness="fast", latency=5, stall=0.2, seed=21)
    assert_fast_exact(jobs, results)


@pytest.mark.cocotb
def test_a16_native_equals_fast_and_cycles_follow_the_model():
    """Stall-free: native == fast (cycles, counters, DRAM image), both bit-exact; gen.perf.program within its 3 %
    target of the RTL's busy cycles on every program."""
    require_simulator("verilator")
    jobs = _jobs(CFG16)[:8]
    kw = dict(latency=0, stall=0.0, seed=3, keep_memory=True)
    fast = run_jobs(CFG16, jobs, harness="fast", **kw)
    native = run_jobs(CFG16, jobs, harness="native", **kw)
    assert_fast_exact(jobs, fast)
    assert_fast_exact(jobs, native)
    for job, f, n in zip(jobs, fast, native):
        assert n["counters"] == f["counters"] and n["cycles"] == f["cycles"], job.name
        assert np.array_equal(n["memory"], f["memory"]), job.name
    for job, res in zip(jobs, fast):
        rtl = res["counters"]["BUSY_CYCLES"]
        prog = bytes(job.image[:job.program_len])
        model = program_cycles(prog, CFG16, latency=0, harness="fast").cycles
        assert abs(model - rtl) <= 0.03 * rtl, (job.name, model, rtl)


def _matmul_program(mode, m_run, k, n, a, b):
    """Load A [16, k] int16 and B [k, n], one ws MATMUL of the first ``m_run`` rows, store 16 int32 result rows
    (the same bytes whatever ``m_run``: unwritten accumulator rows are zero)."""
    a_raw = pack_a_tile(a, 16)
    b_raw = (b & 255).astype(np.uint8) if mode == "w8a16" else np.stack([pack_int4(r) for r in b])
    image = np.zeros(1 << 16, dtype=np.uint8)
    image[0x1000:0x1000 + a_raw.size] = a_raw.ravel()
    image[0x4000:0x4000 + b_raw.size] = b_raw.ravel()
    prog = encode_program([
        DmaLoad("spad", 0, 0x1000, a_raw.shape[1], a_raw.shape[0], a_raw.shape[1]),
        DmaLoad("spad", 8192, 0x4000, b_raw.shape[1], k, b_raw.shape[1]),
        Fence(load=0),
        MatMul(mode, "ws", 0, m_run, k, n, 0, 8192, 0),
        Fence(matrix=0),
        DmaStore("acc", 0, 0x8000, 4 * n, 16, 4 * n),
        Halt()])
    return prog, image


@pytest.mark.cocotb
@pytest.mark.parametrize("mode", ["w8a16", "w4a16"])
def test_a16_matmul_cycles_one_beat_per_cycle(mode):
    """Two programs that differ only in the MATMUL's m (8 vs 16): the busy-cycle difference is the array model's
    (gen.perf.model: (k-folds x n-folds) x 8 beats), so an int16 activation beat (8 bytes) costs one cycle.
    Results equal golden gemm."""
    require_simulator("verilator")
    k, n = 12, 8
    rng = np.random.default_rng(4)
    a = rng.integers(-32768, 32768, size=(16, k))
    b = rng.integers(-8, 8, size=(k, n)) if mode == "w4a16" else rng.integers(-128, 128, size=(k, n))
    a[0, :], a[1, :] = -32768, 32767
    b[:, 0] = b.min()
    jobs, wants = [], []
    for m_run in (8, 16):
        prog, image = _matmul_program(mode, m_run, k, n, a, b)
        jobs.append(program_job(CFG, f"{mode}_m{m_run}", prog, image, [Window(0, 1 << 16)]))
        want = np.zeros((16, n), dtype=np.int64)
        want[:m_run] = gemm_mode(a[:m_run], b, mode)
        wants.append(want)
    results = run_jobs(CFG, jobs, harness="fast", latency=0, stall=0.0, seed=3, keep_memory=True)
    for job, res, want in zip(jobs, results, wants):
        assert not res["timeout"] and res["error"] == job.expect_status == 0, (job.name, res)
        assert res["isasim_mismatch_bytes"] == 0, (job.name, res)
        got = res["memory"][0x8000:0x8000 + 64 * n].view("<i4").reshape(16, n)
        assert np.array_equal(got, want), job.name
    delta = results[1]["counters"]["BUSY_CYCLES"] - results[0]["counters"]["BUSY_CYCLES"]
    model = gemm_cycles(CFG.array, 16, k, n, mode=mode).cycles - gemm_cycles(CFG.array, 8, k, n, mode=mode).cycles
    assert model == 3 * 2 * 8
    assert delta == model, (delta, model)


def _one_matmul(cfg, mode, dataflow):
    prog = encode_program([MatMul(mode, dataflow, 0, 2, 3, 4, 0, 1024, 0), Halt()])
    return program_job(cfg, f"{mode}_{dataflow}_illegal", prog, np.zeros(1 << 16, dtype=np.uint8),
                       [Window(0, 1 << 16)])


@pytest.mark.cocotb
def test_a16_illegal_without_the_modes():
    """ILLEGAL_INSTRUCTION (status, interrupt, pc at the MATMUL), never a hang: w8a16/w4a16 in either dataflow on
    the NPU of tests/rtl/npu/test_npu_fast_cocotb.py (built without them; its decoder keeps w0[12] reserved)."""
    require_simulator("verilator")
    jobs = [_one_matmul(NARROW_CFG, mode, "ws") for mode in ("w8a16", "w4a16")]
    assert [j.expect_status for j in jobs] == [ErrorCode.ILLEGAL_INSTRUCTION] * 2
    results = run_jobs(NARROW_CFG, jobs, harness="fast", latency=0, stall=0.0, seed=1)
    for job, res in zip(jobs, results):
        assert not res["timeout"] and res["error"] == ErrorCode.ILLEGAL_INSTRUCTION, (job.name, res)
        assert res["tail"] == job.expect_tail == 0 and res["irq_status"] == 3, (job.name, res)


@pytest.mark.cocotb
def test_a16_output_stationary_bit_exact_same_bytes_as_ws():
    """dataflow=os: ragged shapes, k = 1, K split into accumulate chains, bit-exact on both golden tiers and the
    same output bytes as ws; gen.perf.program (its os MATMUL model with half-size int16 chunks) within 3 %."""
    require_simulator("verilator")
    shapes = [(5, 7, 6, {}), (9, 37, 13, {}), (6, 1, 9, {}), (13, 20, 11, {"tiles": (8, 8, 6), "order": "nm"})]
    jobs = []
    for df in ("os", "ws"):
        for i, mode in enumerate(("w8a16", "w4a16")):
            for j, (m, k, n, kw) in enumerate(shapes):
                jobs.append(gemm_job(CFG, m, k, n, mode, seed=30 + 10 * i + j, dataflow=df,
                                     name=f"{df}_{mode}_{m}x{k}x{n}", **kw)[0])
    results = run_jobs(CFG, jobs, harness="fast", latency=0, stall=0.0, seed=9, keep_memory=True)
    assert_fast_exact(jobs, results)
    half = len(jobs) // 2
    for j_os, j_ws, r_os, r_ws in zip(jobs[:half], jobs[half:], results[:half], results[half:]):
        lo, hi = j_os.c_range
        assert np.array_equal(r_os["memory"][lo:hi], r_ws["memory"][lo:hi]), j_os.name
    for job, res in zip(jobs, results):
        rtl = res["counters"]["BUSY_CYCLES"]
        model = program_cycles(bytes(job.image[:job.program_len]), CFG, latency=0, harness="fast").cycles
        assert abs(model - rtl) <= 0.03 * rtl, (job.name, model, rtl)
