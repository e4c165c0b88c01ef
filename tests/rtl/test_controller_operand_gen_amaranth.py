"""The MATMUL unit's operand generators (rtl/controller/operand_gen.py) alone on the Amaranth simulator, against an
independent Python model of the beats they must emit: A rows (``a``) and B rows (``w``) of weight-stationary MATMULs in
the 8-bit, 16-bit-activation and w4a16 layouts, output-stationary B walks, the idle cases (OS ``a``, B^T ``w``), on
random and edge shapes (K of one element, K = rows, K = rows + 1, one A row, B rows shorter than a fold, unaligned
strides, beats spanning words), with a random-latency consumer and several instructions back to back. The whole
engine runs in tests/rtl/test_matmul_*_amaranth.py and tests/rtl/npu."""

from __future__ import annotations

import random

import pytest

from npuforge.rtl.controller.operand_gen import OperandGenerator
from tests.conftest import simulate

SPAD_AW = 10


def model_beats(kind, cfg, p, mem):
    """The beats (data as an int of ``beat_bytes`` little-endian bytes, last-of-fold) the generator must emit.

    The scratchpad is the byte string ``mem`` (word w at bytes ``w * word_bytes``). Loops, outermost first: n-folds
    of ``n_step`` B-row bytes (C, or C/2 packed nibbles in w4a16), then k-folds of ``rows`` K values (WS) or m-tiles of
    ``rows`` A rows (OS ``w``), then the fold's beats."""
    B, R, C, width = cfg["word_bytes"], cfg["rows"], cfg["cols"], cfg["beat_bytes"]
    if (kind == "a" and p["is_os"]) or (kind == "w" and p["b_trans"]):
        return []                                        # the transposers read the operand instead
    kpack = p.get("kpack", 0)                            # K-packed w4a16 codes: rows / 2 stored rows a fold
    n_step = C // 2 if (p["is_w4a16"] and not kpack) else C
    n_folds = max(1, -(-p["b_row_bytes"] // n_step))
    k_folds = max(1, -(-p["kk"] // R))
    elem = 2 if (kind == "a" and p["is_wide"]) else 1

    def beat(first_byte, valid):
        data = bytes(mem[first_byte:first_byte + valid]) + bytes(width - valid)
        return int.from_bytes(data, "little")

    out = []
    for n in range(n_folds):
        noff = n * n_step
        b_valid = min(n_step, p["b_row_bytes"] - noff)
        if kind == "w" and p["is_os"]:
            m_tiles = max(1, -(-p["a_rows"] // R))
            for _ in range(m_tiles):
                for k in range(p["kk"]):                 # B rows 0..K-1 of the n-tile, again per m-tile
                    row = p["b_word"] + k * p["b_stride"]
                    out.append((beat(row * B + noff, b_valid), k == p["kk"] - 1))
            continue
        for kf in range(k_folds):
            k0 = kf * R
            if kind == "a":
                valid = elem * min(R, p["kk"] - k0)
                for r in range(p["a_rows"]):
                    row = p["a_word"] + r * p["a_stride"]
                    out.append((beat(row * B + elem * k0, valid), r == p["a_rows"] - 1))
            else:
                beats, k_per_beat = (R // 2, 2) if kpack else (R, 1)
                for r in range(beats):
                    row = p["b_word"] + kf * p["b_fold_step"] + r * p["b_stride"]
                    valid = b_valid if k0 + k_per_beat * r < p["kk"] else 0   # B rows past K are zero
                    out.append((beat(row * B + noff, valid), r == beats - 1))
    return out


def _instruction(rng, kind, cfg, *, kk=None, a_rows=None, b_row_bytes=None, is_wide=0, is_w4a16=0, is_os=0,
                 b_trans=0, kpack=0):
    """Random MATMUL operand parameters that fit the scratchpad (rows of each operand at a stride >= their length)."""
    B, R = cfg["word_bytes"], cfg["rows"]
    kk = kk if kk is not None else rng.randint(1, 3 * R + 1)
    a_rows = a_rows if a_rows is not None else rng.randint(1, 2 * R + 1)
    b_row_bytes = b_row_bytes if b_row_bytes is not None else rng.randint(1, 3 * cfg["cols"])
    a_len = kk * (2 if is_wide else 1)
    a_stride = -(-a_len // B) + rng.randint(0, 2)
    b_stride = -(-b_row_bytes // B) + rng.randint(0, 2)
    a_word = rng.randint(0, 40)
    b_word = rng.randint(0, 40) + a_word + a_rows * a_stride + 2
    return dict(kk=kk, a_rows=a_rows, a_word=a_word, b_word=b_word, a_stride=a_stride, b_stride=b_stride,
                b_row_bytes=b_row_bytes, b_fold_step=(R // 2 if kpack else R) * b_stride, is_wide=is_wide,
                is_w4a16=is_w4a16, is_os=is_os, b_trans=b_trans, kpack=kpack)


def _run(kind, cfg, instructions, seed):
    rng = random.Random(seed)
    dut = OperandGenerator(kind=kind, spad_aw=SPAD_AW, **cfg)
    B, NI = cfg["word_bytes"], cfg["read_words"]
    mem = bytes(rng.getrandbits(8) for _ in range(B << SPAD_AW)) + bytes(B * NI)
    width = 8 * cfg["beat_bytes"]
    got_all = []

    async def bench(ctx):
        for p in instructions:
            want = model_beats(kind, cfg, p, mem)
            for name, value in p.items():
                ctx.set(getattr(dut.params, name), value)
            ctx.set(dut.go, 1)
            await ctx.tick()
            ctx.set(dut.go, 0)
            got, idle = [], 0
            # Until every wanted beat has come and 30 more cycles have passed without a beat.
            while len(got) < len(want) or idle < 30:
                ready = int(rng.random() < 0.6)
                ctx.set(dut.o.ready, ready)
                en, addr = ctx.get(dut.rd.en), ctx.get(dut.rd.addr)
                if ctx.get(dut.o.valid) and ready:
                    payload = ctx.get(dut.o.payload)
                    got.append((payload & ((1 << width) - 1), bool(payload >> width)))
                    idle = 0
                else:
                    idle += 1
                assert len(got) <= len(want) + 1, "more beats than the model"
                await ctx.tick()
                if en:       # a synchronous read: the NI words at addr arrive the cycle after en
                    ctx.set(dut.rd.data, int.from_bytes(mem[addr * B:(addr + NI) * B], "little"))
            got_all.append((got, want))

    simulate(dut, bench)
    for i, (got, want) in enumerate(got_all):
        assert len(got) == len(want), (i, instructions[i], len(got), len(want))
        for j, (g, w) in enumerate(zip(got, want)):
            assert g == w, (i, instructions[i], j, hex(g[0]), g[1], hex(w[0]), w[1])


def _cfg(kind, *, word_bytes, read_words, rows, cols, wide=False, w4a16=False, has_os=False, has_bt=False):
    precisions = ("int8", "w4a8", "int4") + (("w8a16",) if wide else ()) + (("w4a16",) if w4a16 else ())
    beat_bytes = (2 * rows if wide else rows) if kind == "a" else cols
    return dict(word_bytes=word_bytes, read_words=read_words, rows=rows, cols=cols, beat_bytes=beat_bytes,
                precisions=precisions, wide=wide, has_os=has_os, has_bt=has_bt)


# (word_bytes, read_words, rows, cols): beats within a word, beats spanning two words read at once, and beats wider
# than one read (several reads per beat).
GEOMETRIES = [(8, 1, 4, 4), (8, 2, 8, 8), (4, 1, 8, 4), (16, 1, 4, 8)]


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=lambda g: "B%d_I%d_%dx%d" % g)
@pytest.mark.parametrize("kind", ["a", "w"])
def test_ws_beats_match_the_model(kind, geometry):
    B, NI, R, C = geometry
    cfg = _cfg(kind, word_bytes=B, read_words=NI, rows=R, cols=C)
    rng = random.Random(B * 1000 + NI * 100 + R * 10 + C + (kind == "a"))
    edges = [dict(kk=1, a_rows=1, b_row_bytes=1), dict(kk=R, a_rows=R, b_row_bytes=C),
             dict(kk=R + 1, a_rows=R + 1, b_row_bytes=C + 1), dict(kk=2 * R, a_rows=3, b_row_bytes=C - 1)]
    instructions = [_instruction(rng, kind, cfg, **e) for e in edges] + [_instruction(rng, kind, cfg) for _ in range(3)]
    _run(kind, cfg, instructions, seed=B * 100 + R)


@pytest.mark.parametrize("kind", ["a", "w"])
def test_16_bit_activation_and_w4a16_beats_match_the_model(kind):
    cfg = _cfg(kind, word_bytes=8, read_words=2, rows=4, cols=4, wide=True, w4a16=True)
    rng = random.Random(16 if kind == "a" else 17)
    instructions = [_instruction(rng, kind, cfg, is_wide=1, kk=5), _instruction(rng, kind, cfg, is_w4a16=1),
                    _instruction(rng, kind, cfg, is_wide=1, is_w4a16=1, kk=1, b_row_bytes=5),
                    # K-packed codes (block-scaled w4a16): rows / 2 stored rows of cols bytes a fold, zero past k
                    _instruction(rng, kind, cfg, is_wide=1, is_w4a16=1, kpack=1, kk=64, b_row_bytes=9),
                    _instruction(rng, kind, cfg, is_wide=1, is_w4a16=1, kpack=1, kk=6, b_row_bytes=4),
                    _instruction(rng, kind, cfg)]
    _run(kind, cfg, instructions, seed=3)


@pytest.mark.parametrize("kind", ["a", "w"])
def test_output_stationary_and_transposed_b_walks(kind):
    """OS: ``w`` repeats B rows 0..K-1 per m-tile and ``a`` stays idle; B^T: ``w`` stays idle; a WS MATMUL after
    them runs normally."""
    cfg = _cfg(kind, word_bytes=8, read_words=1, rows=4, cols=4, has_os=True, has_bt=True)
    rng = random.Random(5)
    instructions = [_instruction(rng, kind, cfg, is_os=1, kk=3, a_rows=9, b_row_bytes=6),
                    _instruction(rng, kind, cfg, is_os=1, kk=1, a_rows=1, b_row_bytes=4),
                    _instruction(rng, kind, cfg, b_trans=1),
                    _instruction(rng, kind, cfg)]
    _run(kind, cfg, instructions, seed=9)
