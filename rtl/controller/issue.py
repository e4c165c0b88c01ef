"""Issue and interlocks: which unit runs what, when the next command may start, and the first unit error."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from npuforge.rtl.controller.common import ErrorCode
from npuforge.rtl.dma import DmaError

__all__ = ["Interlocks"]


class Interlocks(wiring.Component):
    """One running instruction per unit (DMA: loads and stores in program order; MATMUL; VECTOR: requant and the
    vector sequencer), the interlocks on the ports the units share, FENCE, and the first unit error.

    An accumulator DMA starts only with no MATMUL or VECTOR instruction in flight, and no MATMUL or VEC_REQUANT
    starts while one runs (the accumulator's narrow ports are shared). A failing unit instruction is recorded with
    its pc; of several, the first in program order (smallest pc) is kept and reported after the drain.

    Parameters
    ----------
    vector : bool   the vector sequencer exists (its ``vector_*`` inputs).

    Members
    -------
    clear : In(1)              pulse (start of a run): forget the recorded error.
    pc : In(32)                byte offset of the command being issued.
    issue_dma, dma_store, dma_acc : In(1)   issue a DMA command (a store / to the accumulator) this cycle;
    issue_matmul, issue_vector : In(1)      issue a MATMUL / VECTOR command this cycle.
    acc_transfer : In(1)       the DMA command held for issue targets the accumulator.
    dma_free, matmul_free, requant_free, vector_free : Out(1)   the command of that kind may issue now.
    dma_mem : Out(1)           memory of the running DMA command (0 spad, 1 acc).
    fence_en : In(4), fence_count : In(32)   FENCE: units waited on (load, store, matrix, vector) and the
                               outstanding instructions each may keep (8 bits each); fence_ok : Out(1) it passes.
    dma_done : In(1), dma_error : In(DmaError), dma_fault : In(32)
    matmul_done : In(1); requant_done, requant_error : In(1), requant_fault : In(32)
    vector_done, vector_error : In(1), vector_code : In(4), vector_fault : In(32)   only with ``vector``
    idle : Out(1)              no unit runs an instruction.
    any_error : Out(1)         a unit error is recorded or reported this cycle (stop issuing).
    error : Out(1), code : Out(4), fault_addr : Out(32), error_pc : Out(32)   the recorded error.
    """

    def __init__(self, *, vector: bool):
        self.vector = vector
        super().__init__({
            "clear": In(1), "pc": In(32),
            "issue_dma": In(1), "dma_store": In(1), "dma_acc": In(1), "issue_matmul": In(1), "issue_vector": In(1),
            "acc_transfer": In(1),
            "dma_free": Out(1), "matmul_free": Out(1), "requant_free": Out(1), "vector_free": Out(1),
            "dma_mem": Out(1),
            "fence_en": In(4), "fence_count": In(32), "fence_ok": Out(1),
            "dma_done": In(1), "dma_error": In(DmaError), "dma_fault": In(32),
            "matmul_done": In(1), "requant_done": In(1), "requant_error": In(1), "requant_fault": In(32),
            **({"vector_done": In(1), "vector_error": In(1), "vector_code": In(4), "vector_fault": In(32)}
               if vector else {}),
            "idle": Out(1), "any_error": Out(1),
            "error": Out(1), "code": Out(4), "fault_addr": Out(32), "error_pc": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        dma_run, dma_store, dma_acc = Signal(), Signal(), Signal()
        mat_run, vec_run = Signal(), Signal()
        dma_pc, vec_pc = Signal(32), Signal(32)
        m.d.comb += self.dma_mem.eq(dma_acc)
        u_err, u_code, u_fault, u_pc = Signal(), Signal(4), Signal(32), Signal(32)
        m.d.comb += [self.error.eq(u_err), self.code.eq(u_code), self.fault_addr.eq(u_fault),
                     self.error_pc.eq(u_pc)]
        dma_code = Signal(4)
        with m.Switch(self.dma_error):
            with m.Case(DmaError.WINDOW):
                m.d.comb += dma_code.eq(ErrorCode.DMA_WINDOW)
            with m.Case(DmaError.BAD_DESC, DmaError.LOCAL_RANGE):
                m.d.comb += dma_code.eq(ErrorCode.LOCAL_RANGE)
            with m.Case(DmaError.NONE):
                m.d.comb += dma_code.eq(ErrorCode.NONE)
            with m.Default():
                m.d.comb += dma_code.eq(ErrorCode.BUS_ERROR)

        # ---- completion, then issue (an issue in the cycle a unit completes wins) ----
        with m.If(self.dma_done):
            m.d.sync += dma_run.eq(0)
        with m.If(self.matmul_done):
            m.d.sync += mat_run.eq(0)
        with m.If(self.requant_done):
            m.d.sync += vec_run.eq(0)
        if self.vector:
            with m.If(self.vector_done):
                m.d.sync += vec_run.eq(0)
        with m.If(self.issue_dma):
            m.d.sync += [dma_run.eq(1), dma_store.eq(self.dma_store), dma_acc.eq(self.dma_acc), dma_pc.eq(self.pc)]
        with m.If(self.issue_matmul):
            m.d.sync += mat_run.eq(1)
        with m.If(self.issue_vector):
            m.d.sync += [vec_run.eq(1), vec_pc.eq(self.pc)]
        acc_dma = dma_run & dma_acc
        m.d.comb += [
            # The accumulator's narrow ports are shared: an acc transfer runs alone.
            self.dma_free.eq(~dma_run & (~self.acc_transfer | (~mat_run & ~vec_run))),
            self.matmul_free.eq(~mat_run & ~acc_dma),
            self.requant_free.eq(~vec_run & ~acc_dma),
            self.vector_free.eq(~vec_run),
            self.idle.eq(~dma_run & ~mat_run & ~vec_run),
        ]
        # FENCE: a unit has at most one outstanding instruction, so "<= count" fails only for count 0.
        outstanding = [dma_run & ~dma_store, dma_run & dma_store, mat_run, vec_run]
        m.d.comb += self.fence_ok.eq(Cat(*[~self.fence_en[u] | ~outstanding[u]
                                           | (self.fence_count[8 * u:8 * u + 8] != 0) for u in range(4)]).all())

        # ---- the first failing unit instruction in program order ----
        # Only a command of this run counts (after a soft reset the DMA may still finish an aborted one).
        dma_fail = self.dma_done & dma_run & (dma_code != ErrorCode.NONE)
        vec_fail = self.requant_done & self.requant_error
        vec_code, vec_fault = ErrorCode.BAD_PARAM, self.requant_fault
        if self.vector:
            seq_fail = self.vector_done & self.vector_error
            vec_fail = vec_fail | seq_fail
            vec_code = Mux(seq_fail, self.vector_code, ErrorCode.BAD_PARAM)
            vec_fault = Mux(seq_fail, self.vector_fault, self.requant_fault)
        with m.If(vec_fail & (~u_err | (vec_pc < u_pc))):
            m.d.sync += [u_err.eq(1), u_code.eq(vec_code), u_fault.eq(vec_fault), u_pc.eq(vec_pc)]
        with m.If(dma_fail & (~u_err | (dma_pc < u_pc)) & ~(vec_fail & (vec_pc < dma_pc))):
            m.d.sync += [u_err.eq(1), u_code.eq(dma_code), u_fault.eq(self.dma_fault), u_pc.eq(dma_pc)]
        with m.If(self.clear):
            m.d.sync += u_err.eq(0)
        m.d.comb += self.any_error.eq(u_err | dma_fail | vec_fail)
        return m
