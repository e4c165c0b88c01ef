"""Simulation speed of the NPU harnesses -> build/bench/sim_speed.json (+ a short table).

For the 8x8 and 16x16 default NPUs (``NPUConfig`` defaults, vector unit included) on a GEMM program (default
64x384x384 int8, random data, DRAM latency 4) and a layer program (:func:`ffn_program`, the feed-forward half of a
MiniLM encoder layer on 8 tokens, random int8 data; ``"ffn"`` in each point), in the same run: the native harness (sim/harness/native.py) and the
cocotb fast harness (sim/tb/npu_fast.py). Per harness:

* ``cycles_per_s``: simulated clock cycles of the job (register set-up, DRAM image load and dump included) per
  wall second of its simulation, measured inside the harness (build, process start and Python set-up excluded);
  ``cycles_per_cpu_s``: the same per CPU second of the simulating process (steadier on a shared, loaded machine;
  ``load_average`` records the load when measured);
* ``run_wall_s``: the whole ``run_jobs`` call (image files, simulator start, result parsing);
* ``build_s``: seconds of this configuration's build (native: the Verilator + C++ build, recorded when it ran,
  ``build_cached`` says whether this run reused it; fast: the first call's wall time, a 1x1x1 GEMM, which includes
  cocotb's start-up; 0 build seconds when the build folder already existed).

Both harnesses must agree cycle for cycle (counters, cycles, DRAM image): exit 1 otherwise, or when a result is not
bit-exact. ``--options`` also builds the 8x8 native harness with each entry of :data:`OPTION_SETS` and records its
build seconds and cycles/s in ``build/bench/sim_speed_options.json``.

Usage: ``python -m npuforge.sim.bench.sim_speed [--sizes 8,16] [--gemm MxKxN] [--ffn-tokens T] [--options]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from npuforge.gen.config.array import ArrayConfig
from npuforge.gen.config.npu import NPUConfig
from npuforge.gen.isa.builder import LayerBuilder, LayerProgram
from npuforge.sim.harness.native import DEFAULT_OPTIONS, YOSYS_TAIL, YOSYS_WHOLE_NPU, yosys_unit_pass
from npuforge.sim.harness.npu_run import _emitted, gemm_job, layer_job, run_jobs, summarize, system_verilog
from npuforge.sim.harness.runner import BUILD

LATENCY = 4
#: Build options measured by ``--options`` (each a full 8x8 build: minutes on a shared 2-core machine).
OPTION_SETS = {
    "default": DEFAULT_OPTIONS,
    "bare_npu_top": replace(DEFAULT_OPTIONS, registered_inputs=False),
    "O2": replace(DEFAULT_OPTIONS, opt_fast="-O2"),
    "O1": replace(DEFAULT_OPTIONS, opt_fast="-O1", opt_global="-O1"),
    "no_x_fast": replace(DEFAULT_OPTIONS, x_fast=False),
    "no_split": replace(DEFAULT_OPTIONS, output_split=0),
    "no_march_native": replace(DEFAULT_OPTIONS, cxxflags=()),
    "threads2": replace(DEFAULT_OPTIONS, threads=2),
    "share_modules": replace(DEFAULT_OPTIONS, share_modules=True),
    "verilator_O3": replace(DEFAULT_OPTIONS, verilator_flags=("-O3",)),
    "no_yosys": replace(DEFAULT_OPTIONS, yosys=""),
    "yosys_whole_npu": replace(DEFAULT_OPTIONS, yosys=YOSYS_WHOLE_NPU),
    "yosys_array": replace(DEFAULT_OPTIONS, yosys=yosys_unit_pass("ctrl.vec.unit") + yosys_unit_pass("ctrl.matmul.array")
                           + YOSYS_TAIL),
    "yosys_pes_replicate": replace(DEFAULT_OPTIONS, replicate_bits=True, yosys=yosys_unit_pass("ctrl.vec.unit")
                                   + yosys_unit_pass("ctrl.matmul.array.pe_*", flat=False) + YOSYS_TAIL),
    "replicate_bits": replace(DEFAULT_OPTIONS, replicate_bits=True),
    "gate_vec_unit": replace(DEFAULT_OPTIONS, gate_units=("ctrl.vec.unit",)),
    "no_table": replace(DEFAULT_OPTIONS, verilator_flags=("-fno-table",)),
}


def _rate(res: dict, key: str = "sim_wall_s") -> float:
    return res["sim_cycles"] / res[key] if res.get(key) else 0.0


def ffn_program(cfg: NPUConfig, tokens: int, *, seed: int = 0) -> LayerProgram:
    """The feed-forward half of a MiniLM encoder layer (hidden 384, MLP 1536) as one NPU program, **random int8
    data**: ``x @ W1 -> GELU -> @ W2 -> + x`` (the layer's LayerNorm is not among the default NPU's vector
    operators). Two GEMMs with the vector unit idle, two vector operators with the array idle."""
    from npuforge.golden.activations import gelu_table
    from npuforge.golden.elementwise import residual_params
    from npuforge.golden.requant import quantize_multipliers

    hidden, ffn = 384, 1536
    rng = np.random.default_rng(seed)
    lb = LayerBuilder(cfg)
    x = lb.constant("x", rng.integers(-128, 128, (tokens, hidden)))
    h, g = lb.buffer("h", tokens, ffn), lb.buffer("g", tokens, ffn)
    y, out = lb.buffer("y", tokens, hidden), lb.buffer("out", tokens, hidden)
    req = lambda n, k, a_std: quantize_multipliers(rng.uniform(0.5, 2.0, n) * 48.0 / (np.sqrt(k) * a_std * 74.0))  # noqa: E731
    lb.gemm(x, lb.constant("w1", rng.integers(-128, 128, (hidden, ffn))), h, *req(ffn, hidden, 74.0))
    lb.vector("act", h, g, gelu_table(0.05, 0.03))
    lb.gemm(g, lb.constant("w2", rng.integers(-128, 128, (ffn, hidden))), y, *req(hidden, ffn, 45.0))
    lb.vector("residual", y, out, residual_params(0.04, 0.05, 0.07), src2=x)
    return lb.build()


def _identical(nat: dict, fast: dict) -> bool:
    """Whether both harnesses' results of one program agree cycle for cycle and byte for byte."""
    return bool(nat["counters"] == fast["counters"] and nat["cycles"] == fast["cycles"]
                and nat["sim_cycles"] == fast["sim_cycles"]
                and np.array_equal(np.load(nat["memory_path"]), np.load(fast["memory_path"])))


def measure(size: int, gemm: tuple[int, int, int], *, ffn_tokens: int = 0, log=print) -> dict:
    """Both harnesses on the GEMM (and the FFN program when ``ffn_tokens``) on the ``size`` x ``size`` NPU."""
    cfg = NPUConfig(array=ArrayConfig(rows=size, cols=size))
    m, k, n = gemm
    programs = {"gemm": gemm_job(cfg, m, k, n, "int8", seed=0, name=f"gemm_{m}x{k}x{n}")[0]}
    if ffn_tokens:
        programs["ffn"] = layer_job(ffn_program(cfg, ffn_tokens), f"ffn_{ffn_tokens}x384x1536", "out")
    warm = gemm_job(cfg, 1, 1, 1, "int8", seed=1, name="warm_up")[0]
    system_verilog(cfg)  # elaborate both tops before any timing
    _emitted(cfg, None)
    out = {"array": f"{size}x{size}", "gemm": [m, k, n], "mode": "int8", "dram_latency": LATENCY}
    results = {name: {} for name in programs}
    entries = {name: {} for name in programs}
    for harness in ("native", "fast"):
        log(f"  {size}x{size} {harness}: build (if needed) ...")
        t = time.time()
        builds = []
        run_jobs(cfg, [warm], harness=harness, latency=LATENCY, check=False, tag=f"speed-warm{size}",
                 log=lambda msg: builds.append(msg) or log("    " + msg))
        first_wall = time.time() - t
        for name, job in programs.items():
            log(f"  {size}x{size} {harness}: {job.name} ...")
            t = time.time()
            res = run_jobs(cfg, [job], harness=harness, latency=LATENCY, check=False, keep_memory=True,
                           tag=f"speed{size}")[0]
            run_wall = time.time() - t
            results[name][harness] = res
            s = summarize(job, res)
            entry = {"cycles_per_s": round(_rate(res)), "cycles_per_cpu_s": round(_rate(res, "sim_cpu_s")),
                     "sim_cycles": res["sim_cycles"], "sim_wall_s": round(res["sim_wall_s"], 3),
                     "sim_cpu_s": round(res["sim_cpu_s"], 3), "run_wall_s": round(run_wall, 2),
                     "busy_cycles": s["cycles"], "bit_exact": s["bit_exact"]}
            if harness == "native":
                from npuforge.sim.harness.native import native_binary

                b = native_binary(_emitted(cfg, None)[0][0], _emitted(cfg, None)[1], cfg.axi_data_bits)
                entry.update(build_s=round(b.build_s, 1), build_cached=not builds, options=asdict(DEFAULT_OPTIONS))
            else:
                entry.update(build_s=round(first_wall, 1), build_cached=None,
                             build_note="wall time of the first call (1x1x1 GEMM): build if needed + cocotb start-up")
            entries[name][harness] = entry
            log(f"    {entry['cycles_per_s']:,} cycles/s, {entry['cycles_per_cpu_s']:,} cycles/cpu-s "
                f"({entry['sim_cycles']} cycles in {entry['sim_wall_s']} s, {entry['sim_cpu_s']} CPU s)")
    for name, job in programs.items():
        nat, fast = entries[name]["native"], entries[name]["fast"]
        point = {"program": job.name, "native": nat, "fast": fast,
                 "identical": _identical(results[name]["native"], results[name]["fast"]),
                 "ratio": round(nat["cycles_per_s"] / fast["cycles_per_s"], 2) if fast["cycles_per_s"] else None,
                 "ratio_cpu": round(nat["cycles_per_cpu_s"] / fast["cycles_per_cpu_s"], 2)
                 if fast["cycles_per_cpu_s"] else None}
        if name == "gemm":
            out.update(point)   # the GEMM's figures at the top level, as before
        else:
            out[name] = point
    out["load_average"] = round(os.getloadavg()[0], 1)
    return out


def measure_options(gemm: tuple[int, int, int], names, *, log=print) -> list[dict]:
    """Build the 8x8 native harness with each option set and run the GEMM on it."""
    cfg = NPUConfig()
    m, k, n = gemm
    job = gemm_job(cfg, m, k, n, "int8", seed=0, name=f"gemm_{m}x{k}x{n}")[0]
    rows = []
    for name in names:
        opts = OPTION_SETS[name]
        log(f"  option set {name}: {opts}")
        res = run_jobs(cfg, [job], harness="native", latency=LATENCY, check=False, native_options=opts,
                       tag=f"opt-{name}", log=lambda msg: log("    " + msg))[0]
        from npuforge.sim.harness.native import native_binary

        b = native_binary(_emitted(cfg, None)[0][0], _emitted(cfg, None)[1], cfg.axi_data_bits, options=opts)
        row = {"name": name, "options": asdict(opts), "build_s": round(b.build_s, 1),
               "cycles_per_s": round(_rate(res)), "cycles_per_cpu_s": round(_rate(res, "sim_cpu_s")),
               "sim_cycles": res["sim_cycles"], "load_average": round(os.getloadavg()[0], 1),
               "busy_cycles": res["counters"]["BUSY_CYCLES"], "bit_exact": summarize(job, res)["bit_exact"]}
        log(f"    build {row['build_s']} s, {row['cycles_per_s']:,} cycles/s")
        rows.append(row)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m npuforge.sim.bench.sim_speed", description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="8,16", help="array sizes, comma-separated (default 8,16)")
    ap.add_argument("--gemm", default="64x384x384", help="GEMM MxKxN (default 64x384x384)")
    ap.add_argument("--ffn-tokens", type=int, default=8,
                    help="tokens of the MiniLM FFN layer program (default 8; 0: GEMM only)")
    ap.add_argument("--options", nargs="?", const=",".join(OPTION_SETS), default=None,
                    help=f"also measure native build options on the 8x8 NPU: comma-separated among "
                         f"{','.join(OPTION_SETS)} (default: all)")
    ap.add_argument("-o", "--out", default=str(BUILD / "bench" / "sim_speed.json"))
    args = ap.parse_args(argv)
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
        gemm = tuple(int(x) for x in args.gemm.lower().split("x"))
        assert len(gemm) == 3 and min(gemm) >= 1
    except (ValueError, AssertionError):
        print(f"error: --sizes must be integers and --gemm MxKxN, got {args.sizes!r} / {args.gemm!r}", file=sys.stderr)
        return 2
    if not 0 <= args.ffn_tokens <= 64:
        print(f"error: --ffn-tokens must be in [0, 64], got {args.ffn_tokens}", file=sys.stderr)
        return 2
    names = [] if args.options is None else [x.strip() for x in args.options.split(",") if x.strip()]
    bad = [x for x in names if x not in OPTION_SETS]
    if bad:
        print(f"error: --options must name option sets among {', '.join(OPTION_SETS)}, got {bad[0]!r}",
              file=sys.stderr)
        return 2
    print(f"simulation speed: native vs cocotb fast harness, GEMM {args.gemm} int8, DRAM latency {LATENCY}")
    rows = [measure(s, gemm, ffn_tokens=args.ffn_tokens) for s in sizes]
    out = {"description": "simulated cycles per second of the native and cocotb fast NPU harnesses, same program, "
                          "same run (random-data GEMM; 'ffn': a random-data MiniLM FFN layer program)", "targets": {"ratio": 5, "ratio_stretch": 10,
                                                                    "native_build_s_8x8": 180},
           "points": rows}
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    if names:
        out["options"] = measure_options(gemm, names)
        opt_path = path.with_name("sim_speed_options.json")
        opt_path.write_text(json.dumps(out["options"], indent=1))
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}")
    print("cycles/s: per wall second; cycles/cpu-s: per CPU second of the simulation (steadier on a loaded machine)")
    print(f"{'array':6} {'harness':8} {'cycles/s':>10} {'cycles/cpu-s':>12} {'sim s':>7} {'run s':>7} {'build s':>8}"
          f"  identical  ratio (wall, cpu)")
    points = [(r["array"], r) for r in rows] + [(r["array"], r["ffn"]) for r in rows if "ffn" in r]
    for array, r in points:
        print(f"{array} {r['program']}")
        for h in ("native", "fast"):
            e = r[h]
            cached = " (cached)" if e.get("build_cached") else ""
            print(f"{array:6} {h:8} {e['cycles_per_s']:>10,} {e['cycles_per_cpu_s']:>12,} {e['sim_wall_s']:>7} "
                  f"{e['run_wall_s']:>7} {e['build_s']:>8}{cached}"
                  + (f"  {r['identical']}  {r['ratio']}x, {r['ratio_cpu']}x" if h == "fast" else ""))
    for o in out.get("options", []):
        print(f"option {o['name']:14} build {o['build_s']:>7} s  {o['cycles_per_s']:>10,} cycles/s  "
              f"{o['cycles_per_cpu_s']:>10,} cycles/cpu-s  exact {o['bit_exact']}")
    ok = all(r["identical"] and r["native"]["bit_exact"] and r["fast"]["bit_exact"] for _, r in points)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
