"""Phase 1 of a vector instruction: its parameter block from the scratchpad into the vector unit, checked."""

from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from npuforge.rtl.controller.common import (ACT_TABLE_BYTES, ITEM_BYTES, ROPE_MAX_HEAD_DIM, ROPE_POSITIONS,
                                            UNIT_OPCODE, VEC_HEADER_BYTES, ErrorCode, UnitErrorCode, log2)
from npuforge.rtl.memories import ReadPortSignature
# The header / record layouts and the limits the checks enforce: the operators' descriptors (spec.vector_ops).
from npuforge.spec.vector_ops import (GAMMA_SHIFT_MAX, GAMMA_SHIFT_MIN, NORM_HEADER, Q31_MIN, REQUANT_RECORD,
                                      RESIDUAL_RECORD, RESIDUAL_WIDE, ROPE_FRAC_BITS_MAX, EPS_ENTRY, NORM_EPS_SHIFTS,
                                      NORM_OUT16, NORM_WIDE, EPS_TERM_BITS, norm_item, ACT_INTERP, INTERP_ENTRIES,
                                      INTERP_ENTRY, ROPE_HEADER, SHIFT_MAX, SHIFT_MIN, SOFTMAX_PAD, SOFTMAX_RECORD,
                                      VAR_FRAC_BITS_MAX, GATE_OUT32, NORM_TOKEN)

__all__ = ["ParamLoader", "record_field"]

#: Bytes of a norm's channel record by (operator, output bits) (spec.vector_ops.norm_item), the widest item.
NORM_ITEM_BYTES = {(kind, bits): norm_item(kind, bits).nbytes for kind in ("layernorm", "rmsnorm") for bits in (8, 16)}
MAX_ITEM_BYTES = max(NORM_ITEM_BYTES.values())
INTERP_TABLE_BYTES = INTERP_ENTRIES * INTERP_ENTRY.nbytes   #: vec.act's 16-bit interpolated table (flags bit 1)


def _sext(value, width):
    """``value`` (signed) sign-extended to ``width`` bits."""
    return Cat(value, value[-1].replicate(width - len(value)))


def record_field(value, record, name):
    """Field ``name`` of ``record`` (spec.vector_ops) in the loaded header / record bits ``value``."""
    f = record.field(name)
    bits = value[f.lsb:f.lsb + f.width]
    return bits.as_signed() if f.signed else bits


class ParamLoader(wiring.Component):
    """Sequences one vector instruction: loads and checks its parameters, then hands the rows to the
    :class:`~rtl.controller.vec_rows.RowStreamer` and reports the end (or an error).

    The exact ``vec.gate`` product (flags bit 2) and the token-scale-only ``vec.rmsnorm`` (flags 7) read no
    parameters: their rows start at once. Otherwise parameters come from scratchpad byte ``param_word * word_bytes``: for ``act`` the 256-byte table into table
    slot ``table`` (one entry per cycle; flags bit 1: the 1025 int16 entries of the interpolated table); for
    softmax/residual/gate the 64-bit ``record`` (softmax, gate: multiplier bit 30 and shift in [-30, 31] checked, else
    BAD_PARAM with the record address); for layernorm, rmsnorm and
    rope the 16-byte ``header`` (one read per word), checked (norms: var_frac_bits even and <= 28, gamma_shift in
    [-15, 16]; rope: frac_bits in [1, 14], positions ``row_offset .. row_offset + P - 1`` inside the table,
    P = ceil(m / heads) counted by repeated addition; else BAD_PARAM with the block address; rope: the table rows
    read inside the scratchpad, else LOCAL_RANGE with the block address), then the items after it into the
    operator's parameter memory, one item per cycle plus one read cycle per word (norms: channel c = item c; rope:
    the P table rows of the instruction's positions, row r into resident slot r; a LayerNorm item on a 4-byte word
    takes two reads).

    An operator error during the rows (not reachable after the controller's checks) is reported once the unit
    has ``drained``, never hanging.

    Members
    -------
    start : In(1)      pulse; the other inputs describe the instruction and are held until ``done``.
    unit_op : In(4)    VectorUnit opcode; is_act : In(1); table : In(1) act table slot; m, n : In(12)
    param_word : In(spad_aw); row_offset : In(15), heads_m1 : In(8)   rope: first position, heads - 1
    flags : In(8)      softmax: the padding flag makes the record's valid_len = 0 BAD_PARAM; residual: the wide flag
                       checks its record (a_multiplier >= 2^30, b_multiplier 0, else BAD_PARAM at address 0)
    busy, done, error : Out(1); code : Out(4) ISA error code; fault_addr : Out(32)
    rd : Out(ReadPortSignature)   the parameter reads (idle while the rows stream)
    clear, param_we, param_addr, param_data : the unit's ports of the same names
    record : Out(64); header : Out(8 * VEC_HEADER_BYTES)   the loaded record / header, held for the rows
    setup, rows_start : Out(1)   pulses to the row streamer; rows_finished : In(1) its last write
    unit_error : In(1), unit_error_code : In(4), drained : In(1)   the unit's error, once nothing is in flight
    """

    def __init__(self, *, word_bytes: int, spad_aw: int, spad_words: int, ops, param_addr_shape, param_data_shape,
                 norm_out_width: int = 8):
        self.B, self.spad_aw, self.spad_words, self.ops = word_bytes, spad_aw, spad_words, tuple(ops)
        self.norm_out_width = norm_out_width
        super().__init__({
            "start": In(1), "unit_op": In(4), "is_act": In(1), "table": In(1), "m": In(12), "n": In(12),
            "param_word": In(spad_aw), "row_offset": In(15), "heads_m1": In(8), "flags": In(8),
            "busy": Out(1), "done": Out(1), "error": Out(1), "code": Out(4), "fault_addr": Out(32),
            "rd": Out(ReadPortSignature(spad_aw, word_bytes)),
            "clear": Out(1), "param_we": Out(1), "param_addr": Out(param_addr_shape),
            "param_data": Out(param_data_shape),
            "record": Out(64), "header": Out(8 * VEC_HEADER_BYTES),
            "eps_we": Out(1), "eps_addr": Out(range(NORM_EPS_SHIFTS)), "eps_data": Out(EPS_TERM_BITS),
            "setup": Out(1), "rows_start": Out(1), "rows_finished": In(1),
            "unit_error": In(1), "unit_error_code": In(4), "drained": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        B, LB = self.B, log2(self.B)
        uop = self.unit_op
        s = SimpleNamespace()
        s.rec_lo = Signal(32, name="rec_lo")
        s.error, s.code, s.fault = Signal(name="error"), Signal(4, name="code"), Signal(32, name="fault")
        m.d.comb += [self.error.eq(s.error), self.code.eq(s.code), self.fault_addr.eq(s.fault)]
        s.hdr = Signal(8 * VEC_HEADER_BYTES, name="hdr")
        s.rec = Signal(64, name="rec")
        m.d.comb += [self.header.eq(s.hdr), self.record.eq(s.rec)]
        s.tw = Signal(range(-(-INTERP_TABLE_BYTES // B) + 1), name="tw")   # table word
        s.interp = self.is_act & self.flags[ACT_INTERP.bit_length() - 1]  # the 16-bit interpolated table
        s.ent = Signal(range(INTERP_ENTRIES + 1), name="ent")              # its entry
        s.tb = Signal(range(B), name="tb")                           # byte of the table word
        s.half = Signal(name="half")                                 # 4-byte words: second word of the record
        s.is_ln = (uop == UNIT_OPCODE["layernorm"]) if "layernorm" in self.ops else Const(0, 1)
        s.is_rms = (uop == UNIT_OPCODE["rmsnorm"]) if "rmsnorm" in self.ops else Const(0, 1)
        s.is_rope = (uop == UNIT_OPCODE["rope"]) if "rope" in self.ops else Const(0, 1)
        has_hdr = Signal()
        m.d.comb += has_hdr.eq(s.is_ln | s.is_rms | s.is_rope)
        # Header and item streaming state.
        s.hw = Signal(range(max(1, VEC_HEADER_BYTES // B) + 1), name="hw")   # header word
        s.ptr = Signal(self.spad_aw + LB + 12, name="ptr")    # byte address of the next item (may run past: checked)
        s.item_n = Signal(12, name="item_n")                  # norm: channel; rope: entry i of the table row
        s.item_r = Signal(range(ROPE_POSITIONS + 1), name="item_r")   # rope: resident slot being loaded
        s.npos = Signal(range(ROPE_POSITIONS + 2), name="npos")       # rope: P = ceil(m / heads)
        s.prow = Signal(13, name="prow")                      # rope: npos * heads
        # Items after the header: norms' channel records (int8 / int16 output: spec.vector_ops.norm_item), wide norms'
        # eps table first (EPS_ENTRY), RoPE entries; an item wider than the word is gathered from its words.
        norm = s.is_ln | s.is_rms
        s.wide_norm = norm & self.flags[NORM_WIDE.bit_length() - 1]
        s.out16 = self.flags[NORM_OUT16.bit_length() - 1]
        # No parameter block: the exact vec.gate product (flags bit 2), the token-scale-only vec.rmsnorm (bit 2).
        s.no_block = (((uop == UNIT_OPCODE["gate"]) & self.flags[GATE_OUT32.bit_length() - 1]
                       if "gate" in self.ops else Const(0, 1))
                      | (s.is_rms & self.flags[NORM_TOKEN.bit_length() - 1]))
        s.eps_phase = Signal(name="eps_phase")                 # wide norm: loading the eps table
        s.ib = Signal(range(MAX_ITEM_BYTES + 1), name="item_bytes")
        m.d.comb += s.ib.eq(Mux(s.eps_phase, EPS_ENTRY.nbytes,
                                Mux(s.is_ln, Mux(s.out16, NORM_ITEM_BYTES[("layernorm", 16)],
                                                 NORM_ITEM_BYTES[("layernorm", 8)]),
                                    Mux(s.is_rms, Mux(s.out16, NORM_ITEM_BYTES[("rmsnorm", 16)],
                                                      NORM_ITEM_BYTES[("rmsnorm", 8)]),
                                        ITEM_BYTES["rope"]))))
        max_parts = max(1, MAX_ITEM_BYTES // B)
        s.part = Signal(range(max_parts), name="part")        # word of an item wider than the word
        s.gather = Signal(8 * B * max_parts, name="gather")
        shifted = Signal(8 * B)
        m.d.comb += shifted.eq(self.rd.data >> Cat(Const(0, 3), s.ptr[:LB]))
        item_data = s.item_data = Signal(8 * max(B, MAX_ITEM_BYTES), name="item_data")
        if max_parts > 1:
            m.d.comb += item_data.eq(Mux(s.ib > B, s.gather | (self.rd.data << (s.part * 8 * B)), shifted))
        else:
            m.d.comb += item_data.eq(shifted)
        # A norm's parameter word (rtl.vector.norm.LayerNormParamWord / RMSNormParamWord of ``norm_out_width``): the
        # record's G / B sign-extended into its fields (an int8-output record into a 16-bit-output operator's).
        if self.norm_out_width == 16:
            def fields(kind, bits):
                rec = norm_item(kind, bits)
                return [record_field(item_data, rec, f.name) for f in rec.fields]
            g8, b8 = fields("layernorm", 8)
            g16, b16 = fields("layernorm", 16)
            ln_word = Mux(s.out16, Cat(g16, b16), Cat(_sext(g8, 24), _sext(b8, 56)))
            rms_word = Mux(s.out16, fields("rmsnorm", 16)[0], _sext(fields("rmsnorm", 8)[0], 24))
            norm_word = Mux(s.is_ln, ln_word, rms_word)
        else:
            norm_word = item_data
        rope_shift = (ROPE_MAX_HEAD_DIM // 2 - 1).bit_length()
        tbl_addr = Mux(s.is_rope, Cat(s.item_n[:rope_shift], s.item_r), s.item_n)
        m.d.comb += [self.param_we.eq(0), self.eps_we.eq(0), self.eps_addr.eq(s.item_n),
                     self.eps_data.eq(record_field(item_data, EPS_ENTRY, "eps_term")),
                     self.param_addr.eq(Mux(has_hdr, tbl_addr,
                                            Mux(s.interp, self.table * INTERP_ENTRIES + s.ent,
                                                (self.table << log2(ACT_TABLE_BYTES)) | (s.tw << LB) | s.tb))),
                     self.param_data.eq(Mux(norm, norm_word, Mux(has_hdr, item_data,
                                                                  Mux(s.interp,
                                                                      _sext(self.rd.data.word_select(
                                                                          s.tb[:max(1, LB - 1)], 16), 32),
                                                                      self.rd.data.word_select(s.tb, 8))))),
                     self.clear.eq(0)]
        s.pbyte = Signal(self.spad_aw + LB, name="pbyte")
        m.d.comb += s.pbyte.eq(self.param_word << LB)
        with m.FSM() as fsm:
            with m.State("IDLE"):
                with m.If(self.start):
                    m.next = "SETUP"
            with m.State("SETUP"):
                m.d.comb += [self.setup.eq(1), self.clear.eq(1)]
                m.d.sync += [s.error.eq(0), s.code.eq(0), s.fault.eq(0), s.tw.eq(0), s.tb.eq(0), s.half.eq(0),
                             s.hw.eq(0), s.hdr.eq(0), s.item_n.eq(0), s.item_r.eq(0), s.npos.eq(0), s.prow.eq(0),
                             s.part.eq(0), s.gather.eq(0), s.eps_phase.eq(0), s.ent.eq(0)]
                with m.If(s.no_block):
                    m.next = "ROWS_START"
                with m.Elif(has_hdr):
                    m.next = "HDR_READ"
                with m.Else():
                    m.next = "PARAM_READ"
            self._header_states(m, s)
            self._item_states(m, s)
            self._record_states(m, s)
            with m.State("ROWS_START"):
                m.d.comb += self.rows_start.eq(1)
                m.next = "ROWS"
            with m.State("ROWS"):
                with m.If(self.rows_finished):
                    m.next = "DONE"
                with m.Elif(self.unit_error & self.drained):
                    m.d.sync += [s.error.eq(1), s.fault.eq(0),
                                 s.code.eq(Mux(self.unit_error_code == UnitErrorCode.BAD_PARAM,
                                               int(ErrorCode.BAD_PARAM),
                                               Mux(self.unit_error_code == UnitErrorCode.PARAM_ADDR,
                                                   int(ErrorCode.LOCAL_RANGE), int(ErrorCode.ILLEGAL_INSTRUCTION))))]
                    m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += self.done.eq(1)
                m.next = "IDLE"
        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))
        return m

    def _header_states(self, m, s):
        """layernorm / rmsnorm / rope: read the 16-byte header, count rope's positions, check the header."""
        B, LB = self.B, log2(self.B)
        HW = max(1, VEC_HEADER_BYTES // B)                # header words
        mm, nn, row_offset, heads_m1 = self.m, self.n, self.row_offset, self.heads_m1
        hdr, is_rope = s.hdr, s.is_rope
        with m.State("HDR_READ"):
            m.d.comb += [self.rd.en.eq(1), self.rd.addr.eq(self.param_word + s.hw)]
            m.next = "HDR_DATA"
        with m.State("HDR_DATA"):
            if B >= VEC_HEADER_BYTES:
                m.d.sync += hdr.eq(self.rd.data[:8 * VEC_HEADER_BYTES])
                m.next = "RPOS"
            else:
                m.d.sync += [hdr.word_select(s.hw, 8 * B).eq(self.rd.data), s.hw.eq(s.hw + 1)]
                with m.If(s.hw == HW - 1):
                    m.next = "RPOS"
                with m.Else():
                    m.next = "HDR_READ"
        with m.State("RPOS"):
            # rope: P = ceil(m / heads) by repeated addition (the decoder bounds it by ROPE_POSITIONS).
            with m.If(~is_rope):
                m.next = "HDR_CHECK"
            with m.Else():
                m.d.sync += [s.npos.eq(s.npos + 1), s.prow.eq(s.prow + heads_m1 + 1)]
                with m.If((s.prow + heads_m1 + 1 >= mm) | (s.npos == ROPE_POSITIONS)):
                    m.next = "HDR_CHECK"
        with m.State("HDR_CHECK"):
            frac = record_field(hdr, NORM_HEADER, "var_frac_bits")
            gshift = record_field(hdr, NORM_HEADER, "gamma_shift")
            norm_bad = (frac[0] | (frac > VAR_FRAC_BITS_MAX) | (gshift < GAMMA_SHIFT_MIN)
                        | (gshift > GAMMA_SHIFT_MAX))
            rope_frac = record_field(hdr, ROPE_HEADER, "frac_bits")
            rope_bad = ((rope_frac == 0) | (rope_frac > ROPE_FRAC_BITS_MAX)
                        | (row_offset + s.npos > record_field(hdr, ROPE_HEADER, "positions")))
            row_bytes = Signal(14)
            m.d.comb += row_bytes.eq(nn << 1)            # one table row: n / 2 entries of 4 bytes
            tbl_start = Signal(self.spad_aw + LB + 30)
            tbl_end = Signal(self.spad_aw + LB + 30)
            m.d.comb += [tbl_start.eq(s.pbyte + VEC_HEADER_BYTES + row_bytes * row_offset),
                         tbl_end.eq(tbl_start + row_bytes * s.npos)]
            with m.If(Mux(is_rope, rope_bad, norm_bad)):
                m.d.sync += [s.error.eq(1), s.code.eq(ErrorCode.BAD_PARAM), s.fault.eq(s.pbyte)]
                m.next = "DONE"
            with m.Elif(is_rope & (tbl_end > self.spad_words * B)):
                m.d.sync += [s.error.eq(1), s.code.eq(ErrorCode.LOCAL_RANGE), s.fault.eq(s.pbyte)]
                m.next = "DONE"
            with m.Else():
                m.d.sync += [s.ptr.eq(Mux(is_rope, tbl_start, s.pbyte + VEC_HEADER_BYTES)),
                             s.eps_phase.eq(s.wide_norm)]
                m.next = "TBL_READ"

    def _item_states(self, m, s):
        """The items after the header, one per cycle into the operator's parameter memory (a wide norm's eps table
        first, into its eps port); an item wider than the word takes one read and one data cycle per word."""
        B, LB = self.B, log2(self.B)
        nn, is_rope, ptr = self.n, s.is_rope, s.ptr
        half_n = nn >> 1
        item_last = ~s.eps_phase & Mux(is_rope, (s.item_n == half_n - 1) & (s.item_r == s.npos - 1),
                                       s.item_n == nn - 1)
        parts_last = Signal()
        m.d.comb += parts_last.eq((s.ib <= B) | (s.part == (s.ib >> LB) - 1))
        with m.State("TBL_READ"):
            m.d.comb += [self.rd.en.eq(1), self.rd.addr.eq(ptr >> LB)]
            m.next = "TBL_DATA"
        with m.State("TBL_DATA"):
            step = Signal(range(MAX_ITEM_BYTES + 1))
            m.d.comb += step.eq(Mux(s.ib > B, B, s.ib))
            with m.If(~parts_last):
                # Gather: keep this word of the item, read the next.
                m.d.sync += [s.gather.eq(s.item_data), s.part.eq(s.part + 1), ptr.eq(ptr + B)]
                m.next = "TBL_READ"
            with m.Else():
                m.d.comb += [self.param_we.eq(~s.eps_phase), self.eps_we.eq(s.eps_phase)]
                m.d.sync += [s.part.eq(0), s.gather.eq(0), ptr.eq(ptr + step), s.item_n.eq(s.item_n + 1)]
                with m.If(is_rope & (s.item_n == half_n - 1)):
                    m.d.sync += [s.item_n.eq(0), s.item_r.eq(s.item_r + 1)]
                with m.If(s.eps_phase & (s.item_n == NORM_EPS_SHIFTS - 1)):
                    # The eps table is in: the channel records follow it.
                    m.d.sync += [s.item_n.eq(0), s.eps_phase.eq(0)]
                with m.If(item_last):
                    m.next = "ROWS_START"
                with m.Elif((ptr + step)[:LB] == 0):
                    m.next = "TBL_READ"

    def _record_states(self, m, s):
        """act: the 256-byte table or the 1025 int16 entries of the interpolated table, one entry per cycle;
        softmax / residual / gate: the 64-bit record, checked."""
        B, LB = self.B, log2(self.B)
        is_act, tw, tb, half, rec = self.is_act, s.tw, s.tb, s.half, s.rec
        with m.State("PARAM_READ"):
            # Parameters share the dedicated read port with reader A (not active yet).
            m.d.comb += [self.rd.en.eq(1), self.rd.addr.eq(self.param_word + Mux(is_act, tw, half))]
            m.next = "PARAM_DATA"
        with m.State("PARAM_DATA"):
            with m.If(is_act & s.interp):
                # 1025 int16 entries, one per cycle: entry tb of the word (B / 2 a word), then the next word.
                m.d.comb += self.param_we.eq(1)
                m.d.sync += [tb.eq(tb + 1), s.ent.eq(s.ent + 1)]
                with m.If(s.ent == INTERP_ENTRIES - 1):
                    m.next = "ROWS_START"
                with m.Elif(tb == B // 2 - 1):
                    m.d.sync += [tb.eq(0), tw.eq(tw + 1)]
                    m.next = "PARAM_READ"
            with m.Elif(is_act):
                m.d.comb += self.param_we.eq(1)
                m.d.sync += tb.eq(tb + 1)
                with m.If(tb == B - 1):
                    m.d.sync += [tb.eq(0), tw.eq(tw + 1)]
                    with m.If(tw == ACT_TABLE_BYTES // B - 1):
                        m.next = "ROWS_START"
                    with m.Else():
                        m.next = "PARAM_READ"
            with m.Elif(Const(B == 4) & ~half):
                m.d.sync += [s.rec_lo.eq(self.rd.data), half.eq(1)]
                m.next = "PARAM_READ"
            with m.Else():
                m.d.sync += rec.eq(Cat(s.rec_lo, self.rd.data) if B == 4 else self.rd.data[:64])
                m.next = "CHECK"
        with m.State("CHECK"):
            uop = self.unit_op
            rec_shift = record_field(rec, REQUANT_RECORD, "shift")
            normalised = record_field(rec, REQUANT_RECORD, "multiplier")[Q31_MIN.bit_length() - 1]   # >= 2^30
            is_softmax = uop == UNIT_OPCODE["softmax"]
            checked = (uop == UNIT_OPCODE["gate"]) | is_softmax
            # softmax's padding mask must leave a column (valid_len >= 1).
            no_column = is_softmax & self.flags[SOFTMAX_PAD.bit_length() - 1] \
                & (record_field(rec, SOFTMAX_RECORD, "valid_len") == 0)
            # The wide residual: a_multiplier a normalised Q31, b_multiplier 0 (BAD_PARAM at address 0, like the
            # residual's shift; spec.vector_ops residual descriptor).
            wide_residual_bad = (uop == UNIT_OPCODE["residual"]) & self.flags[RESIDUAL_WIDE.bit_length() - 1] & (
                ~record_field(rec, RESIDUAL_RECORD, "a_multiplier")[Q31_MIN.bit_length() - 1]
                | (record_field(rec, RESIDUAL_RECORD, "b_multiplier") != 0))
            with m.If((checked & (~normalised | (rec_shift < SHIFT_MIN) | (rec_shift > SHIFT_MAX))) | no_column):
                m.d.sync += [s.error.eq(1), s.code.eq(ErrorCode.BAD_PARAM), s.fault.eq(self.param_word << LB)]
                m.next = "DONE"
            with m.Elif(wide_residual_bad):
                m.d.sync += [s.error.eq(1), s.code.eq(ErrorCode.BAD_PARAM), s.fault.eq(0)]
                m.next = "DONE"
            with m.Else():
                m.next = "ROWS_START"
