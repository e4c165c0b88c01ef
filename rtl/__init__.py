"""Amaranth components of the NPU. Imports only Amaranth: no NumPy, no cocotb, no file I/O."""
