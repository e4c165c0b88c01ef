"""Multipliers the vector operators share: the unit runs one operator at a time, so they need not own them.

An operator that takes part lists the multiplies one lane makes as :class:`MulSpec` entries in its ``multipliers``
attribute (name, operand shapes) and takes a ``shared_multipliers`` constructor flag:

* standalone (``shared_multipliers=False``, its own unit tests) it builds its multipliers itself;
* shared, its signature gains a ``mul`` member (:class:`MultipliersSignature`): per multiply and lane a
  :class:`MultiplierSignature` port whose operands and enable it drives and whose product it reads back.

Every multiply is pipelined (:class:`PipelinedMultiplier`): the product of the operands taken on an enabled edge
comes out :data:`MUL_LATENCY` = 2 enabled edges later (operand registers, then the product registers; on ECP5 both
inside the MULT18X18D blocks, before the adder tree of a product wider than one block). The operator calls
:func:`multiply` with its stage enable, carries the beat's other values through :func:`delay_stages` beside it and
registers the product in its product register as before, so each multiply costs it ``MUL_LATENCY`` cycles of latency,
standalone and shared alike: sharing changes neither results nor cycles. The
:class:`~npuforge.rtl.vector.unit.VectorUnit` builds, per lane, one multiplier per slot of :func:`pool_slots` (as many
as the operator with the most multiplies has, each wide enough for every multiply mapped onto it) and feeds it the
operands and enable of the operator that owns the unit's output (the opcode of the last row that entered): operators
never run at the same time, because a row with a different opcode waits until every operator is idle. The operand
mux sits in front of the multiplier's operand registers (so the mux, the multiplier block and the adder tree are
three registered stages); the final product register stays in the operator.

What an operator that takes part must keep to: its ``busy`` covers every stage that holds an operand or a product
(softmax's output exp stages E1-E5 were not covered before it joined; the :func:`delay_stages` beside each multiply
carry the beat's valid for that), and it multiplies only values it holds at
least one edge after the beat entered: the select switches on the edge a new opcode's first beat enters, so a
product of the entering beat itself (e.g. the norms' squares of the input, ``norm_stats``) would still see the
previous operator's selection. The norms do not take part yet for that reason and their per-row multiplies.

This module imports only Amaranth and :mod:`rtl.dsp` (rtl/ layering).
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Cat, Const, Module, Mux, Shape, Signal, Value, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from npuforge.rtl.dsp import MULT18_WIDTH, Multiplier, dsp_family

__all__ = ["MUL_LATENCY", "MulSpec", "MultiplierSignature", "MultipliersSignature", "multiplier_members",
           "multiplier_ports", "multiply", "delay_stages", "stages_hold", "PipelinedMultiplier", "forward_multipliers", "PoolSlot",
           "pool_slots", "build_pool"]

#: Enabled edges from a multiply's operands to its product (:class:`PipelinedMultiplier`).
MUL_LATENCY = 2
#: Operand bits of one multiplier block below its top slice: the low slices are unsigned, so 17 bits (zero-extended
#: to the block's signed 18).
_SLICE = MULT18_WIDTH - 1


@dataclass(frozen=True)
class MulSpec:
    """One multiply of one lane: ``name`` (unique in its operator) and the operand shapes ``a`` and ``b``."""
    name: str
    a: Shape
    b: Shape

    def __post_init__(self):
        object.__setattr__(self, "a", Shape.cast(self.a))
        object.__setattr__(self, "b", Shape.cast(self.b))

    @property
    def product(self) -> Shape:
        """The shape of ``a * b`` (Amaranth's: signed if either operand is, ``a.width + b.width`` bits)."""
        return (Signal(self.a) * Signal(self.b)).shape()

    @property
    def cost(self) -> int:
        """Operand bits multiplied (orders the multiplies when they are mapped onto shared multipliers)."""
        return self.a.width * self.b.width

    def renamed(self, name: str) -> "MulSpec":
        return MulSpec(name, self.a, self.b)


class MultiplierSignature(wiring.Signature):
    """One multiply, the operator's view: operands ``a``, ``b`` and the enable ``en`` out, product ``p`` in: ``a * b``
    of the operands taken :data:`MUL_LATENCY` enabled edges earlier (:class:`PipelinedMultiplier`)."""

    def __init__(self, spec: MulSpec):
        self.spec = spec
        super().__init__({"en": Out(1), "a": Out(spec.a), "b": Out(spec.b), "p": In(spec.product)})


class MultipliersSignature(wiring.Signature):
    """Every multiply of an operator, the operator's view: member ``<name>`` is a list of ``lanes``
    :class:`MultiplierSignature` ports, one per lane."""

    def __init__(self, specs, lanes: int):
        self.specs, self.lanes = tuple(specs), lanes
        names = [s.name for s in self.specs]
        if len(set(names)) != len(names):
            raise ValueError(f"multiply names must be unique, got {names}")
        super().__init__({s.name: Out(MultiplierSignature(s)).array(lanes) for s in self.specs})


def multiplier_members(op) -> dict:
    """The signature member an operator adds when built with ``shared_multipliers`` (else none); ``op`` has
    ``multipliers``, ``lanes`` and ``shared_multipliers`` set."""
    if not op.shared_multipliers:
        return {}
    return {"mul": Out(MultipliersSignature(op.multipliers, op.lanes))}


def multiplier_ports(op, name: str) -> list:
    """The lanes' ports of ``op``'s multiply ``name`` when it shares multipliers, else ``None`` per lane."""
    if not op.shared_multipliers:
        return [None] * op.lanes
    return list(getattr(op.mul, name))


def multiply(m, port, a, b, *, en, name: str):
    """``a * b`` of the operands taken :data:`MUL_LATENCY` edges with ``en`` high earlier, with the shape ``a * b``
    has: a :class:`PipelinedMultiplier` built here (submodule ``name``) when ``port`` is ``None``, else the shared
    multiplier behind ``port`` (the same pipeline; operands and enable driven combinationally)."""
    a, b = Value.cast(a), Value.cast(b)
    if port is None:
        m.submodules[name] = mul = PipelinedMultiplier(a.shape(), b.shape())
        m.d.comb += [mul.en.eq(en), mul.a.eq(a), mul.b.eq(b)]
        return mul.p
    spec = port.signature.spec
    for what, value, shape in (("a", a, spec.a), ("b", b, spec.b)):
        have = value.shape()
        if _fit([have, shape]) != shape:
            raise ValueError(f"multiply {spec.name!r}: operand {what} of shape {have} does not fit the port's {shape}")
    m.d.comb += [port.en.eq(en), port.a.eq(a), port.b.eq(b)]
    return port.p


def delay_stages(m, en, values, *, name: str, stages: int = MUL_LATENCY) -> list:
    """``values`` registered through ``stages`` registers that advance on ``en``: what travels beside a multiply's
    operands. Returns the registers of every stage (``[stage][value]``, the last stage last)."""
    out, prev = [], [Value.cast(v) for v in values]
    for n in range(stages):
        regs = [Signal(v.shape(), name=f"{name}{n}_{j}") for j, v in enumerate(prev)]
        with m.If(en):
            m.d.sync += [r.eq(v) for r, v in zip(regs, prev)]
        out.append(regs)
        prev = regs
    return out


def stages_hold(stages) -> Value:
    """High while any stage of :func:`delay_stages` holds a beat: the first value of each stage is the beat's valid
    (what an operator's ``busy`` must cover)."""
    return Cat(*(regs[0] for regs in stages)).any()


def _slices(value) -> list:
    """``value`` as multiplier-block operands: (signed value of at most 18 bits, bit offset) pairs, low slices
    unsigned 17 bits zero-extended, the top slice with the value's signedness."""
    shape = value.shape()
    width = shape.width
    count = max(1, -(-(width - shape.signed) // _SLICE))
    out = []
    for i in range(count):
        lo = i * _SLICE
        if i < count - 1:
            out.append((Cat(value[lo:lo + _SLICE], Const(0, 1)).as_signed(), lo))
        elif shape.signed:
            out.append((value[lo:].as_signed(), lo))
        else:
            out.append((Cat(value[lo:], Const(0, 1)).as_signed(), lo))
    return out


class PipelinedMultiplier(wiring.Component):
    """``p = a * b`` of the operands taken :data:`MUL_LATENCY` = 2 edges with ``en`` high earlier: operand registers,
    then product registers, then (split) the adder tree, combinationally.

    Parameters
    ----------
    a_shape, b_shape : shape
        Operand shapes (any widths, signed or not).
    split : bool or None
        Build the product from 18x18 blocks (:class:`~npuforge.rtl.dsp.Multiplier` with both registers: on ECP5 a
        MULT18X18D whose registers sit inside the block), one per pair of 17-bit operand slices, the partial products
        summed after the blocks' product registers. ``None``: split when the platform has a multiplier-block family
        (``rtl.dsp.dsp_family``); otherwise one registered multiply (simulation, generic synthesis). Same values in
        the same cycles either way.

    Members
    -------
    en : In(1)
    a, b : In(a_shape), In(b_shape)
    p : Out(shape of a * b)
    """

    def __init__(self, a_shape, b_shape, *, split: bool | None = None):
        self.a_shape, self.b_shape = Shape.cast(a_shape), Shape.cast(b_shape)
        self.split = split
        product = (Signal(self.a_shape) * Signal(self.b_shape)).shape()
        super().__init__({"en": In(1), "a": In(self.a_shape), "b": In(self.b_shape), "p": Out(product)})

    def elaborate(self, platform):
        m = Module()
        split = self.split if self.split is not None else dsp_family(platform) is not None
        if not split:
            a_reg, b_reg = Signal(self.a_shape, name="a_reg"), Signal(self.b_shape, name="b_reg")
            p_reg = Signal(self.p.shape(), name="p_reg")
            with m.If(self.en):
                m.d.sync += [a_reg.eq(self.a), b_reg.eq(self.b), p_reg.eq(a_reg * b_reg)]
            m.d.comb += self.p.eq(p_reg)
            return m
        terms = []
        for i, (a_slice, a_at) in enumerate(_slices(self.a)):
            for j, (b_slice, b_at) in enumerate(_slices(self.b)):
                block = Multiplier(a_width=max(2, len(a_slice)), b_width=max(2, len(b_slice)))
                m.submodules[f"block_{i}_{j}"] = block
                m.d.comb += [block.en.eq(self.en), block.a.eq(a_slice), block.b.eq(b_slice)]
                terms.append((block.p, a_at + b_at))
        m.d.comb += self.p.eq(_sum_shifted(m, terms))
        return m


def _sum_shifted(m, terms):
    """Sum of ``value << offset`` over ``terms`` as a balanced tree of adds, each add only over the bits above the
    lower term's offset (the bits below it pass through)."""
    terms = sorted(terms, key=lambda t: t[1])
    while len(terms) > 1:
        paired = []
        for n in range(0, len(terms) - 1, 2):
            (low, low_at), (high, high_at) = terms[n], terms[n + 1]
            gap = high_at - low_at
            if gap:
                wide = Signal(signed(max(len(low), gap + 1)), name=f"sum_{low_at}_{high_at}_{len(terms)}_{n}")
                m.d.comb += wide.eq(low)
                low = Cat(wide[:gap], (wide >> gap) + high).as_signed()
            else:
                low = low + high
            paired.append((low, low_at))
        if len(terms) % 2:
            paired.append(terms[-1])
        terms = paired
    value, offset = terms[0]
    return value << offset if offset else value


def forward_multipliers(m, outer, inner, *, prefix: str = "") -> None:
    """Pass the multiplies of a submodule ``inner`` through ``outer``'s ``mul`` member (named ``prefix + name``)."""
    if not inner.shared_multipliers:
        return
    for spec in inner.multipliers:
        for o, i in zip(getattr(outer.mul, prefix + spec.name), getattr(inner.mul, spec.name)):
            wiring.connect(m, wiring.flipped(o), i)


@dataclass(frozen=True)
class PoolSlot:
    """One shared multiplier of every lane: operand shapes ``a``, ``b`` and its ``users``, tuples
    ``(operator, multiply name, swapped)`` (``swapped``: the multiply's ``b`` goes to the slot's ``a``)."""
    a: Shape
    b: Shape
    users: tuple


def _fit(shapes) -> Shape:
    """The narrowest shape holding every value of ``shapes``."""
    shapes = list(shapes)
    if not any(s.signed for s in shapes):
        return unsigned(max(s.width for s in shapes))
    return signed(max(s.width + (0 if s.signed else 1) for s in shapes))


def pool_slots(operators: dict) -> tuple:
    """Map the multiplies of ``operators`` (name -> tuple of :class:`MulSpec`) onto shared multipliers: slot ``j``
    takes every operator's ``j``-th largest multiply (operands oriented wider first), so the slot count is the largest
    number of multiplies one operator makes and the widest multiplies share the widest multipliers."""
    columns = []
    for name, specs in operators.items():
        for j, spec in enumerate(sorted(specs, key=lambda s: -s.cost)):
            if j == len(columns):
                columns.append([])
            columns[j].append((name, spec, spec.b.width > spec.a.width))
    slots = []
    for column in columns:
        a_shapes = [s.b if swap else s.a for _, s, swap in column]
        b_shapes = [s.a if swap else s.b for _, s, swap in column]
        slots.append(PoolSlot(a=_fit(a_shapes), b=_fit(b_shapes),
                              users=tuple((name, s.name, swap) for name, s, swap in column)))
    return tuple(slots)


def build_pool(m, slots, *, lanes: int, ports, select) -> None:
    """The shared multipliers: per slot and lane one :class:`PipelinedMultiplier` whose operands and enable come from
    the user whose ``select`` (operator name -> 1-bit value) is high (the first user when none is), its product sent
    to every user. ``ports(operator, multiply)`` gives the lanes' :class:`MultiplierSignature` ports (the unit's
    side)."""
    for j, slot in enumerate(slots):
        for k in range(lanes):
            m.submodules[f"mul{j}_l{k}"] = mul = PipelinedMultiplier(slot.a, slot.b)
            en_sel = a_sel = b_sel = None
            for op_name, mul_name, swap in slot.users:
                port = ports(op_name, mul_name)[k]
                a_op, b_op = (port.b, port.a) if swap else (port.a, port.b)
                if a_sel is None:
                    en_sel, a_sel, b_sel = port.en, a_op, b_op
                else:
                    en_sel = Mux(select[op_name], port.en, en_sel)
                    a_sel = Mux(select[op_name], a_op, a_sel)
                    b_sel = Mux(select[op_name], b_op, b_sel)
            m.d.comb += [mul.en.eq(en_sel), mul.a.eq(a_sel), mul.b.eq(b_sel)]
            for op_name, mul_name, _ in slot.users:
                m.d.comb += ports(op_name, mul_name)[k].p.eq(mul.p)
