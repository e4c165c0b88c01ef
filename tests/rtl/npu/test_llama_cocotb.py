"""A Llama decoder (the tiny checkpoint of the model tests: hidden 64, 4 query heads over 2 K/V heads of 16, MLP
96, 2 layers; scheme w8a16 on int8 per-channel weights, and w4a16-pt on the checkpoint's blocks) lowered by gen.lower.llama and run on the NPU's Verilog:
a prefill, then decode steps against the KV cache in the NPU's DRAM, phase after phase on the memory the previous
one left. Every program's DRAM image equals the ISA simulator's, its output equals the golden operators' bytes,
and every phase's logits equal the golden model's own integer path (golden.models.llama.int_forward). Decode equals
a longer prefill on the RTL itself: the first decode step's layer outputs, logits and cache rows are byte for byte
those of an RTL prefill of one more token. ``npuforge run layer`` runs a Llama layer's prefill and decode on the RTL.
Same Verilator build as test_npu_qkt_cocotb.py (CFG16, fast harness)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from npuforge.gen.lower.llama import LlamaPlan, host_embedding, llama_programs
from npuforge.golden.models import llama
from npuforge.sim.harness.model_run import run_programs
from tests.conftest import require_simulator
from tests.gen.lower.test_llama import tiny_int8, tiny_kv16, tiny_pt  # noqa: F401  (model fixtures)
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


@pytest.mark.cocotb
def test_tiny_llama_w4a16_kv16_pt_on_the_rtl(tiny_kv16):  # noqa: F811
    """The best Llama scheme, w4a16-kv16-pt: the -pt down projection and an int16 KV cache (int16 K from RoPE, int16
    V from the requant; Q.K^T with b_trans and P.V as MATMUL.b16 plane pairs into the 48-bit accumulator)."""
    require_simulator("verilator")
    _prefill_and_decode(tiny_kv16["blocks-kv16-pt"], [5, 90, 117, 30, 200], [44, 71])


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
            print(f"{m.scheme.name} {name}: RTL {r['cycles']} cycles (stall {0.15 * (s == 1)}), model "
                  f"{r['predicted_cycles']} ({100 * (r['predicted_cycles'] - r['cycles']) / r['cycles']:+.2f} %)")
        np.testing.assert_array_equal(plan.logits(memory, phase), llama.int_forward(m, feed, caches, last_only=True))
    # decode == a longer prefill, on the RTL: prefill the prompt and the first fed token (8 tokens) and compare the
    # last row with step 1 (the decode at position 7 after a prefill of 7), byte for byte between the two RTL runs
    longer = llama_programs(CFG16, m, len(prompt) + 1)
    x = {"x.prefill": host_embedding(m, prompt + fed[:1])}
    mem_b, results = run_programs(longer.prog, backend="rtl", harness="fast", latency=3, seed=60,
                                  memory=longer.prog.write(longer.prog.image, "x.prefill", x["x.prefill"]), inputs=x)
    assert all(r["bit_exact"] for r in results.values()), results
    for i in range(len(m.layers)):
        np.testing.assert_array_equal(plan.prog.read(memory, f"step1.l{i}.out"),
                                      longer.prog.read(mem_b, f"prefill.l{i}.out")[-1:], err_msg=f"layer {i}")
        for kind in ("k_cache", "v_cache"):
            np.testing.assert_array_equal(plan.prog.read(memory, f"l{i}.{kind}")[:len(prompt) + 1],
                                          longer.prog.read(mem_b, f"l{i}.{kind}"), err_msg=f"layer {i} {kind}")
    np.testing.assert_array_equal(plan.prog.read(memory, "step1.logits"), longer.prog.read(mem_b, "prefill.logits"))


@pytest.mark.cocotb
def test_run_layer_cli_on_the_rtl(tmp_path, capsys):
    """``npuforge run layer`` on the tiny GGUF (its own Q4_1 / Q8_0 blocks) on the same build (the flags give CFG16):
    a prefill of 9 tokens at layer 1 and two decode steps after a context of 50 tokens, the JSON contract, bit-exact
    against the ISA simulator, the golden operators and the golden model's layer; the cycle model's prediction beside
    the RTL's cycles."""
    from npuforge.cli.main import main
    from tests.cli.test_run_layer import LAYER_KEYS, TEXT
    from tests.golden import tiny_models as tm

    require_simulator("verilator")
    tm.write_tiny_gguf(tmp_path / "tiny.gguf")
    flags = ["--model", str(tmp_path / "tiny.gguf"), "--layer", "1", "--text", TEXT, "--rows", "4", "--cols", "4",
             "--precisions", "int8,w8a16,w4a16", "--block-scaled", "--kv16", "--spad-kib", "16", "--spad-banks", "2",
             "--acc-kib", "4", "--windows", "2", "--vector-ops", "all", "--harness", "fast", "--cache-dir",
             str(tmp_path), "--json"]
    for extra in (["--tokens", "9"], ["--phase", "decode", "--tokens", "2", "--context", "50"]):
        assert main(["run", "layer", *flags, *extra]) == 0
        out = json.loads(capsys.readouterr().out)
        assert list(out) == LAYER_KEYS
        assert out["bit_exact"] and out["mismatches"] == 0 and out["golden_mismatches"] == 0
        assert out["backend"] == "rtl" and out["harness"] == "fast" and out["cycles"] > 0
        assert 0 < out["utilization"] < 1 and 0 < out["bus_efficiency"] < 1 and out["predicted_cycles"] > 0
    assert (out["phase"], out["tokens"], out["context"]) == ("decode", 2, 50)
