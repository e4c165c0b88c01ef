"""Simulation speed of the NPU harnesses on whole-model workloads -> build/bench/sim_speed.json (+ a table).

Issue #15 asks for whole models on the RTL at 5-10x the rate of the cocotb fast harness as it was when the issue was
filed. Per array size (8x8 and 16x16), on the demo's design point (:func:`model_config`: int8 / w8a16 / w4a16,
block-scaled MATMUL, the BERT and Llama vector operators, 64-bit AXI: one build runs both models), the same run
measures these harness builds on the same programs:

* ``native``: the C++ harness (sim/harness/native.py, :data:`DEFAULT_OPTIONS`), the default;
* ``fast``: today's cocotb fast harness (NPU + sim/hdl/axi_dram.v under cocotb on Verilator, ``-O2`` on Verilator's
  hot code, ``-O0`` on its cold code: sim/harness/npu_run.py FAST_OPT / FAST_OPT_SLOW);
* ``fast_o1``: the same fast harness built as at the issue's filing, ``-O1`` on all C++ (the issue's baseline).

Programs (:data:`PROGRAMS`), each checked bit for bit against the ISA simulator and the golden model:

* ``gemm``: a random-data int8 GEMM (default 64x384x384), the figure earlier sessions reported;
* ``minilm_layer``: encoder layer 2 of all-MiniLM-L6-v2 (scheme w8a16, the real checkpoint) over the first
  ``--minilm-tokens`` tokens of the shipped evaluation prose (gen.lower.bert: Q/K/V, 12 heads of attention with
  softmax, output projection, residual, LayerNorm, MLP with GELU, residual, LayerNorm: one program);
* ``smollm2_decode``: one decode step of layer 0 of SmolLM2-135M-Instruct (its own Q4_1 / Q8_0 blocks on the
  block-scaled MATMUL, scheme w8a16; gen.lower.llama: RMSNorm, Q/K/V, RoPE, attention over the KV cache the prompt's
  prefill left, output projection, residual, RMSNorm, gate/up, SiLU, gate, down, residual: one program) after the
  demo's prompt, the prefill run on the ISA simulator.

Per harness and program: ``cycles_per_cpu_s`` (simulated clock cycles of the job, register set-up and DRAM image
load and dump included, per CPU second of the simulating process: the comparable figure on a shared, loaded
machine), ``cycles_per_s`` (per wall second of the simulation), ``sim_cycles``, ``sim_cpu_s``, ``sim_wall_s``,
``run_wall_s`` (the whole ``run_jobs`` call), ``build_s`` (native: the Verilator + C++ build when it ran,
``build_cached``; fast: the wall time of the first call, a 1x1x1 GEMM: build if needed plus cocotb's start-up),
``bit_exact``; per program ``identical`` (every harness gave the same counters, cycles and final DRAM image) and
``ratio_cpu`` / ``ratio_wall``: native over each cocotb build. ``load_average`` is recorded per point. The JSON is
rewritten after every point, so a long run keeps what it finished.

``--options`` builds the native harness of each size in ``--sizes`` with each entry of :data:`OPTION_SETS` and runs
the programs on it (build seconds, cycles per CPU second) -> ``build/bench/sim_speed_options.json``.

Usage: ``python -m npuforge.sim.bench.sim_speed [--sizes 8,16] [--programs gemm,minilm_layer,smollm2_decode]
[--harnesses native,fast,fast_o1] [--gemm MxKxN] [--minilm-tokens T] [--options [NAME,...]]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from npuforge.gen.config.array import ArrayConfig
from npuforge.gen.config.npu import NPUConfig
from npuforge.sim.harness.native import (DEFAULT_OPTIONS, VERILATOR_FLAGS, YOSYS_PREPASS, YOSYS_PREPASS_VEC, YOSYS_TAIL,
                                         YOSYS_WHOLE_NPU, native_binary, yosys_unit_pass)
from npuforge.sim.harness.npu_run import Job, _emitted, gemm_job, run_jobs, summarize, system_verilog
from npuforge.sim.harness.runner import BUILD

LATENCY = 4
#: Harness builds measured: name -> (run_jobs harness, C++ optimisation override of the cocotb build).
HARNESS_BUILDS = {"native": ("native", None), "fast": ("fast", None), "fast_o1": ("fast", "-O1")}
PROGRAMS = ("gemm", "minilm_layer", "smollm2_decode")
SMOLLM2_PROMPT = "The capital of France is"
MINILM_LAYER = 2
#: The default before the PE array was flattened too (2026-12-07 morning): the vector unit's pre-pass only, no
#: replications, Verilator's case checks on. The option sets that change the pre-pass start from it (as measured).
VEC_PREPASS = replace(DEFAULT_OPTIONS, yosys=YOSYS_PREPASS_VEC, replicate_bits=False, verilator_flags=())
#: Build options measured by ``--options`` (each a full build per size: minutes on a shared 2-core machine).
OPTION_SETS = {
    "default": DEFAULT_OPTIONS,
    "vec_prepass": VEC_PREPASS,
    "vec_prepass_no_assert_case": replace(VEC_PREPASS, verilator_flags=VERILATOR_FLAGS),
    "array_assert_case": replace(DEFAULT_OPTIONS, verilator_flags=()),
    "array_no_replicate": replace(DEFAULT_OPTIONS, replicate_bits=False),
    "no_pgo": replace(DEFAULT_OPTIONS, pgo=False),
    "bare_npu_top": replace(DEFAULT_OPTIONS, registered_inputs=False),
    "O2": replace(DEFAULT_OPTIONS, opt_fast="-O2"),
    "O1": replace(DEFAULT_OPTIONS, opt_fast="-O1", opt_global="-O1"),
    "no_x_fast": replace(DEFAULT_OPTIONS, x_fast=False),
    "no_split": replace(DEFAULT_OPTIONS, output_split=0),
    "no_march_native": replace(DEFAULT_OPTIONS, cxxflags=()),
    "threads2": replace(DEFAULT_OPTIONS, threads=2),
    "share_modules": replace(VEC_PREPASS, share_modules=True, yosys="", gate_units=()),
    "verilator_O3": replace(DEFAULT_OPTIONS, verilator_flags=VERILATOR_FLAGS + ("-O3",)),
    "no_dfg": replace(DEFAULT_OPTIONS, verilator_flags=VERILATOR_FLAGS + ("-fno-dfg",)),
    "no_yosys": replace(VEC_PREPASS, yosys="", gate_units=()),  # gating needs the pre-pass's flat unit
    "yosys_whole_npu": replace(VEC_PREPASS, yosys=YOSYS_WHOLE_NPU),
    "yosys_array": replace(VEC_PREPASS, yosys=YOSYS_PREPASS),
    "yosys_pes_replicate": replace(VEC_PREPASS, replicate_bits=True, yosys=yosys_unit_pass("ctrl.vec.unit")
                                   + yosys_unit_pass("ctrl.matmul.array.pe_*", flat=False) + YOSYS_TAIL),
    "replicate_bits": replace(VEC_PREPASS, replicate_bits=True),
    "no_gating": replace(VEC_PREPASS, gate_units=(), gate_registered=False),
    "gate_vec_unit": replace(VEC_PREPASS, gate_units=("ctrl.vec.unit",), gate_registered=False),
    "gate_vec_unit_registered": replace(VEC_PREPASS, gate_units=("ctrl.vec.unit",), gate_registered=True),
    "no_table": replace(DEFAULT_OPTIONS, verilator_flags=VERILATOR_FLAGS + ("-fno-table",)),
    "vec_ops_flat": replace(VEC_PREPASS, vec_operators="flat"),
    "vec_ops_gated": replace(VEC_PREPASS, vec_operators="gated"),
    "yosys_vec_ctrl": replace(VEC_PREPASS, yosys=yosys_unit_pass("ctrl.vec.unit") + yosys_unit_pass("ctrl.vec.rows")
                              + yosys_unit_pass("ctrl.vec.params") + YOSYS_TAIL),
    "yosys_requant": replace(VEC_PREPASS, yosys=yosys_unit_pass("ctrl.vec.unit") + yosys_unit_pass("ctrl.requant")
                             + YOSYS_TAIL),
    "yosys_vec_ctrl_requant": replace(VEC_PREPASS, yosys=yosys_unit_pass("ctrl.vec.unit")
                                      + yosys_unit_pass("ctrl.vec.rows") + yosys_unit_pass("ctrl.vec.params")
                                      + yosys_unit_pass("ctrl.requant") + YOSYS_TAIL),
}


def model_config(size: int) -> NPUConfig:
    """The demo's design point (cli demo) on a ``size`` x ``size`` array: what MiniLM (w8a16) and SmolLM2 (its own
    Q4_1 / Q8_0 blocks) need in one build."""
    from npuforge.gen.lower import bert as lower_bert, llama as lower_llama

    return NPUConfig(array=ArrayConfig(rows=size, cols=size, precisions=("int8", "w8a16", "w4a16")),
                     vector_ops=tuple(dict.fromkeys(lower_bert.VECTOR_OPS + lower_llama.VECTOR_OPS)),
                     block_scaled=True, axi_data_bits=64)


def minilm_layer_job(cfg: NPUConfig, tokens: int) -> Job:
    """MiniLM encoder layer :data:`MINILM_LAYER` over ``tokens`` tokens of the shipped evaluation prose, w8a16."""
    from npuforge.gen.lower.bert import bert_programs
    from npuforge.golden.models import bert
    from npuforge.golden.models.api import int_bert
    from npuforge.golden.models.assets import data_text
    from npuforge.sim.harness.model_run import model_job

    _, ck, m = int_bert("minilm", "w8a16")
    ids = np.array([ck.tokenizer.encode(data_text("eval_prose.txt")).ids[:tokens]])
    x = bert.int_layer_input(m, ids, MINILM_LAYER)[0]
    prog, _ = bert_programs(cfg, m, x=x, layers=range(MINILM_LAYER, MINILM_LAYER + 1))
    job = model_job(prog, f"layer{MINILM_LAYER}", prog.image)
    job.name = f"minilm_layer{MINILM_LAYER}_{ids.shape[1]}tok"
    return job


def smollm2_decode_job(cfg: NPUConfig) -> Job:
    """One decode step of SmolLM2 layer 0 after :data:`SMOLLM2_PROMPT` (prefill on the ISA simulator)."""
    from npuforge.gen.lower.llama import host_embedding, llama_programs
    from npuforge.golden.models.api import int_llama, llama_prompt
    from npuforge.sim.harness.model_run import model_job, run_programs

    ck, prompt_ids = llama_prompt("smollm2", SMOLLM2_PROMPT, tokens=2)
    m = int_llama(ck, "w8a16")
    plan = llama_programs(cfg, m, len(prompt_ids), steps=1, layers=range(0, 1))
    prog = plan.prog
    inputs = {"x.prefill": host_embedding(m, prompt_ids)}
    memory = prog.write(prog.image, "x.prefill", inputs["x.prefill"])
    memory, _ = run_programs(prog, backend="isa", names=plan.programs_of("prefill"), memory=memory)
    inputs["x.step1"] = host_embedding(m, prompt_ids[-1:])
    memory = prog.write(memory, "x.step1", inputs["x.step1"])
    (name,) = plan.programs_of("step1")
    job = model_job(prog, name, memory, inputs=inputs)
    job.name = f"smollm2_decode_l0_after{len(prompt_ids)}tok"
    return job


def make_jobs(cfg: NPUConfig, programs, gemm: tuple[int, int, int], minilm_tokens: int) -> dict[str, Job]:
    jobs = {}
    for name in programs:
        if name == "gemm":
            m, k, n = gemm
            jobs[name] = gemm_job(cfg, m, k, n, "int8", seed=0, name=f"gemm_{m}x{k}x{n}")[0]
        elif name == "minilm_layer":
            jobs[name] = minilm_layer_job(cfg, minilm_tokens)
        else:
            jobs[name] = smollm2_decode_job(cfg)
    return jobs


def _rate(res: dict, key: str) -> float:
    return res["sim_cycles"] / res[key] if res.get(key) else 0.0


def _identical(a: dict, b: dict) -> bool:
    """Whether two harnesses' results of one program agree cycle for cycle and byte for byte."""
    return bool(a["counters"] == b["counters"] and a["cycles"] == b["cycles"] and a["sim_cycles"] == b["sim_cycles"]
                and np.array_equal(a["memory"], b["memory"]))


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_one(cfg: NPUConfig, job: Job, build: str, *, tag: str, native_options=None) -> tuple[dict, dict]:
    """Run ``job`` on the harness build ``build``: (raw result, bench entry)."""
    harness, opt = HARNESS_BUILDS[build]
    t = time.time()
    res = run_jobs(cfg, [job], harness=harness, opt=opt, latency=LATENCY, check=False, keep_memory=True, tag=tag,
                   native_options=native_options)[0]
    s = summarize(job, res)
    entry = {"cycles_per_cpu_s": round(_rate(res, "sim_cpu_s")), "cycles_per_s": round(_rate(res, "sim_wall_s")),
             "sim_cycles": res["sim_cycles"], "sim_cpu_s": round(res["sim_cpu_s"], 3),
             "sim_wall_s": round(res["sim_wall_s"], 3), "run_wall_s": round(time.time() - t, 2),
             "busy_cycles": s["cycles"], "bit_exact": s["bit_exact"]}
    return res, entry


def measure(size: int, programs, gemm, *, builds=tuple(HARNESS_BUILDS), minilm_tokens: int = 16,
            log=print) -> dict:
    """Every harness build of ``builds`` on every program of ``programs`` on the ``size`` x ``size`` design point."""
    cfg = model_config(size)
    log(f"{size}x{size}: preparing the programs ({', '.join(programs)}) ...")
    jobs = make_jobs(cfg, programs, gemm, minilm_tokens)
    warm = gemm_job(cfg, 1, 1, 1, "int8", seed=1, name="warm_up")[0]
    system_verilog(cfg)  # elaborate both tops before any timing
    _emitted(cfg, None)
    point = {"array": f"{size}x{size}", "config": json.loads(cfg.to_json()), "dram_latency": LATENCY,
             "programs": {}, "builds": {}}
    raw = {name: {} for name in jobs}
    for build in builds:
        log(f"  {size}x{size} {build}: build (if needed) + warm-up ...")
        t, cpu = time.time(), _children_cpu()
        notes = []
        harness, opt = HARNESS_BUILDS[build]
        run_jobs(cfg, [warm], harness=harness, opt=opt, latency=LATENCY, check=False, tag=f"speed-warm{size}",
                 log=lambda msg: notes.append(msg) or log("    " + msg))
        info = {"first_call_wall_s": round(time.time() - t, 1), "first_call_cpu_s": round(_children_cpu() - cpu, 1)}
        if harness == "native":
            b = native_binary(_emitted(cfg, None)[0][0], _emitted(cfg, None)[1], cfg.axi_data_bits)
            info.update(build_s=round(b.build_s, 1), build_cached=not notes, options=asdict(DEFAULT_OPTIONS))
        else:
            info.update(opt=opt or "-O2 hot / -O0 cold", note="first call (1x1x1 GEMM): build if needed + cocotb start-up")
        point["builds"][build] = info
        for name, job in jobs.items():
            log(f"  {size}x{size} {build}: {job.name} ...")
            raw[name][build], entry = run_one(cfg, job, build, tag=f"speed{size}")
            point["programs"].setdefault(name, {"program": job.name})[build] = entry
            log(f"    {entry['cycles_per_cpu_s']:,} cycles/cpu-s, {entry['cycles_per_s']:,} cycles/s "
                f"({entry['sim_cycles']:,} cycles in {entry['sim_cpu_s']} CPU s, {entry['sim_wall_s']} s), "
                f"bit-exact {entry['bit_exact']}")
    for name, p in point["programs"].items():
        done = [b for b in builds if b in p]
        p["identical"] = all(_identical(raw[name][done[0]], raw[name][b]) for b in done[1:])
        if "native" in p:
            for b in done:
                if b != "native" and p[b]["cycles_per_cpu_s"]:
                    p[f"ratio_cpu_{b}"] = round(p["native"]["cycles_per_cpu_s"] / p[b]["cycles_per_cpu_s"], 2)
                    p[f"ratio_wall_{b}"] = round(p["native"]["cycles_per_s"] / p[b]["cycles_per_s"], 2)
    point["load_average"] = round(os.getloadavg()[0], 1)
    return point


def measure_options(programs, gemm, names, *, size: int = 8, minilm_tokens: int = 16, log=print) -> list[dict]:
    """Build the ``size`` x ``size`` native harness with each option set and run the programs on it."""
    cfg = model_config(size)
    jobs = make_jobs(cfg, programs, gemm, minilm_tokens)
    rows = []
    for name in names:
        opts = OPTION_SETS[name]
        log(f"  option set {name}: {opts}")
        row = {"name": name, "array": f"{size}x{size}", "options": asdict(opts), "programs": {}}
        for prog, job in jobs.items():
            res, entry = run_one(cfg, job, "native", tag=f"opt-{name}", native_options=opts)
            row["programs"][prog] = entry
            log(f"    {job.name}: {entry['cycles_per_cpu_s']:,} cycles/cpu-s, bit-exact {entry['bit_exact']}")
        b = native_binary(_emitted(cfg, None)[0][0], _emitted(cfg, None)[1], cfg.axi_data_bits, options=opts)
        row.update(build_s=round(b.build_s, 1), load_average=round(os.getloadavg()[0], 1))
        log(f"    build {row['build_s']} s")
        rows.append(row)
    return rows


def _table(points: list[dict]) -> None:
    print("cycles/cpu-s: simulated cycles per CPU second of the simulation (the comparable figure on a loaded "
          "machine); cycles/s: per wall second")
    print(f"{'array':6} {'program':34} {'harness':8} {'cycles/cpu-s':>12} {'cycles/s':>10} {'cycles':>10} "
          f"{'exact':>5}  native/this (cpu, wall)")
    for pt in points:
        for name, p in pt["programs"].items():
            for b in HARNESS_BUILDS:
                if b not in p:
                    continue
                e = p[b]
                ratio = f"  {p[f'ratio_cpu_{b}']}x, {p[f'ratio_wall_{b}']}x" if f"ratio_cpu_{b}" in p else ""
                print(f"{pt['array']:6} {p['program']:34} {b:8} {e['cycles_per_cpu_s']:>12,} {e['cycles_per_s']:>10,} "
                      f"{e['sim_cycles']:>10,} {str(e['bit_exact']):>5}{ratio}")
            print(f"{pt['array']:6} {p['program']:34} identical on every harness: {p['identical']}")
        for b, info in pt["builds"].items():
            print(f"{pt['array']:6} build {b:8} " + ", ".join(f"{k} {v}" for k, v in info.items() if k != "options"))
        print(f"{pt['array']:6} load average {pt['load_average']}")


def _csv(text: str, allowed, what: str) -> list[str]:
    names = [x.strip() for x in text.split(",") if x.strip()]
    bad = [x for x in names if x not in allowed]
    if bad or not names:
        raise ValueError(f"{what} must name entries among {', '.join(allowed)}, got {bad[0] if bad else text!r}")
    return names


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m npuforge.sim.bench.sim_speed", description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="8,16", help="array sizes, comma-separated among 4, 8, 16 (default 8,16)")
    ap.add_argument("--programs", default=",".join(PROGRAMS), help=f"among {','.join(PROGRAMS)} (default: all)")
    ap.add_argument("--harnesses", default=",".join(HARNESS_BUILDS),
                    help=f"harness builds among {','.join(HARNESS_BUILDS)} (default: all)")
    ap.add_argument("--gemm", default="64x384x384", help="GEMM MxKxN (default 64x384x384)")
    ap.add_argument("--minilm-tokens", type=int, default=16, help="tokens of the MiniLM layer program, 1..64 (default 16)")
    ap.add_argument("--options", nargs="?", const=",".join(OPTION_SETS), default=None,
                    help=f"also measure native build options on each size of --sizes: comma-separated among "
                         f"{','.join(OPTION_SETS)} (default: all)")
    ap.add_argument("-o", "--out", default=str(BUILD / "bench" / "sim_speed.json"))
    args = ap.parse_args(argv)
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
        if any(s not in (4, 8, 16) for s in sizes):
            raise ValueError(f"--sizes must be among 4, 8, 16, got {args.sizes!r}")
        gemm = tuple(int(x) for x in args.gemm.lower().split("x"))
        if len(gemm) != 3 or min(gemm) < 1:
            raise ValueError(f"--gemm must be MxKxN with positive integers, got {args.gemm!r}")
        if not 1 <= args.minilm_tokens <= 64:
            raise ValueError(f"--minilm-tokens must be in [1, 64], got {args.minilm_tokens}")
        programs = _csv(args.programs, PROGRAMS, "--programs")
        builds = _csv(args.harnesses, HARNESS_BUILDS, "--harnesses")
        names = [] if args.options is None else _csv(args.options, OPTION_SETS, "--options")
    except ValueError as e:
        msg = str(e) if str(e).startswith("--") else f"--sizes must be integers, got {args.sizes!r}"
        print(f"error: {msg}", file=sys.stderr)
        return 2
    out = {"description": __doc__.split("\n\n")[0], "targets": {"ratio_cpu_fast_o1": 5, "ratio_stretch": 10,
                                                                "native_build_s_8x8": 180},
           "programs": programs, "harnesses": builds, "points": []}
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    print(f"simulation speed: {', '.join(builds)} on {', '.join(programs)}, DRAM latency {LATENCY}", flush=True)
    for s in sizes:
        out["points"].append(measure(s, programs, gemm, builds=builds, minilm_tokens=args.minilm_tokens,
                                     log=lambda msg: print(msg, flush=True)))
        path.write_text(json.dumps(out, indent=1))
    if names:
        out["options"] = [row for s in sizes for row in measure_options(programs, gemm, names, size=s,
                                                                        minilm_tokens=args.minilm_tokens)]
        path.with_name("sim_speed_options.json").write_text(json.dumps(out["options"], indent=1))
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}")
    _table(out["points"])
    for o in out.get("options", []):
        print(f"{o['array']:6} option {o['name']:26} build {o['build_s']:>7} s (load {o['load_average']}): " + ", ".join(
            f"{p} {e['cycles_per_cpu_s']:,} cycles/cpu-s exact {e['bit_exact']}" for p, e in o["programs"].items()))
    ok = all(p["identical"] and all(p[b]["bit_exact"] for b in builds if b in p)
             for pt in out["points"] for p in pt["programs"].values())
    ok = ok and all(e["bit_exact"] for o in out.get("options", []) for e in o["programs"].values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
