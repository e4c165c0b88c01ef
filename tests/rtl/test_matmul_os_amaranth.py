"""MatmulEngine on the Amaranth simulator with Python scratchpad / accumulator models: MATMUL dataflow=os runs
the output-stationary schedule, bit-exact against the golden GEMM (``golden.gemm.gemm_mode``) in every mode,
ragged shapes, edge values, ``accumulate`` chains, and the same results as ws on the same engine; cycle counts
of the OS schedule derived by hand (see :func:`os_cycles`); a ws-only engine is unchanged (no OS logic).
"""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator

from npuforge.golden.gemm import gemm_mode
from npuforge.golden.quant import pack_int4
from npuforge.rtl.controller import MatmulEngine
from npuforge.spec.precision import MODE_CODES

WORD_BYTES = 8          # 64-bit AXI, as the cocotb NPU
SPAD_AW, ACC_AW = 10, 9  # 8 KiB scratchpad, 4 KiB accumulator
A_BASE, B_BASE = 0, 512  # scratchpad words


def make_engine(rows=4, cols=4, dataflows=("ws", "os"), precisions=("int8", "w4a8", "int4"), spad_aw=SPAD_AW,
                pipeline=2):
    return MatmulEngine(word_bytes=WORD_BYTES, spad_aw=spad_aw, acc_aw=ACC_AW, rows=rows, cols=cols,
                        precisions=precisions, dataflows=dataflows, pipeline=pipeline)


def operands(m, k, n, mode, seed):
    rng = np.random.default_rng(seed)
    a_lo, a_hi = (-8, 7) if mode == "int4" else (-128, 127)
    b_lo, b_hi = (-128, 127) if mode == "int8" else (-8, 7)
    a = rng.integers(a_lo, a_hi + 1, size=(m, k))
    b = rng.integers(b_lo, b_hi + 1, size=(k, n))
    a.flat[:min(a.size, 3)] = [a_lo, a_hi, 0][:min(a.size, 3)]
    b.flat[:min(b.size, 3)] = [b_lo, b_hi, 0][:min(b.size, 3)]
    a[-1, :] = a_lo          # the longest all-extreme reduction: C[-1, -1] = K * lo * lo
    b[:, -1] = b_lo
    return a, b


def spad_image(a, b, mode, *, spad_aw=SPAD_AW, b_base=B_BASE):
    """Scratchpad bytes in the compiler's layout: A rows (int4: packed row pairs) and B rows at word strides."""
    B = WORD_BYTES
    m, k = a.shape
    n = b.shape[1]
    img = np.zeros((1 << spad_aw) * B, dtype=np.uint8)
    if mode == "int4":
        a_rows = np.zeros(((m + 1) // 2, k), dtype=np.uint8)
        a_pad = np.zeros((2 * a_rows.shape[0], k), dtype=np.int64)
        a_pad[:m] = a
        a_rows[:] = (a_pad[0::2] & 15) | ((a_pad[1::2] & 15) << 4)
    else:
        a_rows = (a & 255).astype(np.uint8)
    b_rows = (b & 255).astype(np.uint8) if mode == "int8" else np.stack([pack_int4(r) for r in b])
    for base, rows in ((A_BASE, a_rows), (b_base, b_rows)):
        stride = -(-rows.shape[1] // B) * B
        for i, r in enumerate(rows):
            off = base * B + i * stride
            img[off:off + len(r)] = r
            img[off + len(r):off + stride] = 0xA5   # row padding is not zero: the engine must not use it
    return img


def run_engine(dut, jobs, *, acc_init=None, b_base=B_BASE):
    """Run MATMUL jobs ``(mode, dataflow, accumulate, a, b, spad, acc_word[, b_trans])`` back to back; returns the
    accumulator (int32 words per bank row) and, per job, (start-to-done cycles, MACs counted)."""
    B, NB, NI = WORD_BYTES, dut.acc_banks, dut.read_words
    E = B // 4
    spad = [None]
    acc = np.zeros(((1 << ACC_AW), E), dtype=np.int64) if acc_init is None else acc_init
    stats = []

    def spad_read(addr):
        words = [(addr + j) % (1 << dut.spad_aw) for j in range(NI)]
        return int.from_bytes(b"".join(spad[0][w * B:(w + 1) * B].tobytes() for w in words), "little")

    async def tb(ctx):
        rd_data = [0] * NB
        a_data = w_data = 0
        for mode, dataflow, accumulate, a, b, img, acc_word, *b_trans in jobs:
            spad[0] = img
            m, k = a.shape
            n = b.shape[1]
            if "os" in dut.dataflows:
                ctx.set(dut.dataflow, dataflow == "os")
            if dut.has_bt:      # an optional 8th job item: B is stored transposed (MATMUL.b_trans)
                ctx.set(dut.b_trans, bool(b_trans and b_trans[0]))
            ctx.set(dut.mode, MODE_CODES[mode])
            ctx.set(dut.accumulate, accumulate)
            ctx.set(dut.m, m)
            ctx.set(dut.k, k)
            ctx.set(dut.n, n)
            ctx.set(dut.a_word, A_BASE)
            ctx.set(dut.b_word, b_base)
            ctx.set(dut.acc_word, acc_word)
            ctx.set(dut.start, 1)
            cycles, macs = 0, 0
            while True:
                ctx.set(dut.a_rd.data, a_data)
                ctx.set(dut.w_rd.data, w_data)
                for i in range(NB):
                    ctx.set(dut.acc_rd_data[i], rd_data[i])
                done = ctx.get(dut.done)
                macs += ctx.get(dut.macs)
                a_en, a_addr = ctx.get(dut.a_rd.en), ctx.get(dut.a_rd.addr)
                w_en, w_addr = ctx.get(dut.w_rd.en), ctx.get(dut.w_rd.addr)
                r_en = ctx.get(dut.acc_rd_en)
                r_addr = [ctx.get(dut.acc_rd_addr[i]) for i in range(NB)]
                wr_en = [ctx.get(dut.acc_wr_en[i]) for i in range(NB)]
                wr_addr = [ctx.get(dut.acc_wr_addr[i]) for i in range(NB)]
                wr_data = [ctx.get(dut.acc_wr_data[i]) for i in range(NB)]
                await ctx.tick()
                ctx.set(dut.start, 0)
                cycles += 1
                for i in range(NB):           # writes first: the wide read is transparent
                    for e in range(E):
                        if (wr_en[i] >> (4 * e)) & 15:
                            assert (wr_en[i] >> (4 * e)) & 15 == 15
                            v = (wr_data[i] >> (32 * e)) & 0xFFFF_FFFF
                            acc[(wr_addr[i] * NB + i) % len(acc), e] = v - (1 << 32) if v >> 31 else v
                if r_en:
                    rd_data = [sum((int(acc[(r_addr[i] * NB + i) % len(acc), e]) & 0xFFFF_FFFF) << (32 * e)
                                   for e in range(E)) for i in range(NB)]
                if a_en:
                    a_data = spad_read(a_addr)
                if w_en:
                    w_data = spad_read(w_addr)
                if done:
                    break
                assert cycles < 200_000, "engine hang"
            stats.append((cycles, macs))
            for _ in range(3):    # idle gap between instructions
                await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    return acc, stats


def acc_result(acc, acc_word, m, n):
    """The m x n int32 result at ``acc_word`` (rows at the accumulator-word stride)."""
    E = WORD_BYTES // 4
    stride = -(-4 * n // WORD_BYTES)
    flat = acc.reshape(-1)
    return np.stack([flat[(acc_word + i * stride) * E:(acc_word + i * stride) * E + n] for i in range(m)])


# Shapes on a 4x4 array, 8-byte words (K chunk 8): ragged m/k/n, k = 1, several m- and n-tiles, K > chunk.
SHAPES = [(1, 1, 1), (5, 7, 6), (4, 8, 4), (9, 17, 11), (3, 1, 9)]


@pytest.mark.parametrize("mode", ["int8", "w4a8", "int4"])
def test_os_matches_golden_and_ws(mode):
    dut = make_engine()
    jobs, expect = [], []
    acc_word = 0
    for i, (m, k, n) in enumerate(SHAPES):
        a, b = operands(m, k, n, mode, seed=10 * i + len(mode))
        img = spad_image(a, b, mode)
        for df in ("os", "ws"):
            jobs.append((mode, df, 0, a, b, img, acc_word))
            expect.append((acc_word, gemm_mode(a, b, mode), m * k * n))
            acc_word += m * -(-4 * n // WORD_BYTES)
    acc, stats = run_engine(dut, jobs)
    for (acc_word, want, macs), (cycles, got_macs), job in zip(expect, stats, jobs):
        m, n = want.shape
        assert np.array_equal(acc_result(acc, acc_word, m, n), want), (job[:2], m, n)
        assert got_macs == macs, (job[:2], got_macs, macs)


def test_os_accumulate_chain_and_overwrite():
    """K split over three MATMULs (accumulate=0 then 1, 1) in os and ws; an os MATMUL with accumulate=0 over a
    dirty accumulator overwrites it."""
    dut = make_engine()
    m, k, n = 6, 21, 7
    for mode in ("int8", "int4"):
        a, b = operands(m, k, n, mode, seed=3)
        cuts = [0, 5, 13, 21]
        jobs = []
        for base, df in ((0, "os"), (64, "ws"), (128, "os")):
            for j in range(3):
                lo, hi = cuts[j], cuts[j + 1]
                aa, bb = np.ascontiguousarray(a[:, lo:hi]), np.ascontiguousarray(b[lo:hi])
                jobs.append((mode, df, int(j > 0), aa, bb, spad_image(aa, bb, mode), base))
        init = np.full(((1 << ACC_AW), WORD_BYTES // 4), 12345, dtype=np.int64)
        acc, _ = run_engine(dut, jobs, acc_init=init)
        want = gemm_mode(a, b, mode)
        for base in (0, 64, 128):
            assert np.array_equal(acc_result(acc, base, m, n), want), (mode, base)


def test_os_longest_k_edge_values():
    """K = 4095 (the field's maximum) of all-extreme operands: the longest reduction in one OS pass."""
    dut = make_engine(rows=2, cols=2, precisions=("int8",), spad_aw=13)
    m, k, n = 2, 4095, 2
    a = np.full((m, k), -128)
    b = np.full((k, n), -128)
    b[:, 1] = 127
    a[1, ::2] = 127
    img = spad_image(a, b, "int8", spad_aw=13, b_base=1024)
    acc, stats = run_engine(dut, [("int8", "os", 0, a, b, img, 0)], b_base=1024)
    assert np.array_equal(acc_result(acc, 0, m, n), gemm_mode(a, b, "int8"))


def os_cycles(m, k, n, *, rows=4, cols=4, pipeline=2):
    """Start-to-done cycles of an int8 OS MATMUL, derived from the schedule by hand (valid while every K chunk
    but the last is ``word_bytes`` columns and rows <= word_bytes, so the transposer, whose next chunk is
    read in ``rows`` + 2 cycles, never starves the array; rtl/array.py and rtl/pe.py give the latencies):

    * cycle 0: ``start`` latched; sizes registered in cycle 1; ``go`` in cycle 2; the transposer issues the
      ``rows`` A-row reads of the first chunk in cycles 3 .. rows+2, the last row's data arrives in cycle
      rows+3 and the bank is full in cycle rows+4: the first pair is taken then (the first weight beat is in
      its queue from cycle 5).
    * one pair per cycle, so tile 0's last pair (``k = K-1``) is taken in cycle L0 = rows + 3 + K.
    * a pair taken in cycle L reaches PE(r, c)'s operand register in cycle L + r + c + 1 (skew r, c) and its
      product, after the MAC pipeline's ``pipeline - 1`` further registers, completes the sum: the corner
      captures in cycle X = L + rows + cols - 1 + (pipeline - 1), the shadows drain in cycles X+1 .. X+rows
      (the int8 collector takes a beat per cycle) and the array is empty again in cycle X + rows + 1.
    * a tile's last pair waits until the previous tile has drained, so the tiles' last pairs are
      max(K, 2 rows + cols + pipeline - 1) cycles apart.
    * the final drained beat (taken in cycle X + rows) is written two cycles later (hold, read-modify-write),
      when ``done`` pulses; counting cycle 0, the instruction takes X + rows + 3 cycles.
    """
    lat = pipeline - 1
    tiles = -(-m // rows) * -(-n // cols)
    last_pair = rows + 3 + k + (tiles - 1) * max(k, 2 * rows + cols + lat)
    corner_capture = last_pair + rows + cols - 1 + lat
    return corner_capture + rows + 3


@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (4, 8, 4), (8, 8, 8), (8, 24, 8), (5, 16, 7)])
def test_os_cycle_count_by_hand(m, k, n):
    """OS really runs: its cycle count is the one derived in :func:`os_cycles`, and ws differs where the
    schedules differ (ws folds K by ``rows``, OS streams all of K per output tile)."""
    dut = make_engine()
    a, b = operands(m, k, n, "int8", seed=1)
    img = spad_image(a, b, "int8")
    acc, stats = run_engine(dut, [("int8", "os", 0, a, b, img, 0), ("int8", "ws", 0, a, b, img, 64)])
    assert np.array_equal(acc_result(acc, 0, m, n), gemm_mode(a, b, "int8"))
    assert np.array_equal(acc_result(acc, 64, m, n), gemm_mode(a, b, "int8"))
    (os_c, _), (ws_c, _) = stats
    assert os_c == os_cycles(m, k, n), (os_c, os_cycles(m, k, n))
    assert os_c != ws_c, (os_c, ws_c)


def test_ws_only_engine_has_no_os_logic():
    """array.dataflow == "ws" NPUs do not grow: the ws-only engine has no dataflow input and no transposer."""
    ws = make_engine(dataflows=("ws",))
    assert "dataflow" not in ws.signature.members and not ws.has_os and ws.transposer is None
    with pytest.raises(ValueError, match="dataflows"):
        make_engine(dataflows=("os",))


def test_ws_on_both_engine_is_the_ws_only_schedule():
    """A ws MATMUL on the engine built with both dataflows takes exactly the ws-only engine's cycles and MACs
    and gives the same accumulator (the OS logic only muxes in with dataflow = os)."""
    jobs = []
    for i, (mode, (m, k, n)) in enumerate([("int8", (9, 17, 11)), ("w4a8", (5, 7, 6)), ("int4", (7, 12, 9))]):
        a, b = operands(m, k, n, mode, seed=40 + i)
        jobs.append((mode, "ws", 0, a, b, spad_image(a, b, mode), 64 * i))
    acc_both, stats_both = run_engine(make_engine(), jobs)
    acc_ws, stats_ws = run_engine(make_engine(dataflows=("ws",)), jobs)
    assert stats_both == stats_ws
    assert np.array_equal(acc_both, acc_ws)
    for mode, _, _, a, b, _, base in jobs:
        assert np.array_equal(acc_result(acc_ws, base, *gemm_mode(a, b, mode).shape), gemm_mode(a, b, mode))


@pytest.mark.parametrize("rows, cols, jobs", [
    (4, 4, [("int8", 5, 9, 7), ("int8", 9, 3, 9), ("w4a8", 9, 17, 11), ("int4", 17, 33, 21), ("int4", 9, 40, 9),
            ("w4a8", 3, 30, 10)]),
    (8, 8, [("int8", 16, 32, 8), ("int8", 9, 19, 17)]),   # rows == chunk (8 k values): still a pair per cycle
])
def test_os_cycles_match_perf_model(rows, cols, jobs):
    """gen.perf.program.matmul_cycles for os (the generalised hand derivation: drain-bound tiles, int4 two-row
    beats, the transposer's wait after a short K chunk) equals the engine's cycles; results exact."""
    from npuforge.gen.config.array import ArrayConfig
    from npuforge.spec.isa import MatMul
    from npuforge.gen.config.npu import NPUConfig
    from npuforge.gen.perf.program import matmul_cycles

    cfg = NPUConfig(array=ArrayConfig(rows=rows, cols=cols, dataflow="both"), spad_bytes=8192, spad_banks=2,
                    acc_bytes=4096, axi_data_bits=8 * WORD_BYTES, windows=2, vector_ops=())
    dut = make_engine(rows=rows, cols=cols)
    assert cfg.spad_read_words == dut.read_words
    run = []
    acc_word = 0
    for i, (mode, m, k, n) in enumerate(jobs):
        a, b = operands(m, k, n, mode, seed=60 + i)
        run.append((mode, "os", 0, a, b, spad_image(a, b, mode), acc_word))
        acc_word += m * -(-4 * n // WORD_BYTES)
    assert acc_word <= 1 << ACC_AW
    acc, stats = run_engine(dut, run)
    for (mode, m, k, n), (cycles, macs), job in zip(jobs, stats, run):
        assert np.array_equal(acc_result(acc, job[-1], m, n), gemm_mode(job[3], job[4], mode)), (mode, m, k, n)
        assert macs == m * k * n
        assert cycles == matmul_cycles(MatMul(mode, "os", 0, m, k, n, 0, 0, 0), cfg), (mode, m, k, n, cycles)


def test_depth5_registered_edges_exact_and_cycles_follow_the_model():
    """At mac_pipeline 5 the array registers its edges (rtl/array.py): the engine's ws and os GEMMs stay exact and
    take gen.perf.program.matmul_cycles' cycles, whose array tail counts the edge registers."""
    from npuforge.gen.config.array import ArrayConfig
    from npuforge.gen.config.npu import NPUConfig
    from npuforge.gen.perf.program import matmul_cycles
    from npuforge.spec.isa import MatMul

    cfg = NPUConfig(array=ArrayConfig(rows=4, cols=4, dataflow="both", mac_pipeline=5), spad_bytes=8192,
                    spad_banks=2, acc_bytes=4096, axi_data_bits=8 * WORD_BYTES, windows=2, vector_ops=())
    dut = make_engine(pipeline=5)
    jobs = [(mode, df, m, k, n) for df in ("ws", "os")
            for mode, m, k, n in (("int8", 5, 9, 7), ("w4a8", 9, 17, 11), ("int4", 3, 1, 9))]
    run, acc_word = [], 0
    for i, (mode, df, m, k, n) in enumerate(jobs):
        a, b = operands(m, k, n, mode, seed=90 + i)
        run.append((mode, df, 0, a, b, spad_image(a, b, mode), acc_word))
        acc_word += m * -(-4 * n // WORD_BYTES)
    acc, stats = run_engine(dut, run)
    for (mode, df, m, k, n), (cycles, macs), job in zip(jobs, stats, run):
        assert np.array_equal(acc_result(acc, job[-1], m, n), gemm_mode(job[3], job[4], mode)), (mode, df)
        assert macs == m * k * n
        assert cycles == matmul_cycles(MatMul(mode, df, 0, m, k, n, 0, 0, 0), cfg), (mode, df, m, k, n, cycles)


def test_os_odd_array_shape():
    """A 3 x 5 array (rows and cols not powers of two, odd rows with int4 row pairs): os exact and timed."""
    from npuforge.gen.config.array import ArrayConfig
    from npuforge.spec.isa import MatMul
    from npuforge.gen.config.npu import NPUConfig
    from npuforge.gen.perf.program import matmul_cycles

    cfg = NPUConfig(array=ArrayConfig(rows=3, cols=5, dataflow="both"), spad_bytes=8192, spad_banks=2,
                    acc_bytes=4096, axi_data_bits=8 * WORD_BYTES, windows=2, vector_ops=())
    dut = make_engine(rows=3, cols=5)
    shapes = [("int8", 7, 11, 12), ("w4a8", 4, 19, 13), ("int4", 9, 10, 11)]
    run, acc_word = [], 0
    for i, (mode, m, k, n) in enumerate(shapes):
        a, b = operands(m, k, n, mode, seed=80 + i)
        run.append((mode, "os", 0, a, b, spad_image(a, b, mode), acc_word))
        acc_word += m * -(-4 * n // WORD_BYTES)
    acc, stats = run_engine(dut, run)
    for (mode, m, k, n), (cycles, macs), job in zip(shapes, stats, run):
        assert np.array_equal(acc_result(acc, job[-1], m, n), gemm_mode(job[3], job[4], mode)), (mode, m, k, n)
        assert macs == m * k * n
        assert cycles == matmul_cycles(MatMul(mode, "os", 0, m, k, n, 0, 0, 0), cfg), (mode, m, k, n, cycles)
