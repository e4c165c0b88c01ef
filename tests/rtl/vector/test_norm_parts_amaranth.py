"""The LayerNorm / RMSNorm sub-components one by one on the Amaranth simulator, each against its step of
``golden.norms``: the statistics accumulator (step 1), the per-row constants (steps 2-5, checked through
``golden.norms.layernorm_normalized`` / ``rmsnorm_normalized``), the normaliser (step 6), the affine output (step 7)
and the row read-back sequencer. The whole operators are tested in test_rows_cocotb.py and test_norm_wide_amaranth.py."""

from __future__ import annotations

import random

import numpy as np
import pytest

from npuforge.golden.norms import _affine_out, layernorm_normalized, layernorm_params, rmsnorm_normalized, \
    rmsnorm_params
from npuforge.rtl.vector.norm_output import NormAffine, NormNormalise, NormRowReader
from npuforge.rtl.vector.norm_rsqrt import NormRowConstants
from npuforge.rtl.vector.norm_stats import NormStatistics
from tests.conftest import simulate


@pytest.mark.parametrize("centred", [True, False])
def test_statistics_sums_and_max_per_row(centred):
    lanes, max_row = 4, 13
    dut = NormStatistics(lanes=lanes, max_row=max_row, in_width=32, stat_width=16, centred=centred, track_max=True)
    rng = random.Random(5)
    rows = [[rng.randint(-2 ** 15, 2 ** 15 - 1) for _ in range(n)] for n in (1, 4, 5, 13, 7)]
    rows[2][1] = -2 ** 31                        # max |x| over the whole 32 bits (the low 16 bits are 0)
    got = []

    async def bench(ctx):
        for r, row in enumerate(rows):
            beats = [row[i:i + lanes] for i in range(0, len(row), lanes)]
            for j, beat in enumerate(beats):
                while rng.random() < 0.3:            # idle cycles between beats
                    await ctx.tick()
                ctx.set(dut.keep, 1)
                ctx.set(dut.push, j == len(beats) - 1)
                ctx.set(dut.lane_valid, (1 << len(beat)) - 1)
                ctx.set(dut.beat, beat + [rng.randint(-99, 99)] * (lanes - len(beat)))   # tail lanes: don't care
                ctx.set(dut.params.len, len(row))
                ctx.set(dut.params.bank, r % 2)
                await ctx.tick()
                ctx.set(dut.keep, 0)
            while not ctx.get(dut.o.valid):
                await ctx.tick()
            rec = ctx.get(dut.o.payload)
            got.append((rec.s1, rec.s2, rec.max, rec.params.len, rec.params.bank))
            ctx.set(dut.o.ready, 1)
            await ctx.tick()
            ctx.set(dut.o.ready, 0)
            assert not ctx.get(dut.busy)

    simulate(dut, bench)
    for r, (row, g) in enumerate(zip(rows, got)):
        low = [((v + 2 ** 15) % 2 ** 16) - 2 ** 15 for v in row]     # the statistics see the low 16 bits
        want = (sum(low) if centred else 0, sum(v * v for v in low), max(abs(v) for v in row), len(row), r % 2)
        assert g == want


@pytest.mark.parametrize("centred,in_bits", [(True, 8), (False, 8), (True, 16)])
def test_row_constants_normalise_like_golden(centred, in_bits):
    """y_i = (x_i*A + K) >> h with the unit's A, K, h equals golden steps 1-6 for random and edge rows."""
    lanes, max_row = 4, 64
    dut = NormRowConstants(lanes=lanes, max_row=max_row, in_width=in_bits, stat_width=in_bits, centred=centred,
                           wide_rows=False, steps_per_cycle=2)
    rng = np.random.default_rng(7 + in_bits)
    lim = 1 << (in_bits - 1)
    rows = [rng.integers(-lim, lim, int(n)) for n in rng.integers(1, max_row + 1, 6)]
    rows += [np.full(9, 5), np.full(3, -lim), np.zeros(4, np.int64), np.array([lim - 1]), np.array([-lim, lim - 1])]
    cases = []
    for x in rows:
        d = len(x)
        p = (layernorm_params(0.02, np.ones(d), np.zeros(d), 0.05, input_bits=in_bits) if centred
             else rmsnorm_params(0.02, np.ones(d), 0.05, input_bits=in_bits))
        eps = p.eps_term if rng.random() < 0.7 else 0      # eps = 0: a constant row has V_e = 0
        p = type(p)(**{**p.__dict__, "eps_term": eps})
        cases.append((x, p))
    got = []

    async def bench(ctx):
        for x, p in cases:
            xs = [int(v) for v in x]
            ctx.set(dut.i.payload.s1, sum(xs))
            ctx.set(dut.i.payload.s2, sum(v * v for v in xs))
            ctx.set(dut.i.payload.params.len, len(xs))
            ctx.set(dut.i.payload.params.eps, p.eps_term)
            ctx.set(dut.i.payload.params.frac, p.var_frac_bits)
            ctx.set(dut.i.payload.params.shift, p.gamma_shift)
            ctx.set(dut.i.valid, 1)
            while not ctx.get(dut.i.ready):
                await ctx.tick()
            await ctx.tick()
            ctx.set(dut.i.valid, 0)
            while not ctx.get(dut.o.valid):
                await ctx.tick()
            cst = ctx.get(dut.o.payload)
            got.append((cst.a, cst.k, cst.h, cst.t1, cst.len))
            ctx.set(dut.o.ready, 1)
            await ctx.tick()
            ctx.set(dut.o.ready, 0)

    simulate(dut, bench)
    for (x, p), (a, k, h, t1, length) in zip(cases, got):
        fn = layernorm_normalized if centred else rmsnorm_normalized
        want = fn(x.astype(np.int8 if in_bits == 8 else np.int16)[None, :], p)[0]
        assert [(int(v) * a + k) >> h for v in x] == [int(v) for v in want], (x, p)
        assert (t1, length) == (15 + p.gamma_shift, len(x))


def test_normalise_pipeline_with_stalls():
    lanes = 2
    dut = NormNormalise(lanes=lanes, x_width=16, a_shape=46, tag_shape=8)   # A: bit_length(8192) + 32 bits
    rng = random.Random(3)
    beats = []
    for _ in range(40):
        # Inside the contract: |x*A + K| < 2^(h+23), so y fits its 25 bits and the sum its 64.
        h = rng.randint(1, 40)
        beats.append(([rng.randint(-2 ** 15, 2 ** 15 - 1) for _ in range(lanes)], rng.randint(0, 2 ** min(h + 6, 46) - 1),
                      rng.randint(-2 ** (h + 21), 2 ** (h + 21)), h, rng.randint(0, 255)))
    got = []

    async def bench(ctx):
        sent = 0
        while len(got) < len(beats):
            en = rng.random() < 0.7
            ctx.set(dut.en, en)
            if sent < len(beats):
                x, a, k, h, tag = beats[sent]
                ctx.set(dut.valid_in, 1)
                ctx.set(dut.x, x)
                ctx.set(dut.a, a)
                ctx.set(dut.k, k)
                ctx.set(dut.h, h)
                ctx.set(dut.tag_in, tag)
            else:
                ctx.set(dut.valid_in, 0)
            if en and ctx.get(dut.valid):
                got.append((list(ctx.get(dut.y)), ctx.get(dut.tag)))
            await ctx.tick()
            sent += en and sent < len(beats)

    simulate(dut, bench)
    # The golden step 6 with A = D*Rcp and K = 2^(h-1) - s1*Rcp folded in: y = (x*A + K) >> h, floor shift.
    assert got == [([(v * a + k) >> h for v in x], tag) for x, a, k, h, tag in beats]


@pytest.mark.parametrize("out_width", [8, 16])
def test_affine_output_like_golden(out_width):
    lanes = 4
    dut = NormAffine(lanes=lanes, out_width=out_width)
    rng = np.random.default_rng(out_width)
    g_lim, b_lim = 1 << (out_width + 7), 1 << (out_width + 39)
    beats = []
    for j in range(30):
        y = rng.integers(-(1 << 23), 1 << 23, lanes)
        g = rng.integers(-g_lim, g_lim, lanes)
        b = rng.integers(-b_lim, b_lim, lanes) >> int(rng.integers(0, 40))
        shift = int(rng.integers(-15, 17))
        keep = int(rng.integers(1, 1 << lanes))
        out8 = int(out_width == 16 and j % 3 == 0)
        beats.append((y, g, b, shift, keep, out8, j == 29))
    got = []

    async def bench(ctx):
        sent = 0
        while len(got) < len(beats):
            en = bool(rng.random() < 0.7)
            ctx.set(dut.en, en)
            ctx.set(dut.valid_in, sent < len(beats))
            if sent < len(beats):
                y, g, b, shift, keep, out8, last = beats[sent]
                ctx.set(dut.y, [int(v) for v in y])
                ctx.set(dut.gamma, [int(v) for v in g])
                ctx.set(dut.beta, [int(v) for v in b])
                ctx.set(dut.t1, 15 + shift)
                ctx.set(dut.keep_in, keep)
                ctx.set(dut.out8, out8)
                ctx.set(dut.last_in, last)
            if en and ctx.get(dut.valid):
                got.append((list(ctx.get(dut.data)), ctx.get(dut.last)))
            await ctx.tick()
            sent += en and sent < len(beats)

    simulate(dut, bench)
    for (y, g, b, shift, keep, out8, last), (data, got_last) in zip(beats, got, strict=True):
        want = _affine_out(y, g, b, shift, 8 if out8 else out_width)
        assert data == [int(v) if keep >> k & 1 else 0 for k, v in enumerate(want)]
        assert got_last == last


def test_reader_reads_each_row_once_and_releases_its_half():
    lanes, max_row = 4, 10
    dut = NormRowReader(lanes=lanes, max_row=max_row)
    rng = random.Random(1)
    rows = [(n, n % 2, 7 * n) for n in (10, 1, 4, 5, 9)]      # (len, bank, a): a tags each beat with its row
    reads, beats, releases = [], [], []

    async def bench(ctx):
        queued = 0
        for _ in range(400):
            if queued < len(rows):
                n, bank, a = rows[queued]
                ctx.set(dut.i.valid, 1)
                ctx.set(dut.i.payload.len, n)
                ctx.set(dut.i.payload.bank, bank)
                ctx.set(dut.i.payload.a, a)
            else:
                ctx.set(dut.i.valid, 0)
            en = rng.random() < 0.6
            ctx.set(dut.en, en)
            taken = queued < len(rows) and ctx.get(dut.i.ready)
            if en and ctx.get(dut.busy) and not ctx.get(dut.i.ready):
                reads.append((ctx.get(dut.read_bank), ctx.get(dut.read_beat)))
            if ctx.get(dut.release):
                releases.append(ctx.get(dut.read_bank))
            if en and ctx.get(dut.valid):
                beats.append((ctx.get(dut.cst.a), ctx.get(dut.keep), ctx.get(dut.last)))
            await ctx.tick()
            queued += taken

    simulate(dut, bench)
    want_reads, want_beats = [], []
    for n, bank, a in rows:
        nb = -(-n // lanes)
        want_reads += [(bank, j) for j in range(nb)]
        want_beats += [(a, sum(1 << k for k in range(lanes) if j * lanes + k < n), j == nb - 1) for j in range(nb)]
    assert reads == want_reads
    assert beats == want_beats
    assert releases == [bank for _, bank, _ in rows]
