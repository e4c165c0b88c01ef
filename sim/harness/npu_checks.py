"""What the NPU system testbenches (sim/tb/npu.py, sim/tb/npu_fast.py) do with a finished job's DRAM image.

Both harnesses read the final DRAM bytes their own way (cocotbext-axi's RAM, or the HDL model's dump) and
then compare and check them identically here, so the two cannot drift apart. No cocotb import: plain NumPy
and asserts, usable from any testbench.
"""

from __future__ import annotations

import json
import time

import numpy as np

__all__ = ["NpuRegisters", "compare_memory", "check_result", "soft_reset_job", "finish_job", "run_job", "ctrl_value",
           "setup_writes", "soft_reset_writes", "finish_reads", "finish_fields"]


# The register traffic of a job as data, so the cocotb testbenches and the native harness (sim/harness/native.py)
# make the same accesses in the same order (and so count the same cycles).
def ctrl_value(regs: dict, *bits: str) -> int:
    """CTRL register value with the named bits set (``regs``: the job file's register map)."""
    c = regs["ctrl"]
    return sum(1 << c[b] for b in bits)


def setup_writes(spec: dict, job: dict) -> list[tuple[int, int]]:
    """(address, value) writes that start a job: its address windows (unused ones closed: base/size/perm 0),
    the command ring, clear the interrupt status and the counters, then START with the interrupt enabled."""
    regs = spec["regs"]
    reg, win = regs["reg"], regs["window"]
    windows = job["windows"]
    out = []
    for i in range(int(spec["n_windows"])):
        base, wsize, perm = windows[i] if i < len(windows) else (0, 0, 0)
        off = regs["window_stride"] * i
        out += [(win["BASE"] + off, base), (win["SIZE"] + off, wsize), (win["PERM"] + off, perm)]
    out += [(reg["RING_BASE"], job["ring_base"]), (reg["RING_SIZE"], job["ring_size"]),
            (reg["RING_HEAD"], job["ring_head"]), (reg["IRQ_STATUS"], 3),
            (reg["CTRL"], ctrl_value(regs, "IRQ_EN", "CLEAR_COUNTERS")), (reg["CTRL"], ctrl_value(regs, "IRQ_EN", "START"))]
    return out


def soft_reset_writes(regs: dict) -> list[tuple[int, int]]:
    """The write that soft-resets a running NPU (interrupt stays enabled)."""
    return [(regs["reg"]["CTRL"], ctrl_value(regs, "IRQ_EN", "SOFT_RESET"))]


def finish_reads(regs: dict) -> list[tuple[str, int]]:
    """(key, address) reads after a job's interrupt, in order: STATUS, FAULT_ADDR, RING_TAIL, IRQ_STATUS, then
    every 64-bit counter as two words (``NAME.lo``, ``NAME.hi``)."""
    reg = regs["reg"]
    out = [("status_word", reg["STATUS"]), ("fault_addr", reg["FAULT_ADDR"]), ("tail", reg["RING_TAIL"]),
           ("irq_status", reg["IRQ_STATUS"])]
    for name, addr in regs["counters"].items():
        out += [(f"{name}.lo", addr), (f"{name}.hi", addr + 4)]
    return out


def finish_fields(regs: dict, values: dict) -> dict:
    """The result fields (status_word, done, error, fault_addr, tail, irq_status, counters) from the values of
    :func:`finish_reads`."""
    status, bits = values["status_word"], regs["status"]
    return {"status_word": status, "done": (status >> bits["DONE"]) & 1,
            "error": (status >> bits["ERROR_CODE_SHIFT"]) & 0xF, "fault_addr": values["fault_addr"],
            "tail": values["tail"], "irq_status": values["irq_status"],
            "counters": {name: values[f"{name}.lo"] | values[f"{name}.hi"] << 32 for name in regs["counters"]}}


class NpuRegisters:
    """Register helpers both NPU testbenches share; the class using it provides ``map`` (the register map of the
    job file) and ``async rd(addr) -> int`` (one AXI4-Lite read)."""

    async def counter(self, name: str) -> int:
        """64-bit performance counter ``name`` (two 32-bit registers, low word first)."""
        lo = await self.rd(self.map["counters"][name])
        hi = await self.rd(self.map["counters"][name] + 4)
        return lo | hi << 32

    def ctrl(self, *bits: str) -> int:
        """CTRL register value with the named bits set."""
        return ctrl_value(self.map, *bits)


def compare_memory(job: dict, memory: np.ndarray, result: dict) -> None:
    """Save ``memory`` (uint8 DRAM image) if the job asks, and add to ``result`` the bytes that differ from the
    ISA simulator's image (``isasim_mismatch_bytes``), from the golden C region (``golden_mismatch_bytes``)
    and the number of C elements (``c_elem_bytes`` bytes each) with any differing byte (``mismatches``)."""
    if job.get("mem_out"):
        np.save(job["mem_out"], memory)
    if job.get("expect_mem"):
        want = np.load(job["expect_mem"])
        result["isasim_mismatch_bytes"] = int(np.count_nonzero(memory != want))
    if job.get("expect_c"):
        lo, hi = job["c_range"]
        want = np.load(job["expect_c"])
        result["golden_mismatch_bytes"] = int(np.count_nonzero(memory[lo:hi] != want))
        elem = int(job.get("c_elem_bytes", 1))
        got_e = memory[lo:hi].reshape(-1, elem)
        want_e = want.reshape(-1, elem)
        result["mismatches"] = int(np.count_nonzero((got_e != want_e).any(axis=1)))


def check_result(job: dict, result: dict) -> None:
    """Assert what a checked job must show: an interrupt in time, the ISA simulator's error code, fault
    address and ring tail, the IRQ status of DONE (+ERROR), and no byte different from either golden tier
    (plus, on the fast harness, no AXI protocol error seen by the DRAM model)."""
    name = job["name"]
    assert not result["timeout"], f"{name}: no interrupt within {job.get('timeout_cycles')} cycles"
    if "dram_protocol_error" in result:
        assert result["dram_protocol_error"] == 0, \
            f"{name}: DRAM model saw an AXI protocol error 0x{result['dram_protocol_error']:x}"
    assert result["error"] == job["expect_status"], \
        f"{name}: error code {result['error']}, ISA simulator says {job['expect_status']}"
    assert result["fault_addr"] == job["expect_fault"], \
        f"{name}: fault address 0x{result['fault_addr']:x}, expected 0x{job['expect_fault']:x}"
    assert result["tail"] == job["expect_tail"], \
        f"{name}: RING_TAIL {result['tail']}, expected {job['expect_tail']}"
    assert result["irq_status"] == (3 if job["expect_status"] else 1), \
        f"{name}: IRQ_STATUS {result['irq_status']}"
    if "isasim_mismatch_bytes" in result:
        assert result["isasim_mismatch_bytes"] == 0, \
            f"{name}: {result['isasim_mismatch_bytes']} DRAM bytes differ from the ISA simulator"
    if "golden_mismatch_bytes" in result:
        assert result["golden_mismatch_bytes"] == 0, \
            f"{name}: {result['golden_mismatch_bytes']} output bytes differ from golden requant(gemm)"


async def soft_reset_job(tb, job: dict, result: dict) -> None:
    """Soft-reset the NPU ``job["soft_reset_after"]`` cycles into a started job and record (and, for a checked
    job, assert) that it comes back idle with no interrupt pending. ``tb`` is either NPU testbench: it has
    ``wr``/``rd`` (AXI4-Lite), ``ctrl(*bits)``, ``map`` (register map), ``dut`` and ``wait_cycles(n)``."""
    reg = tb.map["reg"]
    await tb.wait_cycles(int(job["soft_reset_after"]))
    for addr, value in soft_reset_writes(tb.map):
        await tb.wr(addr, value)
    await tb.wait_cycles(200)
    status = await tb.rd(reg["STATUS"])
    result.update(status_word=status, irq=int(tb.dut.irq.value))
    if job.get("check"):
        assert status == 0, f"{job['name']}: STATUS 0x{status:x} after a soft reset, expected idle 0"
        assert int(tb.dut.irq.value) == 0, f"{job['name']}: irq pending after a soft reset"


async def finish_job(tb, job: dict, result: dict) -> None:
    """Wait for the job's interrupt (``tb.wait_irq``, None on timeout), record status, fault address, ring tail,
    IRQ status and every counter in ``result``, then acknowledge the interrupt."""
    cycles = await tb.wait_irq(int(job.get("timeout_cycles", 2_000_000)))
    result["timeout"] = cycles is None
    values = {}
    for key, addr in finish_reads(tb.map):
        values[key] = await tb.rd(addr)
    result.update(cycles=cycles, **finish_fields(tb.map, values))
    await tb.wr(tb.map["reg"]["IRQ_STATUS"], 3)


async def start_job(tb, job: dict) -> None:
    """Program the job's address windows (unused ones closed: base/size/perm 0) and command ring, clear the
    interrupt status and the counters, then START with the interrupt enabled."""
    for addr, value in setup_writes(tb.spec, job):
        await tb.wr(addr, value)


async def run_job(tb, job: dict, result: dict, log=None) -> None:
    """One job from image to checked result, the same on both harnesses.

    ``tb`` provides, besides what :func:`soft_reset_job` and :func:`finish_job` use, ``spec`` (the job file),
    ``async load(image)`` (uint8 DRAM image into the external memory) and ``async read_memory(nbytes) ->
    (uint8 array, dict of harness-specific result fields)``. ``result`` starts with the fields the harness adds
    (name, harness); it is written to ``job["result"]`` (JSON) and, for a checked job, asserted."""
    t0, c0 = time.perf_counter(), tb.now_cycles() if hasattr(tb, "now_cycles") else None
    image = np.load(job["image"])
    size = int(tb.spec["ram_size"])
    assert image.size <= size, f"image of {image.size} bytes does not fit the {size}-byte RAM"
    await tb.load(image)
    await start_job(tb, job)
    if job.get("soft_reset_after"):
        await soft_reset_job(tb, job, result)
    else:
        await finish_job(tb, job, result)
        memory, extra = await tb.read_memory(image.size)
        result.update(extra)
        compare_memory(job, memory, result)
    # Wall time of the job's simulation (the harnesses' speed figure) and, where the testbench counts them, its
    # clock cycles (register set-up, image load and dump included).
    result["sim_wall_s"] = time.perf_counter() - t0
    if c0 is not None:
        result["sim_cycles"] = tb.now_cycles() - c0
    with open(job["result"], "w") as f:
        json.dump(result, f)
    if log is not None:
        log(f"{job['name']}: {result}")
    if job.get("check") and not job.get("soft_reset_after"):
        check_result(job, result)
