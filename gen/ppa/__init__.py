"""Power/performance/area flow: Yosys and nextpnr synthesis, fmax, and design-space sweeps.
"""
