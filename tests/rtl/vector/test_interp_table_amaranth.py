"""rtl.vector.table.InterpTable (16-bit GELU / SiLU: 1025-entry int16 tables, linear interpolation) on the Amaranth
simulator vs ``golden.models.intops.interp_lookup``, bit for bit: every segment boundary and the int16 extremes, a
sweep of every 7th input code, both resident tables (GELU and SiLU from ``interp_table``, and tables of int16 extremes
whose interpolation overflows int16), rows of 1 .. 3 beats with random stalls; a bad table select and a write past
the tables flag BAD_PARAM / PARAM_ADDR without hanging."""

from __future__ import annotations

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from npuforge.golden.models.intops import INTERP_SHIFT, gelu_float, interp_lookup, interp_table, silu_float
from npuforge.rtl.vector.common import ErrorCode
from npuforge.rtl.vector.table import InterpTable
from npuforge.spec.vector_ops import INTERP_ENTRIES

LANES = 4


def _run(dut, tables, rows, *, seed=0, writes=None):
    """rows: (values, table_select, expect output?) -> output rows (None for dropped), final (error, code)."""
    rng = random.Random(seed)
    outs, state = [], {}

    async def tb(ctx):
        for addr, v in (writes if writes is not None else
                        [(t * INTERP_ENTRIES + j, int(v)) for t, tab in enumerate(tables) for j, v in enumerate(tab)]):
            ctx.set(dut.param_we, 1)
            ctx.set(dut.param_addr, addr)
            ctx.set(dut.param_data, v)
            await ctx.tick()
        ctx.set(dut.param_we, 0)
        for values, select, good in rows:
            ctx.set(dut.table_select, select)
            ctx.set(dut.row_len, len(values))
            beats = [values[i:i + LANES] for i in range(0, len(values), LANES)]
            got, sent, cycles = [], 0, 0
            while sent < len(beats) or (good and len(got) < len(beats)):
                send = sent < len(beats) and rng.random() < 0.8
                ctx.set(dut.i.valid, send)
                if send:
                    for k in range(LANES):
                        ctx.set(dut.i.payload.data[k], beats[sent][k] if k < len(beats[sent]) else 0)
                    ctx.set(dut.i.payload.last, sent == len(beats) - 1)
                ready = rng.random() < 0.8
                ctx.set(dut.o.ready, ready)
                fired = send and ctx.get(dut.i.ready)
                if ready and ctx.get(dut.o.valid):
                    got.append(([ctx.get(dut.o.payload.data[k]) for k in range(LANES)], ctx.get(dut.o.payload.last)))
                await ctx.tick()
                sent += fired
                cycles += 1
                assert cycles < 20000, "hang"
            ctx.set(dut.i.valid, 0)
            if good:
                assert [last for _, last in got] == [i == len(beats) - 1 for i in range(len(beats))]
                flat = [v for lanes, _ in got for v in lanes]
                assert not any(flat[len(values):]), "tail lanes must be 0"
                outs.append(flat[:len(values)])
            else:
                for _ in range(20):
                    ctx.set(dut.o.ready, 1)
                    assert not ctx.get(dut.o.valid), "a dropped row produced output"
                    await ctx.tick()
                outs.append(None)
        state["error"] = (ctx.get(dut.error), ctx.get(dut.error_code))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    return outs, state["error"]


def test_interp_table_vs_golden():
    rng = np.random.default_rng(1)
    gelu = interp_table(gelu_float, 1 / 2048, 1 / 4096)
    silu = interp_table(silu_float, 1 / 1024, 1 / 8192)
    extremes = np.where(np.arange(INTERP_ENTRIES) % 2, 32767, -32768)
    boundaries = sorted({-32768, 32767, -1, 0, 1} | {int(b) + d for b in range(-32768, 32768, 1 << INTERP_SHIFT)[::37]
                                                     for d in (-1, 0, 1) if -32768 <= int(b) + d <= 32767})
    sweep = list(range(-32768, 32768, 7))
    dut = InterpTable(lanes=LANES, max_row=4096)
    for tables in ((gelu, silu), (extremes, silu)):
        rows, want = [], []
        for select, table in enumerate(tables):
            for values in (boundaries, sweep[select::2][:600], [-32768], [32767, -32768, 5]):
                rows.append((values, select, True))
                want.append([int(v) for v in interp_lookup(np.array(values), table)])
        rows.append(([int(v) for v in rng.integers(-32768, 32768, 9)], 1, True))
        want.append([int(v) for v in interp_lookup(np.array(rows[-1][0]), tables[1])])
        got, error = _run(dut, tables, rows, seed=len(rows))
        assert error == (0, 0)
        for i, (g, w) in enumerate(zip(got, want)):
            assert g == w, (i, [(v, a, b) for v, a, b in zip(rows[i][0], g, w) if a != b][:5])


def test_interp_table_errors_drain():
    table = interp_table(gelu_float, 1 / 2048, 1 / 4096)
    dut = InterpTable(lanes=LANES, max_row=64, tables=1)
    got, error = _run(dut, [table], [([1, 2, 3], 1, False)])
    assert got == [None] and error == (1, ErrorCode.BAD_PARAM)
    dut = InterpTable(lanes=LANES, max_row=64, tables=1)
    got, error = _run(dut, [table], [([1, 2, 3], 0, True)], writes=[(INTERP_ENTRIES, 5)])
    assert error == (1, ErrorCode.PARAM_ADDR)
