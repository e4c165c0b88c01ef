"""cocotb runs of the opcode-selected VectorUnit vs golden at lanes 1, 4, 8 and 16 (Verilator) and
lanes 4 on Icarus, plus one unit with every available operator (row operators too) at lanes 4:
one build per configuration, all unit tests in it (sim.tb.vector_unit)."""

from __future__ import annotations

import json

import pytest

from npuforge.gen.build.elaborate import emit_verilog
from npuforge.sim.harness.runner import BUILD, run_cocotb
from tests.conftest import require_simulator

UNIT_TESTS = ["test_every_opcode", "test_opcode_switch_back_to_back", "test_bad_opcode_drains",
              "test_operator_error_source", "test_param_addr_never_wraps"]
ELEMENTWISE_OPS = ("requant", "table", "residual", "gate", "rope")


def unit_config(lanes: int, max_row: int, *, row_ops: bool = False):
    from npuforge.rtl.vector.unit import OPCODES, VectorUnit, available_operators
    # The 16-bit interpolated tables (interp) have no model in sim.tb.vector_unit: they are checked against golden in
    # tests/rtl/vector/test_interp_table_amaranth.py and on the NPU (tests/rtl/npu/test_npu_vector_cocotb.py).
    ops = tuple(op for op in available_operators() if (row_ops or op in ELEMENTWISE_OPS) and op != "interp")
    unit = VectorUnit(lanes=lanes, max_row=max_row, ops=ops)
    cfg = {"lanes": lanes, "max_row": max_row, "ops": list(ops),
           "opcodes": {mn: v for mn, v in OPCODES.items() if v in unit.opcode_map},
           "in_width": unit.in_width, "out_width": unit.out_width, "b_width": unit.b_width,
           "scalar_inputs": ["opcode", "row_len", "param_sel", "param_addr", "param_data"]
                            + [port for _, _, port in unit.exposed],
           "param_addr_widths": {name: len(op.param_addr) for name, op in unit.operators.items()
                                 if "param_addr" in op.signature.members},
           "unit_param_addr_width": len(unit.param_addr),
           # int16 requant saturation on some configurations, int8 (sign-extended) on the others
           "model_cfg": {"requant": {"out_width": 16, "out_bits": 16 if lanes in (4, 16) else 8}}}
    if "rope" in unit.operators:
        rope = unit.operators["rope"]
        cfg["model_cfg"]["rope"] = {"max_row": rope.max_row, "max_positions": rope.max_positions}
    return unit, cfg


def test_full_unit_with_row_ops():
    """Every available operator in one unit (the row operators too: softmax, LayerNorm, RMSNorm),
    lanes 4 on Verilator: every opcode, back-to-back opcode switches, errors."""
    require_simulator("verilator")
    unit, cfg = unit_config(4, 24, row_ops=True)
    name = "vec_unit_full_l4_r24"
    verilog = emit_verilog(unit, name=name, out_dir=BUILD / "vector")
    run_cocotb(verilog=[verilog], toplevel=name, test_module="npuforge.sim.tb.vector_unit", sim="verilator",
               env={"VEC_CFG": json.dumps(cfg)}, testcase=UNIT_TESTS, seed=99)


@pytest.mark.parametrize("sim,lanes,max_row", [
    ("verilator", 1, 6), ("verilator", 4, 18), ("verilator", 8, 24), ("verilator", 16, 40), ("icarus", 4, 10)],
    ids=lambda v: str(v))
def test_unit_vs_golden(sim, lanes, max_row):
    require_simulator(sim)
    unit, cfg = unit_config(lanes, max_row)
    name = f"vec_unit_l{lanes}_r{max_row}"
    verilog = emit_verilog(unit, name=name, out_dir=BUILD / "vector")
    run_cocotb(verilog=[verilog], toplevel=name, test_module="npuforge.sim.tb.vector_unit", sim=sim,
               env={"VEC_CFG": json.dumps(cfg)}, testcase=UNIT_TESTS, seed=4321)


def test_unit_rejects_bad_configuration():
    from npuforge.rtl.vector.unit import VectorUnit
    with pytest.raises(ValueError, match="unknown vector operator 'fft'"):
        VectorUnit(lanes=4, max_row=16, ops=("requant", "fft"))
    with pytest.raises(ValueError, match="twice"):
        VectorUnit(lanes=4, max_row=16, ops=("requant", "requant"))
    with pytest.raises(ValueError, match="options given for 'rope'"):
        VectorUnit(lanes=4, max_row=16, ops=("requant",), options={"rope": {"max_positions": 2}})
    with pytest.raises(ValueError, match="exceeds the unit's max_row"):
        VectorUnit(lanes=4, max_row=16, ops=("rope",), options={"rope": {"max_row": 32}})
    with pytest.raises(ValueError, match="lanes"):
        VectorUnit(lanes=6, max_row=16, ops=("requant",))
