"""Decode and legality: what the controller refuses about a command before issuing it."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from npuforge.rtl.controller.common import (ACT_TABLE_BYTES, OPCODES, ROPE_MAX_HEAD_DIM, ROPE_POSITIONS,
                                            VEC_HEADER_BYTES, VEC_OPCODES, ErrorCode, cdiv_shift, log2,
                                            vec_elem_log2)
from npuforge.spec.block_scale import BLOCK, BLOCK_MODES
from npuforge.spec.dataflow import DATAFLOW_CODES
from npuforge.spec.isa import (FORMATS, INSTR_BYTES, PARAM_PAGE_BYTES, REQUANT_PARAM_BYTES, RESIDUAL_SHIFT_MAX,
                               RESIDUAL_SHIFT_MIN, VEC_RECORD_BYTES, Opcode)
from npuforge.spec.precision import MODE_CODES, PRECISION_MODES
from npuforge.spec.vector_ops import (ACT_FLAGS, ACT_INTERP, EPS_ENTRY, INTERP_ENTRIES, INTERP_ENTRY, NORM_EPS_SHIFTS,
                                      NORM_FLAGS, NORM_OUT16, NORM_WIDE, norm_item,
                                      RESIDUAL_A_LSB, RESIDUAL_B_LSB, RESIDUAL_FLAGS, RESIDUAL_WIDE, SOFTMAX_CAUSAL,
                                      SOFTMAX_FLAGS, SOFTMAX_SCORE_LSB, ROPE_HEADS_BITS, GATE_FLAGS,
                                      GATE_PRODUCT_FLAGS, RMSNORM_FLAGS)

__all__ = ["field", "Decoder"]

_FIELDS = {op: {f.name: f for f in fields} for op, fields in FORMATS.items()}


def field(ir, opcode: Opcode, name: str):
    """The bits of instruction field ``name`` of ``opcode`` (``spec.isa.FORMATS``) in the 128-bit command ``ir``,
    signed where the field is."""
    f = _FIELDS[opcode][name]
    # A split field (MATMUL.mode: w0[12] above w0[9:8]) is its parts concatenated, low part first.
    bits = Cat(*[ir[pos:pos + width] for pos, _first, width in f.parts])
    return bits.as_signed() if f.signed else bits


def _vec_fields(ir):
    """The shared vector format (every VEC_* except VEC_REQUANT has the same fields)."""
    return {name: field(ir, Opcode.VEC_SOFTMAX, name) for name in _FIELDS[Opcode.VEC_SOFTMAX]}


class _Products:
    """The range checks' multiplications (rows x words of an operand), shared by the opcodes: the ``i``-th product an
    opcode asks for uses multiplier ``i``. Decode stage 1 registers the operands the held command's opcode selects,
    stage 2 their products; the checks compare them in stage 3, so neither the operand logic nor a compare shares
    a cycle with a multiplier."""

    def __init__(self):
        self.requests = []          # (opcodes, slot, a, b, product)
        self.count = {}

    def __call__(self, ops, a, b):
        """``a * b`` for the opcodes ``ops``, registered (valid from stage 3 on)."""
        a, b = Value.cast(a), Value.cast(b)
        assert not a.shape().signed and not b.shape().signed
        slot = self.count.get(ops, 0)
        self.count[ops] = slot + 1
        product = Signal(len(a) + len(b), name=f"product_{int(ops[0])}_{slot}")
        self.requests.append((ops, slot, a, b, product))
        return product

    def elaborate(self, m, opcode):
        for slot in range(max(self.count.values(), default=0)):
            reqs = [r for r in self.requests if r[1] == slot]
            op_a = Signal(max(len(r[2]) for r in reqs), name=f"mul{slot}_a")
            op_b = Signal(max(len(r[3]) for r in reqs), name=f"mul{slot}_b")
            with m.Switch(opcode):
                for ops, _, a, b, _ in reqs:
                    with m.Case(*ops):
                        m.d.comb += [op_a.eq(a), op_b.eq(b)]
            # Stage 1 registers the operands the opcode selects, stage 2 their product: the operand logic and the
            # multiplier are paths of their own.
            a_r, b_r = Signal.like(op_a, name=f"mul{slot}_a_r"), Signal.like(op_b, name=f"mul{slot}_b_r")
            registered = Signal(len(op_a) + len(op_b), name=f"mul{slot}_r")
            m.d.sync += [a_r.eq(op_a), b_r.eq(op_b), registered.eq(a_r * b_r)]
            m.d.comb += [product.eq(registered) for *_, product in reqs]


class Decoder(wiring.Component):
    """The decode-time outcome of the command ``ir``: ``code`` (``spec.isa.ErrorCode``, NONE when it may issue)
    and ``fault_addr``, in the order of docs/isa.md.

    ``ILLEGAL_INSTRUCTION``: an opcode not in ``used_masks`` (0x00, undefined, a vector operator this NPU was not
    built with), a set bit outside the opcode's fields, a 0 in a 1..N field (rows, row_bytes, m, k, n), a MATMUL
    mode / dataflow this NPU was not generated with (reserved codes 4..6; w8a16 = 3 / w4a16 = 7 without those modes,
    where w0[12] is a reserved bit), a FENCE count for a unit it does not wait on, vector
    operators' reserved flags / imm and row shapes.
    ``LOCAL_RANGE`` (the operand's byte address): a local operand or parameter block misaligned or past its
    memory. ``BAD_PARAM`` (address 0): the residual shift outside [1, 62].

    Parameters
    ----------
    word_bytes : int; spad_words, acc_words : int; precisions, dataflows : the array's;
    used_masks : dict[int, int]   opcode -> bits its fields occupy; vector_ops : tuple; vector_lanes : int
    block_scaled : bool           MATMUL.blocks / VEC_REQUANT.wide are legal (``spec.block_scale``; else reserved)
    kv16 : bool                   MATMUL.b16 is decoded (an int16 B, one byte plane; ``used_masks`` then holds the
                                  field); codes 1 / 2 with mode w8a16, ws, blocks 0 (else ILLEGAL_INSTRUCTION)

    Timing: ``code`` and ``fault_addr`` follow ``ir`` after :attr:`LATENCY` = 2 clocks; ``ir`` must be held meanwhile
    (the fetcher holds the command, rtl.controller.fetch). Stage 1 registers the checks that need no multiplier and
    the range checks' operands (rows, words), stage 2 their products (one multiplier per product an opcode needs,
    shared by the opcodes); ``code`` then compares the registered products with the memories' bounds and picks the
    first failed check (the stage-1 outcomes hold meanwhile: ``ir`` does).

    Members
    -------
    ir : In(128); code : Out(4); fault_addr : Out(32)
    """

    LATENCY = 2

    def __init__(self, *, word_bytes: int, spad_words: int, acc_words: int, precisions, dataflows, used_masks,
                 vector_ops=(), vector_lanes: int = 1, block_scaled: bool = False, kv16: bool = False):
        self.B, self.spad_words, self.acc_words = word_bytes, spad_words, acc_words
        self.block_scaled, self.kv16 = block_scaled, kv16
        self.precisions, self.dataflows = tuple(precisions), tuple(dataflows)
        self.used_masks, self.vector_ops, self.vector_lanes = dict(used_masks), tuple(vector_ops), vector_lanes
        super().__init__({"ir": In(8 * INSTR_BYTES), "code": Out(4), "fault_addr": Out(32)})

    def _in_mem(self, byte_addr, words, depth):
        """Aligned to the word and ``words`` words from it inside the memory (word units)."""
        LB = log2(self.B)
        return (byte_addr[:LB] == 0) & (((byte_addr >> LB) + words) <= depth)

    def elaborate(self, platform):
        m = Module()
        ir = self.ir
        opcode = ir[:8]
        legal = Signal()
        executed = dict(OPCODES)
        executed.update({f"VEC_{o.upper()}": VEC_OPCODES[o] for o in self.vector_ops})
        with m.Switch(opcode):
            for op in executed.values():
                with m.Case(op):
                    m.d.comb += legal.eq((ir & ~Const(self.used_masks[op], 8 * INSTR_BYTES)) == 0)
        mul = _Products()
        groups = {(Opcode.DMA_LOAD, Opcode.DMA_STORE): self._dma_checks, (Opcode.MATMUL,): self._matmul_checks,
                  (Opcode.VEC_REQUANT,): self._requant_checks, (Opcode.FENCE,): self._fence_checks}
        for vop in self.vector_ops:
            groups[(VEC_OPCODES[vop],)] = lambda ir, mul, vop=vop: self._vector_checks(ir, mul, vop)
        checks = {ops: build(ir, lambda a, b, ops=ops: mul(ops, a, b)) for ops, build in groups.items()}
        mul.elaborate(m, opcode)
        # Stage 1 registers the products' operands (stage 2 the products, above) and the outcome of each check that
        # needs none; stage 3 compares the products with the bounds and picks the first failed check. One register serves every opcode, so the
        # opcodes' checks stay mutually exclusive and share their logic.
        legal_r = Signal()
        early = {ops: [i for i, (_, _, _, late) in enumerate(chain) if not late] for ops, chain in checks.items()}
        failed_r = Signal(max(len(e) for e in early.values()))
        m.d.sync += legal_r.eq(legal)
        with m.Switch(opcode):
            for ops, chain in checks.items():
                with m.Case(*ops):
                    m.d.sync += failed_r.eq(Cat(*[chain[i][0] for i in early[ops]]))
            with m.Default():
                m.d.sync += failed_r.eq(0)
        registered = {ops: [(failed_r[early[ops].index(i)] if not late else failed, code, addr)
                            for i, (failed, code, addr, late) in enumerate(chain)]
                      for ops, chain in checks.items()}
        with m.If(~legal_r):
            m.d.comb += self.code.eq(ErrorCode.ILLEGAL_INSTRUCTION)
        with m.Else():
            with m.Switch(opcode):
                for ops, chain in registered.items():
                    with m.Case(*ops):
                        for i, (failed, code, addr) in enumerate(chain):
                            with (m.If if i == 0 else m.Elif)(failed):
                                m.d.comb += [self.code.eq(code), self.fault_addr.eq(addr)]
        return m

    # Each check list: (failed, ErrorCode, fault address, late) in the order they are reported; ``mul(a, b)`` is the
    # registered product (:class:`_Products`), and a check that reads one is ``late`` (stage 3), the others are
    # registered in stage 1.
    def _dma_checks(self, ir, mul):
        f = {name: field(ir, Opcode.DMA_LOAD, name) for name in _FIELDS[Opcode.DMA_LOAD]}
        words = mul(f["rows"], cdiv_shift(f["row_bytes"], log2(self.B)))
        local_ok = self._in_mem(f["local_addr"], words, Mux(f["mem"], self.acc_words, self.spad_words))
        return [((f["rows"] == 0) | (f["row_bytes"] == 0), ErrorCode.ILLEGAL_INSTRUCTION, 0, False),
                (~local_ok, ErrorCode.LOCAL_RANGE, f["local_addr"], True)]

    def _fence_checks(self, ir, mul):
        """A count for a unit the FENCE does not wait on is reserved (spec.isa.Fence: it must be 0)."""
        f = {name: field(ir, Opcode.FENCE, name) for name in _FIELDS[Opcode.FENCE]}
        stray = Cat(*[(f[f"{u}_count"] != 0) & ~f[f"{u}_en"] for u in ("load", "store", "matrix", "vector")]).any()
        return [(stray, ErrorCode.ILLEGAL_INSTRUCTION, 0, False)]

    def _matmul_checks(self, ir, mul):
        LB = log2(self.B)
        # b16 only where it is decoded (kv16): other NPUs' decoders, and their Verilog, stay as before it existed
        f = {name: field(ir, Opcode.MATMUL, name) for name in _FIELDS[Opcode.MATMUL] if name != "b16" or self.kv16}
        mode, mm, kk, nn = f["mode"], f["m"], f["k"], f["n"]
        mode_ok = Cat(*[mode == MODE_CODES[p] for p in self.precisions]).any()
        df_ok = Cat(*[f["dataflow"] == DATAFLOW_CODES[d] for d in self.dataflows]).any()
        is_int4 = mode == MODE_CODES["int4"]
        # 16-bit-activation modes (only when built): A rows of 2k bytes.
        wide = [p for p in self.precisions if PRECISION_MODES[p].wide_act]
        is_wide = Cat(*[mode == MODE_CODES[p] for p in wide]).any() if wide else Const(0, 1)
        a_row_words = Mux(is_wide, cdiv_shift(kk << 1, LB), cdiv_shift(kk, LB)) if wide else cdiv_shift(kk, LB)
        a_ok = self._in_mem(f["a_addr"], mul(Mux(is_int4, (mm + 1) >> 1, mm), a_row_words), self.spad_words)
        b_bytes8 = Cat(*[mode == MODE_CODES[p] for p in self.precisions if PRECISION_MODES[p].weight_bits == 8]).any()
        b_trans = f["b_trans"]
        # A block-scaled w4a16 MATMUL's codes are K-packed (gen.isa.layout.b_k_packed): ceil(k / 2) rows of n bytes.
        kpack = (f["blocks"] & (mode == MODE_CODES["w4a16"])) if (self.block_scaled and "w4a16" in self.precisions) \
            else Const(0, 1)
        b_rows = Mux(kpack, (kk + 1) >> 1, kk)
        b_row_words = cdiv_shift(Mux(b_bytes8 | kpack, nn, (nn + 1) >> 1), LB)
        bt_row_words = cdiv_shift(kk, LB)
        # MATMUL.b16 (an int16 B: rows of 2 n bytes, or B^T rows of 2 k bytes): w8a16, ws, no blocks, code 1 or 2.
        b16_bad = None
        if self.kv16:
            b16 = f["b16"]
            is_b16 = b16 != 0
            b_row_words = Mux(is_b16, cdiv_shift(nn << 1, LB), b_row_words)
            bt_row_words = Mux(is_b16, cdiv_shift(kk << 1, LB), bt_row_words)
            b16_bad = is_b16 & ((b16 == 3) | (mode != MODE_CODES["w8a16"]) | (f["dataflow"] != DATAFLOW_CODES["ws"])
                                | f["blocks"])
        # B^T: n rows of bt_row_words; else b_rows of b_row_words (one product either way).
        b_words = mul(Mux(b_trans, nn, b_rows), Mux(b_trans, bt_row_words, b_row_words))
        b_ok = self._in_mem(f["b_addr"], b_words, self.spad_words)
        c_ok = self._in_mem(f["acc_addr"], mul(mm, cdiv_shift(nn << 2, LB)), self.acc_words)
        # B^T (Q.K^T): weight-stationary with an int8 B only (spec.isa.MatMul).
        b8 = Cat(*[mode == MODE_CODES[p] for p in MODE_CODES if PRECISION_MODES[p].weight_bits == 8]).any()
        trans_bad = b_trans & ((f["dataflow"] != DATAFLOW_CODES["ws"]) | ~b8)
        # Block-scaled MATMULs (spec.block_scale.block_error): a w4a16 / w8a16 ws MATMUL without b_trans over whole
        # blocks of 32, only on a block_scaled NPU (else the field is reserved).
        blocks = f["blocks"]
        if self.block_scaled:
            block_mode = Cat(*[mode == MODE_CODES[p] for p in BLOCK_MODES]).any()
            blocks_bad = blocks & (~block_mode | (f["dataflow"] != DATAFLOW_CODES["ws"]) | b_trans
                                   | (kk[:log2(BLOCK)] != 0))
        else:
            blocks_bad = blocks
        # The block records after the B tile: k / 32 rows of 4 n bytes at the word stride (fault at b_addr). Checked
        # only with blocks = 1, legal only with b_trans = 0 (b_words is then the B tile's); without block_scaled,
        # blocks = 1 is ILLEGAL, reported first.
        rec_ok = Const(1, 1)
        if self.block_scaled:
            rec_words = mul(kk >> log2(BLOCK), cdiv_shift(nn << 2, LB))
            rec_ok = ((f["b_addr"] >> LB) + b_words + rec_words) <= self.spad_words
        illegal = (mm == 0) | (kk == 0) | (nn == 0) | ~mode_ok | ~df_ok | trans_bad | blocks_bad
        return [(illegal if b16_bad is None else illegal | b16_bad,
                 ErrorCode.ILLEGAL_INSTRUCTION, 0, False),
                (~a_ok, ErrorCode.LOCAL_RANGE, f["a_addr"], True), (~b_ok, ErrorCode.LOCAL_RANGE, f["b_addr"], True),
                (~c_ok, ErrorCode.LOCAL_RANGE, f["acc_addr"], True),
                (blocks & ~rec_ok, ErrorCode.LOCAL_RANGE, f["b_addr"], True)]

    def _requant_checks(self, ir, mul):
        LB = log2(self.B)
        f = {name: field(ir, Opcode.VEC_REQUANT, name) for name in _FIELDS[Opcode.VEC_REQUANT]}
        mm, nn = f["m"], f["n"]
        src_ok = self._in_mem(f["src_addr"], mul(mm, cdiv_shift(nn << 2, LB)), self.acc_words)
        dst_bytes = Mux(f["out32"], nn << 2, Mux(f["out16"], nn << 1, nn))
        dst_ok = self._in_mem(f["dst_addr"], mul(mm, cdiv_shift(dst_bytes, LB)), self.spad_words)
        p_byte = f["param_page"] << log2(PARAM_PAGE_BYTES)
        par_ok = (p_byte + (nn << log2(REQUANT_PARAM_BYTES))) <= self.spad_words * self.B
        # bias_addr: the n int32 biases (bias), or the m k_r bytes (row_shift); the two are exclusive.
        bias_ok = Mux(f["bias"], self._in_mem(f["bias_addr"], cdiv_shift(nn << 2, LB), self.spad_words),
                      ~f["row_shift"] | self._in_mem(f["bias_addr"], cdiv_shift(mm, LB), self.spad_words))
        # wide = 1 (the 48-bit input of a block-scaled MATMUL) only on a block_scaled NPU (the extension exists).
        reserved = (~f["bias"] & ~f["row_shift"] & (f["bias_addr"] != 0)) | (f["bias"] & f["row_shift"]) \
            | (f["out16"] & f["out32"]) | (f["wide"] if not self.block_scaled else Const(0, 1))
        return [((mm == 0) | (nn == 0) | reserved, ErrorCode.ILLEGAL_INSTRUCTION, 0, False),
                (~src_ok, ErrorCode.LOCAL_RANGE, f["src_addr"], True),
                (~dst_ok, ErrorCode.LOCAL_RANGE, f["dst_addr"], True),
                (~par_ok, ErrorCode.LOCAL_RANGE, p_byte, False), (~bias_ok, ErrorCode.LOCAL_RANGE, f["bias_addr"], False)]

    def _vector_checks(self, ir, mul, vop):
        """A vector operator: int8 rows of n bytes at the scratchpad-word stride, its parameter block."""
        f = _vec_fields(ir)
        flags, imm, mm, nn, src2 = f["flags"], f["imm"], f["m"], f["n"], f["src2_addr"]
        if vop == "act":
            static_ok = ((flags & ~ACT_FLAGS & 0xFF) == 0) & (imm == 0) & (src2 == 0)
        elif vop == "softmax":
            # Defined flag bits only, a score width code 0..2, the row offset only with the causal flag.
            score_code = flags[SOFTMAX_SCORE_LSB:SOFTMAX_SCORE_LSB + 2]
            static_ok = ((flags & ~SOFTMAX_FLAGS & 0xFF) == 0) & (score_code != 3) & (imm >= 0) \
                & (flags[SOFTMAX_CAUSAL.bit_length() - 1] | (imm == 0)) & (src2 == 0)
        elif vop == "residual":
            # int8 (flags 0), or the wide add: defined bits only, width codes 0..2.
            wide_ok = ((flags & ~RESIDUAL_FLAGS & 0xFF) == 0) \
                & (flags[RESIDUAL_A_LSB:RESIDUAL_A_LSB + 2] != 3) & (flags[RESIDUAL_B_LSB:RESIDUAL_B_LSB + 2] != 3)
            static_ok = Mux(flags[RESIDUAL_WIDE.bit_length() - 1], wide_ok, flags == 0)
        elif vop in ("layernorm", "rmsnorm"):
            static_ok = ((flags & ~NORM_FLAGS & 0xFF) == 0) & (imm == 0) & (src2 == 0)
            if vop == "rmsnorm":
                # The token scale only (flags 7): src2_addr holds the k_r bytes, no parameter block (param_page 0).
                static_ok = static_ok | ((flags == RMSNORM_FLAGS) & (imm == 0) & (f["param_page"] == 0))
        elif vop == "rope":
            # head_dim: whole beats per half row, at most the operator's row; at most ROPE_POSITIONS table
            # positions (m <= 8 * heads).
            lane_bits = log2(self.vector_lanes) + 1
            # heads = flags bits [5:0] + 1; bits 6 / 7 the int16 rows / results.
            heads = flags[:ROPE_HEADS_BITS] + 1
            static_ok = ((imm >= 0) & (src2 == 0) & (nn <= ROPE_MAX_HEAD_DIM) & (nn[:lane_bits] == 0)
                         & (mm <= (heads << log2(ROPE_POSITIONS))))
        elif vop == "gate":
            # bit 0 int16 operands, bit 1 int16 result; or 5, the exact int32 product (bit 2).
            static_ok = (((flags & ~GATE_FLAGS & 0xFF) == 0) | (flags == GATE_PRODUCT_FLAGS)) & (imm == 0)
        else:
            static_ok = (flags == 0) & (imm == 0)
        if vop == "act":
            p_size = Mux(flags[ACT_INTERP.bit_length() - 1], INTERP_ENTRIES * INTERP_ENTRY.nbytes, ACT_TABLE_BYTES)
        elif vop in ("layernorm", "rmsnorm"):
            # The header, a wide norm's eps table, n channel records of the output width (spec.vector_ops.norm_item).
            item8, item16 = norm_item(vop, 8).nbytes, norm_item(vop, 16).nbytes
            p_size = (VEC_HEADER_BYTES + Mux(flags[NORM_WIDE.bit_length() - 1], NORM_EPS_SHIFTS * EPS_ENTRY.nbytes, 0)
                      + Mux(flags[NORM_OUT16.bit_length() - 1], nn << log2(item16), nn << log2(item8)))
        elif vop == "rope":
            p_size = VEC_HEADER_BYTES
        else:
            p_size = VEC_RECORD_BYTES
        # Words per row of each operand: n elements of 2^lb bytes (spec.vector_ops.VectorOp.elem_bytes).
        words = [cdiv_shift(nn << lb, log2(self.B)) for lb in vec_elem_log2(vop, flags)]
        p_byte = f["param_page"] << log2(PARAM_PAGE_BYTES)
        two = vop in ("residual", "gate")
        src2_ok = self._in_mem(src2, mul(mm, words[1]), self.spad_words) if two else Const(1, 1)
        no_block = Const(0, 1)          # the parameter block is not read (its page not checked)
        if vop == "rmsnorm":
            # The token scale only: src2_addr is the m k_r bytes (one row of m bytes).
            token = flags == RMSNORM_FLAGS
            src2_ok = ~token | self._in_mem(src2, cdiv_shift(mm, log2(self.B)), self.spad_words)
            no_block = token
        if vop == "gate":
            no_block = flags == GATE_PRODUCT_FLAGS
        src_words, dst_words = mul(mm, words[0]), mul(mm, words[2])
        return [((mm == 0) | (nn == 0) | ~static_ok, ErrorCode.ILLEGAL_INSTRUCTION, 0, False),
                (~self._in_mem(f["src_addr"], src_words, self.spad_words), ErrorCode.LOCAL_RANGE, f["src_addr"], True),
                (~src2_ok, ErrorCode.LOCAL_RANGE, src2, two),
                (~self._in_mem(f["dst_addr"], dst_words, self.spad_words), ErrorCode.LOCAL_RANGE, f["dst_addr"], True),
                (~no_block & (p_byte + p_size > self.spad_words * self.B), ErrorCode.LOCAL_RANGE, p_byte, False),
                (Const(vop == "residual") & ((imm < RESIDUAL_SHIFT_MIN) | (imm > RESIDUAL_SHIFT_MAX)),
                 ErrorCode.BAD_PARAM, 0, False)]
