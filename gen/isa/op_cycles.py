"""Cycle costs of the vector operators (``gen.isa.ops`` pairs each with its descriptor): the occupancy of the
controller's vector sequencer (``rtl/controller/`` VecEngine) per instruction.

Parameters (act: the 256-entry table, one entry per cycle plus one read per scratchpad word; a record: one read + one
data cycle per word; layernorm / rmsnorm / rope: the 16-byte header (a read + a data cycle per word), then the items
at one per cycle plus one read per word), then the rows. Constants fitted on the NPU (native harness) over every
format the layer programs use on 8- and 16-byte words (within 1.8 % an instruction: ``python -m
npuforge.sim.bench.layer --ops``; checked in tests/rtl/npu/test_npu_vector_cocotb.py and test_layer_cocotb.py), but
the ``-pt`` forms (``vec.gate`` flags 5, ``vec.rmsnorm`` flags 7: :data:`GATE_PRODUCT_BASE`, :data:`NORM_TOKEN_CALC`,
:data:`NORM_TOKEN_ROW`), fitted by pt-rtl on the NPU (CFG16, 8-byte words, 8 lanes: exact on 3x21 / 8x64 gate
products and 8x16 / 7x40 / 4x256 token scales; tests/rtl/npu/test_npu_pt_cocotb.py).
"""

from __future__ import annotations

from npuforge.gen.isa.layout import cdiv
from npuforge.spec.vector_ops import (ACT_INTERP, EPS_ENTRY, INTERP_ENTRIES, NORM_EPS_SHIFTS, NORM_WIDE,
                                      TABLE_ENTRIES, VectorOp, norm_token, rope_positions)

__all__ = ["VEC_BASE", "INTERP_EXTRA", "SOFTMAX_BASE", "VEC_HDR_BASE", "NORM_TAIL", "ROPE_TAIL", "ROPE16_TAIL",
           "GATE_PRODUCT_BASE", "NORM_TOKEN_CALC", "NORM_TOKEN_ROW", "cycles_softmax",
           "cycles_norm", "cycles_rope", "cycles_act", "cycles_record"]


# -- cycle costs ----------------------------------------------------------------------------------------------------
#: Every result leaves the vector unit through its output buffer (rtl.vector.skid.SkidBuffer, issue #16), one cycle
#: later than straight from the operator: one cycle more in the last row's drain of every operator, in VEC_BASE,
#: SOFTMAX_BASE, NORM_TAIL, ROPE_TAIL and ROPE16_TAIL (+ OUT_BUFFER each).
OUT_BUFFER = 1
#: The row readers' A and B beats enter the vector unit through skid buffers (rtl.controller.vector, issue #16), one
#: cycle later than straight from the readers: one cycle more in the last row's drain of every operator, in VEC_BASE
#: (and GATE_PRODUCT_BASE), SOFTMAX_BASE, NORM_TAIL, ROPE_TAIL and ROPE16_TAIL (+ IN_BUFFER each; measured on the NPU:
#: every operator of tests/rtl/npu/test_npu_vector_cocotb.py's throughput benches one cycle more an instruction).
IN_BUFFER = 1
#: vec.act / vec.residual / vec.gate cycles besides parameters and row beats (SETUP, ROWS_START, the vector unit's
#: pipeline fill and drain, DONE; residual/gate also CHECK), fitted on the RTL. Each multiply's pipeline
#: (rtl.vector.mulpool.MUL_LATENCY = 2) is in them: residual 14 + 2 (its products side by side), gate 12 + 2 x 2
#: (p = a * b, then p * multiplier); plus the output and input buffers' cycles.
VEC_BASE = {"act": 8 + OUT_BUFFER + IN_BUFFER, "residual": 16 + OUT_BUFFER + IN_BUFFER,
            "gate": 16 + OUT_BUFFER + IN_BUFFER}
#: vec.act's 16-bit tables (flags bit 1): the cycles InterpTable's pipeline (rtl.vector.table, LATENCY 6) holds a
#: beat longer than the 8-bit table's (LATENCY 2): 6 - 2, its read data register (issue #16, + 1) included.
INTERP_EXTRA = 4
#: vec.gate flags 5 (the exact int32 product): VEC_BASE["gate"] less the record's READ, DATA and CHECK cycles.
GATE_PRODUCT_BASE = VEC_BASE["gate"] - 3
#: vec.softmax: the three engines of rtl.vector.softmax over its two row buffers (:func:`_softmax_rows`), fitted on
#: the NPU (native harness) over int8 / int16 / int32 scores, uint8 / Q0.15 results, rows of 32..256 and 1..8 rows on
#: 8- and 16-byte words: the input pass takes ``beats_in + SOFTMAX_IN`` cycles; the sum pass starts
#: ``SOFTMAX_SUM_START`` after it and takes ``beats + SOFTMAX_SUM`` (exp pipeline and the division); the output
#: engine starts ``SOFTMAX_HANDOFF`` after the hand-over, frees the row's buffer after ``max(beats, beats_out -
#: SOFTMAX_OUT_PIPE)`` reads (its pipeline holds that many beats), and the next input may use the buffer
#: ``SOFTMAX_FREE`` cycles after; the last row's results leave ``beats_out`` after its output starts. The multipliers'
#: pipelines (rtl.vector.mulpool.MUL_LATENCY = 2) are in SOFTMAX_SUM (28 + 4: the exp's d * M and g * b),
#: SOFTMAX_OUT_PIPE (8 + 6: the output engine's exp and e * Rcp) and SOFTMAX_BASE (15 + 6: the last row's results);
#: so are the exp's stage E3 split in two and its input register E0 (the row buffer's read data registered before
#: E1; rtl.vector.softmax_exp, each one stage more in each engine's exp): + 1 + 1 in each; SOFTMAX_BASE has the output
#: and input buffers' cycles too.
SOFTMAX_BASE = 23 + OUT_BUFFER + IN_BUFFER
SOFTMAX_IN = -1
SOFTMAX_SUM_START = 2
SOFTMAX_SUM = 34
SOFTMAX_HANDOFF = 2
SOFTMAX_OUT_PIPE = 16
SOFTMAX_FREE = -3
#: vec.layernorm / vec.rmsnorm / vec.rope cycles besides the header, the parameter items and the rows (SETUP,
#: ROWS_START, DONE, the pipeline), fitted on the RTL.
VEC_HDR_BASE = {"layernorm": 3, "rmsnorm": 3, "rope": 3}
#: Norm rows: rtl.vector.norm's input pass, per-row computation and output pass over two row buffers
#: (:func:`_norm_rows`), fitted on the NPU (native harness) over int8 / int32 rows, int8 / int16 results, rows of
#: 32..256 and 1..8 rows on 8- and 16-byte words (within 1.3 %): input ``beats_in + NORM_IN``, computation
#: ``R + NORM_CALC`` (wide rows: plus the statistics pass over the row, ``beats``), output ``beats_out + NORM_OUT``;
#: a buffer is refilled ``NORM_FREE`` cycles after its row's output; the last row leaves ``NORM_TAIL`` later (15 and
#: the output and input buffers' cycles).
#: Not modelled: the output buffer holds two result beats more and the input buffers two operand beats, so a norm
#: whose results take two writes a beat (int16 results) gives up its row buffer earlier than :func:`_norm_rows` says
#: when the next row waits for it: 8 rows of 128, int32 -> int16, on the NPU (8 lanes, 8-byte words) take 1201 cycles
#: against the model's 1235 (1218 / 1234 with the output buffer only, 1223 / 1233 without either); int8 results are
#: exact as before.
NORM_IN = -2
NORM_CALC = 3
NORM_OUT = -3
NORM_FREE = 1
NORM_TAIL = 15 + OUT_BUFFER + IN_BUFFER
#: vec.rmsnorm token scale only (flags 7): per-row cycles between the input and the output pass (the row's k from
#: its max |x|), and per row besides the passes (the k_r byte write, one packer cycle, the row constants' hand-over).
NORM_TOKEN_CALC = 2
NORM_TOKEN_ROW = 2
#: RoPE rows: a row every beats + 1 cycles; the last row's queued second half drains in beats / 2 + ROPE_TAIL (6 + 2:
#: the rotation's multiplier pipeline, rtl.vector.mulpool.MUL_LATENCY; ROPE16_TAIL the same, 7 + 2), each plus the
#: output and input buffers' cycles.
ROPE_TAIL = 8 + OUT_BUFFER + IN_BUFFER
#: RoPE rows of int16 elements in or out (more words than beats): a row every max(words in, words out) cycles, the
#: last row drains in min(words in, words out) / 2 + ROPE16_TAIL (+ 1 when both are int16); fitted on the NPU (8 lanes,
#: 8-byte words: rows of 32 and 128, 1 and 8 rows, int16 -> int16 / int8, int8 -> int16, exact on all twelve).
ROPE16_TAIL = 9 + OUT_BUFFER + IN_BUFFER


def _norm_row_cycles(lanes: int) -> int:
    """``rtl.vector.norm`` per-row sequential computation (isqrt + reciprocal) at ``max(1, lanes // 4)`` bits a
    cycle: 5 + (ceil(31 / s) + 1) + (ceil(32 / s) + 1)."""
    s = max(1, lanes // 4)
    return 5 + cdiv(31, s) + 1 + cdiv(32, s) + 1


def _item_cycles(item_bytes: int, items: int, offset: int, B: int) -> int:
    """Streaming ``items`` parameter items of ``item_bytes`` from byte ``offset`` of the block: one read per word
    touched plus one cycle per item; an 8-byte item on a 4-byte word takes two reads and two data cycles."""
    if item_bytes > B:
        return 2 * (item_bytes // B) * items
    o = offset % B
    return items + cdiv(o + item_bytes * items, B)


def _header_cycles(spec: VectorOp, B: int) -> int:
    """The header: a read and a data cycle per scratchpad word, plus one (the header's fields latched)."""
    return 2 * max(1, spec.header_bytes // B) + 1


def _record_cycles(spec: VectorOp, B: int) -> int:
    """The one record: a read and a data cycle per scratchpad word."""
    return 2 * cdiv(spec.header_bytes, B)


def _softmax_rows(m: int, beats: int, beats_in: int, beats_out: int) -> int:
    """Cycles of ``m`` softmax rows from the first input beat to the last result: the input, sum and output engines
    of rtl.vector.softmax, one row each at a time, over two row buffers (constants above)."""
    issue = max(beats, beats_out - SOFTMAX_OUT_PIPE)
    in_end, handoff, out_start, freed = 0, 0, 0, []
    for i in range(m):
        start = max(in_end, freed[i - 2] + SOFTMAX_FREE if i >= 2 else 0)
        in_end = start + beats_in + SOFTMAX_IN
        summed = max(in_end + SOFTMAX_SUM_START, handoff) + beats + SOFTMAX_SUM
        handoff = max(summed, out_start)          # the constants slot frees when the previous row's output starts
        out_start = max(handoff + SOFTMAX_HANDOFF, freed[-1] + 1 if freed else 0)
        freed.append(out_start + issue)
    return out_start + beats_out


def cycles_softmax(spec, instr, B, lanes):
    # Rows of 2- / 4-byte scores enter at a scratchpad word per cycle (beats_in), Q0.15 rows leave at one (beats_out).
    beats = cdiv(instr.n, lanes)
    e_in, _, e_out = spec.elem_bytes(instr)
    beats_in, beats_out = (max(beats, cdiv(instr.n * e, B)) for e in (e_in, e_out))
    return SOFTMAX_BASE + _record_cycles(spec, B) + _softmax_rows(instr.m, beats, beats_in, beats_out)


def _norm_rows(m: int, beats_in: int, calc: int, beats_out: int) -> int:
    """Cycles of ``m`` norm rows: input pass, per-row computation (``calc``), output pass, over two row buffers."""
    in_end = calc_end = out_end = 0
    outs = []
    for i in range(m):
        start = max(in_end, outs[i - 2] + NORM_FREE if i >= 2 else 0)
        in_end = start + beats_in + NORM_IN
        calc_end = max(in_end, calc_end) + calc
        out_end = max(calc_end, out_end) + beats_out + NORM_OUT
        outs.append(out_end)
    return out_end + NORM_TAIL


def cycles_norm(spec, instr, B, lanes):
    # Wide (int32) rows: the eps table first, and the computation adds the statistics pass over the row; 4-byte
    # elements enter and int16 results leave at a scratchpad word per cycle.
    wide = bool(instr.flags & NORM_WIDE)
    _, _, e_out = spec.elem_bytes(instr)
    beats = cdiv(instr.n, lanes)
    beats_in = max(beats, cdiv(instr.n * (4 if wide else 1), B))
    beats_out = max(beats, cdiv(instr.n * e_out, B))
    if norm_token(instr):
        # Token scale only: no header, eps table or channels, no statistics pass or division; the wide norm's input
        # pass (max |x|), the row's k (NORM_TOKEN_CALC), the int16 output pass, the k_r write (NORM_TOKEN_ROW a row).
        return (VEC_HDR_BASE[spec.name] + _norm_rows(instr.m, beats_in, NORM_TOKEN_CALC, beats_out)
                + NORM_TOKEN_ROW * instr.m)
    start, item = spec.items_at(instr)
    items = _item_cycles(item.nbytes, instr.n, start, B)
    calc = _norm_row_cycles(lanes) + NORM_CALC
    if wide:
        items += _item_cycles(EPS_ENTRY.nbytes, NORM_EPS_SHIFTS, spec.header_bytes, B)
        calc += beats
    # One cycle checks the header.
    return (VEC_HDR_BASE[spec.name] + _header_cycles(spec, B) + 1 + items
            + _norm_rows(instr.m, beats_in, calc, beats_out))


def cycles_rope(spec, instr, B, lanes):
    # The header, one cycle per position P counted, the P table rows of n / 2 entries, then the rows: int8 rows a row
    # every beats + 1; rows of more words than beats (int16 rows or results, flags bits 6 / 7) a row every
    # max(words in, words out), the per-row bubble hidden behind the second word of each beat.
    beats = cdiv(instr.n, lanes)
    npos = rope_positions(instr)
    items = _item_cycles(spec.item_bytes, npos * (instr.n // 2), spec.param_ranges(instr)[1][0], B)
    e_in, _, e_out = spec.elem_bytes(instr)
    w_in, w_out = cdiv(instr.n * e_in, B), cdiv(instr.n * e_out, B)
    if max(w_in, w_out) <= beats:
        rows = instr.m * (beats + 1) + beats // 2 + ROPE_TAIL
    else:
        rows = instr.m * max(w_in, w_out) + min(w_in, w_out) // 2 + ROPE16_TAIL + (w_in == w_out)
    return VEC_HDR_BASE[spec.name] + _header_cycles(spec, B) + npos + items + rows


def _out_pieces(lanes: int, out_bytes: int, B: int) -> int:
    """Scratchpad writes per result beat (``lanes`` elements of ``out_bytes``): the last beat of an instruction
    leaves that many cycles after it is taken (rtl.controller.vec_rows packs it from its hold register)."""
    return cdiv(lanes * out_bytes, B)


def cycles_act(spec, instr, B, lanes):
    if instr.flags & ACT_INTERP:
        # 1025 int16 entries, one per cycle plus one read per word; int16 rows at a word per cycle at most; the
        # interpolation's pipeline stages add INTERP_EXTRA cycles of latency.
        beats = max(cdiv(instr.n, lanes), cdiv(2 * instr.n, B))
        return (VEC_BASE["act"] + INTERP_EXTRA + INTERP_ENTRIES + cdiv(2 * INTERP_ENTRIES, B) + instr.m * beats
                + _out_pieces(lanes, 2, B) - 1)
    table = TABLE_ENTRIES * spec.item_bytes
    return VEC_BASE["act"] + TABLE_ENTRIES + table // B + instr.m * cdiv(instr.n, lanes)


def cycles_record(spec, instr, B, lanes):
    # A row costs its beats, or its words when an operand or the result is wider than a word's share of a beat (the
    # int32 residual stream): the two operands are read on two ports and the results written on a third, so the
    # row runs at the largest of the three word counts (measured on the RTL within 3 cycles an instruction).
    # vec.gate's exact int32 product (flags 5) reads no record and skips its check (GATE_PRODUCT_BASE); its int32
    # results leave at a scratchpad word per cycle.
    elem = spec.elem_bytes(instr)
    beats = max(cdiv(instr.n * e, min(B, lanes * e)) for e in elem)
    if not spec.param_ranges(instr):
        return GATE_PRODUCT_BASE + instr.m * beats + _out_pieces(lanes, elem[2], B) - 1
    return VEC_BASE[spec.name] + _record_cycles(spec, B) + instr.m * beats + _out_pieces(lanes, elem[2], B) - 1
