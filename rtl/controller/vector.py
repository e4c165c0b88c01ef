"""The vector sequencer: parameter blocks and rows of the VEC_* operators through the vector unit."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from npuforge.rtl.controller.common import (ROPE_MAX_HEAD_DIM, ROPE_POSITIONS, UNIT_OPCODE, VEC_OPCODES,
                                            VEC_UNIT_OPERATOR, vec_elem_log2)
from npuforge.rtl.controller.vec_params import ParamLoader, record_field
from npuforge.spec.vector_ops import (GATE_OUT16, GATE_OUT32, NORM_HEADER, NORM_OUT16, NORM_TOKEN, NORM_WIDE, REQUANT_RECORD, RESIDUAL_OUT32, RESIDUAL_RECORD, RESIDUAL_WIDE,
                                      ROPE_HEADER, ROPE_OUT16, SOFTMAX_PAD, SOFTMAX_RECORD)
from npuforge.rtl.controller.vec_rows import RowStreamer
from npuforge.rtl.memories import ReadPortSignature, WritePortSignature
from npuforge.rtl.vector.skid import SkidBuffer

__all__ = ["VecEngine", "build_vector_unit"]


def build_vector_unit(*, lanes: int, ops, share_multipliers: bool = True):
    """The :class:`~npuforge.rtl.vector.unit.VectorUnit` the vector sequencer drives for the VEC_* operators ``ops``
    (``VEC_OPCODES`` names), ``lanes`` elements per cycle: the operators, their widths and rows up to 4096, their
    multipliers shared (``share_multipliers``, see :mod:`rtl.vector.mulpool`) or one set per operator."""
    from npuforge.rtl.vector.unit import VectorUnit

    options = {}
    if "softmax" in ops:
        options["softmax"] = {"in_width": 32}
    if "rope" in ops:
        # int8 or int16 head vectors in and out (flags bits 6, 7).
        options["rope"] = {"max_row": ROPE_MAX_HEAD_DIM, "max_positions": ROPE_POSITIONS, "in_width": 16,
                           "out_width": 16}
    if "gate" in ops:
        # int8 or int16 operands and results (flags bits 0, 1), or the exact int32 product (bit 2).
        options["gate"] = {"in_width": 16, "out_width": 32}
    if "residual" in ops:
        # int8 rows, or the int32 residual stream's int8/int16/int32 operands and int16/int32 results.
        options["residual"] = {"in_width": 32, "out_width": 32}
    for norm in ("layernorm", "rmsnorm"):
        if norm in ops:
            # int8 rows, or int32 rows (norm_wide); int8 or int16 results.
            options[norm] = {"in_width": 32, "out_width": 16}
    # vec.act's 16-bit interpolated tables (flags bit 1) are a second operator beside the int8 tables.
    unit_ops = [VEC_UNIT_OPERATOR[o] for o in ops] + (["interp"] if "act" in ops else [])
    return VectorUnit(lanes=lanes, max_row=4096, ops=unit_ops, options=options or None,
                      share_multipliers=share_multipliers)


class VecEngine(wiring.Component):
    """Vector sequencer: ``spad[dst: m x n] = op(spad[src: m x n] (, spad[src2: m x n]))`` through a
    :class:`rtl.vector.unit.VectorUnit` holding the operators of ``ops`` (ISA names: softmax, layernorm, rmsnorm,
    act, residual, gate, rope; softmax built for 32-bit scores: int8 / int16 / int32 rows by its flags, uint8 or
    Q0.15 int16 probabilities; residual built 32 bits wide: int8 rows, or the int32 residual stream's add; norms built
    for int32 rows and int16 results; rope and gate built for int16 rows and results (int8 / int16 by their flags); act with the 16-bit interpolated tables beside the int8 ones).

    Phase 1, :class:`ParamLoader` (``params``): the instruction's parameter block from the scratchpad into the
    unit's parameter memory and run-time ports, checked (BAD_PARAM / LOCAL_RANGE with the block address). Phase 2,
    :class:`RowStreamer` (``rows``): the rows from the scratchpad through the unit and back, ``lanes`` elements per
    cycle. The loader and reader A share the dedicated read port ``rd``; reader B (``rd2``) and the results
    (``wr``) yield to the DMA, which has priority on those shared ports.

    An operator error (not reachable after the controller's checks) drops rows without output; the engine still
    reads every row, waits for the unit to drain and then reports it (``error``, ``code``), never hanging.

    Members
    -------
    start : In(1)  pulse; ``unit_op .. shift`` are sampled then.
    unit_op : In(4) VectorUnit opcode; two : In(1) second operand; is_act : In(1); table : In(1) act table slot
    m, n : In(12); src_word, src2_word, dst_word, param_word : In(spad_aw); shift : In(6) residual total shift
    causal : In(1), row_offset : In(15)   softmax: row i of the instruction has query position row_offset + i;
                                          rope: the first table position
    flags : In(8)      the instruction's flags (softmax: score width, Q0.15 output, padding mask)
    heads_m1 : In(8)   rope: row i uses position row_offset + i // (heads_m1 + 1) (flags bits [5:0])
    busy, done, error : Out(1); code : Out(4) ISA error code; fault_addr : Out(32)
    rd, rd2 : Out(ReadPortSignature); rd2_block : In(1); wr : Out(WritePortSignature); wr_block : In(1)
    """

    def __init__(self, *, word_bytes: int, spad_aw: int, lanes: int, ops, spad_words: int | None = None):
        self.B = word_bytes
        if lanes < 1 or lanes > word_bytes or lanes & (lanes - 1):
            raise ValueError(f"vector lanes must be a power of two in [1, word_bytes={word_bytes}], got {lanes!r}")
        self.lanes = lanes
        self.ops = tuple(ops)
        for op in self.ops:
            if op not in VEC_OPCODES:
                raise ValueError(f"vector op must be one of {', '.join(VEC_OPCODES)}, got {op!r}")
        self.spad_aw = spad_aw
        self.spad_words = (1 << spad_aw) if spad_words is None else spad_words
        self.unit = build_vector_unit(lanes=lanes, ops=self.ops)
        unit_ports = self.unit.signature.members
        self.loader = ParamLoader(word_bytes=word_bytes, spad_aw=spad_aw, spad_words=self.spad_words, ops=self.ops,
                                  param_addr_shape=unit_ports["param_addr"].shape,
                                  param_data_shape=unit_ports["param_data"].shape, norm_out_width=16)
        # The rows' element sizes (log2 bytes) per operator: softmax's by its flags, int8 elsewhere.
        self.rows = RowStreamer(word_bytes=word_bytes, spad_aw=spad_aw, lanes=lanes,
                                i_signature=unit_ports["i"].signature.flip(), o_signature=unit_ports["o"].signature,
                                b_signature=unit_ports["b"].signature.flip() if "b" in unit_ports else None,
                                query_pos="softmax" in self.ops, rope_slot="rope" in self.ops,
                                token_k="rmsnorm" in self.ops)
        super().__init__({
            "start": In(1),
            "unit_op": In(4), "two": In(1), "is_act": In(1), "table": In(1),
            "m": In(12), "n": In(12),
            "src_word": In(spad_aw), "src2_word": In(spad_aw), "dst_word": In(spad_aw), "param_word": In(spad_aw),
            "shift": In(6), "causal": In(1), "row_offset": In(15), "heads_m1": In(8), "flags": In(8),
            "busy": Out(1), "done": Out(1), "error": Out(1), "code": Out(4), "fault_addr": Out(32),
            "rd": Out(ReadPortSignature(spad_aw, word_bytes)),
            "rd2": Out(ReadPortSignature(spad_aw, word_bytes)), "rd2_block": In(1),
            "wr": Out(WritePortSignature(spad_aw, word_bytes)), "wr_block": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.unit = unit = self.unit
        m.submodules.params = ld = self.loader
        m.submodules.rows = rows = self.rows

        uop, two, is_act, table = Signal(4), Signal(), Signal(), Signal()
        mm, nn = Signal(12), Signal(12)
        src, src2, dst, pword = (Signal(self.spad_aw, name=n) for n in ("v_src", "v_src2", "v_dst", "v_pword"))
        shift = Signal(6)
        causal, row_offset, heads_m1, flags = Signal(), Signal(15), Signal(8), Signal(8)
        # vec.act with flags bit 1: the interpolated GELU / SiLU tables (unit opcodes GELU16 / SILU16).
        interp_op = Mux(self.flags[0], UNIT_OPCODE["silu16"], UNIT_OPCODE["gelu16"])
        with m.If(self.start):
            m.d.sync += [causal.eq(self.causal), row_offset.eq(self.row_offset), heads_m1.eq(self.heads_m1),
                         flags.eq(self.flags)]
            m.d.sync += [uop.eq(Mux(self.is_act & self.flags[1], interp_op, self.unit_op)), two.eq(self.two),
                         is_act.eq(self.is_act), table.eq(self.table), mm.eq(self.m), nn.eq(self.n), src.eq(self.src_word), src2.eq(self.src2_word),
                         dst.eq(self.dst_word), pword.eq(self.param_word), shift.eq(self.shift)]
        m.d.comb += [
            ld.start.eq(self.start), ld.unit_op.eq(uop), ld.is_act.eq(is_act), ld.table.eq(table), ld.m.eq(mm),
            ld.n.eq(nn), ld.param_word.eq(pword), ld.row_offset.eq(row_offset), ld.heads_m1.eq(heads_m1),
            ld.flags.eq(flags),
            self.busy.eq(ld.busy), self.done.eq(ld.done), self.error.eq(ld.error), self.code.eq(ld.code),
            self.fault_addr.eq(ld.fault_addr),
            rows.setup.eq(ld.setup), rows.start.eq(ld.rows_start), rows.two.eq(two), rows.m.eq(mm), rows.n.eq(nn),
            rows.src_word.eq(src), rows.src2_word.eq(src2), rows.dst_word.eq(dst),
            ld.rows_finished.eq(rows.finished), ld.unit_error.eq(unit.error), ld.unit_error_code.eq(unit.error_code),
        ]
        # The parameter reads and reader A share the dedicated read port (never in the same cycle).
        m.d.comb += [self.rd.addr.eq(Mux(ld.rd.en, ld.rd.addr, rows.rd.addr)), self.rd.en.eq(ld.rd.en | rows.rd.en),
                     ld.rd.data.eq(self.rd.data), rows.rd.data.eq(self.rd.data)]
        wiring.connect(m, rows.rd2, wiring.flipped(self.rd2))
        wiring.connect(m, rows.wr, wiring.flipped(self.wr))
        m.d.comb += [rows.rd2_block.eq(self.rd2_block), rows.wr_block.eq(self.wr_block)]
        wiring.connect(m, unit.o, rows.o)
        in_buffers_busy = self._input_buffers(m, unit, rows)

        m.d.comb += ld.drained.eq(rows.idle & ~in_buffers_busy & ~unit.busy & ~unit.o.valid)
        m.d.comb += [unit.opcode.eq(uop), unit.row_len.eq(nn), unit.param_sel.eq(uop), unit.clear.eq(ld.clear),
                     unit.param_we.eq(ld.param_we), unit.param_addr.eq(ld.param_addr),
                     unit.param_data.eq(ld.param_data)]
        lbs = [0, 0, 0]
        for vop in self.ops:
            if vop in ("softmax", "residual", "layernorm", "rmsnorm", "rope", "gate"):
                lbs = [Mux(uop == UNIT_OPCODE[vop], lb, other) for lb, other in zip(vec_elem_log2(vop, flags), lbs)]
            if vop == "act":
                lbs = [Mux(is_act, lb, other) for lb, other in zip(vec_elem_log2(vop, flags), lbs)]
        m.d.comb += [rows.a_lb.eq(lbs[0]), rows.b_lb.eq(lbs[1]), rows.o_lb.eq(lbs[2])]
        self._operator_ports(m, unit, ld, rec=ld.record, hdr=ld.header, shift=shift, causal=causal, flags=flags)
        if "softmax" in self.ops:
            m.d.comb += rows.row_offset.eq(row_offset)
        if "rope" in self.ops:
            m.d.comb += rows.heads_m1.eq(heads_m1)
        if "rmsnorm" in self.ops:
            # The token scale only (flags 7): the k_r bytes at src2 beside the int16 rows.
            m.d.comb += [rows.token.eq((uop == UNIT_OPCODE["rmsnorm"]) & flags[NORM_TOKEN.bit_length() - 1]),
                         rows.k_word.eq(src2), rows.o_k.eq(unit.rmsnorm_token_k)]
        return m

    def _input_buffers(self, m, unit, rows):
        """The row readers' streams enter the unit through two-entry skid buffers (:class:`SkidBuffer`, issue #16):
        the ready the readers see is a register, so the operators' busy / ready logic (through the unit's routing)
        never reaches the readers' queues in the same cycle, and the operators' valid and payload come from
        registers. Each beat enters one cycle later (``gen.isa.op_cycles.IN_BUFFER``). The row's scalar ports
        (softmax's query position, rope's table slot: "the row now entering") travel with its A beats. Returns
        "a buffer holds a beat"."""
        side = {}
        if "softmax" in self.ops:
            side["query_pos"] = (rows.query_pos, unit.softmax_query_pos)
        if "rope" in self.ops:
            side["rope_slot"] = (rows.rope_slot, unit.rope_position)
        a_shape = data.StructLayout({"beat": unit.i.payload.shape(),
                                     **{name: len(src) for name, (src, _) in side.items()}})
        m.submodules.a_buffer = a_buf = SkidBuffer(a_shape)
        m.d.comb += [a_buf.i.valid.eq(rows.a.valid), a_buf.i.payload.beat.eq(rows.a.payload),
                     rows.a.ready.eq(a_buf.i.ready),
                     unit.i.valid.eq(a_buf.o.valid), unit.i.payload.eq(a_buf.o.payload.beat),
                     a_buf.o.ready.eq(unit.i.ready)]
        for name, (src, dst) in side.items():
            m.d.comb += [getattr(a_buf.i.payload, name).eq(src), dst.eq(getattr(a_buf.o.payload, name))]
        busy = a_buf.busy
        if "b" in unit.signature.members:
            m.submodules.b_buffer = b_buf = SkidBuffer(unit.b.payload.shape())
            wiring.connect(m, rows.b, b_buf.i)
            wiring.connect(m, b_buf.o, unit.b)
            busy = busy | b_buf.busy
        return busy

    def _operator_ports(self, m, unit, ld, *, rec, hdr, shift, causal, flags):
        """The operators' run-time ports from the loaded record / header (held while the rows stream); every field
        at its place in the ``spec.vector_ops`` record descriptors (the loader has range-checked it, so the port
        takes its low bits)."""
        if "residual" in self.ops:
            wide = flags[RESIDUAL_WIDE.bit_length() - 1]
            out32 = flags[RESIDUAL_OUT32.bit_length() - 1]
            m.d.comb += [unit.residual_a_multiplier.eq(record_field(rec, RESIDUAL_RECORD, "a_multiplier")),
                         unit.residual_b_multiplier.eq(record_field(rec, RESIDUAL_RECORD, "b_multiplier")),
                         unit.residual_shift.eq(shift), unit.residual_wide.eq(wide),
                         unit.residual_out_bits.eq(Mux(wide, Mux(out32, 32, 16), 8))]
        if "gate" in self.ops:
            exact = flags[GATE_OUT32.bit_length() - 1]
            m.d.comb += [unit.gate_multiplier.eq(record_field(rec, REQUANT_RECORD, "multiplier")),
                         unit.gate_shift.eq(record_field(rec, REQUANT_RECORD, "shift")), unit.gate_exact.eq(exact),
                         unit.gate_out_bits.eq(Mux(exact, 32, Mux(flags[GATE_OUT16.bit_length() - 1], 16, 8)))]
        if "softmax" in self.ops:
            _, _, q15 = vec_elem_log2("softmax", flags)
            m.d.comb += [unit.softmax_exp_multiplier.eq(record_field(rec, SOFTMAX_RECORD, "multiplier")),
                         unit.softmax_exp_shift.eq(record_field(rec, SOFTMAX_RECORD, "shift")),
                         unit.softmax_causal.eq(causal), unit.softmax_q15.eq(q15),
                         unit.softmax_pad.eq(flags[SOFTMAX_PAD.bit_length() - 1]),
                         unit.softmax_valid_len.eq(record_field(rec, SOFTMAX_RECORD, "valid_len"))]
        for norm in ("layernorm", "rmsnorm"):
            if norm in self.ops:
                m.d.comb += [getattr(unit, f"{norm}_wide").eq(flags[NORM_WIDE.bit_length() - 1]),
                             getattr(unit, f"{norm}_out8").eq(~flags[NORM_OUT16.bit_length() - 1]),
                             getattr(unit, f"{norm}_eps_we").eq(ld.eps_we),
                             getattr(unit, f"{norm}_eps_addr").eq(ld.eps_addr),
                             getattr(unit, f"{norm}_eps_data").eq(ld.eps_data)]
                if norm == "rmsnorm":
                    m.d.comb += unit.rmsnorm_token.eq(flags[NORM_TOKEN.bit_length() - 1])
                m.d.comb += [getattr(unit, f"{norm}_eps_term").eq(record_field(hdr, NORM_HEADER, "eps_term")),
                             getattr(unit, f"{norm}_var_frac_bits").eq(record_field(hdr, NORM_HEADER, "var_frac_bits")),
                             getattr(unit, f"{norm}_gamma_shift").eq(record_field(hdr, NORM_HEADER, "gamma_shift"))]
        if "rope" in self.ops:
            m.d.comb += [unit.rope_frac_bits.eq(record_field(hdr, ROPE_HEADER, "frac_bits")),
                         unit.rope_out_bits.eq(Mux(flags[ROPE_OUT16.bit_length() - 1], 16, 8))]
