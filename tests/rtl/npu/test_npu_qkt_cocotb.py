"""The matmul-side completions of issue 13 on the NPU RTL (fast harness, Verilator): the Linear bias before the
requant (VEC_REQUANT.bias) and the transposed B operand of Q.K^T (MATMUL.b_trans), every byte of DRAM equal to the
ISA simulator's and the output equal to golden; illegal fields give an error status and an interrupt.

Same small NPU (and Verilator build) as test_npu_fast_cocotb.py: 4x4 array, 64-bit AXI.
"""

from __future__ import annotations

import numpy as np
import pytest

from npuforge.gen.isa.compiler import compile_gemm
from npuforge.gen.isa.isasim import Window
from npuforge.gen.isa.layout import pack_requant_params
from npuforge.golden.layers import linear_int, quantize_linear
from npuforge.sim.harness.npu_run import compiled_job, gemm_job, gemm_operands, program_job, run_jobs
from npuforge.spec.isa import DmaLoad, ErrorCode, Fence, Halt, VecRequant, encode, encode_program
from tests.conftest import require_simulator
from tests.rtl.npu.checks import assert_fast_exact
from tests.rtl.npu.test_npu_fast_cocotb import CFG

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def _bias_jobs():
    """Random GEMMs with int32-extreme biases (acc + bias leaves int32), a real golden Linear, int16 output."""
    jobs = []
    for seed, (m, k, n), extra in ((80, (9, 20, 11), {}), (81, (17, 33, 21), {"out_bits": 16, "zero_point": -9}),
                                   (82, (6, 40, 13), {"tiles": (4, 16, 8)})):
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
    """A misaligned bias vector (LOCAL_RANGE at bias_addr) and a stray bias_addr without the flag (ILLEGAL)."""
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
    return [program_job(CFG, "bias_misaligned", misaligned, image, win),
            program_job(CFG, "bias_addr_without_bias", stray, image, win)]


@pytest.mark.cocotb
def test_fast_requant_bias_bit_exact_and_faults():
    require_simulator("verilator")
    jobs = _bias_jobs()
    faults = _bias_fault_jobs()
    assert [j.expect_status for j in faults] == [ErrorCode.LOCAL_RANGE, ErrorCode.ILLEGAL_INSTRUCTION]
    assert faults[0].expect_fault == 0x204
    after = gemm_job(CFG, 5, 9, 6, "int8", seed=84, name="after_faults")[0]
    results = run_jobs(CFG, jobs + faults + [after], harness="fast", latency=3, stall=0.2, seed=13)
    assert_fast_exact(jobs, results[:len(jobs)])
    for job, res in zip(faults, results[len(jobs):-1]):
        assert not res["timeout"] and res["error"] == job.expect_status, (job.name, res)
        assert res["fault_addr"] == job.expect_fault and res["isasim_mismatch_bytes"] == 0, (job.name, res)
        assert res["irq_status"] == 3, (job.name, res)
    assert_fast_exact([after], results[-1:])
