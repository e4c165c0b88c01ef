"""The fast NPU system harness: NPU + HDL AXI4 DRAM model (sim/hdl/axi_dram.v), no per-cycle Python.

GEMMs in every mode with DRAM latency and random stalls, bit-exact against both golden tiers (the ISA
simulator's whole DRAM image, status, fault address and RING_TAIL; golden ``requantize(gemm)``); faults with
error status + interrupt (out-of-window DMA, illegal instruction, the DRAM model's DECERR on a read and on a
write); one GEMM through both harnesses (fast and cocotbext-axi) with the same final DRAM image and status.
Same small NPU as tests/npu/test_npu_cocotb.py (4x4 array, 64-bit AXI).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from npuforge.gen.isa.gemm_program import compile_gemm
from npuforge.gen.config.array import ArrayConfig
from npuforge.spec.isa import (DmaLoad, DmaStore, ErrorCode as IsaError, Fence, Halt, MatMul, Nop, VecRequant,
                               encode_program)
from npuforge.gen.isa.isasim import Window
from npuforge.gen.config.npu import NPUConfig
from npuforge.gen.perf.model import gemm_cycles
from npuforge.gen.perf.program import program_cycles
from npuforge.rtl.memories import read_words_for
from npuforge.sim.hdl import DRAM_MODEL, emit_npu_system, module_ports
from npuforge.sim.harness.npu_run import gemm_job, gemm_operands, program_job, run_jobs
from npuforge.sim.harness.runner import run_cocotb
from npuforge.sim.tb.npu_fast import read_hex_dump, write_hex_image
from tests.conftest import require_simulator
from tests.rtl.npu.checks import assert_fast_exact

CFG = NPUConfig(array=ArrayConfig(rows=4, cols=4), spad_bytes=16384, spad_banks=2, acc_bytes=4096,
                axi_data_bits=64, windows=2)


# -- no simulator ------------------------------------------------------------------------------------------------
def test_hex_image_layout_and_round_trip(tmp_path):
    image = np.arange(20, dtype=np.uint8)
    write_hex_image(str(tmp_path / "img.hex"), image, 8)
    # Word 0 holds bytes 0..7 little endian: byte 0 is the last hex pair; the tail word is zero-padded.
    assert (tmp_path / "img.hex").read_text().split() == ["0706050403020100", "0f0e0d0c0b0a0908",
                                                           "0000000013121110"]
    rng = np.random.default_rng(0)
    for word_bytes in (4, 8, 16, 32):
        data = rng.integers(0, 256, size=4 * word_bytes + 3, dtype=np.uint8)
        write_hex_image(str(tmp_path / "r.hex"), data, word_bytes)
        back = read_hex_dump(str(tmp_path / "r.hex"), word_bytes)
        assert np.array_equal(back[:data.size], data) and not back[data.size:].any()


def test_hex_dump_rejects_unknown_digits(tmp_path):
    (tmp_path / "x.hex").write_text("// comment\n@0\n00000000000000xx\n")
    with pytest.raises(AssertionError, match="X/Z"):
        read_hex_dump(str(tmp_path / "x.hex"), 8)


def test_system_top_wires_every_npu_port():
    sources, top = emit_npu_system(CFG, mem_bytes=1 << 20)
    npu_path, model, wrapper = sources
    text = wrapper.read_text()
    outer = {p.name for p in module_ports(npu_path.read_text(), npu_path.stem)}
    assert f"module {top} (" in text and model.name == "axi_dram.v"
    for name in outer:
        assert f".{name}({name})" in text, name
    assert ".DATA_BITS(64)" in text and ".MEM_BYTES(1048576)" in text


@pytest.mark.parametrize("kw, needle", [
    ({"harness": "cocotb"}, "harness"),
    ({"stall": 0.95}, "stall"),
    ({"latency": -1}, "latency"),
    ({"harness": "fast", "sim": "xsim"}, "sim"),
])
def test_run_jobs_bad_arguments(kw, needle):
    job = gemm_job(CFG, 2, 3, 2, "int8")[0]
    with pytest.raises(ValueError, match=needle):
        run_jobs(CFG, [job], **kw)


@pytest.mark.parametrize("mem_bytes", [1000, 2048, 1 << 31, 3 << 20])
def test_system_top_bad_memory_size(mem_bytes):
    with pytest.raises(ValueError, match="mem_bytes"):
        emit_npu_system(CFG, mem_bytes=mem_bytes)


# -- the DRAM model alone, against cocotbext-axi's AxiMaster and a Python byte array ------------------------------
@pytest.mark.cocotb
@pytest.mark.parametrize("data_bits, latency, stall, sim", [
    (32, 3, 0.3, "verilator"), (256, 0, 0.0, "verilator"), (64, 1, 0.2, "icarus")])
def test_dram_model_against_reference(data_bits, latency, stall, sim, tmp_path):
    require_simulator(sim)
    dram_bytes = 1 << 16
    spec = {"data_bits": data_bits, "dram_bytes": dram_bytes, "seed": data_bits + latency, "ops": 24}
    run_cocotb(verilog=[DRAM_MODEL], toplevel="axi_dram", test_module="npuforge.sim.tb.axi_dram", sim=sim,
               parameters={"DATA_BITS": data_bits, "MEM_BYTES": 2 * dram_bytes},
               env={"DRAM_TEST": json.dumps(spec)}, tag=str(tmp_path),
               plusargs=[f"+dram_image={tmp_path / 'image.hex'}", f"+dram_dump={tmp_path / 'dump.hex'}",
                         f"+dram_bytes={dram_bytes}", f"+dram_read_latency={latency}",
                         f"+dram_write_latency={latency}", f"+dram_stall_256={round(256 * stall)}",
                         "+dram_seed=9"])


# -- the NPU in the fast harness (Verilator) ---------------------------------------------------------------------
@pytest.mark.cocotb
def test_fast_gemms_every_mode_latency_and_stalls():
    require_simulator("verilator")
    jobs = [gemm_job(CFG, 1, 1, 1, "int8", seed=1)[0],
            gemm_job(CFG, 17, 33, 21, "int8", seed=2)[0],
            gemm_job(CFG, 13, 20, 11, "int8", seed=3, tiles=(8, 8, 4), order="nm", name="tiled_nm")[0],
            gemm_job(CFG, 7, 19, 9, "int8", seed=4, out_bits=16, name="int8_out16")[0],
            gemm_job(CFG, 9, 64, 40, "w4a8", seed=5)[0],
            gemm_job(CFG, 3, 9, 17, "w4a8", seed=6)[0],
            gemm_job(CFG, 17, 33, 21, "int4", seed=7)[0],
            gemm_job(CFG, 11, 24, 18, "int4", seed=8, tiles=(6, 8, 10), name="int4_tiled")[0]]
    results = run_jobs(CFG, jobs, harness="fast", latency=7, stall=0.3, seed=11)
    assert_fast_exact(jobs, results)
    # The same first GEMM without latency or stalls takes fewer cycles (the model's delays reach the NPU).
    quiet = run_jobs(CFG, jobs[1:2], harness="fast", latency=0, stall=0.0, seed=11)
    assert_fast_exact(jobs[1:2], quiet)
    assert quiet[0]["counters"]["BUSY_CYCLES"] < results[1]["counters"]["BUSY_CYCLES"]


def _decerr_jobs():
    """Programs that reach past the DRAM model's decoded size (image = ram size = 64 KiB) inside a window."""
    size = 1 << 16
    image = np.random.default_rng(3).integers(0, 256, size=size, dtype=np.uint8)
    window = [Window(0, 1 << 20, read=True, write=True)]
    load = encode_program([DmaLoad("spad", 0, size - 16, 32, 1, 32), Halt()])
    store = encode_program([DmaLoad("spad", 0, 4096, 32, 1, 32), Fence(load=0), DmaStore("spad", 0, size, 32, 1, 32),
                            Halt()])
    return [program_job(CFG, "read_decerr", load, image, window),
            program_job(CFG, "write_decerr", store, image, window)]


def _corrupt(program: bytes, index: int, bit: int) -> bytes:
    raw = bytearray(program)
    raw[16 * index + bit // 8] ^= 1 << (bit % 8)
    return bytes(raw)


@pytest.mark.cocotb
def test_fast_faults_give_error_status_and_irq():
    require_simulator("verilator")
    a, b, mult, shift = gemm_operands(9, 12, 10, "int8", seed=40)
    comp = compile_gemm(CFG, a, b, mult, shift, mode="int8")
    prog, ring = comp.program_bytes, comp.plan.program_bytes
    assert isinstance(comp.program[1], DmaLoad)
    jobs = [program_job(CFG, "reserved_bit", _corrupt(prog, 1, 9), comp.image, comp.windows, ring_size=ring),
            program_job(CFG, "store_outside_window", prog, comp.image,
                        [comp.windows[0], Window(comp.windows[1].base, comp.windows[1].size, read=True,
                                                 write=False)], ring_size=ring),
            *_decerr_jobs(),
            gemm_job(CFG, 9, 12, 10, "int8", seed=42, name="after_faults")[0]]
    expected = [IsaError.ILLEGAL_INSTRUCTION, IsaError.DMA_WINDOW, IsaError.BUS_ERROR, IsaError.BUS_ERROR,
                IsaError.NONE]
    assert [j.expect_status for j in jobs] == expected   # the ISA simulator agrees on what each program does
    assert jobs[2].expect_fault == 1 << 16 and jobs[3].expect_fault == 1 << 16
    # check=True: the testbench asserts status, fault address, RING_TAIL, IRQ_STATUS and the DRAM image.
    results = run_jobs(CFG, jobs, harness="fast", latency=3, stall=0.15, seed=5)
    for job, res in zip(jobs, results):
        assert not res["timeout"] and res["error"] == job.expect_status, (job.name, res)
        assert res["fault_addr"] == job.expect_fault and res["isasim_mismatch_bytes"] == 0, (job.name, res)
        assert res["irq_status"] == (3 if job.expect_status else 1), (job.name, res)
    assert results[-1]["mismatches"] == 0


@pytest.mark.cocotb
def test_same_gemm_through_both_harnesses():
    """Same DRAM image, status, tail and data counters; cycles differ (different DRAM timing models)."""
    require_simulator("verilator")
    job = gemm_job(CFG, 9, 20, 11, "int8", seed=60)[0]
    out = {}
    for harness in ("fast", "axi"):
        res = run_jobs(CFG, [job], harness=harness, latency=0, stall=0.0, seed=7, keep_memory=True)[0]
        out[harness] = (res, res["memory"])
    (fast, fast_mem), (axi, axi_mem) = out["fast"], out["axi"]
    assert np.array_equal(fast_mem, axi_mem) and np.array_equal(fast_mem, job.expect_mem)
    for key in ("error", "fault_addr", "tail", "irq_status", "status_word", "mismatches"):
        assert fast[key] == axi[key], key
    for name in ("MACS", "BYTES_READ", "BYTES_WRITTEN"):
        assert fast["counters"][name] == axi["counters"][name], name
    print(f"BUSY_CYCLES fast {fast['counters']['BUSY_CYCLES']} axi {axi['counters']['BUSY_CYCLES']}")


# -- wide scratchpad reads: 8x8 array on a 32-bit bus (8-byte operand beats, 4-byte words: I = 2) ---------------
WIDE_CFG = NPUConfig(array=ArrayConfig(rows=8, cols=8), spad_bytes=8192, spad_banks=2, acc_bytes=4096,
                     axi_data_bits=32, windows=1, vector_ops=())
#: C++ optimisation of WIDE_CFG's build (its two tests only): its runs take under a second, so -O0 everywhere
#: (134 -> 74 CPU s for both tests, build included) beats the fast harness's -O2 hot code; same cycles and bytes.
WIDE_OPT = "-O0"


def _matmul_program(m_run: int, m_store: int, k: int, n: int) -> bytes:
    """Load 64 A rows [64, k] and B [k, n], MATMUL of the first ``m_run`` rows, store ``m_store`` result rows."""
    return encode_program([
        DmaLoad("spad", 0, 0x1000, k, 64, k),                 # A: 64 rows of k bytes (4-byte row stride)
        DmaLoad("spad", 0x1000, 0x2000, n, k, n),             # B: k rows of n bytes
        Fence(load=0),
        MatMul("int8", "ws", 0, m_run, k, n, 0, 0x1000, 0),
        Fence(matrix=0),
        DmaStore("acc", 0, 0x4000, 4 * n, m_store, 4 * n),  # int32 rows; same bytes whatever m_run
        Halt()])


@pytest.mark.cocotb
def test_wide_operand_reads_bit_exact_and_one_beat_per_cycle():
    """Ragged GEMMs in every mode, bit-exact (tile rows start on the 4-byte word; each 8-byte operand beat is one
    2-word read, at even and odd word addresses), and two MATMULs that differ only in m: the busy-cycle
    difference is the array model's (gen.perf.model, one activation beat per cycle), not twice it (one word per cycle)."""
    require_simulator("verilator")
    assert read_words_for(WIDE_CFG.spad_word_bytes, (8, 8)) == 2
    built = [gemm_job(WIDE_CFG, 1, 1, 1, "int8", seed=70),
             gemm_job(WIDE_CFG, 19, 37, 23, "int8", seed=71),
             gemm_job(WIDE_CFG, 13, 21, 30, "int8", seed=72, tiles=(8, 12, 20), name="int8_tiled"),
             gemm_job(WIDE_CFG, 11, 29, 35, "w4a8", seed=73),
             gemm_job(WIDE_CFG, 15, 27, 19, "int4", seed=74),
             gemm_job(WIDE_CFG, 40, 64, 24, "int8", seed=75)]
    jobs = [job for job, _ in built]
    k, n, m1, m2 = 16, 16, 24, 56                          # 2 k-folds x 2 n-folds, m >= rows
    image = np.random.default_rng(76).integers(-128, 128, size=1 << 15).astype(np.int8).view(np.uint8)
    image[0x1000:0x1000 + 8] = [0x80, 0x7F] * 4           # extreme operands in the first A row
    win = [Window(0, 1 << 15, read=True, write=True)]
    timed = [program_job(WIDE_CFG, f"matmul_m{m}", _matmul_program(m, m1, k, n), image, win) for m in (m1, m2)]
    results = run_jobs(WIDE_CFG, jobs + timed, harness="fast", latency=0, stall=0.0, seed=12, tag="wide_spad",
                       opt=WIDE_OPT)
    assert_fast_exact(jobs, results[:len(jobs)])
    for m, job, res in zip((m1, m2), timed, results[len(jobs):]):
        assert res["error"] == 0 and res["isasim_mismatch_bytes"] == 0 and not res["timeout"], (job.name, res)
    # gen.perf.program (MATMUL at one read per beat with I = 2) within its 3 % target on every program.
    programs = [comp.program for _, comp in built] + [_matmul_program(m, m1, k, n) for m in (m1, m2)]
    for job, program, res in zip(jobs + timed, programs, results):
        rtl = res["counters"]["BUSY_CYCLES"]
        model = program_cycles(program, WIDE_CFG, latency=0, harness="fast").cycles
        assert abs(model - rtl) <= 0.03 * rtl, (job.name, model, rtl)
    delta = results[-1]["counters"]["BUSY_CYCLES"] - results[-2]["counters"]["BUSY_CYCLES"]
    arr = WIDE_CFG.array
    model = gemm_cycles(arr, m2, k, n).cycles - gemm_cycles(arr, m1, k, n).cycles
    folds = -(-k // arr.rows) * -(-n // arr.cols)
    assert model == folds * (m2 - m1) == 128
    assert delta == model, (delta, model)


# -- Icarus ------------------------------------------------------------------------------------------------------
ICARUS_CFG = NPUConfig(array=ArrayConfig(rows=2, cols=2, precisions=("int8",)), spad_bytes=4096, spad_banks=1,
                       acc_bytes=1024, axi_data_bits=32, windows=2)


@pytest.mark.cocotb
@pytest.mark.icarus
def test_fast_harness_on_icarus():
    require_simulator("icarus")
    jobs = [gemm_job(ICARUS_CFG, 3, 5, 3, "int8", seed=50)[0]]
    results = run_jobs(ICARUS_CFG, jobs, sim="icarus", harness="fast", latency=2, stall=0.2, seed=6)
    assert_fast_exact(jobs, results)


def _requant_program(m: int, n: int, *, load=None, store=None, gap: int = 0, requant_first: bool = True) -> bytes:
    """Records -> scratchpad, then VEC_REQUANT [m, n] beside a DMA_LOAD (``(rows, row_bytes, stride)``, issued
    ``gap`` NOPs after it, or before it) or after a DMA_STORE of ``(rows, row_bytes)`` scratchpad bytes."""
    p = [DmaLoad("spad", 0x1000, 0x2000, 8 * n, 1, 8 * n), DmaLoad("spad", 0x0, 0x3000, 64, 64, 64), Fence(load=0)]
    if store:
        p.append(DmaStore("spad", 0x0, 0x6000, store[1], store[0], store[1]))
    rq = [VecRequant(m, n, 0, 0x1800, 0x1000 // 256)]
    ld = [DmaLoad("spad", 0x0, 0x3000, load[2], load[0], load[1])] if load else []
    p += rq + [Nop()] * gap + ld if requant_first else ld + rq
    return encode_program(p + [Fence(load=0, store=0, vector=0), Halt()])


@pytest.mark.cocotb
def test_requant_beside_loads_and_stores_cycles():
    """VEC_REQUANT's result beats yield the scratchpad write port to DMA loads (one write per R beat) and its record
    reads the read port to DMA stores (one read per W beat, up to 4 ahead): gen.perf.program prices both exactly,
    on the 4-byte-word NPU where a load writes every cycle (alone; beside aligned, unaligned, short and long loads,
    issued right after, a few cycles after or before it; after stores of long rows, one word, 64 one-beat rows)."""
    require_simulator("verilator")
    image = np.zeros(1 << 15, dtype=np.uint8)
    image[0x2000:0x2000 + 8 * 64] = np.full(64, 1 << 30, dtype="<u8").view(np.uint8)   # M = 2^30, shift 0
    image[0x3000:0x5000] = np.random.default_rng(77).integers(0, 256, 0x2000)
    cases = {"alone": _requant_program(19, 8),
             "load_16x64": _requant_program(19, 8, load=(16, 64, 64)),
             "load_37x7_unaligned": _requant_program(19, 8, load=(37, 7, 23)),
             "load_4x64": _requant_program(19, 8, load=(4, 64, 64)),
             "load_64x64_m8": _requant_program(8, 8, load=(64, 64, 64)),
             "gap12_load_16x64": _requant_program(19, 8, load=(16, 64, 64), gap=12),
             "load_then_requant": _requant_program(19, 8, load=(16, 64, 64), requant_first=False),
             "store_19x8": _requant_program(19, 8, store=(19, 8)),
             "store_16x64": _requant_program(19, 8, store=(16, 64)),
             "store_1x4": _requant_program(19, 8, store=(1, 4)),
             "store_64x4_m4": _requant_program(4, 8, store=(64, 4))}
    win = [Window(0, 1 << 15, read=True, write=True)]
    jobs = [program_job(WIDE_CFG, name, prog, image, win) for name, prog in cases.items()]
    results = run_jobs(WIDE_CFG, jobs, harness="fast", latency=0, stall=0.0, seed=13, tag="wide_spad", check=False,
                       opt=WIDE_OPT)
    for (name, prog), res in zip(cases.items(), results):
        assert res["error"] == 0 and res["isasim_mismatch_bytes"] == 0 and not res["timeout"], (name, res)
        model = program_cycles(prog, WIDE_CFG, latency=0, harness="fast").cycles
        assert model == res["counters"]["BUSY_CYCLES"], (name, model, res["counters"]["BUSY_CYCLES"])
