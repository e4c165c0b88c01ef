"""cocotb testbench of the row operators (LayerNorm, RMSNorm, softmax) against the golden model, bit for bit.

``ROWS_CFG`` (JSON) names the operator (``op``: ``layernorm`` | ``rmsnorm`` | ``softmax``) and its generation
parameters (``lanes``, ``max_row``, ``in_width``, ``out_width``) and ``seed``. Every output element is compared
with ``golden.norms`` / ``golden.softmax``; tail lanes past the row end must be 0 and ``last`` must mark each
row's final beat. Rows of
different lengths stream back to back (the run-time ports change with each row's first beat), with random
valid/ready stalls on both streams. Bad parameters must raise ``error`` with the right code, drain the row
(no hang) and produce no output.
"""

from __future__ import annotations

import json
import os
import random

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from npuforge.golden.norms import layernorm, layernorm_params, rmsnorm, rmsnorm_params
from npuforge.golden.models.llama import SCORE_SCALE
from npuforge.golden.softmax import softmax, softmax_params, softmax_q15
from npuforge.rtl.vector.common import ErrorCode
from npuforge.sim.tb.vector_params import row_to_beats, unpack_lanes
from npuforge.sim.tb.vector_params_rows import norm_param_words, norm_ports, softmax_ports

CFG = json.loads(os.environ.get("ROWS_CFG", "{}"))
#: The operators' ``error_code`` values: the RTL's one table (rtl.vector.common.ErrorCode).
ERROR_NONE, ERROR_ROW_LEN, ERROR_BAD_PARAM, ERROR_PARAM_ADDR, ERROR_ROW_FRAMING = (
    ErrorCode.NONE, ErrorCode.ROW_LEN, ErrorCode.BAD_PARAM, ErrorCode.PARAM_ADDR, ErrorCode.ROW_FRAMING)
#: Cycles without progress after which the testbench declares a hang.
HANG_CYCLES = 20000


# ----------------------------------------------------------------------------------------------
# Golden-backed operator model
# ----------------------------------------------------------------------------------------------

class NormModel:
    """LayerNorm / RMSNorm with one gamma/beta set whose every prefix is the parameter set of a shorter row.

    gamma's largest magnitude sits in channel 0, so ``gamma_shift`` (and hence every G_i and B_i) is the same
    for every row length D: the parameter memory is written once, and rows of any D stream back to back
    with only the scalar ports (row_len, eps_term, var_frac_bits, gamma_shift) changing per row.
    """

    def __init__(self, cfg, rng: np.random.Generator):
        self.kind = cfg["op"]
        self.max_row = cfg["max_row"]
        self.in_width = cfg.get("in_width", 8)
        self.out_width = cfg.get("out_width", 8)
        gamma = rng.normal(1.0, 0.3, self.max_row)
        gamma[0] = -(np.abs(gamma).max() + 0.25)
        self.gamma = gamma
        self.beta = rng.normal(0.0, 0.4, self.max_row)
        self.in_scale = 0.05 if self.in_width == 8 else 0.05 / 256
        self.out_scale = 0.04 if self.out_width == 8 else 0.04 / 256
        self._cache = {}

    def params(self, d: int, eps: float = 1e-5):
        key = (d, eps)
        if key not in self._cache:
            if self.kind == "layernorm":
                p = layernorm_params(self.in_scale, self.gamma[:d], self.beta[:d], self.out_scale,
                                     input_bits=self.in_width, eps=eps, out_bits=self.out_width)
            else:
                p = rmsnorm_params(self.in_scale, self.gamma[:d], self.out_scale, input_bits=self.in_width,
                                   eps=eps, out_bits=self.out_width)
            self._cache[key] = p
        return self._cache[key]

    def param_words(self):
        return norm_param_words(self.params(self.max_row))

    def ports(self, d: int, eps: float = 1e-5) -> dict:
        return norm_ports(self.params(d, eps), max_row=self.max_row, in_width=self.in_width,
                          out_width=self.out_width)

    def expected(self, row: np.ndarray, eps: float = 1e-5) -> list[int]:
        p = self.params(len(row), eps)
        dtype = np.int8 if self.in_width == 8 else np.int16
        fn = layernorm if self.kind == "layernorm" else rmsnorm
        return [int(v) for v in fn(row.astype(dtype)[None, :], p)[0]]

    def row(self, values, lanes, eps=1e-5):
        values = np.asarray(values, dtype=np.int64)
        return Row(values, self.ports(len(values), eps), width=self.in_width, lanes=lanes,
                   expected=self.expected(values, eps))

    def bad_port_cases(self, ports):
        return [(ERROR_BAD_PARAM, {**ports, "gamma_shift": 17}), (ERROR_BAD_PARAM, {**ports, "gamma_shift": -16}),
                (ERROR_BAD_PARAM, {**ports, "var_frac_bits": 3}), (ERROR_BAD_PARAM, {**ports, "var_frac_bits": 30})]


class SoftmaxModel:
    """Softmax rows; ``causal`` rows carry their query position (golden row index + row_offset)."""

    def __init__(self, cfg, rng: np.random.Generator):
        self.max_row = cfg["max_row"]
        self.in_width = cfg.get("in_width", 16)
        self.out_width = 16
        # Scores spread over a few units of exp: most rows keep several non-zero probabilities.
        # 32-bit scores: real-model logits at 2^-16 (golden.models.llama.SCORE_SCALE).
        self.params = softmax_params({8: 0.06, 16: 0.004, 32: SCORE_SCALE}[self.in_width], input_bits=self.in_width)

    def param_words(self):
        return []

    def row(self, values, lanes, *, causal=False, query_pos=0, q15=False, valid_len=None):
        """``q15``: Q0.15 output (golden ``softmax_q15``); ``valid_len``: the padding mask (None: off)."""
        values = np.asarray(values, dtype=np.int64)
        dtype = {8: np.int8, 16: np.int16, 32: np.int32}[self.in_width]
        mask = None if valid_len is None else np.arange(len(values)) >= valid_len
        fn = softmax_q15 if q15 else softmax
        expected = fn(values.astype(dtype)[None, :], self.params, causal=causal, row_offset=query_pos, mask=mask)[0]
        ports = softmax_ports(self.params, row_len=len(values), max_row=self.max_row, in_width=self.in_width,
                              causal=causal, query_pos=query_pos, q15=q15, valid_len=valid_len)
        return Row(values, ports, width=self.in_width, lanes=lanes, expected=[int(v) for v in expected])

    def bad_port_cases(self, ports):
        return [(ERROR_BAD_PARAM, {**ports, "exp_shift": 32}), (ERROR_BAD_PARAM, {**ports, "exp_shift": -31}),
                # the padding mask of valid_len 0 masks every column
                (ERROR_BAD_PARAM, {**ports, "pad": 1, "valid_len": 0})]


# ----------------------------------------------------------------------------------------------
# Stream driving
# ----------------------------------------------------------------------------------------------

class Row:
    """One input row: values, the scalar ports to hold while it enters, and the beats to send."""

    def __init__(self, values, ports: dict, *, width: int, lanes: int, beats=None, expected=None):
        self.values = [int(v) for v in values]
        self.ports = ports
        self.beats = beats if beats is not None else row_to_beats(self.values, width, lanes)
        self.expected = expected


async def setup(dut):
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.i__valid.value = 0
    dut.o__ready.value = 0
    if hasattr(dut, "param_we"):  # softmax has no parameter memory
        dut.param_we.value = 0
    dut.clear.value = 0
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    await RisingEdge(dut.clk)


async def write_params(dut, words, start=0):
    if not words:  # softmax: no parameter memory (and no param_* ports)
        return
    for addr, word in enumerate(words, start):
        dut.param_we.value = 1
        dut.param_addr.value = addr
        dut.param_data.value = word
        await RisingEdge(dut.clk)
    dut.param_we.value = 0


def set_ports(dut, ports: dict):
    for name, value in ports.items():
        getattr(dut, name).value = value


async def send_rows(dut, rows, rng: random.Random, stall: float, trace: dict):
    """Present every beat of every row, setting the row's ports with its first beat; idle randomly."""
    for row in rows:
        set_ports(dut, row.ports)
        for beat in row.beats:
            while rng.random() < stall:
                dut.i__valid.value = 0
                await RisingEdge(dut.clk)
            dut.i__valid.value = 1
            dut.i__payload.value = beat
            waited = 0
            while True:
                await ReadOnly()
                fired = bool(dut.i__ready.value)
                await RisingEdge(dut.clk)
                if fired:
                    break
                waited += 1
                assert waited < HANG_CYCLES, "input stream stalled: the operator never accepted a beat (hang)"
            trace.setdefault("first_in", trace["cycle"])
        dut.i__valid.value = 0
    trace["sent"] = True


async def receive(dut, n_beats: int, rng: random.Random, stall: float, trace: dict) -> list[int]:
    """Take ``n_beats`` output beats with random ready stalls; fail on a hang."""
    out = []
    idle = 0
    while len(out) < n_beats:
        ready = rng.random() >= stall
        dut.o__ready.value = int(ready)
        await ReadOnly()
        if ready and dut.o__valid.value:
            payload = dut.o__payload.value
            assert payload.is_resolvable, f"output beat {len(out)} has X/Z bits: {payload}"
            out.append(int(payload))
            idle = 0
        else:
            idle += 1
            assert idle < HANG_CYCLES, f"no output for {HANG_CYCLES} cycles after {len(out)} of {n_beats} beats (hang)"
        await RisingEdge(dut.clk)
    dut.o__ready.value = 0
    return out


async def count_cycles(dut, trace):
    while True:
        await RisingEdge(dut.clk)
        trace["cycle"] += 1


async def run_rows(dut, rows, *, lanes, out_width, seed=0, stall_in=0.0, stall_out=0.0):
    """Stream ``rows``, return (per-row output values, trace); checks tail lanes and ``last`` flags."""
    rng_in, rng_out = random.Random(seed), random.Random(seed + 1)
    trace = {"cycle": 0}
    counter = cocotb.start_soon(count_cycles(dut, trace))
    n_beats = sum(len(r.beats) for r in rows)
    sender = cocotb.start_soon(send_rows(dut, rows, rng_in, stall_in, trace))
    beats = await receive(dut, n_beats, rng_out, stall_out, trace)
    await sender
    counter.cancel()
    trace["end"] = trace["cycle"]
    results = []
    pos = 0
    for r_idx, row in enumerate(rows):
        vals = []
        for b_idx, word in enumerate(beats[pos:pos + len(row.beats)]):
            lane_vals, last = unpack_lanes(word, out_width, lanes)
            assert last == (b_idx == len(row.beats) - 1), f"row {r_idx}: `last` wrong on output beat {b_idx}"
            vals.extend(lane_vals)
        pos += len(row.beats)
        tail = vals[len(row.values):]
        assert all(v == 0 for v in tail), f"row {r_idx}: lanes past the row end must be 0, got {tail}"
        results.append(vals[:len(row.values)])
    return results, trace


def check_rows(rows, results, what):
    for r_idx, (row, got) in enumerate(zip(rows, results)):
        if got != row.expected:
            bad = [(j, row.values[j], got[j], row.expected[j]) for j in range(len(got)) if got[j] != row.expected[j]]
            raise AssertionError(f"{what}: row {r_idx} (D={len(row.values)}): {len(bad)} mismatches, first "
                                 f"(index, x, rtl, golden): {bad[:5]}")


# ----------------------------------------------------------------------------------------------
# Tests
# ----------------------------------------------------------------------------------------------

def context():
    lanes = CFG["lanes"]
    seed = CFG.get("seed", 1)
    rng = np.random.default_rng(seed)
    model = SoftmaxModel(CFG, rng) if CFG["op"] == "softmax" else NormModel(CFG, rng)
    return lanes, seed, rng, model


def row_lengths(lanes, max_row):
    lengths = {1, 2, 3, lanes, lanes + 1, 2 * lanes - 1, 37, 100, 384, max_row - 1, max_row}
    return sorted(d for d in lengths if 1 <= d <= max_row)


def make_row(model, values, lanes, eps=1e-5):
    if isinstance(model, SoftmaxModel):
        return model.row(values, lanes)
    return model.row(values, lanes, eps)


def input_range(model):
    return -(1 << (model.in_width - 1)), (1 << (model.in_width - 1)) - 1


@cocotb.test()
async def test_random_rows_all_lengths(dut):
    """Random rows of every interesting length (1, lanes +- 1, ..., max_row), back to back, mild stalls."""
    lanes, seed, rng, model = context()
    await setup(dut)
    await write_params(dut, model.param_words())
    lo, hi = input_range(model)
    # Full-range rows and rows of small values (the latter keep many softmax probabilities non-zero).
    rows = [make_row(model, rng.integers(lo, hi + 1, size=d) // scale, lanes)
            for d in row_lengths(lanes, model.max_row) for scale in (1, 64)]
    results, _ = await run_rows(dut, rows, lanes=lanes, out_width=model.out_width, seed=seed,
                                stall_in=0.1, stall_out=0.1)
    check_rows(rows, results, "random rows")
    assert not dut.error.value, f"unexpected error code {int(dut.error_code.value)}"


@cocotb.test()
async def test_edge_rows(dut):
    """All min, all max, one huge outlier, constant rows with eps = 0 (V_e = 0), alternating extremes."""
    lanes, seed, rng, model = context()
    await setup(dut)
    await write_params(dut, model.param_words())
    lo, hi = input_range(model)
    rows = []
    for d in sorted({1, lanes + 1, 64, model.max_row}):
        d = min(d, model.max_row)
        small = rng.integers(-3, 4, size=d)
        outlier = small.copy()
        outlier[rng.integers(d)] = hi
        neg_outlier = small.copy()
        neg_outlier[-1] = lo
        alternating = np.where(np.arange(d) % 2 == 0, lo, hi)
        for values in (np.full(d, lo), np.full(d, hi), outlier, neg_outlier, alternating, np.zeros(d),
                       np.full(d, -8), np.full(d, 7)):
            rows.append(make_row(model, values, lanes))
        if isinstance(model, NormModel):
            # eps = 0: a constant row has no spread at all (V_e = 0, y = 0 by definition).
            for values in (np.full(d, 5), np.zeros(d), np.full(d, lo), small):
                rows.append(make_row(model, values, lanes, eps=0.0))
        else:
            # Two maxima far from the rest; a ramp that underflows exp along the row.
            two = np.full(d, lo)
            two[0] = two[-1] = hi
            rows.append(make_row(model, two, lanes))
            rows.append(make_row(model, np.clip(hi - 40 * np.arange(d), lo, hi), lanes))
    results, _ = await run_rows(dut, rows, lanes=lanes, out_width=model.out_width, seed=seed)
    check_rows(rows, results, "edge rows")
    assert not dut.error.value, f"unexpected error code {int(dut.error_code.value)}"


@cocotb.test()
async def test_random_stalls(dut):
    """Heavy random valid/ready stalls on both streams, mixed row lengths."""
    lanes, seed, rng, model = context()
    await setup(dut)
    await write_params(dut, model.param_words())
    lo, hi = input_range(model)
    lengths = [int(d) for d in rng.integers(1, min(model.max_row, 200) + 1, size=12)]
    rows = [make_row(model, rng.integers(lo, hi + 1, size=d), lanes) for d in lengths]
    results, _ = await run_rows(dut, rows, lanes=lanes, out_width=model.out_width, seed=seed + 7,
                                stall_in=0.5, stall_out=0.6)
    check_rows(rows, results, "stalled rows")


@cocotb.test()
async def test_back_to_back_throughput(dut):
    """Rows of the longest tested length back to back without stalls: exact, and the rate is logged."""
    lanes, seed, rng, model = context()
    await setup(dut)
    await write_params(dut, model.param_words())
    lo, hi = input_range(model)
    d = min(model.max_row, 384)
    rows = [make_row(model, rng.integers(lo, hi + 1, size=d), lanes) for _ in range(6)]
    results, trace = await run_rows(dut, rows, lanes=lanes, out_width=model.out_width, seed=seed)
    check_rows(rows, results, "back-to-back rows")
    cycles = trace["end"] - trace["first_in"]
    dut._log.info(f"{CFG['op']} lanes={lanes} D={d}: {len(rows) * d / cycles:.3f} elements/cycle "
                  f"({cycles} cycles for {len(rows)} rows)")


async def expect_error(dut, code, rows_after, model, lanes):
    """The row just sent raised ``code``; no output came out; after ``clear`` good rows pass exactly."""
    for _ in range(50):
        await ReadOnly()
        assert not dut.o__valid.value, "a dropped row produced output"
        await RisingEdge(dut.clk)
    assert dut.error.value == 1, "error flag not raised"
    assert int(dut.error_code.value) == code, f"error_code {int(dut.error_code.value)}, expected {code}"
    dut.clear.value = 1
    await RisingEdge(dut.clk)
    dut.clear.value = 0
    await RisingEdge(dut.clk)
    assert dut.error.value == 0, "clear did not reset error"
    results, _ = await run_rows(dut, rows_after, lanes=lanes, out_width=model.out_width)
    check_rows(rows_after, results, "rows after an error")


async def send_only(dut, rows):
    """Send rows that must be drained (no output expected); fails if the input hangs."""
    trace = {"cycle": 0}
    dut.o__ready.value = 1
    await send_rows(dut, rows, random.Random(3), 0.0, trace)


@cocotb.test()
async def test_bad_parameters_flag_and_drain(dut):
    """row_len 0 / above max_row, framing, bad gamma_shift / var_frac_bits, a parameter write past the end."""
    lanes, seed, rng, model = context()
    await setup(dut)
    await write_params(dut, model.param_words())
    lo, hi = input_range(model)
    d = min(model.max_row, 2 * lanes + 3)
    good = make_row(model, rng.integers(lo, hi + 1, size=d), lanes)
    width = model.in_width
    values = list(rng.integers(lo, hi + 1, size=d))

    cases = []
    cases.append((ERROR_ROW_LEN, Row(values, {**good.ports, "row_len": 0}, width=width, lanes=lanes)))
    row_len_max = (1 << model.max_row.bit_length()) - 1
    over = Row(list(rng.integers(lo, hi + 1, size=model.max_row + 1)), {**good.ports, "row_len": row_len_max},
               width=width, lanes=lanes)
    cases.append((ERROR_ROW_LEN, over))
    early = row_to_beats(values[:max(1, d - lanes - 1)], width, lanes)  # `last` arrives too early
    cases.append((ERROR_ROW_FRAMING, Row(values, good.ports, width=width, lanes=lanes, beats=early)))
    late = row_to_beats(values + [0] * (2 * lanes), width, lanes)        # no `last` on the final beat
    cases.append((ERROR_ROW_FRAMING, Row(values, good.ports, width=width, lanes=lanes, beats=late)))
    for code, ports in model.bad_port_cases(good.ports):
        cases.append((code, Row(values, ports, width=width, lanes=lanes)))
    for code, bad in cases:
        await send_only(dut, [bad])
        await expect_error(dut, code, [good], model, lanes)

    if isinstance(model, NormModel):
        # A write past the end is ignored (it must not wrap onto channel 0) and flagged.
        await write_params(dut, [(1 << len(dut.param_data)) - 1], start=model.max_row)
        await expect_error(dut, ERROR_PARAM_ADDR, [good], model, lanes)


@cocotb.test()
async def test_causal_mask(dut):
    """Softmax only: causal rows with query positions 0 (one column), inside the row, and past its end."""
    lanes, seed, rng, model = context()
    assert isinstance(model, SoftmaxModel), "test_causal_mask is a softmax test (select it only for softmax)"
    await setup(dut)
    lo, hi = input_range(model)
    rows = []
    for d in sorted({1, lanes + 1, 50, model.max_row}):
        for qpos in sorted({0, 1, d // 2, d - 2, d - 1, d, d + 5}):
            if qpos < 0:
                continue
            values = rng.integers(lo, hi + 1, size=d) // 64
            if d > 2:
                values[-1] = hi  # the largest score sits in a masked column for most positions
            rows.append(model.row(values, lanes, causal=True, query_pos=int(qpos)))
    results, _ = await run_rows(dut, rows, lanes=lanes, out_width=model.out_width, seed=seed,
                                stall_in=0.2, stall_out=0.2)
    check_rows(rows, results, "causal rows")


@cocotb.test()
async def test_q15_and_padding(dut):
    """Softmax only: Q0.15 int16 rows and uint8 rows interleaved, padding masks (valid_len 1, inside the row, the
    whole row, past it), padding with causal, edge scores (all min / all max / both extremes), stalls."""
    lanes, seed, rng, model = context()
    assert isinstance(model, SoftmaxModel), "test_q15_and_padding is a softmax test (select it only for softmax)"
    await setup(dut)
    lo, hi = input_range(model)
    rows = []
    for d in sorted({1, lanes + 1, 37, model.max_row}):
        near = rng.integers(-(1 << min(model.in_width - 2, 18)), 1 << min(model.in_width - 2, 18), size=d)
        extremes = np.where(np.arange(d) % 3 == 0, lo, hi)
        for values in (near, rng.integers(lo, hi + 1, size=d), np.full(d, lo), np.full(d, hi), extremes):
            for valid in sorted({None, 1, max(1, d // 2), d, d + 3}, key=lambda v: -1 if v is None else v):
                for q15 in (False, True):
                    rows.append(model.row(values, lanes, q15=q15, valid_len=valid))
        rows.append(model.row(near, lanes, q15=True, valid_len=max(1, d // 2), causal=True, query_pos=d // 3))
    results, _ = await run_rows(dut, rows, lanes=lanes, out_width=model.out_width, seed=seed,
                                stall_in=0.2, stall_out=0.2)
    check_rows(rows, results, "Q0.15 / padded rows")
    for row, got in zip(rows, results):
        if row.ports["q15"]:
            assert all(0 <= v <= (1 << 15) - 1 for v in got), "Q0.15 codes out of range"
    assert not dut.error.value, f"unexpected error code {int(dut.error_code.value)}"
