"""PPA flow smoke tests on small configs (real array and MAC), and the registered-boundary wrapper."""

from __future__ import annotations

import argparse
import json

import pytest
from amaranth import Module, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from npuforge.cli.main import add_config_arguments, add_npu_arguments, config_from_args, main, npu_config_from_args
from npuforge.gen.config.presets import PRESETS
from npuforge.gen.config.array import ArrayConfig
from npuforge.gen.ppa.synth import (ECP5_DEVICE, RegisteredBoundary, available_units, ecp5_bram_output_sinks,
                                    ecp5_dsp_blocks, over_device, pnr_seed, synthesize, unit_of_module)

CONTRACT = ("luts", "ffs", "dsps", "brams", "transistors", "fmax_mhz")


def test_units_offered():
    units = available_units()
    assert {"mac", "array", "vector", "npu"} <= set(units)


def test_npu_unit_refuses_an_array_it_cannot_serve(capsys, out_dir):
    """The NPU's accumulator SRAM holds int32: an array with another acc width is a config error (exit 2)."""
    code = main(["synth", "--unit", "npu", "--rows", "2", "--cols", "2", "--acc-width", "40", "--target", "ecp5",
                 "-o", str(out_dir)])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "acc_width" in err[0] and "32" in err[0]


def test_ecp5_array_2x2(capsys, out_dir):
    """`npuforge synth --json` on the real 2x2 int8-only array: the JSON contract, ECP5 cell counts."""
    code = main(["synth", "--rows", "2", "--cols", "2", "--precisions", "int8", "--target", "ecp5", "--json",
                 "-o", str(out_dir)])
    assert code == 0
    res = json.loads(capsys.readouterr().out)
    assert set(CONTRACT) <= set(res)
    assert res["fmax_mhz"] is None  # no --pnr
    cells = res["cells"]
    assert res["luts"] == cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0) > 0
    assert res["ffs"] == cells["TRELLIS_FF"]
    # A registered-operand pipeline with 32-bit accumulators: at least 4 PEs x 32 accumulator bits of flops.
    assert res["ffs"] >= 4 * 32
    assert res["dsps"] == cells.get("MULT18X18D", 0) and res["brams"] == cells.get("DP16KD", 0)
    assert res["transistors"] > 0 and res["fits"] is True
    assert json.loads((out_dir / "synth.json").read_text())["luts"] == res["luts"]


@pytest.mark.parametrize("precisions, pipeline", [(("int8", "w4a8", "int4", "w8a16", "w4a16"), 2), (("int8",), 4)])
def test_ecp5_mapping_layer_2x2(out_dir, precisions, pipeline):
    """A 2x2 array through the multiplier mapping layer: one MULT18X18D per PE in every mode set, each with its input
    and output registers inside the block (REG_INPUTA/B_CLK, REG_OUTPUT_CLK), none inferred by Yosys."""
    res = synthesize(ArrayConfig(rows=2, cols=2, precisions=precisions, mac_pipeline=pipeline), unit="array",
                     target="ecp5", cmos=False, out_dir=out_dir)
    assert res["dsps"] == 4
    assert res["mult18"] == {"blocks": 4, "input_registered": 4, "output_registered": 4}


def test_vector_unit_shares_multipliers(out_dir):
    """A 1-lane vector unit with the NPU's residual and gate: sharing their products (rtl.vector.mulpool) takes the
    MULT18X18D of the larger operator's multiplies only (Yosys' ECP5 DSP mapping, no LUT mapping)."""
    from npuforge.rtl.controller.vector import build_vector_unit

    shared = build_vector_unit(lanes=1, ops=("residual", "gate"))
    private = build_vector_unit(lanes=1, ops=("residual", "gate"), share_multipliers=False)
    n_shared = ecp5_dsp_blocks(shared, out_dir=out_dir / "shared")
    n_private = ecp5_dsp_blocks(private, out_dir=out_dir / "private")
    # Residual's two and gate's two products share two multipliers of every lane: 32x31 bits cost four blocks each.
    assert len(shared.multiplier_slots) == 2
    assert n_shared == 8 < n_private == 13


def test_softmax_row_buffer_outputs_drive_registers(out_dir):
    """Softmax's row buffer on ECP5 (issue #16): every DP16KD output bit, of both read ports, drives flip-flops only
    (the exp's E0 register), with no read-during-write bypass multiplexer and no E1 arithmetic behind the block RAM."""
    from npuforge.rtl.vector.softmax import Softmax

    sinks = ecp5_bram_output_sinks(Softmax(lanes=2, max_row=256, in_width=16), out_dir=out_dir)
    assert len(sinks) == 2, sinks    # one 512 x 36 block per read port
    for bram, types in sinks.items():
        assert types and all(t.lstrip("$").split("_")[0] in ("dff", "dffe", "sdff", "sdffe", "sdffce")
                             for t in types), (bram, types)


def test_npu_unit_table_and_device_limits():
    """The NPU resource table's unit names come from the module hierarchy; over-budget lines name the resource,
    the need and the device's count."""
    assert unit_of_module("npu_1.ctrl.matmul.array.pe_0_0.product_unit") == "array"
    assert unit_of_module("npu_1.ctrl.vec.unit.softmax") == "vector"
    assert unit_of_module("npu_1.spad") == "scratchpad" and unit_of_module("npu_1.acc") == "accumulator"
    assert unit_of_module("npu_1.ctrl") == "control" and unit_of_module("npu_1") == "control"
    lines = over_device({"luts": 10, "ffs": 10, "dsps": 460, "brams": 602}, ECP5_DEVICE)
    assert lines == ["MULT18X18D: need 460, LFE5U-85F has 156", "DP16KD: need 602, LFE5U-85F has 208"]


def _npu_from(argv):
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    add_npu_arguments(parser)
    args = parser.parse_args(argv)
    return npu_config_from_args(args, config_from_args(args))


def test_preset_is_the_base_and_flags_override_it():
    """--preset ecp5-85f sets every field it names; explicit array and NPU flags override those fields only."""
    p = PRESETS["ecp5-85f"]
    npu = _npu_from(["--preset", "ecp5-85f"])
    assert {k: getattr(npu, k) for k in p["npu"]} == {k: tuple(v) if isinstance(v, list) else v
                                                      for k, v in p["npu"].items()}
    assert {k: getattr(npu.array, k) for k in p["array"]} == p["array"]
    lanes = 8 if p["npu"]["vector_lanes"] != 8 else 4
    over = _npu_from(["--preset", "ecp5-85f", "--rows", "4", "--vector-lanes", str(lanes), "--spad-kib", "128",
                      "--vector-ops", "softmax"])
    assert (over.array.rows, over.vector_lanes, over.spad_bytes, over.vector_ops) == (4, lanes, 128 * 1024,
                                                                                      ("softmax",))
    assert over.array.cols == p["array"]["cols"] and over.acc_bytes == p["npu"]["acc_bytes"]


def test_unknown_preset_is_one_line(capsys):
    assert main(["synth", "--unit", "npu", "--preset", "ecp5-12f"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ecp5-12f" in err[0] and "ecp5-85f" in err[0]


def test_hierarchical_pass_with_boundary_row(out_dir):
    """The NPU's one-pass flow on a small unit: a hierarchical wrapper synthesis gives the table by unit with the
    wrapper's own registers as the row "boundary", and a flattened netlist that nextpnr places."""
    from amaranth.back import rtlil

    from npuforge.gen.build.units import build_array
    from npuforge.gen.ppa import synth
    from npuforge.rtl.array import has_row_pairs
    from npuforge.rtl.dsp import TechTarget

    cfg = ArrayConfig(rows=2, cols=2, precisions=("int8",))
    (out_dir / "w.il").write_text(rtlil.convert(RegisteredBoundary(build_array(cfg)), name="w",
                                                platform=TechTarget("ecp5")))
    cells, mapper = synth._synth_ecp5("w.il", "w", out_dir, json_out=None, tag="ecp5", dsp=True, flatten=False,
                                      abc9=False, flat_json_out="w.json")
    table = synth._unit_table(out_dir / "ecp5_stat.json", boundary="w")
    assert mapper == "abc" and set(table) == {"boundary", "control"}
    # Every port bit the array uses is registered once in the wrapper (Yosys drops the register of w_pairs, an
    # input that only arrays with w4a16 row pairs read); the array's own flops stay in its row.
    inner = build_array(cfg)
    unused = set() if has_row_pairs(cfg.rows, cfg.precisions) else {("w_pairs",)}
    ports = sum(len(Value.cast(v)) for path, _, v in inner.signature.flatten(inner) if path not in unused)
    assert table["boundary"]["ffs"] == ports and table["boundary"]["dsps"] == 0
    assert sum(r["ffs"] for r in table.values()) == cells["TRELLIS_FF"]
    assert table["control"]["dsps"] == cells["MULT18X18D"] == 4
    assert synth._mult18_summary(out_dir / "w.json")["blocks"] == 4
    flat = json.loads((out_dir / "w.json").read_text())["modules"]
    assert not any(c["type"].startswith("w.") for c in flat["w"]["cells"].values())  # no submodule left


def test_generic_and_scalable_overhead(out_dir):
    """Technology-neutral estimate; the scalable MAC must cost more than the plain int8 one."""
    plain = synthesize(ArrayConfig(rows=2, cols=2, precisions=("int8",)), unit="mac", target="generic",
                       out_dir=out_dir / "plain")
    scal = synthesize(ArrayConfig(rows=2, cols=2), unit="mac", target="generic", out_dir=out_dir / "scalable")
    for r in (plain, scal):
        assert r["luts"] is None and r["fmax_mhz"] is None and r["dsps"] == 0
        assert r["transistors"] > 0 and r["ffs"] > 0
    assert scal["transistors"] > plain["transistors"]


def test_nextpnr_fmax_mac(out_dir):
    """nextpnr-ecp5 out of context on one tiny unit (an int8-only MAC): a real fmax and its critical path."""
    res = synthesize(ArrayConfig(rows=1, cols=1, precisions=("int8",)), unit="mac", target="ecp5", pnr=True,
                     cmos=False, out_dir=out_dir)
    assert 10 < res["fmax_mhz"] < 1000
    cp = res["critical_path"]
    assert cp["delay_ns"] > 0 and cp["logic_ns"] + cp["routing_ns"] == pytest.approx(cp["delay_ns"], abs=0.01)
    # fmax is the reciprocal of the worst register-to-register path (within nextpnr's rounding).
    assert abs(1000 / cp["delay_ns"] - res["fmax_mhz"]) / res["fmax_mhz"] < 0.05
    report = json.loads((out_dir / "pnr_report.json").read_text())
    assert report["utilization"]["TRELLIS_FF"]["used"] >= res["ffs"]  # the boundary registers add flops
    # Another seed on the same netlist (no Yosys run): same resources, this seed's own place-and-route figures.
    again = pnr_seed(out_dir, 2, out_dir=out_dir / "seed2", router="router2")
    assert (again["pnr"]["seed"], again["pnr"]["router"], res["pnr"]["seed"], res["pnr"]["router"]) == \
        (2, "router2", 1, "router1")
    assert again["pnr"]["finished"] and res["pnr"]["finished"]
    assert {k: again[k] for k in CONTRACT[:4]} == {k: res[k] for k in CONTRACT[:4]}
    assert 10 < again["fmax_mhz"] < 1000
    assert json.loads((out_dir / "seed2" / "synth.json").read_text())["fmax_mhz"] == again["fmax_mhz"]
    assert json.loads((out_dir / "seed2" / "pnr_report.json").read_text())["fmax"]


def test_netlist_from_needs_a_finished_run(capsys, tmp_path):
    code = main(["synth", "--netlist-from", str(tmp_path), "--seed", "2", "-o", str(tmp_path / "s2")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--netlist-from" in err[0] and str(tmp_path) in err[0]


class _Adder(wiring.Component):
    """Combinational y = x + 1 (no registers of its own)."""

    def __init__(self):
        super().__init__({"x": In(8), "y": Out(8)})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.y.eq(self.x + 1)
        return m


def test_registered_boundary_adds_one_register_per_side():
    dut = RegisteredBoundary(_Adder())
    assert dict(dut.signature.members) == {"x": In(8), "y": Out(8)}
    seen = []

    async def bench(ctx):
        for i in range(6):
            ctx.set(dut.x, 10 * i)
            await ctx.tick()
            seen.append(ctx.get(dut.y))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    # Input register + output register: y after tick i is x(i-1) + 1.
    assert seen[1:] == [10 * (i - 1) + 1 for i in range(1, 6)]
