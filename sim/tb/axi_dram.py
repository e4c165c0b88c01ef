"""cocotb test of the DRAM model alone (sim/hdl/axi_dram.v) against a Python byte array, driven by
cocotbext-axi's AxiMaster (a protocol-checked AXI4 manager).

``DRAM_TEST`` (JSON): ``{"data_bits", "dram_bytes", "seed", "ops"}``; plusargs give the model its latency,
stall probability, decoded size and the image/dump files. The test loads a random image with ``load``,
checks reads of it, then runs random writes (unaligned, any length: partial WSTRB, bursts up to 256 beats split
at 4 KiB by the master) and reads, several reads in flight at once, narrow (AxSIZE < bus) and FIXED bursts,
every read compared with the reference array; accesses past ``dram_bytes`` must answer DECERR; the final
``dump`` must equal the reference image.
"""

from __future__ import annotations

import json
import logging
import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge
from cocotbext.axi import AxiBurstType, AxiBus, AxiMaster, AxiResp

from npuforge.sim.tb.npu_fast import read_hex_dump, write_hex_image


async def _pulse(dut, sig):
    await RisingEdge(dut.clk)
    sig.value = 1
    await RisingEdge(dut.clk)
    sig.value = 0
    await ReadOnly()
    await RisingEdge(dut.clk)


@cocotb.test()
async def dram_model_vs_reference(dut):
    spec = json.loads(os.environ["DRAM_TEST"])
    word = spec["data_bits"] // 8
    size = spec["dram_bytes"]
    rng = random.Random(spec["seed"])
    dut.rst.value = 1
    dut.load.value = 0
    dut.dump.value = 0
    Clock(dut.clk, 10, unit="ns").start()
    master = AxiMaster(AxiBus.from_entity(dut), dut.clk, dut.rst)
    master.write_if.log.setLevel(logging.WARNING)
    master.read_if.log.setLevel(logging.WARNING)
    for _ in range(4):
        await RisingEdge(dut.clk)
    dut.rst.value = 0

    ref = np.frombuffer(rng.randbytes(size - 100), dtype=np.uint8).copy()   # a short image: the rest loads as 0
    write_hex_image(cocotb.plusargs["dram_image"], ref, word)
    ref = np.concatenate([ref, np.zeros(100, dtype=np.uint8)])
    await _pulse(dut, dut.load)
    assert int(dut.protocol_error.value) == 0

    async def check_read(addr, length, **kw):
        resp = await master.read(addr, length, **kw)
        assert resp.resp == AxiResp.OKAY, f"read 0x{addr:x}+{length}: {resp.resp}"
        got = np.frombuffer(bytes(resp.data), dtype=np.uint8)
        assert np.array_equal(got, ref[addr:addr + length]), f"read 0x{addr:x}+{length} differs"

    await check_read(0, 4096)
    await check_read(size - 256, 256)
    for _ in range(spec["ops"]):
        addr = rng.randrange(size - 1)
        length = rng.randint(1, min(size - addr, 3 * 256 * word))
        if rng.random() < 0.5:
            data = rng.randbytes(length)
            resp = await master.write(addr, data)
            assert resp.resp == AxiResp.OKAY, f"write 0x{addr:x}+{length}: {resp.resp}"
            ref[addr:addr + length] = np.frombuffer(data, dtype=np.uint8)
        else:
            await check_read(addr, length)
    # Several reads outstanding at once (the AR queue), each compared.
    tasks = [cocotb.start_soon(check_read(rng.randrange(size - 2048), rng.randint(1, 2048))) for _ in range(6)]
    for t in tasks:
        await t
    # Narrow beats (AxSIZE = 1 byte and 2 bytes on the wide bus) and a FIXED burst (same word every beat).
    await check_read(24, 40, size=0)
    data = rng.randbytes(16)
    await master.write(1030, data, size=1)
    ref[1030:1046] = np.frombuffer(data, dtype=np.uint8)
    await check_read(1024, 64)
    fixed = await master.read(8 * word, 4 * word, burst=AxiBurstType.FIXED)
    assert bytes(fixed.data) == bytes(ref[8 * word:9 * word]) * 4, "FIXED burst must repeat one word"
    # Past the decoded size: DECERR, reads return no stale data, writes change nothing.
    bad = await master.read(size - word, 2 * word)
    assert bad.resp == AxiResp.DECERR, f"read past {size} bytes: {bad.resp}"
    assert bytes(bad.data[:word]) == bytes(ref[size - word:]) and not any(bad.data[word:])
    wbad = await master.write(size, bytes(range(2 * word)))
    assert wbad.resp == AxiResp.DECERR, f"write past {size} bytes: {wbad.resp}"
    assert int(dut.protocol_error.value) == 0, f"protocol_error 0x{int(dut.protocol_error.value):x}"
    await _pulse(dut, dut.dump)
    got = read_hex_dump(cocotb.plusargs["dram_dump"], word)
    assert got.size == size and np.array_equal(got, ref), \
        f"dump differs from the reference in {int(np.count_nonzero(got != ref))} bytes"
