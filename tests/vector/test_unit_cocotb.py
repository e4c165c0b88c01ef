"""cocotb runs of the opcode-selected VectorUnit vs golden at lanes 1, 4, 8 and 16 (Verilator) and
lanes 4 on Icarus: one build per configuration, all unit tests in it (sim.tb_vector_unit)."""

from __future__ import annotations

import json

import pytest

from gen.elaborate import emit_verilog
from sim.runner import BUILD, run_cocotb
from tests.conftest import require_simulator

UNIT_TESTS = ["test_every_opcode", "test_opcode_switch_back_to_back", "test_bad_opcode_drains",
              "test_operator_error_source"]
ELEMENTWISE_OPS = ("requant", "table", "residual", "gate", "rope")


def unit_config(lanes: int, max_row: int):
    from rtl.vector.unit import OPCODES, VectorUnit, available_operators
    ops = tuple(op for op in available_operators() if op in ELEMENTWISE_OPS)
    unit = VectorUnit(lanes=lanes, max_row=max_row, ops=ops)
    cfg = {"lanes": lanes, "max_row": max_row, "ops": list(ops),
           "opcodes": {mn: v for mn, v in OPCODES.items() if v in unit.opcode_map},
           "in_width": unit.in_width, "out_width": unit.out_width, "b_width": unit.b_width,
           # int16 requant saturation on some configurations, int8 (sign-extended) on the others
           "model_cfg": {"requant": {"out_width": 16, "out_bits": 16 if lanes in (4, 16) else 8}}}
    if "rope" in unit.operators:
        rope = unit.operators["rope"]
        cfg["model_cfg"]["rope"] = {"max_row": rope.max_row, "max_positions": rope.max_positions}
    return unit, cfg


@pytest.mark.parametrize("sim,lanes,max_row", [
    ("verilator", 1, 6), ("verilator", 4, 18), ("verilator", 8, 24), ("verilator", 16, 40), ("icarus", 4, 10)],
    ids=lambda v: str(v))
def test_unit_vs_golden(sim, lanes, max_row):
    require_simulator(sim)
    unit, cfg = unit_config(lanes, max_row)
    name = f"vec_unit_l{lanes}_r{max_row}"
    verilog = emit_verilog(unit, name=name, out_dir=BUILD / "vector")
    run_cocotb(verilog=[verilog], toplevel=name, test_module="sim.tb_vector_unit", sim=sim,
               env={"VEC_CFG": json.dumps(cfg)}, testcase=UNIT_TESTS, seed=4321)
