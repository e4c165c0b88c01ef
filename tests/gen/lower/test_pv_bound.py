"""P.V past w8a16's worst-case K (511): the Q0.15 softmax's proven row-sum bound (golden.softmax.q15_row_sum_bound)
lets LayerBuilder accept a P.V GEMM whose A is a softmax output, at any context; other int16 A with a run-time B
are still refused with one line. A Llama decode step at context 1024 lowers and equals a prefill of 1025 tokens at
the last row (ISA simulator, tiny model with a longer RoPE table)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from npuforge.gen.isa.builder import LayerBuilder
from npuforge.gen.isa.ops import SoftmaxBlock
from npuforge.gen.lower.execute import isasim_programs
from npuforge.gen.lower.llama import llama_npu_config
from npuforge.golden.models import llama
from npuforge.golden.models.schemes import SCHEMES
from npuforge.golden.softmax import q15_row_sum_bound, softmax_params, softmax_q15
from npuforge.sim.harness.layer_run import llama_case, run_case
from npuforge.spec.vector_ops import ELEM_BITS, SOFTMAX_CAUSAL, SOFTMAX_Q15, SOFTMAX_SCORE_LSB
from tests.golden.test_models import tiny_gguf, tiny_llama  # noqa: F401  (fixtures)

CFG = llama_npu_config(4, 4, spad_bytes=16384, spad_banks=2, acc_bytes=4096, axi_data_bits=64, windows=2)
FLAGS = (ELEM_BITS.index(32) << SOFTMAX_SCORE_LSB) | SOFTMAX_Q15


def test_q15_row_sums_stay_within_the_proven_bound():
    """Equal scores (every output rounds the same way) exceed 2^15 by up to L / 2 in principle and here by
    rounding; random, peaked and causal rows never pass 2^15 + floor(L / 2)."""
    params = softmax_params(2.0 ** -16, input_bits=32)
    rng = np.random.default_rng(7)
    worst = 0
    for length in (1, 2, 3, 5, 7, 64, 511, 512, 1025, 4099, 8192):
        rows = [np.zeros((1, length), np.int64), rng.integers(-(1 << 20), 1 << 20, (6, length)),
                rng.integers(-(1 << 12), 1 << 12, (6, length)), rng.integers(-(1 << 31), 1 << 31, (2, length))]
        for scores in rows:
            for causal in (False, True):
                q = softmax_q15(scores, params, causal=causal).astype(np.int64)
                assert q.min() >= 0
                sums = q.sum(axis=-1)
                assert sums.max() <= q15_row_sum_bound(length), (length, sums.max())
                worst = max(worst, int(sums.max()) - (1 << 15))
    # three equal scores: each q = round(2^15 / 3) = 10923, the row sums to 2^15 + 1 (= the bound at L = 3)
    assert softmax_q15(np.zeros((1, 3), np.int64), params).astype(np.int64).sum() == (1 << 15) + 1
    assert worst >= 1
    with pytest.raises(ValueError, match="length"):
        q15_row_sum_bound(8193)


def _pv(k: int, a_from_softmax: bool) -> LayerBuilder:
    rng = np.random.default_rng(k)
    lb = LayerBuilder(CFG)
    scores = lb.constant("scores", rng.integers(-(1 << 18), 1 << 18, (8, k)), bits=32)
    v = lb.buffer("v", k, 16, bits=8)
    lb.gemm(lb.constant("x", rng.integers(-128, 128, (k, 16)), bits=8), lb.constant("eye", np.eye(16, dtype=np.int64)),
            v, np.full(16, 1 << 30), np.full(16, -1))           # V written at run time: no constant bound
    probs = lb.buffer("probs", 8, k, bits=16)
    if a_from_softmax:
        lb.vector("softmax", scores, probs, SoftmaxBlock(softmax_params(2.0 ** -16, input_bits=32)), flags=FLAGS)
    else:
        w = lb.constant("w", rng.integers(-128, 128, (k, k)) // 64, bits=8)
        lb.gemm(lb.constant("s16", rng.integers(-(1 << 15), 1 << 15, (8, k)), bits=16), w, probs,
                np.full(k, 1 << 30), np.full(k, -20))
    lb.gemm(probs, v, lb.buffer("ctx", 8, 16, bits=16), np.full(16, 1 << 30), np.full(16, -4), name="pv")
    return lb


def test_pv_past_511_runs_when_a_is_a_softmax_output():
    lb = _pv(700, a_from_softmax=True)
    pv = lb._ops[-1]
    assert pv.acc_bound == q15_row_sum_bound(700) * 128
    prog = lb.build()
    memory, _ = isasim_programs(prog)
    ref = prog.reference()
    for name in prog.buffers():
        np.testing.assert_array_equal(prog.read(memory, name), ref[name], err_msg=name)


def test_pv_past_511_is_refused_for_another_a():
    with pytest.raises(ValueError, match=r"K 700 is above the worst-case int32 bound 511 .* not a Q0.15 softmax "
                                         r"output"):
        _pv(700, a_from_softmax=False)


def test_a_causal_softmax_view_still_proves_the_bound():
    """Causal softmax over whole rows, P.V reading a block of rows: the bound holds (rows of one softmax)."""
    lb = LayerBuilder(CFG)
    k = 600
    scores = lb.constant("scores", np.zeros((4, k), np.int64), bits=32)
    probs = lb.buffer("probs", 4, k, bits=16)
    lb.vector("softmax", scores, probs, SoftmaxBlock(softmax_params(2.0 ** -16, input_bits=32)),
              flags=FLAGS | SOFTMAX_CAUSAL, imm=k - 4)
    v = lb.constant("v", np.full((k, 8), -128, np.int64), bits=8)       # all-minimal V: the extreme sum
    lb.gemm(probs.view(rows=slice(1, 3)), v, lb.buffer("ctx", 2, 8, bits=32), np.full(8, 1 << 30), np.full(8, 0))
    prog = lb.build()
    memory, _ = isasim_programs(prog)
    np.testing.assert_array_equal(prog.read(memory, "ctx"), prog.reference()["ctx"])


def test_decode_at_context_1024_and_decode_equals_prefill_past_511(tiny_llama):  # noqa: F811
    """The tiny Llama with a 1,100-position RoPE table: one decode step after 1,024 cached positions (P.V with
    K = 1025) equals the golden model's layer; a decode step after 520 equals the last row of a prefill of all 521
    tokens (P.V with K = 521 in both; a 64 KiB scratchpad: the prefill's RoPE table is one parameter block)."""
    ck, peaks = tiny_llama
    m = llama.quantize_llama(dataclasses.replace(ck, gguf=None, context_length=1100), SCHEMES["w8a16"], peaks)
    cfg = CFG.with_overrides(spad_bytes=65536)
    ids = np.random.default_rng(3).integers(3, 260, 1025)
    long = run_case(llama_case(cfg, m, ids, 1, "decode", 1, 1024), backend="isa")
    assert long["bit_exact"] and long["golden_mismatches"] == 0
    dec_case = llama_case(cfg, m, ids, 1, "decode", 1, 520)
    dec = run_case(dec_case, backend="isa")
    pre_case = llama_case(cfg, m, ids, 1, "prefill", 521)
    pre = run_case(pre_case, backend="isa")
    assert dec["bit_exact"] and pre["bit_exact"] and dec["golden_mismatches"] == pre["golden_mismatches"] == 0
    np.testing.assert_array_equal(dec_case.prog.read(dec["memory"], "step1.l1.out"),
                                  pre_case.prog.read(pre["memory"], "prefill.l1.out")[-1:])


def test_a_context_the_scratchpad_cannot_hold_is_refused(tiny_llama):  # noqa: F811
    """Decode at context 1000 on a 4 KiB scratchpad: a softmax row of 1001 int32 scores and Q0.15 outputs (two slots)
    does not fit; refused with one line naming the limit, before anything runs."""
    ck, peaks = tiny_llama
    m = llama.quantize_llama(dataclasses.replace(ck, gguf=None, context_length=1100), SCHEMES["w8a16"], peaks)
    ids = np.random.default_rng(4).integers(3, 260, 1001)
    with pytest.raises(ValueError, match=r"vec.softmax rows of 1001 elements .* do not fit spad_bytes=4096") as e:
        llama_case(CFG.with_overrides(spad_bytes=4096), m, ids, 0, "decode", 1, 1000)
    assert "\n" not in str(e.value)
