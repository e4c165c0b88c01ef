"""cocotb testbench of the opcode-selected VectorUnit: every opcode vs golden, back-to-back opcode
switches, stalls, bad opcodes and per-operator errors.

``VEC_CFG`` (JSON): ``lanes``, ``max_row``, ``opcodes`` (mnemonic -> value), ``ops`` (operator names in
unit order), ``out_width``, ``in_width``, ``b_width``. The golden-backed operator models come from
``sim.tb.vector_elementwise``.
"""

from __future__ import annotations

import json
import os
import random

import numpy as np

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge

from npuforge.sim.tb.vector_elementwise import (ERROR_BAD_OPCODE, ERROR_PARAM_ADDR, ERROR_ROW_LEN, Ports, check_output,
                                               input_beats, recv_beats, reset, run_rows)
from npuforge.sim.tb.vector_models import MODELS, OpModel, TableModel, int8_rows

class RowOpModel(OpModel):
    """The row operators' golden models (``sim.tb.vector_rows``: LayerNorm, RMSNorm, softmax) behind
    the OpModel interface, so the unit tests drive them like the elementwise operators."""

    def __init__(self, cfg, rng, *, kind):
        super().__init__(cfg, rng)
        from npuforge.sim.tb.vector_rows import NormModel, SoftmaxModel
        inner_cfg = {"op": kind, "max_row": cfg["max_row"], "lanes": cfg["lanes"],
                     "in_width": cfg.get("in_width_op", 16 if kind == "softmax" else 8)}
        if kind != "softmax":
            inner_cfg["out_width"] = cfg.get("out_width_op", 8)
        self.kind = kind
        self.inner = SoftmaxModel(inner_cfg, rng) if kind == "softmax" else NormModel(inner_cfg, rng)
        self.in_width, self.out_width = self.inner.in_width, self.inner.out_width

    async def load(self, ports, row_len):
        for addr, word in enumerate(self.inner.param_words()):
            await ports.write_param(self, addr, word)
        sample = self.inner.row([0] * row_len, self.lanes)
        for port, value in sample.ports.items():
            if port != "row_len":
                ports.scalar(port).value = value

    def rows(self, kind, row_len, n):
        if self.in_width == 8:
            return int8_rows(self.rng, kind, row_len, n)
        lo, hi = -(1 << (self.in_width - 1)), (1 << (self.in_width - 1)) - 1
        out = []
        for r in range(n):
            row = {"random": lambda: self.rng.integers(-2000, 2000, size=row_len),
                   "min": lambda: np.full(row_len, lo), "max": lambda: np.full(row_len, hi),
                   "edges": lambda: self.rng.choice([lo, hi, 0, -1, 1, -8, 7], size=row_len),
                   "outlier": lambda: np.where(np.arange(row_len) == r % row_len, hi,
                                               self.rng.integers(-50, 50, size=row_len))}[kind]()
            out.append([int(v) for v in row])
        return out

    def expected(self, row):
        return self.inner.row(row, self.lanes).expected


# Opcode mnemonic -> (operator model name, model keyword arguments)
OPCODE_MODELS = {
    "REQUANT": ("requant", {}),
    "GELU": ("table", {"which": 0}),
    "SILU": ("table", {"which": 1}),
    "RESIDUAL": ("residual", {}),
    "GATE": ("gate", {}),
    "ROPE": ("rope", {}),
    "SOFTMAX": ("softmax", {"kind": "softmax"}),
    "LAYERNORM": ("layernorm", {"kind": "layernorm"}),
    "RMSNORM": ("rmsnorm", {"kind": "rmsnorm"}),
}
ROW_OPS = ("softmax", "layernorm", "rmsnorm")


class UnitPorts(Ports):
    """Operator ports as the unit exposes them: shared streams, ``<op>_<port>`` scalars, ``param_sel``."""

    def __init__(self, dut, cfg):
        super().__init__(dut)
        self.cfg = cfg

    def scalar(self, name):
        if name == "row_len":
            return self.dut.row_len
        port = f"{self.current.unit_name}_{name}"
        return _Recorder(getattr(self.dut, port), self.current.unit_ports, port)

    def stream(self, name):
        return super().stream({"a": "i"}.get(name, name))

    def stream_widths(self, model):
        return self.cfg["in_width"], self.cfg["b_width"]

    async def select(self, model):
        self.current = model
        self.dut.opcode.value = model.opcode

    async def write_param(self, model, addr, value):
        d = self.dut
        d.param_sel.value = model.opcode
        await super().write_param(model, addr, value)


class _Recorder:
    """A port handle that also remembers the last value written (per model), so rows of several
    operators can be interleaved with each operator's own scalar parameters."""

    def __init__(self, handle, store, port):
        self._handle, self._store, self._port = handle, store, port

    @property
    def value(self):
        return self._handle.value

    @value.setter
    def value(self, v):
        self._store[self._port] = v
        self._handle.value = v


def unit_models(cfg, seed):
    """One golden model per opcode the unit contains (GELU and SiLU share the table operator)."""
    models = {}
    rng = np.random.default_rng(seed)
    for mnemonic, value in cfg["opcodes"].items():
        kind, kw = OPCODE_MODELS[mnemonic]
        model_cfg = dict(cfg, **cfg.get("model_cfg", {}).get(kind, {}))
        model = (RowOpModel if kind in ROW_OPS else MODELS[kind])(model_cfg, rng, **kw)
        model.opcode = value
        model.unit_name = kind
        model.unit_ports = {}
        models[mnemonic] = model
    return models


async def load(ports, model, row_len):
    ports.current = model
    model.name = model.unit_name
    ports.dut.opcode.value = model.opcode
    await model.load(ports, row_len)


def env_cfg():
    return json.loads(os.environ["VEC_CFG"])


async def unit_reset(dut, cfg):
    """Reset with every scalar input at 0: event-driven simulators (Icarus) otherwise start them at X,
    and an X parameter would reach the operators' ``busy`` flags."""
    for name in cfg.get("scalar_inputs", []):
        getattr(dut, name).value = 0
    await reset(dut)


@cocotb.test()
async def test_every_opcode(dut):
    """Each opcode: random and edge rows at lengths 1, lanes + 1 and max_row vs golden."""
    cfg = env_cfg()
    await unit_reset(dut, cfg)
    ports = UnitPorts(dut, cfg)
    for mnemonic, model in unit_models(cfg, 1).items():
        for row_len in model.legal_lengths():
            await load(ports, model, row_len)
            for kind in ("random", "min", "max", "edges", "outlier"):
                dut._log.info(f"{mnemonic}: row_len {row_len}, {kind} rows")
                rows = model.rows(kind, row_len, 2)
                out, _ = await run_rows(dut, ports, model, rows, row_len, stall=0.2, seed=row_len)
                check_output(model, rows, out, out_width=cfg["out_width"])
    assert int(dut.error.value) == 0, f"error code {int(dut.error_code.value)} from {int(dut.error_source.value)}"


@cocotb.test()
async def test_opcode_switch_back_to_back(dut):
    """Rows of different opcodes offered back to back (opcode changes with the first beat of a
    row): the unit waits for the previous operator to drain, outputs stay in row order."""
    cfg = env_cfg()
    await unit_reset(dut, cfg)
    ports = UnitPorts(dut, cfg)
    lanes = cfg["lanes"]
    models = list(unit_models(cfg, 77).values())
    for model in models:
        model.switch_len = model.legal_lengths()[-1]  # the longest legal row of each operator
        await load(ports, model, model.switch_len)
    # A program: each entry (model, row); every operator twice, in an interleaved order.
    rng = random.Random(5)
    program = []
    for rep in range(3):
        order = models[:]
        rng.shuffle(order)
        for model in order:
            program.append((model, model.rows("random", model.switch_len, 1)[0]))
    two = any(m.two_operand for m in models)
    a_beats, b_beats = [], []
    for model, row in program:
        streams = input_beats(model, [row], lanes, ports.stream_widths(model))
        a_beats += [(model, w) for w in streams[0]]
        if two:
            b_beats += [(model, w) for w in (streams[1] if model.two_operand else [0] * len(streams[0]))]
    out, cycles = [], []
    n_out = sum(-(-model.switch_len // lanes) for model, _ in program)
    recv = cocotb.start_soon(recv_beats(dut.clk, ports.stream("o"), n_out, random.Random(1), 0.2, out, cycles,
                                        timeout=100 * n_out + 500))
    # Drive `i` (and `b`) with the opcode following the row being offered.
    k = 0
    b_k = 0
    send_rng = random.Random(2)
    while k < len(a_beats):
        model, word = a_beats[k]
        opcode = model.opcode
        offer = send_rng.random() >= 0.2
        dut.opcode.value = opcode
        dut.row_len.value = model.switch_len
        for port, value in model.unit_ports.items():  # per-row scalar parameters
            getattr(dut, port).value = value
        dut.i__valid.value = int(offer)
        dut.i__payload.value = word
        need_b = two and model.two_operand
        if two:
            dut.b__valid.value = int(offer and need_b)
            dut.b__payload.value = b_beats[k][1]
        await ReadOnly()
        taken = offer and int(dut.i__ready.value) == 1
        if need_b:
            assert taken == (offer and int(dut.b__ready.value) == 1), "a and b must be taken together"
        await RisingEdge(dut.clk)
        k += int(taken)
    dut.i__valid.value = 0
    if two:
        dut.b__valid.value = 0
    await recv
    pos = 0
    for model, row in program:
        nb = -(-model.switch_len // lanes)
        check_output(model, [row], out[pos:pos + nb], out_width=cfg["out_width"])
        pos += nb
    assert int(dut.error.value) == 0


@cocotb.test()
async def test_bad_opcode_drains(dut):
    """An opcode the unit lacks: BAD_OPCODE from source 0, the row is consumed, nothing comes out;
    after ``clear`` a good opcode works."""
    cfg = env_cfg()
    await unit_reset(dut, cfg)
    ports = UnitPorts(dut, cfg)
    lanes = cfg["lanes"]
    unused = next(v for v in range(16) if v not in cfg["opcodes"].values())
    dut.opcode.value = unused
    dut.row_len.value = cfg["max_row"]
    beats = [(1 << (lanes * cfg["in_width"])) * int(k == 2) for k in range(3)]  # last on the 3rd beat
    dut.o__ready.value = 1
    for word in beats:
        dut.i__valid.value = 1
        dut.i__payload.value = word
        await ReadOnly()
        assert int(dut.i__ready.value) == 1, "a bad-opcode row must be drained"
        assert int(dut.o__valid.value) == 0
        await RisingEdge(dut.clk)
    dut.i__valid.value = 0
    for _ in range(10):
        await ReadOnly()
        assert int(dut.o__valid.value) == 0
        await RisingEdge(dut.clk)
    assert (int(dut.error.value), int(dut.error_code.value), int(dut.error_source.value)) == (1, ERROR_BAD_OPCODE, 0)
    dut.clear.value = 1
    await RisingEdge(dut.clk)
    dut.clear.value = 0
    await RisingEdge(dut.clk)
    assert int(dut.error.value) == 0
    model = next(iter(unit_models(cfg, 3).values()))
    row_len = min(cfg["max_row"], 6)
    await load(ports, model, row_len)
    rows = model.rows("random", row_len, 2)
    out, _ = await run_rows(dut, ports, model, rows, row_len)
    check_output(model, rows, out, out_width=cfg["out_width"])


@cocotb.test()
async def test_operator_error_source(dut):
    """row_len 0 on each operator in turn: ROW_LEN with that operator's error_source, no hang."""
    cfg = env_cfg()
    await unit_reset(dut, cfg)
    ports = UnitPorts(dut, cfg)
    for mnemonic, model in unit_models(cfg, 9).items():
        good = model.min_row_len()
        await load(ports, model, good)
        rows = model.rows("random", good, 1)
        await run_rows(dut, ports, model, rows, 0, expect_out=False)
        source = cfg["ops"].index(model.unit_name) + 1
        assert (int(dut.error.value), int(dut.error_code.value), int(dut.error_source.value)) == \
            (1, ERROR_ROW_LEN, source), f"{mnemonic}: {int(dut.error_code.value)} from {int(dut.error_source.value)}"
        dut.clear.value = 1
        await RisingEdge(dut.clk)
        dut.clear.value = 0
        await RisingEdge(dut.clk)
        out, _ = await run_rows(dut, ports, model, rows, good)
        check_output(model, rows, out, out_width=cfg["out_width"])


@cocotb.test()
async def test_param_addr_never_wraps(dut):
    """A parameter write whose unit-wide address is too wide for the operator flags PARAM_ADDR for
    that operator (error_source) instead of wrapping onto entry 0; the resident parameters stay intact."""
    cfg = env_cfg()
    await unit_reset(dut, cfg)
    ports = UnitPorts(dut, cfg)
    unit_w = cfg["unit_param_addr_width"]
    for mnemonic, model in unit_models(cfg, 21).items():
        op_w = cfg["param_addr_widths"].get(model.unit_name)
        if op_w is None or op_w >= unit_w:
            continue  # no memory, or the operator takes the unit's full address width
        row_len = model.legal_lengths()[-1]
        await load(ports, model, row_len)
        await ports.write_param(model, 1 << op_w, 0x55)  # would alias entry 0 if truncated
        await RisingEdge(dut.clk)
        source = cfg["ops"].index(model.unit_name) + 1
        assert (int(dut.error.value), int(dut.error_code.value), int(dut.error_source.value)) == \
            (1, ERROR_PARAM_ADDR, source), f"{mnemonic}: {int(dut.error_code.value)} from {int(dut.error_source.value)}"
        dut.clear.value = 1
        await RisingEdge(dut.clk)
        dut.clear.value = 0
        for kind in ("min", "random"):  # all -128 reads table entry 0; requant channel 0 is in every row
            rows = model.rows(kind, row_len, 1)
            out, _ = await run_rows(dut, ports, model, rows, row_len)
            check_output(model, rows, out, out_width=cfg["out_width"])
        assert int(dut.error.value) == 0
