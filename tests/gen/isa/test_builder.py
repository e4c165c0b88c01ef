"""Layer programs (gen.isa.builder): multi-operator programs over DRAM tensors and views, executed by the ISA
simulator (hazard checks on) and compared byte for byte with the golden operators applied in program order."""

from __future__ import annotations

import numpy as np
import pytest

from npuforge.gen.config.array import ArrayConfig
from npuforge.gen.config.npu import NPUConfig
from npuforge.gen.isa.builder import LayerBuilder
from npuforge.gen.isa.isasim import run as isasim_run
from npuforge.golden.activations import gelu_table
from npuforge.golden.elementwise import residual_params, rope_table
from npuforge.golden.norms import layernorm_params
from npuforge.golden.requant import quantize_multipliers
from npuforge.golden.softmax import softmax_params
from npuforge.spec.isa import DmaLoad, Fence, MatMul, VecOp, encode_program
from npuforge.spec.vector_ops import VECTOR_OPS, rope_flags

CFG = NPUConfig(array=ArrayConfig(rows=4, cols=4), spad_bytes=16384, spad_banks=2, acc_bytes=4096,
                axi_data_bits=64, windows=2, vector_ops=tuple(op.name for op in VECTOR_OPS))


def _requant(rng, n: int, k: int, a_std: float = 74.0, b_std: float = 74.0, out_bits: int = 8):
    """Per-channel requant that spreads outputs of a K-long product of operands with these standard deviations
    over the int8 (int16) range (a few saturate)."""
    spread = 48.0 * (256 if out_bits == 16 else 1)
    return quantize_multipliers(rng.uniform(0.5, 2.0, n) * spread / (np.sqrt(k) * a_std * b_std))


def ffn_block(cfg: NPUConfig, t: int, hidden: int, ffn: int, *, seed: int = 0, w2_bits: int = 8):
    """A BERT-style feed-forward block with its residual and LayerNorm: x -> (x @ W1 -> GELU -> @ W2) + x -> LN.
    Returns the builder (not built) so tests can add operators."""
    rng = np.random.default_rng(seed)
    lb = LayerBuilder(cfg)
    xv = rng.integers(-128, 128, (t, hidden))
    xv[0, :] = -128                                     # an all-extreme row
    x = lb.constant("x", xv)
    w1 = lb.constant("w1", rng.integers(-128, 128, (hidden, ffn)))
    lo2, hi2 = -(1 << (w2_bits - 1)), (1 << (w2_bits - 1))
    w2 = lb.constant("w2", rng.integers(lo2, hi2, (ffn, hidden)), bits=w2_bits)
    h = lb.buffer("h", t, ffn)
    g = lb.buffer("g", t, ffn)
    y = lb.buffer("y", t, hidden)
    r = lb.buffer("r", t, hidden)
    out = lb.buffer("out", t, hidden)
    lb.gemm(x, w1, h, *_requant(rng, ffn, hidden))
    lb.vector("act", h, g, gelu_table(0.05, 0.03))
    lb.gemm(g, w2, y, *_requant(rng, hidden, ffn, a_std=45.0, b_std=hi2 / 1.7))
    lb.vector("residual", y, r, residual_params(0.04, 0.05, 0.07), src2=x)
    lb.vector("layernorm", r, out, layernorm_params(0.07, rng.uniform(0.5, 1.5, hidden),
                                                    rng.uniform(-0.5, 0.5, hidden), 0.04))
    return lb


def assert_isasim_equals_reference(prog):
    res = isasim_run(prog.cfg, prog.program_bytes, prog.image, prog.windows)
    assert res.ok, (res.status, res.fault_addr, res.pc)
    want = prog.reference()
    for name in prog.buffers():
        got = prog.read(res.memory, name)
        assert np.array_equal(got, want[name]), (name, np.argwhere(got != want[name])[:5])
    return res


@pytest.mark.parametrize("t, hidden, ffn, w2_bits", [(6, 16, 40, 8), (13, 24, 36, 4), (1, 8, 16, 8)])
def test_ffn_block_bit_exact_on_the_isa_simulator(t, hidden, ffn, w2_bits):
    prog = ffn_block(CFG, t, hidden, ffn, seed=t, w2_bits=w2_bits).build()
    assert_isasim_equals_reference(prog)
    # One program: two MATMUL groups and three vector operators, fenced only where data depends.
    ops = [i for i in prog.program if isinstance(i, (MatMul, VecOp))]
    assert sum(isinstance(i, VecOp) for i in ops) >= 3 and any(isinstance(i, Fence) for i in prog.program)
    assert prog.macs == t * hidden * ffn * 2


def heads_program(cfg: NPUConfig, *, t: int, hidden: int, heads: int, d: int, seed: int = 0):
    """Q = x @ Wq computed per head into column views of one buffer, from column views of Wq; a causal softmax
    (row offset 2) over head 1's column view of Q into the same columns of P."""
    rng = np.random.default_rng(seed)
    lb = LayerBuilder(cfg)
    x = lb.constant("x", rng.integers(-128, 128, (t, hidden)))
    wq = lb.constant("wq", rng.integers(-128, 128, (hidden, heads * d)))
    q = lb.buffer("q", t, heads * d)
    for h in range(heads):
        cols = slice(h * d, (h + 1) * d)
        lb.gemm(x, wq.view(cols=cols), q.view(cols=cols), *_requant(rng, d, hidden))
    p = lb.buffer("p", t, heads * d)
    lb.vector("softmax", q.view(cols=slice(d, 2 * d)), p.view(cols=slice(d, 2 * d)),
              softmax_params(0.05, input_bits=8), flags=1, imm=2)
    return lb.build()


def test_views_split_heads_and_fill_one_buffer():
    d = 8
    prog = heads_program(CFG, t=5, hidden=16, heads=3, d=d, seed=3)
    assert_isasim_equals_reference(prog)
    want = prog.reference()
    # The softmax wrote only its column view: the other columns of p keep the poison byte.
    assert (want["p"][:, :d] == 0xA5).all() and (want["p"][:, 2 * d:] == 0xA5).all()
    assert not (want["p"][:, d:2 * d] == 0xA5).all()


def test_vector_tiles_over_rows_keep_causal_offsets():
    """A softmax whose rows need several scratchpad tiles: each tile's causal row offset continues the last."""
    cfg = NPUConfig(array=ArrayConfig(rows=4, cols=4), spad_bytes=4096, spad_banks=2, acc_bytes=4096,
                    axi_data_bits=64, windows=1, vector_ops=("softmax",))
    rng = np.random.default_rng(5)
    t, n = 70, 24
    lb = LayerBuilder(cfg)
    s = lb.constant("s", rng.integers(-128, 128, (t, n)))
    p = lb.buffer("p", t, n)
    lb.vector("softmax", s, p, softmax_params(0.06, input_bits=8), flags=1, imm=3)
    prog = lb.build()
    assert sum(isinstance(i, VecOp) for i in prog.program) > 1
    assert_isasim_equals_reference(prog)


def test_rope16_over_more_positions_than_one_instruction_holds():
    """int16 q of 20 tokens x 3 heads from position 7 (flags: int16 in and out): tiles of at most 8 positions, each
    tile's first position continuing the last; equal to golden.elementwise.rope."""
    cfg = NPUConfig(array=ArrayConfig(rows=4, cols=4), spad_bytes=8192, spad_banks=2, acc_bytes=4096,
                    axi_data_bits=64, windows=1, vector_ops=("rope",))
    rng = np.random.default_rng(6)
    t, heads, hd = 20, 3, 16
    lb = LayerBuilder(cfg)
    q = lb.constant("q", rng.integers(-32768, 32768, (t * heads, hd)), bits=16)
    out = lb.buffer("out", t * heads, hd, bits=16)
    lb.vector("rope", q, out, rope_table(hd, 40), flags=rope_flags(heads, 16, 16), imm=7)
    prog = lb.build()
    ropes = [i for i in prog.program if isinstance(i, VecOp)]
    assert len(ropes) == 3 and all(i.m <= 8 * heads for i in ropes) and [i.imm for i in ropes] == [7, 15, 23]
    assert_isasim_equals_reference(prog)


def test_overlap_loads_of_the_next_operator_with_compute():
    """The second GEMM's first loads are issued before the first GEMM's last requant is fenced: DMA runs ahead."""
    prog = ffn_block(CFG, 12, 16, 40, seed=9).build()
    first_vec = next(i for i, ins in enumerate(prog.program) if isinstance(ins, VecOp))
    loads_before = [ins for ins in prog.program[:first_vec] if isinstance(ins, DmaLoad)]
    assert len(loads_before) > 3
    assert_isasim_equals_reference(prog)


def test_errors_name_the_limit():
    lb = LayerBuilder(CFG)
    x = lb.constant("x", np.zeros((4, 8), dtype=np.int64))
    w = lb.constant("w", np.zeros((8, 4), dtype=np.int64))
    with pytest.raises(ValueError, match="already defined"):
        lb.constant("x", np.zeros((1, 1), dtype=np.int64))
    with pytest.raises(ValueError, match=r"must be in \[-128, 127\]"):
        lb.constant("big", np.full((1, 1), 200))
    with pytest.raises(ValueError, match="do not chain"):
        lb.gemm(x, w, lb.buffer("o", 4, 5), *quantize_multipliers(np.full(4, 0.01)))
    with pytest.raises(ValueError, match="before any operator writes it"):
        lb.gemm(lb.buffer("later", 4, 8), w, lb.buffer("o2", 4, 4), *quantize_multipliers(np.full(4, 0.01)))
    with pytest.raises(ValueError, match="even columns"):
        lb.constant("w4", np.zeros((8, 6), dtype=np.int64), bits=4).view(cols=slice(1, 3))
    wide = lb.constant("wide", np.zeros((1, 9000), dtype=np.int64))
    with pytest.raises(ValueError, match="spad_bytes=16384"):
        lb.vector("act", wide, lb.buffer("wide_out", 1, 9000), gelu_table(0.05, 0.03))
    with pytest.raises(ValueError, match="at least one operator"):
        LayerBuilder(CFG).build()


def kv_append_programs(cfg: NPUConfig, *, t: int, hidden: int, d: int, steps: int, seed: int = 0):
    """A prefill program writing K-cache rows 0..t-1 (x @ Wk into a row view of the cache) and ``steps`` decode
    programs each appending one row and running GELU over every cache row so far, all over one image."""
    rng = np.random.default_rng(seed)
    lb = LayerBuilder(cfg)
    x = lb.constant("x", rng.integers(-128, 128, (t + steps, hidden)))
    wk = lb.constant("wk", rng.integers(-128, 128, (hidden, d)))
    mult, shift = _requant(rng, d, hidden)
    cache = lb.buffer("cache", t + steps, d)
    act = lb.buffer("act", t + steps, d)
    table = gelu_table(0.05, 0.03)
    lb.program("prefill")
    lb.gemm(x.view(rows=slice(0, t)), wk, cache.view(rows=slice(0, t)), mult, shift)
    for s in range(steps):
        pos = t + s
        lb.program(f"decode{s}")
        lb.gemm(x.view(rows=slice(pos, pos + 1)), wk, cache.view(rows=slice(pos, pos + 1)), mult, shift)
        lb.vector("act", cache.view(rows=slice(0, pos + 1)), act.view(rows=slice(0, pos + 1)), table)
    return lb.build(), (x, wk, mult, shift, table)


def test_prefill_then_decode_programs_share_one_image():
    t, steps = 5, 2
    prog, _ = kv_append_programs(CFG, t=t, hidden=16, d=8, steps=steps, seed=4)
    assert list(prog.programs) == ["prefill", "decode0", "decode1"]
    memory = prog.image
    for name in prog.programs:
        res = isasim_run(CFG, encode_program(prog.programs[name]), prog.load(memory, name), prog.windows)
        assert res.ok, (name, res.status)
        memory = res.memory
        want = prog.reference(upto=name)
        for buf in prog.buffers():
            assert np.array_equal(prog.read(memory, buf), want[buf]), (name, buf)
    # Appending row by row equals computing every row at once: the cache after the last step is x @ Wk whole.
    whole = LayerBuilder(CFG)
    rng = np.random.default_rng(4)
    xv = rng.integers(-128, 128, (t + steps, 16))
    wv = rng.integers(-128, 128, (16, 8))
    c = whole.buffer("cache", t + steps, 8)
    whole.gemm(whole.constant("x", xv), whole.constant("wk", wv), c, *_requant(rng, 8, 16))
    assert np.array_equal(prog.read(memory, "cache"), whole.build().reference()["cache"])


def test_program_errors():
    lb = LayerBuilder(CFG)
    lb.program("a")
    with pytest.raises(ValueError, match="has no operator"):
        lb.program("b")
    with pytest.raises(ValueError, match="new non-empty string"):
        lb.program("a")
    x = lb.constant("x", np.zeros((2, 8), dtype=np.int64))
    lb.vector("act", x, lb.buffer("y", 2, 8), gelu_table(0.05, 0.03))
    with pytest.raises(ValueError, match="upto must name a program"):
        lb.build().reference(upto="nope")


@pytest.mark.parametrize("w_bits", [8, 4])
def test_int16_activations_through_views(w_bits):
    """w8a16 / w4a16 GEMMs on column views of an int16 activation buffer (2 bytes per element at the root's
    pitch) writing int16 and int8 outputs into views."""
    cfg = NPUConfig(array=ArrayConfig(rows=4, cols=4, precisions=("int8", "w4a8", "w8a16", "w4a16")),
                    spad_bytes=16384, spad_banks=2, acc_bytes=4096, axi_data_bits=64, windows=2)
    rng = np.random.default_rng(7 + w_bits)
    t, hidden, n = 6, 24, 12
    lb = LayerBuilder(cfg)
    xv = rng.integers(-32768, 32768, (t, hidden))
    xv[0, :] = -32768
    x = lb.constant("x", xv, bits=16)
    w = lb.constant("w", rng.integers(-(1 << (w_bits - 1)), 1 << (w_bits - 1), (hidden // 2, n)), bits=w_bits)
    y16 = lb.buffer("y16", t, 2 * n, bits=16)
    k = hidden // 2
    b_std = 74.0 if w_bits == 8 else 4.6
    for half in range(2):
        lb.gemm(x.view(cols=slice(half * k, (half + 1) * k)), w, y16.view(cols=slice(half * n, (half + 1) * n)),
                *_requant(rng, n, k, a_std=18900.0, b_std=b_std, out_bits=16))
    assert_isasim_equals_reference(lb.build())


def attention_head(cfg: NPUConfig, *, t: int, d: int, valid: int | None = None, q_bits: int = 8,
                   score_bits: int = 16, seed: int = 0):
    """One attention head in the 16-bit schemes' formats: scores = requant(Q @ K^T) with K as stored [t, d]
    (MATMUL.b_trans; Q int8 or int16) into int16 or int32 scores, a causal softmax with Q0.15 int16 probabilities
    (and a padding mask when ``valid`` keys are real), then ctx = requant(P @ V) as a w8a16 GEMM (P int16 x V
    int8)."""
    from npuforge.gen.isa.ops import SoftmaxBlock
    from npuforge.spec.vector_ops import SOFTMAX_CAUSAL, SOFTMAX_PAD, SOFTMAX_Q15, SOFTMAX_SCORE_LSB
    rng = np.random.default_rng(seed)
    lb = LayerBuilder(cfg)
    q_max = 1 << (q_bits - 1)
    q = lb.constant("q", rng.integers(-q_max, q_max, (t, d)), bits=q_bits)
    k = lb.constant("k", rng.integers(-128, 128, (t, d)))
    v = lb.constant("v", rng.integers(-128, 128, (t, d)))
    scores = lb.buffer("scores", t, t, bits=score_bits)
    probs = lb.buffer("probs", t, t, bits=16)
    ctx = lb.buffer("ctx", t, d)
    # scores: int16 at 2^-8 or int32 at 2^-16 (golden.models' SCORE_SCALE), spread over a few units of e
    score_unit = 2.0 ** (-8 if score_bits == 16 else -16)
    real = rng.uniform(0.5, 2.0, t) * 3.0 / (np.sqrt(d) * q_max / 1.7 * 74.0)      # a few units of e
    lb.gemm(q, k, scores, *quantize_multipliers(real / score_unit), b_trans=True)
    flags = SOFTMAX_CAUSAL | ({16: 1, 32: 2}[score_bits] << SOFTMAX_SCORE_LSB) | SOFTMAX_Q15 \
        | (SOFTMAX_PAD if valid else 0)
    lb.vector("softmax", scores, probs, SoftmaxBlock(softmax_params(score_unit, input_bits=score_bits), valid or 0),
              flags=flags)
    # ctx = P V: P in units of 2^-15 (sum 1 per row), V int8; the result spread over int8
    lb.gemm(probs, v, ctx, *quantize_multipliers(np.full(d, 2.0 ** -15)))
    return lb.build()


@pytest.mark.parametrize("t, d, valid, q_bits, score_bits", [(7, 8, None, 8, 16), (12, 16, 9, 16, 32),
                                                              (10, 8, None, 16, 16)])
def test_attention_head_q_kt_softmax_pv(t, d, valid, q_bits, score_bits):
    cfg = NPUConfig(array=ArrayConfig(rows=4, cols=4, precisions=("int8", "w4a8", "w8a16")), spad_bytes=16384,
                    spad_banks=2, acc_bytes=4096, axi_data_bits=64, windows=2, vector_ops=("softmax",))
    prog = attention_head(cfg, t=t, d=d, valid=valid, q_bits=q_bits, score_bits=score_bits, seed=t)
    assert any(isinstance(i, MatMul) and i.b_trans for i in prog.program)
    assert_isasim_equals_reference(prog)
    want = prog.reference()
    probs = want["probs"].view("<i2")
    assert probs.max() > 1000 and len(np.unique(want["ctx"])) > 8      # neither flat nor degenerate


def test_bias_before_requant():
    """x @ W + bias (int32 per column, VEC_REQUANT.bias) in a layer program, into an int32 output view."""
    rng = np.random.default_rng(11)
    lb = LayerBuilder(CFG)
    x = lb.constant("x", rng.integers(-128, 128, (5, 16)))
    w = lb.constant("w", rng.integers(-128, 128, (16, 12)))
    y = lb.buffer("y", 5, 24, bits=32)
    bias = rng.integers(-(1 << 31), 1 << 31, 12)
    bias[:2] = [-(1 << 31), (1 << 31) - 1]                  # the int32 extremes (the 33-bit add saturates)
    lb.gemm(x, w, y.view(cols=slice(4, 16)), *quantize_multipliers(np.full(12, 0.5)), bias=bias)
    prog = lb.build()
    assert_isasim_equals_reference(prog)
    assert (prog.reference()["y"].view("<i4")[:, 4:16] != 0).any()


def test_k_past_the_worst_case_bound_with_constant_weights():
    """w8a16 with K = 600 > 511: accepted when the weights' largest column sum of |W| x 2^15 fits int32 (the
    bound the builder proves; every partial sum of every order is within it), refused with the bound otherwise."""
    cfg = NPUConfig(array=ArrayConfig(rows=4, cols=4, precisions=("int8", "w8a16")), spad_bytes=16384,
                    spad_banks=2, acc_bytes=4096, axi_data_bits=64, windows=2)
    rng = np.random.default_rng(12)
    k, n = 600, 8
    w = rng.integers(-60, 61, (k, n))
    w[:, 0] = np.where(np.arange(k) % 2, 100, -100)            # column sum of |w| 60000: 60000 * 2^15 < 2^31
    x = rng.integers(-(1 << 15), 1 << 15, (5, k))
    x[0] = np.where(np.arange(k) % 2, (1 << 15) - 1, -(1 << 15))  # every product of row 0 x column 0 positive
    identity = (np.full(n, 1 << 30), np.full(n, -1))            # out32 = the accumulator itself
    lb = LayerBuilder(cfg)
    lb.gemm(lb.constant("x", x, bits=16), lb.constant("w", w), lb.buffer("y", 5, n, bits=32), *identity)
    prog = lb.build()
    assert_isasim_equals_reference(prog)
    y = prog.reference()["y"].view("<i4")
    assert int(y[0, 0]) == int((x[0].astype(np.int64) * w[:, 0]).sum()) > 1 << 30
    big = LayerBuilder(cfg)
    x16 = big.constant("x", x, bits=16)
    with pytest.raises(ValueError, match="accumulator bound .* must be <= 2\\^31 - 1"):
        big.gemm(x16, big.constant("w", np.full((k, n), 127)), big.buffer("y", 5, n, bits=32), *identity)
    h = big.buffer("h", k, n)
    big.gemm(big.constant("ones", np.ones((k, k), np.int64)), big.constant("w8", w), h, *identity)
    with pytest.raises(ValueError, match="is not a constant and A .* is not a Q0.15 softmax output, so no tighter "
                                         "bound"):
        big.gemm(x16, h, big.buffer("y2", 5, n, bits=32), *identity)
