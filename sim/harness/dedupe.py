"""One Verilog module per distinct body: the simulation-only rewrite that lets Verilator share the code of repeated
units (the PE array's processing elements) instead of emitting one inlined copy per instance.

Amaranth/Yosys write one module per *instance* (``npu.ctrl.matmul.array.pe_3_5``, ``...pe_3_5.product_unit``, ...),
each with its own generated names (``\\$12``, ``\\port$1895$0``), so Verilator inlines 64 copies of the PE into one
straight-line evaluation function: about 300 KB of hot code per clock cycle, far more than the CPU's instruction
cache. :func:`share_modules` finds modules whose bodies are identical up to a consistent renaming of the generated
names (and the order of their declarations), keeps one of each class, points every instance at it (renaming the
generated port names of its connections) and marks the shared ones ``/*verilator no_inline_module*/``, so Verilator
emits one function per class and calls it per instance (its V3Combine shares the code between instances).

The rewrite only renames: every instance keeps its own state and its connections, so the simulated behaviour and
cycle counts are those of the original Verilog (tests/sim/test_dedupe.py checks the rewrite; the native harness
tests check the cycles against the cocotb harness built from the original text).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

__all__ = ["share_modules", "ShareReport", "NO_INLINE"]

NO_INLINE = "/*verilator no_inline_module*/"

_MODULE = re.compile(r"^module (\S+?)(\s*)\((.*?)^endmodule\n?", re.S | re.M)
# Escaped identifiers with a '$': names Yosys and Amaranth generate (\$12 , \port$1895$0 , \$auto$...$27 ).
_GENERATED = re.compile(r"\\[^\s]*\$[^\s]*\s")
_DECL = re.compile(r"\s*(input|output|inout|wire|reg)\b[^(=]*;\s*$")
_CONNECTION = re.compile(r"^(\s*\.)(\\[^\s]*\$[^\s]*\s)(\()", re.M)


@dataclass
class ShareReport:
    """What :func:`share_modules` did: modules before and after, and the instances per shared module."""
    modules_before: int
    modules_after: int
    shared: dict  # representative module name -> instances now using it (> 1 only)


def _canonical(body: str) -> tuple[str, dict]:
    """``body`` (after the module's name, up to endmodule) with its generated names numbered by first use and its
    declarations sorted; and that numbering (generated name -> canonical name)."""
    _, _, rest = body.partition(");\n")
    lines = rest.split("\n")
    decls = [ln for ln in lines if _DECL.match(ln)]
    decl_set = set(decls)
    other = "\n".join(ln for ln in lines if ln not in decl_set)
    names: dict[str, str] = {}

    def number(mo):
        return names.setdefault(mo.group(0), f"\\G{len(names)} ")

    other = _GENERATED.sub(number, other)
    # A declaration whose generated name is not used elsewhere keeps its literal name: two such modules then only
    # match when those names are equal, so the port renaming below is never ambiguous.
    decls = sorted(_GENERATED.sub(lambda mo: names.get(mo.group(0), mo.group(0)), ln) for ln in decls)
    return "\n".join(decls) + "\n" + other, names


def share_modules(text: str, *, no_inline_min: int = 2) -> tuple[str, ShareReport]:
    """``text`` (Yosys ``write_verilog`` output, one module per instance) with one module per class of identical
    bodies; classes with at least ``no_inline_min`` instances get Verilator's ``no_inline_module``."""
    modules = {mo.group(1): mo.group(3) for mo in _MODULE.finditer(text)}
    spacing = {mo.group(1): mo.group(2) for mo in _MODULE.finditer(text)}
    order = [mo.group(1) for mo in _MODULE.finditer(text)]
    instances = Counter()   # module -> times instantiated in the text (after the rewrite of its parents)
    rep_of: dict[str, str] = {}
    rename_of: dict[str, dict] = {}  # duplicate module -> {its generated port name: the representative's}
    bodies: dict[str, str] = {}
    by_key: dict[str, tuple[str, dict]] = {}
    # Children before parents: a parent's body names its children's classes, so equal parents compare equal.
    for name in sorted(modules, key=lambda n: -n.count(".")):
        body = modules[name]
        body = _rewrite_instances(body, rep_of, rename_of)
        bodies[name] = body
        key, names = _canonical(body)
        if key in by_key:
            rep, rep_names = by_key[key]
            inverse = {v: k for k, v in rep_names.items()}
            rep_of[name] = rep
            rename_of[name] = {g: inverse[c] for g, c in names.items()}
        else:
            by_key[key] = (name, names)
            rep_of[name] = name
    kept = [n for n in order if rep_of[n] == n]
    for n in kept:
        for child in re.findall(r"^  (\\\S+|\w+)  ?\S+ \($", bodies[n], re.M):
            child = child if child in modules else None
            if child:
                instances[child] += 1
    out = []
    for n in kept:
        body = bodies[n]
        if instances[n] >= no_inline_min:
            hdr, sep, rest = body.partition(");\n")
            body = hdr + sep + f"  {NO_INLINE}\n" + rest
        out.append(f"module {n}{spacing[n]}({body}endmodule\n")
    # Anything outside the modules (attributes, `default_nettype ...) stays in front, as in the original.
    head = text[:_MODULE.search(text).start()] if _MODULE.search(text) else text
    shared = {n: instances[n] for n in kept if instances[n] > 1}
    return head + "".join(out), ShareReport(len(modules), len(kept), shared)


def _rewrite_instances(body: str, rep_of: dict, rename_of: dict) -> str:
    """Point each instance in ``body`` of an already classified module at its class's representative, renaming
    the generated port names of its connections to the representative's."""
    out = []
    pos = 0
    inst = re.compile(r"^  (\\\S+|\w+) ( ?\S+) \(\n(.*?)^  \);\n", re.S | re.M)
    for mo in inst.finditer(body):
        mod = mo.group(1)
        if mod not in rep_of or rep_of[mod] == mod:
            continue
        rename = rename_of[mod]
        conns = _CONNECTION.sub(lambda c: c.group(1) + rename.get(c.group(2), c.group(2)) + c.group(3), mo.group(3))
        out.append(body[pos:mo.start()])
        out.append(f"  {rep_of[mod]} {mo.group(2)} (\n{conns}  );\n")
        pos = mo.end()
    out.append(body[pos:])
    return "".join(out)
