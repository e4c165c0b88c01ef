"""Opcode-selected vector unit: one stream interface in front of every vector operator.

The NPU controller streams rows into ``i`` (and ``b`` for two-operand operators), picks the operator
with ``opcode`` and reads results from ``o``. Adding an operator is one :class:`OperatorSpec` entry
in :data:`REGISTRY`: its scalar parameter ports are exposed automatically as ``<name>_<port>``.

Routing rules
-------------
* ``opcode`` and ``row_len`` are held stable while a row enters (like every run-time parameter).
* Rows of one opcode stream back to back. A row with a different opcode waits until every operator
  is idle (``busy`` low), and one cycle more: the routing compares ``opcode`` with the registered opcode of the
  rows in flight, never the operators' busy flags (issue #16), so outputs never interleave or reorder; ``o`` is
  taken from the operator of the last opcode that entered.
* An opcode the unit does not contain sets ``error`` with BAD_OPCODE; its row is drained from ``i``.
* ``param_we`` / ``param_sel`` / ``param_addr`` / ``param_data`` write the parameter memory of the
  operator that implements opcode ``param_sel`` (address and data are truncated to its ports).
* An operator's other output ports (e.g. RMSNorm's ``token_k``, beside its ``o`` beats) are exposed as
  ``<name>_<port>``; they travel with the ``o`` beats through the output buffer.
* ``o`` leaves through a two-entry skid buffer (:class:`~npuforge.rtl.vector.skid.SkidBuffer`): ``o.valid``, its
  payload and the ready the operators see are registers, so the consumer's ``o.ready`` never reaches the operators'
  pipelines (nor, through them, ``i.ready`` / ``b.ready``) in the same cycle; every result leaves one cycle later.
* Operators that make the same kind of multiplies share them (:mod:`rtl.vector.mulpool`): each lane has as many
  multipliers as the operator with the most multiplies needs, sized for the widest multiply mapped onto each, and
  their operands come from the operator that drives ``o`` (the opcode of the last row that entered). Because rows
  of another opcode wait until every operator is idle, operators never multiply at the same time; a multiply is the
  same pipeline shared or private (operand registers behind the mux, product registers, then the operator's product
  register), so results and cycles are those of private multipliers.
* ``error`` is the OR of every operator's sticky error and the unit's own; ``error_code`` is the code
  of the first flagged source in registry order (the unit's BAD_OPCODE first), ``error_source`` its
  index (0: the unit, k + 1: ``ops[k]``). ``clear`` clears them all.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from amaranth.hdl import Cat, Const, Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from npuforge.rtl.vector.common import ERROR_CODE_WIDTH, OPERATOR_CONTROL, ErrorCode, VecBeat, check_lanes, \
    check_max_row, row_len_shape, sticky_error
from npuforge.rtl.vector.mulpool import build_pool, pool_slots
from npuforge.rtl.vector.skid import SkidBuffer
from npuforge.spec.vector_ops import ROPE_MAX_HEAD_DIM, ROPE_POSITIONS

__all__ = ["OPCODES", "OperatorSpec", "REGISTRY", "available_operators", "VectorUnit"]

#: Opcode values (4 bits), fixed whatever subset of operators a unit contains.
OPCODES = {
    "REQUANT": 0, "GELU": 1, "SILU": 2, "RESIDUAL": 3, "GATE": 4, "ROPE": 5,
    "SOFTMAX": 6, "LAYERNORM": 7, "RMSNORM": 8, "GELU16": 9, "SILU16": 10,
}
OPCODE_WIDTH = 4

# Ports every operator shares with the unit (not exposed per operator).
_SHARED = {"i", "a", "b", "o", "row_len", "param_we", "param_addr", "param_data", *OPERATOR_CONTROL.members}


@dataclass(frozen=True)
class OperatorSpec:
    """One hardware operator of the unit.

    ``module``/``cls`` name the component class (imported lazily, so a registry entry may point at
    an operator that does not exist yet); ``kwargs`` are extra constructor arguments besides
    ``lanes`` and ``max_row`` (a dict, or a function ``(lanes, max_row) -> dict`` that may also
    override ``max_row``, e.g. RoPE only needs head_dim); ``opcodes`` maps each opcode mnemonic it serves to the values of
    ports the opcode fixes (e.g. GELU and SiLU are one table operator with ``table_select`` 0 / 1).
    ``shares_multipliers``: the class takes ``shared_multipliers`` and lists its multiplies in ``multipliers``
    (:mod:`rtl.vector.mulpool`), so the unit can give it shared ones.
    """
    name: str
    module: str
    cls: str
    opcodes: dict = field(default_factory=dict)
    kwargs: object = field(default_factory=dict)
    shares_multipliers: bool = False

    def load(self):
        """The component class, or ``None`` when its module does not exist (yet)."""
        try:
            mod = importlib.import_module(self.module)
        except ModuleNotFoundError:
            return None
        return getattr(mod, self.cls, None)

    def build(self, *, lanes: int, max_row: int, options=None):
        klass = self.load()
        if klass is None:
            raise ValueError(f"operator {self.name!r} is not available ({self.module}.{self.cls} missing)")
        options = dict(options or {})
        kwargs = {"max_row": max_row}
        kwargs.update(self.kwargs(lanes, max_row) if callable(self.kwargs) else self.kwargs)
        kwargs.update(options)
        return klass(lanes=lanes, **kwargs)


def _rope_kwargs(lanes: int, max_row: int) -> dict:
    """RoPE rows are head vectors: head_dim up to ``ROPE_MAX_HEAD_DIM`` = 256 (a multiple of 2 * lanes),
    ``ROPE_POSITIONS`` = 8 resident positions (spec.vector_ops)."""
    head_dim = max(2 * lanes, min(max_row, ROPE_MAX_HEAD_DIM) // (2 * lanes) * (2 * lanes))
    return {"max_row": head_dim, "max_positions": ROPE_POSITIONS}


REGISTRY = (
    OperatorSpec("requant", "npuforge.rtl.vector.requant", "Requant", {"REQUANT": {}}, {"out_width": 16}),
    OperatorSpec("table", "npuforge.rtl.vector.table", "ActivationTable",
                 {"GELU": {"table_select": 0}, "SILU": {"table_select": 1}}, {"tables": 2}),
    # The 16-bit tables keep their own 17x6 product: on a shared 32x32 multiplier their table-read path set the
    # preset vector unit's fmax (34.9 MHz against 44.63 MHz without it, one MULT18X18D per lane more).
    OperatorSpec("interp", "npuforge.rtl.vector.table", "InterpTable",
                 {"GELU16": {"table_select": 0}, "SILU16": {"table_select": 1}}, {"tables": 2}),
    OperatorSpec("residual", "npuforge.rtl.vector.elementwise", "ResidualAdd", {"RESIDUAL": {}},
                 shares_multipliers=True),
    OperatorSpec("gate", "npuforge.rtl.vector.elementwise", "GateMul", {"GATE": {}}, shares_multipliers=True),
    OperatorSpec("rope", "npuforge.rtl.vector.rope", "Rope", {"ROPE": {}}, _rope_kwargs, shares_multipliers=True),
    OperatorSpec("softmax", "npuforge.rtl.vector.softmax", "Softmax", {"SOFTMAX": {}}, shares_multipliers=True),
    OperatorSpec("layernorm", "npuforge.rtl.vector.norm", "LayerNorm", {"LAYERNORM": {}}),
    OperatorSpec("rmsnorm", "npuforge.rtl.vector.norm", "RMSNorm", {"RMSNORM": {}}),
)
_BY_NAME = {spec.name: spec for spec in REGISTRY}


def available_operators() -> tuple[str, ...]:
    """Names of registry operators whose RTL exists."""
    return tuple(spec.name for spec in REGISTRY if spec.load() is not None)


def _width(shape) -> int:
    return Shape.cast(shape).width


def _lane_width(stream_member) -> int:
    """Element width (bits) of a VecBeat stream member."""
    layout = stream_member.signature.members["payload"].shape
    return Shape.cast(layout["data"].shape.elem_shape).width


class VectorUnit(wiring.Component):
    """Opcode-selected unit holding the operators ``ops`` (registry names; default: all available).

    ``options`` maps an operator name to constructor keyword overrides (e.g.
    ``{"rope": {"max_positions": 64}}``). ``share_multipliers`` (default True) gives the operators that can take
    them the lanes' shared multipliers (``multiplier_slots``, see :mod:`rtl.vector.mulpool`); False leaves every
    operator its own.

    Members
    -------
    i : In(stream.Signature(VecBeat(in_width, lanes)))
        Operand rows; each operator takes the low bits of each lane (``in_width`` = the widest
        operator input, 32 with requant). The values must lie in the operator's input range.
    b : In(stream.Signature(VecBeat(b_width, lanes)))
        Second operand of two-operand operators (residual, gate); present only if one is included.
    o : Out(stream.Signature(VecBeat(out_width, lanes)))
        Results, sign-extended to the widest operator output.
    opcode : In(4), row_len : In(row_len_shape(max_row))
    param_we, param_sel, param_addr, param_data
    <op>_<port> : the scalar parameter ports of each operator.
    clear, error, error_code, error_source, busy
        ``busy``: an operator holds a beat, or the output buffer does.
    """

    def __init__(self, *, lanes: int, max_row: int = 4096, ops=None, options=None, share_multipliers: bool = True):
        self.lanes = check_lanes(lanes)
        self.max_row = check_max_row(max_row, lanes=lanes)
        if ops is None:
            ops = available_operators()
        ops = tuple(ops)
        if not ops:
            raise ValueError("ops must name at least one operator")
        for name in ops:
            if name not in _BY_NAME:
                raise ValueError(f"unknown vector operator {name!r}; known: {sorted(_BY_NAME)}")
        if len(set(ops)) != len(ops):
            raise ValueError(f"ops lists an operator twice: {ops}")
        self.ops = ops
        options = dict(options or {})
        for name in options:
            if name not in ops:
                raise ValueError(f"options given for {name!r}, which is not in ops {ops}")
        self.share_multipliers = bool(share_multipliers)
        for name in ops:
            if self.share_multipliers and _BY_NAME[name].shares_multipliers:
                options[name] = {"shared_multipliers": True, **options.get(name, {})}
        self.operators = {name: _BY_NAME[name].build(lanes=lanes, max_row=max_row, options=options.get(name))
                          for name in ops}
        #: The lanes' shared multipliers (rtl.vector.mulpool.PoolSlot), empty without sharing.
        self.multiplier_slots = pool_slots({name: op.multipliers for name, op in self.operators.items()
                                            if getattr(op, "shared_multipliers", False)})
        for name, op in self.operators.items():
            if getattr(op, "max_row", max_row) > max_row:
                raise ValueError(f"operator {name!r} max_row {op.max_row} exceeds the unit's max_row {max_row}")
        for name, op in self.operators.items():
            members = op.signature.members
            if any(members.get(port) != member for port, member in OPERATOR_CONTROL.members.items()):
                raise ValueError(f"operator {name!r} lacks the OPERATOR_CONTROL ports clear/error/error_code/busy "
                                 f"(required by the unit, see rtl.vector.common)")
        #: opcode value -> (operator name, fixed port values)
        self.opcode_map = {OPCODES[mn]: (name, fixed) for name in ops for mn, fixed in _BY_NAME[name].opcodes.items()}

        members = {}
        in_w = b_w = out_w = addr_w = data_w = 1
        two_operand = False
        self.exposed = []  # (operator, port, unit port name)
        for name, op in self.operators.items():
            sig = op.signature.members
            if "a" in sig:
                two_operand = True
                in_w = max(in_w, _lane_width(sig["a"]))
                b_w = max(b_w, _lane_width(sig["b"]))
            else:
                in_w = max(in_w, _lane_width(sig["i"]))
            out_w = max(out_w, _lane_width(sig["o"]))
            if "param_we" in sig:
                addr_w = max(addr_w, _width(sig["param_addr"].shape))
                data_w = max(data_w, _width(sig["param_data"].shape))
            fixed = set().union(*(f.keys() for f in _BY_NAME[name].opcodes.values()))
            for port, member in sig.items():
                if port in _SHARED or port in fixed or not member.is_port:
                    continue
                unit_port = f"{name}_{port}"
                members[unit_port] = (In if member.flow == In else Out)(member.shape)
                self.exposed.append((name, port, unit_port))
        self.in_width, self.out_width = in_w, out_w
        self.b_width = b_w if two_operand else None
        members.update({
            "i": In(stream.Signature(VecBeat(self.in_width, lanes))),
            "o": Out(stream.Signature(VecBeat(self.out_width, lanes))),
            "opcode": In(OPCODE_WIDTH),
            "row_len": In(row_len_shape(max_row)),
            "param_we": In(1),
            "param_sel": In(OPCODE_WIDTH),
            "param_addr": In(unsigned(addr_w)),
            "param_data": In(unsigned(data_w)),
            "clear": In(1),
            "error": Out(1),
            "error_code": Out(ERROR_CODE_WIDTH),
            "error_source": Out(range(len(ops) + 1)),
            "busy": Out(1),
        })
        if two_operand:
            members["b"] = In(stream.Signature(VecBeat(self.b_width, lanes)))
        super().__init__(members)

    def elaborate(self, platform):
        # Routing is written as plain expressions (no comb If/Switch): they become continuous
        # assignments, which event-driven simulators evaluate at time 0 even when an input such as
        # the reset value of `cur_opcode` never changes (an `always @*` block would stay X).
        m = Module()
        lanes = self.lanes
        ops = self.ops
        for name, op in self.operators.items():
            m.submodules[name] = op

        def any_of(terms):
            out = Const(0, 1)
            for t in terms:
                out = out | t
            return out

        busy_any = Signal()
        m.d.comb += busy_any.eq(any_of(op.busy for op in self.operators.values()))
        # The output buffer: the selected operator's beat and the other output ports that travel beside it.
        side_ports = [(getattr(self.operators[name], port), getattr(self, unit_port))
                      for name, port, unit_port in self.exposed if self.signature.members[unit_port].flow == Out]
        side_width = max(1, sum(len(port) for port, _ in side_ports))
        m.submodules.out_buffer = out_buffer = SkidBuffer(data.StructLayout({
            "beat": VecBeat(self.out_width, lanes), "side": unsigned(side_width)}))

        # The opcode whose rows currently own the operators (and `o`).
        cur_opcode = Signal(OPCODE_WIDTH)
        known, route_ok = Signal(), Signal()
        m.d.comb += [
            known.eq(any_of(self.opcode == code for code in self.opcode_map)),
            # Two registers compared: no operator's busy reaches the routing (a new opcode's rows wait for
            # cur_opcode, which follows `opcode` the cycle after every operator is idle).
            route_ok.eq(self.opcode == cur_opcode),
        ]
        with m.If(~busy_any & known):
            m.d.sync += cur_opcode.eq(self.opcode)

        # Unknown opcode: drain `i` until `last`, flag BAD_OPCODE.
        unit_error = Signal()
        unit_code = Signal(ERROR_CODE_WIDTH)
        drain_bad = Signal()
        m.d.comb += drain_bad.eq(~known & ~busy_any)
        sticky_error(m, error=unit_error, error_code=unit_code, clear=self.clear,
                     events=[(self.i.valid & drain_bad, ErrorCode.BAD_OPCODE)])
        m.d.comb += self.busy.eq(busy_any | out_buffer.busy)

        i_ready_terms = [drain_bad]
        b_ready_terms = []
        o_valid = Const(0, 1)
        o_last = Const(0, 1)
        o_lanes = [Const(0, signed(self.out_width)) for _ in range(lanes)]
        owns_output = {}
        for name, op in self.operators.items():
            sig = op.signature.members
            codes = [c for c, (n, _) in self.opcode_map.items() if n == name]
            sel_in = Signal(name=f"{name}_sel_in")    # this operator takes the input now
            sel_out = Signal(name=f"{name}_sel_out")  # this operator drives `o`
            sel_param = Signal(name=f"{name}_sel_param")
            m.d.comb += [
                sel_in.eq(route_ok & any_of(self.opcode == c for c in codes)),
                sel_out.eq(any_of(cur_opcode == c for c in codes)),
                sel_param.eq(any_of(self.param_sel == c for c in codes)),
            ]
            owns_output[name] = sel_out

            # Input stream(s).
            if "a" in sig:
                m.d.comb += [
                    op.a.valid.eq(self.i.valid & sel_in),
                    op.b.valid.eq(self.b.valid & sel_in),
                    op.a.payload.last.eq(self.i.payload.last),
                    op.b.payload.last.eq(self.b.payload.last),
                ]
                m.d.comb += [op.a.payload.data[k].eq(self.i.payload.data[k]) for k in range(lanes)]
                m.d.comb += [op.b.payload.data[k].eq(self.b.payload.data[k]) for k in range(lanes)]
                i_ready_terms.append(sel_in & op.a.ready)
                b_ready_terms.append(sel_in & op.b.ready)
            else:
                m.d.comb += [
                    op.i.valid.eq(self.i.valid & sel_in),
                    op.i.payload.last.eq(self.i.payload.last),
                ]
                m.d.comb += [op.i.payload.data[k].eq(self.i.payload.data[k]) for k in range(lanes)]
                i_ready_terms.append(sel_in & op.i.ready)

            # Output stream: a mux chain over the operators (one sel_out is high at a time).
            m.d.comb += op.o.ready.eq(out_buffer.i.ready & sel_out)
            o_valid = Mux(sel_out, op.o.valid, o_valid)
            o_last = Mux(sel_out, op.o.payload.last, o_last)
            # Each lane sign-extends from the operator's own element shape.
            o_lanes = [Mux(sel_out, op.o.payload.data[k], o_lanes[k]) for k in range(lanes)]

            # Shared run-time parameters.
            op_max_row = getattr(op, "max_row", self.max_row)
            if op_max_row < self.max_row:
                # A row longer than this operator supports must not wrap into a legal length: give it 0.
                m.d.comb += op.row_len.eq(Mux(self.row_len > op_max_row, 0, self.row_len))
            else:
                m.d.comb += op.row_len.eq(self.row_len)
            m.d.comb += op.clear.eq(self.clear)
            if "param_we" in sig:
                m.d.comb += [op.param_we.eq(self.param_we & sel_param), op.param_data.eq(self.param_data)]
                op_addr_w = _width(sig["param_addr"].shape)
                if op_addr_w < len(self.param_addr):
                    # An address too wide for this operator must not wrap into its range: all ones is
                    # past the end of every memory sized 2**(w-1) .. 2**w - 1, so it flags PARAM_ADDR.
                    m.d.comb += op.param_addr.eq(Mux(self.param_addr >> op_addr_w != 0,
                                                     (1 << op_addr_w) - 1, self.param_addr))
                else:
                    m.d.comb += op.param_addr.eq(self.param_addr)
            for op_name, port, unit_port in self.exposed:
                if op_name == name:
                    if sig[port].flow == In:
                        m.d.comb += getattr(op, port).eq(getattr(self, unit_port))
            # Ports fixed by the opcode (e.g. the table select of GELU / SiLU).
            fixed_ports = set().union(*(self.opcode_map[c][1].keys() for c in codes))
            for port in sorted(fixed_ports):
                value = Const(0)
                for c in codes:
                    if port in self.opcode_map[c][1]:
                        value = Mux(self.opcode == c, self.opcode_map[c][1][port], value)
                m.d.comb += getattr(op, port).eq(value)

        buffered = out_buffer.i.payload
        m.d.comb += [
            self.i.ready.eq(any_of(i_ready_terms)),
            out_buffer.i.valid.eq(o_valid),
            buffered.beat.last.eq(o_last),
            buffered.side.eq(Cat(*(port for port, _ in side_ports))),
        ]
        m.d.comb += [buffered.beat.data[k].eq(o_lanes[k]) for k in range(lanes)]
        m.d.comb += [self.o.valid.eq(out_buffer.o.valid), self.o.payload.eq(out_buffer.o.payload.beat),
                     out_buffer.o.ready.eq(self.o.ready)]
        offset = 0
        for port, unit_port in side_ports:
            m.d.comb += unit_port.eq(out_buffer.o.payload.side[offset:offset + len(port)])
            offset += len(port)
        # The operator that drives `o` is the one running: it owns the shared multipliers.
        build_pool(m, self.multiplier_slots, lanes=lanes, select=owns_output,
                   ports=lambda op_name, mul_name: getattr(self.operators[op_name].mul, mul_name))
        if b_ready_terms:
            m.d.comb += self.b.ready.eq(any_of(b_ready_terms))

        # Errors: the unit's own first, then operators in registry order.
        code, source = Const(0, ERROR_CODE_WIDTH), Const(0, range(len(ops) + 1))
        for idx in reversed(range(len(ops))):
            op = self.operators[ops[idx]]
            code = Mux(op.error, op.error_code, code)
            source = Mux(op.error, idx + 1, source)
        m.d.comb += [
            self.error.eq(unit_error | any_of(self.operators[n].error for n in ops)),
            self.error_code.eq(Mux(unit_error, unit_code, code)),
            self.error_source.eq(Mux(unit_error, 0, source)),
        ]
        return m
