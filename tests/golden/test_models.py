"""golden.models on tiny checkpoints the tests write (GGUF via gguf.GGUFWriter, safetensors BERT): loaders, the
Q/K un-permutation, native block decoding, tokenizers, integer whole-model paths (decode after prefill == longer
prefill bit for bit; padded batch == sentences alone bit for bit), and the wide integer operators."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from npuforge.golden.layers import bert_layer_float
from npuforge.golden.models import bert, gguf_reader as gr, llama
from npuforge.golden.models.intops import (eps_table, interp_lookup, interp_table, norm_wide, requant_wide,
                                           silu_float, token_shift)
from npuforge.golden.models.qlinear import weight_from_blocks
from npuforge.golden.models.schemes import SCHEMES
from npuforge.golden.norms import layernorm, layernorm_params
from npuforge.golden.requant import quantize_multipliers, requantize
from npuforge.golden.softmax import softmax_params, softmax_q15

from tests.golden import tiny_models as tm


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    weights = tm.write_tiny_gguf(path)
    return path, weights


@pytest.fixture(scope="module")
def tiny_llama(tiny_gguf):
    path, _ = tiny_gguf
    ck = llama.load_llama(path)
    rng = np.random.default_rng(1)
    peaks = llama.calibrate_llama(ck, [rng.integers(3, 260, 24) for _ in range(2)])
    return ck, peaks


def test_gguf_config_and_float_weights(tiny_gguf):
    path, weights = tiny_gguf
    model = gr.read_gguf(path)
    # the file stores eps as float32
    assert model.config == replace(tm.LLAMA, rms_norm_eps=float(np.float32(tm.LLAMA.rms_norm_eps)))
    assert model.context_length == tm.CONTEXT
    for hf in ("self_attn.q_proj.weight", "self_attn.k_proj.weight", "mlp.down_proj.weight"):
        name = gr.layer_tensor_names(model, 1)[hf]
        got = gr.float_tensor(model, name)
        want = weights[f"layers.1.{hf}"]
        # Q4_1 rounding is at most half a block step; a wrong (or missing) un-permutation of Q/K rows is not.
        step = (np.ptp(want.reshape(want.shape[0], -1, 32), axis=2) / 15).repeat(32, axis=1)
        assert got.shape == want.shape
        assert np.all(np.abs(got - want) <= step / 2 + 1e-3)


def test_permutation_round_trip():
    w = np.arange(8 * 16 * 3).reshape(8 * 16, 3)
    assert np.array_equal(gr.unpermute_qk(gr.permute_qk(w, 8), 8), w)
    # llama.cpp pairs (2i, 2i+1) of a head hold HF rows (i, i + d/2)
    p = gr.permute_qk(w, 8)
    assert np.array_equal(p[0], w[0]) and np.array_equal(p[1], w[8]) and np.array_equal(p[2], w[1])


def test_native_blocks_decode_like_gguf(tiny_gguf):
    path, _ = tiny_gguf
    model = gr.read_gguf(path)
    for name in ("blk.0.attn_q.weight", "blk.0.ffn_up.weight", "token_embd.weight"):
        nb = gr.native_blocks(model, name)
        assert nb.kind == ("Q8_0" if name.startswith("token") else "Q4_1")
        assert np.array_equal(nb.dequantize(), gr.float_tensor(model, name))
        iw = weight_from_blocks(nb)
        # integer multipliers: 16-bit, relative error bounded by what the module docstring states
        assert iw.max_rel_err < 2 ** -10
        np.testing.assert_allclose(iw.dequantize(), nb.dequantize(), rtol=0, atol=float(np.abs(nb.d).max()) * 2 ** -9)


def test_q4_0_blocks(tmp_path):
    path = tmp_path / "q40.gguf"
    tm.write_tiny_gguf(path, layer_type="Q4_0")
    model = gr.read_gguf(path)
    nb = gr.native_blocks(model, "blk.1.attn_k.weight")
    assert nb.kind == "Q4_0" and nb.codes.min() >= -8 and nb.codes.max() <= 7 and not nb.m.any()
    assert np.array_equal(nb.dequantize(), gr.float_tensor(model, "blk.1.attn_k.weight"))


def test_gguf_tokenizer(tiny_gguf):
    from npuforge.golden.models.tokenize import gguf_tokenizer

    tok = gguf_tokenizer(gr.read_gguf(tiny_gguf[0]).metadata)
    vocab = tm.tiny_vocab()
    ids = tok.encode("the cat<|im_end|>12").ids
    assert [vocab[i] for i in ids] == ["the", "Ġcat", "<|im_end|>", "1", "2"]
    assert tok.decode(ids, skip_special_tokens=False) == "the cat<|im_end|>12"


@pytest.mark.parametrize("make", [
    lambda p: p.write_bytes(b"GGUF" + bytes(40)),
    lambda p: tm.write_tiny_gguf(p, arch="gpt2"),
    lambda p: tm.write_tiny_gguf(p, layer_type="Q5_0"),
], ids=["corrupt", "architecture", "tensor-type"])
def test_gguf_bad_files(tmp_path, make):
    path = tmp_path / "bad.gguf"
    make(path)
    with pytest.raises(ValueError, match="GGUF|gguf"):
        gr.read_gguf(path)


def test_llama_float_twin_uses_unpermuted_rows(tiny_llama, tiny_gguf):
    ck, _ = tiny_llama
    _, weights = tiny_gguf
    # The twin's q_proj is the original HF row order (within Q4_1 rounding), so its attention is the HF one.
    q = ck.layers[0]["self_attn.q_proj.weight"]
    assert np.corrcoef(q.ravel(), weights["layers.0.self_attn.q_proj.weight"].ravel())[0, 1] > 0.99


@pytest.mark.parametrize("scheme", ["w4a16-kv16", "w4a16-kv16-pt", "w4a16-pt", "w8a16-pt", "w8a8", "w8a8-pt",
                                    "w8a8-static"])
def test_llama_decode_after_prefill_is_bit_exact(tiny_llama, scheme):
    ck, peaks = tiny_llama
    m = llama.quantize_llama(ck, SCHEMES[scheme], peaks)
    ids = [5, 90, 117, 30, 200, 44, 71, 9, 260]
    full = llama.int_forward(m, ids)
    caches = llama.new_caches(m)
    parts = [llama.int_forward(m, ids[:5], caches)] + [llama.int_forward(m, [t], caches) for t in ids[5:]]
    assert np.array_equal(np.concatenate(parts), full)
    assert full.dtype == np.int32


@pytest.mark.parametrize("pt, base, kv16", [("w4a16-pt", "w4a16", "w4a16-kv16-pt"), ("w8a16-pt", "w8a16", None)])
def test_pt_schemes_are_their_base_with_the_token_swiglu(pt, base, kv16):
    """w4a16-pt / w8a16-pt: the a16 scheme with an int8 KV cache and the per-token SwiGLU product, nothing else."""
    from dataclasses import replace

    s = SCHEMES[pt]
    assert s.swiglu_token and s.kv_bits == 8
    assert replace(s, name=base, summary=SCHEMES[base].summary, swiglu_token=False) == SCHEMES[base]
    if kv16:
        assert replace(s, name=kv16, summary=SCHEMES[kv16].summary, kv_bits=16) == SCHEMES[kv16]


def test_llama_integer_tracks_float(tiny_llama):
    ck, peaks = tiny_llama
    m = llama.quantize_llama(ck, SCHEMES["w4a16-kv16"], peaks)
    ids = np.random.default_rng(7).integers(3, 260, 20)
    got = llama.int_forward(m, ids).astype(np.float64) * llama.LOGIT_SCALE
    want = llama.float_forward(ck, ids)
    cos = (got * want).sum(-1) / np.linalg.norm(got, axis=-1) / np.linalg.norm(want, axis=-1)
    assert cos.min() > 0.99


def test_llama_context_limit(tiny_llama):
    ck, peaks = tiny_llama
    m = llama.quantize_llama(ck, SCHEMES["w4a16"], peaks)
    with pytest.raises(ValueError, match="context"):
        llama.int_forward(m, np.full(tm.CONTEXT + 1, 7))


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    directory = tmp_path_factory.mktemp("bert")
    tm.write_tiny_bert(directory)
    ck = bert.load_bert(directory)
    peaks = bert.calibrate_bert(ck, ["the cat sat on the mat .", "a dog ran fast", "the dog sat"])
    return ck, peaks


def test_bert_float_layer_matches_golden_layer(tiny_bert):
    ck, _ = tiny_bert
    ids, mask = bert.tokenize(ck, ["the cat sat on a mat"])
    seen = {}
    bert.float_forward(ck, ids, mask, observe=lambda i, n, a: seen.setdefault((i, n), a))
    want = bert_layer_float(seen[(0, "x")], ck.layers[0], ck.cfg)
    np.testing.assert_allclose(seen[(1, "x")], want, atol=2e-5)


@pytest.mark.parametrize("scheme", ["w8a16-kv16", "w8a8", "w4a8"])
def test_bert_padded_batch_equals_single(tiny_bert, scheme):
    ck, peaks = tiny_bert
    m = bert.quantize_bert(ck, SCHEMES[scheme], peaks)
    sentences = ["the cat sat on the mat .", "a dog", "the dog ran fast on a mat"]
    ids, mask = bert.tokenize(ck, sentences)
    batch = bert.int_forward(m, ids, mask)
    for i, s in enumerate(sentences):
        one_ids, one_mask = bert.tokenize(ck, [s])
        assert np.array_equal(bert.int_forward(m, one_ids, one_mask)[0], batch[i])
    fe = bert.float_forward(ck, ids, mask)
    ie = bert.pooled(m, batch, mask)
    cos = (fe * ie).sum(-1) / np.linalg.norm(fe, axis=-1) / np.linalg.norm(ie, axis=-1)
    assert cos.min() > 0.95


def test_bert_rejects_empty_sentence(tiny_bert):
    with pytest.raises(ValueError, match="empty"):
        bert.tokenize(tiny_bert[0], ["ok", "  "])


# ---- wide integer operators ---------------------------------------------------------------------

def test_requant_wide_matches_requantize_and_big_ints():
    rng = np.random.default_rng(0)
    scales = np.exp(rng.uniform(np.log(1e-9), np.log(1e-3), 16))
    mult, shift = quantize_multipliers(scales)
    acc32 = rng.integers(-(1 << 31), 1 << 31, (50, 16))
    assert np.array_equal(requant_wide(acc32, mult, shift, out_bits=16),
                          requantize(acc32.astype(np.int32), mult, shift, out_bits=16))
    wide = rng.integers(-(1 << 46), 1 << 46, (50, 16))
    got = requant_wide(wide, mult, shift, out_bits=32)
    for (r, c), a in np.ndenumerate(wide):
        t = int(shift[c]) + 31
        want = (int(a) * int(mult[c]) + (1 << (t - 1))) >> t  # Python integers: exact
        assert int(got[r, c]) == max(-(1 << 31), min((1 << 31) - 1, want))


def test_token_shift_bounds():
    x = np.array([[300, -20000, 5], [3, -2, 1]], np.int16)
    xs, k = token_shift(x, 8)
    assert k[:, 0].tolist() == [8, 0]
    assert xs.dtype == np.int8 and np.abs(xs.astype(int) * (1 << k) - x).max() <= 128


def test_norm_wide_equals_layernorm_on_int16_and_is_shift_invariant():
    rng = np.random.default_rng(2)
    x = rng.integers(-20000, 20000, (6, 48)).astype(np.int16)
    gamma, beta = rng.uniform(0.5, 2, 48), rng.normal(0, 0.1, 48)
    params = layernorm_params(1e-3, gamma, beta, 0.01, input_bits=16, eps=1e-5, out_bits=16)
    assert np.array_equal(norm_wide(x, params, eps_table(params.eps_term)), layernorm(x, params))
    # int32 input 2^8 larger at a 2^8 smaller scale: the same real values, the same outputs within 1 LSB
    wide = x.astype(np.int32) << 8
    p2 = layernorm_params(1e-3 / 256, gamma, beta, 0.01, input_bits=16, eps=1e-5, out_bits=16)
    assert np.abs(norm_wide(wide, p2, eps_table(p2.eps_term)).astype(int) - layernorm(x, params)).max() <= 1


def test_interp_lookup_error():
    in_scale, out_scale = 12 / 32767, 12 / 32767
    table = interp_table(silu_float, in_scale, out_scale)
    x = np.arange(-32768, 32768, 7, dtype=np.int64).astype(np.int16)
    got = interp_lookup(x, table).astype(np.float64) * out_scale
    want = silu_float(x.astype(np.float64) * in_scale)
    assert np.abs(got - want).max() < 1e-3


def test_softmax_q15_and_mask():
    rng = np.random.default_rng(3)
    scores = rng.integers(-(1 << 18), 1 << 18, (4, 10))
    params = softmax_params(2 ** -16, input_bits=32)
    mask = np.zeros(10, bool)
    mask[7:] = True
    p = softmax_q15(scores, params, mask=mask)
    assert np.all(p[:, 7:] == 0)
    assert np.array_equal(p[:, :7], softmax_q15(scores[:, :7], params))
    z = scores[:, :7] * 2 ** -16
    want = np.exp(z - z.max(1, keepdims=True))
    want /= want.sum(1, keepdims=True)
    assert np.abs(p[:, :7] / 2 ** 15 - want).max() < 2e-3
    with pytest.raises(ValueError, match="unmasked"):
        softmax_q15(scores, params, mask=np.ones(10, bool))


def test_per_token_linear_without_bias_reduces_the_shift():
    """token_bits without a bias: the requant shift is reduced by k instead of shifting the accumulator (same
    integer as requantizing acc << k, checked with Python integers)."""
    from npuforge.golden.models.qlinear import linear_apply, make_linear, weight_int8

    rng = np.random.default_rng(5)
    lin = make_linear(weight_int8(rng.normal(0, 0.05, (8, 64))), None, 1e-6, 1e-3, 16)
    x = rng.integers(-(1 << 30), 1 << 30, (4, 64)) >> rng.integers(0, 24, (4, 1))
    got = linear_apply(x, lin, token_bits=16)
    xs, k = token_shift(x, 16)
    acc = xs.astype(object) @ lin.weight.w_t.T.astype(np.int64).astype(object).T
    for (r, c), a in np.ndenumerate(acc):
        t = int(lin.shift[c]) + 31
        want = ((int(a) << int(k[r, 0])) * int(lin.multiplier[c]) + (1 << (t - 1))) >> t
        assert int(got[r, c]) == max(-(1 << 15), min((1 << 15) - 1, want))


def test_hf_llama_directory_matches_gguf(tiny_llama, tmp_path):
    """A Hugging Face directory holding the GGUF's float weights loads into the same float twin (same logits) and
    runs the integer path (int8 per channel: a float checkpoint has no blocks of its own)."""
    ck, peaks = tiny_llama
    tm.write_tiny_hf_llama(tmp_path, ck)
    hf = llama.load_llama(tmp_path)
    assert hf.tied and hf.eos == 2 and hf.context_length == tm.CONTEXT
    ids = [5, 60, 200, 17, 3]
    assert hf.tokenizer.encode("the cat").ids == ck.tokenizer.encode("the cat").ids
    np.testing.assert_array_equal(llama.float_forward(hf, ids), llama.float_forward(ck, ids))
    m = llama.quantize_llama(hf, SCHEMES["w8a16-kv16"], peaks)
    assert m.weight_formats == {"linear": "int8", "head": "int8"}
    caches = llama.new_caches(m)
    head = llama.int_forward(m, ids[:3], caches)
    assert np.array_equal(np.concatenate([head, llama.int_forward(m, ids[3:], caches)]), llama.int_forward(m, ids))


def test_shipped_texts_meet_the_evaluation_minimums():
    """Held-out text of several kinds >= 1,500 SmolLM2 tokens, >= 10 MiniLM sentences, none of it in calibration."""
    from npuforge.golden.models.assets import data_text, model_path
    from npuforge.golden.models.evaluate import LLAMA_TEXTS, bert_calibration_sentences
    from npuforge.golden.models.tokenize import gguf_tokenizer

    tok = gguf_tokenizer(gr.read_gguf(model_path("smollm2")).metadata)
    counts = [len(tok.encode(data_text(name)).ids) for name in LLAMA_TEXTS]
    assert sum(counts) >= 1500 and min(counts) >= 400
    calibration = data_text("calibration.txt")
    sentences = [s for s in data_text("sentences_eval.txt").splitlines() if s.strip()]
    assert len(sentences) >= 10
    assert not set(sentences) & set(bert_calibration_sentences())
    for name in LLAMA_TEXTS:
        lines = [line for line in data_text(name).splitlines() if len(line) > 40]
        assert not any(line in calibration for line in lines), name
