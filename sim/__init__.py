"""cocotb testbenches and the runner helpers that build emitted Verilog with Verilator or Icarus."""
