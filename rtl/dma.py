"""2-D strided DMA engine: an AXI4 manager between external memory and a local (scratchpad) memory.

A descriptor (``DMA_DESCRIPTOR``, see docs/registers.md and the binding DMA descriptor spec) moves
``rows`` rows of ``row_bytes`` bytes. Externally row ``r`` starts at ``ext_addr + r * ext_stride``
(any byte alignment); locally rows are packed at ``local_addr`` with a stride of ``row_bytes``
rounded up to the local word, which is one bus word (``data_width`` bits). A load writes whole local
words: the bytes of a row's last word past ``row_bytes`` are written as 0.

Bus behaviour
    INCR bursts of full bus words (``AxSIZE = log2(data_width/8)``, beat addresses aligned), at most
    256 beats and never crossing a 4 KiB boundary: a burst ends at the row end or at the next
    ``min(4096, 256 * bus_bytes)``-aligned boundary. Unaligned row starts/ends are handled with
    ``wstrb`` on stores and byte realignment on both sides. All transactions use ID 0, so responses
    come back in order. Up to ``max_outstanding`` bursts are in flight per direction.

Checks before any bus transaction (the whole command is refused, ``done`` pulses with an error)
    ``BAD_DESC``: ``rows == 0``, ``row_bytes == 0`` or ``local_addr`` not a multiple of the bus
    width in bytes (fault address = ``local_addr`` if misaligned, else ``ext_addr``).
    ``LOCAL_RANGE``: the packed local rows do not fit in ``local_depth`` words (fault address =
    ``local_addr``).
    ``WINDOW``: the external byte span ``[ext_addr, ext_addr + (rows-1)*ext_stride + row_bytes)`` is
    not inside one single window with the needed permission (read for LOAD, write for STORE), or
    runs past 2**32. Fault address = ``ext_addr`` when no such window holds the first byte,
    otherwise the last byte of the span (low 32 bits), which lies outside that window.

Errors during the transfer
    ``AXI_READ`` / ``AXI_WRITE``: the first SLVERR/DECERR response. Fault address = the address of
    the failing read beat, or the start address of the failing write burst. No new burst is
    issued after an error; bursts already issued are completed (AXI needs it) with local writes
    (loads) or ``wstrb`` (stores) suppressed, then ``done`` pulses.
    ``ABORTED``: ``abort`` was pulsed while busy (soft reset); same draining as above.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Module, Mux, ResetInserter, Signal, unsigned, signed
from amaranth.lib import data, enum, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from npuforge.rtl.axi import AXI4Signature, Burst, Resp, check_data_width

__all__ = ["Direction", "DmaError", "DMA_DESCRIPTOR", "WINDOW", "DmaConfig", "Dma",
           "LocalWriteSignature", "LocalReadSignature"]


class Direction(enum.Enum, shape=1):
    LOAD = 0   # external -> local
    STORE = 1  # local -> external


class DmaError(enum.Enum, shape=4):
    """Error code reported with ``done`` (and in the STATUS register)."""
    NONE = 0
    BAD_DESC = 1
    WINDOW = 2
    LOCAL_RANGE = 3
    AXI_READ = 4
    AXI_WRITE = 5
    ABORTED = 6


#: The DMA command; bit offsets (LSB first): ext_addr 0, ext_stride 32, local_addr 64, rows 96,
#: row_bytes 112, direction 128 (129 bits).
DMA_DESCRIPTOR = data.StructLayout({
    "ext_addr": unsigned(32),     # byte address of row 0 in external memory
    "ext_stride": unsigned(32),   # bytes from one row start to the next, external side
    "local_addr": unsigned(32),   # byte address in local memory, multiple of the bus width in bytes
    "rows": unsigned(16),         # 1..65535
    "row_bytes": unsigned(16),    # 1..65535
    "direction": Direction,
})

#: One address window: bytes [base, base + size) with read/write permission; size 0 = disabled.
WINDOW = data.StructLayout({
    "base": unsigned(32),
    "size": unsigned(32),
    "read": unsigned(1),
    "write": unsigned(1),
})


def _log2(n: int) -> int:
    return n.bit_length() - 1


@dataclass(frozen=True)
class DmaConfig:
    """Generation-time DMA parameters.

    data_width: AXI data bits (32/64/128/256) = local memory word bits.
    local_depth: local memory words (2..2**24).
    n_windows: address windows (1..16).
    max_outstanding: bursts in flight per direction (1..16).
    """
    data_width: int = 64
    local_depth: int = 1024
    n_windows: int = 4
    max_outstanding: int = 4

    def __post_init__(self):
        check_data_width(self.data_width)
        for name, lo, hi in (("local_depth", 2, 1 << 24), ("n_windows", 1, 16), ("max_outstanding", 1, 16)):
            v = getattr(self, name)
            if not isinstance(v, int) or not lo <= v <= hi:
                raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {v!r}")

    @property
    def bus_bytes(self) -> int:
        return self.data_width // 8

    @property
    def local_addr_width(self) -> int:
        return max(1, (self.local_depth - 1).bit_length())


class LocalWriteSignature(wiring.Signature):
    """Local memory write port driven by the DMA (loads): word ``addr``, ``data``, byte enables ``en``.

    Matches ``Memory.write_port(granularity=8)`` of a ``data_width``-bit memory. The DMA always writes
    whole words (``en`` is all ones or all zeros; row padding bytes are written as 0), so a memory
    without byte granularity may use ``en[0]`` as its write enable.
    """
    def __init__(self, addr_width: int, data_width: int):
        super().__init__({"addr": Out(addr_width), "data": Out(data_width), "en": Out(data_width // 8)})


class LocalReadSignature(wiring.Signature):
    """Local memory read port driven by the DMA (stores): ``data`` is valid the cycle after ``en``. The DMA drives
    ``addr`` and ``en`` from registers.

    Matches a synchronous ``Memory.read_port()`` of a ``data_width``-bit memory.
    """
    def __init__(self, addr_width: int, data_width: int):
        super().__init__({"addr": Out(addr_width), "en": Out(1), "data": In(data_width)})


class Dma(wiring.Component):
    """The DMA engine (see the module docstring for the behaviour).

    Members
    -------
    desc : In(stream.Signature(DMA_DESCRIPTOR))
        Commands; ``ready`` only while idle.
    windows : In(ArrayLayout(WINDOW, n_windows))
        Address windows, sampled when a command is checked.
    abort : In(1)
        Pulse: stop issuing bursts, drain, finish with ``ABORTED``.
    busy, done, error, fault_addr : Out
        ``busy`` from command acceptance to ``done``; ``done`` pulses one cycle; ``error``
        (``DmaError``) and ``fault_addr`` (32 bit) hold from ``done`` until the next command.
    rd_bytes, wr_bytes : Out(16)
        Per-cycle event counts for performance counters: ``row_bytes`` when a row finished
        arriving in local memory (load) / was accepted by the bus (store), else 0.
    bus_stall : Out(1)
        1 in a transfer cycle in which no data beat was accepted on R or W.
    m_axi : Out(AXI4Signature)
    local_wr : Out(LocalWriteSignature), local_rd : Out(LocalReadSignature)
    """

    def __init__(self, config: DmaConfig = DmaConfig()):
        self.config = config
        c = config
        super().__init__({
            "desc": In(stream.Signature(DMA_DESCRIPTOR)),
            "windows": In(data.ArrayLayout(WINDOW, c.n_windows)),
            "abort": In(1),
            "busy": Out(1),
            "done": Out(1),
            "error": Out(DmaError),
            "fault_addr": Out(32),
            "rd_bytes": Out(16),
            "wr_bytes": Out(16),
            "bus_stall": Out(1),
            "m_axi": Out(AXI4Signature(addr_width=32, data_width=c.data_width, id_width=4)),
            "local_wr": Out(LocalWriteSignature(c.local_addr_width, c.data_width)),
            "local_rd": Out(LocalReadSignature(c.local_addr_width, c.data_width)),
        })

    def elaborate(self, platform):
        m = Module()
        s = self._state(m)
        self._command(m, s)
        self._address_generator(m, s)
        self._load_path(m, s)
        self._store_path(m, s)
        self._responses_and_done(m, s)
        return m

    # Each section below adds its logic to ``m`` and its signals to the namespace ``s`` that later sections read;
    # the order of the calls is the order of the statements (the netlist does not change with the split).
    def _state(self, m) -> SimpleNamespace:
        """Constants (B bus bytes, P burst boundary), the latched descriptor, the run/error state."""
        c = self.config
        B = c.bus_bytes
        LB = _log2(B)
        DW = c.data_width
        # Bursts never cross a P-aligned boundary: P <= 4 KiB and P / B <= 256 beats.
        P = min(4096, 256 * B)
        LP = _log2(P)
        axi = self.m_axi

        d = Signal(DMA_DESCRIPTOR)
        words_per_row = Signal(17)        # ceil(row_bytes / B)
        span_end = Signal(50)             # exclusive end of the external byte span
        total_words = Signal(33)
        is_store = Signal()
        m.d.comb += is_store.eq(d.direction == Direction.STORE)

        stop = Signal()                   # error or abort: issue nothing more, drain
        err_code = Signal(DmaError)
        fault = Signal(32)
        m.d.comb += [self.error.eq(err_code), self.fault_addr.eq(fault)]

        start_run = Signal()              # one cycle: initialise the run engines
        in_run = Signal()
        run_done = Signal()
        in_idle = Signal()
        m.d.comb += in_idle.eq(~self.busy)

        return SimpleNamespace(c=c, B=B, LB=LB, DW=DW, P=P, LP=LP, axi=axi, d=d, words_per_row=words_per_row,
                               span_end=span_end, total_words=total_words, is_store=is_store, stop=stop,
                               err_code=err_code, fault=fault, start_run=start_run, in_run=in_run,
                               run_done=run_done, in_idle=in_idle, rb=d.row_bytes, stride=d.ext_stride,
                               nw=words_per_row)

    def _command(self, m, s) -> None:
        """The command FSM: accept, measure, check (BAD_DESC, LOCAL_RANGE, WINDOW), run, finish; abort."""
        c, B, LB, d, is_store, stop = s.c, s.B, s.LB, s.d, s.is_store, s.stop
        words_per_row, span_end, total_words = s.words_per_row, s.span_end, s.total_words
        err_code, fault, start_run, in_run, run_done = s.err_code, s.fault, s.start_run, s.in_run, s.run_done
        m.d.comb += self.desc.ready.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.desc.ready.eq(1)
                with m.If(self.desc.valid):
                    m.d.sync += [d.eq(self.desc.payload), stop.eq(0)]
                    m.next = "MEASURE"
            with m.State("MEASURE"):
                m.d.comb += self.busy.eq(1)
                rows_m1 = Signal(16)
                m.d.comb += rows_m1.eq(d.rows - 1)
                m.d.sync += [
                    words_per_row.eq((d.row_bytes + (B - 1)) >> LB),
                    span_end.eq(d.ext_addr + rows_m1 * d.ext_stride + d.row_bytes),
                ]
                m.next = "CHECK"
            with m.State("CHECK"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += total_words.eq(d.rows * words_per_row)
                m.next = "DECIDE"
            with m.State("DECIDE"):
                m.d.comb += self.busy.eq(1)
                inside_any = Signal()
                first_in_any = Signal()
                for i in range(c.n_windows):
                    w = self.windows[i]
                    perm = Mux(is_store, w.write, w.read)
                    end = Signal(33, name=f"win{i}_end")
                    m.d.comb += end.eq(w.base + w.size)
                    first_in = perm & (d.ext_addr >= w.base) & (d.ext_addr < end)
                    inside = first_in & (span_end <= end)
                    with m.If(first_in):
                        m.d.comb += first_in_any.eq(1)
                    with m.If(inside):
                        m.d.comb += inside_any.eq(1)
                local_word0 = d.local_addr >> LB
                with m.If(stop):
                    m.next = "FINISH"
                with m.Elif((d.rows == 0) | (d.row_bytes == 0) | (d.local_addr[:LB] != 0)):
                    m.d.sync += [err_code.eq(DmaError.BAD_DESC),
                                 fault.eq(Mux(d.local_addr[:LB] != 0, d.local_addr, d.ext_addr))]
                    m.next = "FINISH"
                with m.Elif(local_word0 + total_words > c.local_depth):
                    m.d.sync += [err_code.eq(DmaError.LOCAL_RANGE), fault.eq(d.local_addr)]
                    m.next = "FINISH"
                with m.Elif(~inside_any | (span_end > (1 << 32))):
                    m.d.sync += [err_code.eq(DmaError.WINDOW),
                                 fault.eq(Mux(first_in_any, (span_end - 1)[:32], d.ext_addr))]
                    m.next = "FINISH"
                with m.Else():
                    m.d.sync += [err_code.eq(DmaError.NONE), fault.eq(0)]
                    m.d.comb += start_run.eq(1)
                    m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += [self.busy.eq(1), in_run.eq(1)]
                with m.If(run_done):
                    m.next = "FINISH"
            with m.State("FINISH"):
                m.d.comb += [self.busy.eq(1), self.done.eq(1)]
                m.next = "IDLE"

        # Abort while busy: remember it as the reason (an earlier error keeps its code).
        with m.If(self.busy & self.abort & ~stop & ~self.done):
            m.d.sync += [stop.eq(1), err_code.eq(DmaError.ABORTED)]

    def _address_generator(self, m, s) -> None:
        """AR (loads) / AW (stores) bursts: registered outputs, at most ``max_outstanding`` in flight."""
        c, B, LB, P, LP, axi, d, is_store, stop = s.c, s.B, s.LB, s.P, s.LP, s.axi, s.d, s.is_store, s.stop
        rb, stride, start_run, in_idle = s.rb, s.stride, s.start_run, s.in_idle
        ag_active = Signal()
        ag_row = Signal(32)               # unaligned start address of the current row
        ag_rows_left = Signal(16)
        ag_cur = Signal(32)               # aligned address of the next beat to request
        ax_valid = Signal()
        ax_addr = Signal(32)
        ax_len = Signal(8)
        ax_ready = Signal()
        outstanding = Signal(range(c.max_outstanding + 1))
        burst_retire = Signal()           # rlast or B handshake

        row_last_beat = Signal(32)
        m.d.comb += row_last_beat.eq((ag_row + rb - 1) & ~(B - 1))
        same_block = row_last_beat[LP:] == ag_cur[LP:]
        burst_last = Mux(same_block, row_last_beat, ag_cur | (P - B))
        burst_len = Signal(8)
        m.d.comb += burst_len.eq(burst_last[LB:LP] - ag_cur[LB:LP])

        ax_fire = ax_valid & ax_ready
        load_burst = Signal()
        m.d.comb += load_burst.eq(ag_active & ~stop & (~ax_valid | ax_ready)
                                  & ((outstanding + ax_fire - burst_retire) < c.max_outstanding))
        # outstanding counts bursts from handshake to last response.
        m.d.sync += outstanding.eq(outstanding + ax_fire - burst_retire)
        with m.If(ax_fire):
            m.d.sync += ax_valid.eq(0)
        with m.If(load_burst):
            m.d.sync += [ax_valid.eq(1), ax_addr.eq(ag_cur), ax_len.eq(burst_len)]
            with m.If(burst_last == row_last_beat):
                next_row = ag_row + stride
                m.d.sync += [ag_row.eq(next_row), ag_cur.eq(next_row & ~(B - 1)),
                             ag_rows_left.eq(ag_rows_left - 1)]
                with m.If(ag_rows_left == 1):
                    m.d.sync += ag_active.eq(0)
            with m.Else():
                m.d.sync += ag_cur.eq(burst_last + B)
        with m.If(start_run):
            m.d.sync += [ag_active.eq(1), ag_row.eq(d.ext_addr), ag_cur.eq(d.ext_addr & ~(B - 1)),
                         ag_rows_left.eq(d.rows)]
        with m.If(in_idle):
            m.d.sync += [ag_active.eq(0), ax_valid.eq(0)]

        for ch, valid in (("ar", ax_valid & ~is_store), ("aw", ax_valid & is_store)):
            m.d.comb += [
                getattr(axi, f"{ch}valid").eq(valid),
                getattr(axi, f"{ch}addr").eq(ax_addr),
                getattr(axi, f"{ch}len").eq(ax_len),
                getattr(axi, f"{ch}size").eq(LB),
                getattr(axi, f"{ch}burst").eq(Burst.INCR),
                getattr(axi, f"{ch}id").eq(0),
                getattr(axi, f"{ch}cache").eq(0b0011),  # normal non-cacheable bufferable
                getattr(axi, f"{ch}prot").eq(0),
                getattr(axi, f"{ch}lock").eq(0),
            ]
        m.d.comb += ax_ready.eq(Mux(is_store, axi.awready, axi.arready))
        s.ax_valid, s.ax_fire, s.load_burst, s.ag_active, s.ag_cur = ax_valid, ax_fire, load_burst, ag_active, ag_cur
        s.outstanding, s.burst_retire = outstanding, burst_retire

    def _load_path(self, m, s) -> None:
        """R beats -> realigned local words (whole words; bytes past ``row_bytes`` written as 0)."""
        c, B, LB, DW, axi, d, is_store, stop = s.c, s.B, s.LB, s.DW, s.axi, s.d, s.is_store, s.stop
        rb, stride, start_run, in_run, err_code, fault = s.rb, s.stride, s.start_run, s.in_run, s.err_code, s.fault
        rs_row = Signal(32)
        rs_lim = Signal(signed(19))       # bytes of the row from this beat's start (incl. offset)
        rs_rem = Signal(signed(19))       # row bytes still to be written locally
        rs_first = Signal()
        rs_flush = Signal()               # one extra local word from the last beat, R paused
        rs_word = Signal(c.local_addr_width + 1)
        rs_beat_addr = Signal(32)
        rs_prev = Signal(DW)
        rs_off = Signal(LB)
        m.d.comb += rs_off.eq(rs_row[:LB])

        r_fire = axi.rvalid & axi.rready
        m.d.comb += axi.rready.eq(~rs_flush & in_run & ~is_store)
        load_bytes = Signal(DW)
        emit = Signal()
        enables = Signal(B)
        m.d.comb += enables.eq(Cat(*[rs_rem > i for i in range(B)]))
        with m.If(rs_flush):
            m.d.comb += [emit.eq(1), load_bytes.eq(Cat(rs_prev, Const(0, DW)).bit_select(rs_off * 8, DW))]
        with m.Elif(r_fire):
            m.d.comb += [
                emit.eq((rs_off == 0) | ~rs_first),
                load_bytes.eq(Mux(rs_off == 0, axi.rdata, Cat(rs_prev, axi.rdata).bit_select(rs_off * 8, DW))),
            ]
        # Whole local words are written; bytes past row_bytes are 0 (as docs/isa.md specifies).
        m.d.comb += [
            self.local_wr.addr.eq(rs_word),
            self.local_wr.data.eq(Cat(*[Mux(enables[i], load_bytes.word_select(i, 8), 0) for i in range(B)])),
            self.local_wr.en.eq(Mux(emit & ~stop, (1 << B) - 1, 0)),
        ]
        rem_after = Signal(signed(19))
        m.d.comb += rem_after.eq(rs_rem - Mux(emit, B, 0))
        with m.If(emit):
            m.d.sync += [rs_rem.eq(rem_after), rs_word.eq(rs_word + 1)]
        row_end_rd = Signal()
        with m.If(r_fire):
            m.d.sync += [rs_prev.eq(axi.rdata), rs_first.eq(0), rs_lim.eq(rs_lim - B),
                         rs_beat_addr.eq(rs_beat_addr + B)]
            with m.If((axi.rresp != Resp.OKAY) & ~stop):
                m.d.sync += [stop.eq(1), err_code.eq(DmaError.AXI_READ), fault.eq(rs_beat_addr)]
            with m.If(rs_lim <= B):       # last beat of the row
                with m.If(rem_after > 0):
                    m.d.sync += rs_flush.eq(1)
                with m.Else():
                    m.d.comb += row_end_rd.eq(1)
        with m.If(rs_flush):
            m.d.sync += rs_flush.eq(0)
            m.d.comb += row_end_rd.eq(1)
        rs_next_row = rs_row + stride
        with m.If(row_end_rd):
            m.d.sync += [rs_row.eq(rs_next_row), rs_first.eq(1), rs_rem.eq(rb),
                         rs_lim.eq(rs_next_row[:LB] + rb), rs_beat_addr.eq(rs_next_row & ~(B - 1))]
        m.d.comb += self.rd_bytes.eq(Mux(row_end_rd & ~stop, rb, 0))
        with m.If(start_run):
            m.d.sync += [rs_row.eq(d.ext_addr), rs_first.eq(1), rs_rem.eq(rb), rs_flush.eq(0),
                         rs_lim.eq(d.ext_addr[:LB] + rb), rs_beat_addr.eq(d.ext_addr & ~(B - 1)),
                         rs_word.eq(d.local_addr >> LB)]
        s.r_fire, s.rs_flush = r_fire, rs_flush

    def _store_path(self, m, s) -> None:
        """Local words -> realigned W beats (a registered read request, a read stage, a realigning stage and a
        FIFO); W beats of a burst only after its AW handshake."""
        c, B, LB, DW, LP, axi, d, is_store, stop = s.c, s.B, s.LB, s.DW, s.LP, s.axi, s.d, s.is_store, s.stop
        rb, stride, nw, start_run, in_run, in_idle = s.rb, s.stride, s.nw, s.start_run, s.in_run, s.in_idle
        ax_fire = s.ax_fire
        ws_active = Signal()
        ws_row = Signal(32)
        ws_rows_left = Signal(16)
        ws_lim = Signal(signed(19))
        ws_first = Signal()
        ws_row_word = Signal(c.local_addr_width + 1)
        ws_widx = Signal(17)
        ws_beat_addr = Signal(32)
        s1_valid = Signal()
        s1_strb = Signal(B)
        s1_last = Signal()
        s1_row_end = Signal()
        s1_off = Signal(LB)
        ws_prev = Signal(DW)

        FIFO_DEPTH = 4
        wfifo = ResetInserter(in_idle)(fifo.SyncFIFO(width=DW + B + 2, depth=FIFO_DEPTH))
        m.submodules.wfifo = wfifo

        ws_off = ws_row[:LB]
        ws_row_last = ws_lim <= B
        # The local read is registered (s0): the memories' read-port arbitration (the store has priority, the
        # controller's engines are blocked) starts from flip-flops, not from the FIFO level's arithmetic. The
        # word is read one cycle after the decision (``issue``), its data arrives in s1 and enters the FIFO;
        # the decision counts both stages against the FIFO's free entries.
        issue = Signal()
        s0_valid = Signal()
        s0_addr = Signal.like(self.local_rd.addr)
        s0_strb = Signal(B)
        s0_last = Signal()
        s0_row_end = Signal()
        s0_off = Signal(LB)
        m.d.comb += issue.eq(ws_active & in_run & ((wfifo.level + s0_valid + s1_valid) < FIFO_DEPTH))
        m.d.comb += [
            self.local_rd.addr.eq(s0_addr),
            self.local_rd.en.eq(s0_valid),
        ]
        m.d.sync += [s0_valid.eq(issue), s1_valid.eq(s0_valid)]
        with m.If(s0_valid):
            m.d.sync += [s1_strb.eq(s0_strb), s1_last.eq(s0_last), s1_row_end.eq(s0_row_end), s1_off.eq(s0_off)]
        with m.If(issue):
            m.d.sync += [
                s0_addr.eq(ws_row_word + ws_widx),
                s0_strb.eq(Cat(*[((i >= ws_off) | ~ws_first) & (ws_lim > i) for i in range(B)])),
                s0_last.eq(ws_row_last | (ws_beat_addr[LB:LP] == (1 << (LP - LB)) - 1)),
                s0_row_end.eq(ws_row_last),
                s0_off.eq(ws_off),
            ]
            with m.If(ws_row_last):
                ws_next_row = ws_row + stride
                m.d.sync += [ws_row.eq(ws_next_row), ws_first.eq(1), ws_widx.eq(0),
                             ws_row_word.eq(ws_row_word + nw), ws_lim.eq(ws_next_row[:LB] + rb),
                             ws_beat_addr.eq(ws_next_row & ~(B - 1)), ws_rows_left.eq(ws_rows_left - 1)]
                with m.If(ws_rows_left == 1):
                    m.d.sync += ws_active.eq(0)
            with m.Else():
                m.d.sync += [ws_first.eq(0), ws_lim.eq(ws_lim - B), ws_beat_addr.eq(ws_beat_addr + B),
                             ws_widx.eq(Mux(ws_widx + 1 < nw, ws_widx + 1, ws_widx))]
        with m.If(start_run & is_store):
            m.d.sync += [ws_active.eq(1), ws_row.eq(d.ext_addr), ws_rows_left.eq(d.rows), ws_first.eq(1),
                         ws_widx.eq(0), ws_row_word.eq(d.local_addr >> LB),
                         ws_lim.eq(d.ext_addr[:LB] + rb), ws_beat_addr.eq(d.ext_addr & ~(B - 1))]
        with m.If(in_idle):
            m.d.sync += [ws_active.eq(0), s0_valid.eq(0), s1_valid.eq(0)]

        cur = self.local_rd.data
        beat = Signal(DW)
        # Beat byte p holds row byte (j*B + p - off): the upper bytes of the previous word, then this one.
        m.d.comb += beat.eq(Mux(s1_off == 0, cur, Cat(ws_prev, cur).bit_select((B - s1_off).as_unsigned()[:LB + 1] * 8, DW)))
        with m.If(s1_valid):
            m.d.sync += ws_prev.eq(cur)
        m.d.comb += [wfifo.w_en.eq(s1_valid), wfifo.w_data.eq(Cat(beat, s1_strb, s1_last, s1_row_end))]

        # W beats of a burst only after its AW handshake; counters compare modulo 2**5.
        aw_count = Signal(5)
        wlast_count = Signal(5)
        w_gate = aw_count != wlast_count
        f_data = wfifo.r_data[:DW]
        f_strb = wfifo.r_data[DW:DW + B]
        f_last = wfifo.r_data[DW + B]
        f_row_end = wfifo.r_data[DW + B + 1]
        m.d.comb += [
            axi.wvalid.eq(wfifo.r_rdy & w_gate & in_run),
            axi.wdata.eq(f_data),
            axi.wstrb.eq(Mux(stop, 0, f_strb)),
            axi.wlast.eq(f_last),
            wfifo.r_en.eq(axi.wready & w_gate & in_run),
        ]
        w_fire = axi.wvalid & axi.wready
        with m.If(ax_fire & is_store):
            m.d.sync += aw_count.eq(aw_count + 1)
        with m.If(w_fire & f_last):
            m.d.sync += wlast_count.eq(wlast_count + 1)
        with m.If(start_run):
            m.d.sync += [aw_count.eq(0), wlast_count.eq(0)]
        m.d.comb += self.wr_bytes.eq(Mux(w_fire & f_row_end & ~stop, rb, 0))
        s.w_fire, s.aw_count, s.wlast_count = w_fire, aw_count, wlast_count

    def _responses_and_done(self, m, s) -> None:
        """Write responses (AXI_WRITE with the failing burst's address), burst retirement, run end, bus stall."""
        c, axi, is_store, stop, in_run, in_idle = s.c, s.axi, s.is_store, s.stop, s.in_run, s.in_idle
        err_code, fault, start_run, run_done = s.err_code, s.fault, s.start_run, s.run_done
        load_burst, ag_cur, r_fire, w_fire = s.load_burst, s.ag_cur, s.r_fire, s.w_fire
        # Write responses: the start address of each burst waits here for its B.
        bfifo = ResetInserter(in_idle)(fifo.SyncFIFO(width=32, depth=c.max_outstanding))
        m.submodules.bfifo = bfifo
        m.d.comb += [bfifo.w_en.eq(load_burst & is_store), bfifo.w_data.eq(ag_cur)]
        m.d.comb += axi.bready.eq(in_run & is_store)
        b_fire = axi.bvalid & axi.bready
        m.d.comb += bfifo.r_en.eq(b_fire)
        with m.If(b_fire & (axi.bresp != Resp.OKAY) & ~stop):
            m.d.sync += [stop.eq(1), err_code.eq(DmaError.AXI_WRITE), fault.eq(bfifo.r_data)]

        m.d.comb += s.burst_retire.eq(Mux(is_store, b_fire, r_fire & axi.rlast))

        # Done: nothing left to request, no burst in flight, every W beat sent, no pending local word.
        m.d.comb += run_done.eq((~s.ag_active | stop) & ~s.ax_valid & (s.outstanding == 0) & ~s.rs_flush
                                & (s.aw_count == s.wlast_count) & ~start_run)
        m.d.comb += self.bus_stall.eq(in_run & ~r_fire & ~w_fire)
