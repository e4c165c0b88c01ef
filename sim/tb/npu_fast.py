"""Fast cocotb system testbench of the NPU: the DRAM is an HDL model (sim/hdl/axi_dram.v), not Python.

Same job file (``NPU_JOBS``, written by :mod:`sim.harness.npu_run`) and the same per-job result JSON as
:mod:`sim.tb.npu`, so ``run_jobs(..., harness="fast")`` swaps the two. What differs:

* DRAM: the HDL model inside the top (``npusys_*`` from :func:`sim.hdl.emit_npu_system`); its image is
  written as a hex file and loaded with one ``dram_load`` pulse, the final image read back with one
  ``dram_dump`` pulse (``+dram_image`` / ``+dram_dump`` plusargs name the files). Latency, stall probability and
  seed reach the model as plusargs (``+dram_read_latency`` ...), set by the runner.
* Clock in the GPI (C), not a Python coroutine; the AXI4-Lite driver below runs only during a register access;
  the wait for the interrupt is one edge trigger with a cycle timeout. Between register accesses no Python
  runs: the simulator goes at its own speed.
"""

from __future__ import annotations

import json
import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge, SimTimeoutError, Timer, with_timeout
from cocotb.utils import get_sim_time

from npuforge.sim.harness.npu_checks import NpuRegisters, run_job
from npuforge.sim.tb.common import reset_pulse

PERIOD_NS = 10


def write_hex_image(path: str, image: np.ndarray, word_bytes: int) -> None:
    """``image`` (uint8) as $readmemh text: one ``word_bytes``-byte little-endian word per line (vectorised)."""
    n = -(-image.size // word_bytes)
    words = np.zeros(n * word_bytes, dtype=np.uint8)
    words[:image.size] = image
    hexed = np.frombuffer(words.reshape(n, word_bytes)[:, ::-1].tobytes().hex().encode(), dtype=np.uint8)
    lines = np.hstack([hexed.reshape(n, 2 * word_bytes), np.full((n, 1), ord("\n"), dtype=np.uint8)])
    with open(path, "wb") as f:
        f.write(lines.tobytes())


def read_hex_dump(path: str, word_bytes: int) -> np.ndarray:
    """A $writememh file (words, little endian) as uint8 bytes; comment and ``@address`` lines skipped."""
    with open(path) as f:
        # Icarus writes "// 0x<address>" comment lines, Verilator bare words.
        words = [w for line in f for w in line.split("//", 1)[0].split() if w[0] != "@"]
    text = "".join(w.rjust(2 * word_bytes, "0") for w in words)
    if any(c in text for c in "xXzZ"):
        raise AssertionError(f"{path}: the DRAM dump holds X/Z digits")
    return np.frombuffer(bytes.fromhex(text), dtype=np.uint8).reshape(-1, word_bytes)[:, ::-1].ravel().copy()


class FastTb(NpuRegisters):
    def __init__(self, dut, spec):
        self.dut = dut
        self.spec = spec
        self.map = spec["regs"]
        self.word_bytes = int(spec["axi_data_bits"]) // 8
        self.image_file = cocotb.plusargs["dram_image"]
        self.dump_file = cocotb.plusargs["dram_dump"]
        dut.rst.value = 1
        for name in ("dram_load", "dram_dump", "s_axil__awvalid", "s_axil__wvalid", "s_axil__bready",
                     "s_axil__arvalid", "s_axil__rready", "s_axil__awaddr", "s_axil__araddr", "s_axil__wdata",
                     "s_axil__awprot", "s_axil__arprot"):
            getattr(dut, name).value = 0
        dut.s_axil__wstrb.value = 0xF
        Clock(dut.clk, PERIOD_NS, unit="ns", impl="gpi").start()

    async def wait_cycles(self, n: int) -> None:
        """Let ``n`` clock cycles pass."""
        await Timer(PERIOD_NS * n, "ns")

    async def reset(self):
        await reset_pulse(self.dut)

    # -- AXI4-Lite manager: active only while an access runs ------------------------------------------------
    async def _handshake(self, valid, ready, limit=1000):
        """Hold ``valid`` (already high) until ``ready`` is seen with it; drop it after that clock edge."""
        for _ in range(limit):
            await ReadOnly()
            done = int(ready.value)
            await RisingEdge(self.dut.clk)
            if done:
                valid.value = 0
                return
        raise AssertionError(f"AXI4-Lite: no READY within {limit} cycles")

    async def wr(self, addr, value):
        d = self.dut
        await RisingEdge(d.clk)
        d.s_axil__awaddr.value = addr
        d.s_axil__wdata.value = int(value) & 0xFFFF_FFFF
        d.s_axil__wstrb.value = 0xF
        d.s_axil__awvalid.value = 1
        d.s_axil__wvalid.value = 1
        aw_done = w_done = False
        for _ in range(1000):
            await ReadOnly()
            aw_now = not aw_done and int(d.s_axil__awready.value)
            w_now = not w_done and int(d.s_axil__wready.value)
            await RisingEdge(d.clk)
            if aw_now:
                aw_done = True
                d.s_axil__awvalid.value = 0
            if w_now:
                w_done = True
                d.s_axil__wvalid.value = 0
            if aw_done and w_done:
                break
        else:
            raise AssertionError(f"register write 0x{addr:03x}: no AWREADY/WREADY within 1000 cycles")
        d.s_axil__bready.value = 1
        for _ in range(1000):
            await ReadOnly()
            if int(d.s_axil__bvalid.value):
                resp = int(d.s_axil__bresp.value)
                await RisingEdge(d.clk)
                d.s_axil__bready.value = 0
                assert resp == 0, f"register write 0x{addr:03x}: BRESP {resp}"
                return
            await RisingEdge(d.clk)
        raise AssertionError(f"register write 0x{addr:03x}: no BVALID within 1000 cycles")

    async def rd(self, addr):
        d = self.dut
        await RisingEdge(d.clk)
        d.s_axil__araddr.value = addr
        d.s_axil__arvalid.value = 1
        await self._handshake(d.s_axil__arvalid, d.s_axil__arready)
        d.s_axil__rready.value = 1
        for _ in range(1000):
            await ReadOnly()
            if int(d.s_axil__rvalid.value):
                data, resp = int(d.s_axil__rdata.value), int(d.s_axil__rresp.value)
                await RisingEdge(d.clk)
                d.s_axil__rready.value = 0
                assert resp == 0, f"register read 0x{addr:03x}: RRESP {resp}"
                return data
            await RisingEdge(d.clk)
        raise AssertionError(f"register read 0x{addr:03x}: no RVALID within 1000 cycles")

    # -- DRAM image in and out: one pulse each -----------------------------------------------------------
    async def _pulse(self, sig):
        await RisingEdge(self.dut.clk)
        sig.value = 1
        await RisingEdge(self.dut.clk)   # the model acts on this edge
        sig.value = 0
        await ReadOnly()                 # its $readmemh / $writememh has run

    async def load(self, image):
        write_hex_image(self.image_file, image, self.word_bytes)
        await self._pulse(self.dut.dram_load)
        await RisingEdge(self.dut.clk)
        err = int(self.dut.dram_protocol_error.value)
        assert err == 0, f"DRAM model: load failed (protocol_error 0x{err:x}; +dram_image set?)"

    async def dump(self) -> np.ndarray:
        if os.path.exists(self.dump_file):
            os.remove(self.dump_file)
        await self._pulse(self.dut.dram_dump)
        await RisingEdge(self.dut.clk)
        return read_hex_dump(self.dump_file, self.word_bytes)

    def now_cycles(self) -> int:
        """Clock cycles since time 0."""
        return int(get_sim_time("ns") // PERIOD_NS)

    async def wait_irq(self, limit):
        """Cycles until irq rises (None after ``limit`` cycles): an edge trigger, no per-cycle coroutine."""
        start = get_sim_time("ns")
        if not int(self.dut.irq.value):
            try:
                await with_timeout(RisingEdge(self.dut.irq), PERIOD_NS * limit, "ns")
            except SimTimeoutError:
                return None
        return int((get_sim_time("ns") - start) // PERIOD_NS)

    async def read_memory(self, nbytes):
        memory = (await self.dump())[:nbytes]
        return memory, {"dram_protocol_error": int(self.dut.dram_protocol_error.value)}

    async def run_job(self, job):
        await run_job(self, job, {"name": job["name"], "harness": "fast"}, log=cocotb.log.info)


@cocotb.test()
async def npu_jobs_fast(dut):
    """Run every job of NPU_JOBS in order on one NPU + DRAM-model instance (state carries over)."""
    with open(os.environ["NPU_JOBS"]) as f:
        spec = json.load(f)
    tb = FastTb(dut, spec)
    await tb.reset()
    for job in spec["jobs"]:
        await tb.run_job(job)
