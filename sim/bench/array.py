"""Array benchmark: RTL cycles, utilization and simulation speed of GEMMs streamed through the PE array.

``python -m npuforge.sim.bench.array`` (or ``main()``) writes ``build/bench/array.json`` and prints a table:

* per array size (4x4, 8x8, 16x16, dataflow both) and mode and dataflow: a 64x128x128 GEMM;
* the 64x384x384 GEMM (one projection of a MiniLM-sized layer over 64 tokens) on 8x8 in each dataflow and mode
  (the 8x8 array carries all five modes, the 16-bit-activation ones included).

Per run: RTL cycles (first offered input to last result taken), ideal cycles = MACs / peak MACs per cycle,
utilization = ideal / RTL cycles, simulation speed in cycles/s (cocotb + simulator wall time of that GEMM), and
whether C equals ``golden.gemm`` (a benchmark never reports numbers from a wrong result). Per configuration:
Verilog elaboration seconds and Verilator build seconds (0 when the build was cached).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from npuforge.gen.config.array import ArrayConfig
from npuforge.spec.dataflow import dataflows_of
from npuforge.spec.precision import MODE_NAMES, PRECISION_MODES
from npuforge.sim.harness.array_gemm import golden_gemm, run_gemms, verilog_for
from npuforge.sim.harness.runner import BUILD

__all__ = ["main", "bench_config"]

SIZES = (4, 8, 16)
SWEEP_GEMM = (64, 128, 128)
MINILM_GEMM = (64, 384, 384)


def _operands(rng, mode, m, k, n):
    a_bits, b_bits = PRECISION_MODES[mode].bits
    return (rng.integers(-(1 << (a_bits - 1)), 1 << (a_bits - 1), (m, k)),
            rng.integers(-(1 << (b_bits - 1)), 1 << (b_bits - 1), (k, n)))


def _builds(cfg: ArrayConfig, sim: str) -> set[str]:
    return {str(p.parent) for p in (BUILD / "sim").glob(f"{cfg.name}-{sim}-*/.built")}


def bench_config(cfg: ArrayConfig, shapes, *, sim: str = "verilator", seed: int = 0) -> dict:
    """Run every (shape, mode, dataflow) of ``cfg`` in one simulation; return the config record with its runs."""
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    verilog_for(cfg)
    elaborate_s = time.perf_counter() - t0
    jobs = []
    for shape in shapes:
        for mode in cfg.precisions:
            a, b = _operands(rng, mode, *shape)
            for dataflow in dataflows_of(cfg.dataflow):
                jobs.append({"kind": "gemm", "a": a, "b": b, "mode": mode, "dataflow": dataflow, "stalls": 0.0,
                             "seed": seed, "shape": list(shape)})
    before = _builds(cfg, sim)
    t1 = time.perf_counter()
    results = run_gemms(cfg, jobs, sim=sim, tag="bench")
    wall = time.perf_counter() - t1
    built = _builds(cfg, sim) - before
    runs = []
    sim_total = 0.0
    for job, res in zip(jobs, results):
        m, k, n = job["shape"]
        macs = m * k * n
        ideal = macs / cfg.peak_macs_per_cycle[job["mode"]]
        sim_total += res["sim_seconds"]
        runs.append({
            "array": f"{cfg.rows}x{cfg.cols}", "mode": job["mode"], "dataflow": job["dataflow"], "m": m, "k": k,
            "n": n, "macs": macs, "cycles": res["cycles"], "ideal_cycles": ideal,
            "utilization": ideal / res["cycles"], "sim_seconds": res["sim_seconds"],
            "cycles_per_s": res["cycles"] / max(res["sim_seconds"], 1e-9),
            "golden_match": bool(np.array_equal(res["c"], golden_gemm(job["a"], job["b"], job["mode"]))),
        })
    build_s = max(0.0, wall - sim_total) if built else 0.0
    return {"config": cfg.to_dict(), "sim": sim, "elaborate_seconds": elaborate_s,
            "build_seconds": build_s, "build_cached": not built, "runs": runs}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m npuforge.sim.bench.array", description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default=str(BUILD / "bench" / "array.json"), help="JSON output file")
    parser.add_argument("--sim", choices=("verilator", "icarus"), default="verilator")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="square array sizes (default 4,8,16)")
    args = parser.parse_args(argv)
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--sizes must be comma-separated integers, got {args.sizes!r}")
    records = []
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    for i, size in enumerate(sizes, 1):
        cfg = ArrayConfig(rows=size, cols=size, dataflow="both",
                          precisions=MODE_NAMES if size == 8 else ArrayConfig().precisions)
        shapes = [SWEEP_GEMM] + ([MINILM_GEMM] if size == 8 else [])
        print(f"[bench_array] {i}/{len(sizes)} {size}x{size}: {len(shapes) * 2 * len(cfg.precisions)} GEMMs ...",
              flush=True)
        records.append(bench_config(cfg, shapes, sim=args.sim))
        # Written after every configuration, so a long run leaves its finished part on disk.
        out.write_text(json.dumps({"benchmark": "array", "configs": records}, indent=2) + "\n")
    print(f"{'array':6} {'GEMM':12} {'mode':6} {'flow':4} {'cycles':>8} {'ideal':>8} {'util':>6} {'cyc/s':>7} golden")
    for rec in records:
        for r in rec["runs"]:
            print(f"{r['array']:6} {r['m']}x{r['k']}x{r['n']:<6} {r['mode']:6} {r['dataflow']:4} {r['cycles']:>8} "
                  f"{r['ideal_cycles']:>8.0f} {r['utilization']:>6.1%} {r['cycles_per_s']:>7.0f} "
                  f"{'ok' if r['golden_match'] else 'MISMATCH'}")
    for rec in records:
        c = rec["config"]
        build = "cached" if rec["build_cached"] else f"{rec['build_seconds']:.1f} s"
        print(f"{c['rows']}x{c['cols']}: elaborate {rec['elaborate_seconds']:.1f} s, Verilator build {build}")
    print(f"wrote {out}")
    return 0 if all(r["golden_match"] for rec in records for r in rec["runs"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
