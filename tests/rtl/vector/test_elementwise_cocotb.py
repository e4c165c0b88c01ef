"""cocotb runs of the standalone streaming vector operators vs golden (sim.tb.vector_elementwise).

One build per (operator, configuration), shared by all cocotb tests of the module. These run on Icarus
(fast to compile); the opcode-selected unit runs every operator on Verilator at lanes 1, 4, 8 and 16
(test_unit_cocotb.py).
"""

from __future__ import annotations

import json

import pytest

from npuforge.gen.build.elaborate import emit_verilog
from npuforge.sim.harness.runner import BUILD, run_cocotb
from tests.conftest import require_simulator

ALL_TESTS = ["test_rows_all_kinds", "test_random_stalls", "test_full_throughput", "test_bad_row_len_drains"]
PARAM_TESTS = ["test_param_write_past_end"]


def build_op(op: str, cfg: dict):
    from npuforge.rtl.vector.requant import Requant
    from npuforge.rtl.vector.table import ActivationTable
    kw = {"lanes": cfg["lanes"], "max_row": cfg["max_row"]}
    if op == "requant":
        return Requant(out_width=cfg.get("out_width", 8), **kw)
    if op == "table":
        return ActivationTable(tables=cfg.get("tables", 2), **kw)
    if op == "residual":
        from npuforge.rtl.vector.elementwise import ResidualAdd
        return ResidualAdd(out_width=cfg.get("out_width", 8), **kw)
    if op == "gate":
        from npuforge.rtl.vector.elementwise import GateMul
        return GateMul(out_width=cfg.get("out_width", 8), **kw)
    if op == "rope":
        from npuforge.rtl.vector.rope import Rope
        return Rope(max_positions=cfg["max_positions"], out_width=cfg.get("out_width", 8), **kw)
    raise ValueError(op)


CASES = [
    # (simulator, op, cfg). Standalone operators run on Icarus (seconds to compile); the
    # opcode-selected unit runs every operator on Verilator at lanes 1, 4, 8, 16 (test_unit_cocotb.py).
    ("icarus", "requant", {"lanes": 4, "max_row": 24, "out_width": 16, "out_bits": 16}),
    ("icarus", "requant", {"lanes": 1, "max_row": 8, "out_width": 8}),
    ("icarus", "table", {"lanes": 2, "max_row": 10, "tables": 3}),
    ("icarus", "residual", {"lanes": 8, "max_row": 20, "out_width": 16, "out_bits": 16}),
    ("icarus", "residual", {"lanes": 4, "max_row": 12, "out_width": 8}),
    ("icarus", "gate", {"lanes": 1, "max_row": 7, "out_width": 8}),
    ("icarus", "gate", {"lanes": 2, "max_row": 9, "out_width": 16, "out_bits": 16}),
    ("icarus", "rope", {"lanes": 2, "max_row": 16, "max_positions": 2}),
    ("icarus", "rope", {"lanes": 4, "max_row": 32, "max_positions": 3, "out_width": 16, "out_bits": 16}),
]


def case_id(case):
    sim, op, cfg = case
    return f"{sim}-{op}-" + "-".join(f"{k}{v}" for k, v in cfg.items())


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_operator_vs_golden(case):
    sim, op, cfg = case
    require_simulator(sim)
    name = f"vec_{op}_" + "_".join(f"{k}{v}" for k, v in cfg.items())
    verilog = emit_verilog(build_op(op, cfg), name=name, out_dir=BUILD / "vector")
    tests = ALL_TESTS + (PARAM_TESTS if op in ("requant", "table", "rope") else [])
    if op == "rope":
        tests += ["test_rope_bad_geometry", "test_rope_framing_abort"]
    run_cocotb(verilog=[verilog], toplevel=name, test_module="npuforge.sim.tb.vector_elementwise", sim=sim,
               env={"VEC_OP": op, "VEC_CFG": json.dumps(cfg)}, testcase=tests, seed=1234)


def test_python_helpers_reject_bad_values():
    """Parameter packing and generation parameters: clear ValueErrors naming the bad value."""
    import numpy as np
    from npuforge.golden.elementwise import GateParams, ResidualParams
    from npuforge.rtl.vector.elementwise import GateMul, ResidualAdd
    from npuforge.rtl.vector.rope import Rope
    from npuforge.rtl.vector.table import ActivationTable
    from npuforge.sim.tb.vector_params import gate_ports, residual_ports, rope_param_words, rope_ports, table_words

    with pytest.raises(ValueError, match="exactly 256 entries, got 257"):
        table_words(np.zeros(257, dtype=np.int8))
    with pytest.raises(ValueError, match=r"table\[3\]"):
        table_words([0, 0, 0, 128] + [0] * 252)
    with pytest.raises(ValueError, match="shift"):
        residual_ports(ResidualParams(a_multiplier=1, b_multiplier=1, shift=63))
    with pytest.raises(ValueError, match="b_multiplier"):
        residual_ports(ResidualParams(a_multiplier=1, b_multiplier=1 << 31, shift=10))
    with pytest.raises(ValueError, match="shift"):
        gate_ports(GateParams(multiplier=1 << 30, shift=-31))
    with pytest.raises(ValueError, match="out_bits"):
        gate_ports(GateParams(multiplier=1 << 30, shift=0, out_bits=12))
    with pytest.raises(ValueError, match="position"):
        rope_ports(position=8, frac_bits=14, max_positions=8)
    with pytest.raises(ValueError, match="frac_bits"):
        rope_ports(position=0, frac_bits=15, max_positions=8)
    with pytest.raises(ValueError, match="max_half"):
        rope_param_words(np.zeros((1, 9), dtype=np.int16), np.zeros((1, 9), dtype=np.int16), max_half=8)
    with pytest.raises(ValueError, match="multiple of 2 \\* lanes"):
        Rope(lanes=4, max_row=20)
    with pytest.raises(ValueError, match="max_row"):
        ResidualAdd(lanes=8, max_row=4)
    with pytest.raises(ValueError, match="in_width"):
        GateMul(lanes=4, in_width=12)
    with pytest.raises(ValueError, match="tables"):
        ActivationTable(lanes=4, tables=0)
