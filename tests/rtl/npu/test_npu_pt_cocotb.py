"""The -pt schemes' additions (issue #13) on the NPU's Verilog (fast harness, the CFG16 Verilator build shared with
tests/rtl/npu/test_npu_qkt_cocotb.py): vec.gate flags 5 (the exact int32 SwiGLU product), vec.rmsnorm flags 7 (the
token scale only: int16 rows of token_shift(x, 16) and the k_r bytes) and VEC_REQUANT.row_shift (requant_wide(acc, M,
shift - k)), alone with edge values and chained as the -pt down projection (int8 and Q4_1 block-scaled weights, the
latter through the wide requant). Every byte of DRAM equals the ISA simulator's, and the ISA simulator's results equal
the golden functions (token_shift, requant_wide, linear_apply(token_bits=16)); illegal flag combinations give
ILLEGAL_INSTRUCTION, out-of-range k_r BAD_PARAM, misplaced k bytes LOCAL_RANGE, each with an interrupt, and the next
program runs. The stall-free cycles of each new instruction are measured against gen.perf.program's model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from npuforge.gen.isa.isasim import Window
from npuforge.gen.isa.layout import pack_requant_params
from npuforge.gen.perf.program import instruction_cycles, program_cycles
from npuforge.golden.models.intops import requant_wide, token_shift
from npuforge.sim.harness.npu_run import layer_job, program_job, run_jobs
from npuforge.spec.isa import DmaLoad, DmaStore, ErrorCode, Fence, Halt, VecOp, VecRequant, encode, encode_program
from npuforge.spec.vector_ops import GATE_PRODUCT_FLAGS, RMSNORM_FLAGS
from tests.conftest import require_simulator
from tests.gen.isa.pt_chain import dram_image, le_bytes, pt_down_program
from tests.rtl.npu.test_npu_qkt_cocotb import CFG16

WIN = [Window(0, 1 << 15)]
A_EXT, B_EXT, P_EXT, K_EXT, C_EXT = 0x1000, 0x2000, 0x3000, 0x3800, 0x4000
I32_MIN, I32_MAX = -(1 << 31), (1 << 31) - 1


def _read(job, addr: int, shape, dtype) -> np.ndarray:
    """The ISA simulator's DRAM (which the RTL's must equal byte for byte) as an array."""
    n = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return job.expect_mem[addr:addr + n].view(dtype).reshape(shape)


# -- the three instructions alone, edge values ---------------------------------------------------------------------
def _gate_program(m, n, param_page=4095, flags=GATE_PRODUCT_FLAGS):
    return [DmaLoad("spad", 0, A_EXT, 2 * n, m, 2 * n), DmaLoad("spad", 0x800, B_EXT, 2 * n, m, 2 * n), Fence(load=0),
            VecOp("gate", m=m, n=n, src_addr=0, dst_addr=0x1000, src2_addr=0x800, flags=flags, param_page=param_page),
            Fence(vector=0), DmaStore("spad", 0x1000, C_EXT, 4 * n, m, 4 * n), Halt()]


def _gate_job(m, n, seed):
    """int16 x int16 -> int32 a * b, the extremes paired (-32768 * -32768 = 2^30); param_page past the scratchpad
    (the product reads no block)."""
    rng = np.random.default_rng(seed)
    a, b = rng.integers(-32768, 32768, (2, m, n)).astype(np.int16)
    a[0, :6], b[0, :6] = [-32768, -32768, 32767, 32767, 0, -1], [-32768, 32767, -32768, 32767, -32768, 1]
    job = program_job(CFG16, f"gate_product_{m}x{n}", encode_program(_gate_program(m, n)),
                      dram_image(1 << 15, a=(A_EXT, le_bytes(a)), b=(B_EXT, le_bytes(b))), WIN)
    np.testing.assert_array_equal(_read(job, C_EXT, (m, n), "<i4"), a.astype(np.int64) * b)
    return job


def _token_rows(m, n, seed):
    """int32 rows whose k_r covers 0 (max |x| = 2^15 - 1), 1 (2^15), 16 (2^31 - 1), 17 (-2^31), zero rows, ties."""
    rng = np.random.default_rng(seed)
    x = rng.integers(I32_MIN, I32_MAX + 1, (m, n))
    x[0] = rng.integers(-32767, 32768, n)
    x[0, 0] = 32767
    x[1] = 0
    x[2, :] = 5
    x[2, 1] = 32768
    x[3] = np.where(x[3] == I32_MIN, 0, x[3])
    x[3, 2] = I32_MAX
    x[4, 3] = I32_MIN
    x[5] = 3 << 9                                  # k = 10: (3 * 2^9 + 2^9) >> 10 = 2, a tie rounded up
    x[5, 1] = -(3 << 9)
    x[5, 2] = 1 << 24
    return x.astype(np.int32)


def _token_program(m, n, k_at=0x1800, **fields):
    return [DmaLoad("spad", 0, A_EXT, 4 * n, m, 4 * n), DmaLoad("spad", 0x1800, K_EXT, 16, 1, 16), Fence(load=0),
            VecOp("rmsnorm", m=m, n=n, src_addr=0, dst_addr=0x1000, src2_addr=k_at, flags=RMSNORM_FLAGS, **fields),
            Fence(vector=0), DmaStore("spad", 0x1000, C_EXT, 2 * n, m, 2 * n),
            DmaStore("spad", 0x1800, C_EXT + 0x800, 16, 1, 16), Halt()]


def _token_job(m, n, seed):
    x = _token_rows(m, n, seed)
    job = program_job(CFG16, f"token_scale_{m}x{n}", encode_program(_token_program(m, n)),
                      dram_image(1 << 15, x=(A_EXT, le_bytes(x)), k=(K_EXT, np.full(16, 0x5A, np.uint8))), WIN)
    y, k = token_shift(x, 16)
    np.testing.assert_array_equal(_read(job, C_EXT, (m, n), "<i2"), y)
    got_k = job.expect_mem[C_EXT + 0x800:C_EXT + 0x810]
    np.testing.assert_array_equal(got_k[:m], k.ravel())
    assert {0, 1, 16, 17} <= set(int(v) for v in k.ravel()) and (got_k[m:] == 0x5A).all()
    return job


def _requant_program(m, n, *, out_bits=16, k_at=0x1800, page=0x14, **fields):
    ob = out_bits // 8
    return [DmaLoad("acc", 0, A_EXT, 4 * n, m, 4 * n), DmaLoad("spad", page * 256, P_EXT, 8 * n, 1, 8 * n),
            DmaLoad("spad", 0x1800, K_EXT, 32, 1, 32), Fence(load=0),
            VecRequant(m, n, 0, 0x1000, page, row_shift=1, bias_addr=k_at, out16=int(out_bits == 16),
                       out32=int(out_bits == 32), **fields),
            Fence(vector=0), DmaStore("spad", 0x1000, C_EXT, ob * n, m, ob * n), Halt()]


def _requant_image(acc, mult, shift, k):
    return dram_image(1 << 15, acc=(A_EXT, le_bytes(acc.astype(np.int32))), p=(P_EXT, pack_requant_params(mult, shift)),
                  k=(K_EXT, np.asarray(k, np.uint8)))


def _requant_job(out_bits, seed):
    """k_r = 0..16, total shifts 1 (k 16 on shift -14) and 62 (k 0 on shift 31), int32 extremes."""
    rng = np.random.default_rng(seed)
    m, n = 17, 12
    acc = rng.integers(I32_MIN, I32_MAX + 1, (m, n))
    acc[0, :3], acc[16, :3] = [I32_MIN, I32_MAX, 0], [I32_MIN, I32_MAX, -1]
    mult = rng.integers(1 << 30, 1 << 31, n)
    mult[0] = (1 << 31) - 1
    shift = rng.integers(-14, 32, n)
    shift[:2] = [-14, 31]
    k = np.arange(m) % 17
    job = program_job(CFG16, f"requant_row_shift_out{out_bits}", encode_program(_requant_program(
        m, n, out_bits=out_bits)), _requant_image(acc, mult, shift, k), WIN)
    want = requant_wide(acc, mult, shift[None, :] - k[:, None], out_bits=out_bits)
    np.testing.assert_array_equal(_read(job, C_EXT, (m, n), want.dtype.newbyteorder("<")), want)
    return job


# -- the -pt down projection as a layer program --------------------------------------------------------------------
def _chain_job(weights: str, seed: int):
    """g = a * up (gate 5), (g', k) = token_shift(g, 16) (rmsnorm 7), y = requant_wide(g' @ W, M, shift - k)
    (VEC_REQUANT.row_shift; wide for the Q4_1 blocks) == golden linear_apply(a * up, lin, token_bits=16)."""
    rng = np.random.default_rng(seed)
    s, ffn = 7, 64
    a, up = rng.integers(-32768, 32768, (2, s, ffn))
    a[0, :4], up[0, :4] = [-32768, -32768, 32767, 5], [-32768, 32767, 32767, 5]
    a[1] = 0                                                  # a zero row: k = 0
    up[2] = rng.integers(-40, 40, ffn)                        # a small row: k = 0
    prog, want = pt_down_program(CFG16, a, up, weights, rng)
    np.testing.assert_array_equal(prog.reference()["y"].view("<i4"), want)      # the job's golden C is this
    return layer_job(prog, f"pt_down_{weights}", "y"), prog


# -- faults --------------------------------------------------------------------------------------------------------
def _fault_jobs():
    """(job, expected status, expected fault address) of every illegal -pt form."""
    x = _token_rows(8, 16, 5)
    tok_img = dram_image(1 << 15, x=(A_EXT, le_bytes(x)), k=(K_EXT, np.zeros(16, np.uint8)))
    a16 = np.ones((2, 8), np.int16)
    gate_img = dram_image(1 << 15, a=(A_EXT, le_bytes(a16)), b=(B_EXT, le_bytes(a16)))
    m, n = 8, 4
    acc = np.arange(m * n).reshape(m, n) * 1000
    mult, shift = np.full(n, 1 << 30), np.array([0, 5, -14, 3])
    k = np.array([0, 1, 2, 3, 15, 16, 0, 0] + [0] * 24)
    bad_k, t0_shift, bad_rec = k.copy(), shift.copy(), mult.copy()
    bad_k[3] = 17
    t0_shift[2] = -15                                     # 31 - 15 - 16 = 0 on row 5
    bad_rec[1] = (1 << 30) - 1
    rq = dict(m=m, n=n)
    cases = [
        ("gate_flags4", encode_program(_gate_program(2, 8, flags=4)), gate_img, ErrorCode.ILLEGAL_INSTRUCTION, 0),
        ("gate_flags7", encode_program(_gate_program(2, 8, flags=7)), gate_img, ErrorCode.ILLEGAL_INSTRUCTION, 0),
        ("rms_flags5", encode_program(_token_program(8, 16)[:3] + [VecOp(
            "rmsnorm", m=8, n=16, src_addr=0, dst_addr=0x1000, flags=5), Halt()]), tok_img,
         ErrorCode.ILLEGAL_INSTRUCTION, 0),
        ("token_param_page", encode_program(_token_program(8, 16, param_page=1)), tok_img,
         ErrorCode.ILLEGAL_INSTRUCTION, 0),
        ("token_imm", encode_program(_token_program(8, 16, imm=3)), tok_img, ErrorCode.ILLEGAL_INSTRUCTION, 0),
        ("token_k_misaligned", encode_program(_token_program(8, 16, k_at=0x1801)), tok_img, ErrorCode.LOCAL_RANGE,
         0x1801),
        ("token_k_past_spad", encode_program(_token_program(8, 16, k_at=CFG16.spad_bytes)), tok_img,
         ErrorCode.LOCAL_RANGE, CFG16.spad_bytes),
        ("rs_k17", encode_program(_requant_program(**rq)), _requant_image(acc, mult, shift, bad_k),
         ErrorCode.BAD_PARAM, 0x1800 + 3),
        ("rs_t0", encode_program(_requant_program(**rq)), _requant_image(acc, mult, t0_shift, k), ErrorCode.BAD_PARAM,
         0x1800 + 5),
        ("rs_record_first", encode_program(_requant_program(**rq)), _requant_image(acc, bad_rec, shift, bad_k),
         ErrorCode.BAD_PARAM, 0x14 * 256 + 8),
        ("rs_misaligned", encode_program(_requant_program(**rq, k_at=0x1804)), _requant_image(acc, mult, shift, k),
         ErrorCode.LOCAL_RANGE, 0x1804),
        ("rs_zero_point_first", encode_program(_requant_program(**rq, out_bits=8, zero_point=300)),
         _requant_image(acc, mult, shift, bad_k), ErrorCode.BAD_PARAM, 0),
    ]
    # bias with row_shift: the builder refuses it, so the word is patched (w0[9] set).
    word = bytearray(encode(VecRequant(m, n, 0, 0x1000, 0x14, row_shift=1, bias_addr=0x1800, out16=1)))
    word[1] |= 0x02
    prog = _requant_program(**rq)
    both = encode_program(prog[:4]) + bytes(word) + encode_program(prog[5:])
    cases.append(("rs_with_bias", both, _requant_image(acc, mult, shift, k), ErrorCode.ILLEGAL_INSTRUCTION, 0))
    out = []
    for name, program, image, code, fault in cases:
        job = program_job(CFG16, name, program, image, WIN)
        assert (job.expect_status, job.expect_fault) == (code, fault), name      # the ISA simulator agrees
        out.append(job)
    return out


@pytest.mark.cocotb
def test_pt_instructions_bit_exact_and_faults():
    require_simulator("verilator")
    good = [_gate_job(3, 21, 1), _gate_job(1, 64, 2), _token_job(8, 16, 3), _token_job(7, 40, 4),
            *[_requant_job(ob, 10 + ob) for ob in (8, 16, 32)], _chain_job("int8", 20)[0], _chain_job("q4_1", 21)[0]]
    faults = _fault_jobs()
    after = _gate_job(2, 9, 6)
    results = run_jobs(CFG16, good + faults + [after], harness="fast", latency=3, stall=0.2, seed=23)
    bad = []
    for job, res in zip(good + [after], results[:len(good)] + results[-1:]):
        # layer jobs also carry the golden operators' bytes of their output (golden_mismatch_bytes)
        ok = (not res["timeout"] and res["error"] == 0 and res["isasim_mismatch_bytes"] == 0
              and res.get("golden_mismatch_bytes", 0) == 0 and res["dram_protocol_error"] == 0
              and res["tail"] == job.expect_tail and (job.expect_c is None or "golden_mismatch_bytes" in res))
        bad += [] if ok else [(job.name, res)]
    for job, res in zip(faults, results[len(good):-1]):
        ok = (not res["timeout"] and res["error"] == job.expect_status and res["fault_addr"] == job.expect_fault
              and res["isasim_mismatch_bytes"] == 0 and res["irq_status"] == 3)
        bad += [] if ok else [(job.name, res)]
    assert not bad, bad


#: Programs (and the index of their -pt instruction) whose stall-free cycles are measured: the instruction's own cycles
#: are those of its loads + instruction + FENCE less those of the loads alone (written to build/pt_rtl_cycles.json
#: for gen.isa.op_cycles' fit).
PT_CYCLE_CASES = {
    "gate_product_3x21": (_gate_program(3, 21), 3),
    "gate_product_8x64": (_gate_program(8, 64), 3),
    "token_scale_8x16": (_token_program(8, 16), 3),
    "token_scale_7x40": (_token_program(7, 40), 3),
    "token_scale_4x256": (_token_program(4, 256), 3),
    "requant_row_shift_17x12": (_requant_program(17, 12), 4),
    "requant_row_shift_4x64": (_requant_program(4, 64), 4),
}


@pytest.mark.cocotb
def test_pt_instruction_cycles_match_the_model():
    """Without DRAM latency or stalls: each program within 3 % of gen.perf.program's model, and the new
    instruction's own cycles (program minus the program without it) beside the model's instruction_cycles."""
    require_simulator("verilator")
    rng = np.random.default_rng(40)
    image = rng.integers(0, 256, 1 << 15).astype(np.uint8)
    image[P_EXT:P_EXT + 8 * 64] = pack_requant_params(np.full(64, 1 << 30), np.full(64, 0))
    image[K_EXT:K_EXT + 32] = rng.integers(0, 17, 32)
    jobs = []
    # The results are not stored: the program without the instruction would store a stale scratchpad.
    programs = {name: (program[:at + 2] + [Halt()], program[:at] + [Halt()], program[at])
                for name, (program, at) in PT_CYCLE_CASES.items()}
    for name, (with_, without, _) in programs.items():
        jobs.append(program_job(CFG16, name, encode_program(with_), image, WIN))
        jobs.append(program_job(CFG16, name + "_without", encode_program(without), image, WIN))
    results = run_jobs(CFG16, jobs, harness="fast", latency=0, stall=0.0, seed=3)
    figures = {}
    for i, (name, (program, _, instr)) in enumerate(programs.items()):
        with_, without = results[2 * i], results[2 * i + 1]
        assert with_["error"] == 0 and without["error"] == 0, (name, with_, without)
        rtl = with_["counters"]["BUSY_CYCLES"]
        model = program_cycles(encode_program(program), CFG16, latency=0, harness="fast").cycles
        figures[name] = {"rtl_instruction": rtl - without["counters"]["BUSY_CYCLES"],
                         "model_instruction": instruction_cycles(instr, CFG16),
                         "rtl_program": rtl, "model_program": model}
        print(name, figures[name])
    out = Path("build") / "pt_rtl_cycles.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(figures, indent=1))
    for name, f in figures.items():
        assert abs(f["model_program"] - f["rtl_program"]) <= 0.03 * f["rtl_program"], (name, f)
