"""Generator outputs of one design point: Verilog, a FuseSoC CAPI2 ``.core`` and ``manifest.json``.

Everything written is a pure function of the config (no timestamps, no absolute paths, sorted JSON keys),
so the same config gives byte-identical files. Files are rewritten only when their content changes, which
keeps simulator build caches warm.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from amaranth.hdl import Shape
from amaranth.lib import wiring

from .config import ArrayConfig
from .elaborate import content_hash, verilog_text

__all__ = ["generate", "verilog_ports", "signature_ports", "core_text", "manifest", "GENERATOR_VERSION"]

#: Version stamped into the .core VLNV and the manifest (bump when the output format changes).
GENERATOR_VERSION = "0.1.0"

_DECL = re.compile(r"^\s*(input|output|inout)\s+(?:wire\s+|reg\s+)?(?:signed\s+)?(?:\[(\d+):(\d+)\]\s*)?(\\?\S+?)\s*;")


def verilog_ports(text: str, top: str) -> list[dict[str, Any]]:
    """Ports of module ``top`` in Verilog ``text``, in header order: ``{"name", "direction", "width"}``."""
    m = re.search(rf"^module\s+{re.escape(top)}\s*\(([^)]*)\)\s*;(.*?)^endmodule", text, re.M | re.S)
    if m is None:
        raise ValueError(f"module {top!r} not found in the generated Verilog")
    order = [p.strip() for p in m.group(1).split(",") if p.strip()]
    decls: dict[str, dict[str, Any]] = {}
    for line in m.group(2).splitlines():
        d = _DECL.match(line)
        if d:
            direction, msb, lsb, name = d.groups()
            width = abs(int(msb) - int(lsb)) + 1 if msb is not None else 1
            decls[name] = {"name": name, "direction": direction, "width": width}
    return [decls[p] for p in order if p in decls]


def signature_ports(component: wiring.Component) -> dict[str, dict[str, Any]]:
    """Amaranth view of the ports: flattened Verilog name -> signature path and shape (keeps signedness)."""
    out: dict[str, dict[str, Any]] = {}
    for path, member, _value in component.signature.flatten(component):
        name = "__".join(str(p) for p in path)
        shape = member.shape
        try:
            width = Shape.cast(shape).width
        except TypeError:
            width = None
        out[name] = {"path": [str(p) for p in path], "shape": repr(shape), "width": width,
                     "flow": "input" if member.flow == wiring.In else "output"}
    return out


def core_text(cfg: ArrayConfig, verilog_files: list[str]) -> str:
    """FuseSoC CAPI2 core: the RTL fileset, a default target and a Verilator lint target."""
    files = "\n".join(f"      - {f}" for f in verilog_files)
    return (
        "CAPI=2:\n"
        f"name: npuforge:array:{cfg.name}:{GENERATOR_VERSION}\n"
        f"description: npuforge PE array {cfg.rows}x{cfg.cols} dataflow={cfg.dataflow} "
        f"precisions={','.join(cfg.precisions)} acc_width={cfg.acc_width}\n"
        "\n"
        "filesets:\n"
        "  rtl:\n"
        "    files:\n"
        f"{files}\n"
        "    file_type: verilogSource\n"
        "\n"
        "targets:\n"
        "  default:\n"
        "    filesets: [rtl]\n"
        f"    toplevel: {cfg.name}\n"
        "  lint:\n"
        "    filesets: [rtl]\n"
        f"    toplevel: {cfg.name}\n"
        "    default_tool: verilator\n"
        "    tools:\n"
        "      verilator:\n"
        "        mode: lint-only\n"
        "        verilator_options: [-Wno-fatal]\n"
    )


def manifest(cfg: ArrayConfig, *, verilog_files: list[str], core_file: str, ports: list[dict[str, Any]],
             verilog_sha256: str) -> dict[str, Any]:
    return {
        "generator": {"name": "npuforge", "version": GENERATOR_VERSION},
        "config": cfg.to_dict(),
        "config_hash": content_hash(cfg.to_json()),
        "top": cfg.name,
        "verilog": verilog_files,
        "core": core_file,
        "verilog_sha256": verilog_sha256,
        "peak_macs_per_cycle": dict(cfg.peak_macs_per_cycle),
        "scalable_mac": cfg.scalable,
        "clock": "clk",
        "reset": "rst",
        "ports": ports,
    }


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def generate(cfg: ArrayConfig, out_dir: str | Path, *, component: wiring.Component | None = None) -> dict[str, Any]:
    """Write ``NAME.v``, ``NAME.core`` and ``manifest.json`` for ``cfg`` into ``out_dir``; return the manifest.

    ``component`` defaults to ``gen.build.build_array(cfg)``.
    """
    import hashlib

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if component is None:
        from .build import build_array
        component = build_array(cfg)
    text = verilog_text(component, name=cfg.name)
    vfile = f"{cfg.name}.v"
    _write_if_changed(out_dir / vfile, text)
    sig = signature_ports(component)
    ports = []
    for p in verilog_ports(text, cfg.name):
        entry = dict(p)
        if p["name"] in sig:
            entry["signature_path"] = sig[p["name"]]["path"]
            entry["shape"] = sig[p["name"]]["shape"]
        ports.append(entry)
    core_file = f"{cfg.name}.core"
    _write_if_changed(out_dir / core_file, core_text(cfg, [vfile]))
    man = manifest(cfg, verilog_files=[vfile], core_file=core_file, ports=ports,
                   verilog_sha256=hashlib.sha256(text.encode()).hexdigest())
    _write_if_changed(out_dir / "manifest.json", json.dumps(man, indent=2, sort_keys=True) + "\n")
    return man
