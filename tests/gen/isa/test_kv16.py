"""MATMUL.b16 (an int16 B read one byte plane per MATMUL: the int16 K / V caches of the ``*-kv16`` schemes): the
instruction's fields, the ISA simulator against the exact int64 product, the layer builder's int16 x int16 GEMMs
(Q.K^T with b_trans, P.V) against the golden tier, and the traps."""

from __future__ import annotations

import numpy as np
import pytest

from npuforge.gen.build.npu import used_masks
from npuforge.gen.config.array import ArrayConfig
from npuforge.gen.config.npu import ConfigError, NPUConfig
from npuforge.gen.isa.builder import LayerBuilder
from npuforge.gen.isa.isasim import run as isasim_run, wide_acc_values
from npuforge.gen.isa.layout import Window
from npuforge.golden.requant import quantize_multipliers
from npuforge.spec.block_scale import B16_PLANES, b16_plane
from npuforge.spec.isa import ErrorCode, Halt, MatMul, Opcode, decode_words, encode_program, encode_words

from tests.gen.isa.test_builder import assert_isasim_equals_reference

CFG = NPUConfig(array=ArrayConfig(rows=4, cols=4, precisions=("int8", "w8a16")), spad_bytes=16384, spad_banks=2,
                acc_bytes=4096, axi_data_bits=64, windows=2, block_scaled=True, kv16=True)


def _int16(rng, shape):
    """int16 values with the byte-plane edge cases: every low byte 0x00 / 0x7F / 0x80 / 0xFF and the extremes."""
    v = rng.integers(-(1 << 15), 1 << 15, shape)
    flat = v.reshape(-1)
    edges = np.array([-(1 << 15), (1 << 15) - 1, -1, 0, 127, 128, 255, 256, -128, -129, -256, 0x7F80, -0x7F81])
    flat[:min(len(edges), flat.size)] = edges[:flat.size]
    return v


@pytest.mark.parametrize("plane", [1, 2])
def test_planes_sum_to_the_int16_value(plane):
    b = np.arange(-(1 << 15), 1 << 15, dtype=np.int64)
    s = b16_plane(b, plane)
    assert s.min() >= -128 and s.max() <= 127
    total = sum(B16_PLANES[p][0] * b16_plane(b, p) + B16_PLANES[p][1] for p in (1, 2))
    assert np.array_equal(total, b)


def test_matmul_b16_fields_encode_and_refuse():
    i = MatMul("w8a16", "ws", 1, 3, 64, 5, 0, 128, 0, b_trans=1, b16=2)
    assert decode_words(encode_words(i)) == i
    words = encode_words(i)
    assert (words[0] >> 15) & 3 == 2
    for kw, why in ((dict(mode="int8"), "mode w8a16"), (dict(dataflow="os"), "dataflow ws"),
                    (dict(blocks=1, b_trans=0, k=64), "exclusive")):
        args = dict(mode="w8a16", dataflow="ws", accumulate=0, m=1, k=64, n=4, a_addr=0, b_addr=128, acc_addr=0,
                    b16=1)
        args.update(kw)
        with pytest.raises(ValueError, match=why):
            MatMul(**args)
    with pytest.raises(ValueError):
        MatMul("w8a16", "ws", 0, 1, 8, 4, 0, 128, 0, b16=3)


def test_b16_is_decoded_only_by_kv16_builds():
    """The RTL decoder takes w0[16:15] as MATMUL.b16 only on an NPU built with kv16; elsewhere it stays reserved
    (ILLEGAL_INSTRUCTION), so the Verilog of NPUs without kv16 is unchanged; kv16 needs block_scaled."""
    assert used_masks(CFG)[int(Opcode.MATMUL)] & (3 << 15) == 3 << 15
    for cfg in (None, NPUConfig(array=ArrayConfig(precisions=("int8", "w8a16")), block_scaled=True)):
        assert used_masks(cfg)[int(Opcode.MATMUL)] & (3 << 15) == 0
    with pytest.raises(ConfigError, match="needs block_scaled"):
        NPUConfig(array=ArrayConfig(precisions=("int8", "w8a16")), kv16=True)
    assert "kv16" not in NPUConfig().to_dict() and CFG.to_dict()["kv16"] is True


def _sim(cfg, program, image):
    return isasim_run(cfg, encode_program(program), image, [Window(0, len(image), True, True)])


@pytest.mark.parametrize("b_trans", [0, 1])
def test_isasim_b16_planes_accumulate_the_exact_product(b_trans):
    rng = np.random.default_rng(3 + b_trans)
    m, k, n = 3, 40, 6
    a = _int16(rng, (m, k))
    b = _int16(rng, (k, n))
    a_bytes = a.astype("<i2").tobytes()
    spad_a, spad_b = 0, 1024
    stored = b.T if b_trans else b
    rb = stored.shape[1] * 2
    # lay A and B out with DMA loads from an image
    image = np.zeros(8192, dtype=np.uint8)
    image[4096:4096 + len(a_bytes)] = np.frombuffer(a_bytes, dtype=np.uint8)
    b_bytes = stored.astype("<i2").tobytes()
    image[6144:6144 + len(b_bytes)] = np.frombuffer(b_bytes, dtype=np.uint8)
    from npuforge.spec.isa import DmaLoad, Fence
    prog = [DmaLoad("spad", spad_a, 4096, 2 * k, m, 2 * k),
            DmaLoad("spad", spad_b, 6144, rb, stored.shape[0], rb),
            Fence(load=0),
            MatMul("w8a16", "ws", 0, m, k, n, spad_a, spad_b, 0, b_trans=b_trans, b16=1),
            MatMul("w8a16", "ws", 1, m, k, n, spad_a, spad_b, 0, b_trans=b_trans, b16=2),
            Halt()]
    res = _sim(CFG, prog, image)
    assert res.ok, (res.status, res.fault_addr)
    got = wide_acc_values(res, CFG, 0, m, n)
    assert np.array_equal(got, a @ b)
    # one plane alone: A @ (D s + O)
    res1 = _sim(CFG, prog[:4] + [Halt()], image)
    d, o = B16_PLANES[1]
    assert np.array_equal(wide_acc_values(res1, CFG, 0, m, n), a @ (d * (b >> 8) + o))
    # without kv16 the same program traps at the first b16 MATMUL
    plain = NPUConfig(array=CFG.array, spad_bytes=CFG.spad_bytes, spad_banks=2, acc_bytes=4096, windows=2,
                      block_scaled=True)
    bad = _sim(plain, prog, image)
    assert bad.status == ErrorCode.ILLEGAL_INSTRUCTION and bad.pc == 3


def _attention(cfg, t, n, d, seed, tiles=None):
    """scores = requant_wide(q @ K^T) int32 and ctx = requant_wide(p @ V) int16, int16 q, K, V, p."""
    rng = np.random.default_rng(seed)
    lb = LayerBuilder(cfg)
    q = lb.constant("q", _int16(rng, (t, d)), bits=16)
    kc = lb.constant("k", _int16(rng, (n, d)), bits=16)
    vc = lb.constant("v", _int16(rng, (n, d)), bits=16)
    p = lb.constant("p", rng.integers(0, 1 << 15, (t, n)), bits=16)
    scores = lb.buffer("scores", t, n, bits=32)
    ctx = lb.buffer("ctx", t, d, bits=16)
    sm, ss = quantize_multipliers(np.full(n, 2.0 ** -14))
    cm, cs = quantize_multipliers(rng.uniform(0.5, 2.0, d) * 2.0 ** -22)
    lb.gemm(q, kc, scores, sm, ss, b_trans=True, tiles=tiles)
    lb.gemm(p, vc, ctx, cm, cs, tiles=tiles)
    return lb.build()


@pytest.mark.parametrize("t, n, d, tiles", [(1, 37, 16, None), (5, 19, 8, None), (6, 40, 24, (4, 8, 8))])
def test_int16_attention_gemms_bit_exact_on_the_isa_simulator(t, n, d, tiles):
    prog = _attention(CFG, t, n, d, seed=t + n, tiles=tiles)
    res = assert_isasim_equals_reference(prog)
    planes = [i.b16 for i in prog.program if isinstance(i, MatMul)]
    assert planes and set(planes) == {1, 2} and planes.count(1) == planes.count(2)
    assert res.stats["macs_b16"] == 2 * (t * n * d * 2)


def test_int16_gemm_needs_kv16():
    lb = LayerBuilder(NPUConfig(array=CFG.array, spad_bytes=16384, spad_banks=2, acc_bytes=4096, windows=2,
                                block_scaled=True))
    q = lb.constant("q", np.zeros((2, 8), dtype=np.int64), bits=16)
    kc = lb.constant("k", np.zeros((4, 8), dtype=np.int64), bits=16)
    with pytest.raises(ValueError, match="needs an NPU built with kv16"):
        lb.gemm(q, kc, lb.buffer("s", 2, 4, bits=32), np.full(4, 1 << 30), np.zeros(4), b_trans=True)
