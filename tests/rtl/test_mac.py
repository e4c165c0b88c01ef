"""Exhaustive Amaranth-simulator check of the MAC (one multiplier block per MAC): every operand byte pair in every
8-bit mode, and every weight x a dense int16 sample in the 16-bit-activation modes, vs Python products.

Vectorised: a harness holds 256 MACs, MAC ``i`` gets activation ``i`` while all get the same weight byte, so 256
cycles cover all 65,536 (a, w) byte pairs of a mode (in w4a8 that is every int8 x int4 pair for both weight
nibbles, in int4 every int4 x int4 pair for all four lanes). Each pair starts a new sum (``load``), so the
accumulators must equal the products exactly, unused lanes 0.
"""

from __future__ import annotations

import random
import sys

import pytest
from amaranth import Cat, Elaboratable, Module, Signal
from amaranth.sim import Simulator

from npuforge.rtl.mac import ARITHMETICS, MAC
from npuforge.spec.precision import MODE_BITS, MODE_CODES

N = 256
# The harness concatenates 256 MACs' accumulators into one wide signal; pysim prints its masks in decimal.
sys.set_int_max_str_digits(0)


def s8(x: int) -> int:
    return x - 256 if x & 0x80 else x


def s4(x: int) -> int:
    x &= 15
    return x - 16 if x & 8 else x


def s16(x: int) -> int:
    x &= 0xFFFF
    return x - 65536 if x & 0x8000 else x


def reference_products(mode: str, a: int, w: int) -> list[int]:
    """Python products of the operands as the mode reads them, lane 2*i + j (activation i, weight j).

    ``a`` is the activation word (8-bit modes read bits 7..0 only), ``w`` the weight byte (w4a16: bits 3..0)."""
    if mode == "int8":
        return [s8(a & 0xFF) * s8(w)]
    if mode == "w4a8":
        return [s8(a & 0xFF) * s4(w), s8(a & 0xFF) * s4(w >> 4)]
    if mode == "w8a16":
        return [s16(a) * s8(w)]
    if mode == "w4a16":
        return [s16(a) * s4(w)]
    return [s4(a) * s4(w), s4(a) * s4(w >> 4), s4(a >> 4) * s4(w), s4(a >> 4) * s4(w >> 4)]


class Harness(Elaboratable):
    """N MACs with shared mode/load/weight, activation byte i on MAC i, accumulators concatenated."""

    def __init__(self, n=N, **kw):
        self.n = n
        self.macs = [MAC(**kw) for _ in range(n)]
        self.lanes, self.acc_width = self.macs[0].lanes, self.macs[0].acc_width
        self.act_width = aw = self.macs[0].act_width
        self.en, self.load, self.mode, self.w = Signal(init=1), Signal(), Signal(MODE_BITS), Signal(8)
        self.a_all = Signal(aw * n)
        self.acc_all = Signal(n * self.lanes * self.acc_width)

    def elaborate(self, platform):
        m = Module()
        accs = []
        for i, mac in enumerate(self.macs):
            m.submodules[f"mac{i}"] = mac
            m.d.comb += [mac.en.eq(self.en), mac.load.eq(self.load), mac.mode.eq(self.mode),
                         mac.w.eq(self.w), mac.a.eq(self.a_all[self.act_width * i:self.act_width * (i + 1)])]
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


def run_exhaustive(modes, *, precisions, pipeline, acc_width=32, activations=None, arith=None):
    """Feed (mode, w) per cycle for every mode and weight byte; return the pairs checked and the mismatches.

    ``activations`` (N words, default 0..255) are the MACs' activation words; ``modes`` may list
    ``(mode, activations)`` pairs to use other words for one mode. ``arith`` as :class:`rtl.mac.ProductUnit`'s
    (None: the simulator's default, ``split``)."""
    h = Harness(precisions=precisions, pipeline=pipeline, acc_width=acc_width, arith=arith)
    latency = h.macs[0].latency + 1  # operands -> accumulator output
    default = list(activations) if activations is not None else list(range(N))
    modes = [(m, default) if isinstance(m, str) else m for m in modes]
    schedule = [(mode, acts, w) for mode, acts in modes for w in range(256)]
    checked = {"pairs": 0, "mismatches": []}
    aw = h.act_width

    async def tb(ctx):
        ctx.set(h.load, 1)
        pending = []
        for step in range(len(schedule) + latency):
            if step < len(schedule):
                mode, acts, w = schedule[step]
                # Interleave modes cycle by cycle as well: the mode travels with its operands.
                ctx.set(h.mode, MODE_CODES[mode])
                ctx.set(h.w, w)
                ctx.set(h.a_all, sum((a & ((1 << aw) - 1)) << (aw * i) for i, a in enumerate(acts)))
                pending.append((step + latency, mode, acts, w))
            await ctx.tick()
            if pending and pending[0][0] == step + 1:
                _, mode, acts, w = pending.pop(0)
                got = unpack(h, ctx.get(h.acc_all))
                for a_i, a in enumerate(acts):
                    want = reference_products(mode, a, w)
                    want = want + [0] * (h.lanes - len(want))
                    checked["pairs"] += 1
                    if got[a_i] != want:
                        checked["mismatches"].append((mode, a, w, got[a_i], want))

    sim = Simulator(h)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return checked


#: Both arithmetics of the scalable product unit: ``block`` is what the ECP5 runs (every product in one 18x18
#: multiply), ``split`` what generic synthesis and the Verilator/Icarus models run; each is checked here.
ARITHS = pytest.mark.parametrize("arith", ARITHMETICS)


@ARITHS
def test_scalable_mac_exhaustive(arith):
    modes = ("int8", "w4a8", "int4")
    result = run_exhaustive(modes, precisions=modes, pipeline=2, arith=arith)
    assert result["pairs"] == 3 * 65536
    assert result["mismatches"] == [], result["mismatches"][:5]


ALL_MODES = ("int8", "w4a8", "int4", "w8a16", "w4a16")


def int16_sample(n: int, seed: int) -> list[int]:
    """``n`` distinct int16 words (as 16-bit patterns): every edge value, then random ones."""
    edges = {0, 1, 2, -1, -2, 0x7FFF, 0x7FFE, -0x8000, -0x7FFF, 0x7F, 0x80, -0x80, -0x81, 0xFF, 0x100, 0x5555,
             -0x5556, 0x7F80, -0x7F81}
    for k in range(16):
        for d in (-1, 0, 1):
            for v in ((1 << k) + d, -(1 << k) + d):
                if -0x8000 <= v <= 0x7FFF:
                    edges.add(v)
    rng = random.Random(seed)
    values = sorted(edges)
    while len(values) < n:
        v = rng.randrange(-0x8000, 0x8000)
        if v not in edges:
            edges.add(v)
            values.append(v)
    return [v & 0xFFFF for v in values[:n]]


#: The depth of each arithmetic's exhaustive 8-bit sweep on the five-mode MAC: ``block`` at 5, the register layout
#: the ECP5 runs (stage 0 holds the packed operands, a register between the bias adder and the lane extraction);
#: ``split`` at 2. The products do not depend on the depth; every depth is checked on edge operands, modes
#: interleaved, in test_mac_depths_and_subsets_mode_interleaved.
WIDE_8BIT_DEPTH = {"block": 5, "split": 2}


@ARITHS
def test_wide_mac_8bit_modes_exhaustive(arith):
    """The MAC with all five modes (16-bit activation port): every byte pair of the 8-bit modes, the upper
    activation byte random (the 8-bit modes must ignore it)."""
    rng = random.Random(16)
    acts = [a | (rng.randrange(256) << 8) for a in range(N)]
    result = run_exhaustive(("int8", "w4a8", "int4"), precisions=ALL_MODES, pipeline=WIDE_8BIT_DEPTH[arith],
                            activations=acts, arith=arith)
    assert result["pairs"] == 3 * 65536
    assert result["mismatches"] == [], result["mismatches"][:5]


@ARITHS
def test_wide_mac_16bit_modes_dense(arith):
    """w8a16 and w4a16: every weight byte (w4a16: every int4 weight under every garbage high nibble) x 512 int16
    activations (all edge values: 0, +-1, +-2^k +-1, -32768, 32767, ... and random ones), per product lane."""
    sample = int16_sample(2 * N, seed=3)
    halves = (sample[:N], sample[N:])
    modes = [(m, half) for m in ("w8a16", "w4a16") for half in halves]
    result = run_exhaustive(modes, precisions=ALL_MODES, pipeline=2, arith=arith)
    assert result["pairs"] == 4 * 65536
    assert result["mismatches"] == [], result["mismatches"][:5]
    assert -0x8000 & 0xFFFF in sample and 0x7FFF in sample


EDGE_BYTES = [0x80, 0x7F, 0x88, 0x77, 0x78, 0x87, 0x08, 0xF8, 0x00, 0xFF, 0x01, 0x0F, 0xF0, 0x8F, 0xF7, 0x7F]


@ARITHS
@pytest.mark.parametrize("precisions, pipeline", [
    (("int8", "w4a8", "int4"), 1), (("int8", "w4a8", "int4"), 3), (("int8", "w4a8"), 2), (("int8", "w4a8"), 3),
    (ALL_MODES, 1), (ALL_MODES, 2), (ALL_MODES, 3), (ALL_MODES, 4), (("int8",), 4), (("int8", "w8a16"), 2),
    (("int8", "int4", "w4a16"), 2), (("int8", "int4"), 2), (("int8", "w4a8", "int4"), 4),
    (ALL_MODES, 5), (("int8",), 5), (("int8", "w4a8", "int4"), 5),
])
def test_mac_depths_and_subsets_mode_interleaved(precisions, pipeline, arith):
    """Other pipeline depths and the two-lane MAC, modes changing every cycle (each product keeps its mode).

    64 activation bytes (16 edge bytes + 48 random) against 60 weight bytes per configuration; the exhaustive
    sweeps above run depths 2 and 5 (:data:`WIDE_8BIT_DEPTH`), the depths differ only in where registers sit.
    """
    rng = random.Random(pipeline * 10 + len(precisions))
    a_values = EDGE_BYTES + [rng.randrange(256) for _ in range(48)]
    if any(p.endswith("a16") for p in precisions):
        # Low byte as above, high byte from int16 edge/random words (8-bit modes must ignore it).
        a_values = [(u & 0xFF00) | a for a, u in zip(a_values, int16_sample(len(a_values), seed=pipeline))]
    steps = [(precisions[i % len(precisions)], w) for i, w in
             enumerate(EDGE_BYTES + [rng.randrange(256) for _ in range(44)])]
    h = Harness(n=len(a_values), precisions=precisions, pipeline=pipeline, acc_width=32, arith=arith)
    latency = h.macs[0].latency + 1
    errors = []

    async def tb(ctx):
        ctx.set(h.a_all, sum(a << (h.act_width * i) for i, a in enumerate(a_values)))
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


@pytest.mark.parametrize("mode", ALL_MODES)
def test_mac_accumulates_long_sums_with_stalls(mode):
    """Sums of 64 random/edge products per MAC, with ``en`` low on random cycles (nothing may move)."""
    rng = random.Random(sum(mode.encode()))
    precisions = ALL_MODES if mode.endswith("a16") else ("int8", "w4a8", "int4")
    h = Harness(n=32, precisions=precisions, pipeline=2, acc_width=32)
    k_len = 64
    edge = [0x80, 0x7F, 0x88, 0x77, 0x00, 0xFF, 0x08, 0x78, 0x87]
    if mode.endswith("a16"):
        edge_a = [0x8000, 0x7FFF, 0x8001, 0xFFFF, 0x0000, 0x0080, 0xFF80]
        a_seq = [[rng.choice(edge_a) if rng.random() < 0.3 else rng.randrange(1 << 16) for _ in range(h.n)]
                 for _ in range(k_len)]
    else:
        a_seq = [[rng.choice(edge) if rng.random() < 0.3 else rng.randrange(256) for _ in range(h.n)]
                 for _ in range(k_len)]
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
                ctx.set(h.a_all, rng.getrandbits(h.act_width * h.n))  # garbage while stalled must not enter
                ctx.set(h.w, rng.randrange(256))
            else:
                ctx.set(h.en, 1)
                ctx.set(h.load, int(k == 0))
                ctx.set(h.a_all, sum(a << (h.act_width * i) for i, a in enumerate(a_seq[k])))
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


def test_arith_follows_the_platform():
    """Generic elaboration computes with the fewest gates (split), the ECP5 with one block (block); int8-only is one
    8x8 multiply either way (block); a bad name is refused with the allowed ones."""
    from npuforge.rtl.dsp import TechTarget
    from npuforge.rtl.mac import ProductUnit

    assert ProductUnit().arith_for(None) == "split"
    assert ProductUnit().arith_for(TechTarget("ecp5")) == "block"
    assert ProductUnit(precisions=("int8",)).arith_for(None) == "block"
    assert ProductUnit(arith="block").arith_for(None) == "block"
    with pytest.raises(ValueError, match="arith must be one of block, split"):
        ProductUnit(arith="slices")
    assert len(ProductUnit(en_copies=2).en) == 2
    with pytest.raises(ValueError, match="en_copies must be 1 or 2, got 3"):
        ProductUnit(en_copies=3)
