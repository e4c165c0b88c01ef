"""The NPU's vector operators on its emitted Verilog: vec.softmax, vec.act (GELU / SiLU tables), vec.residual,
vec.gate, vec.layernorm, vec.rmsnorm, vec.rope, a matmul -> requant -> act -> residual chain and a residual ->
layernorm / matmul -> requant -> rope chain, run from DRAM (cocotbext-axi AXI RAM with latency and stalls) and
checked against both golden tiers: the ISA simulator's whole final DRAM image, status, fault address and pc, and
the golden operators' output computed from the operands. Directed edges (-128, 127, -8, 7, 0), the longest row
(4095), in-order vector ops concurrent with DMA and matmul, and the error cases (bad table address, bad flags, a
zero row length, bad records / shifts / norm and RoPE headers, misaligned operands, RoPE shapes the operator cannot
take, table rows past the scratchpad) with error status + interrupt,
followed by a correct program on the same instance.

The NPU configuration is the one of tests/npu/test_npu_cocotb.py (4x4 array, 64-bit AXI: 8 vector lanes, one
scratchpad word per beat) with every vector operator built (``spec.isa.VEC_EXECUTABLE``; the default NPU leaves the
norms and RoPE out): one Verilator build for this file.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from npuforge.gen.config.array import ArrayConfig
from npuforge.spec.isa import VEC_EXECUTABLE, ErrorCode, Opcode, VecOp, encode, encode_words
from npuforge.gen.isa.isasim import pack_norm_params, pack_rope_params
from npuforge.gen.isa.ops import pack_residual_params
from npuforge.gen.perf.program import vec_cycles
from npuforge.gen.build.npu import executed_opcodes, used_masks
from npuforge.gen.config.npu import NPUConfig
from npuforge.golden.activations import gelu_table, silu_table
from npuforge.golden.elementwise import GateParams, gate_params, residual_params, rope_table
from npuforge.golden.norms import LayerNormParams, RMSNormParams, layernorm_params, rmsnorm_params
from npuforge.golden.softmax import softmax_params
from npuforge.spec.vector_ops import GATE_IN16, GATE_OUT16, ROPE_IN16, ROPE_OUT16
from npuforge.sim.harness.npu_run import run_jobs
from npuforge.sim.harness.npu_vec_jobs import (IMAGE_BYTES, _image, chain_job, edge_operands,
                                              norm_rope_chain_job, param_block, raw_job, vec_job, vec_layout,
                                              vec_program)
from npuforge.sim.harness.runner import BUILD
from tests.conftest import require_simulator
from tests.rtl.test_controller_vec_engine_amaranth import _residual_flags, _wide_operands

CFG = NPUConfig(array=ArrayConfig(rows=4, cols=4), spad_bytes=16384, spad_banks=2, acc_bytes=4096,
                axi_data_bits=64, windows=2, vector_ops=VEC_EXECUTABLE)
GELU = gelu_table(0.05, 0.03)
SILU = silu_table(0.08, 0.05)


# -- fast checks (no simulator) ---------------------------------------------------------------------------------
def test_decoder_executes_exactly_the_built_vector_ops():
    assert set(executed_opcodes(CFG)) >= set(Opcode(op) for op in range(0x31, 0x38))
    only_act = replace(CFG, vector_ops=("act",))
    masks = used_masks(only_act)
    assert Opcode.VEC_ACT in masks and Opcode.VEC_RESIDUAL not in masks and Opcode.VEC_GATE not in masks
    assert not any(op in used_masks(replace(CFG, vector_ops=())) for op in range(0x31, 0x38))
    for op in (Opcode.VEC_LAYERNORM, Opcode.VEC_RMSNORM, Opcode.VEC_ROPE):
        assert op not in used_masks(NPUConfig())        # the default NPU leaves them out


def test_controller_vector_port_only_with_vector_ops():
    from npuforge.rtl.controller import Controller
    kw = dict(word_bytes=8, spad_words=2048, acc_words=512, rows=4, cols=4, precisions=("int8",))
    plain = Controller(used_masks=used_masks(), **kw)
    assert plain.vec is None and "vec_rd" not in plain.signature.members
    vec = Controller(used_masks=used_masks(CFG), vector_ops=CFG.vector_ops, vector_lanes=16, **kw)
    assert "vec_rd" in vec.signature.members and vec.vector_lanes == 8    # capped at the 8-byte word
    with pytest.raises(ValueError, match="used_masks has no entry for VEC_GATE"):
        Controller(used_masks=used_masks(replace(CFG, vector_ops=("act",))), vector_ops=("act", "gate"), **kw)


# -- RTL runs ---------------------------------------------------------------------------------------------------
def _ops_jobs():
    jobs = []
    a, b = edge_operands(3, 13, seed=1)
    jobs.append(vec_job(CFG, "gelu_3x13", "act", a, None, GELU, flags=0))
    a, _ = edge_operands(2, 256, seed=2)
    a[1, :] = np.arange(-128, 128)                      # every table entry once
    jobs.append(vec_job(CFG, "silu_all_entries", "act", a, None, SILU, flags=1))
    a, _ = edge_operands(1, 4095, seed=3)
    jobs.append(vec_job(CFG, "gelu_longest_row", "act", a, None, GELU))
    a, b = edge_operands(4, 37, seed=4)
    jobs.append(vec_job(CFG, "residual_4x37", "residual", a, b, residual_params(0.05, 0.03, 0.06)))
    a, b = edge_operands(2, 20, seed=5)
    jobs.append(vec_job(CFG, "residual_saturating", "residual", a, b, residual_params(0.5, 0.4, 0.3)))
    a, b = edge_operands(1, 4095, seed=6)
    jobs.append(vec_job(CFG, "residual_longest_row", "residual", a, b, residual_params(0.02, 0.07, 0.05)))
    a, b = edge_operands(5, 24, seed=7)
    jobs.append(vec_job(CFG, "gate_5x24", "gate", a, b, gate_params(0.05, 0.03, 0.6)))
    a, b = edge_operands(3, 9, seed=8)
    # Shift at both ends of its range: 31 (tiny scale) and -30 (large scale, saturating).
    jobs.append(vec_job(CFG, "gate_shift_31", "gate", a, b, GateParams(multiplier=(1 << 31) - 1, shift=31)))
    jobs.append(vec_job(CFG, "gate_shift_m30", "gate", a, b, GateParams(multiplier=1 << 30, shift=-30)))
    sp = softmax_params(0.06, input_bits=8)
    a, _ = edge_operands(6, 21, seed=21)
    a[1, :] = 127                                       # equal maxima
    a[2, :] = -128
    a[2, 20] = 127                                      # one hot at the last column
    a[3, :] = 0
    jobs.append(vec_job(CFG, "softmax_6x21", "softmax", a, None, sp))
    jobs.append(vec_job(CFG, "softmax_causal_offset_2", "softmax", a, None, sp, flags=1, imm=2))
    a, _ = edge_operands(1, 4095, seed=22)
    jobs.append(vec_job(CFG, "softmax_longest_row", "softmax", a, None, softmax_params(0.01, input_bits=8)))
    return jobs + _norm_rope_jobs()


def _norm_rope_jobs():
    rng = np.random.default_rng(50)
    jobs = []
    a, _ = edge_operands(4, 40, seed=51)
    a[1, :] = 37                                        # constant row: variance 0, eps decides
    a[2, :] = np.where(np.arange(40) % 2, 127, -128)    # largest variance
    jobs.append(vec_job(CFG, "layernorm_4x40", "layernorm", a, None,
                        layernorm_params(0.05, rng.uniform(-2, 2, 40), rng.uniform(-1, 1, 40), 0.03)))
    jobs.append(vec_job(CFG, "rmsnorm_4x40", "rmsnorm", a, None, rmsnorm_params(0.05, rng.uniform(-2, 2, 40), 0.02)))
    # gamma / beta at their extremes, eps 0: the constant rows (-128, 0) have V_e = 0 (y = 0, out = B rounded).
    a, _ = edge_operands(3, 16, seed=52)
    a[1, :] = -128
    a[2, :] = 0
    g = tuple(int(v) for v in np.where(np.arange(16) % 2, 32767, -32768))
    bq = tuple(int(v) for v in np.where(np.arange(16) % 3 == 0, (1 << 47) - 1, -(1 << 47)))
    for shift in (-15, 16):
        lp = LayerNormParams(dim=16, input_bits=8, var_frac_bits=28, eps_term=0, gamma_q=g, gamma_shift=shift,
                             beta_q=bq)
        jobs.append(vec_job(CFG, f"layernorm_extremes_shift_{shift}", "layernorm", a, None, lp))
    rp = RMSNormParams(dim=16, input_bits=8, var_frac_bits=4, eps_term=(1 << 61) - 1, gamma_q=g, gamma_shift=16)
    jobs.append(vec_job(CFG, "rmsnorm_max_eps", "rmsnorm", a, None, rp))
    # The longest rows the 16 KiB scratchpad holds with their parameter blocks (in place): RMSNorm at the ISA's
    # 4095, LayerNorm (8 bytes per channel) at 1780.
    a, _ = edge_operands(1, 4095, seed=53)
    jobs.append(vec_job(CFG, "rmsnorm_longest_row", "rmsnorm", a, None,
                        rmsnorm_params(0.05, rng.uniform(0.5, 2, 4095), 0.05), in_place=True))
    a, _ = edge_operands(1, 1780, seed=54)
    jobs.append(vec_job(CFG, "layernorm_row_1780", "layernorm", a, None,
                        layernorm_params(0.05, rng.uniform(0.5, 2, 1780), rng.uniform(-1, 1, 1780), 0.05),
                        in_place=True))
    # RoPE: prefill 8 tokens x 4 heads from position 0; decode 4 heads at the table's last row; head_dim 256.
    table = rope_table(32, 40)
    a, _ = edge_operands(32, 32, seed=55)
    a[1, :] = 127                                       # (127, 127) pairs saturate at 45 degrees
    jobs.append(vec_job(CFG, "rope_prefill_8x4_pos0", "rope", a, None, table, flags=3, imm=0))
    a, _ = edge_operands(4, 32, seed=56)
    jobs.append(vec_job(CFG, "rope_decode_last_position", "rope", a, None, table, flags=3, imm=39))
    a, _ = edge_operands(3, 256, seed=57)
    jobs.append(vec_job(CFG, "rope_head_dim_256", "rope", a, None, rope_table(256, 9, frac_bits=13), imm=6))
    return jobs


ROPE_TPUT_N = 128


def _throughput_jobs():
    """The same operator once and three times on 16 x 256: the difference is two instructions' cycles."""
    jobs = []
    a, b = edge_operands(16, 256, seed=9)
    rng = np.random.default_rng(58)
    for op, params, second in (("act", GELU, None), ("residual", residual_params(0.05, 0.03, 0.06), b),
                               ("gate", gate_params(0.05, 0.03, 0.6), b),
                               ("softmax", softmax_params(0.06, input_bits=8), None),
                               ("layernorm", layernorm_params(0.05, rng.uniform(0.5, 2, 256),
                                                              rng.uniform(-1, 1, 256), 0.03), None),
                               ("rmsnorm", rmsnorm_params(0.05, rng.uniform(0.5, 2, 256), 0.03), None),
                               ("rope", rope_table(ROPE_TPUT_N, 8), None)):
        for rep in (1, 3):
            # rope: 16 rows = 8 positions x 2 heads of head_dim 128 (the 8-position table fits beside 3 tiles)
            jobs.append(vec_job(CFG, f"tput_{op}_x{rep}", op, a[:, :ROPE_TPUT_N] if op == "rope" else a, second,
                                params, repeat=rep, flags=1 if op == "rope" else 0))
    return jobs


@pytest.mark.cocotb
def test_vector_ops_bit_exact_and_throughput():
    require_simulator("verilator")
    jobs = _ops_jobs()
    for j in jobs:
        assert j.expect_status == 0, (j.name, j.expect_status)
        lo, hi = j.c_range
        # The ISA simulator agrees with the golden operator before the RTL is asked.
        np.testing.assert_array_equal(j.expect_mem[lo:hi], j.expect_c, err_msg=j.name)
    tput = _throughput_jobs()
    results = run_jobs(CFG, jobs + tput, latency=4, stall=0.0, seed=11)
    assert all(r["error"] == 0 for r in results)
    by_name = {r["name"]: r for r in results}
    lanes = min(CFG.vector_lanes, CFG.axi_data_bits // 8)
    bench = {"lanes": lanes, "ops": {}}
    for op in ("act", "residual", "gate", "softmax", "layernorm", "rmsnorm", "rope"):
        c1 = by_name[f"tput_{op}_x1"]["counters"]["BUSY_CYCLES"]
        c3 = by_name[f"tput_{op}_x3"]["counters"]["BUSY_CYCLES"]
        per_instr = (c3 - c1) / 2
        n = ROPE_TPUT_N if op == "rope" else 256
        model = vec_cycles(VecOp(op, m=16, n=n, src_addr=0, dst_addr=0, flags=1 if op == "rope" else 0), CFG)
        bench["ops"][op] = {"rows": 16, "row_len": n, "cycles_per_instruction": per_instr,
                            "elements_per_cycle": 16 * n / per_instr, "model_cycles": model}
        if op in ("layernorm", "rmsnorm", "rope"):
            continue      # checked against the cycle model below, after the bench is written
        # Deterministic cycle counts: one beat of `lanes` elements per cycle plus a per-instruction setup
        # (the 256-entry table load for act, at one entry per cycle; a few cycles for a record).
        # Softmax reads each row three times inside the operator (max, sum, normalise) and ends with the last
        # row's division: bounded by three passes plus a row of latency.
        setup = 256 + 256 // (CFG.axi_data_bits // 8) + 32 if op == "act" else 32
        passes = 3 if op == "softmax" else 1
        assert per_instr <= passes * 16 * 256 / lanes + setup + (256 if op == "softmax" else 0), (op, per_instr)
    out = BUILD / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "npu_vector.json").write_text(json.dumps(bench, indent=1))
    for op in ("layernorm", "rmsnorm", "rope"):
        # The cycle model (gen.perf.program.vec_cycles) against the RTL: deterministic counts.
        got, model = bench["ops"][op]["cycles_per_instruction"], bench["ops"][op]["model_cycles"]
        assert abs(model - got) <= 0.03 * got, (op, model, got)


def _error_jobs():
    jobs = []
    a, b = edge_operands(2, 16, seed=12)
    lay = vec_layout(CFG, 2, 16)
    img_act = _image(a, None, param_block("act", GELU))
    img_two = _image(a, b, param_block("residual", residual_params(0.05, 0.03, 0.06)))

    def prog(op, **kw):
        return vec_program(CFG, op, 2, 16, **kw)

    # (name, program, image, expected ISA status, expected fault address)
    cases = [
        ("table_past_spad", prog("act", param_page=CFG.spad_bytes // 256), img_act, ErrorCode.LOCAL_RANGE,
         CFG.spad_bytes),
        ("act_bad_flags", prog("act", flags=4), img_act, ErrorCode.ILLEGAL_INSTRUCTION, 0),     # bit 2 reserved
        ("act_imm_set", prog("act", imm=5), img_act, ErrorCode.ILLEGAL_INSTRUCTION, 0),
        ("residual_shift_0", prog("residual", imm=0), img_two, ErrorCode.BAD_PARAM, 0),
        ("residual_shift_63", prog("residual", imm=63), img_two, ErrorCode.BAD_PARAM, 0),
        ("residual_src2_misaligned", prog("residual", imm=30, src2_addr=lay["b"] + 4), img_two,
         ErrorCode.LOCAL_RANGE, lay["b"] + 4),
        ("gate_bad_record", prog("gate"), _image(a, b, param_block("gate", GateParams((1 << 30) - 1, 0))),
         ErrorCode.BAD_PARAM, lay["page"] * 256),
        ("gate_bad_shift", prog("gate"), _image(a, b, param_block("gate", GateParams(1 << 30, 32))),
         ErrorCode.BAD_PARAM, lay["page"] * 256),
        ("act_dst_past_spad", prog("act", dst_addr=CFG.spad_bytes - 8), img_act, ErrorCode.LOCAL_RANGE,
         CFG.spad_bytes - 8),
        ("softmax_bad_record", prog("softmax"), _image(a, None, param_block("gate", GateParams(7, 0))),
         ErrorCode.BAD_PARAM, lay["page"] * 256),
        ("softmax_offset_not_causal", prog("softmax", imm=3),
         _image(a, None, param_block("softmax", softmax_params(0.06, input_bits=8))),
         ErrorCode.ILLEGAL_INSTRUCTION, 0),
    ]
    cases += _norm_rope_error_cases()
    for name, program, image, code, fault in cases:
        job = raw_job(CFG, name, program, image)
        assert (job.expect_status, job.expect_fault) == (code, fault), (name, job.expect_status, job.expect_fault)
        jobs.append(job)
    # A zero row length (n = 0) cannot be built by VecOp: patch the encoded word (w2[31:20] = n).
    program = prog("act")
    idx = next(i for i, p in enumerate(program) if isinstance(p, VecOp))
    words = list(encode_words(program[idx]))
    words[2] &= ~(0xFFF << 20) & 0xFFFFFFFF
    raw = b"".join(w.to_bytes(4, "little") for w in words)
    blob = [encode(p) for p in program]
    blob[idx] = raw
    job = raw_job(CFG, "act_row_len_0", blob, img_act)
    assert job.expect_status == ErrorCode.ILLEGAL_INSTRUCTION and job.expect_tail == 16 * idx
    jobs.append(job)
    return jobs


def _norm_rope_error_cases():
    rng = np.random.default_rng(60)
    a16, _ = edge_operands(2, 16, seed=61)
    page = vec_layout(CFG, 2, 16, nparam=8)["page"] * 256
    ln = pack_norm_params(layernorm_params(0.05, rng.uniform(0.5, 2, 16), rng.uniform(-1, 1, 16), 0.03))
    rms = pack_norm_params(rmsnorm_params(0.05, rng.uniform(0.5, 2, 16), 0.03))
    table = pack_rope_params(*rope_table(16, 4))

    def patched(block, offset, values):
        out = block.copy()
        out[offset:offset + len(values)] = values
        return out

    def case(name, op, block, code, fault, m=2, n=16, **kw):
        a = a16 if (m, n) == (2, 16) else edge_operands(m, n, seed=62)[0]
        program = vec_program(CFG, op, m, n, params_bytes=block.size, **kw)
        return name, program, _image(a, None, block), code, fault

    last_page = CFG.spad_bytes // 256 - 1
    ln40 = pack_norm_params(layernorm_params(0.05, np.ones(40), np.zeros(40), 0.03))
    return [
        case("layernorm_flags", "layernorm", ln, ErrorCode.ILLEGAL_INSTRUCTION, 0, flags=4),   # bit 2 reserved
        case("rmsnorm_src2_set", "rmsnorm", rms, ErrorCode.ILLEGAL_INSTRUCTION, 0, src2_addr=0x100),
        case("layernorm_var_frac_bits_odd", "layernorm", patched(ln, 8, [27]), ErrorCode.BAD_PARAM, page),
        case("rmsnorm_var_frac_bits_30", "rmsnorm", patched(rms, 8, [30]), ErrorCode.BAD_PARAM, page),
        case("layernorm_gamma_shift_m16", "layernorm", patched(ln, 9, [0xF0]), ErrorCode.BAD_PARAM, page),
        case("rmsnorm_gamma_shift_17", "rmsnorm", patched(rms, 9, [17]), ErrorCode.BAD_PARAM, page),
        # 16 + 8 * 40 = 336 bytes from the last page: the channel words run past the scratchpad.
        case("layernorm_block_past_spad", "layernorm", ln40, ErrorCode.LOCAL_RANGE, last_page * 256, n=40,
             param_page=last_page),
        case("rope_head_dim_8", "rope", table, ErrorCode.ILLEGAL_INSTRUCTION, 0, n=8),
        case("rope_9_positions", "rope", table, ErrorCode.ILLEGAL_INSTRUCTION, 0, m=9),
        case("rope_negative_position", "rope", table, ErrorCode.ILLEGAL_INSTRUCTION, 0, imm=-1),
        case("rope_position_past_table", "rope", table, ErrorCode.BAD_PARAM, page, imm=3),
        case("rope_frac_bits_15", "rope", patched(table, 4, [15]), ErrorCode.BAD_PARAM, page),
        case("rope_rows_past_spad", "rope", patched(table, 0, [0, 0, 0x10, 0]), ErrorCode.LOCAL_RANGE, page,
             imm=1000),
    ]


@pytest.mark.cocotb
def test_chain_concurrency_errors_then_correct_program():
    require_simulator("verilator")
    chain, side = chain_job(CFG, 8, 40, 24, seed=13)
    assert chain.expect_status == 0
    for addr, want in side.values():
        np.testing.assert_array_equal(chain.expect_mem[addr:addr + want.size], want)
    lo, hi = chain.c_range
    np.testing.assert_array_equal(chain.expect_mem[lo:hi], chain.expect_c)
    a, b = edge_operands(3, 29, seed=14)
    after = vec_job(CFG, "residual_after_errors", "residual", a, b, residual_params(0.05, 0.03, 0.06))
    norm_chain, norm_side = norm_rope_chain_job(CFG, seed=16)
    assert norm_chain.expect_status == 0
    for addr, want in norm_side.values():
        np.testing.assert_array_equal(norm_chain.expect_mem[addr:addr + want.size], want)
    lo, hi = norm_chain.c_range
    np.testing.assert_array_equal(norm_chain.expect_mem[lo:hi], norm_chain.expect_c)
    jobs = [chain, norm_chain] + _error_jobs() + [after, chain_job(CFG, 5, 17, 9, seed=15)[0], norm_chain]
    results = run_jobs(CFG, jobs, latency=5, stall=0.2, seed=17)
    assert [r["error"] for r in results] == [j.expect_status for j in jobs]
    assert all(r["irq_status"] == (3 if j.expect_status else 1) for r, j in zip(results, jobs))
    assert IMAGE_BYTES <= 1 << 16


def _wide_softmax_jobs():
    """vec.softmax with int16 / int32 scores (int32 at golden.models.llama.SCORE_SCALE), Q0.15 and uint8 outputs,
    padding and causal masks: edge values, single-element rows, one valid column, the longest rows the test
    scratchpad holds; then its error cases."""
    from npuforge.gen.isa.ops import SoftmaxBlock
    from npuforge.golden.models.llama import SCORE_SCALE
    rng = np.random.default_rng(80)
    p16, p32 = softmax_params(0.004, input_bits=16), softmax_params(SCORE_SCALE, input_bits=32)
    s16 = rng.integers(-32768, 32768, (5, 21)).astype(np.int16)
    s16[0, :] = -32768                                   # all min
    s16[1, :] = 32767                                    # all max
    s16[2, ::3] = -32768
    s16[2, 1::3] = 32767                                 # both extremes
    s32 = np.round(rng.normal(0, 4.0, (4, 19)) / SCORE_SCALE).astype(np.int32)
    s32[0, :4] = [-(1 << 31), (1 << 31) - 1, -(1 << 31), 0]
    s32[3, :] = (1 << 31) - 1
    jobs = [
        vec_job(CFG, "softmax_int16_q15", "softmax", s16, None, p16, flags=2 | 8),
        vec_job(CFG, "softmax_int32_q15_causal", "softmax", s32, None, p32, flags=4 | 8 | 1, imm=2),
        vec_job(CFG, "softmax_int32_uint8_padded", "softmax", s32, None, SoftmaxBlock(p32, 7), flags=4 | 16),
        vec_job(CFG, "softmax_int8_q15_one_valid_causal", "softmax", edge_operands(3, 13, seed=81)[0], None,
                SoftmaxBlock(softmax_params(0.06, input_bits=8), 1), flags=8 | 16 | 1),
        vec_job(CFG, "softmax_int32_single_element_rows", "softmax", s32[:, :1].copy(), None, p32, flags=4 | 8),
        # Llama decode: one query row at the cache's last position (every column visible), then rows whose offset
        # runs past the row (nothing masked).
        vec_job(CFG, "softmax_int32_q15_causal_decode_row", "softmax", s32[1:2].copy(), None, p32, flags=4 | 8 | 1,
                imm=18),
        vec_job(CFG, "softmax_int32_q15_causal_offset_past_row", "softmax", s32, None, p32, flags=4 | 8 | 1,
                imm=40),
        # The longest rows the 16 KiB scratchpad and the job's 8 KiB operand region hold: 4095 int16 scores
        # (the ISA's longest row) in place, 2048 int32 scores with a padding mask.
        vec_job(CFG, "softmax_int16_longest_row_q15", "softmax",
                rng.integers(-32768, 32768, (1, 4095)).astype(np.int16), None, p16, flags=2 | 8, in_place=True),
        vec_job(CFG, "softmax_int32_row_2048_padded_q15", "softmax",
                np.round(rng.normal(0, 3.0, (1, 2048)) / SCORE_SCALE).astype(np.int32), None,
                SoftmaxBlock(p32, 1500), flags=4 | 8 | 16),
    ]
    for j in jobs:
        assert j.expect_status == 0, (j.name, j.expect_status)
        lo, hi = j.c_range
        np.testing.assert_array_equal(j.expect_mem[lo:hi], j.expect_c, err_msg=j.name)
    a = s32[:2, :16].copy()
    page = vec_layout(CFG, 2, 16, nparam=8, elem=(4, 1, 2))["page"] * 256

    def prog(flags, **kw):
        return vec_program(CFG, "softmax", 2, 16, flags=flags, **kw)
    img = _image(a, None, param_block("softmax", p32), 64)
    img_pad0 = _image(a, None, param_block("softmax", SoftmaxBlock(p32, 0)), 64)
    cases = [
        ("softmax_score_code_3", prog(6), img, ErrorCode.ILLEGAL_INSTRUCTION, 0),
        ("softmax_flag_bit_5", prog(0x24), img, ErrorCode.ILLEGAL_INSTRUCTION, 0),
        ("softmax_pad_valid_len_0", prog(4 | 8 | 16), img_pad0, ErrorCode.BAD_PARAM, page),
        # 2 rows of 64 bytes (int32) from 128 bytes before the end of the scratchpad fit; from 120 they do not.
        ("softmax_int32_rows_past_spad", prog(4 | 8, src_addr=CFG.spad_bytes - 120), img, ErrorCode.LOCAL_RANGE,
         CFG.spad_bytes - 120),
        ("softmax_q15_dst_past_spad", prog(4 | 8, dst_addr=CFG.spad_bytes - 56), img, ErrorCode.LOCAL_RANGE,
         CFG.spad_bytes - 56),
    ]
    for name, program, image, code, fault in cases:
        job = raw_job(CFG, name, program, image)
        assert (job.expect_status, job.expect_fault) == (code, fault), (name, job.expect_status, job.expect_fault)
        jobs.append(job)
    return jobs


def _wide_residual_jobs():
    """The int32 residual stream's vec.residual: every width mix the golden layers use, saturation at the int32 /
    int16 extremes, the identity requant, single-element rows, the longest int32 row (three int32 operands in the
    16 KiB scratchpad: 1339); errors."""
    from npuforge.gen.isa.ops import WideResidualParams
    from npuforge.golden.models.intops import IDENTITY_REQUANT
    jobs = []
    for i, (a_bits, b_bits, out_bits, conv, m, n) in enumerate((
            (32, 32, 32, IDENTITY_REQUANT, 4, 19), (16, 32, 32, (1_700_000_000, -2), 3, 21),
            (32, 16, 16, (1_100_000_000, 5), 2, 37), (8, 16, 16, (1 << 30, -20), 3, 9),
            (16, 16, 16, ((1 << 31) - 1, 31), 2, 8), (32, 32, 32, (1_300_000_000, 0), 5, 1),
            (32, 32, 32, IDENTITY_REQUANT, 1, 1339))):        # the longest int32 row the 16 KiB scratchpad holds
        a, b = _wide_operands(m, n, a_bits, 100 + i), _wide_operands(m, n, b_bits, 200 + i)
        if n > 1:
            a[-1, :2] = a.flat[1]                       # max + max: saturates high
            b[-1, :2] = b.flat[1]
        jobs.append(vec_job(CFG, f"residual_{a_bits}_{b_bits}_to_{out_bits}_{m}x{n}", "residual", a, b,
                            WideResidualParams(*conv), flags=_residual_flags(a_bits, b_bits, out_bits)))
    for j in jobs:
        assert j.expect_status == 0, (j.name, j.expect_status)
        lo, hi = j.c_range
        np.testing.assert_array_equal(j.expect_mem[lo:hi], j.expect_c, err_msg=j.name)
    a = _wide_operands(2, 16, 32, 300)
    lay = vec_layout(CFG, 2, 16, nparam=8, elem=(4, 4, 4))

    def prog(flags, **kw):
        return vec_program(CFG, "residual", 2, 16, flags=flags, imm=30, **kw)
    good = _image(a, a, param_block("residual", WideResidualParams(*IDENTITY_REQUANT)), 128)
    cases = [
        ("residual_wide_code_3", prog(0x7), good, ErrorCode.ILLEGAL_INSTRUCTION, 0),
        ("residual_wide_bit_6", prog(0x41 | 0x14), good, ErrorCode.ILLEGAL_INSTRUCTION, 0),
        ("residual_width_without_wide", prog(0x14), good, ErrorCode.ILLEGAL_INSTRUCTION, 0),
        ("residual_wide_m_below_2_30", prog(0x35),
         _image(a, a, param_block("residual", WideResidualParams((1 << 30) - 1, -1)), 128), ErrorCode.BAD_PARAM, 0),
        ("residual_wide_b_multiplier_set", prog(0x35),
         _image(a, a, pack_residual_params(1 << 30, 3), 128), ErrorCode.BAD_PARAM, 0),
        ("residual_int32_src2_past_spad", prog(0x35, src2_addr=CFG.spad_bytes - 64), good, ErrorCode.LOCAL_RANGE,
         CFG.spad_bytes - 64),
        ("residual_int32_dst_past_spad", prog(0x35, dst_addr=CFG.spad_bytes - 120), good, ErrorCode.LOCAL_RANGE,
         CFG.spad_bytes - 120),
    ]
    assert lay["b"] == 128
    for name, program, image, code, fault in cases:
        job = raw_job(CFG, name, program, image)
        assert (job.expect_status, job.expect_fault) == (code, fault), (name, job.expect_status, job.expect_fault)
        jobs.append(job)
    return jobs


def _wide_norm_jobs():
    """vec.layernorm / vec.rmsnorm of the int32 residual stream (norm_wide) with int16 and int8 results, int8 rows with
    int16 results: every pre-shift (rows scaled down by 0..24 bits, -2^31, all-equal and zero rows), single-element
    rows, the longest int32 row the job layout holds; then their error cases."""
    from npuforge.golden.models.intops import wide_norm_params
    rng = np.random.default_rng(120)
    jobs = []

    def params(kind, n, out_bits, wide):
        gamma, beta = rng.uniform(0.5, 1.5, n), rng.uniform(-0.5, 0.5, n)
        out_scale = 0.03 / (256 if out_bits == 16 else 1)
        if kind == "layernorm":
            build = lambda s, **kw: layernorm_params(s, gamma, beta, out_scale, **kw)   # noqa: E731
        else:
            build = lambda s, **kw: rmsnorm_params(s, gamma, out_scale, **kw)         # noqa: E731
        return wide_norm_params(build, 2.0 ** -12, out_bits=out_bits) if wide else build(0.05, out_bits=out_bits)

    def rows32(m, n):
        x = (rng.integers(-(1 << 31), 1 << 31, (m, n)) >> (np.arange(m) * 24 // max(1, m - 1))[:, None])
        x[0, 0] = -(1 << 31)
        if m > 2:
            x[1, :] = (1 << 31) - 1                      # all equal: the variance is eps alone
            x[2, :] = 0
        return x.astype(np.int32)
    for kind in ("layernorm", "rmsnorm"):
        jobs.append(vec_job(CFG, f"{kind}_int32_q16_6x21", kind, rows32(6, 21), None, params(kind, 21, 16, True),
                            flags=3))
        jobs.append(vec_job(CFG, f"{kind}_int32_int8_3x9", kind, rows32(3, 9), None, params(kind, 9, 8, True),
                            flags=1))
        jobs.append(vec_job(CFG, f"{kind}_int8_q16_2x16", kind, edge_operands(2, 16, seed=121)[0], None,
                            params(kind, 16, 16, False), flags=2))
        jobs.append(vec_job(CFG, f"{kind}_int32_single_element", kind, rows32(3, 1), None, params(kind, 1, 16, True),
                            flags=3))
    # The longest int32 row whose block (16-byte channel records) and int16 result fit the 16 KiB scratchpad with
    # the job layout: 690.
    jobs.append(vec_job(CFG, "layernorm_int32_row_690", "layernorm", rows32(1, 690), None,
                        params("layernorm", 690, 16, True), flags=3))
    for j in jobs:
        assert j.expect_status == 0, (j.name, j.expect_status)
        lo, hi = j.c_range
        np.testing.assert_array_equal(j.expect_mem[lo:hi], j.expect_c, err_msg=j.name)
    x = rows32(2, 16)
    block = param_block("layernorm", params("layernorm", 16, 16, True))
    page = vec_layout(CFG, 2, 16, nparam=block.size, elem=(4, 1, 2))["page"] * 256
    bad_frac = block.copy()
    bad_frac[8] = 27                                      # var_frac_bits odd
    last_page = CFG.spad_bytes // 256 - 1

    def case(name, flags, blk, code, fault, **kw):
        program = vec_program(CFG, "layernorm", 2, 16, flags=flags, params_bytes=blk.size, **kw)
        return name, program, _image(x, None, blk, 64), code, fault
    cases = [
        case("layernorm_flags_bit_2", 4 | 3, block, ErrorCode.ILLEGAL_INSTRUCTION, 0),
        case("layernorm_int32_bad_header", 3, bad_frac, ErrorCode.BAD_PARAM, page),
        # 16 + 144 + 16 * 16 = 416 bytes from the last page run past the scratchpad (with int8 rows 16 + 8 * 16 fit)
        case("layernorm_int32_block_past_spad", 3, block, ErrorCode.LOCAL_RANGE, last_page * 256,
             param_page=last_page),
        case("layernorm_int32_rows_past_spad", 3, block, ErrorCode.LOCAL_RANGE, CFG.spad_bytes - 64,
             src_addr=CFG.spad_bytes - 64),
    ]
    for name, program, image, code, fault in cases:
        job = raw_job(CFG, name, program, image)
        assert (job.expect_status, job.expect_fault) == (code, fault), (name, job.expect_status, job.expect_fault)
        jobs.append(job)
    return jobs


def _interp_act_jobs():
    """vec.act flags bit 1 (16-bit GELU / SiLU, 1025-entry interpolated tables): every segment boundary, the int16
    extremes, the ISA's longest row (4095, in place), single elements; then its error cases."""
    from npuforge.golden.models.intops import INTERP_SHIFT, gelu_float, interp_table, silu_float
    gelu = interp_table(gelu_float, 1 / 2048, 1 / 4096)
    silu = interp_table(silu_float, 1 / 1024, 1 / 8192)
    bounds = np.array([b + d for b in range(-32768, 32768, 1 << INTERP_SHIFT) for d in (-1, 0)][1:] + [32767])
    bounds = bounds.astype(np.int16)
    rows = bounds[:2048].reshape(4, 512)
    jobs = [vec_job(CFG, "gelu16_segment_boundaries", "act", rows, None, gelu, flags=2),
            vec_job(CFG, "silu16_segment_boundaries", "act", bounds[::-1].reshape(4, 512).copy(), None, silu,
                    flags=3),
            vec_job(CFG, "gelu16_longest_row_4095_in_place", "act",
                    np.random.default_rng(140).integers(-32768, 32768, (1, 4095)).astype(np.int16), None, gelu,
                    flags=2, in_place=True),
            vec_job(CFG, "silu16_single_elements", "act", np.array([[-32768], [32767], [0]], np.int16), None, silu,
                    flags=3)]
    for j in jobs:
        assert j.expect_status == 0, (j.name, j.expect_status)
        lo, hi = j.c_range
        np.testing.assert_array_equal(j.expect_mem[lo:hi], j.expect_c, err_msg=j.name)
    x = rows[:2, :16].copy()
    block = param_block("act", gelu)
    last_page = CFG.spad_bytes // 256 - 1
    cases = [("act16_flags_bit_2", vec_program(CFG, "act", 2, 16, flags=6, params_bytes=block.size),
              ErrorCode.ILLEGAL_INSTRUCTION, 0),
             # the 2050-byte table from 8 pages before the end runs 2 bytes past the scratchpad
             ("act16_table_past_spad", vec_program(CFG, "act", 2, 16, flags=2, params_bytes=block.size,
                                                   param_page=last_page - 7), ErrorCode.LOCAL_RANGE,
              (last_page - 7) * 256)]
    for name, program, code, fault in cases:
        job = raw_job(CFG, name, program, _image(x, None, block, 64))
        assert (job.expect_status, job.expect_fault) == (code, fault), (name, job.expect_status, job.expect_fault)
        jobs.append(job)
    return jobs


@pytest.mark.cocotb
def test_wide_vector_ops_bit_exact_and_errors():
    """The wide softmax, residual and norm jobs and the 16-bit GELU / SiLU, then a correct uint8 softmax and int8
    residual on the same instance after the errors."""
    require_simulator("verilator")
    a, b = edge_operands(3, 21, seed=82)
    after = [vec_job(CFG, "softmax_uint8_after_errors", "softmax", a, None, softmax_params(0.06, input_bits=8),
                     flags=1),
             vec_job(CFG, "residual_int8_after_errors", "residual", a, b, residual_params(0.05, 0.03, 0.06))]
    jobs = (_wide_softmax_jobs() + _wide_residual_jobs() + _wide_norm_jobs() + _interp_act_jobs()
            + _rope16_jobs() + _gate16_jobs() + after)
    results = run_jobs(CFG, jobs, latency=4, stall=0.2, seed=83)
    assert [r["error"] for r in results] == [j.expect_status for j in jobs]
    assert all(r["irq_status"] == (3 if j.expect_status else 1) for r, j in zip(results, jobs))
    # Throughput of the wide variants (8 x 128, once and three times; no stalls): build/bench/npu_vector_wide.json,
    # beside gen.perf.program.vec_cycles' prediction, which must be within 3 % per instruction (simulated cycles are
    # deterministic; the terms were fitted on the NPU, gen.isa.ops).
    tput, variants = _wide_throughput_jobs()
    results = run_jobs(CFG, tput, latency=4, stall=0.0, seed=84)
    assert all(r["error"] == 0 for r in results)
    by_name = {r["name"]: r for r in results}
    bench = {"lanes": min(CFG.vector_lanes, CFG.axi_data_bits // 8), "word_bytes": CFG.axi_data_bits // 8,
             "rows": 8, "row_len": 128, "ops": {}}
    for name, (op, flags) in variants.items():
        per_instr = (by_name[f"tput_{name}_x3"]["counters"]["BUSY_CYCLES"]
                     - by_name[f"tput_{name}_x1"]["counters"]["BUSY_CYCLES"]) / 2
        model = vec_cycles(VecOp(op, m=8, n=128, src_addr=0, dst_addr=0, flags=flags), CFG)
        bench["ops"][name] = {"op": op, "flags": flags, "cycles_per_instruction": per_instr,
                              "elements_per_cycle": 8 * 128 / per_instr, "model_cycles": model,
                              "model_error": (model - per_instr) / per_instr}
    out = BUILD / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "npu_vector_wide.json").write_text(json.dumps(bench, indent=1))
    for name, row in bench["ops"].items():
        assert abs(row["model_error"]) <= 0.03, (name, row)


def _rope16_jobs():
    """vec.rope flags bits 6 / 7 (the Llama layers' int16 q): int16 -> int16 prefill of 8 tokens x 3 heads from
    position 0, decode of 3 heads at the table's last position, int16 -> int8, int8 -> int16, head_dim 256 (512-byte
    rows), the int16 extremes; then its error cases."""
    rng = np.random.default_rng(170)
    table = rope_table(32, 40)

    def q16(m, n):
        x = rng.integers(-32768, 32768, (m, n))
        x[0, :4] = [-32768, 32767, -32768, 32767]
        if m > 1:
            x[1, :n // 2], x[1, n // 2:] = 32767, 32767        # (32767, 32767) pairs saturate at 45 degrees
        return x.astype(np.int16)
    x8, _ = edge_operands(4, 32, seed=171)
    jobs = [vec_job(CFG, "rope16_prefill_8x3_pos0", "rope", q16(24, 32), None, table, flags=0xC2, imm=0),
            vec_job(CFG, "rope16_decode_3_heads_last_position", "rope", q16(3, 32), None, table, flags=0xC2, imm=39),
            vec_job(CFG, "rope16_to_int8_6x1_pos10", "rope", q16(6, 32), None, table, flags=0x40, imm=10),
            vec_job(CFG, "rope8_to_int16_2x2_pos3", "rope", x8, None, table, flags=0x81, imm=3),
            vec_job(CFG, "rope16_head_dim_256", "rope", q16(2, 256), None, rope_table(256, 9, frac_bits=13),
                    flags=0xC0, imm=6)]
    for j in jobs:
        assert j.expect_status == 0, (j.name, j.expect_status)
        lo, hi = j.c_range
        np.testing.assert_array_equal(j.expect_mem[lo:hi], j.expect_c, err_msg=j.name)
    x = q16(2, 32)
    block = pack_rope_params(*table)
    cases = [
        ("rope16_17_rows_2_heads", vec_program(CFG, "rope", 17, 32, flags=0xC1, params_bytes=block.size),
         ErrorCode.ILLEGAL_INSTRUCTION, 0),
        # 2 int16 rows of 64 bytes from 64 bytes before the end of the scratchpad run past it (int8 rows would fit)
        ("rope16_rows_past_spad", vec_program(CFG, "rope", 2, 32, flags=0xC0, params_bytes=block.size,
                                              src_addr=CFG.spad_bytes - 64), ErrorCode.LOCAL_RANGE,
         CFG.spad_bytes - 64),
        ("rope16_dst_past_spad", vec_program(CFG, "rope", 2, 32, flags=0x80, params_bytes=block.size,
                                             dst_addr=CFG.spad_bytes - 64), ErrorCode.LOCAL_RANGE,
         CFG.spad_bytes - 64),
    ]
    for name, program, code, fault in cases:
        job = raw_job(CFG, name, program, _image(x, None, block, 128))
        assert (job.expect_status, job.expect_fault) == (code, fault), (name, job.expect_status, job.expect_fault)
        jobs.append(job)
    return jobs


def _gate16_jobs():
    """vec.gate flags bits 0 / 1 (the Llama layers' SwiGLU of int16 silu(gate) and up): int16 -> int16 with the
    extremes paired and products of +-2^15 at p / 2^16 (ties), int16 -> int8, int8 -> int16, the requant shift at both
    ends, the longest int16 row the job layout holds (1365: three int16 operands in 8 KiB); then its error cases."""
    rng = np.random.default_rng(190)

    def pair(m, n):
        a = rng.integers(-32768, 32768, (m, n))
        b = rng.integers(-32768, 32768, (m, n))
        a[0, :8] = [-32768, -32768, 32767, 32767, 256, -256, 1, -1]
        b[0, :8] = [-32768, 32767, -32768, 32767, 128, 128, -1, 1]
        return a.astype(np.int16), b.astype(np.int16)
    swiglu = gate_params(2.0 ** -12, 2.0 ** -10, 2.0 ** -9, out_bits=16)
    a, b = pair(4, 37)
    a8, b8 = edge_operands(3, 21, seed=191)
    jobs = [vec_job(CFG, "gate16_4x37", "gate", a, b, swiglu, flags=3),
            vec_job(CFG, "gate16_ties_p_over_2_16", "gate", a, b, GateParams(1 << 30, 15, out_bits=16), flags=3),
            vec_job(CFG, "gate16_shift_m30_saturating", "gate", a, b, GateParams(1 << 30, -30, out_bits=16), flags=3),
            vec_job(CFG, "gate16_shift_31", "gate", a, b, GateParams((1 << 31) - 1, 31, out_bits=16), flags=3),
            vec_job(CFG, "gate16_to_int8", "gate", a, b, gate_params(2.0 ** -12, 2.0 ** -10, 2.0 ** -2), flags=1),
            vec_job(CFG, "gate8_to_int16", "gate", a8, b8, gate_params(0.05, 0.03, 0.0005, out_bits=16), flags=2),
            vec_job(CFG, "gate16_row_1365", "gate", *pair(1, 1365), swiglu, flags=3)]
    for j in jobs:
        assert j.expect_status == 0, (j.name, j.expect_status)
        lo, hi = j.c_range
        np.testing.assert_array_equal(j.expect_mem[lo:hi], j.expect_c, err_msg=j.name)
    a, b = pair(2, 16)
    block = param_block("gate", swiglu)
    page = vec_layout(CFG, 2, 16, nparam=8, elem=(2, 2, 2))["page"] * 256
    cases = [
        ("gate16_flags_bit_2", vec_program(CFG, "gate", 2, 16, flags=7), ErrorCode.ILLEGAL_INSTRUCTION, 0),
        ("gate16_imm_set", vec_program(CFG, "gate", 2, 16, flags=3, imm=1), ErrorCode.ILLEGAL_INSTRUCTION, 0),
        # 2 int16 rows of 32 bytes from 32 bytes before the end run past the scratchpad (int8 rows would fit)
        ("gate16_src2_past_spad", vec_program(CFG, "gate", 2, 16, flags=3, src2_addr=CFG.spad_bytes - 32),
         ErrorCode.LOCAL_RANGE, CFG.spad_bytes - 32),
    ]
    for name, program, code, fault in cases:
        job = raw_job(CFG, name, program, _image(a, b, block, 64))
        assert (job.expect_status, job.expect_fault) == (code, fault), (name, job.expect_status, job.expect_fault)
        jobs.append(job)
    bad = raw_job(CFG, "gate16_bad_record", vec_program(CFG, "gate", 2, 16, flags=3),
                  _image(a, b, param_block("gate", GateParams((1 << 30) - 1, 0, out_bits=16)), 64))
    assert (bad.expect_status, bad.expect_fault) == (ErrorCode.BAD_PARAM, page)
    return jobs + [bad]


def _wide_throughput_jobs():
    from npuforge.gen.isa.ops import SoftmaxBlock, WideResidualParams
    from npuforge.golden.models.intops import IDENTITY_REQUANT, gelu_float, interp_table, wide_norm_params
    from npuforge.golden.models.llama import SCORE_SCALE
    rng = np.random.default_rng(150)
    m, n = 8, 128
    x32 = (rng.integers(-(1 << 31), 1 << 31, (m, n)) >> 12).astype(np.int32)
    x16 = rng.integers(-32768, 32768, (m, n)).astype(np.int16)
    ln = wide_norm_params(lambda s, **kw: layernorm_params(s, rng.uniform(0.5, 1.5, n), rng.uniform(-0.5, 0.5, n),
                                                             0.0001, **kw), 2.0 ** -12, out_bits=16)
    variants = {
        "softmax_int32_q15_padded": ("softmax", 4 | 8 | 16, x32, None,
                                     SoftmaxBlock(softmax_params(SCORE_SCALE, input_bits=32), 100)),
        "residual_int32": ("residual", 0x35, x32, x32 >> 1, WideResidualParams(*IDENTITY_REQUANT)),
        "layernorm_int32_q16": ("layernorm", 3, x32, None, ln),
        "gelu16": ("act", 2, x16, None, interp_table(gelu_float, 1 / 2048, 1 / 4096)),
        # 4 positions x 2 heads of head_dim 128, int16 -> int16 (q of the a16 schemes) and int16 -> int8
        "rope16": ("rope", ROPE_IN16 | ROPE_OUT16 | 1, x16, None, rope_table(n, 8)),
        "rope16_to_int8": ("rope", ROPE_IN16 | 1, x16, None, rope_table(n, 8)),
        "gate16": ("gate", GATE_IN16 | GATE_OUT16, x16, x16[::-1].copy(),
                   gate_params(2.0 ** -12, 2.0 ** -10, 2.0 ** -9, out_bits=16)),
    }
    jobs = []
    for name, (op, flags, a, b, params) in variants.items():
        for rep in (1, 3):
            jobs.append(vec_job(CFG, f"tput_{name}_x{rep}", op, a, b, params, repeat=rep, flags=flags))
    return jobs, {name: (v[0], v[1]) for name, v in variants.items()}
