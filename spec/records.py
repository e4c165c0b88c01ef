"""Little-endian parameter records: named bit fields and their stdlib pack / unpack (``spec.vector_ops``' blocks,
the block-scale records). Stdlib only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

__all__ = ["BitField", "Record"]


@dataclass(frozen=True)
class BitField:
    """``width`` bits at bit ``lsb`` of a little-endian record; two's complement when ``signed``."""
    name: str
    lsb: int
    width: int
    signed: bool = False

    @property
    def lo(self) -> int:
        return -(1 << (self.width - 1)) if self.signed else 0

    @property
    def hi(self) -> int:
        return (1 << (self.width - 1)) - 1 if self.signed else (1 << self.width) - 1

    @property
    def mask(self) -> int:
        return (1 << self.width) - 1

    def get(self, word: int) -> int:
        v = (word >> self.lsb) & self.mask
        return v - (1 << self.width) if self.signed and v >> (self.width - 1) else v


@dataclass(frozen=True)
class Record:
    """A little-endian record of ``nbytes`` bytes; bits no field covers are written 0 and ignored on read."""
    name: str
    nbytes: int
    fields: tuple[BitField, ...]

    def field(self, name: str) -> BitField:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"{self.name} has no field {name!r}")

    def to_int(self, **values: int) -> int:
        """The record as an integer; ``ValueError`` names a missing, unknown or out-of-range field."""
        unknown = set(values) - {f.name for f in self.fields}
        if unknown:
            raise ValueError(f"{self.name} has no field {sorted(unknown)[0]!r} "
                             f"(fields: {', '.join(f.name for f in self.fields)})")
        word = 0
        for f in self.fields:
            if f.name not in values:
                raise ValueError(f"{self.name}.{f.name} is missing")
            v = values[f.name]
            if isinstance(v, bool) or not isinstance(v, int) and not hasattr(v, "__index__"):
                raise ValueError(f"{self.name}.{f.name} must be an integer in [{f.lo}, {f.hi}], got {v!r}")
            v = int(v)
            if not f.lo <= v <= f.hi:
                raise ValueError(f"{self.name}.{f.name} must be in [{f.lo}, {f.hi}], got {v}")
            word |= (v & f.mask) << f.lsb
        return word

    def pack(self, **values: int) -> bytes:
        """``nbytes`` little-endian bytes of one record."""
        return self.to_int(**values).to_bytes(self.nbytes, "little")

    def from_int(self, word: int) -> dict[str, int]:
        return {f.name: f.get(word) for f in self.fields}

    def unpack(self, data: bytes) -> dict[str, int]:
        """Field values of the record at the start of ``data`` (at least ``nbytes`` bytes)."""
        if len(data) < self.nbytes:
            raise ValueError(f"{self.name} is {self.nbytes} bytes, got {len(data)}")
        return self.from_int(int.from_bytes(bytes(data[:self.nbytes]), "little"))

    def pack_many(self, rows: Iterable[Mapping[str, int]]) -> bytes:
        return b"".join(self.pack(**r) for r in rows)

    def unpack_many(self, data: bytes) -> list[dict[str, int]]:
        if len(data) % self.nbytes:
            raise ValueError(f"{self.name} records are {self.nbytes} bytes each, got {len(data)} bytes")
        return [self.unpack(data[i:i + self.nbytes]) for i in range(0, len(data), self.nbytes)]
