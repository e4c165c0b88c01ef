"""Idle skipping for the native build: a unit of the NPU is evaluated only in cycles where it can change.

Verilator evaluates a design's combinational logic under the clock triggers it depends on (``if
(__VnbaTriggered & mask)``), never per value change, so an idle unit costs as much per cycle as a busy one.
:func:`gate_module` rewrites one flat module of the Yosys pre-pass's Verilog (``write_verilog -noattr``: every
flip-flop an ``always @(posedge clk)`` block) so that its logic sits on two clocks of its own:

* its inputs pass a sample register per input, loaded in the middle of the cycle (a clock that rises at the
  falling edge of ``clk`` only when an input differs from its sample), so the unit's logic sees the inputs of the
  current cycle from then on, and its outputs settle before the next rising edge as before;
* its flip-flops and memories are clocked by ``clk`` gated with ``active``: the unit was at a fixed point when
  its state and sampled inputs equal those of its last evaluated edge (that edge then changed no flip-flop and
  wrote no memory), and a fixed point stays one as long as nothing changes: ``f(state, inputs) = state``.
  So ``active`` is: state or sampled inputs differ from their values at the last evaluated edge, a memory was
  written at that edge, or no edge has been evaluated yet.

The unit's logic then depends on its own clocks only and Verilator skips it in every cycle where neither rises:
same values at every rising edge of ``clk``, so the same cycles and results (tests/sim/test_native.py compares
the native harness with the cocotb fast harness, which Verilates the NPU as Amaranth writes it). Requirements,
checked (:class:`GatingError` otherwise): the module is flat, every ``always`` block is combinational
(``@*``) or on ``posedge clk``, and every memory write is ``if (EN) MEM[ADDR] <= DATA;``.
"""

from __future__ import annotations

import re

__all__ = ["GatingError", "gate_module", "PREFIX"]

#: Prefix of the signals the rewrite adds (not Verilator's reserved ``__V``).
PREFIX = "gate__"

_ID = r"(?:\\\S+ |[A-Za-z_][A-Za-z0-9_$]*)"   # a Verilog identifier; an escaped one ends with its space


class GatingError(ValueError):
    """The module is not in the form :func:`gate_module` rewrites; the message names the reason."""


def _renamed(name: str, suffix: str) -> str:
    """``name`` with ``suffix`` appended (an escaped identifier keeps its closing space)."""
    return f"{name[:-1]}{suffix} " if name.startswith("\\") else f"{name}{suffix}"


def _module_span(lines: list[str], module: str) -> tuple[int, int]:
    heads = [i for i, ln in enumerate(lines)
             if ln.startswith("module ") and re.match(rf"module \\?{re.escape(module)}\s*\(", ln)]
    if len(heads) != 1:
        raise GatingError(f"module {module!r} found {len(heads)} times in the Verilog, expected once")
    start = heads[0]
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("endmodule"))
    return start, end


def gate_module(verilog: str, module: str, *, registered: bool = False) -> str:
    """Return ``verilog`` with module ``module`` (its name without the leading backslash) gated as the module
    docstring says, and its one instance's input connections renamed to match.

    ``registered``: the comparison of the state with its values at the last evaluated edge is made once, at the
    falling edge of ``clk`` after each evaluated edge, into a register (``gate__changed``), instead of being part of
    ``active``'s expression: Verilator inlines a clock's whole combinational cone into its trigger computation,
    which runs several times per ``eval()`` (measured: 29 % of the time of the gated 8x8 NPU on a GEMM). The state
    changes only at evaluated edges, so the register holds the comparison's value at every rising edge of ``clk``:
    the same ``active``."""
    lines = verilog.split("\n")
    start, end = _module_span(lines, module)
    header_end = next(i for i in range(start, end) if lines[i].rstrip().endswith(");"))
    body = lines[header_end + 1:end]

    # Ports: "input [range] name;" followed by "wire [range] name;".
    decl = re.compile(rf"^  (input|output|inout|wire|reg)( signed)?( \[[^\]]+\])? ({_ID});")
    inputs: dict[str, str] = {}   # name -> range text ("" for one bit)
    regs: dict[str, str] = {}
    memories: set[str] = set()
    for ln in body:
        m = decl.match(ln)
        if m and m.group(1) == "input":
            inputs[m.group(4)] = f"{m.group(2) or ''}{m.group(3) or ''}".strip()
        if m and m.group(1) == "inout":
            raise GatingError(f"module {module!r} has an inout port")
    for ln in body:
        m = re.match(rf"^  reg( signed)?( \[[^\]]+\])? ({_ID})(.*);", ln)
        if m:
            rest = m.group(4).strip()
            if rest.startswith("["):
                memories.add(m.group(3))
            else:
                regs[m.group(3)] = f"{m.group(1) or ''}{m.group(2) or ''}".strip()
    if "clk" not in inputs:
        raise GatingError(f"module {module!r} has no clk input")
    del inputs["clk"]

    # Flip-flops: the targets of the posedge blocks; memory writes: "if (EN)" + "MEM [..] <= ..".
    state: list[str] = []
    write_enables: list[str] = []
    i = 0
    while i < len(body):
        ln = body[i]
        if ln.startswith("  always") or ln.startswith("  always_ff"):
            if ln.strip() in ("always @*", "always @* begin"):
                i += 1
                continue
            if not ln.startswith("  always @(posedge clk)"):
                raise GatingError(f"module {module!r}: unsupported process {ln.strip()!r}")
            j = i + 1
            block = []
            while j < len(body) and (body[j].startswith("    ") or body[j] == "  end"):
                block.append(body[j])
                j += 1
                if body[j - 1] == "  end":
                    break
            for k, stmt in enumerate(block):
                for target in re.findall(rf"(?:^\s+|\)\s|else\s)({_ID})\s*(\[[^;]*?\])?\s*<=", stmt):
                    name = target[0]
                    if name in memories:
                        cond = re.match(r"^\s+if \((.*)\)\s*$", block[k - 1]) if k else None
                        if not cond or stmt.strip().startswith(("if", "else")):
                            raise GatingError(f"module {module!r}: memory write not in the form 'if (EN) MEM[..] <= ..': "
                                              f"{stmt.strip()!r}")
                        write_enables.append(cond.group(1))
                    elif name in regs:
                        if name not in state:
                            state.append(name)
                    else:
                        raise GatingError(f"module {module!r}: flip-flop target {name!r} is not a declared reg")
            i = j
            continue
        inst = re.match(rf"^  ({_ID}) *({_ID}) *\($", ln)
        if inst and inst.group(1).strip() not in ("assign", "always", "reg", "wire", "function", "case", "casez", "if"):
            raise GatingError(f"module {module!r} is not flat: it instantiates {inst.group(1).strip()!r}")
        i += 1

    raw = {p: _renamed(p, "__raw") for p in inputs}
    out: list[str] = []
    # The header's port list and the input declarations take the raw names.
    out += _rename_ports("\n".join(lines[start:header_end + 1]), raw).split("\n")
    clk_gated = f"{PREFIX}clk"
    for ln in body:
        m = decl.match(ln)
        if m and m.group(4) in raw and m.group(1) in ("input", "wire"):
            ln = ln.replace(m.group(4) + ";", raw[m.group(4)] + ";", 1)
        if ln.startswith("  always @(posedge clk)"):
            ln = ln.replace("posedge clk)", f"posedge {clk_gated})", 1)
        out.append(ln)
    gn = f"{PREFIX}sample"
    add = ["  // idle skipping (sim/harness/gating.py): inputs sampled mid-cycle when they change, flip-flops clocked",
           "  // only when the state or inputs differ from those of the last evaluated edge"]
    # The sample registers take the inputs' names, declared before the module's logic uses them.
    samples = [f"  reg{' ' + rng if rng else ''} {p} = {1 if p == 'rst' else 0};" for p, rng in inputs.items()]
    out[header_end + 1 - start:header_end + 1 - start] = samples
    add.append(f"  wire {PREFIX}inputs_differ = " + " | ".join(f"({raw[p]} != {p})" for p in inputs) + ";")
    add.append(f"  wire {gn} = ~clk & {PREFIX}inputs_differ;")
    add.append(f"  always @(posedge {gn}) begin")
    add += [f"    {p} <= {raw[p]};" for p in inputs]
    add.append("  end")
    prev = {s: _renamed(s, "__prev") for s in list(state) + list(inputs)}
    for s in state:
        add.append(f"  reg{' ' + regs[s] if regs[s] else ''} {prev[s]};")
    for p, rng in inputs.items():
        add.append(f"  reg{' ' + rng if rng else ''} {prev[p]};")
    add.append(f"  reg {PREFIX}first = 1'h1;")
    add.append(f"  reg {PREFIX}wrote = 1'h0;")
    if registered:
        add += [f"  reg {PREFIX}ran = 1'h0;", f"  reg {PREFIX}seen = 1'h0;", f"  reg {PREFIX}changed = 1'h0;"]
    add.append(f"  always @(posedge {clk_gated}) begin")
    add.append(f"    {PREFIX}first <= 1'h0;")
    add.append(f"    {PREFIX}wrote <= " + (" | ".join(f"({e})" for e in write_enables) or "1'h0") + ";")
    if registered:
        add.append(f"    {PREFIX}ran <= ~{PREFIX}ran;")
    add += [f"    {prev[s]} <= {s};" for s in list(state) + list(inputs)]
    add.append("  end")
    state_changed = [f"({s} != {prev[s]})" for s in state]
    input_changed = [f"({p} != {prev[p]})" for p in inputs]
    if registered and state_changed:
        # ran toggles at each evaluated edge; seen follows it at each falling edge of clk.
        add.append("  always @(negedge clk) begin")
        add.append(f"    {PREFIX}seen <= {PREFIX}ran;")
        add.append(f"    if ({PREFIX}ran != {PREFIX}seen)")
        add.append(f"      {PREFIX}changed <= " + " | ".join(state_changed) + ";")
        add.append("  end")
        changed = [f"{PREFIX}changed"] + input_changed
    else:
        changed = state_changed + input_changed
    add.append(f"  wire {PREFIX}active = {PREFIX}first | {PREFIX}wrote | " + " | ".join(changed) + ";")
    add.append(f"  wire {clk_gated} = clk & {PREFIX}active;")
    out += add
    result = lines[:start] + out + lines[end:]
    return _rename_instance("\n".join(result), module, raw)


def _rename_ports(header: str, raw: dict[str, str]) -> str:
    """Rename the input ports in the module header's port list."""
    for p, r in raw.items():
        if p.startswith("\\"):
            header = re.sub(rf"{re.escape(p)}(?=\s*[,)])", lambda _: r, header)
        else:
            header = re.sub(rf"(?<=[(,\s]){re.escape(p)}(?=\s*[,)])", r, header)
    return header


def _rename_instance(verilog: str, module: str, raw: dict[str, str]) -> str:
    """Rename the input connections (``.port(expr)``) of the one instance of ``module``."""
    m = list(re.finditer(rf"^  \\?{re.escape(module)}\s+\S+\s*\(\n", verilog, re.M))
    if len(m) != 1:
        raise GatingError(f"module {module!r} is instantiated {len(m)} times, expected once")
    begin = m[0].end()
    stop = verilog.index("\n  );", begin)
    conns = verilog[begin:stop].split("\n")
    for k, c in enumerate(conns):
        cm = re.match(rf"^(\s+\.)({_ID})(\(.*)$", c)
        if cm and cm.group(2) in raw:
            conns[k] = cm.group(1) + raw[cm.group(2)] + cm.group(3)
    return verilog[:begin] + "\n".join(conns) + verilog[stop:]
