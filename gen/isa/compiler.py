"""Tiled-GEMM compiler: ``C = requantize(A @ B)`` for any M, K, N and mode -> NPU program + memory image.

Lowering
--------
1. **Tiles.** A [M, K] is cut into [tm, tk] tiles, B [K, N] into [tk, tn], C into [tm, tn] (edge tiles are
   smaller, so no dimension has to be a multiple of the array). :func:`plan_gemm` picks (tm, tk, tn) and the loop
   order ("mn": M outer, N inner, K innermost; "nm": N outer) with the lowest estimated cycles of the unit model
   ``gen.perf.cost.gemm_tiling_estimate`` (DMA and array overlapped; a tile that is the same in consecutive steps
   is not reloaded: with one K tile, A stays resident across N tiles, or B across M), subject to double-buffered
   tiles fitting the scratchpad and accumulator. A GEMV (M = 1, a decode step's projections) is ranked by the exact
   whole-program cycle model among the best estimates (:func:`_rank_gemv`).
2. **Double buffering.** Two scratchpad slots each for A, B and output tiles, three for the requant records
   (they are loaded with the first step of tile t+2 while tile t still waits for its requant), two accumulator
   slots. Slot 0 sits in the lower, slot 1 in the upper half of the scratchpad when they fit (different banks).
   Program order per step s: ``MATMUL(s)``, the requant of the output tile finished at step s-1, the loads of
   step s+1 into the other slots, then that tile's store. The loads of s+1 therefore run while the array computes
   s and the vector unit requantizes s-1 (issue is in order: a requant placed after the loads would start only once
   they are all issued, and the store behind it would hold the DMA idle).
3. **K accumulation** in the accumulator: the first K step overwrites (accumulate=0), later ones add.
4. **Output**: ``VEC_REQUANT`` with per-channel records (DMA'd per N tile), then ``DMA_STORE`` to C.
5. **Fences** are inserted automatically and minimally: before an instruction of unit U, for every other unit V
   whose outstanding instructions touch the same bytes (one of them writing), a ``FENCE V<=n`` where n is the
   number of V instructions issued after the newest conflicting one. This is the rule the ISA simulator checks.

External memory image (byte address = index): the program at 0, then 4 KiB-aligned A ([M, K] row-major; int4
as [ceil(M/2), K] row pairs, ``pack_int4`` along M, which is the PE array's activation byte; int16 (w8a16,
w4a16) as little-endian 16-bit words, 2K bytes a row), B ([K, N]
row-major; int4 packed two per byte along N with ``golden.quant.pack_int4``), the
requant records (8 bytes per output channel, :func:`gen.isa.layout.pack_requant_params`) and C ([M, N] int8/int16,
prefilled with 0xA5 so an unwritten byte shows). Windows: A..records read-only, C write-only.

Block-scaled weights (``blocks``, ``spec.block_scale``; modes w4a16 / w8a16): B is the codes s [K, N] (int4 codes
packed along K, [K / 2, N] bytes: :func:`gen.isa.layout.b_k_packed`, two K rows per array weight beat) and the block
records [K / 32, N] (D, O int16; :func:`gen.isa.layout.pack_block_weight`) follow it in the image at ``s_base``.
K tiles are whole blocks (multiples of 32); each B tile's codes and its [tk / 32, tn] records are loaded into one B
slot (records right after the codes, where MATMUL.blocks reads them), the result is the 48-bit accumulator and
the requant is ``VEC_REQUANT.wide``. The K bound is the 48-bit one: a proven ``acc_bound`` < 2^47 or the worst case
2^15 * K * max|D s + O| < 2^47.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from npuforge.gen.config.npu import NPUConfig
from npuforge.gen.isa.fences import insert_fences
from npuforge.gen.isa.layout import (a_elem_offset, a_tile_shape, align, b_elem_bits, b_k_packed, b_tile_shape,
                                     block_records_shape,
                                     cdiv)
from npuforge.gen.perf.cost import gemm_tiling_estimate
from npuforge.golden.gemm import MODES, max_reduction_length
from npuforge.spec.block_scale import BLOCK, BLOCK_MODES, BLOCK_RECORD_BYTES, WIDE_ACC_BITS, b16_error
from npuforge.spec.dataflow import DATAFLOWS
from npuforge.spec.isa import (INSTR_BYTES, PARAM_PAGE_BYTES, REQUANT_BIAS_BYTES, REQUANT_PARAM_BYTES, TILE_MAX,
                               DmaLoad, DmaStore, Halt, Instr, MatMul, VecRequant)

#: compile_gemm / CompiledGemm (a whole GEMM program with its image) live in gen.isa.gemm_program.
__all__ = ["GemmPlan", "plan_gemm", "lower_gemm", "gemm_body", "gemm_body_phased", "GemmBody", "SlotPhase",
           "same_tiling", "insert_fences", "POISON_BYTE"]

POISON_BYTE = 0xA5
_DATA_ALIGN = 4096


@dataclass(frozen=True)
class GemmPlan:
    """Tiling, loop order and addresses of one GEMM (no data). Addresses are bytes."""
    cfg: NPUConfig
    m: int
    k: int
    n: int
    mode: str
    dataflow: str
    out_bits: int
    tm: int
    tk: int
    tn: int
    order: str
    # external layout
    program_bytes: int
    a_base: int
    b_base: int
    p_base: int
    c_base: int
    image_bytes: int
    # local layout: two slots each (three for the requant records, loaded one tile ahead of their use)
    param_slots: tuple[int, int, int]
    a_slots: tuple[int, int]
    b_slots: tuple[int, int]
    out_slots: tuple[int, int]
    acc_slots: tuple[int, int]
    # external row pitches in bytes; 0 = the packed row (the GEMM's own image). A layer program gives views of
    # larger tensors here (e.g. one head's columns of Q), see gen.isa.builder.
    a_pitch: int = 0
    b_pitch: int = 0
    c_pitch: int = 0
    bias: bool = False      # an int32 [N] bias vector at bias_base is added before the requant (VEC_REQUANT.bias)
    bias_base: int = 0
    b_trans: bool = False   # B stored as B^T [N, K] row-major (MATMUL.b_trans: Q.K^T with K as stored)
    blocks: bool = False    # block-scaled B (MATMUL.blocks): codes at b_base, block records [K/32, 4N] at s_base
    s_base: int = 0
    s_pitch: int = 0        # external bytes between block-record rows; 0 = the packed 4 N
    row_shift: bool = False  # per-row shifts k_r (M uint8 at r_base, row r at r_base + r): VEC_REQUANT.row_shift
    r_base: int = 0
    b16: bool = False       # int16 B (MATMUL.b16): two plane MATMULs per step into the 48-bit result, requant wide

    @property
    def s_stride(self) -> int:
        return self.s_pitch or self.n * BLOCK_RECORD_BYTES

    @property
    def a_bits(self) -> int:
        return MODES[self.mode][0]

    @property
    def b_bits(self) -> int:
        return MODES[self.mode][1]

    @property
    def b_tile_bits(self) -> int:
        """Bits per stored B element: 16 with ``b16`` (int16 B), else the mode's weight bits."""
        return b_elem_bits(self.mode, self.b16)

    @property
    def out_bytes(self) -> int:
        return self.out_bits // 8

    @property
    def a_row_bytes(self) -> int:
        """External bytes per stored A row (a row pair in int4)."""
        return a_tile_shape(self.m, self.k, self.a_bits)[1]

    @property
    def b_row_bytes(self) -> int:
        """External bytes per stored B row (a B^T row of k bytes with ``b_trans``)."""
        return b_tile_shape(self.k, self.n, self.b_tile_bits, transposed=self.b_trans, k_packed=self.k_packed)[1]

    @property
    def k_packed(self) -> bool:
        """B (the codes of a block-scaled w4a16 GEMM) is packed along K (gen.isa.layout.b_k_packed)."""
        return b_k_packed(self.mode, self.blocks)

    @property
    def c_row_bytes(self) -> int:
        return self.n * self.out_bytes

    @property
    def a_stride(self) -> int:
        """External bytes from one stored A row (row pair in int4) to the next."""
        return self.a_pitch or self.a_row_bytes

    @property
    def b_stride(self) -> int:
        return self.b_pitch or self.b_row_bytes

    @property
    def c_stride(self) -> int:
        return self.c_pitch or self.c_row_bytes

    @property
    def tiles(self) -> tuple[int, int, int]:
        return cdiv(self.m, self.tm), cdiv(self.k, self.tk), cdiv(self.n, self.tn)

    @property
    def macs(self) -> int:
        return self.m * self.k * self.n


# -- tiling ---------------------------------------------------------------------------------------------------
def _candidates(dim: int, unit: int) -> list[int]:
    out = {dim} if dim <= TILE_MAX else set()
    t = unit
    while t < dim and t <= TILE_MAX:
        out.add(t)
        t *= 2
    return sorted(out)


def _tile_bytes(cfg: NPUConfig, shape: tuple[int, int]) -> int:
    rows, row_bytes = shape
    return rows * cfg.local_stride("spad", row_bytes)


def _bias_offset(cfg: NPUConfig, tn: int) -> int:
    """Byte offset of the bias vector in a parameter slot: after the tn records, on a scratchpad word."""
    return align(tn * REQUANT_PARAM_BYTES, cfg.spad_word_bytes)


def _param_slot_bytes(cfg: NPUConfig, tn: int, bias: bool, row_shifts: int = 0) -> int:
    """One parameter slot: tn requant records (+ tn int32 biases, or the tile's ``row_shifts`` k_r bytes on the same
    next word), whole 256-byte pages."""
    extra = tn * REQUANT_BIAS_BYTES if bias else row_shifts
    used = _bias_offset(cfg, tn) + extra if extra else tn * REQUANT_PARAM_BYTES
    return align(used, PARAM_PAGE_BYTES)


def _b_slot_bytes(cfg: NPUConfig, tk: int, tn: int, b_bits: int, b_trans: bool = False, blocks: bool = False) -> int:
    """One B slot: the [tk, tn] tile, and with ``blocks`` its block records right after it."""
    size = _tile_bytes(cfg, b_tile_shape(tk, tn, b_bits, transposed=b_trans, k_packed=blocks and b_bits == 4))
    return size + (_tile_bytes(cfg, block_records_shape(tk, tn)) if blocks else 0)


def _local_need(cfg: NPUConfig, tm: int, tk: int, tn: int, a_bits: int, b_bits: int, ob: int,
                bias: bool = False, b_trans: bool = False, blocks: bool = False,
                row_shift: bool = False) -> tuple[int, int]:
    spad = (3 * _param_slot_bytes(cfg, tn, bias, tm if row_shift else 0)
            + 2 * _tile_bytes(cfg, a_tile_shape(tm, tk, a_bits))
            + 2 * _b_slot_bytes(cfg, tk, tn, b_bits, b_trans, blocks)
            + 2 * tm * cfg.local_stride("spad", tn * ob))
    acc = 2 * tm * cfg.local_stride("acc", 4 * tn)
    return spad, acc


#: The int32 accumulator's largest magnitude that cannot wrap.
ACC_MAX = (1 << 31) - 1
#: A block-scaled result's bound: golden.models.intops.requant_wide takes |acc| < 2^47 (the 48-bit element's half).
WIDE_ACC_MAX = (1 << (WIDE_ACC_BITS - 1)) - 1


def block_k_max(b_bits: int) -> int:
    """The largest K whose worst-case block-scaled sum stays within 2^47 - 1: int16 x (|D| 2^15 - 1 times the
    largest |s| + |O| 2^15 - 1)."""
    w_max = ((1 << 15) - 1) * ((1 << (b_bits - 1)) + 1)
    return WIDE_ACC_MAX // ((1 << 15) * w_max)

#: Tilings whose estimated cycles are within this factor of the fastest are ranked by DRAM traffic, then steps.
PLAN_SLACK = 1.02


def plan_gemm(cfg: NPUConfig, m: int, k: int, n: int, *, mode: str = "int8", dataflow: str | None = None,
              out_bits: int = 8, tiles: tuple[int, int, int] | None = None, order: str | None = None,
              bias: bool = False, b_trans: bool = False, acc_bound: int | None = None,
              blocks: bool = False, row_shift: bool = False, b16: bool = False) -> GemmPlan:
    """Choose tiles and lay out memories for C[m, n] = requant(A[m, k] @ B[k, n] (+ bias)); ``ValueError`` on bad
    input. ``bias``: an int32 vector [N] is added before the requant (``VEC_REQUANT.bias``; its slice of each N tile
    travels with the tile's records). ``b_trans``: B is given as B^T [N, K] row-major (the K matrix of Q.K^T as
    the K projection writes it); each B tile is loaded as tn rows of tk bytes and MATMUL.b_trans reads it (weight
    stationary, int8 B only).

    ``acc_bound``: a proven bound on |every partial sum| (e.g. from constant weights: the largest column L1 norm of B
    times the largest |A| the A width allows); when given and <= 2^31 - 1 it replaces the mode's worst-case K
    bound, since no summation order can then overflow the int32 accumulator.

    ``blocks``: block-scaled B (module docstring; w4a16 / w8a16 on an NPU built with ``block_scaled``, K a multiple
    of 32); ``acc_bound`` then bounds the 48-bit sum (< 2^47), else K is limited by :func:`block_k_max`.

    ``row_shift``: each row r is requantized with its total shift reduced by k_r (``VEC_REQUANT.row_shift``; the M
    bytes at ``r_base``, each M tile's slice loaded into its tile's parameter slot after the records); no bias.

    ``b16``: B holds int16 elements (the int16 K / V caches; mode w8a16 on an NPU built with ``kv16``): each step is
    two MATMULs (``MATMUL.b16`` high plane, then low plane accumulating) into the 48-bit result and the requant is
    ``VEC_REQUANT.wide``; any K (|sum| < 2^15 x 2^15 x 4095 < 2^42).

    ``tiles=(tm, tk, tn)`` and/or ``order`` ("mn" or "nm") force the choice (tests, experiments).
    """
    if not isinstance(cfg, NPUConfig):
        raise ValueError(f"cfg must be an NPUConfig, got {type(cfg).__name__}")
    for name, v in (("M", m), ("K", k), ("N", n)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode not in cfg.array.precisions:
        raise ValueError(f"mode {mode!r} is not built into this NPU (precisions: {', '.join(cfg.array.precisions)})")
    if dataflow is None:
        dataflow = "ws" if cfg.array.dataflow == "both" else cfg.array.dataflow
    if dataflow not in DATAFLOWS or not cfg.supports(mode, dataflow):
        raise ValueError(f"dataflow must be one this NPU runs ({cfg.array.dataflow}), got {dataflow!r}")
    if out_bits not in (8, 16, 32):
        raise ValueError(f"out_bits must be 8, 16 or 32, got {out_bits!r}")
    if bias and row_shift:
        raise ValueError("bias and row_shift are exclusive (VEC_REQUANT reads one vector at bias_addr)")
    a_bits, b_bits = MODES[mode]
    if b_trans and (b_bits != 8 or dataflow != "ws"):
        raise ValueError(f"b_trans (B stored [N, K]) needs an int8 B and dataflow ws, got mode {mode} "
                         f"dataflow {dataflow}")
    if b16 and not cfg.kv16:
        raise ValueError("b16 (an int16 B) needs an NPU built with kv16")
    if b16 and (why := b16_error(mode, dataflow, int(blocks))):
        raise ValueError(why)
    b_store_bits = b_elem_bits(mode, b16)
    if blocks:
        if mode not in BLOCK_MODES or not cfg.block_scaled:
            raise ValueError(f"blocks (block-scaled B) needs mode {' or '.join(BLOCK_MODES)} on an NPU built with "
                             f"block_scaled, got mode {mode} (block_scaled {cfg.block_scaled})")
        if k % BLOCK or b_trans or dataflow != "ws":
            raise ValueError(f"blocks needs K a multiple of {BLOCK}, b_trans off and dataflow ws, got K {k}, "
                             f"b_trans {b_trans}, dataflow {dataflow}")
        if acc_bound is not None and acc_bound > WIDE_ACC_MAX:
            raise ValueError(f"the accumulator bound (|A|max x largest column sum of |D s + O|) must be <= 2^47 - 1 "
                             f"for the 48-bit accumulator, got {acc_bound} (K {k})")
        if acc_bound is None and k > block_k_max(b_bits):
            raise ValueError(f"K must be in [{BLOCK}, {block_k_max(b_bits)}] for block-scaled {mode} without a "
                             f"proven accumulator bound (48-bit accumulator), got {k}")
    # The exact int32 bound of the mode's operand widths (spec.precision): int8 131071, w8a16 511, w4a16 8191.
    k_max = max_reduction_length(a_bits, b_bits, 32)
    if blocks or b16:
        pass
    elif acc_bound is not None:
        if acc_bound > ACC_MAX:
            raise ValueError(f"the accumulator bound (|A|max x largest column sum of |B|) must be <= 2^31 - 1 for "
                             f"the int32 accumulator, got {acc_bound} (mode {mode}, K {k})")
    elif k > k_max:
        raise ValueError(f"K must be in [1, {k_max}] for mode {mode} (int32 accumulator), got {k}")
    ob = out_bits // 8
    rows, cols = cfg.array.rows, cfg.array.cols
    # int4 operands are packed along M (A row pairs) and N (B): interior tile edges must fall on a byte.
    m_unit = max(rows, 8) * (2 if a_bits == 4 and rows % 2 else 1)
    k_unit = BLOCK if blocks else rows       # block-scaled: whole blocks (NPUConfig: rows divides 32)
    n_unit = cols * (2 if b_bits == 4 and cols % 2 else 1)
    if order is not None and order not in ("mn", "nm"):
        raise ValueError(f"order must be 'mn' or 'nm', got {order!r}")
    if tiles is not None:
        if not isinstance(tiles, tuple) or len(tiles) != 3:
            raise ValueError(f"tiles must be a tuple (tm, tk, tn), got {tiles!r}")
        for name, t, dim in zip(("tm", "tk", "tn"), tiles, (m, k, n)):
            if isinstance(t, bool) or not isinstance(t, int) or not 1 <= t <= TILE_MAX:
                raise ValueError(f"{name} must be an integer in [1, {TILE_MAX}], got {t!r}")
        if a_bits == 4 and tiles[0] < m and tiles[0] % 2:
            raise ValueError(f"tm must be even when M is split in mode {mode} (int4 A packs row pairs), "
                             f"got {tiles[0]}")
        if b_bits == 4 and tiles[2] < n and tiles[2] % 2:
            raise ValueError(f"tn must be even when N is split in mode {mode} (int4 B packs two per byte), "
                             f"got {tiles[2]}")
        if blocks and tiles[1] < k and tiles[1] % BLOCK:
            raise ValueError(f"tk must be a multiple of {BLOCK} when K is split with blocks, got {tiles[1]}")
        spad_need, acc_need = _local_need(cfg, *tiles, a_bits, b_store_bits, ob, bias, b_trans, blocks,
                                          row_shift)
        if spad_need > cfg.spad_bytes or acc_need > cfg.acc_bytes:
            raise ValueError(f"tiles {tiles} need {spad_need} scratchpad and {acc_need} accumulator bytes, "
                             f"above spad_bytes={cfg.spad_bytes} / acc_bytes={cfg.acc_bytes}")
        tiles = (min(tiles[0], m), min(tiles[1], k), min(tiles[2], n))
    scored = []
    for tm in _candidates(m, m_unit) if tiles is None else [tiles[0]]:
        for tk in _candidates(k, k_unit) if tiles is None else [tiles[1]]:
            for tn in _candidates(n, n_unit) if tiles is None else [tiles[2]]:
                spad_need, acc_need = _local_need(cfg, tm, tk, tn, a_bits, b_store_bits, ob, bias,
                                                  b_trans, blocks, row_shift)
                if spad_need > cfg.spad_bytes or acc_need > cfg.acc_bytes:
                    continue
                for lo in ("mn", "nm") if order is None else (order,):
                    cycles, traffic, steps = gemm_tiling_estimate(cfg, m, k, n, tm, tk, tn, lo, mode=mode,
                                                                  dataflow=dataflow, out_bits=out_bits,
                                                                  blocks=blocks)
                    scored.append((cycles, traffic, steps, lo, tm, tk, tn))
    if not scored:
        raise ValueError(f"no tiling of M={m}, K={k}, N={n} ({mode}) fits spad_bytes={cfg.spad_bytes} and "
                         f"acc_bytes={cfg.acc_bytes}")
    # Within PLAN_SLACK of the fastest estimate (its resolution), prefer less DRAM traffic, then fewer steps.
    fastest = min(c[0] for c in scored)
    _, _, _, order, tm, tk, tn = min((c for c in scored if c[0] <= fastest * PLAN_SLACK), key=lambda c: c[1:])
    if m == 1 and tiles is None and dataflow == "ws" and len(scored) > 1 and k * n <= GEMV_EXACT_MAX and not b16:
        order, tm, tk, tn = _rank_gemv(cfg, k, n, mode, out_bits, bool(bias), bool(b_trans), bool(blocks), row_shift,
                                       tuple(sorted(scored)))
    return _layout(cfg, m, k, n, mode, dataflow, out_bits, tm, tk, tn, order, bias, b_trans, blocks, row_shift, b16)


#: Decode GEMVs (M = 1) are ranked by the exact whole-program cycle model among this many best estimates ...
GEMV_CANDIDATES = 24
#: ... when they have at most this many weights (K x N): a larger one (an LM head, 576 x 49152) is DMA-bound, where the
#: estimate's choice is within 0.3 % of the exact best (SmolLM2's head on 16x16 / 128-bit), and ranking it exactly
#: would take a minute of planning.
GEMV_EXACT_MAX = 1 << 22


@functools.lru_cache(maxsize=256)
def _rank_gemv(cfg: NPUConfig, k: int, n: int, mode: str, out_bits: int, bias: bool, b_trans: bool, blocks: bool,
               row_shift: bool, scored: tuple) -> tuple[str, int, int, int]:
    """(order, tm, tk, tn) of a GEMV (M = 1) with the fewest cycles of its program alone in the exact model
    (gen.perf.program, the fast harness's DRAM), among the :data:`GEMV_CANDIDATES` best estimates.

    Why: a GEMV is bound by the array's weight load (``rows`` cycles per fold) and the DMA, and the tiling estimate's
    per-row DMA overhead (PLAN_ROW_OVERHEAD) ranks tall narrow weight tiles too slow and many short MATMULs (a
    fill and drain each) too fast (measured on SmolLM2's decode projections on 16x16 / 128-bit: the estimate's
    choice is 1.5 to 6 % slower than the best of its candidates). Ties: less DRAM traffic, then fewer steps."""
    from npuforge.gen.perf.program import program_cycles     # the exact tier builds on gen.isa.ops: import late
    best = None
    for est, traffic, steps, order, tm, tk, tn in scored[:GEMV_CANDIDATES]:
        plan = _layout(cfg, 1, k, n, mode, "ws", out_bits, tm, tk, tn, order, bias, b_trans, blocks, row_shift)
        cycles = program_cycles(lower_gemm(plan), cfg, harness="fast").cycles
        key = (cycles, traffic, steps, order, tm, tk, tn)
        best = key if best is None or key < best else best
    return best[3:]


def _layout(cfg: NPUConfig, m: int, k: int, n: int, mode: str, dataflow: str, out_bits: int, tm: int, tk: int,
            tn: int, order: str, bias: bool, b_trans: bool, blocks: bool, row_shift: bool = False,
            b16: bool = False) -> GemmPlan:
    """The local and external layout of a tiling (plan_gemm's result)."""
    a_bits, b_bits = MODES[mode][0], b_elem_bits(mode, b16)
    ob = out_bits // 8
    # Local layout, all on word boundaries (records on 256-byte pages). Slot 0 of every buffer in the lower half of
    # the scratchpad and slot 1 in the upper half when both halves hold a set (and there are >= 2 banks), so the
    # DMA filling one slot and the array reading the other use different banks; else packed from 0.
    word = cfg.spad_word_bytes
    p_sz = _param_slot_bytes(cfg, tn, bias, tm if row_shift else 0)
    a_sz = _tile_bytes(cfg, a_tile_shape(tm, tk, a_bits))
    b_sz = _b_slot_bytes(cfg, tk, tn, b_bits, b_trans, blocks)
    o_sz = tm * cfg.local_stride("spad", tn * ob)
    half = cfg.spad_bytes // 2
    if cfg.spad_banks >= 2 and 2 * p_sz + a_sz + b_sz + o_sz <= half:
        slots = [(0, half, p_sz), (2 * p_sz, half + p_sz), (2 * p_sz + a_sz, half + p_sz + a_sz),
                 (2 * p_sz + a_sz + b_sz, half + p_sz + a_sz + b_sz)]
        cursor = half + p_sz + a_sz + b_sz + o_sz
    else:
        cursor = 0
        slots = []
        for size, count in ((p_sz, 3), (a_sz, 2), (b_sz, 2), (o_sz, 2)):
            slots.append(tuple(cursor + i * size for i in range(count)))
            cursor += count * size
    assert cursor <= cfg.spad_bytes and all(s % word == 0 for group in slots for s in group)
    acc_sz = tm * cfg.local_stride("acc", 4 * tn)

    # External layout.
    n_steps = cdiv(m, tm) * cdiv(k, tk) * cdiv(n, tn)
    n_tiles = cdiv(m, tm) * cdiv(n, tn)
    # Upper bound on the instruction count: per step a matmul and up to 5 loads (b16: two matmuls, up to 4 loads), per
    # tile a requant and a store, each possibly preceded by a fence, and the final HALT (with its fence).
    prog_bytes = INSTR_BYTES * (2 * (6 * n_steps + 2 * n_tiles) + 2)
    a_base = align(prog_bytes, _DATA_ALIGN)
    b_base = align(a_base + math.prod(a_tile_shape(m, k, a_bits)), 64)
    s_base = align(b_base + math.prod(b_tile_shape(k, n, b_bits, transposed=b_trans,
                                                   k_packed=blocks and b_bits == 4)), 64)
    p_base = align(s_base + (math.prod(block_records_shape(k, n)) if blocks else 0), 64)
    bias_base = align(p_base + n * REQUANT_PARAM_BYTES, 64)
    c_base = align(bias_base + (n * REQUANT_BIAS_BYTES if bias else 0), 64)
    r_base = align(c_base + m * n * ob, 64)
    image_bytes = align(r_base + (m if row_shift else 0), 64)
    if image_bytes > 1 << 32:
        raise ValueError(f"the GEMM needs {image_bytes} bytes of external memory, above the 4 GiB AXI space")
    return GemmPlan(cfg=cfg, m=m, k=k, n=n, mode=mode, dataflow=dataflow, out_bits=out_bits, tm=tm, tk=tk, tn=tn,
                    order=order, program_bytes=prog_bytes, a_base=a_base, b_base=b_base, p_base=p_base,
                    bias=bool(bias), bias_base=bias_base, b_trans=bool(b_trans), blocks=bool(blocks), s_base=s_base,
                    row_shift=bool(row_shift), r_base=r_base, b16=bool(b16),
                    c_base=c_base, image_bytes=image_bytes, param_slots=slots[0], a_slots=slots[1],
                    b_slots=slots[2], out_slots=slots[3], acc_slots=(0, acc_sz))


# -- lowering ---------------------------------------------------------------------------------------------------
def lower_gemm(plan: GemmPlan, *, zero_point: int = 0) -> list[Instr]:
    """The program of a plan (fenced, ending with HALT)."""
    program = insert_fences(plan.cfg, gemm_body(plan, zero_point=zero_point) + [Halt()])
    assert len(program) * INSTR_BYTES <= plan.program_bytes, "program area estimate too small"
    return program


@dataclass(frozen=True)
class SlotPhase:
    """Which double-buffer slot a GEMM body starts in: ``a``/``b`` the first A/B tile's slot (0 or 1), ``t`` the
    first output tile's index (parameter slots rotate mod 3, accumulator and output slots mod 2). A layer program
    starts each GEMM where the previous one left off, so the next GEMM's first loads go to the slots the previous
    GEMM's last MATMUL does not read, and the fences let them overlap it."""
    a: int = 0
    b: int = 0
    t: int = 0


def gemm_body(plan: GemmPlan, *, zero_point: int = 0) -> list[Instr]:
    """The instructions of a plan in issue order, without FENCEs or HALT (a layer program concatenates several
    bodies and fences the whole, see gen.isa.builder)."""
    return gemm_body_phased(plan, zero_point=zero_point).instructions


@dataclass(frozen=True)
class GemmBody:
    """A GEMM's instructions split for software pipelining across operators: ``prologue`` (the first step's loads),
    ``main``, and ``tail`` (the last tile's requant and store). A layer program issues the next GEMM's prologue
    before this GEMM's tail, so the DMA fetches its first tiles while the last MATMUL and requant run."""
    prologue: list
    main: list
    tail: list
    next_phase: SlotPhase

    @property
    def instructions(self) -> list:
        return self.prologue + self.main + self.tail


#: GemmPlan fields that plans must share to run as one double-buffered loop (all but the external addresses).
TILING_FIELDS = ("m", "k", "n", "mode", "dataflow", "out_bits", "tm", "tk", "tn", "order", "bias", "b_trans",
                 "blocks", "row_shift", "b16", "param_slots", "a_slots", "b_slots", "out_slots", "acc_slots")


def same_tiling(p: GemmPlan, q: GemmPlan) -> bool:
    """Two plans :func:`gemm_body_phased` can run as one loop."""
    return all(getattr(p, f) == getattr(q, f) for f in TILING_FIELDS)


def gemm_body_phased(plans, *, zero_point: int = 0, phase: SlotPhase = SlotPhase()) -> GemmBody:
    """:func:`gemm_body` starting at ``phase``, split into prologue, main and tail (:class:`GemmBody`).

    ``plans``: one plan, or several with the same shape, tiling, loop order and local layout (e.g. the attention
    heads' Q.K^T GEMMs, which differ only in their external addresses): their steps form one double-buffered loop,
    so the loads of one GEMM's first tiles overlap the previous GEMM's last MATMUL, requant and store."""
    plans = [plans] if isinstance(plans, GemmPlan) else list(plans)
    first = plans[0]
    for other in plans[1:]:
        diff = [f for f in TILING_FIELDS if getattr(other, f) != getattr(first, f)]
        if diff:
            raise ValueError(f"a batch of GEMM plans must share shape, tiling and local layout; differs in "
                             f"{', '.join(diff)}")
    nm, nk, nn = first.tiles

    def a_ext(p, m0, k0):
        return p.a_base + (m0 // 2 if p.a_bits == 4 else m0) * p.a_stride + a_elem_offset(k0, p.a_bits)

    def b_ext(p, k0, n0):
        if p.b16:           # int16 elements
            return p.b_base + (n0 * p.b_stride + 2 * k0 if p.b_trans else k0 * p.b_stride + 2 * n0)
        if p.b_trans:
            return p.b_base + n0 * p.b_stride + k0
        if p.k_packed:      # rows of K pairs, one byte per column
            return p.b_base + k0 // 2 * p.b_stride + n0
        return p.b_base + k0 * p.b_stride + (n0 if p.b_bits == 8 else n0 // 2)

    # Steps in loop order, each with its tile coordinates; output tiles numbered on from the phase.
    outer = [(mi, ni) for mi in range(nm) for ni in range(nn)] if first.order == "mn" else \
            [(mi, ni) for ni in range(nn) for mi in range(nm)]
    tiles = [(p, mi, ni) for p in plans for mi, ni in outer]
    steps = [(p, mi, ki, ni, phase.t + t) for t, (p, mi, ni) in enumerate(tiles) for ki in range(nk)]

    a_slot, b_slot = phase.a - 1, phase.b - 1
    a_tile = b_tile = None
    loads: list[list[Instr]] = []
    plan_steps = []
    for p, mi, ki, ni, t in steps:
        m0, k0, n0 = mi * p.tm, ki * p.tk, ni * p.tn
        tm, tk, tn = min(p.tm, p.m - m0), min(p.tk, p.k - k0), min(p.tn, p.n - n0)
        step_loads: list[Instr] = []
        if a_tile != (id(p), mi, ki):
            a_tile, a_slot = (id(p), mi, ki), (a_slot + 1) % 2
            a_rows, a_rb = a_tile_shape(tm, tk, p.a_bits)
            step_loads.append(DmaLoad("spad", p.a_slots[a_slot], a_ext(p, m0, k0), p.a_stride, a_rows, a_rb))
        if b_tile != (id(p), ki, ni):
            b_tile, b_slot = (id(p), ki, ni), (b_slot + 1) % 2
            b_rows, b_rb = b_tile_shape(tk, tn, p.b_tile_bits, transposed=p.b_trans, k_packed=p.k_packed)
            step_loads.append(DmaLoad("spad", p.b_slots[b_slot], b_ext(p, k0, n0), p.b_stride, b_rows, b_rb))
            if p.blocks:    # the tile's block records, where MATMUL.blocks reads them: right after the codes
                r_rows, r_rb = block_records_shape(tk, tn)
                step_loads.append(DmaLoad("spad", p.b_slots[b_slot] + b_rows * p.cfg.local_stride("spad", b_rb),
                                          p.s_base + (k0 // BLOCK) * p.s_stride + n0 * BLOCK_RECORD_BYTES,
                                          p.s_stride, r_rows, r_rb))
        if ki == 0:
            step_loads.append(DmaLoad("spad", p.param_slots[t % 3], p.p_base + n0 * REQUANT_PARAM_BYTES,
                                      tn * REQUANT_PARAM_BYTES, 1, tn * REQUANT_PARAM_BYTES))
            if p.bias:
                step_loads.append(DmaLoad("spad", p.param_slots[t % 3] + _bias_offset(p.cfg, p.tn),
                                          p.bias_base + n0 * REQUANT_BIAS_BYTES, tn * REQUANT_BIAS_BYTES, 1,
                                          tn * REQUANT_BIAS_BYTES))
            if p.row_shift:     # this M tile's k_r bytes, where VEC_REQUANT.row_shift reads them
                step_loads.append(DmaLoad("spad", p.param_slots[t % 3] + _bias_offset(p.cfg, p.tn), p.r_base + m0,
                                          tm, 1, tm))
        loads.append(step_loads)
        mm = [MatMul(p.mode, p.dataflow, int(ki > 0 or plane == 2), tm, tk, tn, p.a_slots[a_slot], p.b_slots[b_slot],
                     p.acc_slots[t % 2], b_trans=int(p.b_trans), blocks=int(p.blocks), b16=plane)
              for plane in ((1, 2) if p.b16 else (0,))]   # b16: the high plane, then the low plane accumulating
        finish = None
        if ki == nk - 1:
            finish = [VecRequant(tm, tn, p.acc_slots[t % 2], p.out_slots[t % 2],
                                 p.param_slots[t % 3] // PARAM_PAGE_BYTES, zero_point=zero_point,
                                 out16=int(p.out_bits == 16), out32=int(p.out_bits == 32), bias=int(p.bias),
                                 bias_addr=p.param_slots[t % 3] + _bias_offset(p.cfg, p.tn)
                                 if p.bias or p.row_shift else 0, wide=int(p.blocks or p.b16),
                                 row_shift=int(p.row_shift)),
                      DmaStore("spad", p.out_slots[t % 2], p.c_base + m0 * p.c_stride + n0 * p.out_bytes,
                               p.c_stride, tm, tn * p.out_bytes)]
        plan_steps.append((mm, finish))

    body: list[Instr] = []
    pending = None
    for s, (mm, finish) in enumerate(plan_steps):
        body.extend(mm)
        # The previous tile's requant before the next step's loads, its store after them: the requant runs beside
        # the loads (issue is in order, and a store waits for its requant), so the DMA keeps streaming. Its result
        # beats yield the scratchpad's write port to the loads (gen.perf.program prices that).
        if pending:
            body.append(pending[0])
        if s + 1 < len(plan_steps):
            body.extend(loads[s + 1])
        if pending:
            body.extend(pending[1:])
        pending = finish
    return GemmBody(prologue=list(loads[0]), main=body, tail=list(pending or []),
                    next_phase=SlotPhase(a=(a_slot + 1) % 2, b=(b_slot + 1) % 2, t=(phase.t + len(tiles)) % 6))
