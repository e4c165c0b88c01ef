"""Harnesses that build and run the generated Verilog: the simulator runner and build cache, GEMM and NPU job runners.
"""
