"""Run compiled programs on the NPU RTL (cocotb + Verilator/Icarus) and check them against both golden tiers.

``run_gemm(npu_cfg, m, k, n, mode, sim=..., waves=...)`` compiles ``C = requant(A @ B)`` for random operands
(directed extremes included), runs the ISA simulator (tier 2) and the RTL, and returns
``{"cycles", "macs", "utilization", "bytes_moved", "bit_exact", "mismatches", ...}``:

* ``cycles``: NPU busy cycles from START to DONE (the BUSY_CYCLES counter);
* ``macs``: useful MACs (M*K*N); ``utilization`` = macs / (peak MACs/cycle of the mode x cycles);
* ``bytes_moved``: DMA payload bytes read + written (counters) plus the command fetch (16 B per instruction);
* ``bit_exact``: status NONE, the C region equal to golden ``requantize(gemm)`` and the whole DRAM image equal
  to the ISA simulator's; ``mismatches``: output elements that differ from the golden C.

:func:`run_jobs` runs several jobs (GEMMs, faulting programs, soft resets) on one simulator instance: one
Verilator build per NPU configuration and harness, shared by every call (sim/harness/runner.py caches it).

Three harnesses (``harness=``), same jobs, same result JSON, same bit-exactness checks:

* ``"native"`` (:mod:`sim.harness.native`): the Verilated NPU + a C++ port of the HDL DRAM model, driven by a
  C++ main from a set-up file: no Python or VPI per cycle, several times the fast harness's cycles/s, and cycle
  for cycle the same as ``"fast"`` (same DRAM timing and stall pattern, same register traffic). Adds a DRAM
  bandwidth cap (``bandwidth`` bytes per cycle). Verilator only, no waveforms.
* ``"fast"`` (:mod:`sim.tb.npu_fast`): NPU + the HDL DRAM model ``sim/hdl/axi_dram.v`` in one top; no Python
  runs per cycle (tens of thousands of simulated cycles/s on Verilator). DRAM latency: the first R beat comes
  ``2 + latency`` cycles after its AR handshake, B ``1 + latency`` cycles after the last W beat; ``stall`` is
  the probability of a stall cycle on each AXI channel (LFSR in HDL, seeded by ``seed``).
* ``"axi"`` (:mod:`sim.tb.npu`): cocotbext-axi's AxiRam + AxiLiteMaster (Python per bus cycle, ~1,000
  cycles/s), the protocol-level reference; ``latency`` is added on top of AxiRam's own pipeline latency (one
  Python coroutine per cycle when > 0). Cycle counts differ between the two (different DRAM timing); DRAM
  images, status, fault addresses and counters other than BUSY/STALL_CYCLES do not.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from npuforge.gen.isa.builder import LayerProgram
from npuforge.gen.isa.gemm_program import CompiledGemm, compile_gemm
from npuforge.spec.precision import PRECISION_MODES
from npuforge.spec.isa import INSTR_BYTES, encode_program
from npuforge.gen.isa.isasim import Window, run as isasim_run
from npuforge.gen.build.npu import emit_npu_verilog, register_map
from npuforge.gen.config.npu import NPUConfig
from npuforge.golden.gemm import MODES
from npuforge.golden.requant import quantize_multipliers
from npuforge.sim.harness.runner import BUILD, run_cocotb

__all__ = ["Job", "HARNESSES", "system_verilog", "gemm_operands", "gemm_job", "compiled_job", "program_job", "job_spec",
           "run_jobs", "run_gemm", "run_program", "summarize"]

#: ``run_jobs(harness=...)`` values: the C++ harness (native), the HDL DRAM model under cocotb (fast) or
#: cocotbext-axi's AxiRam (axi, the protocol reference).
HARNESSES = ("native", "fast", "axi")
#: C++ optimisation of the fast harness's Verilator build: its runs are long, so simulation speed beats build time.
FAST_OPT = "-O2"
#: ... on its hot code only: the cold code (constructors, initial values; most of the C++) at -O0 builds faster.
FAST_OPT_SLOW = "-O0"
# Storage of the HDL DRAM model per simulator: one Verilator build serves every image up to 16 MiB (the decoded
# size is a plusarg); Icarus allocates its 4-state memory up front, so it gets the smallest that fits.
_FAST_MEM_BYTES = {"verilator": 1 << 24, "icarus": 1 << 20}


@dataclass
class Job:
    """One NPU run: the DRAM image, windows, ring registers and what both golden tiers expect."""
    name: str
    image: np.ndarray
    windows: list
    program_len: int                    # bytes of program at address 0 (RING_HEAD)
    ring_size: int
    expect_status: int = 0
    expect_fault: int = 0
    expect_tail: int = 0
    expect_mem: np.ndarray | None = None
    expect_c: np.ndarray | None = None  # golden C bytes
    c_range: tuple[int, int] | None = None
    c_elem_bytes: int = 1
    soft_reset_after: int = 0
    macs: int = 0
    peak_macs_per_cycle: int = 1
    instructions: int = 0
    extra: dict = field(default_factory=dict)


def gemm_operands(m: int, k: int, n: int, mode: str, *, seed: int = 0):
    """Random A [m, k], B [k, n] in the mode's ranges with every extreme present, and per-channel requant
    (multiplier, shift) that spread the outputs over the int8 range (some saturate)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    a_bits, b_bits = MODES[mode]
    rng = np.random.default_rng(seed)
    lo_a, hi_a = -(1 << (a_bits - 1)), (1 << (a_bits - 1)) - 1
    lo_b, hi_b = -(1 << (b_bits - 1)), (1 << (b_bits - 1)) - 1
    a = rng.integers(lo_a, hi_a + 1, size=(m, k), dtype=np.int64)
    b = rng.integers(lo_b, hi_b + 1, size=(k, n), dtype=np.int64)
    # Directed edges: a row/column of extremes, and the longest all-extreme reduction.
    a.flat[:min(a.size, 4)] = [lo_a, hi_a, 0, lo_a][:min(a.size, 4)]
    b.flat[:min(b.size, 4)] = [lo_b, hi_b, lo_b, 0][:min(b.size, 4)]
    a[-1, :] = lo_a
    b[:, -1] = lo_b
    std = max(1.0, np.sqrt(k) * (hi_a / 1.7) * (hi_b / 1.7))
    scales = rng.uniform(0.5, 2.0, size=n) * 48.0 / std
    mult, shift = quantize_multipliers(scales)
    return a, b, mult, shift


def _perm(w: Window) -> int:
    return int(w.read) | int(w.write) << 1


def gemm_job(cfg: NPUConfig, m: int, k: int, n: int, mode: str = "int8", *, seed: int = 0,
             name: str | None = None, **compile_kw) -> tuple[Job, CompiledGemm]:
    """Compile a random GEMM and run it on the ISA simulator; the job expects both tiers' results."""
    a, b, mult, shift = gemm_operands(m, k, n, mode, seed=seed)
    comp = compile_gemm(cfg, a, b, mult, shift, mode=mode, **compile_kw)
    return compiled_job(cfg, comp, name=name), comp


def compiled_job(cfg: NPUConfig, comp: CompiledGemm, *, name: str | None = None) -> Job:
    """A compiled GEMM (``gen.isa.gemm_program.compile_gemm``) run on the ISA simulator: the job expects both tiers'
    results (the ISA simulator's whole image and the compiler's golden C)."""
    mode = comp.plan.mode
    m, k, n = comp.plan.m, comp.plan.k, comp.plan.n
    prog = comp.program_bytes
    sim = isasim_run(cfg, prog, comp.image, comp.windows)
    p = comp.plan
    c_lo = p.c_base
    c_hi = p.c_base + p.m * p.c_row_bytes
    exp_c = np.ascontiguousarray(comp.expected.astype({8: np.int8, 16: "<i2", 32: "<i4"}[p.out_bits])).view(np.uint8)
    job = Job(name=name or f"gemm_{mode}_{m}x{k}x{n}", image=comp.image, windows=comp.windows,
              program_len=len(prog), ring_size=p.program_bytes, expect_status=int(sim.status),
              expect_fault=int(sim.fault_addr), expect_tail=INSTR_BYTES * sim.pc, expect_mem=sim.memory,
              expect_c=exp_c.ravel(), c_range=(c_lo, c_hi), c_elem_bytes=p.out_bits // 8, macs=p.macs,
              peak_macs_per_cycle=cfg.array.rows * cfg.array.cols * PRECISION_MODES[mode].products,
              instructions=len(comp.program), extra={"tiles": [p.tm, p.tk, p.tn], "order": p.order})
    return job


def program_job(cfg: NPUConfig, name: str, program: bytes, image: np.ndarray, windows: Sequence[Window], *,
                ring_size: int | None = None) -> Job:
    """A raw program (bytes at address 0 of ``image``) with the ISA simulator's expectations."""
    image = np.array(image, dtype=np.uint8, copy=True)
    image[:len(program)] = np.frombuffer(program, dtype=np.uint8)
    sim = isasim_run(cfg, program, image, windows)
    return Job(name=name, image=image, windows=list(windows), program_len=len(program),
               ring_size=ring_size or len(program), expect_status=int(sim.status), expect_fault=int(sim.fault_addr),
               expect_tail=INSTR_BYTES * sim.pc, expect_mem=sim.memory, instructions=sim.pc + 1)


def layer_job(prog: LayerProgram, name: str, output: str) -> Job:
    """A layer program (gen.isa.builder) as a job: the ISA simulator's final image, and ``output``'s golden bytes
    (every operator of the program applied by the golden model) as the expected C."""
    job = program_job(prog.cfg, name, prog.program_bytes, prog.image, prog.windows)
    lo = prog.bases[output]
    want = prog.reference()[output]
    job.expect_c = want.ravel()
    job.c_range = (lo, lo + want.size)
    job.c_elem_bytes = max(1, prog.roots[output].bits // 8)
    job.macs = prog.macs
    job.peak_macs_per_cycle = prog.cfg.array.rows * prog.cfg.array.cols
    return job


def run_layer_programs(prog: LayerProgram, **run_kw) -> list[tuple[str, dict, np.ndarray]]:
    """Run every program of ``prog`` in order, each on the memory the previous one left on the RTL (the host
    writes the next program into the program area between runs, as a driver would): ``(name, result, final
    memory)`` per program. Each run's result carries the ISA simulator's comparison for that program from the
    same starting memory. ``run_kw``: :func:`run_jobs` options (harness, latency, stall, seed, ...)."""
    out = []
    memory = prog.image
    for name, program in prog.programs.items():
        job = program_job(prog.cfg, name, encode_program(program), prog.load(memory, name), prog.windows)
        res = run_jobs(prog.cfg, [job], keep_memory=True, **run_kw)[0]
        memory = res["memory"]
        out.append((name, res, memory))
    return out


def _timeout_cycles(job: Job) -> int:
    """Cycle limit of the wait for a job's interrupt: ``job.extra["timeout_cycles"]`` or a generous default."""
    return int(job.extra.get("timeout_cycles", 50 * max(job.macs // max(1, job.peak_macs_per_cycle), 1000) + 200_000))


def _ram_size(jobs: Sequence[Job]) -> int:
    need = max(j.image.size for j in jobs)
    size = 1 << 16
    while size < need:
        size <<= 1
    return size


_EMITTED: dict[tuple[str, int | None], tuple[list[Path], str]] = {}


def _emitted(cfg: NPUConfig, mem_bytes: int | None) -> tuple[list[Path], str]:
    """Verilog sources and top of the NPU (``mem_bytes`` None) or the NPU + DRAM model, elaborated once per
    process (Amaranth + Yosys take tens of seconds on the default NPU; the demo calls this once per layer)."""
    key = (cfg.to_json(), mem_bytes)
    if key not in _EMITTED or not all(p.exists() for p in _EMITTED[key][0]):
        if mem_bytes is None:
            npu_path, top = emit_npu_verilog(cfg)
            _EMITTED[key] = [npu_path], top
        else:
            from npuforge.sim.hdl import emit_npu_system

            _EMITTED[key] = emit_npu_system(cfg, mem_bytes=mem_bytes)
    return _EMITTED[key]


def system_verilog(cfg: NPUConfig, *, sim: str = "verilator") -> tuple[list[Path], str]:
    """The fast harness's Verilog sources and top (NPU + DRAM model) for images up to the model's default
    storage (16 MiB on Verilator, 1 MiB on Icarus); elaborated once per process, as :func:`run_jobs` does."""
    if sim not in _FAST_MEM_BYTES:
        raise ValueError(f"sim must be one of {', '.join(_FAST_MEM_BYTES)}, got {sim!r}")
    return _emitted(cfg, _FAST_MEM_BYTES[sim])


def job_spec(cfg: NPUConfig, jobs: Sequence[Job], work: Path, *, latency: int, stall: float, seed: int, check: bool,
             keep_memory: bool = False) -> dict:
    """The job file of ``jobs`` that every harness reads (images and expectations saved as ``.npy`` in ``work``)."""
    ram_size = _ram_size(jobs)
    spec_jobs = []
    for i, j in enumerate(jobs):
        d = {"name": j.name, "ring_base": 0, "ring_size": j.ring_size, "ring_head": j.program_len,
             "windows": [[w.base, w.size, _perm(w)] for w in j.windows], "check": check,
             "expect_status": j.expect_status, "expect_fault": j.expect_fault, "expect_tail": j.expect_tail,
             "soft_reset_after": j.soft_reset_after, "result": str(work / f"result{i}.json"),
             "timeout_cycles": _timeout_cycles(j)}
        np.save(work / f"image{i}.npy", j.image)
        d["image"] = str(work / f"image{i}.npy")
        if keep_memory:
            d["mem_out"] = str(work / f"memory{i}.npy")
        if j.expect_mem is not None:
            np.save(work / f"expect_mem{i}.npy", j.expect_mem)
            d["expect_mem"] = str(work / f"expect_mem{i}.npy")
        if j.expect_c is not None:
            np.save(work / f"expect_c{i}.npy", j.expect_c)
            d.update(expect_c=str(work / f"expect_c{i}.npy"), c_range=list(j.c_range), c_elem_bytes=j.c_elem_bytes)
        spec_jobs.append(d)
    return {"regs": register_map(), "ram_size": ram_size, "latency": latency, "stall": stall,
            "seed": seed, "n_windows": cfg.windows, "axi_data_bits": cfg.axi_data_bits, "jobs": spec_jobs}


def run_jobs(cfg: NPUConfig, jobs: Sequence[Job], *, sim: str = "verilator", waves: bool = False,
             latency: int = 4, stall: float = 0.0, seed: int = 1, check: bool = True, tag: str = "",
             harness: str = "axi", keep_memory: bool = False, opt: str | None = None, bandwidth: int = 0,
             native_options=None, log=None) -> list[dict]:
    """Run ``jobs`` in order on one RTL instance; returns the testbench's measurement per job.

    With ``check`` the testbench asserts equality with both golden tiers (AssertionError from the runner);
    without it the results just report the differences (the CLI and the bench use that).
    ``harness``: ``"axi"`` (default, cocotbext-axi AxiRam: the protocol-level reference the system tests use),
    ``"fast"`` (HDL DRAM model) or ``"native"`` (C++ harness), see the module docstring. ``latency``: DRAM latency in cycles, 0..10000;
    ``stall``: probability of a stall cycle per AXI channel and cycle, 0..0.9. ``keep_memory``: each result
    gets ``"memory"``, the final DRAM image (uint8, image-sized); the run's work folder is removed either way. ``opt``: C++ optimisation level
    of the Verilator build (default: :data:`FAST_OPT` on the hot and :data:`FAST_OPT_SLOW` on the cold code for the
    fast harness, ``NPUFORGE_VERILATOR_OPT`` for axi).
    Native harness only: ``bandwidth`` caps the DRAM at that many bytes per cycle (reads + writes; 0: no cap),
    ``native_options`` (:class:`sim.harness.native.BuildOptions`) sets its build, ``log`` gets a line before a
    build. Each result has ``sim_wall_s`` and ``sim_cpu_s`` (wall and CPU seconds of the job's simulation) on all harnesses
    and ``sim_cycles`` (clock cycles of the job, register set-up, image load and dump included).
    """
    if harness not in HARNESSES:
        raise ValueError(f"harness must be one of {', '.join(HARNESSES)}, got {harness!r}")
    if not isinstance(latency, int) or not 0 <= latency <= 10_000:
        raise ValueError(f"latency must be an integer in [0, 10000] cycles, got {latency!r}")
    if not 0.0 <= stall <= 0.9:
        raise ValueError(f"stall must be a probability in [0, 0.9], got {stall!r}")
    if not jobs:
        raise ValueError("jobs must hold at least one Job, got none")
    if not isinstance(bandwidth, int) or not 0 <= bandwidth <= 4096:
        raise ValueError(f"bandwidth must be an integer in [0, 4096] bytes per cycle, got {bandwidth!r}")
    if bandwidth and harness != "native":
        raise ValueError(f"bandwidth (a DRAM bytes-per-cycle cap) needs harness='native', got {harness!r}")
    ram_size = _ram_size(jobs)
    plusargs = []
    if harness == "native":
        if sim != "verilator":
            raise ValueError(f"sim must be verilator for the native harness, got {sim!r}")
        if waves:
            raise ValueError("waves need harness='fast' or 'axi' (the native harness writes no waveform)")
        verilog, top = _emitted(cfg, None)
    elif harness == "fast":
        if sim not in _FAST_MEM_BYTES:
            raise ValueError(f"sim must be one of {', '.join(_FAST_MEM_BYTES)}, got {sim!r}")
        verilog, top = _emitted(cfg, max(ram_size, _FAST_MEM_BYTES[sim]))
        test_module = "npuforge.sim.tb.npu_fast"
    else:
        verilog, top = _emitted(cfg, None)
        test_module = "npuforge.sim.tb.npu"
    BUILD.mkdir(parents=True, exist_ok=True)
    (BUILD / "npu_runs").mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="run_", dir=BUILD / "npu_runs"))
    spec = job_spec(cfg, jobs, work, latency=latency, stall=stall, seed=seed, check=check, keep_memory=keep_memory)
    spec_jobs = spec["jobs"]
    (work / "jobs.json").write_text(json.dumps(spec, indent=1))
    if harness == "native":
        from npuforge.sim.harness.native import DEFAULT_OPTIONS, native_binary, npu_rtlil, run_native_jobs
        from npuforge.sim.harness.native_train import trainer

        build = native_binary(verilog[0], top, cfg.axi_data_bits, options=native_options or DEFAULT_OPTIONS, log=log,
                              rtlil=lambda: npu_rtlil(cfg, top), train=trainer(cfg))
        try:
            results = run_native_jobs(build, spec, work, bandwidth=bandwidth)
            return _with_memory(results, spec_jobs, keep_memory)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    env = {"NPU_JOBS": str(work / "jobs.json")}
    if harness == "fast":
        # The DRAM model's run-time settings (sim/hdl/axi_dram.v); the image/dump files are rewritten per job.
        plusargs = [f"+dram_image={work / 'dram_image.hex'}", f"+dram_dump={work / 'dram_dump.hex'}",
                    f"+dram_bytes={ram_size}", f"+dram_read_latency={latency}", f"+dram_write_latency={latency}",
                    f"+dram_stall_256={round(stall * 256)}", f"+dram_seed={seed & 0xFFFF_FFFF}"]
    try:
        fast = harness == "fast"
        # The fast harness: FAST_OPT on the hot code, FAST_OPT_SLOW on the cold code, unless a level is asked for.
        own = opt or os.environ.get("NPUFORGE_VERILATOR_OPT")
        fast_verilator = fast and sim == "verilator"
        # Both testbenches (sim/tb/npu.py, sim/tb/npu_fast.py) touch the top's ports only: no --public-flat-rw.
        run_cocotb(verilog=verilog, toplevel=top, test_module=test_module, sim=sim, env=env, waves=waves,
                   seed=seed, tag=tag or work.name, plusargs=plusargs, public=False,
                   opt=own or (FAST_OPT if fast_verilator else None),
                   opt_slow=FAST_OPT_SLOW if fast_verilator and not own else None)
    finally:
        results = []
        for d in spec_jobs:
            path = Path(d["result"])
            results.append(json.loads(path.read_text()) if path.exists() else {"name": d["name"], "missing": True})
        results = _with_memory(results, spec_jobs, keep_memory)
        shutil.rmtree(work, ignore_errors=True)
    return results


def _with_memory(results: list[dict], spec_jobs: list[dict], keep_memory: bool) -> list[dict]:
    """``results`` with each job's final DRAM image (uint8 array) as ``"memory"`` when ``keep_memory``: the run's
    work folder (its DRAM images, up to hundreds of MB per program for a real model) is removed after the run."""
    if keep_memory:
        for d, res in zip(spec_jobs, results):
            if Path(d["mem_out"]).exists():
                res["memory"] = np.load(d["mem_out"])
    return results


def summarize(job: Job, res: dict) -> dict:
    """The CLI/bench JSON contract for one job's result."""
    counters = res.get("counters", {})
    cycles = int(counters.get("BUSY_CYCLES", 0))
    moved = int(counters.get("BYTES_READ", 0)) + int(counters.get("BYTES_WRITTEN", 0)) \
        + INSTR_BYTES * job.instructions
    ok = (not res.get("timeout", True) and res.get("error") == job.expect_status == 0
          and res.get("golden_mismatch_bytes", 1) == 0 and res.get("isasim_mismatch_bytes", 1) == 0)
    return {
        "cycles": cycles,
        "macs": job.macs,
        "utilization": job.macs / (job.peak_macs_per_cycle * cycles) if cycles else 0.0,
        "bytes_moved": moved,
        "bit_exact": bool(ok),
        "mismatches": int(res.get("mismatches", job.expect_c.size if job.expect_c is not None else 0))
        if not res.get("timeout", True) else int(job.expect_c.size if job.expect_c is not None else 0),
        "macs_counted": int(counters.get("MACS", 0)),
        "stall_cycles": int(counters.get("STALL_CYCLES", 0)),
        "error_code": res.get("error"),
    }


def run_gemm(npu_cfg: NPUConfig, m: int, k: int, n: int, mode: str = "int8", *, sim: str = "verilator",
             waves: bool = False, seed: int = 0, latency: int = 4, stall: float = 0.0, check: bool = False,
             harness: str = "native", bandwidth: int = 0, max_cycles: int | None = None, log=None,
             **compile_kw) -> dict:
    """Compile, simulate and check one GEMM; returns the JSON contract (plus a few diagnostics).

    ``harness``: ``"native"`` (default: the C++ harness), ``"fast"`` (cocotb + the HDL DRAM model) or ``"axi"``
    (cocotbext-axi), see :func:`run_jobs`. ``max_cycles``: the cycle limit of the wait for the interrupt (default:
    generous, from the MAC count); the result's ``timeout`` says it was reached. Besides the contract: ``harness``,
    ``sim_wall_s`` (wall seconds of the simulation, build excluded), ``sim_cycles`` (clock cycles simulated,
    register set-up and DRAM image load/dump included) and ``sim_cycles_per_s``.
    """
    if max_cycles is not None and (not isinstance(max_cycles, int) or max_cycles < 1):
        raise ValueError(f"max_cycles must be an integer >= 1, got {max_cycles!r}")
    job, comp = gemm_job(npu_cfg, m, k, n, mode, seed=seed, **compile_kw)
    if max_cycles is not None:
        job.extra["timeout_cycles"] = max_cycles
    res = run_jobs(npu_cfg, [job], sim=sim, waves=waves, latency=latency, stall=stall, seed=seed + 1,
                   check=check, harness=harness, bandwidth=bandwidth, log=log)[0]
    out = summarize(job, res)
    wall = float(res.get("sim_wall_s", 0.0))
    cycles = int(res.get("sim_cycles", out["cycles"]))
    out.update(tiles=job.extra["tiles"], order=job.extra["order"], harness=harness, sim_wall_s=round(wall, 4),
               sim_cycles=cycles, sim_cycles_per_s=round(cycles / wall) if wall > 0 else None,
               timeout=bool(res.get("timeout", True)), timeout_cycles=_timeout_cycles(job))
    return out


def run_program(npu_cfg: NPUConfig, program: bytes, image: np.ndarray, windows: Sequence[Window], *,
                sim: str = "verilator", waves: bool = False, check: bool = False, **kw) -> dict:
    """Run a raw program; returns the testbench's measurement and the ISA simulator's expectation."""
    job = program_job(npu_cfg, "program", program, image, windows)
    res = run_jobs(npu_cfg, [job], sim=sim, waves=waves, check=check, **kw)[0]
    res.update(expect_status=job.expect_status, expect_fault=job.expect_fault, expect_tail=job.expect_tail)
    return res
