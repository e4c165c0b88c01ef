"""Config -> Amaranth components -> deterministic Verilog, manifests and FuseSoC cores; toolchain set-up.
"""
