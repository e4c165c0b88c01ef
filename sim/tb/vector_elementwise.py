"""cocotb testbench of the streaming vector operators (requant, activation table, residual, gate, RoPE).

One module serves every operator: ``VEC_OP`` names it and ``VEC_CFG`` (JSON) carries the generation
parameters (``lanes``, ``max_row``, ...). Each operator has an ``OpModel`` (``sim.tb.vector_models``) that writes
its run-time parameters, makes input rows and computes the expected output with the golden function; the same
models drive the opcode-selected unit (``sim.tb.vector_unit``) through a different :class:`Ports`. This module holds
the port access, the stream drivers, the output check and the tests.

Every output element is compared with golden bit for bit, tail lanes must be 0, and random
valid/ready stalls are applied on every stream.
"""

from __future__ import annotations

import json
import os
import random

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge, Timer
from cocotb.clock import Clock

from npuforge.rtl.vector.common import ErrorCode
from npuforge.sim.tb.vector_models import OpModel, make_model
from npuforge.sim.tb.vector_params import beats_to_row, row_to_beats, unpack_lanes

#: The operators' ``error_code`` values: the RTL's one table (rtl.vector.common.ErrorCode).
ERROR_NONE, ERROR_ROW_LEN, ERROR_BAD_PARAM, ERROR_PARAM_ADDR, ERROR_ROW_FRAMING, ERROR_BAD_OPCODE = (
    ErrorCode.NONE, ErrorCode.ROW_LEN, ErrorCode.BAD_PARAM, ErrorCode.PARAM_ADDR, ErrorCode.ROW_FRAMING,
    ErrorCode.BAD_OPCODE)


# ----------------------------------------------------------------------------------------------
# Port access: standalone operator or the opcode-selected unit
# ----------------------------------------------------------------------------------------------

class Ports:
    """Names of a standalone operator's ports (``i``/``a``/``b``/``o``, ``param_*``, scalars)."""

    def __init__(self, dut):
        self.dut = dut

    def scalar(self, name):
        return getattr(self.dut, name)

    def stream(self, name):
        """(valid, ready, payload) handles of stream ``name``."""
        d = self.dut
        return getattr(d, f"{name}__valid"), getattr(d, f"{name}__ready"), getattr(d, f"{name}__payload")

    def in_streams(self, model):
        return ("a", "b") if model.two_operand else ("i",)

    async def select(self, model):
        """Standalone operators need no opcode."""

    def stream_widths(self, model):
        """Lane widths of the input streams (a/i, b): the operator's own."""
        return None

    async def write_param(self, model, addr, value):
        d = self.dut
        d.param_we.value = 1
        d.param_addr.value = addr
        d.param_data.value = value
        await RisingEdge(d.clk)
        d.param_we.value = 0

    @property
    def out_width(self):
        return None  # the model's own width


# ----------------------------------------------------------------------------------------------
# Stream drivers
# ----------------------------------------------------------------------------------------------

async def send_beats(clk, stream, beats, rng: random.Random, stall: float):
    """Offer ``beats`` in order with random valid gaps; a beat counts when valid & ready at an edge."""
    valid, ready, payload = stream
    k = 0
    while k < len(beats):
        offer = rng.random() >= stall
        valid.value = int(offer)
        if offer:
            payload.value = beats[k]
        await ReadOnly()
        taken = offer and int(ready.value) == 1
        await RisingEdge(clk)
        k += int(taken)
    valid.value = 0


async def recv_beats(clk, stream, n, rng: random.Random, stall: float, out: list, cycles: list,
                     timeout: int):
    """Take ``n`` beats with random ready gaps; record each beat and the cycle it arrived."""
    valid, ready, payload = stream
    cycle = 0
    while len(out) < n:
        want = rng.random() >= stall
        ready.value = int(want)
        await ReadOnly()
        if want and int(valid.value) == 1:
            out.append(int(payload.value))
            cycles.append(cycle)
        await RisingEdge(clk)
        cycle += 1
        if cycle > timeout:
            raise AssertionError(f"timeout: got {len(out)} of {n} output beats after {cycle} cycles")
    ready.value = 0


async def reset(dut):
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    # Icarus starts inputs at X, and X on a valid would flow into the pipeline's valid flags.
    for name in ("clear", "param_we", "i__valid", "a__valid", "b__valid", "o__ready"):
        if hasattr(dut, name):
            getattr(dut, name).value = 0
    await RisingEdge(dut.clk)
    await RisingEdge(dut.clk)
    dut.rst.value = 0
    await RisingEdge(dut.clk)


def input_beats(model, rows, lanes, widths=None):
    """Per input stream, the packed beats of all rows; ``widths`` overrides the lane widths of the
    streams (the unit's ``i``/``b`` are as wide as its widest operator input; values sign-extend)."""
    wa, wb = widths or (model.in_width, model.in_width)
    if model.two_operand:
        a = [b for row in rows for b in row_to_beats(row[0], wa, lanes)]
        b = [b for row in rows for b in row_to_beats(row[1], wb, lanes)]
        return [a, b]
    return [[b for row in rows for b in row_to_beats(row, wa, lanes)]]


async def run_rows(dut, ports: Ports, model: OpModel, rows, row_len, *, stall=0.0, seed=0,
                   expect_out=True):
    """Stream rows through, return the received output beats (and their arrival cycles)."""
    lanes = model.lanes
    rng = random.Random(seed)
    await ports.select(model)
    ports.scalar("row_len").value = row_len
    streams = input_beats(model, rows, lanes, ports.stream_widths(model))
    n_out = sum(-(-len(r[0] if model.two_operand else r) // lanes) for r in rows) if expect_out else 0
    out, cycles = [], []
    senders = [cocotb.start_soon(send_beats(dut.clk, ports.stream(name), beats,
                                            random.Random(rng.random()), stall))
               for name, beats in zip(ports.in_streams(model), streams)]
    recv = cocotb.start_soon(recv_beats(dut.clk, ports.stream("o"), n_out, random.Random(rng.random()),
                                        stall, out, cycles, timeout=40 * (len(streams[0]) + 50)))
    for s in senders:
        await s
    await recv
    if not expect_out:
        # Nothing may come out of a rejected row: watch the output for a while with ready high.
        valid, ready, _ = ports.stream("o")
        ready.value = 1
        for _ in range(30):
            await ReadOnly()
            assert int(valid.value) == 0, "a rejected row produced output"
            await RisingEdge(dut.clk)
    return out, cycles


def check_output(model, rows, out, *, out_width=None):
    lanes = model.lanes
    width = out_width or model.out_width
    pos = 0
    for r, row in enumerate(rows):
        n = len(row[0]) if model.two_operand else len(row)
        nb = -(-n // lanes)
        beats = out[pos:pos + nb]
        pos += nb
        for k, w in enumerate(beats):
            last = unpack_lanes(w, width, lanes)[1]
            assert last == (k == nb - 1), f"row {r} beat {k}: last={last}, expected {k == nb - 1}"
        got, tail = beats_to_row(beats, width, lanes, n)
        want = model.expected(row)
        if got != want:
            bad = [j for j in range(n) if got[j] != want[j]]
            j = bad[0]
            raise AssertionError(f"{model.name} row {r}: {len(bad)} mismatches, first at element {j}: "
                                 f"RTL {got[j]} != golden {want[j]} (input "
                                 f"{row[0][j] if model.two_operand else row[j]})")
        assert all(v == 0 for v in tail), f"{model.name} row {r}: tail lanes must be 0, got {tail}"
    assert pos == len(out), f"{len(out) - pos} extra output beats"


def env_cfg():
    return os.environ["VEC_OP"], json.loads(os.environ["VEC_CFG"])


async def start(dut):
    """Every test's start: the operator and its configuration (``VEC_OP``, ``VEC_CFG``), a reset DUT, its ports."""
    op, cfg = env_cfg()
    await reset(dut)
    return op, cfg, Ports(dut)


# ----------------------------------------------------------------------------------------------
# Tests (run against whatever operator VEC_OP names)
# ----------------------------------------------------------------------------------------------

@cocotb.test()
async def test_rows_all_kinds(dut):
    """Random and edge rows at several lengths (1, lanes +- 1, max_row), no stalls."""
    op, cfg, ports = await start(dut)
    for i, row_len in enumerate(make_model(op, cfg, 0).legal_lengths()):
        model = make_model(op, cfg, 10 + i)
        await model.load(ports, row_len)
        for kind in ("random", "min", "max", "edges", "outlier"):
            rows = model.rows(kind, row_len, 2)
            out, _ = await run_rows(dut, ports, model, rows, row_len)
            check_output(model, rows, out)
    assert int(dut.error.value) == 0, f"unexpected error code {int(dut.error_code.value)}"


@cocotb.test()
async def test_random_stalls(dut):
    """Random valid/ready gaps on every stream: same results as without stalls."""
    op, cfg, ports = await start(dut)
    model = make_model(op, cfg, 99)
    row_len = model.legal_lengths()[-2] if len(model.legal_lengths()) > 1 else cfg["max_row"]
    await model.load(ports, row_len)
    for stall, seed in ((0.3, 1), (0.6, 2)):
        rows = model.rows("random", row_len, 4)
        out, _ = await run_rows(dut, ports, model, rows, row_len, stall=stall, seed=seed)
        check_output(model, rows, out)
    assert int(dut.error.value) == 0


@cocotb.test()
async def test_full_throughput(dut):
    """No stalls: one output beat per cycle after the pipeline latency (lanes elements/cycle)."""
    op, cfg, ports = await start(dut)
    row_len = cfg["max_row"]
    model = make_model(op, cfg, 5)
    await model.load(ports, row_len)
    rows = model.rows("random", row_len, 3)
    out, cycles = await run_rows(dut, ports, model, rows, row_len)
    check_output(model, rows, out)
    per_row = -(-row_len // model.lanes)
    for r in range(len(rows)):
        c = cycles[r * per_row:(r + 1) * per_row]
        assert c == list(range(c[0], c[0] + per_row)), f"row {r}: output beats must be back to back, got {c}"
        if r:
            gap = c[0] - cycles[r * per_row - 1] - 1
            assert gap == model.row_gap_cycles, \
                f"row {r}: {gap} idle output cycles between rows, expected {model.row_gap_cycles}"


@cocotb.test()
async def test_bad_row_len_drains(dut):
    """row_len 0 or above max_row: error flag ROW_LEN, the row is consumed without output, no hang;
    after ``clear`` the operator works again."""
    op, cfg, ports = await start(dut)
    model = make_model(op, cfg, 3)
    good = model.min_row_len()
    await model.load(ports, good)
    for bad in (0, cfg["max_row"] + 1):
        rows = model.rows("random", max(1, min(bad, cfg["max_row"])) if bad else good, 1)
        await run_rows(dut, ports, model, rows, bad, expect_out=False)
        assert int(dut.error.value) == 1 and int(dut.error_code.value) == ERROR_ROW_LEN, \
            f"row_len {bad}: error={int(dut.error.value)} code={int(dut.error_code.value)}"
        dut.clear.value = 1
        await RisingEdge(dut.clk)
        dut.clear.value = 0
        await RisingEdge(dut.clk)
        assert int(dut.error.value) == 0
    rows = model.rows("random", good, 2)
    out, _ = await run_rows(dut, ports, model, rows, good)
    check_output(model, rows, out)


@cocotb.test()
async def test_param_write_past_end(dut):
    """A parameter/table write past the end: PARAM_ADDR, write ignored, the op still works."""
    op, cfg, ports = await start(dut)
    model = make_model(op, cfg, 4)
    row_len = model.legal_lengths()[0]
    await model.load(ports, row_len)
    limit = {"requant": cfg["max_row"], "table": 256 * cfg.get("tables", 2),
             "rope": cfg.get("max_positions", 0) * (cfg["max_row"] // 2)}[op]
    await ports.write_param(model, limit, 0x55)
    await RisingEdge(dut.clk)
    assert int(dut.error.value) == 1 and int(dut.error_code.value) == ERROR_PARAM_ADDR
    rows = model.rows("random", row_len, 2)
    out, _ = await run_rows(dut, ports, model, rows, row_len)
    check_output(model, rows, out)


@cocotb.test()
async def test_rope_bad_geometry(dut):
    """RoPE: head_dim not a multiple of 2 * lanes -> ROW_LEN; position past the table, frac_bits 0 or
    15 -> BAD_PARAM; each row is drained without output and the op works after ``clear``."""
    op, cfg, ports = await start(dut)
    assert op == "rope", "this test is for the RoPE operator"
    lanes, max_row = cfg["lanes"], cfg["max_row"]
    model = make_model(op, cfg, 6)
    good = model.min_row_len()
    await model.load(ports, good)
    cases = [("row_len", good + lanes if lanes > 1 else good + 1, {}, ERROR_ROW_LEN),
             ("position", good, {"position": cfg["max_positions"]}, ERROR_BAD_PARAM),
             ("frac_bits", good, {"frac_bits": 0}, ERROR_BAD_PARAM),
             ("frac_bits", good, {"frac_bits": 15}, ERROR_BAD_PARAM)]
    for what, row_len, overrides, code in cases:
        if row_len > max_row:
            row_len = max_row - 1
        for port, value in overrides.items():
            ports.scalar(port).value = value
        rows = model.rows("random", row_len, 1)
        await run_rows(dut, ports, model, rows, row_len, expect_out=False)
        assert (int(dut.error.value), int(dut.error_code.value)) == (1, code), \
            f"{what}: error={int(dut.error.value)} code={int(dut.error_code.value)}, expected {code}"
        await model.load(ports, good)  # restores the ports
        dut.clear.value = 1
        await RisingEdge(dut.clk)
        dut.clear.value = 0
        await RisingEdge(dut.clk)
    rows = model.rows("random", good, 3)
    out, _ = await run_rows(dut, ports, model, rows, good, stall=0.3, seed=8)
    check_output(model, rows, out)
    assert int(dut.error.value) == 0


@cocotb.test()
async def test_rope_framing_abort(dut):
    """RoPE: a row whose `last` comes early in its second half is aborted: error ROW_FRAMING, the
    output of the broken row is cut short, nothing hangs, and the next rows are exact."""
    op, cfg, ports = await start(dut)
    assert op == "rope", "this test is for the RoPE operator"
    lanes, max_row = cfg["lanes"], cfg["max_row"]
    model = make_model(op, cfg, 7)
    await model.load(ports, max_row)
    n_beats = max_row // lanes
    if n_beats < 4:
        raise AssertionError("the test needs rows of >= 4 beats (raise max_row)")
    row = model.rows("random", max_row, 1)[0]
    beats = row_to_beats(row, model.in_width, lanes)
    cut = n_beats - 2  # last on the second-to-last beat: two rotation beats already in flight
    beats = beats[:cut] + [beats[cut] | (1 << (lanes * model.in_width))]
    dut.row_len.value = max_row
    sender = cocotb.start_soon(send_beats(dut.clk, ports.stream("i"), beats, random.Random(3), 0.0))
    valid, ready, payload = ports.stream("o")
    ready.value = 1
    seen_last = False
    got = 0
    for _ in range(8 * n_beats + 40):
        await ReadOnly()
        if int(valid.value):
            got += 1
            seen_last |= bool(unpack_lanes(int(payload.value), model.out_width, lanes)[1])
        await RisingEdge(dut.clk)
    await sender
    assert (int(dut.error.value), int(dut.error_code.value)) == (1, ERROR_ROW_FRAMING)
    assert got < n_beats and not seen_last, f"an aborted row must be cut short, got {got} beats"
    assert int(dut.busy.value) == 0, "the operator must be idle after the abort"
    dut.clear.value = 1
    await RisingEdge(dut.clk)
    dut.clear.value = 0
    rows = model.rows("random", max_row, 3)
    out, _ = await run_rows(dut, ports, model, rows, max_row, stall=0.2, seed=9)
    check_output(model, rows, out)
