"""rtl.vector.norm LayerNorm / RMSNorm built for int32 rows (the int32 residual stream's norm) on the Amaranth
simulator vs ``golden.models.intops.norm_wide``, bit for bit: rows whose max |x| needs every pre-shift k = 0..17
(int32 extremes, -2^31 alone, all-equal rows, zero rows where eps decides, single elements, the longest row), int16
and int8 outputs, random stalls; int8 rows without ``wide`` through the same instance (``golden.norms``); bad
run-time values drop the row with BAD_PARAM, never hang."""

from __future__ import annotations

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from npuforge.golden.models.intops import norm_wide, wide_norm_params
from npuforge.golden.norms import layernorm, layernorm_params, rmsnorm, rmsnorm_params
from npuforge.rtl.vector.common import ErrorCode
from npuforge.rtl.vector.norm import LayerNorm, RMSNorm
from npuforge.sim.tb.vector_params import row_to_beats, unpack_lanes
from npuforge.sim.tb.vector_params_rows import norm_param_words
from npuforge.spec.vector_ops import NORM_EPS_SHIFTS, norm_channel

LANES, MAX_ROW = 4, 24


def _run(dut, rows, *, words, eps, seed=0, token_ks=None):
    """rows: (values, ports dict, expect output?[, eps table]) -> output rows (None for dropped rows), error codes.
    ``token_ks``: a list that receives, per output row, the ``token_k`` beside each of its beats."""
    rng = random.Random(seed)
    outs, errors = [], []

    async def tb(ctx):
        for addr, word in enumerate(words):
            ctx.set(dut.param_we, 1)
            ctx.set(dut.param_addr, addr)
            ctx.set(dut.param_data.as_value(), word)
            await ctx.tick()
        ctx.set(dut.param_we, 0)
        loaded = None
        for values, ports, good, *row_eps in rows:
            table = row_eps[0] if row_eps else eps
            if loaded is None or list(table) != list(loaded):
                # The eps table is read at each row's end: rewrite it only while the operator is idle.
                while ctx.get(dut.busy):
                    ctx.set(dut.o.ready, 1)
                    await ctx.tick()
                for j, e in enumerate(table):
                    ctx.set(dut.eps_we, 1)
                    ctx.set(dut.eps_addr, j)
                    ctx.set(dut.eps_data, int(e))
                    await ctx.tick()
                ctx.set(dut.eps_we, 0)
                loaded = table
            for name, v in ports.items():
                ctx.set(getattr(dut, name), v)
            beats = row_to_beats(values, 32, LANES)
            got, ks, sent, cycles = [], [], 0, 0
            while sent < len(beats) or (good and len(got) < len(beats)):
                send = sent < len(beats) and rng.random() < 0.8
                ctx.set(dut.i.valid, send)
                if send:
                    ctx.set(dut.i.payload.as_value(), beats[sent])
                ready = rng.random() < 0.8
                ctx.set(dut.o.ready, ready)
                fired = send and ctx.get(dut.i.ready)
                if ready and ctx.get(dut.o.valid):
                    got.append(int(ctx.get(dut.o.payload.as_value())))
                    if token_ks is not None:
                        ks.append(ctx.get(dut.token_k))
                await ctx.tick()
                sent += fired
                cycles += 1
                assert cycles < 5000, "hang"
            ctx.set(dut.i.valid, 0)
            if good:
                flat, lasts = [], []
                for word in got:
                    lanes, last = unpack_lanes(word, dut.out_width, LANES)
                    flat += lanes
                    lasts.append(last)
                assert lasts == [i == len(beats) - 1 for i in range(len(beats))]
                assert not any(flat[len(values):]), "tail lanes must be 0"
                outs.append(flat[:len(values)])
                if token_ks is not None:
                    token_ks.append(ks)
            else:
                for _ in range(200):
                    ctx.set(dut.o.ready, 1)
                    assert not ctx.get(dut.o.valid), "a dropped row produced output"
                    await ctx.tick()
                errors.append((ctx.get(dut.error), ctx.get(dut.error_code)))
                ctx.set(dut.clear, 1)
                await ctx.tick()
                ctx.set(dut.clear, 0)
                outs.append(None)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    return outs, errors


def _rows(rng):
    """int32 rows covering every pre-shift k (max |x| = 2^(14 + k) .. ), edges and lengths 1 .. MAX_ROW."""
    rows = []
    for k in range(NORM_EPS_SHIFTS):
        peak = min((1 << (14 + k)) + int(rng.integers(0, 1 << (13 + k))), (1 << 31) - 1) if k else 12345
        n = [1, 3, 4, 5, 9, MAX_ROW][k % 6]
        x = rng.integers(-peak, peak + 1, n)
        x[rng.integers(n)] = peak if k % 2 else -peak
        rows.append(x)
    rows += [np.full(7, -(1 << 31)), np.full(MAX_ROW, (1 << 31) - 1), np.zeros(5, np.int64),
             np.array([-(1 << 31)] + [0] * 6), np.where(np.arange(MAX_ROW) % 2, (1 << 31) - 1, -(1 << 31)),
             np.array([-(1 << 31) + 1, (1 << 31) - 1, 3]), np.full(6, 40000)]
    return rows


@pytest.mark.parametrize("kind,out_bits", [("layernorm", 16), ("rmsnorm", 16), ("layernorm", 8)])
def test_norm_wide_vs_golden(kind, out_bits):
    rng = np.random.default_rng({"layernorm": 1, "rmsnorm": 2}[kind] + out_bits)
    cls = LayerNorm if kind == "layernorm" else RMSNorm
    # int8 results come from the 16-bit-output operator with out8 (as in the NPU), G / B in its wider fields.
    dut = cls(lanes=LANES, max_row=MAX_ROW, in_width=32, out_width=16)
    out8 = int(out_bits == 8)
    gamma = rng.uniform(0.5, 1.5, MAX_ROW)
    gamma[0] = -1.9                                      # every prefix keeps the same gamma_shift
    beta = rng.uniform(-0.5, 0.5, MAX_ROW)
    in_scale, out_scale = 2.0 ** -12, 0.03 / (256 if out_bits == 16 else 1)
    built = {}

    def params(d):
        if d not in built:
            if kind == "layernorm":
                built[d] = wide_norm_params(layernorm_params, in_scale, gamma[:d], beta[:d], out_scale,
                                            out_bits=out_bits, eps=1e-5)
            else:
                built[d] = wide_norm_params(rmsnorm_params, in_scale, gamma[:d], out_scale, out_bits=out_bits,
                                            eps=1e-6)
        return built[d]
    full, eps = params(MAX_ROW)
    rows, want = [], []
    for x in _rows(rng):
        p, e = params(len(x))
        assert p.gamma_shift == full.gamma_shift
        rows.append(([int(v) for v in x], dict(row_len=len(x), wide=1, eps_term=0, var_frac_bits=p.var_frac_bits,
                                               gamma_shift=p.gamma_shift, out8=out8), True, e))
        want.append([int(v) for v in norm_wide(x[None, :], p, e)[0]])
    # int8 rows without `wide` through the same instance: golden.norms with the row's own eps_term.
    for n in (1, 13):
        x = rng.integers(-128, 128, n)
        p8 = (layernorm_params(0.05, gamma[:n], beta[:n], out_scale, out_bits=out_bits) if kind == "layernorm"
              else rmsnorm_params(0.05, gamma[:n], out_scale, out_bits=out_bits))
        assert p8.gamma_shift == full.gamma_shift
        rows.append(([int(v) for v in x], dict(row_len=n, wide=0, eps_term=p8.eps_term, out8=out8,
                                               var_frac_bits=p8.var_frac_bits, gamma_shift=p8.gamma_shift), True))
        fn = layernorm if kind == "layernorm" else rmsnorm
        want.append([int(v) for v in fn(x.astype(np.int8)[None, :], p8)[0]])
    record = norm_channel(kind, 16)
    words = [record.to_int(**{f.name: int(getattr(full, f"{f.name}_q")[c]) for f in record.fields})
             for c in range(MAX_ROW)]
    got, errors = _run(dut, rows, words=words, eps=eps, seed=3)
    assert not errors
    for i, (g, w) in enumerate(zip(got, want)):
        assert g == w, (i, rows[i][0], g, w)


def test_norm_wide_bad_parameters_drain():
    dut = LayerNorm(lanes=LANES, max_row=MAX_ROW, in_width=32, out_width=16)
    rng = np.random.default_rng(9)
    p, eps = wide_norm_params(layernorm_params, 2.0 ** -12, rng.uniform(0.5, 1.5, 8), np.zeros(8), 0.0001,
                              out_bits=16)
    x = [int(v) for v in rng.integers(-(1 << 31), 1 << 31, 8)]
    good = dict(row_len=8, wide=1, eps_term=0, var_frac_bits=p.var_frac_bits, gamma_shift=p.gamma_shift)
    rows = [(x, {**good, "gamma_shift": 17}, False), (x, {**good, "var_frac_bits": 3}, False), (x, good, True)]
    got, errors = _run(dut, rows, words=norm_param_words(p), eps=eps, seed=4)
    assert errors == [(1, ErrorCode.BAD_PARAM)] * 2
    assert got[2] == [int(v) for v in norm_wide(np.array(x)[None, :], p, eps)[0]]
