"""Exhaustive Amaranth-simulator check of the MAC: every operand byte pair in every mode vs Python products.

Vectorised: a harness holds 256 MACs, MAC ``i`` gets activation byte ``i`` while all get the same weight byte,
so 256 cycles cover all 65,536 (a, w) byte pairs of a mode (in w4a8 that is every int8 x int4 pair for both
weight nibbles, in int4 every int4 x int4 pair for all four lanes). Each pair starts a new sum (``load``),
so the accumulators must equal the products exactly, unused lanes 0.
"""

from __future__ import annotations

import random
import sys

import pytest
from amaranth import Cat, Elaboratable, Module, Signal
from amaranth.sim import Simulator

from npuforge.rtl.mac import MAC
from npuforge.spec.precision import MODE_CODES

N = 256
# The harness concatenates 256 MACs' accumulators into one wide signal; pysim prints its masks in decimal.
sys.set_int_max_str_digits(0)


def s8(x: int) -> int:
    return x - 256 if x & 0x80 else x


def s4(x: int) -> int:
    x &= 15
    return x - 16 if x & 8 else x


def reference_products(mode: str, a: int, w: int) -> list[int]:
    """Python products of the bytes as the mode reads them, lane 2*i + j (activation i, weight j)."""
    if mode == "int8":
        return [s8(a) * s8(w)]
    if mode == "w4a8":
        return [s8(a) * s4(w), s8(a) * s4(w >> 4)]
    return [s4(a) * s4(w), s4(a) * s4(w >> 4), s4(a >> 4) * s4(w), s4(a >> 4) * s4(w >> 4)]


class Harness(Elaboratable):
    """N MACs with shared mode/load/weight, activation byte i on MAC i, accumulators concatenated."""

    def __init__(self, n=N, **kw):
        self.n = n
        self.macs = [MAC(**kw) for _ in range(n)]
        self.lanes, self.acc_width = self.macs[0].lanes, self.macs[0].acc_width
        self.en, self.load, self.mode, self.w = Signal(init=1), Signal(), Signal(2), Signal(8)
        self.a_all = Signal(8 * n)
        self.acc_all = Signal(n * self.lanes * self.acc_width)

    def elaborate(self, platform):
        m = Module()
        accs = []
        for i, mac in enumerate(self.macs):
            m.submodules[f"mac{i}"] = mac
            m.d.comb += [mac.en.eq(self.en), mac.load.eq(self.load), mac.mode.eq(self.mode),
                         mac.w.eq(self.w), mac.a.eq(self.a_all[8 * i:8 * i + 8])]
            accs.append(mac.acc.as_value())
        m.d.comb += self.acc_all.eq(Cat(*accs))
        return m


def unpack(h: Harness, word: int) -> list[list[int]]:
    width, mask = h.acc_width, (1 << h.acc_width) - 1
    out = []
    for i in range(h.n):
        lanes = []
        for j in range(h.lanes):
            v = (word >> ((i * h.lanes + j) * width)) & mask
            lanes.append(v - (1 << width) if v >> (width - 1) else v)
        out.append(lanes)
    return out


def run_exhaustive(modes, *, precisions, pipeline, acc_width=32):
    """Feed (mode, w) per cycle for every mode and weight byte; return the number of mismatching lane values."""
    h = Harness(precisions=precisions, pipeline=pipeline, acc_width=acc_width)
    latency = h.macs[0].latency + 1  # operands -> accumulator output
    schedule = [(mode, w) for mode in modes for w in range(256)]
    checked = {"pairs": 0, "mismatches": []}

    async def tb(ctx):
        ctx.set(h.a_all, sum(a << (8 * a) for a in range(N)))
        ctx.set(h.load, 1)
        pending = []
        for step in range(len(schedule) + latency):
            if step < len(schedule):
                mode, w = schedule[step]
                # Interleave modes cycle by cycle as well: the mode travels with its operands.
                ctx.set(h.mode, MODE_CODES[mode])
                ctx.set(h.w, w)
                pending.append((step + latency, mode, w))
            await ctx.tick()
            if pending and pending[0][0] == step + 1:
                _, mode, w = pending.pop(0)
                got = unpack(h, ctx.get(h.acc_all))
                for a in range(N):
                    want = reference_products(mode, a, w)
                    want = want + [0] * (h.lanes - len(want))
                    checked["pairs"] += 1
                    if got[a] != want:
                        checked["mismatches"].append((mode, a, w, got[a], want))

    sim = Simulator(h)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return checked


def test_scalable_mac_exhaustive():
    modes = ("int8", "w4a8", "int4")
    result = run_exhaustive(modes, precisions=modes, pipeline=2)
    assert result["pairs"] == 3 * 65536
    assert result["mismatches"] == [], result["mismatches"][:5]


EDGE_BYTES = [0x80, 0x7F, 0x88, 0x77, 0x78, 0x87, 0x08, 0xF8, 0x00, 0xFF, 0x01, 0x0F, 0xF0, 0x8F, 0xF7, 0x7F]


@pytest.mark.parametrize("precisions, pipeline", [
    (("int8", "w4a8", "int4"), 1), (("int8", "w4a8", "int4"), 3), (("int8", "w4a8"), 2), (("int8", "w4a8"), 3),
])
def test_mac_depths_and_subsets_mode_interleaved(precisions, pipeline):
    """Other pipeline depths and the two-lane MAC, modes changing every cycle (each product keeps its mode).

    64 activation bytes (16 edge bytes + 48 random) against 60 weight bytes per configuration; the default
    depth 2 is covered exhaustively above, the depths differ only in where registers sit.
    """
    rng = random.Random(pipeline * 10 + len(precisions))
    a_values = EDGE_BYTES + [rng.randrange(256) for _ in range(48)]
    steps = [(precisions[i % len(precisions)], w) for i, w in
             enumerate(EDGE_BYTES + [rng.randrange(256) for _ in range(44)])]
    h = Harness(n=len(a_values), precisions=precisions, pipeline=pipeline, acc_width=32)
    latency = h.macs[0].latency + 1
    errors = []

    async def tb(ctx):
        ctx.set(h.a_all, sum(a << (8 * i) for i, a in enumerate(a_values)))
        ctx.set(h.load, 1)
        for step in range(len(steps) + latency):
            if step < len(steps):
                ctx.set(h.mode, MODE_CODES[steps[step][0]])
                ctx.set(h.w, steps[step][1])
            await ctx.tick()
            k = step + 1 - latency
            if 0 <= k < len(steps):
                mode, w = steps[k]
                got = unpack(h, ctx.get(h.acc_all))
                for i, a in enumerate(a_values):
                    want = reference_products(mode, a, w)
                    if got[i] != want + [0] * (h.lanes - len(want)):
                        errors.append((mode, a, w, got[i], want))

    sim = Simulator(h)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    assert errors == [], errors[:5]


def test_int8_only_mac_exhaustive():
    result = run_exhaustive(("int8",), precisions=("int8",), pipeline=2)
    assert result["pairs"] == 65536
    assert result["mismatches"] == [], result["mismatches"][:5]


@pytest.mark.parametrize("mode", ["int8", "w4a8", "int4"])
def test_mac_accumulates_long_sums_with_stalls(mode):
    """Sums of 64 random/edge products per MAC, with ``en`` low on random cycles (nothing may move)."""
    rng = random.Random(hash(mode) & 0xFFFF)
    h = Harness(n=32, precisions=("int8", "w4a8", "int4"), pipeline=2, acc_width=32)
    k_len = 64
    edge = [0x80, 0x7F, 0x88, 0x77, 0x00, 0xFF, 0x08, 0x78, 0x87]
    a_seq = [[rng.choice(edge) if rng.random() < 0.3 else rng.randrange(256) for _ in range(h.n)] for _ in range(k_len)]
    w_seq = [rng.choice(edge) if rng.random() < 0.3 else rng.randrange(256) for _ in range(k_len)]
    want = [[0] * h.lanes for _ in range(h.n)]
    for k in range(k_len):
        for i in range(h.n):
            for j, p in enumerate(reference_products(mode, a_seq[k][i], w_seq[k])):
                want[i][j] += p
    got = {}

    async def tb(ctx):
        ctx.set(h.mode, MODE_CODES[mode])
        k = 0
        while k < k_len:
            if rng.random() < 0.3:
                ctx.set(h.en, 0)
                ctx.set(h.a_all, rng.getrandbits(8 * h.n))  # garbage while stalled must not enter
                ctx.set(h.w, rng.randrange(256))
            else:
                ctx.set(h.en, 1)
                ctx.set(h.load, int(k == 0))
                ctx.set(h.a_all, sum(a << (8 * i) for i, a in enumerate(a_seq[k])))
                ctx.set(h.w, w_seq[k])
                k += 1
            await ctx.tick()
        # Flush with zero products (load low, operands 0) so the last products reach the accumulators.
        ctx.set(h.en, 1)
        ctx.set(h.load, 0)
        ctx.set(h.a_all, 0)
        ctx.set(h.w, 0)
        for _ in range(h.macs[0].latency + 1):
            await ctx.tick()
        got["acc"] = unpack(h, ctx.get(h.acc_all))

    sim = Simulator(h)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    assert got["acc"] == want
