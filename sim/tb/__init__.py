"""cocotb testbench modules (each runs inside the simulator) and their parameter packers.
"""
