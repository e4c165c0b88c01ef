"""The analytic array model against RTL cycle counts (cocotb on Verilator via sim/harness/array_gemm.py)."""

from __future__ import annotations

import numpy as np
import pytest

from npuforge.gen.config.array import ArrayConfig
from npuforge.gen.perf.model import gemm_cycles
from npuforge.sim.harness.array_gemm import golden_gemm, run_gemms
from tests.conftest import require_simulator

# Small GEMMs that exercise every regime of the model: one fold, stream-bound and weight-load-bound WS,
# decode-like GEMVs over many tiles (weight rows written right behind the last activation), M = R (bank reuse at
# the earliest cycle), long-K and drain-bound OS, ragged edges, all three modes.
SHAPES = [(1, 4, 4), (5, 8, 4), (3, 20, 9), (16, 4, 4), (2, 64, 4), (1, 32, 16), (4, 24, 12), (9, 12, 13),
          (32, 32, 16)]


@pytest.mark.cocotb
def test_model_matches_rtl_cycles(simulators):
    require_simulator("verilator")
    cfg = ArrayConfig(rows=4, cols=4, dataflow="both")
    rng = np.random.default_rng(11)
    jobs = []
    for m, k, n in SHAPES:
        for mode in cfg.precisions:
            a_lo, a_hi = (-8, 8) if mode == "int4" else (-128, 128)
            w_lo, w_hi = (-128, 128) if mode == "int8" else (-8, 8)
            for df in ("ws", "os"):
                jobs.append({"kind": "gemm", "a": rng.integers(a_lo, a_hi, (m, k)),
                             "b": rng.integers(w_lo, w_hi, (k, n)), "mode": mode, "dataflow": df,
                             "stalls": 0.0, "seed": 0})
    results = run_gemms(cfg, jobs, sim="verilator")
    worst = 0.0
    for job, res in zip(jobs, results):
        # The run is only evidence if the RTL computed the right answer.
        assert np.array_equal(res["c"], golden_gemm(job["a"], job["b"], job["mode"]))
        m, k = job["a"].shape
        model = gemm_cycles(cfg, m, k, job["b"].shape[1], mode=job["mode"], dataflow=job["dataflow"]).cycles
        worst = max(worst, abs(model - res["cycles"]) / res["cycles"])
        assert model == res["cycles"], (m, k, job["b"].shape[1], job["mode"], job["dataflow"])
    assert worst == 0.0
