"""Python-side packing for the vector unit: golden parameters -> the integers the RTL ports take.

Everything here validates its inputs and raises ``ValueError`` naming the bad value and the allowed
range, so a test or the compiler never drives hardware with silently wrapped values.

Beat packing follows :class:`rtl.vector.common.VecBeat`: lane k of a ``width``-bit beat sits at
bits ``[k*width, (k+1)*width)`` in two's complement, ``last`` at bit ``lanes*width``.
"""

from __future__ import annotations

from typing import Iterable, Sequence

__all__ = ["SHIFT_MIN", "SHIFT_MAX", "MULTIPLIER_MAX", "TABLE_ENTRIES",
           "check_range", "pack_lanes", "unpack_lanes", "row_to_beats", "beats_to_row",
           "requant_param_words", "table_words"]

SHIFT_MIN, SHIFT_MAX = -30, 31      # requant: 1 <= 31 + shift <= 62
MULTIPLIER_MAX = (1 << 31) - 1      # requant: unsigned Q31 multiplier
TABLE_ENTRIES = 256                 # GELU/SiLU: int8 table indexed by x + 128


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
        words.append(mv | ((sv & 0x7F) << 31))
    return words


def table_words(table) -> list[int]:
    """A 256-entry int8 activation table -> unsigned 8-bit ``param_data`` values (address = x + 128)."""
    vals = list(_flat(table))
    if len(vals) != TABLE_ENTRIES:
        raise ValueError(f"an activation table needs exactly {TABLE_ENTRIES} entries, got {len(vals)}")
    return [check_range(f"table[{i}]", v, -128, 127) & 0xFF for i, v in enumerate(vals)]


def _flat(x) -> list:
    if hasattr(x, "reshape"):
        return list(x.reshape(-1).tolist())
    if isinstance(x, (list, tuple)):
        return list(x)
    return [x]
