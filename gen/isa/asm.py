"""Assembler and disassembler for the NPU command ISA (text <-> :mod:`spec.isa` instructions).

Syntax, one instruction per line::

    ; comment (also '#')
    dma.load   mem=spad local_addr=0x0 ext_addr=0x1000 ext_stride=384 rows=64 row_bytes=384
    fence      load=0 matrix=1
    matmul     mode=int8 dataflow=ws accumulate=0 m=64 k=384 n=64 a_addr=0x0 b_addr=0x6000 acc_addr=0x0
    vec.requant m=64 n=64 src_addr=0x0 dst_addr=0x100 param_page=0 zero_point=0 out16=0
    vec.softmax m=4 n=64 src_addr=0x0 dst_addr=0x0 src2_addr=0x0 param_page=1 flags=0x1 imm=0
    halt

Operands are ``name=value`` in any order, separated by spaces or commas; values are integers (decimal, ``0x``
hex, ``0b`` binary, negative allowed where the field is signed) or the enumeration names. Fields with a default
(``Fence`` units, ``VecRequant.zero_point``/``out16``, ``VecOp.src2_addr``/``param_page``/``flags``/``imm``) may be
omitted. :func:`disassemble` prints every field in declaration order, so ``assemble(disassemble(p)) == p`` and
``disassemble(assemble(disassemble(p))) == disassemble(p)``. Errors are ``ValueError`` naming the line.
"""

from __future__ import annotations

from dataclasses import MISSING, fields
from typing import Sequence, Union

from npuforge.spec.isa import (DATAFLOWS, MODES, VEC_OPS, DmaLoad, DmaStore, Fence, Halt, Instr, MatMul, Nop, VecOp, VecRequant,
                     decode_program, instr_fields)

__all__ = ["assemble", "disassemble", "format_instr", "parse_instr", "MNEMONICS"]

MNEMONICS: dict[str, type] = {cls.MNEMONIC: cls for cls in (Nop, Halt, Fence, DmaLoad, DmaStore, MatMul,
                                                             VecRequant)}
for _op in VEC_OPS:
    MNEMONICS[f"vec.{_op}"] = VecOp

_ENUMS = {"mem": ("spad", "acc"), "mode": MODES, "dataflow": DATAFLOWS}
_HEX = ("local_addr", "ext_addr", "a_addr", "b_addr", "acc_addr", "src_addr", "dst_addr", "src2_addr", "flags")


def _fmt_value(name: str, value) -> str:
    if isinstance(value, str):
        return value
    return f"0x{value:x}" if name in _HEX else str(value)


def format_instr(instr: Instr) -> str:
    """One canonical assembly line."""
    if isinstance(instr, VecOp):
        mnemonic = f"vec.{instr.op}"
        items = [(k, v) for k, v in instr_fields(instr).items() if k != "op"]
    elif isinstance(instr, Fence):
        mnemonic = "fence"
        items = [(u, getattr(instr, u)) for u in Fence.UNIT_FIELDS if getattr(instr, u) is not None]
    else:
        mnemonic = instr.MNEMONIC
        items = list(instr_fields(instr).items())
    ops = " ".join(f"{k}={_fmt_value(k, v)}" for k, v in items)
    return f"{mnemonic} {ops}".rstrip()


def _parse_value(name: str, text: str, lineno: int):
    if name in _ENUMS:
        return text  # the instruction constructor names the allowed values
    try:
        return int(text, 0)
    except ValueError:
        raise ValueError(f"line {lineno}: {name}={text!r} is not an integer") from None


def parse_instr(line: str, lineno: int = 1) -> Instr | None:
    """Parse one line; None for a blank or comment-only line."""
    for marker in (";", "#"):
        line = line.split(marker, 1)[0]
    tokens = line.replace(",", " ").split()
    if not tokens:
        return None
    mnemonic = tokens[0].lower()
    cls = MNEMONICS.get(mnemonic)
    if cls is None:
        raise ValueError(f"line {lineno}: unknown mnemonic {tokens[0]!r} (known: {', '.join(MNEMONICS)})")
    allowed = [f.name for f in fields(cls) if f.name != "op"]
    kwargs: dict = {}
    for tok in tokens[1:]:
        if "=" not in tok:
            raise ValueError(f"line {lineno}: operand {tok!r} must be name=value")
        name, value = tok.split("=", 1)
        name = name.lower()
        if name not in allowed:
            raise ValueError(f"line {lineno}: {mnemonic} has no operand {name!r} (operands: {', '.join(allowed)})")
        if name in kwargs:
            raise ValueError(f"line {lineno}: operand {name!r} given twice")
        kwargs[name] = _parse_value(name, value, lineno)
    missing = [f.name for f in fields(cls) if f.name != "op" and f.name not in kwargs
               and f.default is MISSING and f.default_factory is MISSING]
    if missing:
        raise ValueError(f"line {lineno}: {mnemonic} is missing operand(s) {', '.join(missing)}")
    if cls is VecOp:
        kwargs["op"] = mnemonic.split(".", 1)[1]
    try:
        return cls(**kwargs)
    except ValueError as e:
        raise ValueError(f"line {lineno}: {e}") from None


def assemble(text: str) -> list[Instr]:
    """Assembly text -> instructions (encode them with :func:`spec.isa.encode_program`)."""
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        instr = parse_instr(line, lineno)
        if instr is not None:
            out.append(instr)
    return out


def disassemble(program: Union[bytes, Sequence[Instr]]) -> str:
    """Instructions or encoded bytes -> canonical text, one line per instruction, newline-terminated."""
    if isinstance(program, (bytes, bytearray, memoryview)):
        program = decode_program(bytes(program))
    return "".join(format_instr(i) + "\n" for i in program)
