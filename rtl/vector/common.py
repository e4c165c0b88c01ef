"""Shared pieces of the vector unit: beat layout, error codes, parameter checks, row bookkeeping.

Conventions (binding for every operator in ``rtl/vector/``):

* A row of ``row_len`` elements travels as ``ceil(row_len / lanes)`` beats of :class:`VecBeat`;
  ``last`` marks the final beat. Lanes past the row end are don't-care on input and 0 on output.
* Run-time parameters are plain ``In`` ports held stable while a row is in flight; tables and
  per-channel values are written through ``param_we`` / ``param_addr`` / ``param_data``.
* ``error`` is sticky until reset or a ``clear`` pulse; ``error_code`` holds the first error
  (:class:`ErrorCode`). On an error the operator drains its input up to ``last`` without producing
  output for that row, so a pipeline never hangs.
* ``busy`` (``Out(1)``) is high while an accepted beat has neither left ``o`` nor been dropped; the
  opcode-selected unit switches operators only when every operator is idle, so rows never reorder.
* These four ports are :data:`OPERATOR_CONTROL` (:class:`OperatorControlSignature`), merged into every
  operator's signature with :func:`with_control`.

This module imports only Amaranth (rtl/ layering).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from amaranth.hdl import Const, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["VecBeat", "ErrorCode", "ERROR_CODE_WIDTH", "OperatorControlSignature", "OPERATOR_CONTROL", "with_control",
           "check_lanes", "check_max_row", "check_width", "default_steps_per_cycle",
           "row_len_shape", "beats_per_row", "saturate", "sticky_error", "RowTracker", "accept_rows", "row_errors",
           "StoredRows", "store_rows", "record_slot"]

#: Width of every operator's ``error_code`` output.
ERROR_CODE_WIDTH = 4


class ErrorCode(enum.IntEnum):
    """Values of ``error_code`` (4 bits). The first error is kept until ``clear``."""
    NONE = 0
    #: ``row_len`` is 0 or above the generation-time ``max_row``.
    ROW_LEN = 1
    #: A run-time parameter is out of its range (e.g. a shift outside the supported window).
    BAD_PARAM = 2
    #: A ``param_addr`` write past the end of a table or parameter memory (write ignored).
    PARAM_ADDR = 3
    #: ``last`` did not arrive on beat ``ceil(row_len / lanes) - 1`` of the row.
    ROW_FRAMING = 4
    #: The opcode-selected unit got an opcode it does not contain.
    BAD_OPCODE = 5


class OperatorControlSignature(wiring.Signature):
    """Run control and status every vector operator shares (the operator's view).

    Members
    -------
    clear : In(1)                        pulse: forget a sticky error.
    error : Out(1)                       sticky until reset or ``clear``.
    error_code : Out(ERROR_CODE_WIDTH)   the first error (:class:`ErrorCode`).
    busy : Out(1)                        an accepted beat has neither left ``o`` nor been dropped.
    """

    def __init__(self):
        super().__init__({
            "clear": In(1),
            "error": Out(1),
            "error_code": Out(ERROR_CODE_WIDTH),
            "busy": Out(1),
        })


#: The one control signature of the vector operators.
OPERATOR_CONTROL = OperatorControlSignature()


def with_control(members: dict) -> dict:
    """An operator's signature members followed by the :data:`OPERATOR_CONTROL` ports.

    The control ports are merged flat (``clear``, not ``control.clear``), so an operator is driven and
    tested by the same port names as every other operator and the unit routes them by name.
    """
    clash = set(members) & set(OPERATOR_CONTROL.members)
    if clash:
        raise ValueError(f"operator members {sorted(clash)} are OPERATOR_CONTROL ports; leave them to with_control")
    return {**members, **OPERATOR_CONTROL.members}


class VecBeat(data.StructLayout):
    """One stream beat: ``lanes`` signed ``width``-bit elements and a ``last``-of-row flag.

    ``VecBeat(8, 4)`` == ``StructLayout({"data": ArrayLayout(signed(8), 4), "last": 1})``; the
    flattened Verilog payload has ``data`` in bits ``[0, width*lanes)`` (lane k at ``k*width``)
    and ``last`` at bit ``width*lanes``.
    """

    def __init__(self, width: int, lanes: int):
        check_width(width)
        check_lanes(lanes)
        self.width = width
        self.lanes = lanes
        super().__init__({"data": data.ArrayLayout(signed(width), lanes), "last": 1})

    def __repr__(self):
        return f"VecBeat({self.width}, {self.lanes})"


def check_lanes(lanes) -> int:
    """``lanes`` must be a power of two in [1, 64]."""
    if not isinstance(lanes, int) or isinstance(lanes, bool) or lanes < 1 or lanes > 64 or lanes & (lanes - 1):
        raise ValueError(f"lanes must be a power of two in [1, 64], got {lanes!r}")
    return lanes


def check_max_row(max_row, *, lanes: int = 1) -> int:
    """``max_row`` (generation-time maximum row length, elements) must be in [1, 65536] and >= lanes."""
    if not isinstance(max_row, int) or isinstance(max_row, bool) or max_row < 1 or max_row > 65536:
        raise ValueError(f"max_row must be an integer in [1, 65536], got {max_row!r}")
    if max_row < lanes:
        raise ValueError(f"max_row must be >= lanes ({lanes}), got {max_row!r}")
    return max_row


def check_width(width) -> int:
    """Element width in bits, [1, 64]."""
    if not isinstance(width, int) or isinstance(width, bool) or width < 1 or width > 64:
        raise ValueError(f"element width must be an integer in [1, 64] bits, got {width!r}")
    return width


def default_steps_per_cycle(steps_per_cycle, *, lanes: int) -> int:
    """Quotient (and square-root) bits per cycle of a row operator's per-row divider: ``steps_per_cycle``, checked, or
    by default ``max(1, lanes // 4)``, enough that the per-row computation stays below the time a 384-element row
    takes to stream through ``lanes`` lanes."""
    if steps_per_cycle is None:
        steps_per_cycle = max(1, lanes // 4)
    if not isinstance(steps_per_cycle, int) or isinstance(steps_per_cycle, bool) or steps_per_cycle < 1:
        raise ValueError(f"steps_per_cycle must be an integer >= 1, got {steps_per_cycle!r}")
    return steps_per_cycle


def row_len_shape(max_row: int):
    """Shape of a ``row_len`` port: wide enough for ``max_row + 1``, so a value above ``max_row``
    is always representable and can be flagged (also when max_row = 2**k - 1)."""
    return unsigned((max_row + 1).bit_length())


def beats_per_row(row_len: int, lanes: int) -> int:
    """Beats that carry a row of ``row_len`` elements (Python-side helper)."""
    if row_len < 1:
        raise ValueError(f"row_len must be >= 1, got {row_len!r}")
    return -(-row_len // check_lanes(lanes))


def saturate(value, bits: int):
    """Clamp a signed Amaranth expression to the signed ``bits``-bit range, as ``signed(bits)``."""
    hi = (1 << (bits - 1)) - 1
    lo = -(1 << (bits - 1))
    clamped = Mux(value > hi, hi, Mux(value < lo, lo, value))
    return clamped.as_signed()[:bits].as_signed()


def sticky_error(m, *, error, error_code, clear, events) -> None:
    """Latch the first error: ``events`` is a list of ``(condition, ErrorCode)`` in priority order.

    ``clear`` wins over a simultaneous event; while ``error`` is set, later events are ignored so
    the code names the first fault.
    """
    with m.If(clear):
        m.d.sync += [error.eq(0), error_code.eq(ErrorCode.NONE)]
    with m.Elif(~error):
        any_event = Const(0)
        for cond, _ in events:
            any_event = any_event | cond
        with m.If(any_event):
            m.d.sync += error.eq(1)
        # Amaranth keeps the last assignment: walk in reverse so the first event wins.
        for cond, code in reversed(events):
            with m.If(cond):
                m.d.sync += error_code.eq(int(code))


class RowTracker(wiring.Component):
    """Beat bookkeeping of a streaming row operator: element positions, tail lanes, framing checks.

    Drive ``fire`` with the input handshake (valid & ready) and ``last`` with the beat's ``last``.
    All outputs describe the beat currently offered (before ``fire``), combinationally.

    Parameters
    ----------
    lanes, max_row : int

    Members
    -------
    row_len : In(row_len_shape(max_row))
        Elements in the row; sampled on every beat, must be stable for the row.
    fire, last : In(1)
    first : Out(1)
        The offered beat is the first of a row.
    base : Out(range(max_row + lanes))
        Element index of lane 0 in the offered beat (``beat * lanes``).
    lane_valid : Out(lanes)
        Bit k set when element ``base + k`` is inside the row.
    bad_len : Out(1)
        ``row_len`` is 0 or above ``max_row``.
    framing : Out(1)
        The offered beat breaks framing: ``last`` before the final beat, or the final beat
        (``base + lanes >= row_len``) without ``last``.
    drop : Out(1)
        The offered beat must produce no output: this row already broke (``bad_len`` or
        ``framing``) on an earlier beat, or breaks on this one. Stays set until ``last``.
    """

    def __init__(self, *, lanes: int, max_row: int):
        self.lanes = check_lanes(lanes)
        self.max_row = check_max_row(max_row, lanes=lanes)
        super().__init__({
            "row_len": In(row_len_shape(max_row)),
            "fire": In(1),
            "last": In(1),
            "first": Out(1),
            "base": Out(range(max_row + lanes + 1)),
            "lane_valid": Out(lanes),
            "bad_len": Out(1),
            "framing": Out(1),
            "drop": Out(1),
        })

    def elaborate(self, platform):
        from amaranth.hdl import Module
        m = Module()
        lanes = self.lanes
        base = Signal.like(self.base)
        broken = Signal()  # an earlier beat of this row broke; drain until last
        in_row = Signal()  # at least one beat of the current row was accepted

        m.d.comb += [
            self.first.eq(~in_row),
            self.base.eq(base),
            self.bad_len.eq((self.row_len == 0) | (self.row_len > self.max_row)),
        ]
        for k in range(lanes):
            m.d.comb += self.lane_valid[k].eq(base + k < self.row_len)
        final_beat = Signal()
        m.d.comb += final_beat.eq(base + lanes >= self.row_len)
        m.d.comb += [
            self.framing.eq(~broken & ~self.bad_len & (self.last ^ final_beat)),
            self.drop.eq(broken | self.bad_len | self.framing),
        ]
        with m.If(self.fire):
            with m.If(self.last):
                m.d.sync += [base.eq(0), broken.eq(0), in_row.eq(0)]
            with m.Else():
                m.d.sync += [in_row.eq(1), broken.eq(self.drop)]
                # Hold the position once the row is broken, so `base` cannot overflow while draining.
                with m.If(~self.drop):
                    m.d.sync += base.eq(base + lanes)
        return m


def accept_rows(m, op, *, ready):
    """The input side every single-stream row operator shares: ``op.i`` beats are accepted while ``ready``, and a
    :class:`RowTracker` (submodule ``tracker``, ``op.lanes`` / ``op.max_row``) follows them against ``op.row_len``.

    Returns ``(tracker, fire)``; ``fire`` is the input handshake (``op.i.valid & op.i.ready``).
    """
    m.submodules.tracker = tracker = RowTracker(lanes=op.lanes, max_row=op.max_row)
    fire = Signal()
    m.d.comb += [
        op.i.ready.eq(ready),
        fire.eq(op.i.valid & op.i.ready),
        tracker.row_len.eq(op.row_len),
        tracker.fire.eq(fire),
        tracker.last.eq(op.i.payload.last),
    ]
    return tracker, fire


def row_errors(fire, tracker) -> list:
    """The :func:`sticky_error` events of a row's framing, first in every operator's list: a bad ``row_len``
    (ROW_LEN), then a misplaced ``last`` (ROW_FRAMING)."""
    return [(fire & tracker.bad_len, ErrorCode.ROW_LEN), (fire & tracker.framing, ErrorCode.ROW_FRAMING)]


@dataclass(frozen=True)
class StoredRows:
    """What :func:`store_rows` gives the operator: the beat bookkeeping and the ping-pong buffer's state.

    ``bank_full`` (2 bits): a complete row waits in (or is read from) that half; the operator sets a bit when a row's
    record is finished and clears it when the row has been read back. ``wr_bank``: the half being written.
    ``keep``: the offered beat is accepted and stored. ``push``: with ``keep``, it ends a row that will be processed.
    ``row_end``: a row's last beat is accepted (stored or dropped)."""
    tracker: RowTracker
    fire: Signal
    keep: Signal
    push: Signal
    row_end: object
    wr_bank: Signal
    bank_full: Signal


def store_rows(m, op, *, write_port, buffer_addr, param_bad) -> StoredRows:
    """The input side of a row operator with a ping-pong row buffer (the norms, softmax): ``op.i`` beats are accepted
    while the half ``wr_bank`` is free and written to it (``write_port``, word ``buffer_addr(bank, beat)``), unless the
    row broke framing or ``param_bad`` (its run-time parameters are out of range) is high on any of its beats: then
    the whole row is dropped and the half is written again by the next row. At a stored row's last beat the writes
    move to the other half."""
    bank_full = Signal(2)
    wr_bank = Signal()
    tracker, fire = accept_rows(m, op, ready=~bank_full.bit_select(wr_bank, 1))
    keep = Signal()
    m.d.comb += keep.eq(fire & ~tracker.drop & ~param_bad)
    # A bad parameter anywhere in the row drops the whole row (checked on every beat).
    row_param_bad = Signal()
    with m.If(fire):
        m.d.sync += row_param_bad.eq(Mux(op.i.payload.last, 0, row_param_bad | param_bad))
    lane_bits = (op.lanes - 1).bit_length()
    m.d.comb += [
        write_port.addr.eq(buffer_addr(wr_bank, tracker.base >> lane_bits)),
        write_port.data.eq(op.i.payload.data.as_value()),
        write_port.en.eq(keep),
    ]
    push = Signal()
    m.d.comb += push.eq(keep & op.i.payload.last & ~row_param_bad)
    row_end = fire & op.i.payload.last
    with m.If(row_end):
        m.d.sync += wr_bank.eq(wr_bank ^ push)
    return StoredRows(tracker=tracker, fire=fire, keep=keep, push=push, row_end=row_end, wr_bank=wr_bank,
                      bank_full=bank_full)


def record_slot(m, op, *, done, bank, busy) -> None:
    """The hand-over of a stage that finishes one row record at a time into ``op.o`` (the caller writes the payload
    on the edge ``done`` is high): ``op.o`` is valid from the next edge until taken, a record finished on the edge the
    previous one is taken is kept; ``op.row_done`` / ``op.row_done_bank`` report the finish and the buffer half of
    the row, ``op.busy`` is ``busy`` or a record waiting."""
    with m.If(op.o.valid & op.o.ready):
        m.d.sync += op.o.valid.eq(0)
    # After the hand-over, so that a hand-over and a new row end on the same edge keep the new row.
    with m.If(done):
        m.d.sync += op.o.valid.eq(1)
    m.d.comb += [op.row_done.eq(done), op.row_done_bank.eq(bank), op.busy.eq(busy | op.o.valid)]
