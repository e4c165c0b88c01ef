"""Scratchpad on the Amaranth simulator vs a Python word-array model: narrow and word-interleaved wide reads.

Every cycle drives random (or directed) writes and reads on all ports; a read's data (one cycle later) must equal
the model's words at that address, including the word written in the same cycle (transparent reads), reads that
cross a bank boundary and reads that wrap past the last word. Wide reads are checked at every word offset.
"""

from __future__ import annotations

import random

import pytest
from amaranth.sim import Simulator

from npuforge.rtl.memories import Scratchpad, read_words_for


def _run(spad, ops):
    """Drive ``ops`` (one dict per cycle: ``wr`` (addr, data, byte-en) or None, ``rd``/``wide`` lists of addr or
    None per port) and return the mismatches against the model (empty when bit-exact) and the reads checked."""
    B, D, NI = spad.word_bytes, spad.depth, spad.read_words
    model = [0] * D
    result = {"bad": [], "checked": 0}

    def expect(addr, width):
        return sum(model[(addr + j) % D] << (8 * B * j) for j in range(width))

    async def tb(ctx):
        pending = []                       # (port, width, expected) of last cycle's reads
        for op in ops:
            wr = op.get("wr")
            ctx.set(spad.wr.en, 0 if wr is None else wr[2])
            if wr is not None:
                ctx.set(spad.wr.addr, wr[0])
                ctx.set(spad.wr.data, wr[1])
            reads = []
            for kind, width, arr in (("rd", 1, spad.rd), ("wide", NI, getattr(spad, "wide_rd", []))):
                for p, addr in enumerate(op.get(kind, [])):
                    ctx.set(arr[p].en, addr is not None)
                    if addr is not None:
                        ctx.set(arr[p].addr, addr)
                        reads.append((arr[p], width, addr))
            # Transparent read: apply this cycle's write to the model before computing what the reads return.
            if wr is not None:
                old = model[wr[0]]
                mask = sum(0xFF << (8 * i) for i in range(B) if wr[2] >> i & 1)
                model[wr[0]] = (old & ~mask) | (wr[1] & mask)
            now = [(port, width, expect(addr, width), addr) for port, width, addr in reads]
            await ctx.tick()
            for port, width, exp, addr in now:
                got = ctx.get(port.data)
                result["checked"] += 1
                if got != exp:
                    result["bad"].append((addr, width, hex(got), hex(exp)))
            pending = now
        # Data holds while en is low.
        for kind, arr in (("rd", spad.rd), ("wide", getattr(spad, "wide_rd", []))):
            for p in range(len(arr)):
                ctx.set(arr[p].en, 0)
        ctx.set(spad.wr.en, 0)
        await ctx.tick()
        for port, width, exp, addr in pending:
            if ctx.get(port.data) != exp:
                result["bad"].append(("hold", addr, width))

    sim = Simulator(spad)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return result


def _fill(B, D, rng):
    return [{"wr": (a, rng.getrandbits(8 * B), (1 << B) - 1)} for a in range(D)]


@pytest.mark.parametrize("B, D, banks, NI", [(8, 64, 2, 2), (4, 64, 4, 4), (8, 32, 1, 2), (16, 128, 2, 8),
                                             (8, 64, 2, 1)])
def test_wide_reads_every_offset_directed_and_random(B, D, banks, NI):
    rng = random.Random(B * 1000 + D + banks + NI)
    spad = Scratchpad(word_bytes=B, depth=D, banks=banks, read_ports=2, wide_ports=2, read_words=NI)
    ops = _fill(B, D, rng)
    # Directed: a wide read at every word address on both wide ports (bank crossings, wrap at the end), narrow
    # reads at every address.
    for a in range(D):
        ops.append({"wide": [a, (D - 1 - a)], "rd": [a, (a * 7) % D]})
    # Random: writes with random byte enables, mixed with reads of the word being written (transparency).
    for _ in range(400):
        wa = rng.randrange(D)
        op = {"wr": (wa, rng.getrandbits(8 * B), rng.getrandbits(B)) if rng.random() < 0.7 else None,
              "wide": [rng.choice([wa, wa - rng.randrange(NI) % D, rng.randrange(D), None]) for _ in range(2)],
              "rd": [rng.choice([wa, rng.randrange(D), None]) for _ in range(2)]}
        op["wide"] = [None if a is None else a % D for a in op["wide"]]
        ops.append(op)
    res = _run(spad, ops)
    assert res["bad"] == [] and res["checked"] > 2 * D


def test_edge_values_all_ones_and_zero_bytes():
    B, D, NI = 8, 32, 2
    spad = Scratchpad(word_bytes=B, depth=D, banks=2, read_ports=1, wide_ports=1, read_words=NI)
    ones = (1 << 8 * B) - 1
    ops = [{"wr": (a, ones if a % 3 else 0x80_7F_00_FF_01_FE_80_7F, (1 << B) - 1)} for a in range(D)]
    ops += [{"wide": [a], "rd": [a]} for a in range(D)]
    # Partial byte enables leave the other bytes.
    ops += [{"wr": (5, 0, 0b0101_0101)}, {"wide": [4], "rd": [5]}, {"wide": [5]}]
    res = _run(spad, ops)
    assert res["bad"] == []


@pytest.mark.parametrize("B, beats, expected", [
    (8, (8, 8), 1),        # 8x8 array, 64-bit bus: a beat fits a word
    (8, (16, 16), 2),      # 16x16 on 64-bit: two aligned words
    (4, (8, 8), 2),        # 8x8 on 32-bit
    (16, (16, 16), 1),     # 16x16 on 128-bit
    (8, (4, 4), 1),        # 4x4 test NPU
    (8, (32, 16), 4),      # 32 rows on 64-bit
    (8, (12, 8), 2),       # rows 12: beats at offsets 0, 4 of a word span <= 2 words
    (8, (6, 6), 2),        # 6-byte beats at byte 6 of a word span two words
    (4, (20, 4), 8),       # 20-byte beats at byte 0 of a 4-byte word: 5 words -> 8
])
def test_read_words_rule(B, beats, expected):
    assert read_words_for(B, beats) == expected
    # Check the rule's claim directly: every beat at a multiple of its size fits one read of I words.
    for n in beats:
        for off in range(0, 64 * n, n):
            first, last = off // B, (off + n - 1) // B
            assert last - first + 1 <= expected


@pytest.mark.parametrize("kw, needle", [
    ({"read_words": 3}, "read_words"), ({"read_words": 16}, "read_words"),
    ({"read_ports": 0, "wide_ports": 0}, "read port"), ({"wide_ports": 5}, "wide_ports"),
])
def test_bad_parameters(kw, needle):
    args = {"word_bytes": 8, "depth": 64, "banks": 2, "read_ports": 1, **kw}
    with pytest.raises(ValueError, match=needle):
        Scratchpad(**args)
