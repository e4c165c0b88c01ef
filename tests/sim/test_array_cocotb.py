"""cocotb runs of the PE array RTL against the golden GEMM (``golden.gemm``), every output compared.

One simulation per configuration (one Verilator build each) runs a list of jobs: for every mode and dataflow
random GEMMs with partial tiles, with and without random valid/ready stalls on all three streams, edge operands
(-32768, 32767, -128, 127, -8, 7, 0), the extreme product everywhere over a long K (capped at the mode's exact
bound), illegal mode/dataflow probes (error flag, nothing accepted), and a reset in the middle of a tile followed
by exact GEMMs. Three configurations carry all five modes (the 16-bit-activation ones included).
"""

from __future__ import annotations

import numpy as np
import pytest

from npuforge.gen.config.array import ArrayConfig
from npuforge.spec.precision import MODE_BITS, MODE_CODES, MODE_NAMES, PRECISION_MODES
from npuforge.sim.harness.array_gemm import golden_gemm, run_gemms
from tests.conftest import require_simulator

pytestmark = pytest.mark.cocotb

EDGE = {16: np.array([-32768, 32767, -32767, -128, 127, 256, 0, -1, 1]),
        8: np.array([-128, 127, -8, 7, 0, -1, 1, -127]), 4: np.array([-8, 7, 0, -1, 1, -7])}


def _operands(rng, mode, m, k, n, kind="random"):
    a_bits, b_bits = PRECISION_MODES[mode].bits
    if kind == "random":
        a = rng.integers(-(1 << (a_bits - 1)), 1 << (a_bits - 1), (m, k))
        b = rng.integers(-(1 << (b_bits - 1)), 1 << (b_bits - 1), (k, n))
    elif kind == "edge":
        a = rng.choice(EDGE[a_bits], (m, k))
        b = rng.choice(EDGE[b_bits], (k, n))
    else:  # "extreme": the largest product magnitude in every term, so the sum is the largest possible
        a = np.full((m, k), -(1 << (a_bits - 1)))
        b = np.full((k, n), -(1 << (b_bits - 1)))
        b[:, 1::2] = (1 << (b_bits - 1)) - 1  # odd columns: the most negative sum
    return a.astype(np.int64), b.astype(np.int64)


def _dataflows(cfg):
    return ("ws", "os") if cfg.dataflow == "both" else (cfg.dataflow,)


def build_jobs(cfg: ArrayConfig, *, seed: int, random_per_case: int = 2, long_k: int = 0, heavy: bool = True):
    """Job list for one configuration (see the module docstring)."""
    rng = np.random.default_rng(seed)
    r, c = cfg.rows, cfg.cols
    jobs = []
    for mode in cfg.precisions:
        for dataflow in _dataflows(cfg):
            base = dict(kind="gemm", mode=mode, dataflow=dataflow)
            for i in range(random_per_case):
                # Shapes cover partial tiles in M, K and N and several tiles in each.
                m, k, n = (int(x) for x in rng.integers(1, [3 * r + 2, 3 * r + 2, 3 * c * 2 + 2]))
                a, b = _operands(rng, mode, m, k, n)
                jobs.append(dict(base, a=a, b=b, stalls=0.0 if i == 0 else 0.35, seed=seed + i))
            if heavy:
                a, b = _operands(rng, mode, 2 * r + 1, 2 * r + 3, 4 * c + 1, "edge")
                jobs.append(dict(base, a=a, b=b, stalls=0.2, seed=seed + 7))
            if long_k:
                a, b = _operands(rng, mode, r + 1, min(long_k, cfg.k_limit(mode)), 2 * c + 2, "extreme")
                jobs.append(dict(base, a=a, b=b, stalls=0.0, seed=seed + 9))
    # Illegal selections: the reserved codes always; unsupported modes / dataflow of this configuration.
    reserved = sorted(set(range(1 << MODE_BITS)) - set(MODE_CODES.values()))
    illegal = [(code, 0) for code in reserved]
    illegal += [(MODE_CODES[mode], 0) for mode in MODE_CODES if mode not in cfg.precisions]
    if cfg.dataflow != "both":
        illegal.append((0, 1 if cfg.dataflow == "ws" else 0))
    for mode_code, dataflow_code in illegal:
        jobs.append(dict(kind="illegal", mode_code=mode_code, dataflow_code=dataflow_code, cycles=12))
    # Reset mid-tile in each dataflow, then exact GEMMs again.
    for dataflow in _dataflows(cfg):
        mode = cfg.precisions[-1]
        a, b = _operands(rng, mode, 3 * r, 2 * r + 1, 2 * c + 1)
        jobs.append(dict(kind="reset", a=a, b=b, mode=mode, dataflow=dataflow, stalls=0.1, seed=seed + 3,
                         reset_after=r + c + 3))
        a, b = _operands(rng, mode, 2 * r + 1, 2 * r + 1, 2 * c + 3)
        jobs.append(dict(kind="gemm", a=a, b=b, mode=mode, dataflow=dataflow, stalls=0.2, seed=seed + 4))
    return jobs


def check_results(cfg, jobs, results):
    assert len(results) == len(jobs)
    checked = 0
    for i, (job, res) in enumerate(zip(jobs, results)):
        what = f"job {i} ({job.get('kind')}, {job.get('mode')}, {job.get('dataflow')}, stalls={job.get('stalls')})"
        if job["kind"] == "gemm":
            want = golden_gemm(job["a"], job["b"], job["mode"])
            got = res["c"]
            assert got.shape == want.shape, what
            bad = np.argwhere(got != want)
            assert bad.size == 0, f"{what}: {len(bad)} mismatches, first at {tuple(bad[0])}: " \
                                  f"got {got[tuple(bad[0])]}, want {want[tuple(bad[0])]}"
            assert res["error_cycles"] == 0, what
            checked += want.size
        elif job["kind"] == "illegal":
            assert res["error_cycles"] == job["cycles"], f"{what}: error flag not raised every cycle"
            assert res["accepted"] == 0, f"{what}: illegal selection accepted input"
            assert res["produced"] == 0, f"{what}: illegal selection produced output"
        elif job["kind"] == "reset":
            # The reset came while the GEMM was in flight: input taken, not all results out yet.
            assert 0 < res["beats_in"] and res["beats_out"] < res["n_out"], what
    return checked


# (config, seed, random GEMMs per mode x dataflow, long K, edge case GEMMs). The 16x16 array (a 2-minute
# Verilator build) is checked bit-exact in `make bench` instead (sim/bench/array.py: a 64x128x128 GEMM in every
# mode and dataflow, exit 1 on any mismatch); the array's code is the same for every size, and these cases cover
# square, non-square, both dataflows, every mode, every MAC pipeline depth, stalls and long reductions.
ALL_MODES = MODE_NAMES
CASES = {
    "2x2-both-all": (ArrayConfig(rows=2, cols=2, dataflow="both", precisions=ALL_MODES), 2, 1024, True),
    "4x4-both": (ArrayConfig(rows=4, cols=4, dataflow="both"), 2, 1024, True),
    "4x8-both": (ArrayConfig(rows=4, cols=8, dataflow="both"), 2, 64, True),
    "8x8-both": (ArrayConfig(rows=8, cols=8, dataflow="both"), 2, 128, True),
    "3x5-ws-pipe1-all": (ArrayConfig(rows=3, cols=5, dataflow="ws", mac_pipeline=1, precisions=ALL_MODES), 2, 0,
                         True),
    "5x3-os-pipe3-all": (ArrayConfig(rows=5, cols=3, dataflow="os", mac_pipeline=3, precisions=ALL_MODES), 2, 0,
                         True),
    "4x4-int8only": (ArrayConfig(rows=4, cols=4, dataflow="both", precisions=("int8",)), 2, 256, True),
    "4x4-int8w4a8-os": (ArrayConfig(rows=4, cols=4, dataflow="os", precisions=("int8", "w4a8")), 1, 0, True),
}


@pytest.mark.parametrize("name", list(CASES))
def test_array_gemm_verilator(name):
    require_simulator("verilator")
    cfg, per_case, long_k, heavy = CASES[name]
    jobs = build_jobs(cfg, seed=sum(map(ord, name)), random_per_case=per_case, long_k=long_k, heavy=heavy)
    results = run_gemms(cfg, jobs, sim="verilator")
    assert check_results(cfg, jobs, results) > 0


@pytest.mark.icarus
def test_array_gemm_icarus():
    require_simulator("icarus")
    cfg = ArrayConfig(rows=4, cols=4, dataflow="both")
    jobs = build_jobs(cfg, seed=11, random_per_case=2, long_k=64, heavy=False)
    results = run_gemms(cfg, jobs, sim="icarus")
    assert check_results(cfg, jobs, results) > 0


def test_longest_reduction_max_k_os():
    """K = cfg.k_limit(mode) (the longest reduction the config promises: max_k, w8a16 511, w4a16 4096) of extreme
    products, in every mode (os): the sums reach the int32 bound exactly."""
    require_simulator("verilator")
    cfg = CASES["2x2-both-all"][0]
    assert (cfg.k_limit("w8a16"), cfg.k_limit("w4a16"), cfg.k_limit("int8")) == (511, 4096, 4096)
    rng = np.random.default_rng(5)
    jobs = []
    for mode in cfg.precisions:
        a, b = _operands(rng, mode, 2, cfg.k_limit(mode), 4, "extreme")
        jobs.append(dict(kind="gemm", a=a, b=b, mode=mode, dataflow="os", stalls=0.0, seed=1))
    results = run_gemms(cfg, jobs, sim="verilator", tag="max_k")
    assert check_results(cfg, jobs, results) == 5 * 2 * 4


def test_cycle_counts_are_deterministic_and_overlapped():
    """Full 8x8 tiles without stalls: ws overlaps weight loads (double buffer), os overlaps drains.

    64x64x64 int8 on 8x8 is 8*8 tiles: ideal 4096 cycles; the fill/drain latency is paid once, not per tile.
    A decode GEMV 1x64x64 (64 tiles of one activation beat) runs at the weight stream's full rate: a retired bank
    takes the next tile right behind the last activation's wavefront, so one tile per 8 cycles (8 weight beats).
    """
    require_simulator("verilator")
    cfg = ArrayConfig(rows=8, cols=8, dataflow="both")
    rng = np.random.default_rng(9)
    a, b = _operands(rng, "int8", 64, 64, 64)
    jobs = [dict(kind="gemm", a=a, b=b, mode="int8", dataflow=df, stalls=0.0, seed=0) for df in ("ws", "os")]
    a1, b1 = _operands(rng, "int8", 1, 64, 64, "edge")
    jobs.append(dict(kind="gemm", a=a1, b=b1, mode="int8", dataflow="ws", stalls=0.0, seed=0))
    results = run_gemms(cfg, jobs, sim="verilator", tag="overlap")
    check_results(cfg, jobs, results)
    ideal = 64 * 64 * 64 // 64
    for res in results[:2]:
        # One fill/drain of at most ~4*(rows+cols) cycles on top of the ideal count.
        assert ideal <= res["cycles"] <= ideal + 4 * (8 + 8), res["cycles"]
    # First tile streams after its 8 weight beats, then one tile per 8 cycles: the last (64th) starts at
    # 8 + 63 * 8 = 512, streams 1 beat, and its result leaves (rows + cols - 2) + pipeline 2 + 2 = 18 cycles later.
    assert results[2]["cycles"] == 8 + 63 * 8 + 1 + 18
