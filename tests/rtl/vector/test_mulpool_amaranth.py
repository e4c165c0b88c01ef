"""The vector unit's shared multipliers (rtl.vector.mulpool) on the Amaranth simulator: residual, gate, softmax and
RoPE rows switched back to back through one pool, every output bit for bit against golden (residual_add, gate_mul,
softmax, rope), and cycle for cycle equal to the same unit with private multipliers; the slot mapping; softmax's busy
over its whole pipeline (what sharing relies on); the pipelined multiplier, whole and split into 18x18 blocks (the
ECP5 form), against Python's product with a stalling enable."""

from __future__ import annotations

import random

import numpy as np
import pytest
from amaranth.hdl import signed, unsigned
from amaranth.sim import Simulator

from npuforge.golden import elementwise as golden_elementwise
from npuforge.golden.elementwise import rope, rope_table
from npuforge.rtl.vector.mulpool import MUL_LATENCY, MulSpec, PipelinedMultiplier, pool_slots
from npuforge.rtl.vector.unit import OPCODES, VectorUnit
from npuforge.sim.tb.vector_params import gate_ports, residual_ports, rope_param_words, rope_ports
from npuforge.sim.tb.vector_rows import SoftmaxModel

LANES = 2
MAX_ROW = 16
# The operators and options the NPU's vector unit is built with (rtl.controller.vector).
OPS = ("residual", "gate", "rope", "softmax")
OPTIONS = {"softmax": {"in_width": 32}, "gate": {"in_width": 16, "out_width": 32},
           "residual": {"in_width": 32, "out_width": 32},
           "rope": {"in_width": 16, "out_width": 16, "max_positions": 2}}
HEAD_DIM = 8  # RoPE rows: one head vector, the table written for this head_dim


def _rope_setup():
    """The RoPE table (positions 0, 1 of head_dim HEAD_DIM, Q1.14) and its parameter writes."""
    cos, sin = rope_table(HEAD_DIM, 2, frac_bits=14)
    return cos, sin, rope_param_words(cos, sin, max_half=MAX_ROW // 2)


def _rows(seed):
    """(opcode, unit port values, a, b, expected) per row: residual, gate, RoPE and softmax rows in a mixed order,
    with edge values, every row length class (1, odd tails, full)."""
    rng = np.random.default_rng(seed)
    cos, sin, _ = _rope_setup()
    res = golden_elementwise.residual_params(0.05, 0.02, 0.04)
    gate = golden_elementwise.gate_params(0.01, 0.03, 0.0005, out_bits=16)
    res_ports = {f"residual_{p}": v for p, v in residual_ports(res).items()}
    gate_p = gate_ports(gate)
    gate_p["shift"] = gate.shift  # the unit's port is signed(7): the value, not its bit pattern
    gate_ports_unit = {f"gate_{p}": v for p, v in gate_p.items()}
    softmax = SoftmaxModel({"max_row": MAX_ROW, "lanes": LANES, "in_width": 32}, rng)
    rows = []
    for i, kind in enumerate("RGSPRSGPGRSSRGP" * 2):
        n = [1, 2, 3, 7, 16, 5][i % 6]
        if kind == "P":
            x = rng.integers(-(1 << 15), 1 << 15, HEAD_DIM)
            x[:2] = [-(1 << 15), (1 << 15) - 1]
            position = i % 2
            want = rope(x[None, :], [position], cos, sin, frac_bits=14, out_bits=16)[0]
            ports = {f"rope_{p}": v for p, v in rope_ports(position=position, frac_bits=14, out_bits=16,
                                                            max_positions=2).items()}
            rows.append((OPCODES["ROPE"], ports, x, np.zeros(HEAD_DIM, dtype=np.int64), want))
        elif kind == "R":
            a = rng.integers(-128, 128, n)
            b = rng.integers(-128, 128, n)
            a[:min(n, 2)] = [-128, 127][:min(n, 2)]
            want = golden_elementwise.residual_add(a.astype(np.int8), b.astype(np.int8), res)
            rows.append((OPCODES["RESIDUAL"], res_ports, a, b, want))
        elif kind == "G":
            a = rng.integers(-(1 << 15), 1 << 15, n)
            b = rng.integers(-(1 << 15), 1 << 15, n)
            a[:min(n, 2)] = [-(1 << 15), (1 << 15) - 1][:min(n, 2)]
            want = golden_elementwise.gate_mul(a.astype(np.int16), b.astype(np.int16), gate)
            rows.append((OPCODES["GATE"], gate_ports_unit, a, b, want))
        else:
            scores = rng.integers(-(1 << 20), 1 << 20, n)
            row = softmax.row(scores, LANES, causal=bool(i % 3 == 0), query_pos=n // 2, q15=bool(i % 2))
            ports = {f"softmax_{p}": v for p, v in row.ports.items() if p != "row_len"}
            rows.append((OPCODES["SOFTMAX"], ports, scores, np.zeros(n, dtype=np.int64), row.expected))
    return rows


def _run(unit, rows, *, seed):
    """Stream ``rows`` with the next row's opcode offered as soon as the previous row's last beat entered and random
    output stalls; return the output beats as (cycle, lanes, last)."""
    rng = random.Random(seed)
    trace = []

    async def tb(ctx):
        ctx.set(unit.param_sel, OPCODES["ROPE"])
        for addr, word in _rope_setup()[2]:
            ctx.set(unit.param_we, 1)
            ctx.set(unit.param_addr, addr)
            ctx.set(unit.param_data, word)
            await ctx.tick()
        ctx.set(unit.param_we, 0)
        beats = []  # (row index, beat index, beats in row)
        for r, (_, _, a, _, _) in enumerate(rows):
            n_beats = -(-len(a) // LANES)
            beats += [(r, j, n_beats) for j in range(n_beats)]
        want_beats = len(beats)
        cycle, sent = 0, 0
        while len(trace) < want_beats:
            if sent < len(beats):
                r, j, n_beats = beats[sent]
                opcode, ports, a, b, _ = rows[r]
                ctx.set(unit.opcode, opcode)
                ctx.set(unit.row_len, len(a))
                for port, value in ports.items():
                    ctx.set(getattr(unit, port), value)
                for k in range(LANES):
                    idx = j * LANES + k
                    ctx.set(unit.i.payload.data[k], int(a[idx]) if idx < len(a) else 0)
                    ctx.set(unit.b.payload.data[k], int(b[idx]) if idx < len(b) else 0)
                ctx.set(unit.i.payload.last, j == n_beats - 1)
                ctx.set(unit.b.payload.last, j == n_beats - 1)
            send = sent < len(beats) and rng.random() < 0.9
            ctx.set(unit.i.valid, send)
            ctx.set(unit.b.valid, send)
            ready = rng.random() < 0.8
            ctx.set(unit.o.ready, ready)
            fired = send and ctx.get(unit.i.ready)
            if ready and ctx.get(unit.o.valid):
                trace.append((cycle, [ctx.get(unit.o.payload.data[k]) for k in range(LANES)],
                              ctx.get(unit.o.payload.last)))
            assert not ctx.get(unit.error), f"error {ctx.get(unit.error_code)} at cycle {cycle}"
            await ctx.tick()
            sent += fired
            cycle += 1
            assert cycle < 20_000, "hang"

    sim = Simulator(unit)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    return trace


def test_shared_pool_back_to_back_vs_golden_and_private():
    shared = VectorUnit(lanes=LANES, max_row=MAX_ROW, ops=OPS, options=OPTIONS)
    private = VectorUnit(lanes=LANES, max_row=MAX_ROW, ops=OPS, options=OPTIONS, share_multipliers=False)
    # Softmax makes five multiplies per lane; residual's and gate's two and RoPE's four ride on its largest.
    assert len(shared.multiplier_slots) == 5 and not private.multiplier_slots
    assert {user[0] for slot in shared.multiplier_slots[:2] for user in slot.users} == set(OPS)
    rows = _rows(seed=16)
    got = _run(shared, rows, seed=3)
    # Outputs in row order, each row's beats flattened.
    pos = 0
    for r, (opcode, _, a, _, want) in enumerate(rows):
        n_beats = -(-len(a) // LANES)
        beats = got[pos:pos + n_beats]
        pos += n_beats
        assert [last for _, _, last in beats] == [j == n_beats - 1 for j in range(n_beats)], r
        flat = [v for _, lanes, _ in beats for v in lanes]
        assert flat[:len(a)] == [int(v) for v in want], (r, opcode)
        assert not any(flat[len(a):]), "tail lanes must be 0"
    assert got == _run(private, rows, seed=3), "shared multipliers changed the cycle behaviour"


def test_pool_slots_map_largest_multiplies_together():
    slots = pool_slots({
        "x": (MulSpec("small", unsigned(8), unsigned(8)), MulSpec("big", unsigned(31), unsigned(31))),
        "y": (MulSpec("wide", unsigned(20), signed(32)),),
    })
    assert len(slots) == 2
    # y's only multiply joins x's largest, oriented wider operand first: signed 32 holds unsigned 31.
    assert slots[0].users == (("x", "big", False), ("y", "wide", True))
    assert (slots[0].a, slots[0].b) == (signed(32), unsigned(31))
    assert slots[1].users == (("x", "small", False),) and (slots[1].a, slots[1].b) == (unsigned(8), unsigned(8))


def test_multiply_rejects_an_operand_wider_than_its_port():
    from amaranth.hdl import Module, Signal
    from amaranth.lib import wiring

    from npuforge.rtl.vector.mulpool import MultiplierSignature, multiply
    port = MultiplierSignature(MulSpec("m", unsigned(8), signed(8))).create()
    with pytest.raises(ValueError, match="operand a of shape unsigned\\(9\\)"):
        multiply(Module(), port, Signal(9), Signal(signed(8)), en=1, name="m")
    with pytest.raises(ValueError, match="operand b of shape unsigned\\(8\\)"):
        multiply(Module(), port, Signal(8), Signal(8), en=1, name="m")
    assert isinstance(port, wiring.PureInterface)


@pytest.mark.parametrize("n", [2, 8, 11])
def test_softmax_busy_until_its_last_output_beat(n):
    """The sharing's precondition: an operator's ``busy`` covers every beat in flight. Softmax's output engine keeps
    it high while a row's last beats are inside its exp pipeline (it dropped for a few cycles there before)."""
    from npuforge.rtl.vector.softmax import Softmax
    dut = Softmax(lanes=LANES, max_row=MAX_ROW, in_width=16)
    row = SoftmaxModel({"max_row": MAX_ROW, "lanes": LANES, "in_width": 16}, np.random.default_rng(n)).row(
        list(range(-n, 0)), LANES)
    beats = -(-n // LANES)
    log = []

    async def tb(ctx):
        for port, value in row.ports.items():
            ctx.set(getattr(dut, port), value)
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.i.valid, 1)
        for j in range(beats):
            for k in range(LANES):
                ctx.set(dut.i.payload.data[k], int(row.values[j * LANES + k]) if j * LANES + k < n else 0)
            ctx.set(dut.i.payload.last, j == beats - 1)
            await ctx.tick()
        ctx.set(dut.i.valid, 0)
        for _ in range(120 + 4 * beats):
            log.append((ctx.get(dut.busy), ctx.get(dut.o.valid), [ctx.get(dut.o.payload.data[k]) for k in range(LANES)]))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    outs = [i for i, (_, valid, _) in enumerate(log) if valid]
    assert len(outs) == beats
    assert [v for i in outs for v in log[i][2]][:n] == row.expected
    assert all(busy for busy, _, _ in log[:outs[-1] + 1]), "busy dropped while output beats were in flight"


@pytest.mark.parametrize("split", [False, True])
@pytest.mark.parametrize("a_shape,b_shape", [
    (unsigned(31), unsigned(31)), (signed(32), unsigned(31)), (unsigned(33), unsigned(23)), (signed(34), signed(32)),
    (unsigned(15), signed(17)), (signed(18), signed(18)), (unsigned(17), unsigned(18)), (signed(19), signed(36)),
    (signed(1), unsigned(35)),
])
def test_pipelined_multiplier_against_python(a_shape, b_shape, split):
    """``p`` is the product of the operands taken MUL_LATENCY enabled edges earlier, for random and extreme operands
    and a random enable; split (the 18x18 blocks and their adder tree) and whole alike."""
    dut = PipelinedMultiplier(a_shape, b_shape, split=split)
    rng = random.Random(hash((a_shape.width, a_shape.signed, b_shape.width, b_shape.signed)) & 0xFFFF)

    def extremes(shape):
        lo, hi = (-(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1) if shape.signed else (0, (1 << shape.width) - 1)
        return lo, hi, [v for v in (lo, hi, 0, 1, lo + 1, hi - 1, -1, hi >> 1) if lo <= v <= hi]

    a_lo, a_hi, a_edge = extremes(a_shape)
    b_lo, b_hi, b_edge = extremes(b_shape)
    pairs = [(a, b) for a in a_edge for b in b_edge]
    pairs += [(rng.randint(a_lo, a_hi), rng.randint(b_lo, b_hi)) for _ in range(150)]
    checked = []

    async def tb(ctx):
        taken = []  # operands taken on each enabled edge
        for a, b in pairs:
            while True:
                en = rng.random() < 0.7
                ctx.set(dut.en, en)
                ctx.set(dut.a, a)
                ctx.set(dut.b, b)
                if en and len(taken) >= MUL_LATENCY:
                    want = taken[-MUL_LATENCY][0] * taken[-MUL_LATENCY][1]
                    assert ctx.get(dut.p) == want, (taken[-MUL_LATENCY], ctx.get(dut.p))
                    checked.append(want)
                await ctx.tick()
                if en:
                    taken.append((a, b))
                    break

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    assert len(checked) == len(pairs) - MUL_LATENCY


@pytest.mark.parametrize("a_shape,b_shape,blocks", [
    (unsigned(31), unsigned(31), 4), (signed(18), signed(18), 1), (unsigned(17), signed(18), 1),
    (unsigned(18), signed(18), 2), (unsigned(33), unsigned(23), 4), (signed(35), signed(36), 6),
])
def test_pipelined_multiplier_on_ecp5_is_registered_blocks(a_shape, b_shape, blocks):
    """Elaborated for ECP5 the multiply is one MULT18X18D per pair of operand slices (17 bits, the top slice up to 18
    signed), each with its input and output registers inside the block."""
    from amaranth.back import rtlil

    from npuforge.rtl.dsp import TechTarget
    text = rtlil.convert(PipelinedMultiplier(a_shape, b_shape), platform=TechTarget("ecp5"))
    assert text.count("cell \\MULT18X18D") == blocks
    assert text.count('parameter \\REG_OUTPUT_CLK "CLK0"') == blocks
    assert text.count('parameter \\REG_INPUTA_CLK "CLK0"') == blocks
