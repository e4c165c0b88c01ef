"""sim/harness/dedupe.py: identical modules (up to generated names and declaration order) become one, every
instance points at it with its generated port names renamed; different modules stay apart. The simulated
behaviour of a rewritten NPU is checked in tests/sim/test_native.py (native build vs the cocotb harness)."""

from __future__ import annotations

import re

from npuforge.sim.harness.dedupe import NO_INLINE, share_modules

# Two instances of one unit as Yosys writes them: own module names, own generated names, own declaration order.
UNIT_A = """module \\top.u0 (clk, \\port$11$0 , q);
  reg \\$auto$verilog_backend.cc:2505:dump_module$1  = 0;
  input clk;
  wire clk;
  input \\port$11$0 ;
  wire \\port$11$0 ;
  output [7:0] q;
  reg [7:0] q = 8'h00;
  wire [7:0] \\$5 ;
  assign \\$5  = q + 8'h01;
  always @(posedge clk)
    if (\\port$11$0 ) q <= \\$5 ;
endmodule
"""
UNIT_B = """module \\top.u1 (\\port$27$0 , q, clk);
  reg \\$auto$verilog_backend.cc:2505:dump_module$2  = 0;
  output [7:0] q;
  reg [7:0] q = 8'h00;
  input \\port$27$0 ;
  wire \\port$27$0 ;
  input clk;
  wire clk;
  wire [7:0] \\$9 ;
  assign \\$9  = q + 8'h01;
  always @(posedge clk)
    if (\\port$27$0 ) q <= \\$9 ;
endmodule
"""
TOP = """module top(clk, en0, en1, q0, q1);
  input clk;
  wire clk;
  input en0;
  wire en0;
  input en1;
  wire en1;
  output [7:0] q0;
  wire [7:0] q0;
  output [7:0] q1;
  wire [7:0] q1;
  \\top.u0  u0 (
    .clk(clk),
    .\\port$11$0 (en0),
    .q(q0)
  );
  \\top.u1  u1 (
    .\\port$27$0 (en1),
    .clk(clk),
    .q(q1)
  );
endmodule
"""


def _modules(text):
    return re.findall(r"^module ([^\s(]+)", text, re.M)


def test_identical_units_share_one_module():
    out, report = share_modules(TOP + UNIT_A + UNIT_B)
    assert _modules(out) == ["top", "\\top.u0"]
    assert (report.modules_before, report.modules_after) == (3, 2)
    assert report.shared == {"\\top.u0": 2}
    # Both instances use the kept module; u1's enable now connects to u0's generated port name.
    assert "\\top.u0  u0 (" in out and "\\top.u0  u1 (" in out
    assert ".\\port$11$0 (en1)" in out and "port$27" not in out
    kept = out[out.index("module \\top.u0"):]
    assert NO_INLINE in kept and NO_INLINE not in out[:out.index("module \\top.u0")]


def test_different_units_stay_apart():
    other = UNIT_B.replace("8'h01", "8'h02")
    out, report = share_modules(TOP + UNIT_A + other)
    assert _modules(out) == ["top", "\\top.u0", "\\top.u1"]
    assert report.shared == {} and NO_INLINE not in out
    assert out == TOP + UNIT_A + other


def test_unused_generated_port_names_must_match():
    # A generated port that the body never uses keeps its literal name in the comparison: no ambiguous renaming.
    a = UNIT_A.replace("  wire [7:0] \\$5 ;", "  input \\port$90$0 ;\n  wire [7:0] \\$5 ;")
    b = UNIT_B.replace("  wire [7:0] \\$9 ;", "  input \\port$91$0 ;\n  wire [7:0] \\$9 ;")
    _, report = share_modules(TOP + a + b)
    assert report.modules_after == 3


def test_pe_array_verilog_shares_its_processing_elements():
    """The PE array as Amaranth writes it: 16 PE modules become a few classes (edge rows/columns differ: their
    constant inputs or unused outputs are folded in), each product unit and multiplier one module."""
    from npuforge.gen.build.elaborate import verilog_text
    from npuforge.rtl.array import PEArray

    text = verilog_text(PEArray(rows=4, cols=4), name="arr")
    pes = [m for m in _modules(text) if re.search(r"\.pe_\d+_\d+$", m)]
    assert len(pes) == 16
    out, report = share_modules(text)
    kept_pes = [m for m in _modules(out) if re.search(r"\.pe_\d+_\d+$", m)]
    # At most one class per position kind: 4 corners, 4 edges, the interior.
    assert 1 < len(kept_pes) <= 9
    assert sum(report.shared.get(m, 1) for m in kept_pes) == 16
    assert len([m for m in _modules(out) if m.endswith(".product_unit")]) == 1
    # Every instance line names a module that is still there.
    kept = set(_modules(out))
    for mod in re.findall(r"^  (\\\S+)  ?\S+ \($", out, re.M):
        assert mod in kept, mod
