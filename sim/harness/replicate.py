"""Replications for repeated sign bits in the NPU's Verilog, before Verilator (native build option
``replicate_bits``).

Amaranth writes a sign extension as a concatenation that repeats the sign bit (``{ p[7], p[7], p[7], p[7],
p[7:0] }``, the PEs' product lanes hold several per cycle) and Verilator turns each repeated bit into its own
shift, mask and or (or a lookup table); the replication ``{ {4{p[7]}}, p[7:0] }`` means the same bits and
Verilator evaluates it as one negate-and-shift. :func:`replicate_bits` rewrites every run of two or more equal
single-bit selects of a concatenation into that replication; nothing else changes.
"""

from __future__ import annotations

import re

__all__ = ["replicate_bits"]

#: A run of equal single-bit selects (``x[3], x[3]`` or ``\\a.b [3], \\a.b [3]``), the element in group ``e``.
_RUN = re.compile(r"(?P<e>(?:\\\S+ |[A-Za-z_][A-Za-z0-9_$]*)\[\d+\])(?:, (?P=e))+")
#: What decides the bracket nesting: escaped identifiers, comments and strings (skipped), brackets.
_TOKEN = re.compile(r'\\\S+\s|//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\])*"|[{}()\[\]]', re.S)
_OPEN = {"}": "{", ")": "(", "]": "["}


def replicate_bits(verilog: str) -> tuple[str, int]:
    """Return ``verilog`` with every run of equal single-bit selects directly inside a concatenation (innermost
    bracket ``{``, the run a whole list element sequence: after ``{`` or ``,``, before ``,`` or ``}``) written as
    a replication, and the number of runs rewritten."""
    runs = [m for m in _RUN.finditer(verilog)]
    if not runs:
        return verilog, 0
    out, last, n = [], 0, 0
    stack: list[str] = []
    tokens = _TOKEN.finditer(verilog)
    tok = next(tokens, None)
    for m in runs:
        if m.start() < last:
            continue
        # Advance the bracket stack to the run's start.
        while tok is not None and tok.start() < m.start():
            t = tok.group()
            if t in "{([":
                stack.append(t)
            elif t in "})]":
                if stack and stack[-1] == _OPEN[t]:
                    stack.pop()
            tok = next(tokens, None)
        before = verilog[max(0, m.start() - 64):m.start()].rstrip()[-1:]
        after = verilog[m.end():m.end() + 64].lstrip()[:1]
        if not stack or stack[-1] != "{" or before not in "{," or after not in ",}":
            continue
        count = m.group(0).count(m.group("e"))
        out.append(verilog[last:m.start()])
        out.append(f"{{{count}{{{m.group('e')}}}}}")
        last = m.end()
        n += 1
    out.append(verilog[last:])
    return "".join(out), n
