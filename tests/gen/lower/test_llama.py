"""Llama layers lowered to NPU programs (gen.lower.llama): prefill and KV-cache decode on the ISA simulator equal the
golden integer model (golden.models.llama.int_forward) bit for bit, and the programs' buffers equal the golden
operators'. Tiny random-weight model (tests/golden/tiny_models.py), run as a float checkpoint (int8 per channel)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from npuforge.gen.lower.execute import isasim_programs
from npuforge.gen.lower.llama import (LlamaPlan, block_modes, check_model, host_embedding, llama_npu_config,
                                      llama_programs)
from npuforge.golden.models import llama
from npuforge.golden.models.schemes import SCHEMES
from tests.golden.test_models import tiny_gguf, tiny_llama  # noqa: F401  (fixtures)

CFG = llama_npu_config(4, 4, spad_bytes=16384, spad_banks=2, acc_bytes=4096, axi_data_bits=64, windows=2)
CFG_BLOCKS = llama_npu_config(4, 4, block_scaled=True, spad_bytes=16384, spad_banks=2, acc_bytes=4096,
                              axi_data_bits=64, windows=2)
CFG_KV16 = llama_npu_config(4, 4, kv16=True, spad_bytes=16384, spad_banks=2, acc_bytes=4096, axi_data_bits=64,
                            windows=2)


@pytest.fixture(scope="module")
def tiny_int8(tiny_llama):  # noqa: F811
    """The tiny Llama as a float checkpoint (its GGUF blocks dropped): int8 per-channel weights under w8a16."""
    ck, peaks = tiny_llama
    return llama.quantize_llama(dataclasses.replace(ck, gguf=None), SCHEMES["w8a16"], peaks)


def _run_phase(plan: LlamaPlan, memory, phase: str, feed, inputs: dict):
    inputs[f"x.{phase}"] = host_embedding(plan.m, feed)
    memory = plan.prog.write(memory, f"x.{phase}", inputs[f"x.{phase}"])
    memory, _ = isasim_programs(plan.prog, memory, plan.programs_of(phase))
    return memory


@pytest.fixture(scope="module")
def tiny_blocks(tiny_llama):  # noqa: F811
    """The tiny Llama with the GGUF's own blocks (Q4_1 linears, Q8_0 embedding / LM head) under w4a16."""
    ck, peaks = tiny_llama
    return llama.quantize_llama(ck, SCHEMES["w4a16"], peaks)


@pytest.fixture(scope="module")
def tiny_pt(tiny_llama):  # noqa: F811
    """The -pt schemes (the SwiGLU product scaled per token into int16): w8a16-pt on int8 per-channel weights,
    w4a16-pt on the checkpoint's own blocks."""
    ck, peaks = tiny_llama
    return {"int8-pt": llama.quantize_llama(dataclasses.replace(ck, gguf=None), SCHEMES["w8a16-pt"], peaks),
            "blocks-pt": llama.quantize_llama(ck, SCHEMES["w4a16-pt"], peaks)}


@pytest.fixture(scope="module")
def tiny_kv16(tiny_llama):  # noqa: F811
    """The int16 KV cache (MATMUL.b16 attention): w4a16-kv16-pt on the checkpoint's own blocks (the best Llama
    scheme) and w8a16-kv16 on int8 per-channel weights."""
    ck, peaks = tiny_llama
    return {"blocks-kv16-pt": llama.quantize_llama(ck, SCHEMES["w4a16-kv16-pt"], peaks),
            "int8-kv16": llama.quantize_llama(dataclasses.replace(ck, gguf=None), SCHEMES["w8a16-kv16"], peaks)}


@pytest.mark.parametrize("weights", ["int8", "blocks", "int8-pt", "blocks-pt", "blocks-kv16-pt", "int8-kv16"])
def test_prefill_and_decode_equal_the_golden_model(tiny_int8, tiny_blocks, tiny_pt, tiny_kv16, weights):
    """5 prompt tokens, then 3 decode steps (2 for the -pt schemes) against the KV cache in DRAM: every phase's logits
    equal int_forward's with the same cache, and every buffer the programs wrote equals the golden operators' bytes.
    Weights: int8 per channel, or the checkpoint's own Q4_1 / Q8_0 blocks on the block-scaled MATMUL; -pt: the down
    projection's input is the exact SwiGLU product scaled per token (vec.gate flags 5, vec.rmsnorm flags 7,
    VEC_REQUANT.row_shift); kv16: int16 K / V caches, Q.K^T and P.V as MATMUL.b16 plane pairs."""
    m = {"int8": tiny_int8, "blocks": tiny_blocks, **tiny_pt, **tiny_kv16}[weights]
    cfg = CFG_KV16 if "kv16" in weights else CFG if weights.startswith("int8") else CFG_BLOCKS
    prompt, fed = [5, 90, 117, 30, 200], [44, 71, 9][:2 if weights.endswith("-pt") else 3]
    steps = len(fed)
    plan = llama_programs(cfg, m, len(prompt), steps=steps)
    assert list(plan.prog.programs) == [f"{ph}.{p}" for ph in LlamaPlan.phases(steps) for p in ("l0", "l1", "head")]
    rows = [i for ops in plan.prog.programs.values() for i in ops if getattr(i, "row_shift", 0)]
    assert bool(rows) == m.scheme.swiglu_token
    planes = {getattr(i, "b16", 0) for ops in plan.prog.programs.values() for i in ops}
    assert planes == ({0, 1, 2} if m.scheme.kv_bits == 16 else {0})
    caches = llama.new_caches(m)
    memory, inputs = plan.prog.image, {}
    for phase, feed in zip(LlamaPlan.phases(steps), [prompt] + [[t] for t in fed]):
        memory = _run_phase(plan, memory, phase, feed, inputs)
        want = llama.int_forward(m, feed, caches, last_only=True)
        np.testing.assert_array_equal(plan.logits(memory, phase), want)
    ref = plan.prog.reference(inputs=inputs)
    for name, want in ref.items():
        np.testing.assert_array_equal(plan.prog.read(memory, name), want, err_msg=name)
    # decode == a longer prefill: the cache rows the steps appended equal a prefill of all 8 tokens
    full = llama_programs(cfg, m, len(prompt + fed))
    mem_full = _run_phase(full, full.prog.image, "prefill", prompt + fed, {})
    for i in range(len(m.layers)):
        for kind in ("k_cache", "v_cache"):
            np.testing.assert_array_equal(plan.prog.read(memory, f"l{i}.{kind}"),
                                          full.prog.read(mem_full, f"l{i}.{kind}"))


def test_gqa_heads_read_their_kv_head(tiny_int8):
    """The tiny model has 4 query heads over 2 K/V heads: heads 0-1 read K/V head 0's columns, heads 2-3 head 1's."""
    plan = llama_programs(CFG, tiny_int8, 3, layers=range(1))
    d = tiny_int8.ck.cfg.head_dim
    qk = [op for op in plan.prog.segments["prefill.l0"] if getattr(op, "b_trans", False)]
    assert [op.b.c0 // d for op in qk] == [0, 0, 1, 1]


def test_decode_loads_each_kv_head_once_for_its_query_heads(tiny_int8):
    """A decode step's Q.K^T and P.V take a KV head's query heads together (GQA): 2 GEMMs each (not 4), A = the
    group's 2 q / probability rows, B = that KV head's columns of the cache over all positions so far."""
    plan = llama_programs(CFG, tiny_int8, 3, steps=1, layers=range(1))
    d = tiny_int8.ck.cfg.head_dim
    step = [op for op in plan.prog.segments["step1.l0"] if hasattr(op, "b_trans")]
    qk = [op for op in step if op.b_trans]
    pv = [op for op in step if op.a.root.endswith("probs")]
    assert [(op.a.rows, op.a.r0, op.b.c0 // d, op.b.rows) for op in qk] == [(2, 0, 0, 4), (2, 2, 1, 4)]
    assert [(op.a.rows, op.a.r0, op.b.c0 // d, op.b.rows) for op in pv] == [(2, 0, 0, 4), (2, 2, 1, 4)]


def test_refuses_what_the_npu_lacks(tiny_llama, tiny_int8, tiny_blocks):  # noqa: F811
    ck, peaks = tiny_llama
    assert block_modes(tiny_blocks) == ("w8a16", "w4a16") and block_modes(tiny_int8) == ()
    with pytest.raises(ValueError, match="missing w4a16"):
        check_model(tiny_blocks, CFG)
    no_blocks = CFG.with_overrides(array=CFG.array.with_overrides(precisions=("int8", "w8a16", "w4a16")))
    with pytest.raises(ValueError, match="Q4_1, Q8_0 blocks.*block-scaled MATMUL"):
        check_model(tiny_blocks, no_blocks)
    kv16 = llama.quantize_llama(dataclasses.replace(ck, gguf=None), SCHEMES["w8a16-kv16"], peaks)
    with pytest.raises(ValueError, match="int16 KV cache: the NPU must be built with kv16"):
        check_model(kv16, CFG_BLOCKS)
    a8 = llama.quantize_llama(dataclasses.replace(ck, gguf=None), SCHEMES["w8a8"], peaks)
    with pytest.raises(ValueError, match="scheme must be one the NPU runs"):
        check_model(a8)
    no_rope = CFG.with_overrides(vector_ops=("softmax", "rmsnorm", "act", "residual", "gate"))
    with pytest.raises(ValueError, match="missing rope"):
        check_model(tiny_int8, no_rope)
    with pytest.raises(ValueError, match="context"):
        llama_programs(CFG, tiny_int8, 60, steps=10)


def test_long_prefill_splits_rope_by_positions(tiny_int8, monkeypatch):
    """A prefill longer than ROPE_POSITIONS rotates q and k in chunks of positions, each vec.rope with its own table
    rows (so a SmolLM2 prefill of 512+ tokens keeps every parameter block one DMA row): with 2 positions per chunk,
    5 tokens take 3 chunks per layer and still equal int_forward and the unchunked program's K cache."""
    from npuforge.gen.lower import llama as lower
    from npuforge.spec.isa import VecOp

    prompt = [5, 90, 117, 30, 200]
    whole = llama_programs(CFG, tiny_int8, len(prompt))
    monkeypatch.setattr(lower, "ROPE_POSITIONS", 2)
    plan = llama_programs(CFG, tiny_int8, len(prompt))
    ropes = [i for i in plan.prog.programs["prefill.l0"] if isinstance(i, VecOp) and i.op == "rope"]
    assert len(ropes) == 2 * 3
    caches = llama.new_caches(tiny_int8)
    got = _run_phase(plan, plan.prog.image, "prefill", prompt, {})
    np.testing.assert_array_equal(plan.logits(got, "prefill"),
                                  llama.int_forward(tiny_int8, prompt, caches, last_only=True))
    ref = _run_phase(whole, whole.prog.image, "prefill", prompt, {})
    for i in range(len(tiny_int8.layers)):
        np.testing.assert_array_equal(plan.prog.read(got, f"l{i}.k_cache"), whole.prog.read(ref, f"l{i}.k_cache"))
