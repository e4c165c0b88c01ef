"""A compile cache for Verilator's run-time library, used as verilated.mk's ``OBJCACHE`` when ccache is absent.

Every Verilator build compiles the same four run-time sources (``verilated.cpp``, ``verilated_vpi.cpp``,
``verilated_dpi.cpp``, ``verilated_threads.cpp`` from ``$VERILATOR_ROOT/include``): about 10 s of CPU per build
at ``-O0``, repeated by each of the test suite's ~30 cocotb builds. Their objects depend only on the compile
command and the installed Verilator (their ``.d`` files list nothing outside ``$VERILATOR_ROOT/include``), so
this wrapper keeps each object and its ``.d`` file under a key of both and copies them into the next build
that asks for the same compile. Any other compile (the model's own C++, cocotb's ``verilator.cpp``, which
includes the model's header) runs the compiler unchanged.

Run as ``python objcache.py DIR COMPILER ARGS...`` (``DIR``: the cache folder); verilated.mk calls it through the
shim :func:`shim` writes. Standalone on purpose (no npuforge imports): it starts once per compiled file.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["cache_key", "cacheable_source", "shim", "main"]


def _include_dir() -> Path | None:
    root = os.environ.get("VERILATOR_ROOT")
    return Path(root, "include").resolve() if root else None


def cacheable_source(args: list[str]) -> Path | None:
    """The source file of ``args`` (a compiler command line) when it is a one-file compile (``-c``, ``-o``) of
    a Verilator run-time source, else None."""
    include = _include_dir()
    if include is None or "-c" not in args or "-o" not in args:
        return None
    sources = [a for a in args if a.endswith(".cpp") and not a.startswith("-")]
    if len(sources) != 1:
        return None
    src = Path(sources[0]).resolve()
    return src if src.parent == include else None


def _depfile(args: list[str]) -> str | None:
    """The dependency file the compiler writes (``-MF``, or ``-MD``/``-MMD``: the object's name with ``.d``)."""
    if "-MF" in args:
        return args[args.index("-MF") + 1]
    if "-MMD" in args or "-MD" in args:
        return str(Path(args[args.index("-o") + 1]).with_suffix(".d"))
    return None


def cache_key(args: list[str], src: Path) -> str:
    """SHA-256 of the command line, the source's bytes, and the name, size and modification time of every file of
    the Verilator include folder (a reinstalled or upgraded Verilator gets new keys)."""
    h = hashlib.sha256()
    h.update("\0".join(args).encode())
    h.update(src.read_bytes())
    for p in sorted(src.parent.rglob("*")):
        if p.is_file():
            st = p.stat()
            h.update(f"{p.relative_to(src.parent)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


def _store(data: bytes, dest: Path, mode: int = 0o644) -> None:
    """Write ``dest`` atomically (two builds may store the same entry at once)."""
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, dest)


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: objcache.py DIR COMPILER [ARGS...]", file=sys.stderr)
        return 2
    cache, args = Path(argv[0]), argv[1:]
    src = cacheable_source(args)
    if src is None:
        return subprocess.call(args)
    obj, dep = args[args.index("-o") + 1], _depfile(args)
    entry = cache / cache_key(args, src)
    if (entry / "obj").exists() and (dep is None or (entry / "dep").exists()):
        Path(obj).write_bytes((entry / "obj").read_bytes())
        if dep is not None:
            Path(dep).write_bytes((entry / "dep").read_bytes())
        return 0
    rc = subprocess.call(args)
    if rc == 0 and Path(obj).exists() and (dep is None or Path(dep).exists()):
        entry.mkdir(parents=True, exist_ok=True)
        if dep is not None:
            _store(Path(dep).read_bytes(), entry / "dep")
        _store(Path(obj).read_bytes(), entry / "obj")  # last: its presence marks the entry complete
    return rc


def shim(cache: Path) -> Path:
    """Write (once) and return ``cache/cxx``, an executable that runs this file with this Python on ``cache``:
    the value for ``OBJCACHE`` (verilated.mk puts it in front of the compiler)."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / "cxx"
    text = f'#!/bin/sh\nexec "{sys.executable}" "{Path(__file__).resolve()}" "{cache.resolve()}" "$@"\n'
    if not path.exists() or path.read_text() != text:
        _store(text.encode(), path, 0o755)
    return path


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
