"""npuforge generator: configs, Verilog elaboration, synthesis, sweeps, performance model, CLI."""
