"""Block-scaled MATMULs (MATMUL.blocks, VEC_REQUANT.wide; spec.block_scale) on the whole NPU (fast harness, emitted
Verilog of a block_scaled 4x4 build with the accumulator extension): compiled GEMMs of GGUF-style weights (random
Q4_1 blocks of Gaussian weights and random Q8_0-style blocks, labelled random) bit-exact against both golden tiers
(the ISA simulator's whole DRAM image and ``golden.models.qlinear.linear_apply``): K = 32 (one block) and several
blocks, K and N split into accumulate chains, ragged m, a bias, int8 / int16 / int32 outputs, D, O and x at their
extremes; a layer program (gen.isa.builder) with a block weight, a view of it, and a plain w8a16 MATMUL after the
block ones; one run with random AXI stalls; the native harness cycle for cycle and byte for byte equal to the fast
one. The program cycle model (gen.perf.program) within 3 % of the RTL's busy cycles. Illegal field combinations
(blocks = 1 with b_trans, on int8, on k not a multiple of 32) stop with ILLEGAL_INSTRUCTION and the interrupt, never
a hang. The tiny Llama of the model tests (2 layers, GQA) with its GGUF's own Q4_1 linears and Q8_0 LM head
(w4a16): a prefill and a decode step, every program's DRAM image equal to the ISA simulator's, each phase's logits
equal to golden ``llama.int_forward``, the cycle model within 3 %. One fast-harness Verilator build of CFG serves
every case (plus one native build).
"""

from __future__ import annotations

import numpy as np
import pytest

from npuforge.gen.isa.builder import LayerBuilder
from npuforge.gen.isa.gemm_program import compile_gemm
from npuforge.gen.isa.isasim import Window
from npuforge.gen.lower.llama import LlamaPlan, host_embedding, llama_programs
from npuforge.gen.perf.program import program_cycles
from npuforge.golden.models import llama
from npuforge.golden.models.intops import exact_matmul, requant_wide
from npuforge.golden.models.qlinear import linear_apply, make_linear
from npuforge.golden.requant import quantize_multipliers
from npuforge.sim.harness.npu_run import compiled_job, layer_job, program_job, run_jobs
from npuforge.spec.isa import ErrorCode, Halt, MatMul, VecRequant, decode_program, encode, encode_program
from tests.conftest import require_simulator
from tests.gen.isa.test_isasim_blocks import _q4_1_weight, _q8_0_weight, _x
from tests.gen.lower.test_llama import tiny_blocks  # noqa: F401  (model fixtures)
from tests.golden.test_models import tiny_gguf, tiny_llama  # noqa: F401
from tests.rtl.npu.checks import assert_fast_exact
from tests.rtl.npu.test_npu_qkt_cocotb import CFG16

#: The w8a16 build of test_npu_qkt_cocotb.py (int8, w8a16, w4a16, every vector operator, block_scaled; 4x4, 16 KiB
#: scratchpad, 4 KiB accumulator, 64-bit AXI), so one build serves these GEMMs, the Llama phases, BERT and attention.
CFG = CFG16
#: Most the model may miss the RTL's stall-free busy cycles by (the other NPU system tests' bound).
MODEL_TOLERANCE = 0.03


def _linear_job(fmt: str, m: int, k: int, n: int, *, out_bits: int = 16, bias: bool = False, tiles=None):
    """A compiled block GEMM of ``linear_apply(x, lin)``: the job expects the golden linear's bytes."""
    seed = 100 * m + k + n
    w = (_q4_1_weight if fmt == "Q4_1" else _q8_0_weight)(n, k, seed)
    rng = np.random.default_rng(seed)
    b = rng.normal(scale=1e-5, size=n) if bias else None
    lin = make_linear(w, b, in_scale=2.0 ** -12, out_scale=2.0 ** -8, out_bits=out_bits)
    x = _x(m, k, seed)
    blk = w.blocks
    comp = compile_gemm(CFG, x, blk.s.T, lin.multiplier, lin.shift, mode="w4a16" if blk.bits == 4 else "w8a16",
                        out_bits=out_bits, bias=lin.bias, blocks=(blk.d.T, blk.o.T), tiles=tiles)
    assert np.array_equal(comp.expected, linear_apply(x, lin))
    return compiled_job(CFG, comp, name=f"{fmt}_{m}x{k}x{n}_out{out_bits}{'_bias' if bias else ''}")


def _extreme_job(bits: int):
    """D, O and x at their extremes: one block of all-lowest codes, one of all-highest; t = 51, int32 out."""
    k, n = 64, 4
    lo, hi = (-8, 7) if bits == 4 else (-128, 127)
    s = np.concatenate([np.full((n, 32), lo), np.full((n, 32), hi)], axis=1)
    d = np.array([[-32768, 32767]] * n)
    o = np.array([[-32768, 32767]] * n) if bits == 4 else np.zeros((n, 2), np.int64)
    x = np.array([[-32768] * 32 + [32767] * 32, [32767] * 64, [-32768] * 64])
    w = np.repeat(d, 32, axis=1) * s + np.repeat(o, 32, axis=1)
    mult, shift = np.full(n, 1 << 30), np.full(n, 20)
    comp = compile_gemm(CFG, x, s.T, mult, shift, mode="w4a16" if bits == 4 else "w8a16", out_bits=32,
                        blocks=(d.T, o.T), tiles=(4, 32, 4))
    assert np.array_equal(comp.expected, requant_wide(exact_matmul(x, w.T), mult, shift, out_bits=32))
    return compiled_job(CFG, comp, name=f"extreme_w{bits}")


def _compiled_jobs():
    return [
        _linear_job("Q4_1", 1, 32, 1),                                  # one block, one output
        _linear_job("Q8_0", 3, 32, 5, out_bits=8),
        _linear_job("Q4_1", 7, 96, 10, tiles=(4, 32, 4)),              # K and N split: accumulate chains, ragged m
        _linear_job("Q8_0", 5, 128, 6, out_bits=8, tiles=(8, 64, 6)),
        _linear_job("Q4_1", 6, 64, 8, out_bits=32, bias=True),
        _linear_job("Q8_0", 9, 64, 7, bias=True),
        _extreme_job(4), _extreme_job(8),
    ]


def _layer_job():
    """One layer program: the whole block weight, a view of its second block row and last columns (records at the
    view's block row / columns), then a plain w8a16 MATMUL into the accumulator the block ones used."""
    m, k, n = 5, 64, 12
    w = _q4_1_weight(n, k, seed=3)
    lin = make_linear(w, None, in_scale=2.0 ** -12, out_scale=2.0 ** -8, out_bits=16)
    x = _x(m, k, seed=3)
    lb = LayerBuilder(CFG)
    xt = lb.constant("x", x, bits=16)
    wt = lb.block_weight("w", w)
    y = lb.buffer("y", m, n, bits=16)
    lb.gemm(xt, wt, y, lin.multiplier, lin.shift, name="lin")
    y2 = lb.buffer("y2", m, 6, bits=8)
    lb.gemm(xt.view(cols=slice(32, 64)), wt.view(rows=slice(32, 64), cols=slice(6, 12)), y2,
            lin.multiplier[6:], lin.shift[6:] + 3, name="part")
    rng = np.random.default_rng(4)
    plain = rng.integers(-128, 128, size=(k, 8))
    plain[0, :] = -128
    pt = lb.constant("plain", plain, bits=8)
    mult, shift = quantize_multipliers(rng.uniform(0.5, 2.0, size=8) * 48.0 / (np.sqrt(k) * 2.0 ** 21))
    y3 = lb.buffer("y3", m, 8, bits=8)
    lb.gemm(xt, pt, y3, mult, shift, name="plain")
    prog = lb.build()
    ref = prog.reference()
    assert np.array_equal(ref["y"].view("<i2").reshape(m, n), linear_apply(x, lin))
    job = layer_job(prog, "layer_block_then_plain", "y3")
    return prog, job


def _assert_model(jobs, results):
    for job, res in zip(jobs, results):
        rtl = res["counters"]["BUSY_CYCLES"]
        model = program_cycles(bytes(job.image[:job.program_len]), CFG, latency=0, harness="fast").cycles
        assert abs(model - rtl) <= MODEL_TOLERANCE * rtl, (job.name, model, rtl)


@pytest.mark.cocotb
def test_block_gemms_bit_exact_native_equals_fast_and_cycles_follow_the_model():
    require_simulator("verilator")
    jobs = _compiled_jobs()
    prog, lj = _layer_job()
    results = run_jobs(CFG, jobs + [lj], harness="fast", latency=0, stall=0.0, seed=3, keep_memory=True)
    assert_fast_exact(jobs, results[:-1])
    res = results[-1]
    assert not res["timeout"] and res["error"] == 0, res
    assert res["isasim_mismatch_bytes"] == 0 and res["golden_mismatch_bytes"] == 0, res
    memory = res["memory"]
    want = prog.reference()
    for name in ("y", "y2", "y3"):
        assert np.array_equal(prog.read(memory, name), want[name]), name
    _assert_model(jobs + [lj], results)
    # The native harness (C++ DRAM model) runs the same cycles, counters and final DRAM image.
    native = run_jobs(CFG, jobs + [lj], harness="native", latency=0, stall=0.0, seed=3, keep_memory=True)
    for job, f, n in zip(jobs + [lj], results, native):
        assert n["counters"] == f["counters"] and n["cycles"] == f["cycles"], job.name
        assert np.array_equal(n["memory"], f["memory"]), job.name


@pytest.mark.cocotb
def test_block_gemms_bit_exact_with_axi_stalls():
    require_simulator("verilator")
    jobs = _compiled_jobs()[2:6]
    results = run_jobs(CFG, jobs, harness="fast", latency=5, stall=0.2, seed=21)
    assert_fast_exact(jobs, results)


def _raw_matmul(**bad) -> bytes:
    """A block MATMUL's encoding with fields changed past what MatMul() accepts (blocks = 1 kept)."""
    word = int.from_bytes(encode(MatMul("w8a16", "ws", 0, 2, 32, 4, 0, 0x400, 0, blocks=1)), "little")
    ref = int.from_bytes(encode(MatMul(bad.get("mode", "w8a16"), "ws", 0, 2, bad.get("k", 32), 4, 0, 0x400, 0,
                                       b_trans=bad.get("b_trans", 0))), "little")
    return (ref | (word & (1 << 14))).to_bytes(16, "little")


@pytest.mark.cocotb
def test_block_fields_illegal_combinations_stop_with_an_error():
    """blocks = 1 with b_trans, on int8, with k = 48: ILLEGAL_INSTRUCTION (status, interrupt, pc at the MATMUL);
    records past the scratchpad: LOCAL_RANGE at b_addr."""
    require_simulator("verilator")
    image = np.zeros(1 << 16, dtype=np.uint8)
    halt = encode_program([Halt()])
    cases = [("b_trans", _raw_matmul(b_trans=1)), ("int8", _raw_matmul(mode="int8")), ("k48", _raw_matmul(k=48))]
    jobs = [program_job(CFG, f"blocks_{name}", raw + halt, image, [Window(0, 1 << 16)]) for name, raw in cases]
    assert all(j.expect_status == ErrorCode.ILLEGAL_INSTRUCTION for j in jobs)
    # K-packed codes (16 rows of 8-byte words) fit at the end of the scratchpad; their record row does not
    end = MatMul("w4a16", "ws", 0, 1, 32, 4, 0, CFG.spad_bytes - 128, 0, blocks=1)
    jobs.append(program_job(CFG, "records_past_spad", encode_program([end, Halt()]), image, [Window(0, 1 << 16)]))
    assert jobs[-1].expect_status == ErrorCode.LOCAL_RANGE and jobs[-1].expect_fault == CFG.spad_bytes - 128
    results = run_jobs(CFG, jobs, harness="fast", latency=0, stall=0.0, seed=1)
    for job, res in zip(jobs, results):
        assert not res["timeout"] and res["error"] == job.expect_status, (job.name, res)
        assert res["fault_addr"] == job.expect_fault, (job.name, res)
        assert res["tail"] == job.expect_tail == 0 and res["irq_status"] == 3, (job.name, res)


def test_cases_cover_chains_ragged_m_and_a_plain_matmul_after_block_ones():
    """What the RTL cases claim to cover is in their programs."""
    programs = [decode_program(bytes(j.image[:j.program_len])) for j in _compiled_jobs()]
    mms = [[i for i in p if isinstance(i, MatMul)] for p in programs]
    assert all(i.blocks for p in mms for i in p)
    assert all(i.wide for p in programs for i in p if isinstance(i, VecRequant))
    assert any(i.accumulate for p in mms for i in p)                  # accumulate chains over blocks
    assert any(i.k == 32 for p in mms for i in p) and any(i.k > 32 for p in mms for i in p)
    assert any(i.m % CFG.array.rows for p in mms for i in p)          # m not a multiple of rows
    _, lj = _layer_job()
    layer = [i for i in decode_program(bytes(lj.image[:lj.program_len])) if isinstance(i, MatMul)]
    flags = [i.blocks for i in layer]
    assert flags == sorted(flags, reverse=True) and flags[0] == 1 and flags[-1] == 0   # block MATMULs, then plain
    assert all(i.mode == "w8a16" for i in layer if not i.blocks)


@pytest.mark.cocotb
def test_tiny_llama_with_gguf_blocks_prefill_and_decode(tiny_blocks):  # noqa: F811
    require_simulator("verilator")
    m = tiny_blocks
    prompt, fed = [5, 90, 117, 30, 200], [44]
    plan = llama_programs(CFG, m, len(prompt), steps=len(fed))
    caches = llama.new_caches(m)
    memory = plan.prog.image
    for phase, feed in zip(LlamaPlan.phases(len(fed)), [prompt] + [[t] for t in fed]):
        memory = plan.prog.write(memory, f"x.{phase}", host_embedding(m, feed))
        for name in plan.programs_of(phase):
            prog = encode_program(plan.prog.programs[name])
            job = program_job(CFG, name, prog, plan.prog.load(memory, name), plan.prog.windows)
            res = run_jobs(CFG, [job], harness="fast", latency=0, stall=0.0, seed=1, keep_memory=True)[0]
            assert not res["timeout"] and res["error"] == 0 and res["isasim_mismatch_bytes"] == 0, (name, res)
            rtl = res["counters"]["BUSY_CYCLES"]
            model = program_cycles(prog, CFG, latency=0, harness="fast").cycles
            assert abs(model - rtl) <= MODEL_TOLERANCE * rtl, (name, model, rtl)
            memory = res["memory"]
        np.testing.assert_array_equal(plan.logits(memory, phase), llama.int_forward(m, feed, caches, last_only=True))
    mms = [i for p in plan.prog.programs.values() for i in p if isinstance(i, MatMul)]
    assert any(i.blocks and i.mode == "w4a16" for i in mms) and any(i.blocks and i.mode == "w8a16" for i in mms)
