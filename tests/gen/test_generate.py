"""`npuforge gen`: same config -> identical files; manifest and FuseSoC core contents; TOML + flag overrides."""

from __future__ import annotations

import json

from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from npuforge.cli.main import main
from npuforge.gen.config.array import ArrayConfig
from npuforge.gen.build.generate import generate, verilog_ports


def _files(d):
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()}


def test_same_config_same_bytes(out_dir):
    cfg = ArrayConfig(rows=2, cols=3, dataflow="both")
    generate(cfg, out_dir / "one")
    generate(ArrayConfig.from_json(cfg.to_json()), out_dir / "two")  # an equal config, built independently
    one, two = _files(out_dir / "one"), _files(out_dir / "two")
    assert set(one) == {"npuforge_array.v", "npuforge_array.core", "manifest.json"}
    assert one == two
    # A different design point must give different Verilog (the generator really uses the config).
    generate(ArrayConfig(rows=3, cols=2, dataflow="both"), out_dir / "three")
    assert _files(out_dir / "three")["npuforge_array.v"] != one["npuforge_array.v"]


def test_manifest_and_core(capsys, out_dir):
    toml = out_dir / "point.toml"
    toml.write_text('[array]\nrows = 4\ncols = 2\ndataflow = "os"\nprecisions = ["int8", "int4"]\nname = "arr_a"\n')
    # Flags override the file: rows from the flag, everything else from the TOML.
    assert main(["gen", "--config", str(toml), "--rows", "2", "-o", str(out_dir / "g")]) == 0
    capsys.readouterr()
    man = json.loads((out_dir / "g" / "manifest.json").read_text())
    assert man["top"] == "arr_a"
    assert man["config"]["rows"] == 2 and man["config"]["cols"] == 2
    assert man["config"]["dataflow"] == "os" and man["config"]["precisions"] == ["int8", "int4"]
    # 2x2 PEs: 1 product per PE in int8, 4 in int4 (the 2x2 output block of the scalable MAC).
    assert man["peak_macs_per_cycle"] == {"int8": 4, "int4": 16}
    assert man["verilog"] == ["arr_a.v"] and man["core"] == "arr_a.core"
    vtext = (out_dir / "g" / "arr_a.v").read_text()
    assert "module arr_a(" in vtext
    ports = {p["name"]: p for p in man["ports"]}
    assert ports["clk"]["direction"] == "input" and ports["rst"]["direction"] == "input"
    # Stream edges of the array: rows activation bytes + last, cols weight bytes, the error flag.
    assert ports["a__payload"]["width"] == 2 * 8 + 1 and ports["a__payload"]["direction"] == "input"
    assert ports["w__payload"]["width"] == 2 * 8
    assert ports["c__valid"]["direction"] == "output" and ports["c__ready"]["direction"] == "input"
    assert ports["error"] == {"name": "error", "direction": "output", "width": 1, "shape": "1",
                              "signature_path": ["error"]}
    assert [p["name"] for p in man["ports"]] == [p["name"] for p in verilog_ports(vtext, "arr_a")]
    core = (out_dir / "g" / "arr_a.core").read_text()
    assert core.startswith("CAPI=2:\n")
    assert "name: npuforge:array:arr_a:" in core and "      - arr_a.v\n" in core and "toplevel: arr_a" in core


def test_verilog_port_parser():
    text = ("module top(a, clk, y);\n  input [7:0] a;\n  wire [7:0] a;\n  input clk;\n"
            "  output [31:0] y;\n  reg [31:0] y;\nendmodule\n")
    assert verilog_ports(text, "top") == [
        {"name": "a", "direction": "input", "width": 8},
        {"name": "clk", "direction": "input", "width": 1},
        {"name": "y", "direction": "output", "width": 32},
    ]


def test_gen_npu_toml_and_flags(capsys, out_dir):
    """`npuforge gen --unit npu`: the [npu] table of the TOML, overridden by flags, sizes the generated NPU."""
    from npuforge.gen.build.npu import npu_top_name
    from npuforge.gen.config.npu import NPUConfig

    toml = out_dir / "npu.toml"
    toml.write_text('[array]\nrows = 4\ncols = 4\nprecisions = ["int8"]\n'
                    '[npu]\nspad_bytes = 16384\nacc_bytes = 8192\naxi_data_bits = 64\nwindows = 2\n')
    argv = ["gen", "--unit", "npu", "--config", str(toml), "--axi-bits", "128", "--vector-ops", "act,residual",
            "-o", str(out_dir / "g")]
    assert main(argv) == 0
    assert "NPU 4x4 [int8], 128-bit AXI4" in capsys.readouterr().out
    man = json.loads((out_dir / "g" / "manifest.json").read_text())
    want = NPUConfig(array=ArrayConfig(rows=4, cols=4, precisions=("int8",)), spad_bytes=16384, acc_bytes=8192,
                     axi_data_bits=128, windows=2, vector_ops=("act", "residual"))
    assert man["config"] == json.loads(want.to_json()) and man["top"] == npu_top_name(want)
    assert man["executed_opcodes"] == sorted(["NOP", "HALT", "FENCE", "DMA_LOAD", "DMA_STORE", "MATMUL",
                                              "VEC_REQUANT", "VEC_ACT", "VEC_RESIDUAL"])
    ports = {p["name"]: p for p in man["ports"]}
    # The bus widths the flags asked for reach the Verilog ports.
    assert ports["m_axi__wdata"]["width"] == 128 and ports["m_axi__wstrb"]["width"] == 16
    assert ports["s_axil__wdata"]["width"] == 32 and ports["irq"]["direction"] == "output"
    vtext = (out_dir / "g" / man["verilog"][0]).read_text()
    assert f"module {man['top']}(" in vtext
    assert [p["name"] for p in man["ports"]] == [p["name"] for p in verilog_ports(vtext, man["top"])]
    core = (out_dir / "g" / man["core"]).read_text()
    assert f"toplevel: {man['top']}" in core and "vector_ops=act,residual" in core
    # 'none' leaves the vector unit out: a different design point, a different top.
    assert main(argv[:-2] + ["--vector-ops", "none", "-o", str(out_dir / "h")]) == 0
    capsys.readouterr()
    man2 = json.loads((out_dir / "h" / "manifest.json").read_text())
    assert man2["top"] != man["top"] and "VEC_ACT" not in man2["executed_opcodes"]


class _Inc(wiring.Component):
    """A 4-bit incrementer: the smallest component to elaborate."""

    def __init__(self):
        super().__init__({"x": In(4), "y": Out(4)})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.y.eq(self.x + 1)
        return m


def test_emit_verilog_cached_elaborates_once_per_key(tmp_path, monkeypatch):
    """The NPU Verilog cache: a second call with the same key and sources does not elaborate; a new key, new
    sources or a missing file does."""
    from npuforge.gen.build import elaborate

    calls = []

    def build():
        calls.append(1)
        return _Inc()

    def emit(key):
        return elaborate.emit_verilog_cached(build, name="inc", out_dir=tmp_path, key=key)

    path = emit("a")
    assert "module inc" in path.read_text() and len(calls) == 1
    assert emit("a") == path and len(calls) == 1
    emit("b")
    assert len(calls) == 2
    monkeypatch.setattr(elaborate, "sources_fingerprint", lambda: "other sources")
    emit("b")
    assert len(calls) == 3
    path.unlink()
    emit("b")
    assert len(calls) == 4 and path.exists()
