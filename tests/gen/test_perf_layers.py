"""gen.perf.layers: a real model's prefill priced from its layer programs (the tiny BERT checkpoint, w8a16)."""

from __future__ import annotations

import numpy as np

from npuforge.gen.lower.bert import bert_npu_config, bert_programs
from npuforge.gen.perf.layers import program_bytes_moved, programs_perf
from npuforge.gen.perf.program import program_cycles
from npuforge.spec.isa import DmaLoad, DmaStore
from tests.gen.lower.test_bert import tiny, tiny_bert  # noqa: F401  (the model fixtures)


def test_programs_perf_sums_and_bounds(tiny):  # noqa: F811
    cfg = bert_npu_config(4, 4, axi_data_bits=64)
    prog, _ = bert_programs(cfg, tiny, e=np.zeros((12, 32), np.int64))
    res = programs_perf(prog, mode="w8a16", tokens=12, clock_mhz=100.0)
    assert list(res["programs"]) == ["embed", "layer0", "layer1"]
    layer = res["programs"]["layer0"]
    assert layer["cycles"] == program_cycles(prog.programs["layer0"], cfg, harness="fast").cycles
    loads = [i for i in prog.programs["layer0"] if isinstance(i, (DmaLoad, DmaStore))]
    assert layer["bytes_moved"] == sum(i.rows * i.row_bytes for i in loads) + 16 * len(prog.programs["layer0"])
    assert layer["bytes_moved"] == program_bytes_moved(prog.programs["layer0"])
    assert res["programs"]["embed"]["macs"] == 0 and res["programs"]["embed"]["bound"] == "memory"
    assert res["total"]["cycles"] == sum(r["cycles"] for r in res["programs"].values())
    assert np.isclose(res["tokens_per_s"], 12 / (res["total"]["cycles"] / 100e6))
    for r in list(res["programs"].values()) + [res["total"]]:
        assert r["bound"] == ("compute" if r["utilization"] >= r["bus_efficiency"] else "memory")
        assert 0 <= r["utilization"] <= 1 and 0 < r["bus_efficiency"] <= 1
