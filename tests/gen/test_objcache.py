"""The run-time-library compile cache (gen/build/objcache.py), with a stand-in compiler that counts its runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from npuforge.gen.build import objcache

# A stand-in for c++: writes "<source bytes><-D and -O flags>" to the -o file and "<obj>: <src>" to the .d file (-MMD),
# appends one line per run to the log named by FAKE_CXX_LOG, fails when a flag is -DFAIL.
FAKE_CXX = """\
import os, sys
from pathlib import Path
args = sys.argv[1:]
with open(os.environ["FAKE_CXX_LOG"], "a") as log:
    log.write(" ".join(args) + "\\n")
if "-DFAIL" in args:
    sys.exit(3)
obj = args[args.index("-o") + 1]
src = next(a for a in args if a.endswith(".cpp"))
Path(obj).write_bytes(Path(src).read_bytes() + " ".join(a for a in args if a.startswith(("-D", "-O"))).encode())
if "-MMD" in args:
    Path(obj).with_suffix(".d").write_text(f"{obj}: {src}\\n")
"""


@pytest.fixture
def setup(tmp_path, monkeypatch):
    root = tmp_path / "verilator"
    (root / "include").mkdir(parents=True)
    (root / "include" / "verilated.cpp").write_text("runtime v1;")
    (root / "include" / "verilated.h").write_text("header")
    cxx = tmp_path / "fake_cxx.py"
    cxx.write_text(FAKE_CXX)
    log = tmp_path / "cxx.log"
    log.write_text("")
    monkeypatch.setenv("VERILATOR_ROOT", str(root))
    monkeypatch.setenv("FAKE_CXX_LOG", str(log))
    cache = tmp_path / "cache"

    def compile_in(build: Path, src: Path, *flags: str) -> int:
        """One compile of ``src`` through the cache's shim, run in ``build`` as verilated.mk does."""
        build.mkdir(exist_ok=True)
        obj = src.with_suffix(".o").name
        return subprocess.call([str(objcache.shim(cache)), sys.executable, str(cxx), "-MMD", *flags, "-c",
                                "-o", obj, str(src)], cwd=build, env=os.environ)

    return root / "include", log, cache, compile_in, tmp_path


def runs(log: Path) -> int:
    return len(log.read_text().splitlines())


def test_second_build_gets_the_runtime_object_and_depfile_without_compiling(setup):
    include, log, _, compile_in, tmp = setup
    assert compile_in(tmp / "b1", include / "verilated.cpp", "-O0") == 0
    assert runs(log) == 1
    assert compile_in(tmp / "b2", include / "verilated.cpp", "-O0") == 0
    assert runs(log) == 1  # a hit: the compiler did not run
    assert (tmp / "b2" / "verilated.o").read_bytes() == (tmp / "b1" / "verilated.o").read_bytes()
    assert (tmp / "b2" / "verilated.d").read_text() == (tmp / "b1" / "verilated.d").read_text()


def test_other_flags_source_or_verilator_install_compile_again(setup):
    include, log, _, compile_in, tmp = setup
    compile_in(tmp / "b1", include / "verilated.cpp", "-O0")
    compile_in(tmp / "b2", include / "verilated.cpp", "-O2")
    assert runs(log) == 2
    assert (tmp / "b2" / "verilated.o").read_bytes() != (tmp / "b1" / "verilated.o").read_bytes()
    (include / "verilated.cpp").write_text("runtime v2;")
    compile_in(tmp / "b3", include / "verilated.cpp", "-O0")
    assert runs(log) == 3
    assert (tmp / "b3" / "verilated.o").read_bytes().startswith(b"runtime v2;")
    (include / "verilated.h").write_text("header, another Verilator")
    compile_in(tmp / "b4", include / "verilated.cpp", "-O0")
    assert runs(log) == 4


def test_model_sources_always_compile_and_failures_are_not_cached(setup):
    include, log, cache, compile_in, tmp = setup
    model = tmp / "b1" / "Vtop.cpp"
    model.parent.mkdir()
    model.write_text("model")
    for build in ("b1", "b1"):
        assert compile_in(tmp / build, model, "-O0") == 0
    assert runs(log) == 2
    assert compile_in(tmp / "b2", include / "verilated.cpp", "-DFAIL") == 3
    assert compile_in(tmp / "b3", include / "verilated.cpp", "-DFAIL") == 3
    assert runs(log) == 4
    assert not any(p.is_dir() for p in cache.iterdir())


def test_only_one_file_runtime_compiles_are_cacheable(setup):
    include, *_ = setup
    src = str(include / "verilated.cpp")
    assert objcache.cacheable_source(["c++", "-c", "-o", "verilated.o", src]) == Path(src).resolve()
    assert objcache.cacheable_source(["c++", "-o", "a.out", src]) is None  # a link
    assert objcache.cacheable_source(["c++", "-c", "-o", "x.o", "Vtop.cpp"]) is None
    assert objcache.cacheable_source(["c++", "-c", "-o", "x.o", src, "other.cpp"]) is None
