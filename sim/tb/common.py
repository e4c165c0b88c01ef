"""Pieces the cocotb testbenches of the DMA and the NPU share: the reset pulse and AxiRam back-pressure.

Imports cocotb (testbench-side only; the runner and pytest never import this module).
"""

from __future__ import annotations

import random

from cocotb.triggers import RisingEdge

__all__ = ["reset_pulse", "set_axi_ram_stall"]


async def reset_pulse(dut, cycles: int = 4) -> None:
    """Hold ``dut.rst`` high for ``cycles`` rising edges of ``dut.clk``, release it and let one more edge pass."""
    dut.rst.value = 1
    for _ in range(cycles):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    await RisingEdge(dut.clk)


def set_axi_ram_stall(ram, rng: random.Random, p: float) -> None:
    """Random back-pressure on every channel of a cocotbext-axi ``AxiRam``: each cycle a channel pauses with
    probability ``p`` (0 removes the pauses). ``rng`` makes the pattern reproducible from the test seed."""
    def pauses():
        while True:
            yield rng.random() < p
    rd, wr = ram.read_if, ram.write_if
    for chan in (rd.ar_channel, rd.r_channel, wr.aw_channel, wr.w_channel, wr.b_channel):
        chan.set_pause_generator(pauses() if p > 0 else None)
