"""The controller: fetch, decode and issue of the command stream onto the DMA, MATMUL and VECTOR units."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, ResetInserter, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from npuforge.rtl.controller.common import OPCODES, UNIT_OPCODE, VEC_OPCODES, ErrorCode, ResetTap, log2
from npuforge.rtl.controller.decode import Decoder, field
from npuforge.rtl.controller.fetch import CommandFetch, FetchSignature
from npuforge.rtl.controller.issue import Interlocks
from npuforge.rtl.controller.matmul import MatmulEngine
from npuforge.rtl.controller.requant import RequantEngine
from npuforge.rtl.controller.vector import VecEngine
from npuforge.rtl.dma import DMA_DESCRIPTOR, Direction, DmaError
from npuforge.rtl.memories import ReadPortSignature, WritePortSignature
from npuforge.spec.isa import PARAM_PAGE_BYTES, Opcode
from npuforge.spec.vector_ops import ROPE_HEADS_BITS

__all__ = ["Controller"]

#: FENCE's unit fields, in the order of :class:`Interlocks`' ``fence_en`` / ``fence_count`` (``spec.isa.Unit``).
_FENCE_UNITS = ("load", "store", "matrix", "vector")


class Controller(wiring.Component):
    """Fetch (:class:`CommandFetch`), decode (:class:`Decoder`) and issue (:class:`Interlocks`) of the command
    stream onto the DMA, the :class:`MatmulEngine` and the VECTOR unit (:class:`RequantEngine`,
    :class:`VecEngine`); see the package docstring.

    Parameters
    ----------
    word_bytes : int             AXI data bytes = local word.
    spad_words, acc_words : int  memory depths in words.
    rows, cols, precisions, dataflows, pipeline : the PE array.
    used_masks : dict[int, int]  opcode -> 128-bit mask of the bits its fields (and the opcode) occupy
                                 (from ``spec.isa.FORMATS``); every other bit is reserved.
    vector_ops : tuple of "softmax", "layernorm", "rmsnorm", "act", "residual", "gate", "rope"
                                 vector operators to build (() : no vector unit).
    vector_lanes : int           elements per cycle of the vector unit, capped at ``word_bytes``.

    Members
    -------
    start : In(1); busy, done : Out(1); error : Out(4); fault_addr : Out(32)
    soft_reset : In(1)   CTRL.SOFT_RESET's pulse: every engine and the core reset one cycle later (a ResetTap each)
    ring_base, ring_size, ring_head : In(32); ring_tail : Out(32)
    fetch : Out(FetchSignature)
    dma_desc : Out(stream DMA_DESCRIPTOR); dma_mem : Out(1) (memory of the running DMA command: 0 spad, 1 acc)
    dma_done : In(1); dma_error : In(DmaError); dma_fault : In(32)
    a_rd, w_rd : Out(ReadPortSignature(spad_aw, read_words * word_bytes))   matmul operand ports (the
                 scratchpad's wide read ports 0, 1); ``read_words`` = ``self.read_words`` (the matmul engine's)
    spad_rd, spad_wr : requant records / results and the vector sequencer's second operand / results (scratchpad
                       narrow read port 0, shared with the DMA; write port);
    vec_rd : Out(ReadPortSignature)   only with ``vector_ops``: the sequencer's first operand and parameters
                                      (scratchpad narrow read port 1)
    rd_block, wr_block : In(1)  the DMA uses that read / write port this cycle (it has priority)
    acc_rd : Out(ReadPortSignature)   requant input (accumulator narrow port)
    acc_wide_* : the matmul engine's accumulator wide port
    ext_wide_*, ext_rd : only with ``block_scaled``: the accumulator extension's wide port (the matmul engine's
                 block stage) and narrow read port (``VEC_REQUANT.wide``), ``word_bytes / 2`` bytes per word
    macs : Out(16)
    """

    def __init__(self, *, word_bytes: int, spad_words: int, acc_words: int, rows: int, cols: int,
                 precisions=("int8", "w4a8", "int4"), dataflows=("ws",), pipeline: int = 2, used_masks: dict,
                 vector_ops=(), vector_lanes: int = 8, block_scaled: bool = False, kv16: bool = False):
        if "ws" not in dataflows:
            raise ValueError(f"the controller needs a weight-stationary array (ws, optionally os): dataflows must "
                             f"include 'ws', got {dataflows!r}")
        self.B = word_bytes
        self.spad_words, self.acc_words = spad_words, acc_words
        self.spad_aw = (spad_words - 1).bit_length()
        self.acc_aw = (acc_words - 1).bit_length()
        self.precisions = tuple(precisions)
        self.dataflows = tuple(dataflows)
        self.used_masks = dict(used_masks)
        self.vector_ops = tuple(vector_ops)
        for name, op in list(OPCODES.items()) + [(f"VEC_{o.upper()}", VEC_OPCODES.get(o)) for o in self.vector_ops]:
            if op not in self.used_masks:
                raise ValueError(f"used_masks has no entry for {name} (opcode {op!r})")
        self.matmul = MatmulEngine(word_bytes=word_bytes, spad_aw=self.spad_aw, acc_aw=self.acc_aw, rows=rows,
                                   cols=cols, precisions=precisions, pipeline=pipeline,
                                   dataflows=("ws", "os") if "os" in self.dataflows else ("ws",),
                                   blocks=block_scaled, kv16=kv16)
        self.block_scaled, self.kv16 = block_scaled, kv16
        self.requant = RequantEngine(word_bytes=word_bytes, spad_aw=self.spad_aw, acc_aw=self.acc_aw,
                                     wide=block_scaled)
        self.acc_banks = self.matmul.acc_banks
        self.read_words = self.matmul.read_words
        NB, W, RW = self.acc_banks, 8 * word_bytes, self.matmul.acc_row_width
        self.vec = None
        extra = {}
        if self.vector_ops:
            self.vector_lanes = min(vector_lanes, word_bytes)
            self.vec = VecEngine(word_bytes=word_bytes, spad_aw=self.spad_aw, lanes=self.vector_lanes,
                                 ops=self.vector_ops)
            extra["vec_rd"] = Out(ReadPortSignature(self.spad_aw, word_bytes))
        if block_scaled:
            EW = 4 * word_bytes       # extension word bits: 16 per int32 element
            extra.update({
                "ext_wide_rd_addr": Out(data.ArrayLayout(RW, NB)), "ext_wide_rd_en": Out(1),
                "ext_wide_rd_data": In(data.ArrayLayout(EW, NB)),
                "ext_wide_wr_addr": Out(data.ArrayLayout(RW, NB)), "ext_wide_wr_data": Out(data.ArrayLayout(EW, NB)),
                "ext_wide_wr_en": Out(data.ArrayLayout(word_bytes // 2, NB)),
                "ext_rd": Out(ReadPortSignature(self.acc_aw, word_bytes // 2)),
            })
        super().__init__({
            **extra,
            "start": In(1), "soft_reset": In(1),
            "busy": Out(1), "done": Out(1), "error": Out(4), "fault_addr": Out(32),
            "ring_base": In(32), "ring_size": In(32), "ring_head": In(32), "ring_tail": Out(32),
            "fetch": Out(FetchSignature(8 * word_bytes)),
            "dma_desc": Out(stream.Signature(DMA_DESCRIPTOR)),
            "dma_mem": Out(1),
            "dma_done": In(1), "dma_error": In(DmaError), "dma_fault": In(32),
            "a_rd": Out(ReadPortSignature(self.spad_aw, word_bytes * self.read_words)),
            "w_rd": Out(ReadPortSignature(self.spad_aw, word_bytes * self.read_words)),
            "spad_rd": Out(ReadPortSignature(self.spad_aw, word_bytes)),
            "spad_wr": Out(WritePortSignature(self.spad_aw, word_bytes)),
            "rd_block": In(1), "wr_block": In(1),
            "acc_rd": Out(ReadPortSignature(self.acc_aw, word_bytes)),
            "acc_wide_rd_addr": Out(data.ArrayLayout(RW, NB)),
            "acc_wide_rd_en": Out(1),
            "acc_wide_rd_data": In(data.ArrayLayout(W, NB)),
            "acc_wide_wr_addr": Out(data.ArrayLayout(RW, NB)),
            "acc_wide_wr_data": Out(data.ArrayLayout(W, NB)),
            "acc_wide_wr_en": Out(data.ArrayLayout(word_bytes, NB)),
            "macs": Out(16),
        })

    def elaborate(self, platform):
        top = Module()
        # CTRL.SOFT_RESET reaches each engine and the fetch / decode / issue core through a ResetTap of its own: the
        # engines reset one cycle after the pulse, all in the same cycle.
        engines = {"matmul": self.matmul, "requant": self.requant, **({"vec": self.vec} if self.vec else {})}
        m = Module()                                    # the core: fetch, decode, issue
        for name, unit in {**engines, "core": m}.items():
            top.submodules[f"reset_{name}"] = tap = ResetTap()
            top.d.comb += tap.i.eq(self.soft_reset)
            top.submodules[name] = ResetInserter(tap.o)(unit)
        mme, rqe = self.matmul, self.requant
        # The command is decoded while held in the fetcher's DECODE state: the decoder's registered checks
        # (Decoder.LATENCY), then the register of their outcome below.
        m.submodules.fetch = fetch = CommandFetch(word_bytes=self.B, decode_cycles=Decoder.LATENCY + 1)
        m.submodules.decode = dec = Decoder(
            word_bytes=self.B, spad_words=self.spad_words, acc_words=self.acc_words, precisions=self.precisions,
            dataflows=self.dataflows, used_masks=self.used_masks, vector_ops=self.vector_ops,
            vector_lanes=self.vec.lanes if self.vec is not None else 1, block_scaled=self.block_scaled,
            kv16=self.kv16)
        m.submodules.issue = il = Interlocks(vector=self.vec is not None)
        self._connect_ports(m)
        ir = fetch.command
        self._drive_units(m, ir)
        wiring.connect(m, fetch.bus, wiring.flipped(self.fetch))
        m.d.comb += [
            fetch.ring_base.eq(self.ring_base), fetch.ring_size.eq(self.ring_size),
            fetch.ring_head.eq(self.ring_head), self.ring_tail.eq(fetch.tail), dec.ir.eq(ir),
            il.pc.eq(fetch.tail), il.acc_transfer.eq(field(ir, Opcode.DMA_LOAD, "mem")),
            il.fence_en.eq(Cat(*[field(ir, Opcode.FENCE, f"{u}_en") for u in _FENCE_UNITS])),
            il.fence_count.eq(Cat(*[field(ir, Opcode.FENCE, f"{u}_count") for u in _FENCE_UNITS])),
            self.dma_mem.eq(il.dma_mem),
            il.dma_done.eq(self.dma_done), il.dma_error.eq(self.dma_error), il.dma_fault.eq(self.dma_fault),
            il.matmul_done.eq(mme.done), il.requant_done.eq(rqe.done), il.requant_error.eq(rqe.error),
            il.requant_fault.eq(rqe.fault_addr), self.macs.eq(mme.macs),
        ]
        if self.vec is not None:
            m.d.comb += [il.vector_done.eq(self.vec.done), il.vector_error.eq(self.vec.error),
                         il.vector_code.eq(self.vec.code), il.vector_fault.eq(self.vec.fault_addr)]

        error, fault = Signal(4), Signal(32)
        m.d.comb += [self.error.eq(error), self.fault_addr.eq(fault)]
        d_code, d_fault = Signal(4), Signal(32)   # the decode-time outcome (error, or NONE for HALT)
        # The decoder's outcome, registered: the first failed check of the opcode (a priority chain over its
        # registered checks) does not reach the issue logic, the fetcher and the units in the same cycle.
        dec_code, dec_fault, dec_bad = Signal(4), Signal(32), Signal()
        m.d.sync += [dec_code.eq(dec.code), dec_fault.eq(dec.fault_addr), dec_bad.eq(dec.code != ErrorCode.NONE)]
        # The held command's kind, registered while it is decoded (``ir`` is complete from the first DECODE cycle):
        # the issue decision tests one flip-flop per kind, not the 8-bit opcode (issue #16).
        kinds = self._command_kinds(m, ir)

        def stop(code, addr=0):
            """End of issue: drain the units, then report (an earlier unit error wins)."""
            m.d.comb += fetch.stop.eq(1)
            m.d.sync += [d_code.eq(code), d_fault.eq(addr)]
            m.next = "DRAIN"

        with m.FSM() as fsm:
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.comb += [fetch.start.eq(1), il.clear.eq(1)]
                    m.d.sync += [error.eq(0), fault.eq(0)]
                    m.next = "RUN"
            with m.State("RUN"):
                with m.If(fetch.overrun):
                    m.d.sync += [d_code.eq(ErrorCode.PROGRAM_OVERRUN), d_fault.eq(0)]
                    m.next = "DRAIN"
                with m.Elif(fetch.valid):
                    with m.If(il.any_error):
                        stop(ErrorCode.NONE)   # the unit error is reported after the drain
                    with m.Elif(fetch.bus_error):
                        stop(ErrorCode.BUS_ERROR, fetch.addr)
                    with m.Elif(dec_bad):
                        stop(dec_code, dec_fault)
                    with m.Else():
                        self._issue(m, ir, kinds, fetch, il, stop)
            with m.State("DRAIN"):
                with m.If(il.idle):
                    with m.If(il.error):
                        m.d.comb += [fetch.rewind.eq(1), fetch.rewind_tail.eq(il.error_pc)]
                        m.d.sync += [error.eq(il.code), fault.eq(il.fault_addr)]
                    with m.Else():
                        m.d.sync += [error.eq(d_code), fault.eq(d_fault)]
                    m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += self.done.eq(1)
                m.next = "IDLE"
        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))
        return top

    def _command_kinds(self, m, ir):
        """One register per kind of command (the opcodes each issue case serves), loaded from ``ir`` every cycle:
        valid from the second cycle of DECODE on, so in HOLD they describe the held command."""
        codes = {"nop": [OPCODES["NOP"]], "fence": [OPCODES["FENCE"]], "halt": [OPCODES["HALT"]],
                 "dma": [OPCODES["DMA_LOAD"], OPCODES["DMA_STORE"]], "dma_store": [OPCODES["DMA_STORE"]],
                 "matmul": [OPCODES["MATMUL"]], "requant": [OPCODES["VEC_REQUANT"]],
                 "vec": [VEC_OPCODES[vop] for vop in self.vector_ops]}
        kinds = {}
        for name, values in codes.items():
            kinds[name] = Signal(name=f"cmd_{name}")
            m.d.sync += kinds[name].eq(Cat(*[ir[:8] == v for v in values]).any() if values else 0)
        return kinds

    def _issue(self, m, ir, kinds, fetch, il, stop):
        """A legal command: issue it when its unit is free (the next command is fetched meanwhile), or stop."""
        with m.If(kinds["nop"]):
            m.d.comb += fetch.next.eq(1)
        with m.If(kinds["fence"]):
            m.d.comb += fetch.next.eq(il.fence_ok)
        with m.If(kinds["halt"]):
            stop(ErrorCode.NONE)
        with m.If(kinds["dma"] & il.dma_free):
            m.d.comb += self.dma_desc.valid.eq(1)
            with m.If(self.dma_desc.ready):
                m.d.comb += [il.issue_dma.eq(1), il.dma_store.eq(kinds["dma_store"]),
                             il.dma_acc.eq(field(ir, Opcode.DMA_LOAD, "mem")), fetch.next.eq(1)]
        with m.If(kinds["matmul"] & il.matmul_free):
            m.d.comb += [self.matmul.start.eq(1), il.issue_matmul.eq(1), fetch.next.eq(1)]
        with m.If(kinds["requant"] & il.requant_free):
            m.d.comb += [self.requant.start.eq(1), il.issue_vector.eq(1), fetch.next.eq(1)]
        if self.vector_ops:
            with m.If(kinds["vec"] & il.vector_free):
                m.d.comb += [self.vec.start.eq(1), il.issue_vector.eq(1), fetch.next.eq(1)]

    def _drive_units(self, m, ir):
        """The held command's fields to every unit's inputs (a unit samples them when started)."""
        LB = log2(self.B)
        mme, rqe, vec = self.matmul, self.requant, self.vec
        opcode = ir[:8]
        f = {name: field(ir, Opcode.MATMUL, name) for name in ("mode", "dataflow", "accumulate", "m", "k", "n",
                                                               "a_addr", "b_addr", "acc_addr", "b_trans")}
        if mme.has_bt:
            m.d.comb += mme.b_trans.eq(f["b_trans"])
        if self.kv16:
            m.d.comb += mme.b16.eq(field(ir, Opcode.MATMUL, "b16"))
        if self.block_scaled:
            m.d.comb += [mme.blocks.eq(field(ir, Opcode.MATMUL, "blocks")),
                         rqe.wide.eq(field(ir, Opcode.VEC_REQUANT, "wide"))]
        m.d.comb += [
            *([mme.dataflow.eq(f["dataflow"])] if mme.has_os else []),
            mme.mode.eq(f["mode"]), mme.accumulate.eq(f["accumulate"]), mme.m.eq(f["m"]), mme.k.eq(f["k"]),
            mme.n.eq(f["n"]), mme.a_word.eq(f["a_addr"] >> LB), mme.b_word.eq(f["b_addr"] >> LB),
            mme.acc_word.eq(f["acc_addr"] >> LB),
        ]
        r = {name: field(ir, Opcode.VEC_REQUANT, name) for name in ("out16", "zero_point", "src_addr", "m",
                                                                    "dst_addr", "n", "param_page", "bias",
                                                                    "bias_addr", "out32", "row_shift")}
        m.d.comb += [
            rqe.out32.eq(r["out32"]), rqe.row_shift.eq(r["row_shift"]),
            rqe.bias.eq(r["bias"]), rqe.bias_word.eq(r["bias_addr"] >> LB),
            rqe.out16.eq(r["out16"]), rqe.zero_point.eq(r["zero_point"]), rqe.m.eq(r["m"]), rqe.n.eq(r["n"]),
            rqe.src_word.eq(r["src_addr"] >> LB), rqe.dst_word.eq(r["dst_addr"] >> LB),
            rqe.param_byte.eq(r["param_page"] << log2(PARAM_PAGE_BYTES)),
        ]
        d = {name: field(ir, Opcode.DMA_LOAD, name) for name in ("local_addr", "ext_addr", "ext_stride", "rows",
                                                                 "row_bytes")}
        desc = self.dma_desc.payload
        m.d.comb += [
            desc.ext_addr.eq(d["ext_addr"]), desc.ext_stride.eq(d["ext_stride"]), desc.local_addr.eq(d["local_addr"]),
            desc.rows.eq(d["rows"]), desc.row_bytes.eq(d["row_bytes"]),
            desc.direction.eq(Mux(opcode == OPCODES["DMA_STORE"], Direction.STORE, Direction.LOAD)),
        ]
        if vec is None:
            return
        v = {name: field(ir, Opcode.VEC_SOFTMAX, name) for name in ("flags", "imm", "src_addr", "m", "dst_addr",
                                                                    "n", "src2_addr", "param_page")}
        m.d.comb += [
            vec.m.eq(v["m"]), vec.n.eq(v["n"]), vec.src_word.eq(v["src_addr"] >> LB),
            vec.src2_word.eq(v["src2_addr"] >> LB), vec.dst_word.eq(v["dst_addr"] >> LB),
            vec.param_word.eq((v["param_page"] << log2(PARAM_PAGE_BYTES)) >> LB), vec.shift.eq(v["imm"][:6]),
            vec.table.eq(v["flags"][0]), vec.is_act.eq(opcode == VEC_OPCODES["act"]),
            vec.two.eq((opcode == VEC_OPCODES["residual"]) | (opcode == VEC_OPCODES["gate"])),
            vec.causal.eq(v["flags"][0]), vec.row_offset.eq(v["imm"][:15]), vec.heads_m1.eq(v["flags"][:ROPE_HEADS_BITS]),
            vec.flags.eq(v["flags"]),
        ]
        unit_op = Const(UNIT_OPCODE["softmax"], 4)
        for vop in self.vector_ops:
            if vop == "act":
                code = Mux(v["flags"][0], UNIT_OPCODE["silu"], UNIT_OPCODE["gelu"])
            else:
                code = UNIT_OPCODE[vop]
            unit_op = Mux(opcode == VEC_OPCODES[vop], code, unit_op)
        m.d.comb += vec.unit_op.eq(unit_op)

    def _connect_ports(self, m):
        """The engines' memory ports to the controller's."""
        mme, rqe, vec = self.matmul, self.requant, self.vec
        wiring.connect(m, mme.a_rd, wiring.flipped(self.a_rd))
        wiring.connect(m, mme.w_rd, wiring.flipped(self.w_rd))
        if vec is None:
            wiring.connect(m, rqe.spad_rd, wiring.flipped(self.spad_rd))
            wiring.connect(m, rqe.spad_wr, wiring.flipped(self.spad_wr))
        else:
            # Requant and the vector sequencer are both the VECTOR unit (one instruction at a time): they share
            # scratchpad narrow read port 0 and the write port; the sequencer also has narrow read port 1
            # (``vec_rd``) alone.
            wiring.connect(m, vec.rd, wiring.flipped(self.vec_rd))
            m.d.comb += [
                self.spad_rd.addr.eq(Mux(vec.rd2.en, vec.rd2.addr, rqe.spad_rd.addr)),
                self.spad_rd.en.eq(vec.rd2.en | rqe.spad_rd.en),
                rqe.spad_rd.data.eq(self.spad_rd.data), vec.rd2.data.eq(self.spad_rd.data),
                self.spad_wr.addr.eq(Mux(vec.wr.en != 0, vec.wr.addr, rqe.spad_wr.addr)),
                self.spad_wr.data.eq(Mux(vec.wr.en != 0, vec.wr.data, rqe.spad_wr.data)),
                self.spad_wr.en.eq(vec.wr.en | rqe.spad_wr.en),
                vec.rd2_block.eq(self.rd_block), vec.wr_block.eq(self.wr_block),
            ]
        wiring.connect(m, rqe.acc_rd, wiring.flipped(self.acc_rd))
        if self.block_scaled:
            wiring.connect(m, rqe.ext_rd, wiring.flipped(self.ext_rd))
            m.d.comb += [
                self.ext_wide_rd_addr.eq(mme.ext_rd_addr), self.ext_wide_rd_en.eq(mme.ext_rd_en),
                mme.ext_rd_data.eq(self.ext_wide_rd_data),
                self.ext_wide_wr_addr.eq(mme.ext_wr_addr), self.ext_wide_wr_data.eq(mme.ext_wr_data),
                self.ext_wide_wr_en.eq(mme.ext_wr_en),
            ]
        m.d.comb += [
            rqe.rd_block.eq(self.rd_block), rqe.wr_block.eq(self.wr_block),
            self.acc_wide_rd_addr.eq(mme.acc_rd_addr), self.acc_wide_rd_en.eq(mme.acc_rd_en),
            mme.acc_rd_data.eq(self.acc_wide_rd_data),
            self.acc_wide_wr_addr.eq(mme.acc_wr_addr), self.acc_wide_wr_data.eq(mme.acc_wr_data),
            self.acc_wide_wr_en.eq(mme.acc_wr_en),
        ]
