"""cocotb runs of the row operators (LayerNorm, RMSNorm, softmax) vs golden, bit for bit (sim.tb.vector_rows).

One Verilator build per configuration, shared by every cocotb test of the testbench; lanes 1, 4, 8 and 16
with a small max_row (512) and builds at the real maximum (4096); Icarus runs a subset on small builds.
"""

from __future__ import annotations

import json

import pytest

from npuforge.gen.build.elaborate import emit_verilog
from npuforge.sim.harness.runner import BUILD, run_cocotb
from tests.conftest import require_simulator

COMMON_TESTS = ["test_random_rows_all_lengths", "test_edge_rows", "test_random_stalls",
                "test_back_to_back_throughput", "test_bad_parameters_flag_and_drain"]
SOFTMAX_TESTS = COMMON_TESTS + ["test_causal_mask", "test_q15_and_padding"]
ICARUS_TESTS = ["test_random_rows_all_lengths", "test_bad_parameters_flag_and_drain"]

CASES = [
    # (simulator, cfg): lanes 1, 4, 8 and 16 over the three operators; builds at the real maximum row.
    ("verilator", {"op": "layernorm", "lanes": 1, "max_row": 512}),
    ("verilator", {"op": "layernorm", "lanes": 8, "max_row": 512}),
    ("verilator", {"op": "layernorm", "lanes": 16, "max_row": 4096}),
    ("verilator", {"op": "rmsnorm", "lanes": 4, "max_row": 512}),
    ("verilator", {"op": "rmsnorm", "lanes": 16, "max_row": 512}),
    ("verilator", {"op": "softmax", "lanes": 4, "max_row": 512, "in_width": 32}),   # the NPU's scores: int32
    ("verilator", {"op": "softmax", "lanes": 16, "max_row": 4096}),
    ("icarus", {"op": "rmsnorm", "lanes": 4, "max_row": 64}),
    ("icarus", {"op": "softmax", "lanes": 2, "max_row": 40}),
    ("icarus", {"op": "layernorm", "lanes": 2, "max_row": 48}),
]


def build_op(cfg: dict):
    from npuforge.rtl.vector.norm import LayerNorm, RMSNorm
    if cfg["op"] == "softmax":
        from npuforge.rtl.vector.softmax import Softmax
        return Softmax(lanes=cfg["lanes"], max_row=cfg["max_row"], in_width=cfg.get("in_width", 16))
    cls = {"layernorm": LayerNorm, "rmsnorm": RMSNorm}[cfg["op"]]
    return cls(lanes=cfg["lanes"], max_row=cfg["max_row"], in_width=cfg.get("in_width", 8),
               out_width=cfg.get("out_width", 8))


def case_id(case):
    sim, cfg = case
    return f"{sim}-" + "-".join(f"{k}{v}" for k, v in cfg.items())


@pytest.mark.cocotb
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_row_operator_vs_golden(case):
    sim, cfg = case
    require_simulator(sim)
    name = "rows_" + "_".join(f"{k}{v}" for k, v in cfg.items())
    verilog = emit_verilog(build_op(cfg), name=name, out_dir=BUILD / "rtl" / "vector_rows")
    run_cocotb(verilog=[verilog], toplevel=name, test_module="npuforge.sim.tb.vector_rows", sim=sim,
               env={"ROWS_CFG": json.dumps({**cfg, "seed": 11})},
               testcase=ICARUS_TESTS if sim == "icarus" else SOFTMAX_TESTS if cfg["op"] == "softmax" else COMMON_TESTS)


@pytest.mark.parametrize("kwargs,match", [
    (dict(op="layernorm", lanes=4, max_row=8193), "max_row must be <= 8192"),
    (dict(op="rmsnorm", lanes=3, max_row=64), "lanes must be a power of two"),
    (dict(op="layernorm", lanes=4, max_row=64, in_width=12), "in_width must be 8 or 16"),
    (dict(op="rmsnorm", lanes=4, max_row=64, out_width=32), "out_width must be 8 or 16"),
    (dict(op="softmax", lanes=4, max_row=9000), "max_row must be <= 8192"),
    (dict(op="softmax", lanes=4, max_row=64, in_width=4), "in_width must be 8, 16 or 32"),
])
def test_row_operators_reject_bad_generation_parameters(kwargs, match):
    from npuforge.rtl.vector.norm import LayerNorm, RMSNorm
    from npuforge.rtl.vector.softmax import Softmax
    op = kwargs.pop("op")
    cls = {"layernorm": LayerNorm, "rmsnorm": RMSNorm, "softmax": Softmax}[op]
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


def test_param_packing_rejects_bad_values():
    import numpy as np
    from npuforge.golden.norms import layernorm_params
    from npuforge.golden.softmax import softmax_params
    from npuforge.sim.tb.vector_params_rows import norm_param_words, norm_ports, softmax_ports
    p = layernorm_params(0.05, np.ones(100), np.zeros(100), 0.04)
    with pytest.raises(ValueError, match=r"row_len\) must be an integer in \[1, 64\], got 100"):
        norm_ports(p, max_row=64)
    with pytest.raises(ValueError, match="in_width 16"):
        norm_ports(p, max_row=128, in_width=16)
    with pytest.raises(ValueError, match="LayerNormParams or RMSNormParams"):
        norm_param_words(softmax_params(0.01))
    words = norm_param_words(p)
    assert len(words) == 100 and words[0] == p.gamma_q[0] & 0xFFFF
    with pytest.raises(ValueError, match=r"row_len must be an integer in \[1, 512\], got 0"):
        softmax_ports(softmax_params(0.01), row_len=0, max_row=512)
    with pytest.raises(ValueError, match="in_width 8"):
        softmax_ports(softmax_params(0.01), row_len=4, max_row=512, in_width=8)
