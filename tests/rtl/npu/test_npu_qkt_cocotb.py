"""The matmul-side completions of issue 13 on the NPU RTL (fast harness, Verilator): the Linear bias before the
requant (VEC_REQUANT.bias) and the transposed B operand of Q.K^T (MATMUL.b_trans), every byte of DRAM equal to the
ISA simulator's and the output equal to golden; illegal fields give an error status and an interrupt.

Same small NPU (and Verilator build) as test_npu_fast_cocotb.py: 4x4 array, 64-bit AXI.
"""

from __future__ import annotations

import numpy as np
import pytest

from npuforge.gen.config.array import ArrayConfig
from npuforge.gen.config.npu import NPUConfig
from npuforge.gen.isa.gemm_program import compile_gemm
from npuforge.gen.isa.isasim import Window
from npuforge.gen.perf.program import program_cycles
from npuforge.gen.isa.layout import pack_requant_params
from npuforge.golden.layers import linear_int, quantize_linear
from npuforge.sim.harness.npu_run import compiled_job, gemm_job, gemm_operands, program_job, run_jobs
from npuforge.golden.requant import quantize_multipliers, requantize
from npuforge.spec.isa import (VEC_EXECUTABLE, DmaLoad, DmaStore, ErrorCode, Fence, Halt, MatMul, VecRequant, encode,
                               encode_program)
from tests.conftest import require_simulator
from tests.rtl.npu.checks import assert_fast_exact
from tests.rtl.npu.test_npu_fast_cocotb import CFG

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def _bias_jobs():
    """Random GEMMs with int32-extreme biases (acc + bias leaves int32), a real golden Linear, int16 and int32
    outputs."""
    jobs = []
    for seed, (m, k, n), extra in ((80, (9, 20, 11), {}), (81, (17, 33, 21), {"out_bits": 16, "zero_point": -9}),
                                   (82, (6, 40, 13), {"tiles": (4, 16, 8)}),
                                   (85, (5, 24, 7), {"out_bits": 32, "zero_point": 1234})):
        a, b, mult, shift = gemm_operands(m, k, n, "int8", seed=seed)
        rng = np.random.default_rng(seed)
        bias = rng.integers(INT32_MIN, INT32_MAX + 1, size=n, dtype=np.int64)
        bias[:3] = [INT32_MIN, INT32_MAX, 0]
        comp = compile_gemm(CFG, a, b, mult, shift, bias=bias, **extra)
        jobs.append(compiled_job(CFG, comp, name=f"bias_{m}x{k}x{n}"))
    rng = np.random.default_rng(83)
    layer = quantize_linear(rng.normal(0, 0.2, (19, 24)), rng.normal(0, 2.0, 19), 0.05, 0.1)
    x = rng.integers(-128, 128, (7, 24)).astype(np.int8)
    comp = compile_gemm(CFG, x, layer.weight.q.T, layer.multiplier, layer.shift, bias=layer.bias)
    assert np.array_equal(comp.expected, linear_int(x, layer))     # the compiler's golden is the golden layer's
    jobs.append(compiled_job(CFG, comp, name="golden_linear_bias"))
    return jobs


def _bias_fault_jobs():
    """A misaligned bias vector (LOCAL_RANGE at bias_addr), a stray bias_addr without the flag and out16 with
    out32 (both ILLEGAL_INSTRUCTION)."""
    image = np.zeros(1 << 14, np.uint8)
    rec = pack_requant_params([1 << 30] * 4, [0] * 4)
    image[0x2000:0x2000 + rec.size] = rec
    win = [Window(0, 1 << 14, read=True, write=True)]
    load = [DmaLoad("spad", 0x100, 0x2000, 32, 1, 32), Fence(load=0)]
    misaligned = encode_program(load + [VecRequant(m=1, n=4, src_addr=0, dst_addr=0, param_page=1, bias=1,
                                                   bias_addr=0x204), Halt()])
    word = bytearray(encode(VecRequant(m=1, n=4, src_addr=0, dst_addr=0, param_page=1, bias=1, bias_addr=0x200)))
    word[1] &= ~0x02
    stray = encode_program(load) + bytes(word) + encode(Halt())
    word = bytearray(encode(VecRequant(m=1, n=4, src_addr=0, dst_addr=0, param_page=1, out32=1)))
    word[1] |= 0x01       # out16 too
    both = encode_program(load) + bytes(word) + encode(Halt())
    return [program_job(CFG, "bias_misaligned", misaligned, image, win),
            program_job(CFG, "bias_addr_without_bias", stray, image, win),
            program_job(CFG, "out16_and_out32", both, image, win)]


@pytest.mark.cocotb
def test_fast_requant_bias_bit_exact_and_faults():
    require_simulator("verilator")
    jobs = _bias_jobs()
    faults = _bias_fault_jobs()
    assert [j.expect_status for j in faults] == [ErrorCode.LOCAL_RANGE, ErrorCode.ILLEGAL_INSTRUCTION,
                                                 ErrorCode.ILLEGAL_INSTRUCTION]
    assert faults[0].expect_fault == 0x204
    after = gemm_job(CFG, 5, 9, 6, "int8", seed=84, name="after_faults")[0]
    results = run_jobs(CFG, jobs + faults + [after], harness="fast", latency=3, stall=0.2, seed=13)
    assert_fast_exact(jobs, results[:len(jobs)])
    for job, res in zip(faults, results[len(jobs):-1]):
        assert not res["timeout"] and res["error"] == job.expect_status, (job.name, res)
        assert res["fault_addr"] == job.expect_fault and res["isasim_mismatch_bytes"] == 0, (job.name, res)
        assert res["irq_status"] == 3, (job.name, res)
    assert_fast_exact([after], results[-1:])


# -- MATMUL.b_trans: Q.K^T with K stored [T, d] -------------------------------------------------------------------
def _qk_operands(rng, t_q, d, t_kv):
    """int8 Q [t_q, d] and K [t_kv, d] with the extremes present (a row of -128 against a row of -128: the largest
    score d * 2^14, and -128 against 127: the most negative)."""
    q = rng.integers(-128, 128, (t_q, d)).astype(np.int8)
    k = rng.integers(-128, 128, (t_kv, d)).astype(np.int8)
    q[0], k[0], k[-1] = -128, -128, 127
    return q, k


def _scores_program(t_q, d, t_kv, b_trans):
    """Q at spad 0, K (or K^T when not b_trans) at spad 0x1000, one MATMUL, the int32 scores stored to DRAM 0x3000."""
    b_rows, b_bytes = (t_kv, d) if b_trans else (d, t_kv)
    return encode_program([
        DmaLoad("spad", 0, 0x1000, d, t_q, d),
        DmaLoad("spad", 0x1000, 0x2000, b_bytes, b_rows, b_bytes),
        Fence(load=0),
        MatMul("int8", "ws", 0, t_q, d, t_kv, 0, 0x1000, 0, b_trans=int(b_trans)),
        Fence(matrix=0),
        DmaStore("acc", 0, 0x3000, 4 * t_kv, t_q, 4 * t_kv),
        Halt()])


def _qk_jobs():
    """Compiled Q.K^T (requantized scores) on ragged shapes and forced tiles, and raw MATMULs whose int32 scores
    go to DRAM: each checked against golden q @ k.T here (the harness checks RTL == ISA simulator, every byte)."""
    rng = np.random.default_rng(90)
    jobs = []
    for (t_q, d, t_kv), extra in (((1, 8, 1), {}), ((7, 13, 9), {}), ((5, 32, 37), {"out_bits": 16}),
                                  ((6, 40, 13), {"out_bits": 32}),
                                  ((9, 20, 23), {"tiles": (4, 8, 8)}), ((1, 64, 29), {})):
        q, k = _qk_operands(rng, t_q, d, t_kv)
        gain = 2.0 ** 20 if extra.get("out_bits") == 32 else 40.0      # int32: scores far beyond int16
        mult, shift = quantize_multipliers(np.full(t_kv, gain / (np.sqrt(d) * 128 * 128)))
        comp = compile_gemm(CFG, q, k, mult, shift, b_trans=True, **extra)
        want = requantize(q.astype(np.int64) @ k.T.astype(np.int64), mult, shift, out_bits=extra.get("out_bits", 8))
        assert np.array_equal(comp.expected, want)
        jobs.append(compiled_job(CFG, comp, name=f"qkt_{t_q}x{d}x{t_kv}"))
    raw = []
    for t_q, d, t_kv in ((3, 16, 11), (6, 24, 16), (1, 64, 32)):
        q, k = _qk_operands(rng, t_q, d, t_kv)
        for b_trans in (True, False):
            image = np.zeros(1 << 14, np.uint8)
            image[0x1000:0x1000 + q.size] = q.view(np.uint8).ravel()
            b = k if b_trans else np.ascontiguousarray(k.T)
            image[0x2000:0x2000 + b.size] = b.view(np.uint8).ravel()
            job = program_job(CFG, f"scores_{t_q}x{d}x{t_kv}_{'bt' if b_trans else 'b'}",
                              _scores_program(t_q, d, t_kv, b_trans), image, [Window(0, 1 << 14)])
            scores = job.expect_mem[0x3000:0x3000 + 4 * t_q * t_kv].view("<i4").reshape(t_q, t_kv)
            assert np.array_equal(scores, q.astype(np.int64) @ k.T.astype(np.int64)), job.name  # isasim == golden
            raw.append(job)
    return jobs, raw


def _qk_fault_jobs():
    """b_trans with an int4 B (ILLEGAL_INSTRUCTION), a B^T [n, k] of n = 65 rows running one word past the
    scratchpad (LOCAL_RANGE at b_addr) and n = 64 rows ending exactly at its end (runs)."""
    image = np.zeros(1 << 14, np.uint8)
    win = [Window(0, 1 << 14)]
    ok = MatMul("int8", "ws", 0, 2, 8, 4, 0, 0x100, 0, b_trans=1)
    word = bytearray(encode(ok))
    word[1] |= 0x01          # mode int8 -> w4a8 (w0[8])
    illegal = bytes(word) + encode(Halt())
    end = CFG.spad_bytes - 8 * 64       # 64 rows of one word fit, 65 do not
    past = encode_program([MatMul("int8", "ws", 0, 1, 8, 65, 0, end, 0, b_trans=1), Halt()])
    fits = encode_program([MatMul("int8", "ws", 0, 1, 8, 64, 0, end, 0, b_trans=1), Halt()])
    return [program_job(CFG, "b_trans_int4_b", illegal, image, win),
            program_job(CFG, "b_trans_past_spad", past, image, win),
            program_job(CFG, "b_trans_exact_fit", fits, image, win)]


@pytest.mark.cocotb
def test_fast_qkt_b_transposed_bit_exact_timing_and_faults():
    require_simulator("verilator")
    jobs, raw = _qk_jobs()
    faults = _qk_fault_jobs()
    assert [j.expect_status for j in faults] == [ErrorCode.ILLEGAL_INSTRUCTION, ErrorCode.LOCAL_RANGE,
                                                  ErrorCode.NONE]
    assert faults[1].expect_fault == CFG.spad_bytes - 8 * 64
    results = run_jobs(CFG, jobs + raw + faults, harness="fast", latency=3, stall=0.2, seed=17)
    assert_fast_exact(jobs, results[:len(jobs)])
    for job, res in zip(raw + faults, results[len(jobs):]):
        assert not res["timeout"] and res["error"] == job.expect_status, (job.name, res)
        assert res["fault_addr"] == job.expect_fault and res["isasim_mismatch_bytes"] == 0, (job.name, res)
        assert res["irq_status"] == (3 if job.expect_status else 1), (job.name, res)
    # Array rate: without DRAM latency or stalls, B^T costs the transposer's fill of the first chunk (a few
    # cycles per MATMUL) over the same MATMUL on a pre-transposed B.
    quiet = run_jobs(CFG, raw, harness="fast", latency=0, stall=0.0, seed=17)
    for i in range(0, len(raw), 2):
        bt, b = quiet[i]["counters"]["BUSY_CYCLES"], quiet[i + 1]["counters"]["BUSY_CYCLES"]
        print(f"{raw[i].name}: b_trans {bt} cycles, pre-transposed B {b} cycles")
        assert quiet[i]["error"] == 0 and quiet[i + 1]["error"] == 0
        assert bt <= b + 2 * CFG.array.cols + 4, (raw[i].name, bt, b)
    # gen.perf.program (MATMUL_BT_OVERHEAD) within its 3 % target on both layouts.
    for job, res in zip(raw, quiet):
        t_q, d, t_kv = (int(v) for v in job.name.split("_")[1].split("x"))
        program = _scores_program(t_q, d, t_kv, job.name.endswith("_bt"))
        model = program_cycles(program, CFG, latency=0, harness="fast").cycles
        rtl = res["counters"]["BUSY_CYCLES"]
        assert abs(model - rtl) <= 0.03 * rtl, (job.name, model, rtl)


# -- w8a16: int16 Q against the int8 K cache (the one extra build configuration of this file; with every vector
# operator and the block-scaled MATMUL it also runs whole attention heads in tests/rtl/npu/test_layer_cocotb.py, BERT
# layers in tests/rtl/npu/test_bert_cocotb.py, Llama prefill / decode in tests/rtl/npu/test_llama_cocotb.py and block
# GEMMs in tests/rtl/npu/test_npu_blocks_cocotb.py) ------------------------------------------------------------------
CFG16 = NPUConfig(array=ArrayConfig(rows=4, cols=4, precisions=("int8", "w8a16", "w4a16")), spad_bytes=16384,
                  spad_banks=2, acc_bytes=4096, axi_data_bits=64, windows=2, vector_ops=VEC_EXECUTABLE,
                  block_scaled=True, kv16=True)


@pytest.mark.cocotb
def test_fast_qkt_w8a16_bit_exact():
    """int16 Q x int8 K^T (w8a16) with K stored [t_kv, d]: RTL == ISA simulator == golden requant(q @ k.T), with the
    extremes (-32768 x -128 over the reduction) and ragged, tiled shapes; an int8 Q.K^T on the same build."""
    require_simulator("verilator")
    rng = np.random.default_rng(95)
    jobs = []
    for (t_q, d, t_kv), extra in (((3, 16, 11), {}), ((6, 40, 23), {"tiles": (4, 16, 8), "out_bits": 16}),
                                  ((1, 64, 9), {})):
        q = rng.integers(-32768, 32768, (t_q, d))
        k = rng.integers(-128, 128, (t_kv, d)).astype(np.int8)
        q[0], k[0], k[-1] = -32768, -128, 127
        mult, shift = quantize_multipliers(np.full(t_kv, 40.0 / (np.sqrt(d) * 32768 * 128)))
        comp = compile_gemm(CFG16, q, k, mult, shift, mode="w8a16", b_trans=True, **extra)
        want = requantize(q.astype(np.int64) @ k.T.astype(np.int64), mult, shift, out_bits=extra.get("out_bits", 8))
        assert np.array_equal(comp.expected, want)
        jobs.append(compiled_job(CFG16, comp, name=f"qkt_w8a16_{t_q}x{d}x{t_kv}"))
    q, k = _qk_operands(rng, 5, 24, 13)
    mult, shift = quantize_multipliers(np.full(13, 40.0 / (np.sqrt(24) * 128 * 128)))
    jobs.append(compiled_job(CFG16, compile_gemm(CFG16, q, k, mult, shift, b_trans=True), name="qkt_int8"))
    results = run_jobs(CFG16, jobs, harness="fast", latency=2, stall=0.2, seed=19)
    assert_fast_exact(jobs, results)


# -- MATMUL.b16: int16 x int16 (the int16 K / V caches of the *-kv16 schemes) on CFG16 -----------------------------
def _b16_fault_jobs():
    """Illegal MATMUL.b16 forms (ILLEGAL_INSTRUCTION): code 3, with an int8 mode, with blocks; and an int16 B^T of
    n rows of 2k bytes one word past the scratchpad (LOCAL_RANGE at b_addr) beside one ending exactly at its end."""
    image = np.zeros(1 << 14, np.uint8)
    win = [Window(0, 1 << 14)]

    def raw(instr, bit):
        """``instr`` with bit ``bit`` of w0 set, then HALT."""
        word = int.from_bytes(encode(instr), "little") | (1 << bit)
        return word.to_bytes(16, "little") + encode(Halt())
    legal = MatMul("w8a16", "ws", 0, 2, 32, 4, 0, 0x400, 0, b16=1)
    end = CFG16.spad_bytes - 8 * 64       # 64 int16 B^T rows of k = 4 (one word each) fit, 65 do not
    return [program_job(CFG16, "b16_code3", raw(legal, 16), image, win),
            program_job(CFG16, "b16_int8", raw(MatMul("int8", "ws", 0, 2, 32, 4, 0, 0x400, 0), 15), image, win),
            program_job(CFG16, "b16_blocks", raw(legal, 14), image, win),
            program_job(CFG16, "b16_past_spad", encode_program([MatMul("w8a16", "ws", 0, 1, 4, 65, 0, end, 0,
                                                                       b_trans=1, b16=2), Halt()]), image, win),
            program_job(CFG16, "b16_exact_fit", encode_program([MatMul("w8a16", "ws", 0, 1, 4, 64, 0, end, 0,
                                                                       b_trans=1, b16=2), Halt()]), image, win)]


_B16_SHAPES = ((1, 37, 16, None), (5, 19, 8, None), (6, 40, 24, (4, 8, 8)))     # (t, n, d, tiles)


@pytest.mark.cocotb
def test_fast_b16_attention_gemms_bit_exact_and_faults():
    """int16 Q.K^T (b_trans) and P.V through MATMUL.b16 plane pairs and VEC_REQUANT.wide, ragged and tiled, with the
    byte-plane edge cases and int16 extremes: RTL == ISA simulator == golden requant_wide of the exact product; the
    illegal forms give an error status and an interrupt, and the next program runs."""
    from npuforge.sim.harness.npu_run import layer_job
    from tests.gen.isa.test_kv16 import _attention

    require_simulator("verilator")
    jobs = [layer_job(_attention(CFG16, t, n, d, seed=t + n, tiles=tiles), f"b16_attn_{t}x{n}x{d}", "scores")
            for (t, n, d, tiles) in _B16_SHAPES]
    for job, (t, n, d, _) in zip(jobs, _B16_SHAPES):
        # the MACS counter counts the array's products: each b16 plane pass does all t * n * d of a GEMM
        assert job.macs == 2 * t * n * d
        job.macs *= 2
    faults = _b16_fault_jobs()
    assert [j.expect_status for j in faults] == [ErrorCode.ILLEGAL_INSTRUCTION] * 3 + [ErrorCode.LOCAL_RANGE,
                                                                                        ErrorCode.NONE]
    assert faults[3].expect_fault == CFG16.spad_bytes - 8 * 64
    results = run_jobs(CFG16, jobs + faults + jobs[:1], harness="fast", latency=3, stall=0.2, seed=29)
    for job, res in zip(jobs + faults + jobs[:1], results):
        assert not res["timeout"] and res["error"] == job.expect_status, (job.name, res)
        assert res["fault_addr"] == job.expect_fault and res["isasim_mismatch_bytes"] == 0, (job.name, res)
        assert res["irq_status"] == (3 if job.expect_status else 1), (job.name, res)
    assert_fast_exact(jobs, results[:len(jobs)])
    # gen.perf.program prices the b16 plane pairs within 3 % (no DRAM latency or stalls)
    quiet = run_jobs(CFG16, jobs, harness="fast", latency=0, stall=0.0, seed=29)
    for (t, n, d, tiles), job, res in zip(_B16_SHAPES, jobs, quiet):
        prog = _attention(CFG16, t, n, d, seed=t + n, tiles=tiles)
        model = program_cycles(prog.program, CFG16, latency=0, harness="fast").cycles
        rtl = res["counters"]["BUSY_CYCLES"]
        print(f"{job.name}: RTL {rtl} cycles, model {model} ({100 * (model - rtl) / rtl:+.2f} %)")
        assert res["error"] == 0 and abs(model - rtl) <= 0.03 * rtl, (job.name, model, rtl)
