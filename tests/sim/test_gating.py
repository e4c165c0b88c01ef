"""The idle-skipping rewrite of the native build (sim/harness/gating.py) on small modules in the form Yosys's
``write_verilog -noattr`` writes; that the gated NPU counts the same cycles and bytes as the fast harness is
tests/sim/test_native.py's job (the native build gates the vector unit by default)."""

from __future__ import annotations

import re

import pytest

from npuforge.sim.harness.gating import GatingError, gate_module

TOP = """module top(clk, a, y);
  input clk;
  wire clk;
  input [7:0] a;
  wire [7:0] a;
  output [7:0] y;
  wire [7:0] y;
  \\top.unit  unit (
    .clk(clk),
    .\\d$3 (a),
    .q(y)
  );
endmodule
"""

UNIT = """module \\top.unit (\\d$3 , q, clk);
  input [7:0] \\d$3 ;
  wire [7:0] \\d$3 ;
  output [7:0] q;
  wire [7:0] q;
  input clk;
  wire clk;
  reg [7:0] acc = 8'h00;
  reg [7:0] mem [3:0];
  reg [7:0] _1_;
  always @(posedge clk)
    acc <= acc + \\d$3 ;
  always @(posedge clk) begin
    if (acc[0])
      mem[acc[1:0]] <= \\d$3 ;
  end
  always @(posedge clk) begin
    _1_ <= mem[acc[3:2]];
  end
  assign q = _1_;
endmodule
"""


def test_gated_unit_samples_inputs_and_clocks_flip_flops_when_active():
    out = gate_module(TOP + UNIT, "top.unit")
    unit = out[out.index("module \\top.unit"):]
    # The input becomes a sample register of the same name, loaded mid-cycle when the port differs from it.
    assert "module \\top.unit (\\d$3__raw , q, clk);" in unit
    assert "input [7:0] \\d$3__raw ;" in unit and "reg [7:0] \\d$3  = 0;" in unit
    assert "wire gate__sample = ~clk & gate__inputs_differ;" in unit
    assert "\\d$3  <= \\d$3__raw ;" in unit
    # Every flip-flop and memory is on the gated clock; the state and the memory's write enable decide it.
    assert "always @(posedge clk)" not in unit and unit.count("always @(posedge gate__clk)") == 4
    assert "gate__wrote <= (acc[0]);" in unit
    active = re.search(r"wire gate__active = (.*);", unit).group(1)
    assert active.split(" | ") == ["gate__first", "gate__wrote", "(acc != acc__prev)", "(_1_ != _1___prev)",
                                   "(\\d$3  != \\d$3__prev )"]
    assert "wire gate__clk = clk & gate__active;" in unit
    # The parent connects the renamed port; the other connections are untouched.
    parent = out[:out.index("module \\top.unit")]
    assert ".\\d$3__raw (a)," in parent and ".clk(clk)," in parent and ".q(y)" in parent


def test_registered_mode_compares_the_state_once_after_each_gated_edge():
    out = gate_module(TOP + UNIT, "top.unit", registered=True)
    unit = out[out.index("module \\top.unit"):]
    # The state comparison leaves active's expression (Verilator evaluates a clock's cone in every trigger
    # computation) for a register loaded at the falling edge of clk after an evaluated edge; the inputs stay.
    active = re.search(r"wire gate__active = (.*);", unit).group(1)
    assert active.split(" | ") == ["gate__first", "gate__wrote", "gate__changed", "(\\d$3  != \\d$3__prev )"]
    negedge = unit[unit.index("always @(negedge clk) begin"):]
    negedge = negedge[:negedge.index("  end")]
    assert "gate__seen <= gate__ran;" in negedge and "if (gate__ran != gate__seen)" in negedge
    assert "gate__changed <= (acc != acc__prev) | (_1_ != _1___prev);" in negedge
    assert "gate__ran <= ~gate__ran;" in unit[unit.index("always @(posedge gate__clk) begin"):]
    # The rest of the rewrite is the same as without the mode.
    plain = gate_module(TOP + UNIT, "top.unit")
    assert plain.count("always @(posedge gate__clk)") == out.count("always @(posedge gate__clk)")
    assert "gate__changed" not in plain


@pytest.mark.parametrize("change, needle", [
    (("  assign q = _1_;", "  \\top.sub  sub (\n    .x(q)\n  );"), "not flat"),
    (("  always @(posedge clk)\n    acc", "  always @(negedge clk)\n    acc"), "unsupported process"),
    (("    if (acc[0])\n      mem", "    mem"), "memory write"),
    (("module \\top.unit (", "module \\top.other ("), "found 0 times"),
])
def test_refuses_what_it_cannot_gate(change, needle):
    with pytest.raises(GatingError, match=needle):
        gate_module(TOP + UNIT.replace(*change), "top.unit")
