"""cocotb testbench of the DMA harness (CSR + DMA + scratchpad) against cocotbext-axi's AXI RAM.

The expected bytes of every transfer come from NumPy slicing of the memory images (the descriptor
spec); the DMA has no model of its own. ``DMA_CFG`` (JSON, see sim/bench/dma.py) describes the design;
``AXI_LATENCY`` (cycles from address handshake to data) and ``AXI_STALL`` (probability of a pause
cycle on each channel) shape the external memory.
"""

from __future__ import annotations

import collections
import itertools
import json
import logging
import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam, AxiResp
from npuforge.sim.tb.common import reset_pulse, set_axi_ram_stall

RAM_SIZE = 1 << 18
LOAD, STORE = 0, 1


class Tb:
    def __init__(self, dut, *, latency=None, stall=None, seed=None):
        self.dut = dut
        dut.rst.value = 1  # before the bus models start, so they never sample an undriven reset
        self.cfg = json.loads(os.environ["DMA_CFG"])
        self.B = self.cfg["data_width"] // 8
        self.depth = self.cfg["local_depth"]
        self.regs = self.cfg["regs"]
        self.err = self.cfg["errors"]
        self.rng = random.Random(seed if seed is not None else int(os.environ.get("DMA_SEED", "1")))
        self.latency = int(os.environ.get("AXI_LATENCY", "0")) if latency is None else latency
        self.stall = float(os.environ.get("AXI_STALL", "0")) if stall is None else stall
        self.cycle = 0
        self.ar_log, self.aw_log = [], []      # (addr, len, size, burst) of every handshake
        self.arvalid_cycles = self.awvalid_cycles = 0
        self.busy_cycles = 0
        self.beat_cycles = 0
        self.done_pulses = 0
        self._done_mark = 0
        self._ar_times, self._aw_times = collections.deque(), collections.deque()
        self.fail_read = None                  # (lo, hi): RAM answers SLVERR for beats in [lo, hi)
        self.fail_write = None
        self.decode_error = False              # report injected errors as DECERR instead of SLVERR
        self.rd_outstanding = self.wr_outstanding = 0
        self.max_rd_outstanding = self.max_wr_outstanding = 0

        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        self.ram = AxiRam(AxiBus.from_prefix(dut, "m_axi", bus_separator="__"), dut.clk, dut.rst, size=RAM_SIZE)
        self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil", bus_separator="__"), dut.clk, dut.rst)
        for log in (self.ram.read_if.log, self.ram.write_if.log, self.axil.write_if.log, self.axil.read_if.log):
            log.setLevel(logging.WARNING)  # per-burst INFO lines would dominate the run time
        self._hook_ram()
        self.set_stall(self.stall)
        for sig in (dut.desc__valid, dut.desc__payload, dut.dbg_wr__en, dut.dbg_wr__addr, dut.dbg_wr__data,
                    dut.dbg_rd__en, dut.dbg_rd__addr):
            sig.value = 0

    # ---- external memory model: latency, stalls, error injection ----
    def _hook_ram(self):
        rd, wr = self.ram.read_if, self.ram.write_if
        for chan, times in ((rd.ar_channel, self._ar_times), (wr.aw_channel, self._aw_times)):
            orig = chan.recv

            async def delayed_recv(orig=orig, times=times):
                tr = await orig()
                t = times.popleft()
                # Pipelined latency: a burst's data starts >= latency cycles after its address.
                while self.cycle < t + self.latency:
                    await RisingEdge(self.dut.clk)
                return tr
            chan.recv = delayed_recv
        orig_read, orig_write = rd._read, wr._write

        async def read(address, length):
            if self.fail_read and self.fail_read[0] <= address < self.fail_read[1]:
                raise OSError("injected read error")
            return await orig_read(address, length)

        async def write(address, data):
            if self.fail_write and self.fail_write[0] <= address < self.fail_write[1]:
                raise OSError("injected write error")
            return await orig_write(address, data)
        rd._read, wr._write = read, write
        # The RAM model answers SLVERR for a failed access; tests may ask for DECERR instead.
        for chan, field in ((rd.r_channel, "rresp"), (wr.b_channel, "bresp")):
            orig_send = chan.send

            async def send(tr, orig_send=orig_send, field=field):
                if self.decode_error and getattr(tr, field) == AxiResp.SLVERR:
                    setattr(tr, field, AxiResp.DECERR)
                return await orig_send(tr)
            chan.send = send

    def set_stall(self, p):
        set_axi_ram_stall(self.ram, self.rng, p)

    async def _monitor(self):
        d = self.dut
        B = self.B
        while True:
            await RisingEdge(d.clk)
            await ReadOnly()
            self.cycle += 1
            busy = int(d.dma_busy.value)
            self.busy_cycles += busy
            self.done_pulses += int(d.dma_done.value)
            arv, awv = int(d.m_axi__arvalid.value), int(d.m_axi__awvalid.value)
            self.arvalid_cycles += arv
            self.awvalid_cycles += awv
            if arv and int(d.m_axi__arready.value):
                self.ar_log.append((int(d.m_axi__araddr.value), int(d.m_axi__arlen.value),
                                    int(d.m_axi__arsize.value), int(d.m_axi__arburst.value)))
                self._ar_times.append(self.cycle)
            if awv and int(d.m_axi__awready.value):
                self.aw_log.append((int(d.m_axi__awaddr.value), int(d.m_axi__awlen.value),
                                    int(d.m_axi__awsize.value), int(d.m_axi__awburst.value)))
                self._aw_times.append(self.cycle)
            r = int(d.m_axi__rvalid.value) & int(d.m_axi__rready.value)
            w = int(d.m_axi__wvalid.value) & int(d.m_axi__wready.value)
            if busy:
                self.beat_cycles += r | w
            # Bursts in flight: address handshake .. last R beat / B response.
            self.rd_outstanding += bool(arv and int(d.m_axi__arready.value)) - bool(r and int(d.m_axi__rlast.value))
            self.wr_outstanding += bool(awv and int(d.m_axi__awready.value)) \
                - bool(int(d.m_axi__bvalid.value) & int(d.m_axi__bready.value))
            self.max_rd_outstanding = max(self.max_rd_outstanding, self.rd_outstanding)
            self.max_wr_outstanding = max(self.max_wr_outstanding, self.wr_outstanding)

    async def reset(self):
        await reset_pulse(self.dut)
        cocotb.start_soon(self._monitor())

    # ---- registers ----
    async def wr(self, addr, value):
        resp = await self.axil.write(addr, int(value).to_bytes(4, "little"))
        assert resp.resp == AxiResp.OKAY, f"write 0x{addr:03x}: {resp.resp}"

    async def rd(self, addr):
        resp = await self.axil.read(addr, 4)
        assert resp.resp == AxiResp.OKAY, f"read 0x{addr:03x}: {resp.resp}"
        return int.from_bytes(resp.data, "little")

    async def set_window(self, i, base, size, read=True, write=True):
        w = self.cfg["windows"][i]
        await self.wr(w["BASE"], base)
        await self.wr(w["SIZE"], size)
        await self.wr(w["PERM"], int(read) | int(write) << 1)

    async def status(self):
        s = await self.rd(self.regs["STATUS"])
        st = self.cfg["status"]
        return {"busy": s >> st["BUSY"] & 1, "done": s >> st["DONE"] & 1, "error": s >> st["ERROR"] & 1,
                "code": s >> st["ERROR_CODE_SHIFT"] & 0xF}

    # ---- scratchpad ----
    async def local_write(self, word, data: bytes):
        d, B = self.dut, self.B
        for i in range(len(data) // B):
            await RisingEdge(d.clk)
            d.dbg_wr__addr.value = word + i
            d.dbg_wr__data.value = int.from_bytes(data[i * B:(i + 1) * B], "little")
            d.dbg_wr__en.value = (1 << B) - 1
        await RisingEdge(d.clk)
        d.dbg_wr__en.value = 0

    async def local_read(self, word, n_words) -> bytes:
        d, B = self.dut, self.B
        out = bytearray()
        for i in range(n_words):
            await RisingEdge(d.clk)
            d.dbg_rd__addr.value = word + i
            d.dbg_rd__en.value = 1
            await RisingEdge(d.clk)
            d.dbg_rd__en.value = 0
            await ReadOnly()
            out += int(d.dbg_rd__data.value).to_bytes(B, "little")
        return bytes(out)

    # ---- commands ----
    def pack(self, ext_addr, ext_stride, local_addr, rows, row_bytes, direction):
        f = self.cfg["desc_fields"]
        vals = dict(ext_addr=ext_addr, ext_stride=ext_stride, local_addr=local_addr, rows=rows,
                    row_bytes=row_bytes, direction=direction)
        word = 0
        for name, (off, width) in f.items():
            assert 0 <= vals[name] < 1 << width, (name, vals[name])
            word |= vals[name] << off
        return word

    async def issue(self, *, via="stream", irq_en=True, **desc):
        """Send one descriptor (through the stream port or the DESC_* registers)."""
        d = self.dut
        self._done_mark = self.done_pulses
        if via == "stream":
            await RisingEdge(d.clk)
            d.desc__payload.value = self.pack(**desc)
            d.desc__valid.value = 1
            while True:
                await ReadOnly()
                accepted = int(d.desc__ready.value)
                await RisingEdge(d.clk)
                if accepted:
                    break
            d.desc__valid.value = 0
        else:
            r = self.regs
            await self.wr(r["DESC_EXT_ADDR"], desc["ext_addr"])
            await self.wr(r["DESC_EXT_STRIDE"], desc["ext_stride"])
            await self.wr(r["DESC_LOCAL_ADDR"], desc["local_addr"])
            await self.wr(r["DESC_SHAPE"], desc["rows"] | desc["row_bytes"] << 16)
            await self.wr(r["DESC_DIR"], desc["direction"])
            ctrl = self.cfg["ctrl"]
            await self.wr(r["CTRL"], 1 << ctrl["DESC_ISSUE"] | int(irq_en) << ctrl["IRQ_EN"])

    async def wait_done(self, timeout=200_000):
        """Wait for the ``done`` pulse of the command issued last (it may already have happened)."""
        start = self._done_mark
        for _ in range(timeout):
            await RisingEdge(self.dut.clk)
            if self.done_pulses > start:
                return
        raise AssertionError(f"DMA did not finish within {timeout} cycles (hang)")

    async def wait_idle(self, timeout=200_000):
        for _ in range(timeout):
            await RisingEdge(self.dut.clk)
            await ReadOnly()
            if not int(self.dut.dma_busy.value):
                await RisingEdge(self.dut.clk)
                return
        raise AssertionError(f"DMA still busy after {timeout} cycles (hang)")

    # ---- checked transfers ----
    def check_bursts(self, log):
        B, P = self.B, self.cfg["burst_boundary"]
        for addr, length, size, burst in log:
            assert burst == 1 and (1 << size) == B, f"burst type {burst} size {size}"
            assert addr % B == 0, f"unaligned burst address 0x{addr:x}"
            assert length <= 255
            assert addr // 4096 == (addr + (length + 1) * B - 1) // 4096, f"burst 0x{addr:x}+{length + 1} crosses 4 KiB"
            assert addr // P == (addr + (length + 1) * B - 1) // P

    async def transfer(self, *, direction, ext_addr, ext_stride, local_addr, rows, row_bytes, via="stream"):
        """Run one transfer with random surroundings and compare every byte with NumPy slicing."""
        B = self.B
        words = -(-row_bytes // B)
        local_stride = words * B
        n_local = rows * words
        w0 = local_addr // B
        image = np.frombuffer(self.rng.randbytes(RAM_SIZE), dtype=np.uint8).copy()
        self.ram.write(0, image.tobytes())
        local = np.frombuffer(self.rng.randbytes(n_local * B), dtype=np.uint8).copy()
        await self.local_write(w0, local.tobytes())
        # Guard words just outside the local rows must keep their contents.
        guards = {w: self.rng.randbytes(B) for w in (w0 - 1, w0 + n_local) if 0 <= w < self.depth}
        for w, data in guards.items():
            await self.local_write(w, data)
        n_ar, n_aw = len(self.ar_log), len(self.aw_log)
        await self.issue(via=via, direction=direction, ext_addr=ext_addr, ext_stride=ext_stride,
                         local_addr=local_addr, rows=rows, row_bytes=row_bytes)
        await self.wait_done()
        st = await self.status()
        assert st["done"] == 1 and st["error"] == 0 and st["code"] == 0, st
        for w, data in guards.items():
            assert await self.local_read(w, 1) == data, f"local word {w} outside the transfer was written"
        # The spec: rows of the external image seen through a (rows, row_bytes) strided view.
        ext_view = lambda img: np.lib.stride_tricks.as_strided(img[ext_addr:], shape=(rows, row_bytes),
                                                                strides=(ext_stride, 1), writeable=False)
        local_rows = local.reshape(rows, local_stride)
        if direction == LOAD:
            expected = np.zeros_like(local_rows)       # row padding up to the local word is written 0
            expected[:, :row_bytes] = ext_view(image)
            got = np.frombuffer(await self.local_read(w0, n_local), dtype=np.uint8).reshape(rows, local_stride)
            bad = np.argwhere(got != expected)
            if bad.size:
                r = int(bad[0][0])
                raise AssertionError(f"load mismatch at (row, byte) {bad[:4].tolist()} of {bad.shape[0]}: row {r} "
                                     f"got {got[r].tobytes().hex()} expected {expected[r].tobytes().hex()} "
                                     f"(before {local_rows[r].tobytes().hex()}; bursts {self.ar_log[n_ar:]})")
            assert len(self.aw_log) == n_aw
            self.check_bursts(self.ar_log[n_ar:])
        else:
            expected = image.copy()
            for r in range(rows):  # rows in order: a later row wins where rows overlap
                expected[ext_addr + r * ext_stride:ext_addr + r * ext_stride + row_bytes] = local_rows[r, :row_bytes]
            got = np.frombuffer(self.ram.read(0, RAM_SIZE), dtype=np.uint8)
            bad = np.flatnonzero(got != expected)
            assert bad.size == 0, f"store mismatch at ext bytes {[hex(b) for b in bad[:4]]} of {bad.size}"
            assert len(self.ar_log) == n_ar
            self.check_bursts(self.aw_log[n_aw:])

    def random_transfer(self, direction, max_row_bytes=700, max_rows=8):
        rng, B = self.rng, self.B
        while True:
            row_bytes = rng.choice([1, B - 1, B, B + 1, rng.randint(1, 64), rng.randint(1, max_row_bytes),
                                    rng.randint(1, max_row_bytes), rng.randint(max_row_bytes // 2, max_row_bytes)])
            row_bytes = max(1, row_bytes)
            rows = rng.randint(1, max_rows)
            if direction == LOAD and rng.random() < 0.2:
                ext_stride = rng.randint(0, row_bytes)      # overlapping rows, broadcast (0)
            else:
                ext_stride = row_bytes + rng.choice([0, rng.randint(0, 3 * B), rng.randint(0, 5000)])
            span = (rows - 1) * ext_stride + row_bytes
            words = rows * -(-row_bytes // B)
            if span < RAM_SIZE and words <= self.depth:
                break
        ext_addr = rng.randint(0, RAM_SIZE - span)
        if rng.random() < 0.25:
            ext_addr = ext_addr & ~(B - 1)
        local_addr = rng.randint(0, self.depth - words) * B
        return dict(direction=direction, ext_addr=ext_addr, ext_stride=ext_stride, local_addr=local_addr,
                    rows=rows, row_bytes=row_bytes)


async def setup(dut, **kw):
    tb = Tb(dut, **kw)
    await tb.reset()
    await tb.set_window(0, 0, RAM_SIZE)
    return tb


@cocotb.test()
async def random_transfers(dut):
    """Random 2-D loads and stores (unaligned, strided, overlapping, broadcast) with AXI stalls."""
    tb = await setup(dut)
    n = int(os.environ.get("DMA_TRANSFERS", "40"))
    for i in range(n):
        desc = tb.random_transfer(tb.rng.choice([LOAD, STORE]))
        dut._log.info("transfer %d: %s", i, desc)
        await tb.transfer(via=tb.rng.choice(["stream", "regs"]), **desc)


@cocotb.test()
async def long_rows_cross_4k(dut):
    """Rows longer than a burst, unaligned, crossing 4 KiB boundaries, with long latency."""
    tb = await setup(dut, latency=20)
    B = tb.B
    for direction in (LOAD, STORE):
        for ext_addr, rows, row_bytes, stride in ((0x0FF3, 1, 5000, 0), (0x1FFF, 2, 4097, 9000),
                                                  (0x3000, 3, 2048 + B, 4096 + 3)):
            rb = min(row_bytes, (tb.depth // rows) * B)
            n_ar, n_aw = len(tb.ar_log), len(tb.aw_log)
            await tb.transfer(direction=direction, ext_addr=ext_addr, ext_stride=max(stride, rb),
                              local_addr=0, rows=rows, row_bytes=rb)
            log = tb.ar_log[n_ar:] if direction == LOAD else tb.aw_log[n_aw:]
            # Bursts are split exactly at the boundaries: every beat of every row is requested once.
            beats = sum(l + 1 for _, l, _, _ in log)
            exp_beats = sum((ext_addr + r * max(stride, rb) + rb - 1) // B - (ext_addr + r * max(stride, rb)) // B + 1
                            for r in range(rows))
            assert beats == exp_beats, (beats, exp_beats)
            crossings = {a // 4096 for a, _, _, _ in log}
            assert len(crossings) > 1
    # Many short rows (one short burst each): with 20 cycles of latency the DMA keeps exactly its limit
    # of bursts in flight, never more.
    for direction in (LOAD, STORE):
        await tb.transfer(direction=direction, ext_addr=0x9000 + 5, ext_stride=256, local_addr=0, rows=16,
                          row_bytes=2 * B)
    limit = tb.cfg["max_outstanding"]
    assert tb.max_rd_outstanding == limit and tb.max_wr_outstanding == limit, \
        (tb.max_rd_outstanding, tb.max_wr_outstanding, limit)
    assert tb.rd_outstanding == 0 and tb.wr_outstanding == 0


@cocotb.test()
async def out_of_window_refused(dut):
    """Commands outside the windows are refused with no AR/AW ever raised; fault address reported."""
    tb = await setup(dut)
    B, E = tb.B, tb.err
    base, size = 0x8000, 0x2000
    await tb.set_window(0, base, size, read=True, write=False)
    await tb.set_window(1, 0x20000, 0x1000, read=True, write=True)
    cases = [
        # (direction, ext_addr, stride, rows, row_bytes, expected code, expected fault address)
        (LOAD, base + 0x10, 0x100, 4, 0x100, "NONE", None),                       # inside: runs
        (LOAD, base + size - 0x40, 0, 1, 0x41, "WINDOW", base + size),            # last byte 1 past
        (LOAD, base - 1, 0, 1, 8, "WINDOW", base - 1),                            # first byte before
        (LOAD, base + 0x100, 0x800, 5, 0x10, "WINDOW", base + 0x100 + 4 * 0x800 + 0xF),
        (STORE, base + 0x10, 0x100, 2, 0x20, "WINDOW", base + 0x10),              # read-only window
        (LOAD, 0x1FFF0, 0, 1, 0x20, "WINDOW", 0x1FFF0),                           # before window 1
        (STORE, 0x20000 + 0xFE0, 0x10, 2, 0x10, "NONE", None),                    # window 1 write
        (STORE, 0x20000 + 0xFE0, 0x10, 2, 0x11, "WINDOW", 0x20000 + 0x1000),      # ends 1 past
        (LOAD, 0xFFFFFFF0, 0x100, 2, 0x10, "WINDOW", 0xFFFFFFF0),                 # nowhere, wraps 4G
        (LOAD, base, 0, 0, 8, "BAD_DESC", base),                                  # rows = 0
        (LOAD, base, 0, 1, 0, "BAD_DESC", base),                                  # row_bytes = 0
        (LOAD, base, 0, 1, 8, "BAD_DESC", 3, 3),                                  # local misaligned
        (LOAD, base, 0, 2, 8, "LOCAL_RANGE", (tb.depth - 1) * B, (tb.depth - 1) * B),
    ]
    irq_bits = tb.cfg["irq"]
    for case in cases:
        direction, ext_addr, stride, rows, rb, code, fault = case[:7]
        local_addr = case[7] if len(case) > 7 else 0
        await tb.wr(tb.regs["IRQ_STATUS"], 0xFFFFFFFF)
        n_ar, n_aw = len(tb.ar_log), len(tb.aw_log)
        arv, awv = tb.arvalid_cycles, tb.awvalid_cycles
        before = await tb.local_read(0, 4)
        await tb.issue(via="regs", direction=direction, ext_addr=ext_addr, ext_stride=stride,
                       local_addr=local_addr, rows=rows, row_bytes=rb)
        await tb.wait_done()
        st = await tb.status()
        assert st["done"] == 1 and st["code"] == E[code], (case, st)
        if code == "NONE":
            continue
        assert st["error"] == 1
        assert (len(tb.ar_log), len(tb.aw_log)) == (n_ar, n_aw), f"bus transaction for refused {case}"
        assert (tb.arvalid_cycles, tb.awvalid_cycles) == (arv, awv), f"AR/AW valid raised for {case}"
        assert await tb.rd(tb.regs["FAULT_ADDR"]) == fault & 0xFFFFFFFF, (case, hex(await tb.rd(tb.regs["FAULT_ADDR"])))
        pending = await tb.rd(tb.regs["IRQ_STATUS"])
        assert pending == (1 << irq_bits["DONE"]) | (1 << irq_bits["ERROR"]), pending
        assert int(dut.irq.value) == 1
        assert await tb.local_read(0, 4) == before


@cocotb.test()
async def axi_error_then_soft_reset(dut):
    """SLVERR (read) and DECERR (write) responses are reported; soft reset aborts a transfer; then a clean run."""
    tb = await setup(dut, latency=5, stall=0.3)
    E = tb.err
    # Read error: the RAM fails beats from 0x5000; a load over it reports the first failing beat.
    tb.fail_read = (0x5000, 0x6000)
    await tb.issue(direction=LOAD, ext_addr=0x4F03, ext_stride=0x400, local_addr=0, rows=3, row_bytes=0x200)
    await tb.wait_done()
    st = await tb.status()
    assert st["code"] == E["AXI_READ"] and st["error"] == 1, st
    assert await tb.rd(tb.regs["FAULT_ADDR"]) == 0x5000
    tb.fail_read = None
    # Write error, answered DECERR: the failing burst starts at the 4 KiB boundary 0x7000 (bursts split there).
    tb.fail_write = (0x7000, 0x8000)
    tb.decode_error = True
    await tb.issue(direction=STORE, ext_addr=0x6F00, ext_stride=0, local_addr=0, rows=1, row_bytes=0x300)
    await tb.wait_done()
    st = await tb.status()
    assert st["code"] == E["AXI_WRITE"], st
    assert await tb.rd(tb.regs["FAULT_ADDR"]) == 0x7000
    tb.fail_write = None
    tb.decode_error = False
    # Every burst issued before the error was completed.
    assert tb.rd_outstanding == 0 and tb.wr_outstanding == 0
    # Soft reset in the middle of a long, stalled store: the DMA drains and reports ABORTED.
    tb.set_stall(0.6)
    n = min(tb.depth * tb.B, 0x4000)
    await tb.issue(direction=STORE, ext_addr=0x10000, ext_stride=0, local_addr=0, rows=1, row_bytes=n)
    for _ in range(60):
        await RisingEdge(dut.clk)
    await tb.wr(tb.regs["CTRL"], 1 << tb.cfg["ctrl"]["SOFT_RESET"])
    await tb.wait_idle()
    st = await tb.status()
    assert st["code"] == E["ABORTED"] and st["busy"] == 0, st
    assert len(tb.ar_log) + len(tb.aw_log) > 0
    # Same with a load.
    await tb.issue(direction=LOAD, ext_addr=0x10001, ext_stride=0, local_addr=0, rows=1, row_bytes=n)
    for _ in range(60):
        await RisingEdge(dut.clk)
    await tb.wr(tb.regs["CTRL"], 1 << tb.cfg["ctrl"]["SOFT_RESET"])
    await tb.wait_idle()
    assert (await tb.status())["code"] == E["ABORTED"]
    # Every issued burst was completed (AXI needs it) and the next transfers are exact.
    tb.set_stall(0.2)
    for direction in (LOAD, STORE):
        await tb.transfer(**tb.random_transfer(direction))


@cocotb.test()
async def bench_long_transfers(dut):
    """Long loads/stores without latency or stalls, checked; cycles = busy cycles of the command."""
    tb = await setup(dut, latency=int(os.environ.get("BENCH_LATENCY", "0")), stall=0.0)
    total = int(os.environ.get("BENCH_BYTES", "4096"))
    B = tb.B
    records = []
    for direction in (LOAD, STORE):
        # (shape, ext_addr, rows, row_bytes, ext_stride): contiguous, strided, strided + unaligned
        for shape, ext_addr, rows, row_bytes, stride in (
                ("1x%d" % total, 0x1000, 1, total, 0),
                ("16x%d" % (total // 16), 0x1000, 16, total // 16, total // 16 + 256),
                ("64x%d" % (total // 64), 0x1000, 64, total // 64, total // 64 + 256),
                ("64x%d@+3" % (total // 64 - B), 0x1003, 64, total // 64 - B, total // 64 + 256)):
            row_bytes = min(row_bytes, 65535)
            busy0 = tb.busy_cycles
            await tb.transfer(direction=direction, ext_addr=ext_addr, ext_stride=stride, local_addr=0,
                              rows=rows, row_bytes=row_bytes)
            records.append({"direction": "load" if direction == LOAD else "store", "shape": shape,
                            "ext_addr": ext_addr, "bytes": rows * row_bytes, "cycles": tb.busy_cycles - busy0})
    if os.environ.get("BENCH_OUT"):
        with open(os.environ["BENCH_OUT"], "w") as f:
            json.dump(records, f)
