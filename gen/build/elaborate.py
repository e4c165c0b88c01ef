"""Elaborate Amaranth components to deterministic Verilog files under ``build/``."""

from __future__ import annotations

import hashlib
from pathlib import Path

from amaranth.back import verilog

from npuforge.gen.build.toolchain import setup_yosys

__all__ = ["emit_verilog", "verilog_text"]


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
