"""gen.perf.program: instruction and whole-program cycle model, hand-computed cases and agreement with the NPU RTL.

The RTL tests run compiled GEMMs (ragged shapes, forced multi-tile schedules, int8 / w4a8 / int4, int16 output)
and single instructions on the tests/npu configuration (its Verilator build is shared) at DRAM latencies 0 and
4, without random stalls (stalls make the RTL cycle count vary), and require |model - RTL| <= 3 % of RTL.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from npuforge.cli.main import main as cli_main
from npuforge.gen.isa.compiler import lower_gemm, plan_gemm
from npuforge.gen.config.array import ArrayConfig
from npuforge.spec.isa import VEC_EXECUTABLE, DmaLoad, DmaStore, Fence, Halt, MatMul, Nop, VecOp, VecRequant, encode_program
from npuforge.gen.isa.isasim import Window, pack_requant_params
from npuforge.gen.config.npu import NPUConfig
from npuforge.gen.perf.model import gemm_cycles
from npuforge.gen.perf.program import (dma_bursts, fetch_cycles, instruction_cycles, matmul_cycles, program_cycles,
                              requant_cycles)
from tests.conftest import require_simulator

CFG = NPUConfig(array=ArrayConfig(rows=4, cols=4), spad_bytes=16384, spad_banks=2, acc_bytes=4096,
                axi_data_bits=64, windows=2)


# -- hand-computed cases (no simulator) -------------------------------------------------------------------------
def test_dma_bursts_split_rows_at_4k_and_256_beats():
    # 64 aligned bytes on a 64-bit bus: one burst of 8 beats.
    assert dma_bursts(DmaLoad("spad", 0, 0x1000, 64, 1, 64), 8) == [(8, 0)]
    # 512 bytes from 0x1F00 cross the 4 KiB boundary at 0x2000: two bursts of 32 beats.
    assert dma_bursts(DmaLoad("spad", 0, 0x1F00, 512, 1, 512), 8) == [(32, 0), (32, 0)]
    # 4096 bytes on 8-byte beats: 512 beats, at most 256 per burst (2 KiB boundaries).
    assert dma_bursts(DmaLoad("spad", 0, 0x1000, 4096, 1, 4096), 8) == [(256, 0), (256, 0)]
    # On a 128-bit bus the 4 KiB boundary is the limit: 4096 aligned bytes are one burst of 256 beats.
    assert dma_bursts(DmaStore("spad", 0, 0x1000, 4096, 1, 4096), 16) == [(256, 0)]
    # 100 bytes from 0x1003: words 0x1000..0x1060 = 13 beats; the first beat is realigned (not written), so 13
    # local words need one flush cycle. Stores never flush.
    assert dma_bursts(DmaLoad("spad", 0, 0x1003, 100, 1, 100), 8) == [(13, 1)]
    assert dma_bursts(DmaStore("spad", 0, 0x1003, 100, 1, 100), 8) == [(13, 0)]
    # Rows of 20 bytes at stride 100 from 0x1000: offsets alternate 0 / 4 -> 3 beats each, flush on odd rows.
    assert dma_bursts(DmaLoad("spad", 0, 0x1000, 100, 4, 20), 8) == [(3, 0), (3, 1), (3, 0), (3, 1)]


def test_single_dma_load_of_n_bytes():
    # 64-bit bus, latency L: first AR 5 cycles after issue, first beat L + 2 later, one beat per cycle,
    # done 3 cycles after the last beat: 5 + L + 2 + (N/8 - 1) + 3.
    for n_bytes, lat in ((8, 0), (64, 0), (256, 0), (64, 4), (2048, 16)):
        ld = DmaLoad("spad", 0, 0x1000, n_bytes, 1, n_bytes)
        assert instruction_cycles(ld, CFG, latency=lat) == 5 + lat + 2 + n_bytes // 8 - 1 + 3
    # Whole program [load 64 B, HALT] at latency 0: fetch 2 + 0 + 2 beats + 3 decode = 7; load issued at 7, done at
    # 24; HALT fetched from 8, held at 15, DRAIN until 24, DONE at 25: 26 cycles START..DONE.
    assert fetch_cycles(CFG, latency=0) == 7
    assert program_cycles([DmaLoad("spad", 0, 0x1000, 64, 1, 64), Halt()], CFG).cycles == 26
    # Four short rows keep up to 4 bursts in flight: with latency 0 they stream back to back.
    assert instruction_cycles(DmaLoad("spad", 0, 0x1000, 64, 4, 64), CFG) == 5 + 2 + 32 - 1 + 3


def test_store_and_long_latency_short_bursts():
    # A store's data leaves at least one cycle after its AW: latency 0 behaves like 1.
    st = DmaStore("spad", 0, 0x2000, 64, 1, 64)
    assert instruction_cycles(st, CFG, latency=0) == 5 + 1 + 2 + 8 - 1 + 3
    assert instruction_cycles(st, CFG, latency=4) == 5 + 4 + 2 + 8 - 1 + 3
    # 32 one-beat rows at latency 16: the AXI RAM holds 3 bursts, so AR j waits for the data of AR j-3, one
    # round trip of 16 + 2 cycles. Burst 31 = burst 1 + 10 round trips: AR at 5 + 1 + 10 * 18, its beat 18 later,
    # done 3 after (the RTL measured the same 207: BUSY 229 = issue 20 + 207 + 2).
    rows8 = DmaLoad("spad", 0, 0x1000, 8, 32, 8)
    assert instruction_cycles(rows8, CFG, latency=0) == 5 + 2 + 32 - 1 + 3
    assert instruction_cycles(rows8, CFG, latency=16) == 5 + 1 + 10 * 18 + 18 + 3


def test_lone_matmul_follows_the_array_model():
    for mode, (m, k, n) in (("int8", (17, 33, 21)), ("w4a8", (5, 7, 6)), ("int8", (1, 1, 1))):
        mm = MatMul(mode, "ws", 0, m, k, n, 0, 4096, 0)
        array = gemm_cycles(CFG.array, m, k, n, mode=mode, dataflow="ws").cycles
        assert matmul_cycles(mm, CFG) == instruction_cycles(mm, CFG) == array + 7
        # fetch 7 (with the 3 decode cycles), issue at 7, HALT held at 15, the engine frees at 7 + occupancy, DONE
        # 1 cycle after DRAIN.
        assert program_cycles([mm, Halt()], CFG).cycles == max(16, 7 + array + 7) + 2
    # int4: two output rows per result beat, written one per cycle -> the w4a8 pace of m rows.
    mm = MatMul("int4", "ws", 0, 16, 16, 16, 0, 4096, 0)
    assert matmul_cycles(mm, CFG) == gemm_cycles(CFG.array, 16, 16, 16, mode="w4a8").cycles + 7


def test_requant_nop_fence_halt():
    # 4 records at 3 cycles each (64-bit scratchpad word = one record: read, registered, checked), 4 rows of 16 bytes
    # = 2 words, + 11.
    assert requant_cycles(VecRequant(4, 4, 0, 0, 0x10), CFG) == 11 + 4 * 3 + 4 * 2
    # With a bias: its 16 bytes are 2 words, read at 3 cycles each.
    assert requant_cycles(VecRequant(4, 4, 0, 0, 0x10, bias=1, bias_addr=0x800), CFG) == 11 + 4 * 3 + 2 * 3 + 4 * 2
    # NOP: first beat 2 + latency + 2 beats + the 3 decode cycles, then 1 to retire.
    assert instruction_cycles(Nop(), CFG, latency=3) == 2 + 3 + 2 + 3 + 1
    assert instruction_cycles(Halt(), CFG) == 7 + 3
    assert program_cycles([Halt()], CFG).cycles == 10
    assert program_cycles([Nop(), Nop(), Halt()], CFG, latency=4).cycles == 2 * 12 + 14
    # fence load=0 (held at 15) retires when the load is done; NOP and HALT are fetched after it (8 cycles
    # each), then DRAIN and DONE (the RTL measured 58 for this program before the DECODE cycles, 3 a command now).
    ld = DmaLoad("spad", 0, 0x1000, 64, 4, 64)
    p = program_cycles([ld, Fence(load=0), Nop(), Halt()], CFG)
    load_done = 7 + instruction_cycles(ld, CFG)
    assert p.cycles == load_done + 1 + 2 * 8 + 2 == 67
    assert p.units["load"].stalled == load_done - 15 and p.units["load"].busy == instruction_cycles(ld, CFG)


def test_vector_ops():
    # Every operator's last result leaves through the vector unit's output buffer (rtl.vector.skid.SkidBuffer): one
    # cycle (the first "+ 1" of each base below) after the operator gives it up; its operands enter through the input
    # skid buffers (rtl.controller.vector): one cycle (the second "+ 1") after the row readers give them.
    # act: 256 table entries (one per cycle) + 32 word reads (64-bit words), 4 rows x ceil(24 / 8 lanes) beats,
    # + 8 + 1 + 1.
    assert instruction_cycles(VecOp("act", 4, 24, 0, 0x2000, 0, 0x10), CFG) == (8 + 1 + 1) + 256 + 32 + 4 * 3
    # gate: one 64-bit record (read + data), 9 rows x 8 beats, + 18: the 12 of private combinational multipliers
    # plus 2 x 2 for its two chained multiplies (p = a * b, then p * multiplier), each MUL_LATENCY = 2 stages
    # (rtl.vector.mulpool), + 1 + 1; residual the same with base 18: 14 for its 7-stage pipeline
    # (rtl.vector.elementwise.ResidualAdd) plus 2 for its one multiply deep (a * a_multiplier beside b * b_multiplier),
    # + 1 + 1.
    assert instruction_cycles(VecOp("gate", 9, 64, 0, 0x2000, 0x800, 0x11), CFG) == \
        (12 + 2 * 2 + 1 + 1) + 2 + 9 * 8
    assert instruction_cycles(VecOp("residual", 9, 64, 0, 0x2000, 0x800, 0x11, imm=20), CFG) == \
        (14 + 2 + 1 + 1) + 2 + 9 * 8
    # softmax, 64-bit words, 8 lanes, n = 64 -> 8 beats: record 2, the first row's input (8 - 1), sum (2 + 8 + 34:
    # 28 plus the sum engine's exp pipeline, 2 multiplies of MUL_LATENCY 2 deep, its stage E3 in two, + 1, and its
    # input register E0, + 1), hand-over (2) and output (8) passes, + 25 (15 plus the output engine's 3 multiplies
    # deep, d * M, g * b and e * Rcp: 6 stages more before the last result, its exp's E3 in two, + 1, its E0, + 1,
    # the output buffer, + 1, and the input buffer, + 1); then the sum engine bounds a row at 8 + 34 = 42 cycles.
    first = (15 + 6 + 1 + 1 + 1 + 1) + 2 + (8 - 1) + (2 + 8 + (28 + 4 + 1 + 1)) + 2 + 8
    assert instruction_cycles(VecOp("softmax", 4, 64, 0, 0x2000, 0, 0x11), CFG) == first + 3 * 42
    # Long rows (125 beats): the sum engine bounds one row (125 + 34 = 159), the two row buffers the next (a
    # buffer is refilled 3 cycles before its row's last output read, 125 - 3, then that row's input pass 125 - 1,
    # the sum start 2 and the hand-over 2): 250; the rows alternate 159 / 250.
    first = 25 + 2 + (125 - 1) + (2 + 125 + 34) + 2 + 125
    assert instruction_cycles(VecOp("softmax", 5, 1000, 0, 0x2000, 0, 0x11), CFG) == first + 2 * (159 + 250)
    # A vector op waits for the vector unit only (a running requant), not for the DMA.
    ld = DmaLoad("spad", 0x1000, 0x3000, 128, 1, 128)
    p = program_cycles([ld, VecOp("act", 1, 8, 0, 0x2000, 0, 0x20), Halt()], CFG)
    assert p.units["vector"].stalled == 0 and p.units["load"].stalled == 0


def test_norm_and_rope_cycles():
    """Hand-derived terms of the norm / RoPE model on 64-bit words and 8 lanes (per-row isqrt + division R = 39)."""
    cfg = NPUConfig(array=ArrayConfig(rows=4, cols=4), vector_ops=VEC_EXECUTABLE)
    ln = instruction_cycles(VecOp("layernorm", 16, 256, 0, 0x2000), cfg)
    rms = instruction_cycles(VecOp("rmsnorm", 16, 256, 0, 0x2000), cfg)
    # Items: LayerNorm 256 channels of 8 bytes = 256 cycles + 256 word reads; RMSNorm 256 + 64 reads.
    assert ln - rms == (256 + 256) - (256 + 64)
    # Rows of 32 beats: a row buffer is refilled a cycle after its row's output, so two rows take the input
    # (32 - 2), the computation (39 + 3), the output (32 - 3) and the refill: 102 cycles (not 2 x 42).
    assert instruction_cycles(VecOp("layernorm", 18, 256, 0, 0x2000), cfg) - ln == 30 + 42 + 29 + 1
    # Short rows are bound by the per-row computation: 39 + 3 cycles per row.
    assert (instruction_cycles(VecOp("rmsnorm", 5, 16, 0, 0x2000), cfg)
            - instruction_cycles(VecOp("rmsnorm", 4, 16, 0, 0x2000), cfg)) == 42
    # RoPE: one position more (m = 3 with one head instead of 2) is one counting cycle, n/2 entries of 4 bytes
    # (32 cycles + 16 word reads) and one row of 8 beats + 1 cycles.
    assert (instruction_cycles(VecOp("rope", 3, 64, 0, 0x2000), cfg)
            - instruction_cycles(VecOp("rope", 2, 64, 0, 0x2000), cfg)) == 1 + 32 + 16 + 8 + 1
    # Not built into CFG (the default NPU): no model.
    with pytest.raises(ValueError, match="vec.layernorm has no cycle model: this NPU executes only vector ops"):
        instruction_cycles(VecOp("layernorm", 1, 16, 0, 0), CFG)


def test_breakdown_and_encoded_program():
    plan = plan_gemm(CFG, 17, 33, 21, mode="int8")
    program = lower_gemm(plan)
    a = program_cycles(program, CFG, latency=2)
    b = program_cycles(encode_program(program), CFG, latency=2)
    assert a.cycles == b.cycles and a.macs == 17 * 33 * 21
    assert a.units["matrix"].instructions == sum(isinstance(i, MatMul) for i in program)
    assert all(0 <= u.busy <= a.cycles for u in a.units.values())
    assert a.cycles >= a.units["matrix"].busy
    trace = []
    program_cycles(program, CFG, trace=trace)
    assert len(trace) == len(program) and trace[-1]["op"] == "halt"
    assert all(r["issue"] >= r["decode"] >= r["fetch"] for r in trace)


def test_bad_input():
    with pytest.raises(ValueError, match="latency must be an integer >= 0.*-1"):
        program_cycles([Halt()], CFG, latency=-1)
    with pytest.raises(ValueError, match="no HALT"):
        program_cycles([Nop()], CFG)
    with pytest.raises(ValueError, match="npu_cfg must be an NPUConfig"):
        program_cycles([Halt()], CFG.array)
    act_only = NPUConfig(array=ArrayConfig(rows=4, cols=4), vector_ops=("act",))
    with pytest.raises(ValueError, match="vec.gate"):
        program_cycles([VecOp("gate", 1, 1, 0, 0), Halt()], act_only)
    with pytest.raises(ValueError, match="vec.rope"):
        instruction_cycles(VecOp("rope", 1, 16, 0, 0), CFG)
    with pytest.raises(ValueError, match="int4"):
        matmul_cycles(MatMul("int4", "ws", 0, 4, 4, 4, 0, 0, 0),
                      NPUConfig(array=ArrayConfig(rows=4, cols=4, precisions=("int8",))))


def test_cli_gemm_program(capsys):
    assert cli_main(["perf", "--gemm", "17,33,21", "--rows", "4", "--cols", "4", "--latency", "2", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    npu = NPUConfig(array=ArrayConfig(rows=4, cols=4))
    expect = program_cycles(lower_gemm(plan_gemm(npu, 17, 33, 21)), npu, latency=2)
    assert res["npu"]["cycles"] == expect.cycles
    assert res["npu"]["utilization"] == pytest.approx(17 * 33 * 21 / (16 * expect.cycles))
    assert set(res["npu"]["units"]) == {"load", "store", "matrix", "vector"}
    assert cli_main(["perf", "--gemm", "8,8,8", "--latency", "-3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--latency" in err[0] and "-3" in err[0]
    assert cli_main(["perf", "--gemm", "8,0,8"]) == 2
    assert cli_main(["perf", "--gemm", "8,8,8", "--bus-bits", "48"]) == 2
    assert "48" in capsys.readouterr().err


# -- against the RTL --------------------------------------------------------------------------------------------
GEMMS = [
    (17, 33, 21, "int8", {}),
    (1, 96, 64, "int8", {}),
    (40, 24, 12, "int8", {}),
    (13, 20, 11, "int8", {"tiles": (8, 8, 4), "order": "nm"}),
    (7, 19, 9, "int8", {"out_bits": 16}),
    (17, 33, 21, "w4a8", {}),
    (11, 24, 18, "int4", {"tiles": (6, 8, 10)}),
]


def _micro_programs():
    """Single instructions (and a load followed by fetches) with a HALT, plus the memory image they need."""
    img = np.zeros(1 << 15, np.uint8)
    rec = pack_requant_params(np.full(32, 1 << 30), np.zeros(32, int))
    img[0x3000:0x3000 + rec.size] = rec
    progs = {
        "load_64B": [DmaLoad("spad", 0, 0x1000, 64, 1, 64), Halt()],
        "load_4k_cross_unaligned": [DmaLoad("spad", 0, 0x1F03, 700, 1, 700), Halt()],
        "load_rows_then_nops": [DmaLoad("spad", 0, 0x1000, 100, 12, 20), Nop(), Nop(), Halt()],
        "store_rows": [DmaStore("spad", 0, 0x5003, 100, 8, 20), Halt()],
        "matmul_int8": [MatMul("int8", "ws", 0, 9, 12, 10, 0, 4096, 0), Halt()],
        "requant": [DmaLoad("spad", 0x1000, 0x3000, 128, 1, 128), Fence(load=0),
                    VecRequant(5, 16, 0, 0, 0x10), Halt()],
        # The requant records double as the act table (any bytes) and a gate record (multiplier 2^30, shift 0).
        "act_gate": [DmaLoad("spad", 0x1000, 0x3000, 256, 1, 256), Fence(load=0),
                     VecOp("act", 3, 40, 0, 0x2000, 0, 0x10), VecOp("gate", 4, 24, 0, 0x2400, 0x800, 0x10),
                     VecOp("softmax", 3, 50, 0x800, 0x2800, 0, 0x10, 1, 2), Halt()],
    }
    return progs, img


def _check_against_rtl(latency, harness):
    from npuforge.sim.harness.npu_run import gemm_job, program_job, run_jobs

    built = [gemm_job(CFG, m, k, n, mode, seed=i, name=f"g{i}_{mode}", **kw)
             for i, (m, k, n, mode, kw) in enumerate(GEMMS)]
    progs, img = _micro_programs()
    win = [Window(0x1000, 0x7000, read=True, write=True)]
    micro = [program_job(CFG, name, encode_program(p), img, win) for name, p in progs.items()]
    jobs = [j for j, _ in built] + micro
    results = run_jobs(CFG, jobs, latency=latency, stall=0.0, check=False, harness=harness,
                       tag=f"perfprog_{harness}_l{latency}")
    models = [program_cycles(c.program, CFG, latency=latency, harness=harness).cycles for _, c in built] + \
             [program_cycles(p, CFG, latency=latency, harness=harness).cycles for p in progs.values()]
    report = []
    for job, res, model in zip(jobs, results, models):
        assert res.get("error") == 0 and not res.get("timeout", True), (job.name, res)
        rtl = res["counters"]["BUSY_CYCLES"]
        report.append((job.name, rtl, model, (model - rtl) / rtl))
    worst = max(report, key=lambda r: abs(r[3]))
    assert abs(worst[3]) <= 0.03, report
    return report


# The two DRAM harnesses of sim/harness/npu_run.py (both builds shared with tests/npu); no random stalls, which make
# the RTL's cycle count vary.
@pytest.mark.cocotb
@pytest.mark.parametrize("harness,latency", [("axi", 0), ("axi", 4), ("fast", 4)])
def test_model_within_3_percent_of_rtl(harness, latency):
    require_simulator("verilator")
    _check_against_rtl(latency, harness)


def test_matmul_b_trans_costs_the_transposer_fill():
    from npuforge.gen.perf.cost import MATMUL_BT_OVERHEAD
    for m, k, n in ((1, 64, 32), (8, 16, 16)):
        plain = matmul_cycles(MatMul("int8", "ws", 0, m, k, n, 0, 4096, 0), CFG)
        assert matmul_cycles(MatMul("int8", "ws", 0, m, k, n, 0, 4096, 0, b_trans=1), CFG) == plain + MATMUL_BT_OVERHEAD
