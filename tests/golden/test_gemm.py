"""golden.gemm: exact int8/w4a8/int4 GEMM in int32, accumulator bound."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from npuforge.golden.gemm import MODES, gemm, gemm_mode, max_reduction_length


def test_max_reduction_length_values():
    assert max_reduction_length(8, 8) == 131071
    assert max_reduction_length(8, 4) == 2097151
    assert max_reduction_length(4, 4) == 33554431
    assert max_reduction_length(16, 8) == 511      # w8a16: 511 * 2^22 < 2^31 <= 512 * 2^22
    assert max_reduction_length(16, 4) == 8191     # w4a16
    for a_bits, b_bits in MODES.values():
        k = max_reduction_length(a_bits, b_bits)
        worst = 1 << (a_bits + b_bits - 2)
        assert k * worst <= (1 << 31) - 1 < (k + 1) * worst


@settings(max_examples=60, deadline=None)
@given(mode=st.sampled_from(sorted(MODES)), m=st.integers(1, 6), k=st.integers(1, 40), n=st.integers(1, 6),
       seed=st.integers(0, 2**32 - 1))
def test_gemm_equals_int64_matmul(mode, m, k, n, seed):
    a_bits, b_bits = MODES[mode]
    rng = np.random.default_rng(seed)
    a = rng.integers(-(1 << (a_bits - 1)), 1 << (a_bits - 1), size=(m, k)).astype(np.int8)
    b = rng.integers(-(1 << (b_bits - 1)), 1 << (b_bits - 1), size=(k, n)).astype(np.int8)
    want = np.array([[sum(int(a[i, t]) * int(b[t, j]) for t in range(k)) for j in range(n)] for i in range(m)])
    got = gemm_mode(a, b, mode)
    assert got.dtype == np.int32
    assert np.array_equal(got, want)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_gemm_worst_case_at_the_bound(mode):
    a_bits, b_bits = MODES[mode]
    k = max_reduction_length(a_bits, b_bits)
    a_min, b_min = -(1 << (a_bits - 1)), -(1 << (b_bits - 1))
    if mode == "int8":  # full-length worst-case rows: sum of (-128)*(-128) over K = 131071
        a = np.full((1, k), a_min, dtype=np.int8)
        b = np.full((k, 2), b_min, dtype=np.int8)
        b[:, 1] = (1 << (b_bits - 1)) - 1
        got = gemm(a, b, a_bits=a_bits, b_bits=b_bits)
        assert got.tolist() == [[k * a_min * b_min, k * a_min * ((1 << (b_bits - 1)) - 1)]]
        assert int(got[0, 0]) <= (1 << 31) - 1
    # one past the bound is refused (checked before any arithmetic, so a tiny M/N keeps it fast)
    a = np.zeros((1, k + 1), dtype=np.int8)
    b = np.zeros((k + 1, 1), dtype=np.int8)
    with pytest.raises(ValueError, match=rf"K must be in \[1, {k}\].*got K={k + 1}"):
        gemm(a, b, a_bits=a_bits, b_bits=b_bits)


def test_gemm_batched_broadcast():
    rng = np.random.default_rng(0)
    a = rng.integers(-128, 128, size=(3, 4, 5)).astype(np.int8)
    b = rng.integers(-128, 128, size=(5, 6)).astype(np.int8)
    want = np.einsum("bmk,kn->bmn", a.astype(np.int64), b.astype(np.int64))
    assert np.array_equal(gemm(a, b), want)


@pytest.mark.parametrize("a,b,kwargs,match", [
    (np.zeros((2, 3)), np.zeros((3, 2), np.int8), {}, "a must have an integer dtype"),
    (np.zeros((2, 3), np.int8), np.zeros((3, 2), np.float32), {}, "b must have an integer dtype"),
    (np.zeros((2, 3), np.int8), np.zeros((4, 2), np.int8), {}, "b must have shape"),
    (np.zeros(3, np.int8), np.zeros((3, 2), np.int8), {}, "a must have at least 2"),
    (np.full((1, 2), 8, np.int8), np.zeros((2, 1), np.int8), dict(a_bits=4, b_bits=4), r"a values must be in \[-8, 7\]"),
    (np.zeros((1, 2), np.int8), np.full((2, 1), -9, np.int8), dict(b_bits=4), r"b values must be in \[-8, 7\]"),
    (np.zeros((1, 2), np.int16), np.full((2, 1), 200, np.int16), {}, r"b values must be in \[-128, 127\]"),
    (np.zeros((1, 2), np.int8), np.zeros((2, 1), np.int8), dict(a_bits=6), "a_bits must be one of"),
])
def test_gemm_rejects_bad_input(a, b, kwargs, match):
    with pytest.raises(ValueError, match=match):
        gemm(a, b, **kwargs)


def test_gemm_mode_rejects_unknown_mode():
    with pytest.raises(ValueError, match="mode must be one of"):
        gemm_mode(np.zeros((1, 1), np.int8), np.zeros((1, 1), np.int8), "int2")


@pytest.mark.parametrize("mode", sorted(MODES))
def test_gemm_large_random_equals_int64_einsum(mode):
    """Larger shapes against an int64 NumPy contraction (einsum, a different code path from matmul)."""
    a_bits, b_bits = MODES[mode]
    rng = np.random.default_rng(len(mode))
    k = min(1000, max_reduction_length(a_bits, b_bits))  # w8a16: 511, the exact int32 bound
    a = rng.integers(-(1 << (a_bits - 1)), 1 << (a_bits - 1), size=(17, k)).astype(np.int16)
    b = rng.integers(-(1 << (b_bits - 1)), 1 << (b_bits - 1), size=(k, 23)).astype(np.int8)
    a[0] = -(1 << (a_bits - 1))  # extreme rows and columns
    b[:, 0] = -(1 << (b_bits - 1))
    want = np.einsum("mk,kn->mn", a.astype(np.int64), b.astype(np.int64))
    assert np.array_equal(gemm_mode(a, b, mode), want)
