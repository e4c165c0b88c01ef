"""The bit-field machinery of the NPU command ISA: a :class:`Field` places one value in the 128-bit instruction, and
:class:`InstrBase` validates an instruction record against its fields and converts it to and from raw field values.

What the fields are (the instruction formats) is :mod:`npuforge.spec.isa_instr`; the word-level encode/decode is
:mod:`npuforge.spec.isa`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

__all__ = ["Field", "InstrBase", "check_field", "ADDR_BITS", "TILE_MAX", "addr_field", "tile_field"]

ADDR_BITS = 20          #: local (scratchpad / accumulator) byte address width
TILE_MAX = (1 << 12) - 1  #: largest m / k / n of one MATMUL or vector instruction


@dataclass(frozen=True)
class Field:
    """One instruction field: ``width`` bits at ``w[word][lsb + width - 1 : lsb]``.

    A split field (``hi_lsb`` set) keeps its low ``low_width`` bits at ``lsb`` and the rest at ``w[word][hi_lsb...]``:
    how a field grows without moving its neighbours. ``codes`` gives the raw value of each ``enum`` name (default:
    its index); other raw values are reserved.
    """
    name: str
    word: int
    lsb: int
    width: int
    lo: int
    hi: int
    signed: bool = False
    enum: tuple[str, ...] | None = None
    doc: str = ""
    hi_lsb: int | None = None
    low_width: int = 0
    codes: tuple[int, ...] | None = None

    @property
    def parts(self) -> list[tuple[int, int, int]]:
        """``(bit offset in the 128-bit instruction, first bit of the raw value, width)`` of each part, low first
        (one part unless the field is split): what a hardware decoder concatenates."""
        return self._parts()

    def _parts(self) -> list[tuple[int, int, int]]:
        base = 32 * self.word
        if self.hi_lsb is None:
            return [(base + self.lsb, 0, self.width)]
        return [(base + self.lsb, 0, self.low_width), (base + self.hi_lsb, self.low_width, self.width - self.low_width)]

    @property
    def mask(self) -> int:
        return sum(((1 << w) - 1) << pos for pos, _, w in self._parts())

    def place(self, raw: int) -> int:
        """The raw field value at its bit positions in the 128-bit instruction."""
        return sum(((raw >> first) & ((1 << w) - 1)) << pos for pos, first, w in self._parts())

    def extract(self, value: int) -> int:
        """The raw field value out of a 128-bit instruction."""
        return sum(((value >> pos) & ((1 << w) - 1)) << first for pos, first, w in self._parts())

    def enum_code(self, name: str) -> int:
        return self.codes[self.enum.index(name)] if self.codes is not None else self.enum.index(name)

    def enum_name(self, raw: int) -> str | None:
        """The enum name encoded by ``raw`` (None: reserved)."""
        codes = self.codes if self.codes is not None else tuple(range(len(self.enum)))
        return self.enum[codes.index(raw)] if raw in codes else None

    @property
    def bits_text(self) -> str:
        """``[hi:lo]`` of each part, high part first (docs)."""
        out = []
        for pos, _, w in reversed(self._parts()):
            lo = pos - 32 * self.word
            out.append(f"[{lo + w - 1}:{lo}]" if w > 1 else f"[{lo}]")
        return "".join(out)


def check_field(cls_name: str, f: Field, value) -> int:
    """Validate a field value and return its raw (unsigned, in-field) integer."""
    if f.enum is not None:
        if value not in f.enum:
            raise ValueError(f"{cls_name}.{f.name} must be one of {', '.join(f.enum)}, got {value!r}")
        return f.enum_code(value)
    if isinstance(value, bool):
        value = int(value)
    if not isinstance(value, int):
        raise ValueError(f"{cls_name}.{f.name} must be an integer in [{f.lo}, {f.hi}], got {value!r}")
    if not f.lo <= value <= f.hi:
        raise ValueError(f"{cls_name}.{f.name} must be in [{f.lo}, {f.hi}], got {value!r}")
    return value & ((1 << f.width) - 1)


def addr_field(name: str, word: int, doc: str) -> Field:
    """A local byte address field: 20 bits at bit 0 of word ``word``."""
    return Field(name, word, 0, ADDR_BITS, 0, (1 << ADDR_BITS) - 1, doc=doc)


def tile_field(name: str, word: int, doc: str) -> Field:
    """A tile size field (m, k or n): 12 bits at bit 20 of word ``word``, 1..4095."""
    return Field(name, word, 20, 12, 1, TILE_MAX, doc=doc)


class InstrBase:
    """Mixin of every instruction record: validation from ``FIELDS``, mnemonic, raw field access.

    A record sets ``OPCODE``, ``MNEMONIC``, ``UNIT`` (its execution unit or None) and ``FIELDS``.
    """
    OPCODE: ClassVar[int]
    MNEMONIC: ClassVar[str]
    UNIT: ClassVar[int | None] = None
    FIELDS: ClassVar[tuple[Field, ...]] = ()

    def __post_init__(self) -> None:
        for f in self.FIELDS:
            value = getattr(self, f.name)
            if isinstance(value, bool) and f.enum is None:
                object.__setattr__(self, f.name, int(value))
            check_field(type(self).__name__, f, value)

    def raw_fields(self) -> dict[str, int]:
        return {f.name: check_field(type(self).__name__, f, getattr(self, f.name)) for f in self.FIELDS}

    @classmethod
    def from_raw(cls, raw: dict[str, int]):
        kwargs = {}
        for f in cls.FIELDS:
            v = raw[f.name]
            if f.enum is not None:
                name = f.enum_name(v)
                if name is None:
                    valid = ", ".join(f"{f.enum_code(e)} {e}" for e in f.enum)
                    raise ValueError(f"{cls.__name__}.{f.name} encoding {v} is reserved (valid: {valid})")
                v = name
            elif f.signed and v >> (f.width - 1):
                v -= 1 << f.width
            kwargs[f.name] = v
        return cls(**kwargs)
