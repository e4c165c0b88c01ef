"""A BERT encoder (the tiny checkpoint of the model tests: hidden 32, 4 heads of 8, MLP 64, 2 layers; scheme
w8a16) lowered by gen.lower.bert and run on the NPU's Verilog, program after program (embedding LayerNorm, layer
0, layer 1) on the memory the previous one left: every buffer byte for byte equal to the golden layer program, the
whole DRAM image equal to the ISA simulator's, and the last layer's output equal to the golden model's own integer
path (golden.models.bert). One sentence runs with random AXI stalls. The w8a16 build of test_npu_qkt_cocotb.py
(same Verilator build, fast harness)."""

from __future__ import annotations

import numpy as np
import pytest

from npuforge.gen.lower.bert import bert_programs
from npuforge.golden.models import bert
from npuforge.sim.harness.npu_run import run_layer_programs
from tests.conftest import require_simulator
from tests.gen.lower.test_bert import as_bytes, golden_layers, tiny  # noqa: F401  (tiny: the model fixture)
from tests.rtl.npu.test_npu_qkt_cocotb import CFG16


@pytest.mark.cocotb
@pytest.mark.parametrize("sentence, stall", [("the cat sat on a mat", 0.0), ("a dog ran fast . the cat sat", 0.15)])
def test_tiny_bert_on_the_rtl(tiny, sentence, stall):  # noqa: F811
    require_simulator("verilator")
    ids, _ = bert.tokenize(tiny.ck, [sentence])
    prog, out = bert_programs(CFG16, tiny, e=bert.int_embed(tiny, ids)[0])
    runs = run_layer_programs(prog, harness="fast", latency=3, stall=stall, seed=len(sentence))
    assert [name for name, _, _ in runs] == ["embed", "layer0", "layer1"]
    for name, res, memory in runs:
        assert not res["timeout"] and res["error"] == 0 and res["isasim_mismatch_bytes"] == 0, (name, res)
        want = prog.reference(upto=name)
        for buf in prog.buffers():
            assert np.array_equal(prog.read(memory, buf), want[buf]), (name, buf)
    assert np.array_equal(prog.read(runs[-1][2], out), as_bytes(golden_layers(tiny, ids)[-1]))
