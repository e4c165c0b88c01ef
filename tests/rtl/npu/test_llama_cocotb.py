"""A Llama decoder (the tiny checkpoint of the model tests: hidden 64, 4 query heads over 2 K/V heads of 16, MLP
96, 2 layers; scheme w8a16 on int8 per-channel weights, and w4a16-pt on the checkpoint's blocks) lowered by gen.lower.llama and run on the NPU's Verilog:
a prefill, then decode steps against the KV cache in the NPU's DRAM, phase after phase on the memory the previous
one left. Every program's DRAM image equals the ISA simulator's, its output equals the golden operators' bytes,
and every phase's logits equal the golden model's own integer path (golden.models.llama.int_forward). Same
Verilator build as test_npu_qkt_cocotb.py (CFG16, fast harness)."""

from __future__ import annotations


import numpy as np
import pytest

from npuforge.gen.lower.llama import LlamaPlan, host_embedding, llama_programs
from npuforge.golden.models import llama
from npuforge.sim.harness.model_run import run_programs
from tests.conftest import require_simulator
from tests.gen.lower.test_llama import tiny_int8, tiny_pt  # noqa: F401  (model fixtures)
from tests.golden.test_models import tiny_gguf, tiny_llama  # noqa: F401
from tests.rtl.npu.test_npu_qkt_cocotb import CFG16


@pytest.mark.cocotb
def test_tiny_llama_prefill_and_decode_on_the_rtl(tiny_int8):  # noqa: F811
    require_simulator("verilator")
    _prefill_and_decode(tiny_int8, [5, 90, 117, 30, 200, 44, 71], [9, 260])


@pytest.mark.cocotb
def test_tiny_llama_w4a16_pt_on_the_rtl(tiny_pt):  # noqa: F811
    """The w4a16-pt scheme (the checkpoint's Q4_1 / Q8_0 blocks; the SwiGLU product scaled per token into int16:
    vec.gate flags 5, vec.rmsnorm flags 7, VEC_REQUANT.wide with row_shift before the down projection)."""
    require_simulator("verilator")
    _prefill_and_decode(tiny_pt["blocks-pt"], [5, 90, 117, 30, 200], [44, 71])


def _prefill_and_decode(m, prompt, fed):
    plan = llama_programs(CFG16, m, len(prompt), steps=len(fed))
    caches = llama.new_caches(m)
    memory, inputs = plan.prog.image, {}
    for s, (phase, feed) in enumerate(zip(LlamaPlan.phases(len(fed)), [prompt] + [[t] for t in fed])):
        inputs[f"x.{phase}"] = host_embedding(m, feed)
        memory = plan.prog.write(memory, f"x.{phase}", inputs[f"x.{phase}"])
        memory, results = run_programs(plan.prog, backend="rtl", harness="fast", latency=3, stall=0.15 * (s == 1),
                                       seed=50 + s, names=plan.programs_of(phase), memory=memory, inputs=inputs)
        assert list(results) == plan.programs_of(phase)
        for name, r in results.items():
            assert r["bit_exact"] and r["mismatches"] == 0, (name, r)
        np.testing.assert_array_equal(plan.logits(memory, phase), llama.int_forward(m, feed, caches, last_only=True))
