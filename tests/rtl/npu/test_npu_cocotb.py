"""The whole NPU on its emitted Verilog: compiled programs from DRAM (cocotbext-axi AXI RAM with latency and
random stalls), checked against both golden tiers (the ISA simulator's final DRAM image, status, fault address
and pc, and golden ``requantize(gemm)``); faults (illegal instruction, out-of-window DMA, bad requant record,
local range, missing HALT) with error status + interrupt, soft reset mid-run, then a correct program.

One small NPU configuration (4x4 array, 64-bit AXI) shares one Verilator build across these tests.
"""

from __future__ import annotations

import numpy as np
import pytest

from npuforge.gen.isa.gemm_program import compile_gemm
from npuforge.gen.config.array import ArrayConfig, ConfigError
from npuforge.spec.isa import ErrorCode as IsaError, FORMATS, DmaLoad, Halt, MatMul, Opcode, decode, encode_program
from npuforge.gen.isa.isasim import Window
from npuforge.gen.build.npu import build_npu, used_masks
from npuforge.gen.config.npu import NPUConfig
from npuforge.rtl.controller import OPCODES
from npuforge.sim.harness.npu_run import gemm_job, gemm_operands, program_job, run_jobs
from tests.conftest import require_simulator

CFG = NPUConfig(array=ArrayConfig(rows=4, cols=4), spad_bytes=16384, spad_banks=2, acc_bytes=4096,
                axi_data_bits=64, windows=2)


# -- fast checks (no simulator) ---------------------------------------------------------------------------------
@pytest.mark.parametrize("precisions, kv16", [(None, False), (("int8", "w4a8", "int4", "w8a16", "w4a16"), False),
                                               (("int8", "w8a16", "w4a16"), True)])
def test_decoder_masks_cover_exactly_the_fields(precisions, kv16):
    cfg = None if precisions is None else NPUConfig(array=ArrayConfig(precisions=precisions), vector_ops=(),
                                                    block_scaled=kv16, kv16=kv16)
    masks = used_masks(cfg)
    assert set(masks) == set(OPCODES.values())
    b16 = next(f.mask for f in FORMATS[Opcode.MATMUL] if f.name == "b16")
    for op, mask in masks.items():
        # Setting any bit outside the mask must be rejected by the ISA decoder too (same reserved bits).
        for bit in (b for b in range(8, 128) if not mask >> b & 1):
            word = op | 1 << bit
            with pytest.raises(ValueError):
                decode(word.to_bytes(16, "little"))
        expected = 0xFF | sum(f.mask for f in FORMATS[Opcode(op)])
        if op == Opcode.MATMUL and precisions is None:
            # The default NPU builds no 16-bit-activation mode: MATMUL.mode's high bit (w0[12], docs/isa.md) stays
            # reserved, so w8a16/w4a16 and the reserved codes 4..6 trap as ILLEGAL_INSTRUCTION.
            expected &= ~(1 << 12)
        if op == Opcode.MATMUL and not kv16:
            # MATMUL.b16 (w0[16:15]) is decoded only by NPUs built with kv16; elsewhere its bits stay reserved.
            expected &= ~b16
        assert mask == expected
    assert (masks[Opcode.MATMUL] >> 12 & 1) == (precisions is not None)
    assert bool(masks[Opcode.MATMUL] & b16) == kv16


def test_npu_config_rejects_output_stationary_only_array():
    # Refused where the value enters (NPUConfig), before any component exists.
    with pytest.raises(ConfigError, match=r"array.dataflow must be one of ws, both .* got 'os'"):
        NPUConfig(array=ArrayConfig(dataflow="os"))


# -- RTL runs ---------------------------------------------------------------------------------------------------
@pytest.mark.cocotb
def test_int8_gemms_bit_exact():
    require_simulator("verilator")
    shapes = [(1, 1, 1), (5, 7, 6), (17, 33, 21), (9, 64, 40)]
    jobs = [gemm_job(CFG, m, k, n, "int8", seed=i)[0] for i, (m, k, n) in enumerate(shapes)]
    # Forced small tiles: several M/K/N tiles, accumulation over K in the accumulator, both loop orders.
    jobs.append(gemm_job(CFG, 13, 20, 11, "int8", seed=7, tiles=(8, 8, 4), order="nm", name="tiled_nm")[0])
    jobs.append(gemm_job(CFG, 13, 20, 11, "int8", seed=8, tiles=(4, 12, 8), order="mn", name="tiled_mn")[0])
    results = run_jobs(CFG, jobs, latency=6, stall=0.2, seed=3)
    for job, res in zip(jobs, results):
        assert res["error"] == 0 and res["mismatches"] == 0 and res["isasim_mismatch_bytes"] == 0, (job.name, res)
        assert res["counters"]["MACS"] == job.macs, (job.name, res["counters"])


@pytest.mark.cocotb
def test_w4a8_int4_and_int16_output_bit_exact():
    require_simulator("verilator")
    jobs = []
    for i, (m, k, n) in enumerate([(5, 7, 6), (3, 9, 17), (17, 33, 21)]):
        jobs.append(gemm_job(CFG, m, k, n, "w4a8", seed=10 + i)[0])
        jobs.append(gemm_job(CFG, m, k, n, "int4", seed=20 + i)[0])
    jobs.append(gemm_job(CFG, 11, 24, 18, "int4", seed=30, tiles=(6, 8, 10), name="int4_tiled")[0])
    jobs.append(gemm_job(CFG, 7, 19, 9, "int8", seed=31, out_bits=16, name="int8_out16")[0])
    results = run_jobs(CFG, jobs, latency=2, stall=0.1, seed=4)
    for job, res in zip(jobs, results):
        assert res["error"] == 0 and res["mismatches"] == 0 and res["isasim_mismatch_bytes"] == 0, (job.name, res)
        assert res["counters"]["MACS"] == job.macs, (job.name, res["counters"])


def _corrupt(program: bytes, index: int, word: int, bit: int) -> bytes:
    raw = bytearray(program)
    raw[16 * index + 4 * word + bit // 8] ^= 1 << (bit % 8)
    return bytes(raw)


@pytest.mark.cocotb
def test_faults_irq_soft_reset_then_correct_program():
    require_simulator("verilator")
    a, b, mult, shift = gemm_operands(9, 12, 10, "int8", seed=40)
    comp = compile_gemm(CFG, a, b, mult, shift, mode="int8")
    prog = comp.program_bytes
    ring = comp.plan.program_bytes
    jobs = []
    # Reserved bit set in instruction 2 (w0 bit 9 of a DMA_LOAD is reserved): ILLEGAL_INSTRUCTION at pc 2.
    assert isinstance(comp.program[2], (DmaLoad, MatMul))
    jobs.append(program_job(CFG, "reserved_bit", _corrupt(prog, 2, 0, 9 if isinstance(comp.program[2], DmaLoad)
                                                           else 12), comp.image, comp.windows, ring_size=ring))
    # MATMUL mode 3 (reserved encoding).
    mm = next(i for i, ins in enumerate(comp.program) if isinstance(ins, MatMul))
    bad_mode = bytearray(prog)
    bad_mode[16 * mm + 1] |= 0b11
    jobs.append(program_job(CFG, "matmul_mode3", bytes(bad_mode), comp.image, comp.windows, ring_size=ring))
    # MATMUL mode 4 (reserved): the split mode field's high bit w0[12] set over the int8 code in w0[9:8].
    reserved_mode = bytearray(prog)
    reserved_mode[16 * mm + 1] = (reserved_mode[16 * mm + 1] & ~0b11) | 1 << 4
    jobs.append(program_job(CFG, "matmul_mode4", bytes(reserved_mode), comp.image, comp.windows, ring_size=ring))
    # Opcode 0x00 (zeroed memory) and an undefined opcode.
    jobs.append(program_job(CFG, "zero_word", prog[:16] + bytes(16) + prog[32:], comp.image, comp.windows,
                            ring_size=ring))
    jobs.append(program_job(CFG, "vec_softmax_reserved", prog[:16] + bytes([0x31]) + bytes(15) + prog[32:],
                            comp.image, comp.windows, ring_size=ring))
    # C window read-only: the first DMA_STORE is refused (DMA_WINDOW, fault = store address) before any write.
    jobs.append(program_job(CFG, "store_outside_window", prog, comp.image,
                            [comp.windows[0], Window(comp.windows[1].base, comp.windows[1].size, read=True,
                                                     write=False)], ring_size=ring))
    # A read window ending one byte before the last requant record does: that load's last byte faults.
    w0 = comp.windows[0]
    short = comp.plan.p_base + 8 * comp.plan.n - 1 - w0.base
    jobs.append(program_job(CFG, "load_past_window_end", prog, comp.image,
                            [Window(w0.base, short, read=True, write=False), comp.windows[1]], ring_size=ring))
    # A bad requant record (multiplier bit 30 clear): BAD_PARAM with the record's scratchpad address.
    image = comp.image.copy()
    image[comp.plan.p_base + 8 * 3 + 3] &= 0xBF
    jobs.append(program_job(CFG, "bad_requant_record", prog, image, comp.windows, ring_size=ring))
    # Local range: a load running past the scratchpad; a misaligned local address.
    local = encode_program([DmaLoad("spad", CFG.spad_bytes - 64, comp.plan.a_base, 16, 9, 16), Halt()])
    jobs.append(program_job(CFG, "local_range", local, comp.image, comp.windows))
    misaligned = encode_program([DmaLoad("acc", 4, comp.plan.a_base, 16, 1, 16), Halt()])
    jobs.append(program_job(CFG, "local_misaligned", misaligned, comp.image, comp.windows))
    # The command stream ends without HALT.
    jobs.append(program_job(CFG, "no_halt", prog[:-16], comp.image, comp.windows, ring_size=ring))
    # A run interrupted by a soft reset, then a correct program on the same NPU.
    long_job = gemm_job(CFG, 24, 40, 24, "int8", seed=41)[0]
    long_job.soft_reset_after = 900
    long_job.name = "soft_reset_mid_run"
    jobs.append(long_job)
    jobs.append(gemm_job(CFG, 9, 12, 10, "int8", seed=42, name="after_soft_reset")[0])
    expected = {"reserved_bit": IsaError.ILLEGAL_INSTRUCTION, "matmul_mode3": IsaError.ILLEGAL_INSTRUCTION,
                "matmul_mode4": IsaError.ILLEGAL_INSTRUCTION,
                "zero_word": IsaError.ILLEGAL_INSTRUCTION, "vec_softmax_reserved": IsaError.ILLEGAL_INSTRUCTION,
                "store_outside_window": IsaError.DMA_WINDOW, "load_past_window_end": IsaError.DMA_WINDOW,
                "bad_requant_record": IsaError.BAD_PARAM, "local_range": IsaError.LOCAL_RANGE,
                "local_misaligned": IsaError.LOCAL_RANGE, "no_halt": IsaError.PROGRAM_OVERRUN}
    for job in jobs:
        if job.name in expected:   # the ISA simulator agrees that the program faults as intended
            assert job.expect_status == expected[job.name], (job.name, job.expect_status)
    results = run_jobs(CFG, jobs, latency=3, stall=0.15, seed=5)
    for job, res in zip(jobs, results):
        if job.soft_reset_after:
            assert res["status_word"] == 0 and res["irq"] == 0, res
        else:
            assert res["error"] == job.expect_status and res["fault_addr"] == job.expect_fault, (job.name, res)
            assert res["tail"] == job.expect_tail and res["isasim_mismatch_bytes"] == 0, (job.name, res)
            assert res["irq_status"] == (3 if job.expect_status else 1), (job.name, res)
    assert results[-1]["mismatches"] == 0 and results[-1]["golden_mismatch_bytes"] == 0


# -- Icarus subset and the CLI ------------------------------------------------------------------------------------
# Icarus (4-state, event-driven) is much slower than Verilator: a 2x2 int8-only NPU with 32-bit AXI and small
# memories, one GEMM and one illegal instruction.
ICARUS_CFG = NPUConfig(array=ArrayConfig(rows=2, cols=2, precisions=("int8",)), spad_bytes=4096, spad_banks=1,
                       acc_bytes=1024, axi_data_bits=32, windows=2)


@pytest.mark.cocotb
@pytest.mark.icarus
def test_icarus_subset():
    require_simulator("icarus")
    cfg = ICARUS_CFG
    jobs = [gemm_job(cfg, 3, 5, 3, "int8", seed=50)[0]]
    a, b, mult, shift = gemm_operands(2, 2, 2, "int8", seed=52)
    comp = compile_gemm(cfg, a, b, mult, shift, mode="int8")
    assert isinstance(comp.program[1], DmaLoad)
    jobs.append(program_job(cfg, "reserved_bit_icarus", _corrupt(comp.program_bytes, 1, 0, 9), comp.image,
                            comp.windows, ring_size=comp.plan.program_bytes))
    assert jobs[-1].expect_status == IsaError.ILLEGAL_INSTRUCTION
    results = run_jobs(cfg, jobs, sim="icarus", latency=0, stall=0.2, seed=6)
    for job, res in zip(jobs, results):
        assert res["error"] == job.expect_status and res["isasim_mismatch_bytes"] == 0, (job.name, res)
    assert results[0]["mismatches"] == 0 and results[0]["golden_mismatch_bytes"] == 0


CLI_CFG = ["--rows", "4", "--cols", "4", "--spad-kib", "16", "--spad-banks", "2", "--acc-kib", "4",
           "--windows", "2", "--axi-bits", "64"]


@pytest.mark.parametrize("argv, needle", [
    (["run", "gemm", "--mode", "int3"], "mode"),
    (["run", "gemm", "--m", "0"], "--m"),
    (["run", "conv"], "workload"),
    (["run", "gemm", "--axi-bits", "48"], "axi_data_bits"),
    (["run", "gemm", "--sim", "xsim"], "--sim"),
    (["run", "gemm", "--k", "300000"], "K"),
])
def test_cli_run_bad_input(argv, needle, capsys):
    from npuforge.cli.main import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.cocotb
def test_cli_run_json_contract(capsys):
    require_simulator("verilator")
    import json

    from npuforge.cli.main import main

    assert main(["run", "gemm", "--m", "6", "--k", "10", "--n", "7", "--mode", "w4a8", "--json", *CLI_CFG]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"cycles", "macs", "utilization", "bytes_moved", "bit_exact", "mismatches", "harness",
                        "sim_wall_s", "sim_cycles_per_s"}
    assert out["harness"] == "native"
    assert out["bit_exact"] is True and out["mismatches"] == 0 and out["macs"] == 6 * 10 * 7
    assert 0 < out["utilization"] <= 1 and out["cycles"] > 0 and out["bytes_moved"] > 0
