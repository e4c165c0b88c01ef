"""Golden-backed models of the streaming vector operators (requant, activation table, residual, gate, RoPE) for the
cocotb testbenches: each :class:`OpModel` writes its operator's run-time parameters through a ``Ports`` object
(``sim.tb.vector_elementwise.Ports``: a standalone operator, or the opcode-selected unit), makes input rows of several
kinds and computes the expected output with the golden function.
"""

from __future__ import annotations

import numpy as np

from npuforge.golden import elementwise as golden_elementwise
from npuforge.golden.requant import requantize
from npuforge.sim.tb.vector_params import (gate_ports, requant_param_words, residual_ports, rope_param_words,
                                           rope_ports, table_words)

__all__ = ["OpModel", "RequantModel", "TableModel", "ResidualModel", "GateModel", "RopeModel", "MODELS",
           "make_model", "int8_rows", "pair_rows", "row_lengths", "INT32_MIN", "INT32_MAX"]

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


class OpModel:
    name = ""
    in_width = 8
    out_width = 8
    two_operand = False

    def __init__(self, cfg, rng: np.random.Generator):
        self.cfg = cfg
        self.lanes = cfg["lanes"]
        self.max_row = cfg["max_row"]
        self.rng = rng

    async def load(self, ports: Ports, row_len: int):
        """Write tables/parameters and drive scalar parameter ports for rows of ``row_len``."""
        raise NotImplementedError

    def rows(self, kind: str, row_len: int, n: int) -> list:
        """Input rows; a row is a list of ints, or a tuple (a, b) for two-operand operators."""
        raise NotImplementedError

    def expected(self, row) -> list[int]:
        raise NotImplementedError

    def accepts_row_len(self, row_len: int) -> bool:
        """Whether rows of ``row_len`` are legal for this operator (RoPE needs even lengths)."""
        return 1 <= row_len <= self.max_row

    def min_row_len(self) -> int:
        return 1

    #: Idle output cycles between back-to-back rows without stalls (0: `lanes` elements every cycle).
    row_gap_cycles = 0

    def legal_lengths(self) -> list[int]:
        """Row lengths the broad tests use: 1, lanes +- 1, max_row - 1, max_row."""
        return row_lengths(self.cfg)


def int8_rows(rng, kind, row_len, n):
    """int8 rows of a given kind: random, all -128, all 127, alternating extremes, one outlier."""
    out = []
    for r in range(n):
        if kind == "random":
            row = rng.integers(-128, 128, size=row_len)
        elif kind == "min":
            row = np.full(row_len, -128)
        elif kind == "max":
            row = np.full(row_len, 127)
        elif kind == "edges":
            row = rng.choice([-128, 127, -8, 7, 0, -1, 1], size=row_len)
        elif kind == "outlier":
            row = rng.integers(-3, 4, size=row_len)
            row[rng.integers(0, row_len)] = 127 if r % 2 else -128
        else:
            raise ValueError(f"unknown row kind {kind!r}")
        out.append([int(v) for v in row])
    return out


class RequantModel(OpModel):
    name = "requant"
    in_width = 32

    def __init__(self, cfg, rng):
        super().__init__(cfg, rng)
        self.out_width = cfg.get("out_width", 8)
        self.out_bits = cfg.get("out_bits", 8)

    async def load(self, ports, row_len):
        rng = self.rng
        self.mult = rng.integers(1 << 30, 1 << 31, size=row_len, dtype=np.int64)
        self.shift = rng.integers(-30, 32, size=row_len)
        lo = -(1 << (self.out_bits - 1))
        self.zero_point = int(rng.integers(lo, -lo))
        for c, word in enumerate(requant_param_words(self.mult, self.shift)):
            await ports.write_param(self, c, word)
        ports.scalar("zero_point").value = self.zero_point & 0xFFFF
        ports.scalar("out_bits").value = self.out_bits

    def rows(self, kind, row_len, n):
        rng = self.rng
        out = []
        for r in range(n):
            if kind == "random":
                bits = rng.integers(0, 32, size=row_len)
                mag = rng.integers(0, 1 << 62, size=row_len) >> (62 - bits)
                row = np.where(rng.random(row_len) < 0.5, -mag, mag)
            elif kind == "min":
                row = np.full(row_len, INT32_MIN)
            elif kind == "max":
                row = np.full(row_len, INT32_MAX)
            elif kind == "edges":
                row = rng.choice([INT32_MIN, INT32_MAX, 0, -1, 1, -128, 127, 1 << 16], size=row_len)
            elif kind == "outlier":
                row = rng.integers(-100, 100, size=row_len)
                row[rng.integers(0, row_len)] = INT32_MAX if r % 2 else INT32_MIN
            else:
                raise ValueError(kind)
            out.append([int(v) for v in row])
        return out

    def expected(self, row):
        return [int(v) for v in requantize(np.array(row, dtype=np.int64), self.mult, self.shift,
                                           zero_point=self.zero_point, out_bits=self.out_bits)]


class TableModel(OpModel):
    """GELU/SiLU tables from golden.activations; the row picks one with ``table_select``."""
    name = "table"

    def __init__(self, cfg, rng, *, which=None):
        super().__init__(cfg, rng)
        self.tables = cfg.get("tables", 2)
        self.which = which  # None: test all resident tables in turn

    def golden_tables(self):
        from npuforge.golden.activations import gelu_table, silu_table
        in_scale = float(self.rng.uniform(0.01, 0.1))
        out_scale = float(self.rng.uniform(0.01, 0.05))
        tabs = [gelu_table(in_scale, out_scale), silu_table(in_scale, out_scale)]
        while len(tabs) < self.tables:  # extra tables: arbitrary contents
            tabs.append(self.rng.integers(-128, 128, size=256).astype(np.int8))
        return tabs[:self.tables]

    async def load(self, ports, row_len):
        self.tabs = self.golden_tables()
        # A model bound to one table (an opcode of the unit) writes only that table, so the GELU and
        # SiLU models can be resident together.
        targets = range(self.tables) if self.which is None else [self.which]
        for t in targets:
            for x, word in enumerate(table_words(self.tabs[t])):
                await ports.write_param(self, t * 256 + x, word)
        self.select = self.which if self.which is not None else int(self.rng.integers(0, self.tables))
        if self.which is None:
            ports.scalar("table_select").value = self.select

    def rows(self, kind, row_len, n):
        return int8_rows(self.rng, kind, row_len, n)

    def expected(self, row):
        from npuforge.golden.activations import lookup
        return [int(v) for v in lookup(np.array(row, dtype=np.int8), self.tabs[self.select])]


def pair_rows(rng, kind, row_len, n):
    """(a, b) int8 row pairs; independent kinds for a and b except min/max (both extreme)."""
    a = int8_rows(rng, kind, row_len, n)
    b = int8_rows(rng, kind if kind in ("min", "max", "edges") else "random", row_len, n)
    if kind == "min":  # also the mixed extremes
        b = int8_rows(rng, "max", row_len, n)
    return list(zip(a, b))


class _PairModel(OpModel):
    """Two int8 operands a, b -> one row (residual add, gate multiply). A subclass names the golden parameter builder
    ``params_of(a_scale, b_scale, out_scale, out_bits=)``, the operator's ``ports_of(params)``, the golden function
    ``golden(a, b, params)`` and the ranges of the three random scales."""
    two_operand = True
    #: (lo, hi) of the a, b and output scales drawn for each load
    scale_ranges = ()

    def __init__(self, cfg, rng):
        super().__init__(cfg, rng)
        self.out_width = cfg.get("out_width", 8)
        self.out_bits = cfg.get("out_bits", 8)

    async def load(self, ports, row_len):
        rng = self.rng
        self.params = self.params_of(*(float(rng.uniform(lo, hi)) for lo, hi in self.scale_ranges),
                                     out_bits=self.out_bits)
        for port, value in self.ports_of(self.params).items():
            ports.scalar(port).value = value

    def rows(self, kind, row_len, n):
        return pair_rows(self.rng, kind, row_len, n)

    def expected(self, row):
        return [int(v) for v in self.golden(np.array(row[0]), np.array(row[1]), self.params)]


class ResidualModel(_PairModel):
    name = "residual"
    scale_ranges = ((0.005, 0.1), (0.005, 0.1), (0.002, 0.2))
    params_of = staticmethod(golden_elementwise.residual_params)
    ports_of = staticmethod(residual_ports)
    golden = staticmethod(golden_elementwise.residual_add)


class GateModel(_PairModel):
    name = "gate"
    scale_ranges = ((0.005, 0.1), (0.005, 0.1), (0.0002, 0.01))
    params_of = staticmethod(golden_elementwise.gate_params)
    ports_of = staticmethod(gate_ports)
    golden = staticmethod(golden_elementwise.gate_mul)


class RopeModel(OpModel):
    """RoPE: one row = one head vector (head_dim = row_len, a multiple of 2 * lanes) at a position."""
    name = "rope"

    def __init__(self, cfg, rng):
        super().__init__(cfg, rng)
        self.out_width = cfg.get("out_width", 8)
        self.out_bits = cfg.get("out_bits", 8)
        self.max_positions = cfg["max_positions"]

    #: The output register reloads one cycle after the queued second half of a row drained.
    row_gap_cycles = 1

    def accepts_row_len(self, row_len):
        return 1 <= row_len <= self.max_row and row_len % (2 * self.lanes) == 0

    def min_row_len(self):
        return 2 * self.lanes

    def legal_lengths(self):
        step = 2 * self.lanes
        return sorted({step, self.max_row, max(step, (self.max_row // 2) // step * step)})

    async def load(self, ports, row_len):
        from npuforge.golden.elementwise import rope_table
        rng = self.rng
        self.frac_bits = int(rng.integers(10, 15)) if "frac_bits" not in self.cfg else self.cfg["frac_bits"]
        base = float(rng.choice([10000.0, 500000.0, 100.0]))
        first = int(rng.integers(0, 5000))  # table rows = positions first .. first + P - 1
        cos, sin = rope_table(row_len, first + self.max_positions, base=base, frac_bits=self.frac_bits)
        self.cos, self.sin = cos[first:], sin[first:]
        for addr, word in rope_param_words(self.cos, self.sin, max_half=self.max_row // 2):
            await ports.write_param(self, addr, word)
        self.position = int(rng.integers(0, self.max_positions))
        for port, value in rope_ports(position=self.position, frac_bits=self.frac_bits, out_bits=self.out_bits,
                                      max_positions=self.max_positions).items():
            ports.scalar(port).value = value

    def rows(self, kind, row_len, n):
        return int8_rows(self.rng, kind, row_len, n)

    def expected(self, row):
        from npuforge.golden.elementwise import rope
        return [int(v) for v in rope(np.array(row)[None, :], [self.position], self.cos, self.sin,
                                     frac_bits=self.frac_bits, out_bits=self.out_bits)[0]]


MODELS = {"requant": RequantModel, "table": TableModel, "residual": ResidualModel, "gate": GateModel,
          "rope": RopeModel}


def row_lengths(cfg):
    lanes, max_row = cfg["lanes"], cfg["max_row"]
    lens = {1, lanes, max_row, max(1, max_row - 1), min(max_row, lanes + 1), max(1, lanes - 1)}
    return sorted(lens)


def make_model(op, cfg, seed):
    return MODELS[op](cfg, np.random.default_rng(seed))
