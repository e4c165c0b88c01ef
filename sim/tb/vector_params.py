"""Python-side packing for the vector unit: golden parameters -> the integers the RTL ports take.

Everything here validates its inputs and raises ``ValueError`` naming the bad value and the allowed
range, so a test or the compiler never drives hardware with silently wrapped values.

Beat packing follows :class:`rtl.vector.common.VecBeat`: lane k of a ``width``-bit beat sits at
bits ``[k*width, (k+1)*width)`` in two's complement, ``last`` at bit ``lanes*width``.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from npuforge.spec.vector_ops import (MULTIPLIER_BITS, REQUANT_RECORD, RESIDUAL_SHIFT_MAX, RESIDUAL_SHIFT_MIN,
                                      ROPE_ENTRY, ROPE_FRAC_BITS_MAX, ROPE_FRAC_BITS_MIN, SHIFT_MAX, SHIFT_MIN,
                                      TABLE_ENTRIES, TABLE_ENTRY)

__all__ = ["SHIFT_MIN", "SHIFT_MAX", "MULTIPLIER_MAX", "TABLE_ENTRIES",
           "check_range", "pack_lanes", "unpack_lanes", "row_to_beats", "beats_to_row",
           "requant_param_words", "table_words", "residual_ports", "gate_ports", "rope_param_words",
           "rope_ports"]

MULTIPLIER_MAX = (1 << MULTIPLIER_BITS) - 1   # requant: unsigned Q31 multiplier


def check_range(name: str, value, lo: int, hi: int) -> int:
    """Return ``int(value)``; ``ValueError`` unless it is an integer in [lo, hi]."""
    try:
        iv = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}") from None
    if iv != value or not lo <= iv <= hi:
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
    return iv


def pack_lanes(values: Sequence[int], width: int, *, last: bool = False, lanes: int | None = None) -> int:
    """Pack signed lane values (missing tail lanes = 0) and ``last`` into one payload integer."""
    lanes = len(values) if lanes is None else lanes
    if len(values) > lanes:
        raise ValueError(f"{len(values)} values do not fit a beat of {lanes} lanes")
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    word = 0
    mask = (1 << width) - 1
    for k, v in enumerate(values):
        word |= (check_range(f"lane {k} value", v, lo, hi) & mask) << (k * width)
    return word | (int(bool(last)) << (lanes * width))


def unpack_lanes(word: int, width: int, lanes: int) -> tuple[list[int], bool]:
    """Inverse of :func:`pack_lanes`: (signed lane values, last)."""
    mask = (1 << width) - 1
    vals = []
    for k in range(lanes):
        v = (int(word) >> (k * width)) & mask
        vals.append(v - (1 << width) if v >> (width - 1) else v)
    return vals, bool((int(word) >> (lanes * width)) & 1)


def row_to_beats(row: Iterable[int], width: int, lanes: int) -> list[int]:
    """A row of signed values -> packed beats, ``last`` on the final one."""
    row = [int(v) for v in row]
    if not row:
        raise ValueError("a row needs at least 1 element, got 0")
    beats = []
    for start in range(0, len(row), lanes):
        chunk = row[start:start + lanes]
        beats.append(pack_lanes(chunk, width, last=start + lanes >= len(row), lanes=lanes))
    return beats


def beats_to_row(beats: Sequence[int], width: int, lanes: int, row_len: int) -> tuple[list[int], list[int]]:
    """Packed output beats -> (the row's ``row_len`` values, the tail-lane values past the row end)."""
    vals = []
    for w in beats:
        vals.extend(unpack_lanes(w, width, lanes)[0])
    return vals[:row_len], vals[row_len:]


def requant_param_words(multiplier, shift) -> list[int]:
    """Per-channel (multiplier, shift) -> ``RequantParamWord`` integers for ``param_data``.

    ``multiplier`` in [0, 2^31-1], ``shift`` in [-30, 31] (so 1 <= 31 + shift <= 62); both 1-D of
    equal length, channel c at ``param_addr`` c.
    """
    ms = [int(v) for v in _flat(multiplier)]
    ss = [int(v) for v in _flat(shift)]
    if len(ms) != len(ss):
        raise ValueError(f"multiplier and shift need equal lengths, got {len(ms)} and {len(ss)}")
    words = []
    for c, (mv, sv) in enumerate(zip(ms, ss)):
        mv = check_range(f"multiplier[{c}]", mv, 0, MULTIPLIER_MAX)
        sv = check_range(f"shift[{c}]", sv, SHIFT_MIN, SHIFT_MAX)
        words.append(REQUANT_RECORD.to_int(multiplier=mv, shift=sv))
    return words


def table_words(table) -> list[int]:
    """A 256-entry int8 activation table -> unsigned 8-bit ``param_data`` values (address = x + 128)."""
    vals = list(_flat(table))
    if len(vals) != TABLE_ENTRIES:
        raise ValueError(f"an activation table needs exactly {TABLE_ENTRIES} entries, got {len(vals)}")
    value = TABLE_ENTRY.field("value")
    return [TABLE_ENTRY.to_int(value=check_range(f"table[{i}]", v, value.lo, value.hi)) for i, v in enumerate(vals)]


def _flat(x) -> list:
    if hasattr(x, "reshape"):
        return list(x.reshape(-1).tolist())
    if isinstance(x, (list, tuple)):
        return list(x)
    return [x]


def _out_bits(value) -> int:
    if value not in (8, 16):
        raise ValueError(f"out_bits must be 8 or 16, got {value!r}")
    return value


def residual_ports(params) -> dict[str, int]:
    """``golden.elementwise.ResidualParams`` -> ResidualAdd port values (unsigned bit patterns); ``wide`` 0 (the
    two-scale add; every input port is driven, so no simulator sees an undriven X)."""
    return {
        "a_multiplier": check_range("a_multiplier", params.a_multiplier, 0, MULTIPLIER_MAX),
        "b_multiplier": check_range("b_multiplier", params.b_multiplier, 0, MULTIPLIER_MAX),
        "shift": check_range("shift (total right shift)", params.shift, RESIDUAL_SHIFT_MIN, RESIDUAL_SHIFT_MAX),
        "wide": 0,
        "out_bits": _out_bits(params.out_bits),
    }


def gate_ports(params) -> dict[str, int]:
    """``golden.elementwise.GateParams`` -> GateMul port values (``shift`` as a 7-bit pattern); ``exact`` 0 (the
    requantized gate; every input port is driven, so no simulator sees an undriven X)."""
    return {
        "multiplier": check_range("multiplier", params.multiplier, 0, MULTIPLIER_MAX),
        "shift": check_range("shift", params.shift, SHIFT_MIN, SHIFT_MAX) & REQUANT_RECORD.field("shift").mask,
        "exact": 0,
        "out_bits": _out_bits(params.out_bits),
    }


def rope_param_words(cos, sin, *, max_half: int) -> list[tuple[int, int]]:
    """cos/sin int16 tables [P, head_dim // 2] -> (param_addr, param_data) writes for ``Rope``.

    Entry (p, i) goes to address ``p * max_half + i`` (``max_half = max_row // 2``), data
    ``cos & 0xFFFF | (sin & 0xFFFF) << 16``.
    """
    cos_rows = [list(r) for r in (cos.tolist() if hasattr(cos, "tolist") else cos)]
    sin_rows = [list(r) for r in (sin.tolist() if hasattr(sin, "tolist") else sin)]
    if len(cos_rows) != len(sin_rows) or any(len(c) != len(s) for c, s in zip(cos_rows, sin_rows)):
        raise ValueError("cos and sin tables must have the same shape")
    writes = []
    lo, hi = ROPE_ENTRY.field("cos").lo, ROPE_ENTRY.field("cos").hi
    for p, (crow, srow) in enumerate(zip(cos_rows, sin_rows)):
        if len(crow) > max_half:
            raise ValueError(f"head_dim // 2 must be <= max_half ({max_half}), got {len(crow)}")
        for i, (c, sv) in enumerate(zip(crow, srow)):
            c = check_range(f"cos[{p}, {i}]", c, lo, hi)
            sv = check_range(f"sin[{p}, {i}]", sv, lo, hi)
            writes.append((p * max_half + i, ROPE_ENTRY.to_int(cos=c, sin=sv)))
    return writes


def rope_ports(*, position: int, frac_bits: int, out_bits: int = 8, max_positions: int) -> dict[str, int]:
    """Rope scalar port values, validated."""
    return {
        "position": check_range("position", position, 0, max_positions - 1),
        "frac_bits": check_range("frac_bits", frac_bits, ROPE_FRAC_BITS_MIN, ROPE_FRAC_BITS_MAX),
        "out_bits": _out_bits(out_bits),
    }
