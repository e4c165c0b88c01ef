"""Multipliers the vector operators share: the unit runs one operator at a time, so they need not own them.

An operator that takes part lists the multiplies one lane makes as :class:`MulSpec` entries in its ``multipliers``
attribute (name, operand shapes) and takes a ``shared_multipliers`` constructor flag:

* standalone (``shared_multipliers=False``, its own unit tests) it builds its multipliers itself;
* shared, its signature gains a ``mul`` member (:class:`MultipliersSignature`): per multiply and lane a
  :class:`MultiplierSignature` port whose operands it drives and whose product it reads back, combinationally.

Either way the operator calls :func:`multiply` where it used to write ``a * b`` and registers the product where it
registered it before, so sharing changes neither results nor cycles. The :class:`~npuforge.rtl.vector.unit.VectorUnit`
builds, per lane, one multiplier per slot of :func:`pool_slots` (as many as the operator with the most multiplies
has, each wide enough for every multiply mapped onto it) and feeds it the operands of the operator that owns the
unit's output (the opcode of the last row that entered): operators never run at the same time, because a row with a
different opcode waits until every operator is idle. The operand mux sits in front of the multiplier; the product
register stays in the operator.

What an operator that takes part must keep to: its ``busy`` covers every stage that holds an operand or a product
(softmax's output exp stages E1-E5 were not covered before it joined), and it multiplies only values it holds at
least one edge after the beat entered: the select switches on the edge a new opcode's first beat enters, so a
product of the entering beat itself (e.g. the norms' squares of the input, ``norm_stats``) would still see the
previous operator's selection. The norms do not take part yet for that reason and their per-row multiplies.

This module imports only Amaranth (rtl/ layering).
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Mux, Shape, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["MulSpec", "MultiplierSignature", "MultipliersSignature", "multiplier_members", "multiplier_ports",
           "multiply", "forward_multipliers", "PoolSlot", "pool_slots", "build_pool"]


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
    """One multiply, the operator's view: operands ``a``, ``b`` out, product ``p = a * b`` in (combinational)."""

    def __init__(self, spec: MulSpec):
        self.spec = spec
        super().__init__({"a": Out(spec.a), "b": Out(spec.b), "p": In(spec.product)})


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


def multiply(m, port, a, b):
    """``a * b``: built here when ``port`` is ``None``, else from the shared multiplier behind ``port`` (its operands
    driven combinationally, its product returned with the same shape as ``a * b`` would have)."""
    if port is None:
        return a * b
    spec = port.signature.spec
    for what, value, shape in (("a", a, spec.a), ("b", b, spec.b)):
        have = value.shape()
        if _fit([have, shape]) != shape:
            raise ValueError(f"multiply {spec.name!r}: operand {what} of shape {have} does not fit the port's {shape}")
    m.d.comb += [port.a.eq(a), port.b.eq(b)]
    return port.p


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
    """The shared multipliers: per slot and lane one ``a * b`` whose operands come from the user whose ``select``
    (operator name -> 1-bit value) is high (the first user when none is), its product sent to every user.
    ``ports(operator, multiply)`` gives the lanes' :class:`MultiplierSignature` ports (the unit's side)."""
    for j, slot in enumerate(slots):
        for k in range(lanes):
            a_in = Signal(slot.a, name=f"mul{j}_l{k}_a")
            b_in = Signal(slot.b, name=f"mul{j}_l{k}_b")
            a_sel = b_sel = None
            for op_name, mul_name, swap in slot.users:
                port = ports(op_name, mul_name)[k]
                a_op, b_op = (port.b, port.a) if swap else (port.a, port.b)
                if a_sel is None:
                    a_sel, b_sel = a_op, b_op
                else:
                    a_sel = Mux(select[op_name], a_op, a_sel)
                    b_sel = Mux(select[op_name], b_op, b_sel)
            product = Signal((a_in * b_in).shape(), name=f"mul{j}_l{k}_p")
            m.d.comb += [a_in.eq(a_sel), b_in.eq(b_sel), product.eq(a_in * b_in)]
            for op_name, mul_name, _ in slot.users:
                m.d.comb += ports(op_name, mul_name)[k].p.eq(product)
