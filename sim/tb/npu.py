"""cocotb system testbench of the NPU: cocotbext-axi AXI RAM as DRAM, AXI4-Lite master for the registers.

``NPU_JOBS`` names a JSON file (written by :mod:`sim.harness.npu_run`) with the register map, the DRAM model (size,
latency in cycles from address handshake to data, probability of a stall cycle on every channel, seed) and a
list of jobs. Each job: a memory image (``.npy`` uint8, program at ``ring_base``), the windows, the ring
registers; optionally a soft reset ``soft_reset_after`` cycles into the run (the job then only checks that
the NPU stops and reports no error); the expected results of both golden tiers (the ISA simulator's final
memory image and status/fault/pc, and the golden ``requant(gemm)`` bytes of the C region). The testbench writes
what it measured to the job's ``result`` JSON and asserts equality when ``check`` is set.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge, SimTimeoutError, with_timeout
from cocotb.utils import get_sim_time
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam, AxiResp

from npuforge.sim.harness.npu_checks import NpuRegisters, run_job
from npuforge.sim.tb.common import reset_pulse, set_axi_ram_stall


class Tb(NpuRegisters):
    def __init__(self, dut, spec):
        self.dut = dut
        dut.rst.value = 1
        self.spec = spec
        self.map = spec["regs"]
        self.latency = int(spec.get("latency", 0))
        self.rng = random.Random(int(spec.get("seed", 1)))
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        self.ram = AxiRam(AxiBus.from_prefix(dut, "m_axi", bus_separator="__"), dut.clk, dut.rst,
                          size=int(spec["ram_size"]))
        self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil", bus_separator="__"), dut.clk, dut.rst)
        for log in (self.ram.read_if.log, self.ram.write_if.log, self.axil.write_if.log, self.axil.read_if.log):
            log.setLevel(logging.WARNING)
        if self.latency:
            self._hook_latency()
        set_axi_ram_stall(self.ram, self.rng, float(spec.get("stall", 0.0)))

    def _hook_latency(self):
        """Pipelined DRAM latency: a burst's data starts ``latency`` cycles after its address handshake.

        cocotbext-axi's AR / AW sinks queue a transaction at the clock edge that completes its handshake; that
        edge's cycle is noted as it is queued, and the RAM model's ``recv()`` returns it
        ``latency`` cycles after that edge. No per-cycle coroutine: the one this replaced cost a quarter of the CPU
        time of an AXI run (34,344-cycle GEMM at latency 4: 9.7 -> 7.25 CPU s, the same cycles and counters)."""
        rd, wr = self.ram.read_if, self.ram.write_if
        for chan in (rd.ar_channel, wr.aw_channel):
            times = collections.deque()
            put, recv = chan.queue.put_nowait, chan.recv

            def noted(tr, put=put, times=times):
                times.append(self.now_cycles())
                put(tr)

            async def delayed(recv=recv, times=times):
                tr = await recv()
                t = times.popleft()
                while self.now_cycles() < t + self.latency:
                    await RisingEdge(self.dut.clk)
                return tr
            chan.queue.put_nowait = noted
            chan.recv = delayed

    async def wait_cycles(self, n: int) -> None:
        """Let ``n`` clock cycles pass."""
        for _ in range(n):
            await RisingEdge(self.dut.clk)

    async def reset(self):
        await reset_pulse(self.dut)

    async def wr(self, addr, value):
        resp = await self.axil.write(addr, int(value).to_bytes(4, "little"))
        assert resp.resp == AxiResp.OKAY, f"register write 0x{addr:03x}: {resp.resp}"

    async def rd(self, addr):
        resp = await self.axil.read(addr, 4)
        assert resp.resp == AxiResp.OKAY, f"register read 0x{addr:03x}: {resp.resp}"
        return int.from_bytes(resp.data, "little")

    def now_cycles(self) -> int:
        """Clock cycles (10 ns) since time 0."""
        return int(get_sim_time("ns") // 10)

    async def wait_irq(self, limit):
        """Cycles until irq rises (None after ``limit`` cycles): an edge trigger, no per-cycle coroutine."""
        start = get_sim_time("ns")
        if not int(self.dut.irq.value):
            try:
                await with_timeout(RisingEdge(self.dut.irq), 10 * limit, "ns")
            except SimTimeoutError:
                return None
        return int((get_sim_time("ns") - start) // 10)

    async def load(self, image):
        size = int(self.spec["ram_size"])
        self.ram.write(0, bytes(size))
        self.ram.write(0, image.tobytes())

    async def read_memory(self, nbytes):
        return np.frombuffer(self.ram.read(0, nbytes), dtype=np.uint8), {}

    async def run_job(self, job):
        await run_job(self, job, {"name": job["name"]}, log=cocotb.log.info)


@cocotb.test()
async def npu_jobs(dut):
    """Run every job of NPU_JOBS in order on one NPU instance (state carries over, as on a real device)."""
    with open(os.environ["NPU_JOBS"]) as f:
        spec = json.load(f)
    tb = Tb(dut, spec)
    await tb.reset()
    for job in spec["jobs"]:
        await tb.run_job(job)
