"""The vector sequencer's row streamer (rtl.controller.vec_rows.RowStreamer) on the Amaranth simulator: rows of 1-,
2- and 4-byte elements from a scratchpad model through a loopback "operator" and back, over word sizes 4 / 8, lanes
1 .. word, row lengths around the lane and word boundaries, one or two operands, with random stalls on every
handshake and on the DMA-shared ports. Every byte of the scratchpad after the run must equal the Python model's:
each output row exactly ``ceil(n * out_bytes / word)`` words at the word stride (tails 0), nothing else touched.
"""

from __future__ import annotations

import random

import pytest
from amaranth.lib import stream
from amaranth.sim import Simulator

from npuforge.rtl.controller.vec_rows import RowStreamer
from npuforge.rtl.vector.common import VecBeat

SPAD_WORDS = 256


def _signed(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def _loopback(a: int, b: int) -> int:
    """The test's operator: a value any element size and lane mix shows up in (int32 lanes)."""
    return _signed(a * 3 + 1 + 5 * b, 32)


def _run_case(B, L, m, n, a_lb, b_lb, o_lb, two, seed):
    rng = random.Random(seed)
    dut = RowStreamer(word_bytes=B, spad_aw=8, lanes=L,
                      i_signature=stream.Signature(VecBeat(32, L)).flip(), o_signature=stream.Signature(VecBeat(32, L)),
                      b_signature=stream.Signature(VecBeat(32, L)).flip())
    ea, eb, eo = 1 << a_lb, 1 << b_lb, 1 << o_lb
    words = lambda e: -(-(n * e) // B)
    src, src2 = 0, m * words(ea)
    dst = src2 + m * words(eb) + 1                          # not adjacent: a write past a row end would show
    mem = bytearray(rng.randrange(256) for _ in range(SPAD_WORDS * B))
    a_vals = [[rng.randrange(-(1 << (8 * ea - 1)), 1 << (8 * ea - 1)) for _ in range(n)] for _ in range(m)]
    b_vals = [[rng.randrange(-(1 << (8 * eb - 1)), 1 << (8 * eb - 1)) for _ in range(n)] for _ in range(m)]
    for base, e, vals in ((src, ea, a_vals), (src2, eb, b_vals)):
        for r, row in enumerate(vals):
            at = (base + r * words(e)) * B
            mem[at:at + n * e] = b"".join(v.to_bytes(e, "little", signed=True) for v in row)
    want = bytearray(mem)
    for r in range(m):
        at = (dst + r * words(eo)) * B
        row = b"".join(_signed(_loopback(a_vals[r][j], b_vals[r][j] if two else 0), 8 * eo).to_bytes(
            eo, "little", signed=True) for j in range(n))
        want[at:at + words(eo) * B] = row + bytes(words(eo) * B - len(row))
    result = {"done": False}

    async def tb(ctx):
        for sig, v in ((dut.m, m), (dut.n, n), (dut.src_word, src), (dut.src2_word, src2), (dut.dst_word, dst),
                       (dut.a_lb, a_lb), (dut.b_lb, b_lb), (dut.o_lb, o_lb), (dut.two, two)):
            ctx.set(sig, v)
        await ctx.tick()
        ctx.set(dut.setup, 1)
        await ctx.tick()
        ctx.set(dut.setup, 0)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        qa, qb, out = [], [], []
        pos = {"a": 0, "b": 0}
        rd_data = {"rd": 0, "rd2": 0}
        for cycle in range(40 * (m * (words(4) + n) + 20)):
            ctx.set(dut.rd.data, rd_data["rd"])
            ctx.set(dut.rd2.data, rd_data["rd2"])
            ctx.set(dut.wr_block, rng.random() < 0.2)
            ctx.set(dut.rd2_block, rng.random() < 0.2)
            ctx.set(dut.a.ready, rng.random() < 0.7)
            ctx.set(dut.b.ready, rng.random() < 0.7)
            o_valid = bool(out) and rng.random() < 0.8
            ctx.set(dut.o.valid, o_valid)
            if out:
                lanes, last = out[0]
                for k in range(L):
                    ctx.set(dut.o.payload.data[k], lanes[k])
                ctx.set(dut.o.payload.last, last)
            reads = {p: (ctx.get(getattr(dut, p).en), ctx.get(getattr(dut, p).addr)) for p in ("rd", "rd2")}
            wr_en, wr_addr, wr_data = ctx.get(dut.wr.en), ctx.get(dut.wr.addr), ctx.get(dut.wr.data)
            fired = {}
            for name, q in (("a", qa), ("b", qb)):
                port = getattr(dut, name)
                if ctx.get(port.valid) and ctx.get(port.ready):
                    fired[name] = ([ctx.get(port.payload.data[k]) for k in range(L)], ctx.get(port.payload.last))
            o_fire = o_valid and ctx.get(dut.o.ready)
            finished = ctx.get(dut.finished)
            await ctx.tick()
            for p, (en, addr) in reads.items():
                if en:
                    rd_data[p] = int.from_bytes(mem[addr * B:(addr + 1) * B], "little")
            if wr_en:
                assert wr_en == (1 << B) - 1, "partial-word write"
                mem[wr_addr * B:(wr_addr + 1) * B] = wr_data.to_bytes(B, "little")
            for name, (lanes, last) in fired.items():
                # The operator's rule: lanes past the row end are don't-care on input, 0 on output.
                keep = [pos[name] + k < n for k in range(L)]
                assert last == (pos[name] + L >= n), f"{name}: last on the wrong beat"
                pos[name] = 0 if last else pos[name] + L
                (qa if name == "a" else qb).append(([v if kp else None for v, kp in zip(lanes, keep)], last))
            while qa and (qb or not two):
                la, last = qa.pop(0)
                lb_ = qb.pop(0)[0] if two else [0] * L
                out.append(([0 if x is None else _loopback(x, y or 0) & 0xFFFFFFFF for x, y in zip(la, lb_)], last))
            if o_fire:
                out.pop(0)
            if finished:
                result["done"] = True
                break
        assert result["done"], "the streamer never finished (hang)"
        ctx.set(dut.o.valid, 0)      # the operator has no beat left (the last one was taken as the streamer finished)
        for _ in range(4):
            await ctx.tick()
        assert ctx.get(dut.idle), "readers not idle after the last row"

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    assert result["done"]
    bad = [i for i in range(len(mem)) if mem[i] != want[i]]
    assert not bad, (f"B={B} L={L} m={m} n={n} lb={a_lb},{b_lb},{o_lb} two={two}: {len(bad)} bytes differ, first at "
                     f"byte {bad[0]} (word {bad[0] // B}): got {mem[bad[0]]}, want {want[bad[0]]}")


CASES = []
for B in (4, 8):
    for L in sorted({1, 2, B}):
        for a_lb, o_lb in ((0, 0), (1, 0), (2, 0), (0, 1), (2, 1), (1, 2), (2, 2)):
            for n in sorted({1, L + 1, 2 * B + 3}):
                CASES.append((B, L, 2, n, a_lb, 0, o_lb, 0))
CASES += [(8, 8, 3, 17, 2, 0, 1, 1), (8, 4, 2, 9, 0, 0, 0, 1), (4, 4, 2, 5, 1, 2, 2, 1), (8, 2, 1, 64, 2, 1, 0, 1)]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "B{}-L{}-m{}-n{}-lb{}{}{}-two{}".format(*c))
def test_row_streamer_element_sizes(case):
    _run_case(*case, seed=hash(case) & 0xFFFF)
