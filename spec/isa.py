"""The NPU command ISA: one dataclass per instruction, binary encode/decode with range checks.

This module is the import path of the whole ISA: the word-level encode/decode and the generated docs tables live
here; the instruction records (:mod:`npuforge.spec.isa_instr`) are re-exported, the field machinery is
:mod:`npuforge.spec.isa_fields`.

Every instruction is 128 bits = four little-endian 32-bit words ``w0..w3`` (16 bytes, ``w0`` at the lowest
address). The opcode is always ``w0[7:0]``; every other field sits at a fixed word/bit position (tables in
``docs/isa.md``, generated from :data:`FORMATS`). Bits not covered by a field are reserved and must be 0:
:func:`decode` raises ``ValueError`` on a set reserved bit, an unknown opcode, an out-of-range enumeration or a
zero in a field that must be >= 1, which is what the controller reports as ``ILLEGAL_INSTRUCTION``.

Addresses inside the NPU (scratchpad ``spad``, accumulator ``acc``) are byte addresses of 20 bits (1 MiB per
memory); external addresses and strides are 32 bits. Tile sizes ``m``, ``k``, ``n`` are 12 bits (1..4095).

Execution units (instructions to one unit start and complete in program order; different units overlap):

    LOAD    DMA_LOAD            (AXI read channel)
    STORE   DMA_STORE           (AXI write channel)
    MATRIX  MATMUL              (PE array)
    VECTOR  VEC_*               (vector unit)

``FENCE`` blocks issue until each selected unit has at most ``count`` instructions outstanding; ``HALT`` waits
for every unit to drain and then stops with status DONE.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from npuforge.spec.isa_instr import *  # noqa: F401,F403  (the records: one import path for the whole ISA)
from npuforge.spec.isa_instr import INSTR_BYTES, INSTR_CLASSES, VECTOR_OPS, Instr, Opcode, VecOp, opcode_of
from npuforge.spec.isa_instr import __all__ as _RECORDS

__all__ = [*_RECORDS, "encode", "encode_words", "decode", "decode_words", "encode_program", "decode_program",
           "encoding_tables", "write_docs"]


def encode(instr: Instr) -> bytes:
    """16 bytes: words w0..w3, each little-endian, w0 first."""
    return b"".join(w.to_bytes(4, "little") for w in encode_words(instr))


def encode_words(instr: Instr) -> tuple[int, int, int, int]:
    if type(instr) not in set(INSTR_CLASSES.values()):
        raise ValueError(f"not an instruction: {instr!r}")
    value = int(opcode_of(instr))
    raw = instr.raw_fields()
    for f in instr.FIELDS:
        value |= f.place(raw[f.name])
    return tuple((value >> (32 * i)) & 0xFFFFFFFF for i in range(4))


def decode_words(words: Sequence[int]) -> Instr:
    """Inverse of :func:`encode_words`; ``ValueError`` for anything the controller would treat as illegal."""
    if len(words) != 4:
        raise ValueError(f"an instruction is 4 words, got {len(words)}")
    value = 0
    for i, w in enumerate(words):
        if not 0 <= w <= 0xFFFFFFFF:
            raise ValueError(f"instruction word {i} must be in [0, 0xFFFFFFFF], got {w!r}")
        value |= w << (32 * i)
    code = value & 0xFF
    try:
        op = Opcode(code)
    except ValueError:
        raise ValueError(f"opcode 0x{code:02x} is not defined (valid: "
                         f"{', '.join(f'0x{o:02x}' for o in Opcode)})") from None
    cls = INSTR_CLASSES[op]
    used = 0xFF
    for f in cls.FIELDS:
        used |= f.mask
    reserved = value & ~used & ((1 << 128) - 1)
    if reserved:
        bit = (reserved & -reserved).bit_length() - 1
        raise ValueError(f"{cls.__name__}: reserved bit w{bit // 32}[{bit % 32}] must be 0")
    raw = {f.name: f.extract(value) for f in cls.FIELDS}
    if cls is VecOp:
        instr = VecOp.from_raw_op(op, raw)
    else:
        instr = cls.from_raw(raw)
    return instr


def decode(data: bytes) -> Instr:
    if len(data) != INSTR_BYTES:
        raise ValueError(f"an instruction is {INSTR_BYTES} bytes, got {len(data)}")
    return decode_words([int.from_bytes(data[4 * i:4 * i + 4], "little") for i in range(4)])


def encode_program(program: Iterable[Instr]) -> bytes:
    return b"".join(encode(i) for i in program)


def decode_program(data: bytes) -> list[Instr]:
    """Decode a whole command stream; ``ValueError`` names the index of the first bad instruction."""
    if len(data) % INSTR_BYTES:
        raise ValueError(f"program length must be a multiple of {INSTR_BYTES} bytes, got {len(data)}")
    out = []
    for i in range(0, len(data), INSTR_BYTES):
        try:
            out.append(decode(data[i:i + INSTR_BYTES]))
        except ValueError as e:
            raise ValueError(f"instruction {i // INSTR_BYTES}: {e}") from None
    return out


def encoding_tables() -> str:
    """The "Encoding tables" section of docs/isa.md, generated from :data:`FORMATS` (Markdown)."""
    out = ["## Encoding tables", ""]
    done = set()
    for op, fmt in FORMATS.items():
        if INSTR_CLASSES[op] is VecOp:
            if VecOp in done:
                continue
            done.add(VecOp)
            opcode = f"0x{VECTOR_OPS[0].opcode:02x}..0x{VECTOR_OPS[-1].opcode:02x}"
            title = f"### {opcode} " + ", ".join(Opcode(op.opcode).name for op in VECTOR_OPS)
        else:
            title = f"### 0x{int(op):02x} {op.name}"
            opcode = f"0x{int(op):02x}"
        out += [title, "", "| field | word | bits | range | meaning |", "|---|---|---|---|---|",
                f"| opcode | w0 | [7:0] | {opcode} | |"]
        for f in fmt:
            bits = f.bits_text
            if f.enum is not None:
                rng = ", ".join(f"{f.enum_code(e)} {e}" for e in f.enum)
            else:
                rng = f"{f.lo}..{f.hi}" + (" signed" if f.signed else "")
            out.append(f"| {f.name} | w{f.word} | {bits} | {rng} | {f.doc} |")
        out += ["", "All other bits: reserved, must be 0.", ""]
    return "\n".join(out)


def write_docs(path=None) -> None:
    """Rewrite the "Encoding tables" section (the end) of docs/isa.md from :data:`FORMATS`."""
    from pathlib import Path

    path = Path(path) if path is not None else Path(__file__).resolve().parent.parent / "docs" / "isa.md"
    text = path.read_text()
    head = text[:text.index("## Encoding tables")] if "## Encoding tables" in text else text + "\n"
    path.write_text(head + encoding_tables() + "\n")


if __name__ == "__main__":
    write_docs()
