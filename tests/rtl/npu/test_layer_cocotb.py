"""Layer programs (gen.isa.builder) on the NPU's emitted Verilog: a BERT-style feed-forward block
(x @ W1 -> GELU -> @ W2 (int8 or int4 weights) -> + x -> LayerNorm) as one program, per-head GEMMs into column
views of one buffer with a causal softmax over a view, a softmax tiled over many rows, and a prefill followed by
two decode programs appending to a cache in DRAM (each program on the memory the previous one left). Attention
heads in the 16-bit schemes' formats (Q.K^T with K as stored, int16/int32 scores, causal + padding softmax with
Q0.15 probabilities, w8a16 P.V) run on the w8a16 build of test_npu_qkt_cocotb.py (fast harness). Every buffer the
program writes is compared byte for byte with the golden operators applied in program order (tier 1) and the
whole final DRAM image with the ISA simulator's (tier 2); one run has random AXI stalls.

The NPU configuration is the one of test_npu_vector_cocotb.py (same Verilator build)."""

from __future__ import annotations

import numpy as np
import pytest

from npuforge.gen.config.array import ArrayConfig
from npuforge.gen.config.npu import NPUConfig
from npuforge.gen.isa.builder import LayerBuilder
from npuforge.gen.perf.program import program_cycles
from npuforge.golden.softmax import softmax_params
from npuforge.sim.harness.npu_run import layer_job, run_jobs, run_layer_programs
from npuforge.spec.isa import VEC_EXECUTABLE
from tests.conftest import require_simulator
from tests.gen.isa.test_builder import (assert_isasim_equals_reference, attention_head, ffn_block, heads_program,
                                       kv_append_programs)
from tests.rtl.npu.test_npu_qkt_cocotb import CFG16

CFG = NPUConfig(array=ArrayConfig(rows=4, cols=4), spad_bytes=16384, spad_banks=2, acc_bytes=4096,
                axi_data_bits=64, windows=2, vector_ops=VEC_EXECUTABLE)


def assert_rtl_run_exact(res: dict, prog) -> None:
    """A layer job's RTL run finished cleanly, its whole DRAM image equals the ISA simulator's, and every buffer
    the program writes equals the golden operators' bytes."""
    assert not res["timeout"] and res["error"] == 0, (res["name"], res)
    assert res["isasim_mismatch_bytes"] == 0 and res["golden_mismatch_bytes"] == 0, (res["name"], res)
    memory = np.load(res["memory_path"])
    want = prog.reference()
    for name in prog.buffers():
        assert np.array_equal(prog.read(memory, name), want[name]), (res["name"], name)


def _tiled_softmax(seed: int):
    rng = np.random.default_rng(seed)
    t, n = 200, 24                       # 168 rows per scratchpad tile on this NPU: two tiles
    lb = LayerBuilder(CFG)
    s = lb.constant("s", rng.integers(-128, 128, (t, n)))
    p = lb.buffer("p", t, n)
    lb.vector("softmax", s, p, softmax_params(0.06, input_bits=8), flags=1, imm=1)
    return lb.build()


@pytest.mark.cocotb
def test_layer_programs_bit_exact_on_the_rtl():
    require_simulator("verilator")
    progs = {"ffn_w8": (ffn_block(CFG, 6, 16, 40, seed=21).build(), "out"),
             "ffn_w4": (ffn_block(CFG, 13, 24, 36, seed=22, w2_bits=4).build(), "out"),
             "heads": (heads_program(CFG, t=7, hidden=16, heads=2, d=12, seed=23), "p"),
             "softmax_tiles": (_tiled_softmax(24), "p")}
    for prog, _ in progs.values():
        assert_isasim_equals_reference(prog)        # tier 2 == tier 1 before the RTL is asked
    jobs = [layer_job(prog, name, out) for name, (prog, out) in progs.items()]
    results = run_jobs(CFG, jobs, latency=4, stall=0.0, seed=31, keep_memory=True)
    stalled = run_jobs(CFG, [layer_job(progs["ffn_w4"][0], "ffn_w4_stalls", "out")], latency=6, stall=0.25,
                       seed=32, keep_memory=True)
    runs = [(res, prog) for res, (prog, _) in zip(results, progs.values())] + [(stalled[0], progs["ffn_w4"][0])]
    for res, prog in runs:
        assert_rtl_run_exact(res, prog)
    # The program cycle model against the RTL without stalls: deterministic counts.
    for (name, (prog, _)), res in zip(progs.items(), results):
        model = program_cycles(prog.program_bytes, CFG, latency=4, harness="axi").cycles
        got = res["counters"]["BUSY_CYCLES"]
        assert abs(model - got) <= 0.03 * got, (name, model, got)


@pytest.mark.cocotb
def test_prefill_then_decode_programs_on_the_rtl():
    require_simulator("verilator")
    prog, _ = kv_append_programs(CFG, t=6, hidden=16, d=8, steps=2, seed=33)
    runs = run_layer_programs(prog, latency=3, stall=0.1, seed=34)
    assert [name for name, _, _ in runs] == ["prefill", "decode0", "decode1"]
    for name, res, memory in runs:
        assert not res["timeout"] and res["error"] == 0 and res["isasim_mismatch_bytes"] == 0, (name, res)
        want = prog.reference(upto=name)
        for buf in prog.buffers():
            assert np.array_equal(prog.read(memory, buf), want[buf]), (name, buf)


@pytest.mark.cocotb
def test_attention_heads_on_the_rtl():
    require_simulator("verilator")
    progs = {"head_q8_s16": attention_head(CFG16, t=9, d=8, q_bits=8, score_bits=16, seed=41),
             "head_q16_s32_pad": attention_head(CFG16, t=13, d=16, valid=10, q_bits=16, score_bits=32, seed=42)}
    for prog in progs.values():
        assert_isasim_equals_reference(prog)
    jobs = [layer_job(prog, name, "ctx") for name, prog in progs.items()]
    results = run_jobs(CFG16, jobs, harness="fast", latency=3, stall=0.15, seed=43, keep_memory=True)
    for res, prog in zip(results, progs.values()):
        assert_rtl_run_exact(res, prog)
