"""The token scale only of rtl.vector.norm.RMSNorm (int32 rows, int16 results, ``token``: ``vec.rmsnorm`` flags bit 2)
on the Amaranth simulator vs ``golden.models.intops.token_shift(x, 16)``, bit for bit, with k beside every output
beat: rows whose max |x| is exactly 2^15 - 1 (k = 0), 2^15 (k = 1), 2^31 - 1 (k = 16) and -2^31 (k = 17), zero rows,
every k in between, rounding ties, single elements and the longest row, random stalls; interleaved with the wide
RMSNorm on the same instance (norm_wide), and with a header that would be BAD_PARAM for a norm (ignored)."""

from __future__ import annotations

import numpy as np

from npuforge.golden.models.intops import norm_wide, token_shift, wide_norm_params
from npuforge.golden.norms import rmsnorm_params
from npuforge.rtl.vector.norm import RMSNorm
from npuforge.spec.vector_ops import norm_channel
from tests.rtl.vector.test_norm_wide_amaranth import LANES, MAX_ROW, _run

I32_MIN, I32_MAX = -(1 << 31), (1 << 31) - 1


def _token_rows(rng):
    rows = [np.array([(1 << 15) - 1, -5, 3]), np.array([1 << 15, -(1 << 15) + 1]), np.array([-(1 << 15)] * 5),
            np.full(MAX_ROW, I32_MAX), np.array([I32_MIN] + [0] * 6), np.array([I32_MIN, I32_MAX, -1, 1]),
            np.zeros(5, np.int64), np.array([7]),
            np.array([3 << 15, 1 << 15, -(1 << 15), (1 << 16) - 1, 1])]    # k = 2: ties at +-2^1
    for k in range(1, 17):
        peak = (1 << (14 + k)) + int(rng.integers(0, 1 << (14 + k)))
        n = [1, 3, 4, 5, 9, MAX_ROW][k % 6]
        x = rng.integers(-peak, peak + 1, n)
        x[rng.integers(n)] = min(peak, I32_MAX) if k % 2 else -peak
        rows.append(x)
    return rows


def test_token_scale_vs_golden():
    rng = np.random.default_rng(21)
    dut = RMSNorm(lanes=LANES, max_row=MAX_ROW, in_width=32, out_width=16)
    gamma = rng.uniform(0.5, 1.5, MAX_ROW)
    built = {}

    def params(d):
        if d not in built:
            built[d] = wide_norm_params(rmsnorm_params, 2.0 ** -12, gamma[:d], 0.03 / 256, out_bits=16, eps=1e-6)
        return built[d]
    full, eps = params(MAX_ROW)
    rows, want, want_k = [], [], []
    for i, x in enumerate(_token_rows(rng)):
        y, k = token_shift(x[None, :], 16)
        # A header that a norm would refuse (gamma_shift 17, odd var_frac_bits): the token scale reads none.
        hdr = dict(var_frac_bits=3, gamma_shift=17) if i % 3 == 0 else dict(var_frac_bits=full.var_frac_bits,
                                                                             gamma_shift=full.gamma_shift)
        rows.append(([int(v) for v in x], dict(row_len=len(x), wide=1, token=1, eps_term=0, out8=0, **hdr), True))
        want.append([int(v) for v in y[0]])
        want_k.append(int(k[0, 0]))
        if i % 4 == 1:
            # The wide RMSNorm on the same instance, between token rows.
            p, e = params(len(x))
            rows.append(([int(v) for v in x], dict(row_len=len(x), wide=1, token=0, eps_term=0, out8=0,
                                                   var_frac_bits=p.var_frac_bits, gamma_shift=p.gamma_shift), True, e))
            want.append([int(v) for v in norm_wide(x[None, :], p, e)[0]])
            want_k.append(None)
    assert {0, 1, 16, 17} <= set(want_k)
    record = norm_channel("rmsnorm", 16)
    words = [record.to_int(gamma=int(full.gamma_q[c])) for c in range(MAX_ROW)]
    ks = []
    got, errors = _run(dut, rows, words=words, eps=eps, seed=8, token_ks=ks)
    assert not errors
    for i, (g, w, kk, wk) in enumerate(zip(got, want, ks, want_k)):
        assert g == w, (i, rows[i][0], g, w)
        if wk is not None:
            assert kk == [wk] * len(kk), (i, kk, wk)
