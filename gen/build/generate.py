"""Generator outputs of one design point (a PE array, or a whole NPU): Verilog, a FuseSoC CAPI2 ``.core`` and
``manifest.json``.

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

from npuforge.gen.config.array import ArrayConfig
from npuforge.gen.build.elaborate import content_hash, verilog_text

__all__ = ["generate", "generate_npu", "verilog_ports", "signature_ports", "core_text", "manifest", "GENERATOR_VERSION"]

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
    """FuseSoC CAPI2 core of an array: the RTL fileset, a default target and a Verilator lint target."""
    return _core(f"array:{cfg.name}", cfg.name, f"npuforge PE array {cfg.rows}x{cfg.cols} dataflow={cfg.dataflow} "
                 f"precisions={','.join(cfg.precisions)} acc_width={cfg.acc_width}", verilog_files)


def _core(vlnv_name: str, top: str, description: str, verilog_files: list[str]) -> str:
    files = "\n".join(f"      - {f}" for f in verilog_files)
    return (
        "CAPI=2:\n"
        f"name: npuforge:{vlnv_name}:{GENERATOR_VERSION}\n"
        f"description: {description}\n"
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
        f"    toplevel: {top}\n"
        "  lint:\n"
        "    filesets: [rtl]\n"
        f"    toplevel: {top}\n"
        "    default_tool: verilator\n"
        "    tools:\n"
        "      verilator:\n"
        "        mode: lint-only\n"
        "        verilator_options: [-Wno-fatal]\n"
    )


def manifest(cfg: ArrayConfig, *, verilog_files: list[str], core_file: str, ports: list[dict[str, Any]],
             verilog_sha256: str) -> dict[str, Any]:
    """Manifest of an array design point."""
    return {
        "generator": {"name": "npuforge", "version": GENERATOR_VERSION},
        "config": cfg.to_dict(),
        "config_hash": content_hash(cfg.to_json()),
        "top": cfg.name,
        "verilog": verilog_files,
        "core": core_file,
        "verilog_sha256": verilog_sha256,
        "peak_macs_per_cycle": dict(cfg.peak_macs_per_cycle),
        "modes": cfg.mode_table(),
        "act_width": cfg.act_width,
        "scalable_mac": cfg.scalable,
        "clock": "clk",
        "reset": "rst",
        "ports": ports,
    }


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def _emit(out_dir: str | Path, component: wiring.Component, top: str, core: str) -> dict[str, Any]:
    """Write ``top.v`` and ``top.core`` (only when changed); return the manifest fields they determine."""
    import hashlib

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = verilog_text(component, name=top)
    vfile = f"{top}.v"
    _write_if_changed(out_dir / vfile, text)
    sig = signature_ports(component)
    ports = []
    for p in verilog_ports(text, top):
        entry = dict(p)
        if p["name"] in sig:
            entry["signature_path"] = sig[p["name"]]["path"]
            entry["shape"] = sig[p["name"]]["shape"]
        ports.append(entry)
    core_file = f"{top}.core"
    _write_if_changed(out_dir / core_file, core.replace("@VERILOG@", vfile))
    return {"verilog_files": [vfile], "core_file": core_file, "ports": ports,
            "verilog_sha256": hashlib.sha256(text.encode()).hexdigest()}


def generate(cfg: ArrayConfig, out_dir: str | Path, *, component: wiring.Component | None = None) -> dict[str, Any]:
    """Write ``NAME.v``, ``NAME.core`` and ``manifest.json`` for ``cfg`` into ``out_dir``; return the manifest.

    ``component`` defaults to ``gen.build.units.build_array(cfg)``.
    """
    if component is None:
        from npuforge.gen.build.units import build_array
        component = build_array(cfg)
    out = _emit(out_dir, component, cfg.name, core_text(cfg, ["@VERILOG@"]))
    man = manifest(cfg, **out)
    _write_if_changed(Path(out_dir) / "manifest.json", json.dumps(man, indent=2, sort_keys=True) + "\n")
    return man


def generate_npu(npu_cfg, out_dir: str | Path) -> dict[str, Any]:
    """Write the whole NPU of ``npu_cfg`` (:class:`gen.config.npu.NPUConfig`): ``npu_<hash>.v``, its ``.core``
    and ``manifest.json`` (config, ports, bus widths, memory sizes, executed opcodes); return the manifest."""
    from npuforge.gen.build.npu import build_npu, executed_opcodes, npu_top_name

    cfg = npu_cfg
    top = npu_top_name(cfg)
    arr = cfg.array
    core = _core(f"npu:{top}", top, f"npuforge NPU {arr.rows}x{arr.cols} [{','.join(arr.precisions)}] "
                 f"AXI{cfg.axi_data_bits} spad {cfg.spad_bytes // 1024} KiB acc {cfg.acc_bytes // 1024} KiB "
                 f"vector_ops={','.join(cfg.vector_ops) or 'none'}", ["@VERILOG@"])
    out = _emit(out_dir, build_npu(cfg), top, core)
    man = {
        "generator": {"name": "npuforge", "version": GENERATOR_VERSION},
        "unit": "npu",
        "config": cfg.to_dict(),
        "config_hash": content_hash(cfg.to_json()),
        "top": top,
        "verilog": out["verilog_files"],
        "core": out["core_file"],
        "verilog_sha256": out["verilog_sha256"],
        "peak_macs_per_cycle": dict(arr.peak_macs_per_cycle),
        "axi_data_bits": cfg.axi_data_bits,
        "axil": {"addr_bits": 12, "data_bits": 32},
        "memories": {"scratchpad_bytes": cfg.spad_bytes, "scratchpad_banks": cfg.spad_banks,
                     "accumulator_bytes": cfg.acc_bytes},
        "executed_opcodes": sorted(op.name for op in executed_opcodes(cfg)),
        "clock": "clk",
        "reset": "rst",
        "ports": out["ports"],
        "docs": ["docs/isa.md", "docs/registers.md"],
    }
    _write_if_changed(Path(out_dir) / "manifest.json", json.dumps(man, indent=2, sort_keys=True) + "\n")
    return man
