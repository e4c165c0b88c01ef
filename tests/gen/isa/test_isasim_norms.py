"""ISA-level simulator: LayerNorm, RMSNorm and RoPE vector instructions against the golden operators, their
parameter blocks and error statuses (split from test_isasim.py; shares its configuration and helpers)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from npuforge.gen.isa.asm import assemble
from npuforge.gen.config.array import ArrayConfig
from npuforge.spec.isa import (VEC_EXECUTABLE, DmaLoad, DmaStore, ErrorCode, Fence, Halt, MatMul, Nop, VecRequant, encode,
                     encode_program)
from npuforge.gen.isa.isasim import (Window, pack_norm_params, pack_requant_params, pack_rope_params, read_norm_header,
                        read_requant_params, read_rope_header, run)
from npuforge.golden.elementwise import rope, rope_table
from npuforge.golden.norms import LayerNormParams, RMSNormParams, layernorm, layernorm_params, rmsnorm, rmsnorm_params
from npuforge.gen.config.npu import NPUConfig
from npuforge.golden.requant import quantize_multipliers, requantize
from npuforge.golden.softmax import softmax, softmax_params
from tests.spec.test_isa import INSTRS

from tests.gen.isa.test_isasim import CFG, WINDOW_ALL, _assert_fault, _edges, _mem, _vec_mem, _vec_text  # noqa: F401


# -- layernorm / rmsnorm / rope ------------------------------------------------------------------------------------
CFG7 = replace(CFG, vector_ops=VEC_EXECUTABLE)   # 8 lanes: rope head_dim a multiple of 16


def _norm_case(op, m, n, seed):
    rng = np.random.default_rng(seed)
    a, _ = _edges(m, n, seed)
    a[1, :] = 37                                   # a constant row: zero variance (LayerNorm), eps decides
    gamma = rng.uniform(-2.0, 2.0, n)
    gamma[0] = 40.0                                # a large channel: gamma_shift below 16
    if op == "layernorm":
        params = layernorm_params(0.05, gamma, rng.uniform(-1.0, 1.0, n), 0.03)
        want = layernorm(a, params)
    else:
        params = rmsnorm_params(0.05, gamma, 0.03)
        want = rmsnorm(a, params)
    return a, params, want


@pytest.mark.parametrize("op", ["layernorm", "rmsnorm"])
def test_vec_norms_are_the_golden_norms(op):
    m, n = 3, 13
    a, params, want = _norm_case(op, m, n, 31)
    block = pack_norm_params(params)
    assert len(block) == 16 + (8 if op == "layernorm" else 2) * n
    res = run(CFG7, assemble(_vec_text(op, m, n, nparam=len(block))), _vec_mem(a, None, block), WINDOW_ALL)
    assert res.ok, res.message
    np.testing.assert_array_equal(res.memory[0x800:0x800 + m * n].view(np.int8).reshape(m, n), want)
    assert params.gamma_shift < 16 and res.stats[f"vec_{op}"] == 1


def test_vec_layernorm_zero_variance_without_eps_gives_beta():
    """V_e = 0 (constant row, eps_term 0): y = 0, out = round(B / 2^T) -- the golden rule, also on the NPU."""
    n = 8
    params = LayerNormParams(dim=n, input_bits=8, var_frac_bits=28, eps_term=0, gamma_q=(1000,) * n,
                             gamma_shift=16, beta_q=tuple(int(v) << 32 for v in range(-4, 4)))
    a = np.full((1, n), -128)
    block = pack_norm_params(params)
    res = run(CFG7, assemble(_vec_text("layernorm", 1, n, nparam=len(block))), _vec_mem(a, None, block), WINDOW_ALL)
    assert res.ok, res.message
    np.testing.assert_array_equal(res.memory[0x800:0x808].view(np.int8), np.arange(-4, 4))


def test_pack_norm_params_layout_and_errors():
    p = RMSNormParams(dim=2, input_bits=8, var_frac_bits=26, eps_term=(1 << 61) - 1, gamma_q=(-32768, 32767),
                      gamma_shift=-15)
    block = pack_norm_params(p)
    assert read_norm_header(block) == ((1 << 61) - 1, 26, -15)
    assert bytes(block[16:]) == (-32768).to_bytes(2, "little", signed=True) + (32767).to_bytes(2, "little")
    ln = LayerNormParams(dim=1, input_bits=8, var_frac_bits=4, eps_term=5, gamma_q=(-2,), gamma_shift=3,
                         beta_q=(-(1 << 47),))
    word = int.from_bytes(bytes(pack_norm_params(ln)[16:24]), "little")
    assert word == (0xFFFE | ((1 << 47) << 16))            # G int16 bits [15:0], B int48 bits [63:16]
    with pytest.raises(ValueError, match="must be a LayerNormParams or RMSNormParams"):
        pack_norm_params("x")
    with pytest.raises(ValueError, match="got input_bits 16 without an eps table, out_bits 8"):
        pack_norm_params(replace(p, input_bits=16))
    with pytest.raises(ValueError, match="got input_bits 8 with an eps table"):
        pack_norm_params(p, [0] * 18)
    with pytest.raises(ValueError, match=r"eps_term must be in \[0, 2\^61 - 1\], got 2305843009213693952"):
        pack_norm_params(replace(p, eps_term=1 << 61))
    with pytest.raises(ValueError, match=r"gamma_q must be in \[-32768, 32767\] \(signed 16 bit\), got 32768"):
        pack_norm_params(replace(p, gamma_q=(0, 32768)))
    with pytest.raises(ValueError, match=r"beta_q must be in .* \(signed 48 bit\)"):
        pack_norm_params(replace(ln, beta_q=(1 << 47,)))
    with pytest.raises(ValueError, match="gamma_q must be a 1-D integer vector of length 2"):
        pack_norm_params(replace(p, gamma_q=(1,)))


def _rope_case(m, hd, heads, first, table_positions=12, seed=40):
    cos, sin = rope_table(hd, table_positions)
    a, _ = _edges(m, hd, seed)
    want = rope(a, first + np.arange(m) // heads, cos, sin)
    return a, pack_rope_params(cos, sin), want


@pytest.mark.parametrize("m,heads,first", [(6, 2, 5), (8, 1, 0), (3, 3, 11)])
def test_vec_rope_is_golden_rope(m, heads, first):
    """Row i at position first + i // heads; the first and the last table row (11) are used."""
    hd = 16
    a, block, want = _rope_case(m, hd, heads, first)
    res = run(CFG7, assemble(_vec_text("rope", m, hd, flags=heads - 1, imm=first, nparam=len(block))),
              _vec_mem(a, None, block), WINDOW_ALL)
    assert res.ok, res.message
    np.testing.assert_array_equal(res.memory[0x800:0x800 + m * hd].view(np.int8).reshape(m, hd), want)
    assert res.stats["vec_rope"] == 1


def test_pack_rope_params_layout_and_errors():
    cos, sin = rope_table(4, 3, frac_bits=12)
    block = pack_rope_params(cos, sin, 12)
    assert read_rope_header(block) == (3, 12) and len(block) == 16 + 3 * 2 * 4
    entry = np.frombuffer(bytes(block[16 + 4 * (2 * 2 + 1):16 + 4 * (2 * 2 + 2)]), "<i2")   # position 2, pair 1
    assert (entry[0], entry[1]) == (cos[2, 1], sin[2, 1])
    with pytest.raises(ValueError, match="cos must be an int16 table"):
        pack_rope_params(cos.astype(np.int32), sin)
    with pytest.raises(ValueError, match=r"cos and sin must have the same shape, got \(3, 2\) and \(2, 2\)"):
        pack_rope_params(cos, sin[:2])


_LN_OK = pack_norm_params(_norm_case("layernorm", 2, 8, 50)[1])
_RMS_OK = pack_norm_params(_norm_case("rmsnorm", 2, 8, 50)[1])
_ROPE_OK = pack_rope_params(*rope_table(16, 12))


def _header(block, offset, value):
    out = bytearray(block)
    out[offset] = value & 0xFF
    return bytes(out)


@pytest.mark.parametrize("op,kw,block,code,addr", [
    ("layernorm", dict(flags=4), _LN_OK, ErrorCode.ILLEGAL_INSTRUCTION, 0),
    ("rmsnorm", dict(imm=3), _RMS_OK, ErrorCode.ILLEGAL_INSTRUCTION, 0),
    ("layernorm", dict(src=0x9), _LN_OK, ErrorCode.LOCAL_RANGE, 0x9),
    ("rmsnorm", dict(page=0x10), _RMS_OK, ErrorCode.LOCAL_RANGE, 0x1000),
    ("layernorm", dict(), _header(_LN_OK, 8, 27), ErrorCode.BAD_PARAM, 0xa00),      # var_frac_bits odd
    ("rmsnorm", dict(), _header(_RMS_OK, 8, 30), ErrorCode.BAD_PARAM, 0xa00),       # var_frac_bits > 28
    ("layernorm", dict(), _header(_LN_OK, 9, -16), ErrorCode.BAD_PARAM, 0xa00),     # gamma_shift < -15
    ("rmsnorm", dict(), _header(_RMS_OK, 9, 17), ErrorCode.BAD_PARAM, 0xa00),       # gamma_shift > 16
    ("rope", dict(imm=-1), _ROPE_OK, ErrorCode.ILLEGAL_INSTRUCTION, 0),
    ("rope", dict(flags=0, imm=0), _ROPE_OK, ErrorCode.ILLEGAL_INSTRUCTION, 0),   # n = 8: not a multiple of 16
    ("rope", dict(page=0x10), _ROPE_OK, ErrorCode.LOCAL_RANGE, 0x1000),
    ("rope", dict(), _header(_ROPE_OK, 4, 0), ErrorCode.BAD_PARAM, 0xa00),         # frac_bits 0
    ("rope", dict(), _header(_ROPE_OK, 4, 15), ErrorCode.BAD_PARAM, 0xa00),        # frac_bits 15
    ("rope", dict(imm=11), _ROPE_OK, ErrorCode.BAD_PARAM, 0xa00),                  # positions 11, 12 of 12
    ("rope", dict(imm=60), _header(_ROPE_OK, 0, 200), ErrorCode.LOCAL_RANGE, 0xa00),  # rows 60, 61 past 4 KiB
])
def test_vec_norm_rope_errors(op, kw, block, code, addr):
    n = 16 if op == "rope" and kw.get("flags", 1) else 8
    a, _ = _edges(2, n, 6)
    prog = assemble(_vec_text(op, 2, n, nparam=min(len(block), 0x300), **kw))
    res = run(CFG7, prog, _vec_mem(a, None, block[:0x300]), WINDOW_ALL)
    _assert_fault(res, code, 4, addr)
    assert (res.memory[0x800:0x810] == 0x11).all()             # nothing after the fault ran
