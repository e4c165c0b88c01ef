"""Simulation-only HDL: the AXI4 DRAM model (``axi_dram.v``) and the NPU system top of the fast harness.

:func:`emit_npu_system` writes ``build/npu/<top>.v``: the NPU (``gen.build.npu.emit_npu_verilog``) with its
``m_axi`` manager port wired to :data:`DRAM_MODEL`; every other NPU port (``s_axil__*``, ``irq``, and whatever
the NPU grows later) stays at the top for cocotb, plus ``dram_load``, ``dram_dump`` (pulse one cycle: load the
``+dram_image`` file / dump to the ``+dram_dump`` file) and ``dram_protocol_error[3:0]``. See axi_dram.v for
the model and its plusargs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from npuforge.gen.build.elaborate import content_hash
from npuforge.gen.build.npu import emit_npu_verilog
from npuforge.gen.config.npu import NPUConfig

__all__ = ["DRAM_MODEL", "Port", "module_ports", "emit_npu_system"]

DRAM_MODEL = Path(__file__).resolve().with_name("axi_dram.v")

# The NPU's AXI4 members the DRAM model takes (lock/cache/prot are accepted and ignored: plain memory).
_DRAM_MEMBERS = ("awvalid", "awready", "awid", "awaddr", "awlen", "awsize", "awburst",
                 "wvalid", "wready", "wdata", "wstrb", "wlast", "bvalid", "bready", "bid", "bresp",
                 "arvalid", "arready", "arid", "araddr", "arlen", "arsize", "arburst",
                 "rvalid", "rready", "rid", "rdata", "rresp", "rlast")


@dataclass(frozen=True)
class Port:
    direction: str   # "input" | "output"
    width: int       # bits
    name: str


def module_ports(verilog: str, module: str) -> list[Port]:
    """The ports of ``module`` in Yosys-written Verilog (``input [W-1:0] name;`` declarations)."""
    start = re.search(rf"^module {re.escape(module)}\(", verilog, re.M)
    if start is None:
        raise ValueError(f"module {module!r} not found in the Verilog")
    end = verilog.index("\nendmodule", start.end())
    ports = []
    for mo in re.finditer(r"^\s*(input|output)\s+(?:wire\s+|reg\s+)?(?:\[(\d+):0\]\s*)?(\w+)\s*;",
                          verilog[start.end():end], re.M):
        ports.append(Port(mo.group(1), int(mo.group(2)) + 1 if mo.group(2) else 1, mo.group(3)))
    if not ports:
        raise ValueError(f"module {module!r} declares no ports")
    return ports


def _decl(width: int) -> str:
    return f"[{width - 1}:0] " if width > 1 else ""


def emit_npu_system(cfg: NPUConfig, *, mem_bytes: int, out_dir: Path | str | None = None) -> tuple[list[Path], str]:
    """Write the NPU + DRAM-model top; returns ``(verilog sources, top name)``.

    ``mem_bytes``: storage of the DRAM model, a power of two in [4 KiB, 1 GiB] (the decoded size is set at run
    time with ``+dram_bytes``, at most this).
    """
    if not isinstance(mem_bytes, int) or mem_bytes < 4096 or mem_bytes > 1 << 30 or mem_bytes & (mem_bytes - 1):
        raise ValueError(f"mem_bytes must be a power of two in [4096, 2**30], got {mem_bytes!r}")
    npu_path, npu_top = emit_npu_verilog(cfg, out_dir)
    ports = module_ports(npu_path.read_text(), npu_top)
    by_name = {p.name: p for p in ports}
    missing = [m for m in _DRAM_MEMBERS if f"m_axi__{m}" not in by_name]
    if missing or "clk" not in by_name or "rst" not in by_name:
        raise ValueError(f"NPU {npu_top} lacks ports {missing or ['clk/rst']}: cannot attach the DRAM model")
    data_bits = by_name["m_axi__wdata"].width
    id_bits = by_name["m_axi__arid"].width
    top = "npusys_" + content_hash(npu_top, str(mem_bytes), DRAM_MODEL.read_text())[:10]
    outer = [p for p in ports if not p.name.startswith("m_axi__") and p.name not in ("clk", "rst")]
    header = ["input wire clk", "input wire rst", "input wire dram_load", "input wire dram_dump",
              "output wire [3:0] dram_protocol_error"]
    header += [f"{p.direction} wire {_decl(p.width)}{p.name}" for p in outer]
    lines = [f"// NPU {npu_top} + AXI4 DRAM model (sim/hdl/axi_dram.v), written by sim/hdl/__init__.py.",
             "`default_nettype none", f"module {top} (", "    " + ",\n    ".join(header), ");"]
    lines += [f"    wire {_decl(p.width)}{p.name};" for p in ports if p.name.startswith("m_axi__")]
    conns = [f".{p.name}({p.name})" for p in ports]
    lines += [f"    {npu_top} npu (", "        " + ",\n        ".join(conns), "    );"]
    dram = [".clk(clk)", ".rst(rst)", ".load(dram_load)", ".dump(dram_dump)",
            ".protocol_error(dram_protocol_error)"] + [f".{m}(m_axi__{m})" for m in _DRAM_MEMBERS]
    lines += [f"    axi_dram #(.DATA_BITS({data_bits}), .ID_BITS({id_bits}), .MEM_BYTES({mem_bytes})) dram (",
              "        " + ",\n        ".join(dram), "    );", "endmodule", "`default_nettype wire", ""]
    out = Path(out_dir) if out_dir is not None else npu_path.parent
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{top}.v"
    text = "\n".join(lines)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return [npu_path, DRAM_MODEL, path], top
