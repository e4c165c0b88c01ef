"""Requant RTL on the Amaranth simulator vs ``golden.requant.requantize``, bit for bit.

Many random and boundary values (int32 extremes, every shift of the window, saturation both ways,
zero points), random valid/ready stalls, and the error paths (bad shift, address past the memory,
row_len 0 / above max_row, framing) which must raise ``error`` and never hang.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from npuforge.golden.requant import quantize_multiplier, requantize, requantize_biased
from npuforge.rtl.vector.common import ErrorCode
from npuforge.rtl.vector.requant import Requant
from npuforge.sim.tb.vector_params import SHIFT_MAX, SHIFT_MIN, requant_param_words, row_to_beats, beats_to_row

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def run_requant(dut: Requant, *, params, rows, row_len, zero_point=0, out_bits=8, stall=0.0, seed=0,
                writes=None, max_cycles=20000, bias=None, hi=None, row_k=None):
    """Write parameters, stream ``rows`` (lists of int32), collect output beats.

    ``writes`` overrides the parameter writes as (addr, word) pairs. ``hi`` (a ``wide`` unit): rows of the
    inputs' high 16 bits, sent beside ``rows`` with ``wide_en`` set. ``row_k`` (a ``row_shift`` unit): the rows'
    k_r bytes, written into the bias memory as the engine does (4 lanes bytes a group), with ``row_shift_en`` set.
    Returns (output beats, error, error_code, cycles).
    """
    rng = random.Random(seed)
    lanes = dut.lanes
    beats = [b for row in rows for b in row_to_beats(row, 32, lanes)]
    hi_beats = None if hi is None else [[int(v) for v in row[i:i + lanes]] + [0] * (lanes - len(row[i:i + lanes]))
                                        for row in hi for i in range(0, len(row), lanes)]
    if writes is None:
        writes = list(enumerate(requant_param_words(*params)))
    out = []
    result = {"in_cycles": [], "out_cycles": []}

    async def testbench(ctx):
        for addr, word in writes:
            ctx.set(dut.param_we, 1)
            ctx.set(dut.param_addr, addr)
            ctx.set(dut.param_data.as_value(), word)
            await ctx.tick()
        ctx.set(dut.param_we, 0)
        if bias is not None:   # one bias group (lanes channels) per cycle
            for g in range(-(-len(bias) // lanes)):
                ctx.set(dut.bias_we, 1)
                ctx.set(dut.bias_group, g)
                for j in range(lanes):
                    c = g * lanes + j
                    ctx.set(dut.bias_data[j], int(bias[c]) if c < len(bias) else 0)
                await ctx.tick()
            ctx.set(dut.bias_we, 0)
            ctx.set(dut.bias_en, 1)
        if row_k is not None:   # 4 * lanes k bytes per group: group g, lane j holds bytes 4 (g lanes + j) ..
            raw = bytes(int(k) for k in row_k) + bytes(4 * lanes)
            for g in range(-(-len(row_k) // (4 * lanes))):
                ctx.set(dut.bias_we, 1)
                ctx.set(dut.bias_group, g)
                for j in range(lanes):
                    at = 4 * (g * lanes + j)
                    ctx.set(dut.bias_data[j], int.from_bytes(raw[at:at + 4], "little", signed=True))
                await ctx.tick()
            ctx.set(dut.bias_we, 0)
            ctx.set(dut.rewind, 1)
            await ctx.tick()
            ctx.set(dut.rewind, 0)
            ctx.set(dut.row_shift_en, 1)
        ctx.set(dut.row_len, row_len)
        ctx.set(dut.zero_point, zero_point)
        ctx.set(dut.out_bits, out_bits)
        if hi is not None:
            ctx.set(dut.wide_en, 1)
        sent = 0
        cycles = 0
        idle = 0
        while cycles < max_cycles:
            send = sent < len(beats) and rng.random() >= stall
            ctx.set(dut.i.valid, send)
            if send:
                ctx.set(dut.i.payload.as_value(), beats[sent])
                if hi_beats is not None:
                    for j, v in enumerate(hi_beats[sent]):
                        ctx.set(dut.hi[j], v)
            ready = rng.random() >= stall
            ctx.set(dut.o.ready, ready)
            # Sample the handshake before the edge, as the hardware does.
            i_fire = send and ctx.get(dut.i.ready)
            o_fire = ready and ctx.get(dut.o.valid)
            if o_fire:
                out.append(ctx.get(dut.o.payload.as_value()))
                result["out_cycles"].append(cycles)
            if i_fire:
                result["in_cycles"].append(cycles)
            await ctx.tick()
            cycles += 1
            sent += int(i_fire)
            idle = idle + 1 if sent == len(beats) and not o_fire else 0
            if sent == len(beats) and idle > Requant.LATENCY + 4:
                break
        result["cycles"] = cycles
        result["sent"] = sent
        result["error"] = ctx.get(dut.error)
        result["error_code"] = ctx.get(dut.error_code)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    assert result["sent"] == len(beats), f"input not drained: {result['sent']} of {len(beats)} beats accepted"
    return out, result["error"], result["error_code"], result


def boundary_params(channels: int, rng: np.random.Generator):
    """Multipliers at both ends of the Q31 window and random ones; every shift of the window."""
    shifts = np.arange(SHIFT_MIN, SHIFT_MAX + 1)
    shift = np.resize(shifts, channels)
    rng.shuffle(shift)
    mult = rng.integers(1 << 30, 1 << 31, size=channels, dtype=np.int64)
    mult[0], mult[1 % channels] = 1 << 30, (1 << 31) - 1
    return mult, shift


def check_rows(out, rows, mult, shift, *, lanes, zero_point, out_bits, out_width):
    per_row = -(-len(rows[0]) // lanes)
    assert len(out) == per_row * len(rows), f"expected {per_row * len(rows)} output beats, got {len(out)}"
    for r, row in enumerate(rows):
        got, tail = beats_to_row(out[r * per_row:(r + 1) * per_row], out_width, lanes, len(row))
        want = requantize(np.array(row, dtype=np.int32), mult, shift, zero_point=zero_point, out_bits=out_bits)
        assert got == [int(v) for v in want], f"row {r}: RTL {got} != golden {want.tolist()}"
        assert all(v == 0 for v in tail), f"row {r}: tail lanes must be 0, got {tail}"


@pytest.mark.parametrize("lanes", [1, 4])
def test_requant_bias_33_bit_sum(lanes):
    """acc + bias in 33 bits (int32 extremes on both, so the sum leaves int32), every shift, random stalls."""
    rng = np.random.default_rng(7 + lanes)
    channels = 62
    mult, shift = boundary_params(channels, rng)
    bias = rng.integers(INT32_MIN, INT32_MAX + 1, size=channels, dtype=np.int64)
    bias[:4] = [INT32_MIN, INT32_MAX, INT32_MAX, 0]
    rows = [rng.integers(INT32_MIN, INT32_MAX + 1, size=channels, dtype=np.int64).tolist() for _ in range(3)]
    rows[0][:4] = [INT32_MIN, INT32_MAX, -1, INT32_MIN]
    dut = Requant(lanes=lanes, max_row=64, out_width=16)
    out, error, _, _ = run_requant(dut, params=(mult, shift), rows=rows, row_len=channels, zero_point=-7,
                                   out_bits=16, stall=0.3, seed=lanes, bias=bias)
    assert not error
    per_row = -(-channels // lanes)
    for r, row in enumerate(rows):
        got, _ = beats_to_row(out[r * per_row:(r + 1) * per_row], 16, lanes, channels)
        want = requantize_biased(np.array(row, dtype=np.int64), bias, mult, shift, zero_point=-7, out_bits=16)
        assert got == [int(v) for v in want], f"row {r}"
    # The sum left int32 somewhere (else this would test nothing beyond the plain requant).
    assert (np.abs(np.array(rows) + bias) > INT32_MAX).any()


@pytest.mark.parametrize("lanes,out_width,out_bits,zero_point", [
    (1, 8, 8, 0), (4, 8, 8, -5), (4, 16, 16, 3), (8, 16, 8, 127), (16, 16, 16, -32768), (4, 32, 32, -77),
    (2, 32, 16, 5), (2, 32, 8, 0)])
def test_requant_random_and_boundary(lanes, out_width, out_bits, zero_point):
    rng = np.random.default_rng(lanes * 100 + out_width + out_bits)
    channels = 62 if lanes < 16 else 64  # 62 = every shift of the window once
    dut = Requant(lanes=lanes, max_row=64, out_width=out_width)
    mult, shift = boundary_params(channels, rng)
    rows = [
        rng.integers(INT32_MIN, INT32_MAX + 1, size=channels, dtype=np.int64),  # full int32 range
        np.full(channels, INT32_MIN), np.full(channels, INT32_MAX),             # extremes
        rng.integers(-3000, 3000, size=channels),                               # typical GEMM sums
        rng.choice([0, 1, -1, 2, -2, INT32_MIN, INT32_MAX, 1 << 20, -(1 << 20)], size=channels),
    ]
    # Log-uniform magnitudes: every bit length 0..31 with both signs, so all shifts hit ties and carries.
    for _ in range(12):
        bits = rng.integers(0, 32, size=channels)
        mag = rng.integers(0, 1 << 62, size=channels) >> (62 - bits)
        rows.append(np.where(rng.random(channels) < 0.5, -mag, mag))
    rows = [[int(v) for v in r] for r in rows]
    out, err, code, _ = run_requant(dut, params=(mult, shift), rows=rows, row_len=channels,
                                    zero_point=zero_point, out_bits=out_bits, stall=0.3, seed=lanes)
    assert (err, code) == (0, ErrorCode.NONE)
    check_rows(out, rows, mult, shift, lanes=lanes, zero_point=zero_point,
               out_bits=out_bits, out_width=out_width)


def test_requant_scales_from_quantize_multiplier():
    """Realistic per-channel scales through golden.quantize_multiplier; saturation both ways."""
    rng = np.random.default_rng(7)
    lanes, channels = 4, 30
    scales = np.exp(rng.uniform(np.log(1e-6), np.log(0.9), size=channels))
    pairs = [quantize_multiplier(float(s)) for s in scales]
    mult = np.array([p[0] for p in pairs], dtype=np.int64)
    shift = np.array([p[1] for p in pairs], dtype=np.int64)
    dut = Requant(lanes=lanes, max_row=32)
    rows = [[int(v) for v in rng.integers(-(1 << 24), 1 << 24, size=channels)] for _ in range(6)]
    out, err, code, _ = run_requant(dut, params=(mult, shift), rows=rows, row_len=channels, zero_point=-7)
    assert (err, code) == (0, ErrorCode.NONE)
    check_rows(out, rows, mult, shift, lanes=lanes, zero_point=-7, out_bits=8, out_width=8)
    flat = np.concatenate([requantize(np.array(r), mult, shift, zero_point=-7) for r in rows])
    assert flat.min() == -128 and flat.max() == 127, "the case must saturate both ways"


def test_requant_full_throughput_cycle_count():
    """No stalls: one beat per cycle, latency Requant.LATENCY (deterministic cycle count)."""
    lanes, channels, n_rows = 4, 16, 8
    dut = Requant(lanes=lanes, max_row=16)
    mult, shift = np.full(channels, 1 << 30), np.zeros(channels, dtype=np.int64)
    rows = [[k * 1000 - 7000 for k in range(channels)]] * n_rows
    out, err, _, res = run_requant(dut, params=(mult, shift), rows=rows, row_len=channels)
    assert err == 0
    n_beats = n_rows * channels // lanes
    assert len(out) == n_beats
    first = res["in_cycles"][0]
    assert res["in_cycles"] == list(range(first, first + n_beats)), "input must be accepted every cycle"
    assert res["out_cycles"] == [c + Requant.LATENCY for c in res["in_cycles"]]
    check_rows(out, rows, mult, shift, lanes=lanes, zero_point=0, out_bits=8, out_width=8)


@pytest.mark.parametrize("case", ["shift_high", "shift_low", "addr_past_end", "row_len_zero",
                                  "row_len_above_max", "missing_last", "early_last", "out16_on_int8", "out_bits_12"])
def test_requant_errors_flag_and_drain(case):
    lanes, max_row = 4, 16
    dut = Requant(lanes=lanes, max_row=max_row)
    good = requant_param_words([1 << 30] * max_row, [0] * max_row)
    writes = list(enumerate(good))
    row_len = 8
    rows = [[100] * 8, [200] * 8]
    out_bits = 8
    expect = None
    if case == "shift_high":
        writes.append((3, (1 << 30) | ((SHIFT_MAX + 1) << 31)))
        expect = ErrorCode.BAD_PARAM
    elif case == "shift_low":
        writes.append((3, (1 << 30) | (((SHIFT_MIN - 1) & 0x7F) << 31)))
        expect = ErrorCode.BAD_PARAM
    elif case == "addr_past_end":
        writes.append((max_row, good[0]))
        expect = ErrorCode.PARAM_ADDR
    elif case == "row_len_zero":
        row_len, expect = 0, ErrorCode.ROW_LEN
    elif case == "row_len_above_max":
        row_len, expect = max_row + 1, ErrorCode.ROW_LEN
        rows = [[100] * (max_row + 4)]
    elif case == "missing_last":
        row_len, expect = 4, ErrorCode.ROW_FRAMING  # beat 0 is final but has no last
    elif case == "early_last":
        row_len, expect = 12, ErrorCode.ROW_FRAMING  # last on beat 1 of 3
    elif case == "out16_on_int8":
        out_bits, expect = 16, ErrorCode.BAD_PARAM
    elif case == "out_bits_12":
        out_bits, expect = 12, ErrorCode.BAD_PARAM
    out, err, code, _ = run_requant(dut, params=None, writes=writes, rows=rows, row_len=row_len,
                                    out_bits=out_bits, stall=0.2, seed=3)
    assert (err, code) == (1, expect)
    if case in ("shift_high", "shift_low", "addr_past_end"):
        # Rejected writes leave the memory intact: the rows still come out right.
        check_rows(out, rows, [1 << 30] * 8, [0] * 8, lanes=lanes, zero_point=0, out_bits=8, out_width=8)
    elif case == "early_last":
        # A streaming operator learns of an early `last` only on that beat: the beats before it
        # were already sent (beat 0 of each row), the faulty beat itself is dropped.
        assert len(out) == 2, f"expected only beat 0 of each row, got {len(out)} beats"
    else:
        assert out == [], f"a bad row must produce no output, got {len(out)} beats"


def test_requant_param_helper_rejects_bad_values():
    with pytest.raises(ValueError, match="shift"):
        requant_param_words([1 << 30], [SHIFT_MAX + 1])
    with pytest.raises(ValueError, match="multiplier"):
        requant_param_words([1 << 31], [0])
    with pytest.raises(ValueError, match="equal lengths"):
        requant_param_words([1, 2], [0])
    with pytest.raises(ValueError, match="out_width"):
        Requant(lanes=4, out_width=12)
    with pytest.raises(ValueError, match="lanes"):
        Requant(lanes=3)
