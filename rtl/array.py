"""Systolic PE array, rows x cols, weight-stationary and/or output-stationary, with stream edges.

GEMM ``C[M, N] = A[M, K] @ B[K, N]`` (A activations, B weights). The caller streams whole tile rows/columns;
the array skews them onto the diagonals itself and de-skews the results.

Ports (``amaranth.lib.stream``, valid/ready; a transfer happens on a cycle with both high)
------------------------------------------------------------------------------------------
``a``    sink, payload ``{data: rows x act_width bits, last: 1}``: one activation word per PE row (``act_width`` 8,
         or 16 when a 16-bit-activation mode is generated; 8-bit modes then use bits 7..0).
``w``    sink, payload ``cols x 8 bits``: one weight byte per PE column.
``w_pairs`` In(1) (arrays with w4a16 and ``rows >= 4`` even): a ws weight beat carries two K rows, row ``2j`` in
         the low and row ``2j + 1`` in the high nibble of each byte (w4a16 only; see "Row pairs" below).
``c``    source, payload ``{data: (cols*lanes) x signed(acc_width), last: 1}``; element ``c*lanes + l`` is lane ``l``
         of PE column ``c`` (lane ``2*i + j``, :mod:`rtl.mac`). Lanes the mode does not use are 0.
``mode`` In(3): ``0`` int8, ``1`` w4a8, ``2`` int4, ``3`` w8a16, ``7`` w4a16 (:data:`spec.precision.MODE_CODES`);
         ``dataflow`` In(1): ``0`` ws, ``1`` os. Both must stay constant while a GEMM is in flight.
``error`` Out(1): the selected mode or dataflow is not generated in this array (or a reserved code). While it is high
         ``a`` and ``w`` accept nothing, so no wrong data can come out.

How the narrow modes raise throughput (bytes per lane stay 8 bits)
------------------------------------------------------------------
* int8: PE column ``c`` is output column ``c``; PE row is K (ws) or M (os).
* w4a8: each weight byte holds two int4 weights, ``B[k, 2c]`` (low nibble) and ``B[k, 2c+1]`` (high nibble): every
  PE column makes two output columns (lanes 0, 1) -> tiles are ``2*cols`` wide, 2x MACs per cycle.
* int4: additionally each activation byte holds two int4 activations, ``A[2m, k]`` (low) and ``A[2m+1, k]`` (high),
  for two output rows: every PE makes a 2x2 output block, lane ``2*i + j`` = ``C[2m+i, 2c+j]`` -> 4x MACs/cycle.
* w8a16 / w4a16: one int16 activation per ``a`` word and one weight per PE column (w4a16: the low nibble of the
  weight byte), as int8: one product per PE per cycle (:mod:`spec.precision` says why).

Weight-stationary (ws)
----------------------
PE(r, c) holds ``B[k0 + r, n-tile column c]``. A weight tile is ``rows`` beats on ``w``, beat ``k`` = tile row ``k``
(zero-padded), written into row ``k`` of the free one of two banks (double buffer) while the other bank computes,
so the next tile's weights load under the current tile's activations. Then ``a`` beats, beat ``m`` =
``A[m, k0:k0+rows]`` (int4: packed row pair), ``last`` on the tile's final beat, which retires the bank. Each ``a``
beat gives one ``c`` beat (same order, same ``last``): the partial sums over this tile's ``rows`` K values, column
``c`` lanes per the mode. Sums over several K tiles are accumulated by the consumer (the accumulator SRAM of the
NPU, as in Gemmini).
A retired bank takes the next tile's weights from the next cycle on, without waiting for the tile's last
activation to leave the array: the weight writes are skewed across the columns like the activations (column
``c`` is written ``c + 1`` enabled cycles after the beat is taken, ``c`` in a 1-row array), so row ``k`` of the
new tile always reaches PE(k, c) after the old tile's last activation has been multiplied there (Gemmini's
"propagate" travelling with the wavefront), and still before the new tile's first activation (which can be taken
the cycle after the tile's last weight beat: row ``k`` is written ``rows - 1 - k`` beats before that one and read
``k`` cycles after it). With ``rows`` weight beats per tile the array thus takes one tile per
``max(rows, M beats)`` cycles, the weight stream's full rate for decode GEMVs (M = 1). The extra cycle makes every
bank write enable a flip-flop (no handshake logic in front of it: fmax).

Row pairs (w4a16, ``w_pairs``)
------------------------------
A w4a16 weight is one nibble, so a byte beat can hold two K rows: a tile is ``rows / 2`` beats, each writing rows
``2j`` (the byte as is: the w4a16 MAC reads its low nibble) and ``2j + 1`` (the high nibble moved down) of every
column, and a decode GEMV takes ``2 * cols`` weights per cycle. Those writes outrun the retired tile's last
activation (row ``2j + 1`` written ``j`` beats after the bank reopens, the activation there ``2j + 1`` cycles after
its retire), so a retired bank takes pairs only :func:`pair_hold` enabled cycles after its retire: beat ``j`` is
then written in enabled cycle ``t + 2 + hold + j + c`` (write lead 1) and the activation samples row ``2j + 1`` in
``t + 2j + 1 + c``, at least one enabled cycle earlier for every ``j <= rows / 2 - 1``. One cycle, not zero: a
strobe register holds through the stall cycles before its enabled cycle, so a write "in the sampling cycle" may
already land in a stall just before it (the plain schedule has two cycles of margin). The new tile's first
activation (the cycle after its last beat) reaches row ``k >= 2`` at least one cycle after that row's write, and
rows 0, 1 are written earlier (``rows >= 4``). With one activation beat per fold the hold costs nothing: a bank's
next tile loads behind the other bank's ``rows / 2`` beats anyway (``(1 + rows / 2 + hold) / 2 <= rows / 2``).

Output-stationary (os)
----------------------
PE(r, c) accumulates ``C[m0 + r, n0 + c]`` (lanes per the mode) over a K of any length (bounded by ``acc_width``).
Beat ``k`` is a pair: ``a`` = ``A[m0:m0+rows, k]`` (column of the A tile) and ``w`` = ``B[k, n0:n0+cols]``, both taken
in the same cycle; ``last`` on ``a`` marks ``k = K-1``. The finished tile is captured into shadow registers and
drained as ``rows`` beats on ``c`` (beat ``r`` = PE row ``r``, ``last`` on the final one) while the next tile
already accumulates. A tile's last pair waits until the previous tile's drain has finished.

Flow control
------------
All compute registers share one enable ``en``: in os it is always high (draining has its own shadow registers); in
ws it is a register, ``en = (beats in the output queue after this cycle) <= 1``, so a beat that the array makes
while ``c`` stalls always has room in the two-entry output queue (two fixed entries and pointers: ``c.ready``
moves a pointer, never the payload registers' enables). Being registered, the enable is distributed as copies
(one flip-flop per PE, row and column, kept apart by :func:`rtl.dsp.replica_flop`), and each PE row and column
computes its copies' input from its own copy of the queue's occupancy counter (:class:`rtl.array_control.
EnableCopies`): no array-wide net from ``c.ready`` or from one ``has_room`` to every register. With ``c`` always
ready it never drops, so the cycle counts are those of a combinational enable. Cycles without an accepted
input inject a zero bubble with ``valid = 0`` in its tag, so stalls on any stream never lose or duplicate data.
``w`` (ws) is taken only on enabled cycles, so the skewed weight writes stay in step with the activations.
Skewing: row ``r`` of ``a`` and column ``c`` of ``w`` are delayed ``r`` and ``c`` enabled cycles on the way in;
ws results of column ``c`` are delayed ``cols - 1 - c`` on the way out.

Registered edges (``pipeline >=`` :data:`EDGE_PIPELINE`, the fmax depth)
-----------------------------------------------------------------------
Both edges get one more register stage, so no handshake logic lies in front of a PE and no PE in front of the output
queue (at depth 5 without them the 4x4 and 8x8 arrays' critical paths ran from the enable or the weight-bank state
through a row's input multiplexer into PE(r, 0), and from the corner PE's tag through the queue's pointers):

* in: every row registers its raw activation word and its tag (``valid`` = this row's handshake), and a bubble's
  activation is zeroed after that register by the registered ``valid`` (only the tag's two flip-flops hang on the
  handshake); the weight bytes and the bank write strobes take one more register too, so weights, activations and
  bank releases keep their relative timing;
* out (ws): the de-skewed results and the corner PE's tag take one more register before the output queue.

A ws result then leaves two enabled cycles later and an os one one cycle later (its drain comes from the shadow
registers, which are registers already); throughput and the weight-bank schedule are unchanged.
"""

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from npuforge.rtl.array_control import EnableCopies, OsDrainControl, OutputQueue, WeightBanks
from npuforge.rtl.mac import act_width_for, check_mac_params, lanes_for
from npuforge.spec.dataflow import DATAFLOW_CODES
from npuforge.spec.precision import MODE_BITS, MODE_CODES
from npuforge.rtl.pe import PE, TagLayout

__all__ = ["PEArray", "pair_hold", "has_row_pairs", "EDGE_PIPELINE", "edge_stages"]

#: MAC pipeline depth from which the array also registers its edges (:func:`edge_stages`).
EDGE_PIPELINE = 5


def edge_stages(pipeline: int) -> int:
    """Registers on each of the array's edges (module docstring, "Registered edges"): 1 at ``pipeline >=``
    :data:`EDGE_PIPELINE`, else 0. Adds ``2 * edge_stages`` cycles to a ws result's latency and ``edge_stages`` to an
    os one's (``gen.perf.model`` follows)."""
    return 1 if pipeline >= EDGE_PIPELINE else 0


def _delay(m, en, value, cycles, name):
    """``value`` delayed by ``cycles`` registers that advance on ``en``."""
    for i in range(cycles):
        reg = Signal(value.shape(), name=f"{name}_d{i}")
        with m.If(en):
            m.d.sync += reg.eq(value)
        value = reg
    return value


def pair_hold(rows: int) -> int:
    """Enabled cycles a retired bank waits before it takes row-pair beats (module docstring, "Row pairs")."""
    return rows // 2 - 1


def has_row_pairs(rows: int, precisions) -> bool:
    """The array takes w4a16 row-pair weight beats (``w_pairs``): built with w4a16 and an even ``rows >= 4``."""
    return "w4a16" in tuple(precisions) and rows >= 4 and rows % 2 == 0


class PEArray(wiring.Component):
    """rows x cols systolic array of precision-scalable PEs (see the module docstring for the protocol).

    Parameters
    ----------
    rows, cols : int
        PE grid, 1..64 each.
    dataflows : tuple of str
        ``("ws",)``, ``("os",)`` or ``("ws", "os")``.
    precisions : tuple of str
        Modes generated; ``("int8",)`` gives plain int8 MACs with one lane.
    pipeline : int
        MAC pipeline stages, 1..5.
    acc_width : int
        Accumulator and partial-sum width, 16..64 bits.
    """

    def __init__(self, *, rows=8, cols=8, dataflows=("ws",), precisions=("int8", "w4a8", "int4"), pipeline=2,
                 acc_width=32):
        for name, value in (("rows", rows), ("cols", cols)):
            if not isinstance(value, int) or not 1 <= value <= 64:
                raise ValueError(f"{name} must be an integer in [1, 64], got {value!r}")
        dataflows = tuple(dataflows)
        if dataflows not in (("ws",), ("os",), ("ws", "os")):
            raise ValueError(f"dataflows must be ('ws',), ('os',) or ('ws', 'os'), got {dataflows!r}")
        self.rows, self.cols, self.dataflows = rows, cols, dataflows
        self.precisions = tuple(precisions)
        self.pipeline, self.acc_width = pipeline, acc_width
        self.lanes = lanes_for(self.precisions)
        self.act_width = act_width_for(self.precisions)
        self._pe_kwargs = dict(dataflows=dataflows, precisions=self.precisions, pipeline=pipeline,
                               acc_width=acc_width)
        check_mac_params(precisions=self.precisions, pipeline=pipeline, acc_width=acc_width)
        super().__init__({
            "mode": In(MODE_BITS),
            "dataflow": In(1),
            "error": Out(1),
            "a": In(stream.Signature(data.StructLayout({"data": data.ArrayLayout(self.act_width, rows),
                                                        "last": 1}))),
            "w": In(stream.Signature(data.ArrayLayout(8, cols))),
            "w_pairs": In(1),
            "c": Out(stream.Signature(data.StructLayout({
                "data": data.ArrayLayout(signed(acc_width), cols * self.lanes), "last": 1}))),
        })

    def elaborate(self, platform):
        m = Module()
        rows, cols, lanes = self.rows, self.cols, self.lanes
        has_ws, has_os = "ws" in self.dataflows, "os" in self.dataflows

        legal_mode = Signal()
        m.d.comb += legal_mode.eq(Cat(*[self.mode == MODE_CODES[p] for p in self.precisions]).any())
        legal_dataflow = Signal()
        m.d.comb += legal_dataflow.eq(Cat(*[self.dataflow == DATAFLOW_CODES[d] for d in self.dataflows]).any())
        illegal = Signal()
        m.d.comb += [illegal.eq(~legal_mode | ~legal_dataflow), self.error.eq(illegal)]
        is_os = Signal()
        m.d.comb += is_os.eq(self.dataflow if (has_ws and has_os) else int(has_os))

        pes = [[PE(**self._pe_kwargs) for _ in range(cols)] for _ in range(rows)]
        for r in range(rows):
            for c in range(cols):
                m.submodules[f"pe_{r}_{c}"] = pes[r][c]
        corner = pes[rows - 1][cols - 1]
        pe_en = [[None] * cols for _ in range(rows)]

        # ws enable: registered (see the module docstring), one copy per group of registers it drives, each group
        # (control, PE row r, column c's edge registers) with its own copy of the output queue's occupancy.
        # The tag of the results that reach the output queue now (the corner PE's, one register later with edges).
        result_tag = Signal(TagLayout)
        if has_ws:
            en_copies = EnableCopies(m, push_req=result_tag.valid & ~is_os, ready=self.c.ready,
                                     platform=platform)

        def en_for(name, group):
            if not has_ws:
                return Const(1, 1)
            copy = en_copies.copy(name, group)
            return (is_os | copy) if has_os else copy

        en = en_for("ctl", "ctl")
        for r in range(rows):
            for c in range(cols):
                # One copy per register group of the PE (rtl.pe: a distributed enable).
                pe_en[r][c] = Cat(*[en_for(f"pe_{r}_{c}" + (f"_{k}" if k else ""), f"row{r}")
                                    for k in range(pes[r][c].en_copies)])
        edge = edge_stages(self.pipeline)
        accept = Signal()  # an input beat enters the array this cycle
        m.d.comb += accept.eq(self.a.valid & self.a.ready)
        # Weight bytes of column c are delayed c enabled cycles, so they meet the activation wavefront (os: the
        # operand pairs; ws: the bank writes). Shared by both dataflows. Not gated by the handshake (no net from
        # it to every byte): ws writes only under their strobes, and an os bubble pairs its weight with a zero
        # activation.
        w_skewed = []
        for c in range(cols):
            w_byte = Signal(8, name=f"w_in{c}")
            m.d.comb += w_byte.eq(self.w.payload[c])
            w_en = en_for(f"w_skew{c}", f"col{c}") if c or edge else en
            w_skewed.append(_delay(m, w_en, w_byte, c + edge, f"w_skew{c}"))

        # -- ws control: weight banks, output queue ---------------------------------------------------
        # A bank is ``ready`` from its last weight beat until the tile's last activation is accepted; from the next
        # enabled cycle on it takes the next tile. No wait for the wavefront: the last activation (accepted at
        # enabled cycle t) is sampled by PE(k, c)'s multiplier in cycle t + k + c, and weight row k, at the earliest
        # beat k after the bank reopened (cycle t + 1 + k), is written there in cycle t + 2 + k + c (t + 1 + k + c
        # in a 1-row array; weight writes are skewed across the columns like the activations and advance on the
        # same ``en``). A write takes effect at the clock edge, so a write in the sampling cycle would still be
        # safe: the product uses the old weight.
        w_take = Signal()  # a weight byte row enters the array this cycle (ws: one tile row, os: one operand row)
        m.d.comb += w_take.eq(self.w.valid & self.w.ready)
        compute_bank = Const(0, 1)   # bank the next activation beat uses
        if has_ws:
            pairs = has_row_pairs(rows, self.precisions)
            m.submodules.banks = banks = WeightBanks(rows=rows, pair_hold=pair_hold(rows) if pairs else None)
            if pairs:
                m.d.comb += [banks.pairs.eq(self.w_pairs), banks.en.eq(en)]
            m.submodules.out_queue = queue = OutputQueue(
                shape=data.ArrayLayout(signed(self.acc_width), cols * lanes), groups=cols * lanes,
                group_strobes=True)
            compute_bank = banks.compute_bank
            load = Signal()
            m.d.comb += [load.eq(w_take & ~is_os), banks.load.eq(load),
                         banks.retire.eq(accept & ~is_os & self.a.payload.last)]
            # Weight write strobes, one bit per (bank, row), decoded once and skewed across the columns like the
            # weight bytes: each bit is a flip-flop driving one PE's bank enable directly (no decode, no handshake
            # logic in front of the enables). With rows >= 2 every column writes one enabled cycle later than the
            # weight beat's skew (``write_lead``), so even column 0's strobe is a register; the reload timing
            # allows it (the module docstring: the new tile's first activation reaches row k at least rows - 1
            # enabled cycles after row k's write). A 1-row array has no such slack and writes column 0 in the beat's
            # cycle. The strobe registers hold through stall cycles: a write repeated then writes the same byte
            # (the byte's register holds too), never earlier than its enabled cycle's activations need.
            write_lead = 1 if rows >= 2 else 0
            strobe = Signal(2 * rows, name="w_strobe")

            def strobes(load, load_bank, load_row, w_pairs):
                def row_hit(r):     # row pairs: an odd row is written with the even row below it (load_row even)
                    hit = load_row == r
                    return (hit | (w_pairs & (load_row == r - 1))) if pairs and r % 2 else hit
                return Cat(*[load & (load_bank == b) & row_hit(r) for b in range(2) for r in range(rows)])
            lead0 = write_lead + edge   # registers between a weight beat and column 0's strobes
            if edge and write_lead:
                # The input edge holds the write's compact state (load, bank, row, pairs), decoded after it: the
                # handshake logic then drives a few flip-flops beside it, not a strobe flip-flop at every PE row.
                state = Cat(load, banks.load_bank, banks.load_row, self.w_pairs)
                state = _delay(m, en_for("w_state_edge", "col0"), state, 1, "w_state_edge")
                row_bits = len(banks.load_row)
                m.d.comb += strobe.eq(strobes(state[0], state[1], state[2:2 + row_bits], state[2 + row_bits]))
                lead0 = write_lead
            else:
                m.d.comb += strobe.eq(strobes(load, banks.load_bank, banks.load_row, self.w_pairs))
            col_strobe = strobe
            for c in range(cols):
                wb = w_skewed[c]
                if c or write_lead or edge:  # one enable copy per column for its strobe and byte registers
                    col_en = en_for(f"w_write{c}", f"col{c}")
                    # One shared chain: column c's strobe is column c-1's, one enabled cycle later (column 0's
                    # trails the beat by the write lead and the input edge, as its weight byte does).
                    col_strobe = _delay(m, col_en, col_strobe, 1 if c else lead0, f"w_strobe_skew{c}")
                    wb = _delay(m, col_en, wb, write_lead, f"w_lead{c}")
                # Row pairs: odd rows take the high nibble (the w4a16 MAC reads the low one; the top bits are unused).
                wb_odd = Mux(self.w_pairs, Cat(wb[4:8], wb[4:8]), wb) if pairs else wb
                for r in range(rows):
                    pe = pes[r][c]
                    m.d.comb += [pe.wb_in.eq(wb_odd if r % 2 else wb),
                                 pe.load.eq(Cat(col_strobe[r], col_strobe[rows + r])),
                                 pe.psum_in.eq(0 if r == 0 else pes[r - 1][c].acc)]
            # Results: the bottom row, de-skewed so all columns of one beat line up with the corner's tag.
            deskewed = []
            for c in range(cols):
                col = Signal(data.ArrayLayout(signed(self.acc_width), lanes), name=f"bottom{c}")
                m.d.comb += col.eq(pes[rows - 1][c].acc)
                deskew_en = en_for(f"deskew{c}", f"col{c}") if c < cols - 1 or edge else en
                deskewed.append(_delay(m, deskew_en, col, cols - 1 - c + edge, f"deskew{c}"))
            m.d.comb += [result_tag.eq(_delay(m, en_for("result_tag", "ctl") if edge else en, corner.acc_tag, edge,
                                              "result_tag")),
                         queue.push.eq(en & result_tag.valid & ~is_os), queue.last.eq(result_tag.last),
                         queue.data.eq(Cat(*[d.as_value() for d in deskewed])), queue.o.ready.eq(self.c.ready)]
            # Each lane's slice of the queue (one acc_width word per column and lane) moves its pointers with its own
            # enable copy, its own copy of the result tag's valid (with edges) and its column's copy of the occupancy
            # (the pop): no net from one flip-flop to every slice's pointer and write enables, and each write enable
            # drives one word's flip-flops.
            for c in range(cols):
                for lane in range(lanes):
                    g = c * lanes + lane
                    q_en = en_for(f"queue{g}", f"col{c}")
                    valid = corner.acc_tag.valid
                    if edge:
                        valid = _delay(m, q_en, valid, 1, f"result_valid{g}")
                    m.d.comb += [queue.push_groups[g].eq(q_en & valid & ~is_os),
                                 queue.pop_groups[g].eq(en_copies.occupied(f"col{c}") & self.c.ready)]

        # -- os control: one unfinished tile end in flight, shadow drain --------------------------------
        if has_os:
            m.submodules.os_drain = os_ctl = OsDrainControl(rows=rows)
            m.d.comb += [os_ctl.tile_end.eq(accept & is_os & self.a.payload.last), os_ctl.capture.eq(corner.capture),
                         os_ctl.ready.eq(is_os & self.c.ready)]
            for r in range(rows):
                for c in range(cols):
                    pe = pes[r][c]
                    m.d.comb += [pe.drain.eq(os_ctl.drain),
                                 pe.shadow_in.eq(0 if r == rows - 1 else pes[r + 1][c].shadow_out)]
            # Weight bytes enter the top of each column, skewed like the activations.
            for c in range(cols):
                m.d.comb += pes[0][c].w_in.eq(w_skewed[c])
                for r in range(1, rows):
                    m.d.comb += pes[r][c].w_in.eq(pes[r - 1][c].w_out)

        # -- stream handshakes ----------------------------------------------------------------------
        def a_ready_for(en_copy):
            """``a.ready`` computed with one copy of ``en`` (the array's port and each row's input gate)."""
            ws = en_copy & banks.compute_ready if has_ws else None
            ready = Mux(is_os, os_ready, ws) if (has_ws and has_os) else (ws if has_ws else os_ready)
            return ready & ~illegal

        if has_ws:
            # ``en``: the weight writes and their skew registers must advance with the activations they trail.
            ws_w_ready = en & banks.load_free
            ws_c = (queue.o.valid, queue.o.payload.data, queue.o.payload.last)
        if has_os:
            # os: a and w are one operand pair; a tile's end waits for the previous drain.
            os_ready = self.a.valid & self.w.valid & (~self.a.payload.last | ~os_ctl.end_pending)
            os_c = (os_ctl.shadow_full, Cat(*[pes[0][c].shadow_out.as_value() for c in range(cols)]),
                    os_ctl.drain_row == rows - 1)
        if has_ws and has_os:
            w_ready = Mux(is_os, os_ready, ws_w_ready)
            c_valid, c_data, c_last = (Mux(is_os, o, w) for o, w in zip(os_c, ws_c))
        elif has_ws:
            w_ready, (c_valid, c_data, c_last) = ws_w_ready, ws_c
        else:
            w_ready, (c_valid, c_data, c_last) = os_ready, os_c
        m.d.comb += [self.a.ready.eq(a_ready_for(en)), self.w.ready.eq(w_ready & ~illegal),
                     self.c.valid.eq(c_valid), self.c.payload.data.eq(c_data), self.c.payload.last.eq(c_last)]

        # -- activations enter the left edge, skewed by row --------------------------------------------
        # Each row gates its input with its own copy of the handshake (its own enable copy), so no one
        # ``accept`` net drives the input multiplexers of every row. A bubble's activation is 0: its products are
        # 0, which os sums rely on (its weight bytes are not gated: zero times anything is zero).
        for r in range(rows):
            a_byte = Signal(self.act_width, name=f"a_in{r}")
            tag = Signal(TagLayout, name=f"tag_in{r}")
            row_accept = Signal(name=f"accept_row{r}")
            m.d.comb += [
                row_accept.eq(self.a.valid & a_ready_for(en_for(f"accept{r}", f"row{r}"))),
                tag.valid.eq(row_accept),
                tag.last.eq(row_accept & self.a.payload.last),
                tag.bank.eq(compute_bank),
                tag.mode.eq(self.mode),
            ]
            row_en = en_for(f"a_skew{r}", f"row{r}") if r or edge else en
            if edge:
                # The raw word and the tag in edge registers; the bubble's zero after them (module docstring).
                a_raw = _delay(m, row_en, self.a.payload.data[r], 1, f"a_edge{r}")
                tag = _delay(m, row_en, tag, 1, f"tag_edge{r}")
                m.d.comb += a_byte.eq(Mux(tag.valid, a_raw, 0))
            else:
                m.d.comb += a_byte.eq(Mux(row_accept, self.a.payload.data[r], 0))
            m.d.comb += [pes[r][0].a_in.eq(_delay(m, row_en, a_byte, r, f"a_skew{r}")),
                         pes[r][0].tag_in.eq(_delay(m, row_en, tag, r, f"tag_skew{r}"))]
            for c in range(1, cols):
                m.d.comb += [pes[r][c].a_in.eq(pes[r][c - 1].a_out), pes[r][c].tag_in.eq(pes[r][c - 1].tag_out)]
        for r in range(rows):
            for c in range(cols):
                m.d.comb += [pes[r][c].en.eq(pe_en[r][c]), pes[r][c].os.eq(is_os)]
        return m
