"""RTL spot checks of a sweep's LLM metrics (``npuforge sweep --rtl-check N``): the cycle model that prices every
point (gen.ppa.llm_metrics) against the NPU's Verilog on a few of them.

For each chosen point (N points that run the LLM, spread from the smallest to the largest array), the LLM's layer 0
is lowered alone (gen.lower.llama, ``layers=range(1)``: the same kernels and shapes as layer 0 of the whole model)
for a prompt of the workload's length; its prefill program runs on the ISA simulator and its decode-step program
(``step1.l0``: one token against the KV cache at context ``prompt_tokens + 1``) on the RTL (native harness by
default), checked bit for bit against the ISA simulator and the golden operators. Recorded per point: measured
cycles, the cycle model's prediction for the same program and DRAM timing, and the difference. The token ids are a
fixed pseudo-random draw (cycle counts do not depend on the values). Slow: one Verilator build per NPU configuration.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["pick_points", "rtl_check"]


def pick_points(results: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """``n`` result rows with LLM metrics, spread evenly from the smallest array to the largest (fewer if fewer run
    the LLM)."""
    runs = sorted((r for r in results if r["metrics"].get("llm_decode_cycles") is not None),
                  key=lambda r: (r["config"]["rows"] * r["config"]["cols"], r["config"]["name"]))
    if n >= len(runs):
        return runs
    if n == 1:
        return [runs[0]]
    return [runs[round(i * (len(runs) - 1) / (n - 1))] for i in range(n)]


def rtl_check(results: list[dict[str, Any]], llm: dict[str, Any], n: int, out_dir: str | Path, *,
              harness: str = "native", cache_dir: str = "build/models", log=None) -> list[dict[str, Any]]:
    """Run the checks (module docstring) on ``n`` of the sweep's result rows; write and return the records."""
    from npuforge.gen.config.array import ArrayConfig
    from npuforge.gen.lower.llama import host_embedding, llama_programs
    from npuforge.gen.ppa.llm_metrics import llm_npu_config, load_llm
    from npuforge.sim.harness.model_run import run_programs

    m = load_llm(llm["model"], llm["scheme"], str(cache_dir))
    t = llm["prompt_tokens"]
    ids = np.random.default_rng(0).integers(0, m.embed_codes.shape[0], t + 1)
    checks = []
    for row in pick_points(results, n):
        cfg = ArrayConfig.from_dict(row["config"])
        npu = llm_npu_config(cfg, m)
        plan = llama_programs(npu, m, t, steps=1, layers=range(1))
        prog = plan.prog
        inputs = {"x.prefill": host_embedding(m, ids[:t]), "x.step1": host_embedding(m, ids[t:])}
        memory = prog.image
        for name, values in inputs.items():
            memory = prog.write(memory, name, values)
        if log:
            log(f"{cfg.name}: prefill.l0 on the ISA simulator, step1.l0 on the RTL ({harness} harness)")
        memory, _ = run_programs(prog, backend="isa", names=["prefill.l0"], memory=memory)
        _, res = run_programs(prog, backend="rtl", harness=harness, names=["step1.l0"], memory=memory,
                              inputs=inputs)
        r = res["step1.l0"]
        checks.append({"key": row["key"], "name": cfg.name, "rows": cfg.rows, "cols": cfg.cols,
                       "program": "step1.l0", "context": t + 1, "harness": harness, "cycles": r["cycles"],
                       "predicted_cycles": r["predicted_cycles"],
                       "model_error": (r["predicted_cycles"] - r["cycles"]) / r["cycles"],
                       "sweep_predicted_cycles": row["metrics"].get("llm_decode_l0_cycles"),
                       "utilization": r["utilization"], "bus_efficiency": r["bus_efficiency"],
                       "bit_exact": r["bit_exact"], "mismatches": r["mismatches"], "sim_wall_s": r.get("sim_wall_s")})
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "rtl_check.json").write_text(json.dumps({"llm_workload": llm, "checks": checks}, indent=2) + "\n")
    return checks
