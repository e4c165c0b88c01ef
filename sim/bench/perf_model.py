"""Performance model vs RTL: whole-program cycles of compiled GEMMs -> build/bench/perf_model.json + a table.

For every program: ``gen.perf.program.program_cycles`` (the model) against the NPU's BUSY_CYCLES counter from the
RTL (cocotb + Verilator, sim/harness/npu_run.py), and the relative error ``(model - rtl) / rtl``. The set covers several
M, K, N (ragged ones and forced multi-tile schedules in both loop orders), modes int8 / w4a8 / int4, int16
output, three NPU configurations (4x4 array with 64-bit AXI, the tests/npu build; 8x8 array with 128-bit AXI;
8x8 array with 32-bit AXI, whose 8-byte operand beats are wide scratchpad reads of I = 2 words, the build of
tests/npu/test_npu_fast_cocotb.py's wide-read test, fast harness only) and DRAM latencies 0 and 4, on both DRAM harnesses of sim/harness/npu_run.py (``axi``: cocotbext-axi AxiRam; ``fast``: the HDL
DRAM model). ``latency`` = the harness's extra cycles between an AR handshake and the first R beat beyond the
DRAM's own 2 (both harnesses), and for writes: AxiRam delays taking the W data by it, the HDL DRAM delays the write
response by it. No random stalls: with stalls the RTL's cycle counts change from run to
run, and the model predicts the stall-free count.

Usage: ``python -m npuforge.sim.bench.perf_model [--quick | --full] [--large] [--harness axi,fast] [-o FILE]``; by default the
4x4 set on both harnesses and the 8x8 sets on the fast one (``--full``: also on the axi harness; ``--quick``: 4x4
only; ``--large``: 4 more GEMMs of 6k..18k cycles on the fast harness).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Sequence

from npuforge.gen.config.array import ArrayConfig
from npuforge.gen.config.npu import NPUConfig
from npuforge.gen.perf.program import program_cycles
from npuforge.sim.harness.npu_run import HARNESSES, gemm_job, run_jobs
from npuforge.sim.harness.runner import BUILD

__all__ = ["CFG_SMALL", "CFG_WIDE", "CFG_NARROW_BUS", "SMALL_SET", "WIDE_SET", "NARROW_BUS_SET", "LARGE_SET",
           "validate", "main"]

#: The NPU configuration of tests/npu (its Verilator build is shared).
CFG_SMALL = NPUConfig(array=ArrayConfig(rows=4, cols=4), spad_bytes=16384, spad_banks=2, acc_bytes=4096,
                      axi_data_bits=64, windows=2)
#: A wider design point: 8x8 array, 128-bit AXI.
CFG_WIDE = NPUConfig(array=ArrayConfig(rows=8, cols=8), spad_bytes=65536, spad_banks=2, acc_bytes=16384,
                     axi_data_bits=128, windows=2)
#: Scratchpad read width != AXI word: 8x8 array, 32-bit AXI, I = 2 (NPUConfig.spad_read_words); no vector unit.
CFG_NARROW_BUS = NPUConfig(array=ArrayConfig(rows=8, cols=8), spad_bytes=8192, spad_banks=2, acc_bytes=4096,
                           axi_data_bits=32, windows=1, vector_ops=())

# (m, k, n, mode, extra compile keywords)
SMALL_SET = [
    (17, 33, 21, "int8", {}),
    (9, 64, 40, "int8", {}),
    (1, 96, 64, "int8", {}),
    (40, 24, 12, "int8", {}),
    (13, 20, 11, "int8", {"tiles": (8, 8, 4), "order": "nm"}),
    (13, 20, 11, "int8", {"tiles": (4, 12, 8), "order": "mn"}),
    (7, 19, 9, "int8", {"out_bits": 16}),
    (17, 33, 21, "w4a8", {}),
    (3, 9, 17, "w4a8", {}),
    (17, 33, 21, "int4", {}),
    (11, 24, 18, "int4", {"tiles": (6, 8, 10)}),
]
WIDE_SET = [
    (32, 64, 48, "int8", {}),
    (5, 200, 33, "int8", {}),
    (64, 48, 40, "w4a8", {}),
    (33, 40, 50, "int4", {}),
]
NARROW_BUS_SET = [
    (19, 37, 23, "int8", {}),
    (40, 64, 24, "int8", {}),
    (11, 29, 35, "w4a8", {}),
    (15, 27, 19, "int4", {}),
]
#: Larger programs (6k..18k cycles) on the 8x8 configuration, fast harness, latency 4 (``--large``).
LARGE_SET = [
    (64, 128, 128, "int8", {}),
    (1, 512, 256, "w4a8", {}),
    (16, 256, 192, "int8", {}),
    (96, 64, 96, "int4", {}),
]


def _job_name(m, k, n, mode, kw) -> str:
    extra = "".join(f"_{k}{'x'.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in sorted(kw.items()))
    return f"{mode}_{m}x{k}x{n}{extra}"


def validate(cfg: NPUConfig, cases: Sequence[tuple], latencies: Sequence[int] = (0, 4), *, harness: str = "axi",
             tag: str = "", log=print) -> list[dict]:
    """Compile ``cases``, run them on the RTL at each latency (one simulation per latency) in ``harness``, return
    one row per program with model and RTL cycles and the relative error."""
    rows = []
    for lat in latencies:
        built = [gemm_job(cfg, m, k, n, mode, seed=i, name=_job_name(m, k, n, mode, kw), **kw)
                 for i, (m, k, n, mode, kw) in enumerate(cases)]
        jobs = [j for j, _ in built]
        t = time.time()
        results = run_jobs(cfg, jobs, latency=lat, stall=0.0, check=False, harness=harness,
                           tag=f"perf{tag}_{harness}_l{lat}")
        wall = time.time() - t
        for (job, comp), res in zip(built, results):
            rtl = int(res.get("counters", {}).get("BUSY_CYCLES", 0))
            model = program_cycles(comp.program, cfg, latency=lat, harness=harness)
            err = (model.cycles - rtl) / rtl if rtl else float("inf")
            rows.append({
                "config": f"{cfg.array.rows}x{cfg.array.cols}/{cfg.axi_data_bits}b", "harness": harness,
                "latency": lat,
                "program": job.name, "m": comp.plan.m, "k": comp.plan.k, "n": comp.plan.n, "mode": comp.plan.mode,
                "tiles": list(job.extra["tiles"]), "order": job.extra["order"], "instructions": len(comp.program),
                "rtl_cycles": rtl, "model_cycles": model.cycles, "rel_error": err,
                "rtl_ok": res.get("error") == 0 and not res.get("timeout", True) and res.get("mismatches", 1) == 0,
                "model_units": model.to_dict()["units"],
            })
        log(f"  {rows[-1]['config']} {harness} harness, latency {lat}: {len(jobs)} programs in {wall:.0f} s wall")
    return rows


def table(rows: Sequence[dict]) -> str:
    lines = [f"{'config':10} {'dram':4} {'lat':>3} {'program':34} {'instr':>5} {'rtl':>7} {'model':>7} {'error':>7}"]
    for r in rows:
        lines.append(f"{r['config']:10} {r['harness']:4} {r['latency']:>3} {r['program']:34} {r['instructions']:>5} "
                     f"{r['rtl_cycles']:>7} {r['model_cycles']:>7} {100 * r['rel_error']:>6.2f}%")
    worst = max(rows, key=lambda r: abs(r["rel_error"]))
    lines.append(f"largest |error| {100 * abs(worst['rel_error']):.2f}% ({worst['config']}, {worst['harness']} "
                 f"harness, latency {worst['latency']}, {worst['program']}) over {len(rows)} programs")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m npuforge.sim.bench.perf_model", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="only the 4x4 / 64-bit configuration")
    ap.add_argument("--full", action="store_true", help="also the 8x8 / 128-bit set on the (slow) axi harness")
    ap.add_argument("--large", action="store_true",
                    help="also 4 larger GEMMs (6k..18k cycles) on the 8x8 configuration, fast harness, latency 4")
    ap.add_argument("--harness", default="axi,fast",
                    help="comma-separated DRAM harnesses of sim/harness/npu_run.py to validate against (default axi,fast)")
    ap.add_argument("-o", "--out", default=str(BUILD / "bench" / "perf_model.json"))
    args = ap.parse_args(argv)
    harnesses = [h for h in args.harness.split(",") if h]
    for h in harnesses:
        if h not in HARNESSES:
            print(f"error: --harness must list harnesses among {', '.join(HARNESSES)}, got {h!r}", file=sys.stderr)
            return 2
    # The AxiRam harness runs a cocotb coroutine per bus channel: the wide set runs on it only with --full.
    points = [(CFG_SMALL, SMALL_SET, "s", harnesses)]
    if not args.quick:
        points.append((CFG_WIDE, WIDE_SET, "w", harnesses if args.full else [h for h in harnesses if h != "axi"]))
        points.append((CFG_NARROW_BUS, NARROW_BUS_SET, "n", [h for h in harnesses if h != "axi"]))
    t = time.time()
    rows = []
    for i, (cfg, cases, tag, hs) in enumerate(points):
        for harness in hs:
            print(f"[{i + 1}/{len(points)}] {cfg.array.rows}x{cfg.array.cols} array, {cfg.axi_data_bits}-bit AXI, "
                  f"{harness} harness: {len(cases)} GEMMs x latencies 0, 4", flush=True)
            rows += validate(cfg, cases, harness=harness, tag=tag)
    if args.large and "fast" in harnesses:
        print(f"[large] 8x8 array, 128-bit AXI, fast harness: {len(LARGE_SET)} GEMMs x latency 4", flush=True)
        rows += validate(CFG_WIDE, LARGE_SET, (4,), harness="fast", tag="large")
    worst = max(rows, key=lambda r: abs(r["rel_error"]))
    out = {
        "description": "whole-program cycles: gen.perf.program model vs NPU RTL BUSY_CYCLES (Verilator, AXI RAM "
                       "without random stalls; latency = extra cycles from AR/AW handshake to data)",
        "target_max_rel_error": 0.03,
        "max_abs_rel_error": abs(worst["rel_error"]),
        "worst": {k: worst[k] for k in ("config", "harness", "latency", "program", "rtl_cycles", "model_cycles")},
        "max_abs_rel_error_by_harness": {h: max(abs(r["rel_error"]) for r in rows if r["harness"] == h)
                                         for h in harnesses},
        "exact": sum(r["rtl_cycles"] == r["model_cycles"] for r in rows),
        "programs": rows,
        "wall_s": time.time() - t,
    }
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    print(table(rows))
    print(f"wrote {path}")
    # A run that failed on the RTL (error status, timeout, wrong output) makes the comparison meaningless.
    bad = [r["program"] for r in rows if not r["rtl_ok"]]
    if bad:
        print(f"RTL runs not bit-exact or failed: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
