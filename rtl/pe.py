"""One processing element of the systolic array: a precision-scalable MAC with its dataflow registers.

Every PE holds an activation register ``a`` (8 bits, 16 with a 16-bit-activation mode; passed right, to the next
column) with a tag (valid, last, weight bank), the :class:`~rtl.mac.ProductUnit` (one multiplier block), and
``lanes`` accumulator registers of ``acc_width`` bits (lane ``2*i + j`` as in :mod:`rtl.mac`). The product unit
takes the same operands as the pass-through registers in the same cycle (its stage 1 is the multiplier block's own
input register), so the block's registers add no latency. What the accumulators mean depends on the dataflow:

* **ws** (weight-stationary): two weight banks (double buffer). Bank ``b`` takes ``wb_in`` (the weight byte of
  this PE's column, broadcast down the column) when ``load[b]`` is high, i.e. when the array writes this PE's
  row; the activation's tag says which bank its weight is in. The accumulators are partial sums passed down the
  column: ``acc <= psum_in + products``. The multiplier's input register samples the bank (selected by the
  incoming activation's tag) in the cycle the activation enters the PE; a bank write takes effect at the clock
  edge, so it may share that cycle or any later one (the product uses the old weight).
* **os** (output-stationary): the weight byte flows down the column through a register like the activation
  flows right; ``acc <= acc + products``. When the tile's last operand pair arrives, ``acc + products`` is
  captured into the ``shadow`` registers and ``acc`` restarts at 0, so the next tile accumulates while the
  shadows drain up the column (``drain``, ``shadow_in`` from the PE below).

All compute registers advance only when ``en`` is high (global stall); loading and draining have their own
strobes, which the array only raises when they cannot disturb data in flight. ``en`` comes as
:attr:`PE.en_copies` copies of one enable (equal in every cycle), each driving one group of registers: the
pass-through and tag registers, the product unit's stages up to the multiplier's output, the stages after it, and
each lane's accumulator (a distributed enable: no one flip-flop drives all of a PE's ~400 registers).
"""

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from npuforge.rtl.mac import ProductUnit, check_mac_params
from npuforge.spec.precision import MODE_BITS

__all__ = ["PE", "TagLayout"]

#: Tag travelling with every activation word: a real operand (not a bubble), the tile's last one, weight bank, and the
#: mode code it is multiplied in. The mode rides with its operands (one register per PE, fed by the neighbour), not
#: as one broadcast: no array-wide net, and synthesis cannot merge it into one high-fanout flip-flop.
TagLayout = data.StructLayout({"valid": 1, "last": 1, "bank": 1, "mode": MODE_BITS})


class PE(wiring.Component):
    """Processing element.

    Parameters
    ----------
    dataflows : tuple of str
        ``("ws",)``, ``("os",)`` or ``("ws", "os")`` (run-time select on ``os``).
    precisions, pipeline : see :class:`rtl.mac.ProductUnit`.
    acc_width : int
        Accumulator / partial-sum width in bits.

    Members
    -------
    en : In(en_copies)          advance the compute registers (copies of one enable, see the module docstring).
    os : In(1)                  1 = output-stationary (only with both dataflows).
    a_in, a_out : act_width     activation from the left / to the right (registered), 8 or 16 bits.
    tag_in, tag_out : TagLayout tag of that activation.
    acc_tag : Out(TagLayout)    tag of the operands whose products are in ``acc`` now.
    acc : Out(lanes x signed(acc_width))  accumulators (ws: partial sums to the PE below).
    ws only: psum_in (partial sums from above), wb_in (8 bits, weight byte of this column), load (2 bits:
             write bank b; the array may hold it through stall cycles: it rewrites the same byte).
    os only: w_in/w_out (weight byte from above / below, registered), shadow_in/shadow_out (drain chain),
             drain (shift the shadows), capture (this PE captured a finished tile now).
    """

    def __init__(self, *, dataflows=("ws",), precisions=("int8", "w4a8", "int4"), pipeline=2, acc_width=32):
        check_mac_params(precisions=precisions, pipeline=pipeline, acc_width=acc_width)
        self.dataflows = tuple(dataflows)
        if self.dataflows not in (("ws",), ("os",), ("ws", "os")):
            raise ValueError(f"dataflows must be ('ws',), ('os',) or ('ws', 'os'), got {self.dataflows!r}")
        self.has_ws, self.has_os = "ws" in self.dataflows, "os" in self.dataflows
        self.product_unit = ProductUnit(precisions=precisions, pipeline=pipeline, en_copies=2)
        self.lanes = self.product_unit.lanes
        self.en_copies = 3 + self.lanes     # pass-through/tags, product unit front and back, one per lane
        self.act_width = self.product_unit.act_width
        self.acc_width = acc_width
        acc_layout = data.ArrayLayout(signed(acc_width), self.lanes)
        sig = {
            "en": In(self.en_copies),
            "os": In(1),
            "a_in": In(self.act_width),
            "a_out": Out(self.act_width),
            "tag_in": In(TagLayout),
            "tag_out": Out(TagLayout),
            "acc_tag": Out(TagLayout),
            "acc": Out(acc_layout),
        }
        if self.has_ws:
            sig.update(psum_in=In(acc_layout), wb_in=In(8), load=In(2))
        if self.has_os:
            sig.update(w_in=In(8), w_out=Out(8), shadow_in=In(acc_layout), shadow_out=Out(acc_layout),
                       drain=In(1), capture=Out(1))
        super().__init__(sig)

    def elaborate(self, platform):
        m = Module()
        en = self.en[0]         # pass-through, tag and (os) weight registers; en[1:3] product unit, en[3 + i] lane i
        m.submodules.product_unit = pu = self.product_unit
        if self.has_ws and self.has_os:
            is_os = self.os
        else:
            is_os = int(self.has_os)

        # Stage 1: operand registers (the systolic pass-through registers; the multiplier keeps its own copy).
        a_reg = Signal(self.act_width)
        tag_reg = Signal(TagLayout)
        with m.If(en):
            m.d.sync += [a_reg.eq(self.a_in), tag_reg.eq(self.tag_in)]
        m.d.comb += [self.a_out.eq(a_reg), self.tag_out.eq(tag_reg)]

        weight = Signal(8)
        if self.has_ws:
            banks = [Signal(8, name=f"weight_bank{b}") for b in range(2)]
            for b in range(2):
                with m.If(self.load[b]):
                    m.d.sync += banks[b].eq(self.wb_in)
            # The incoming activation's bank: the multiplier's input register takes both in the same cycle.
            ws_weight = Mux(self.tag_in.bank, banks[1], banks[0])
        if self.has_os:
            w_reg = Signal(8)
            with m.If(en):
                m.d.sync += w_reg.eq(self.w_in)
            m.d.comb += self.w_out.eq(w_reg)
        if self.has_ws and self.has_os:
            m.d.comb += weight.eq(Mux(is_os, self.w_in, ws_weight))
        elif self.has_ws:
            m.d.comb += weight.eq(ws_weight)
        else:
            m.d.comb += weight.eq(self.w_in)
        m.d.comb += [pu.en.eq(self.en[1:3]), pu.mode.eq(self.tag_in.mode), pu.a.eq(self.a_in), pu.w.eq(weight)]

        # The tag follows its operands through the product pipeline (stage 1 is ``tag_reg``).
        tag = tag_reg
        for stage in range(pu.latency - 1):
            nxt = Signal(TagLayout, name=f"tag_s{stage + 2}")
            with m.If(en):
                m.d.sync += nxt.eq(tag)
            tag = nxt

        acc = [Signal(signed(self.acc_width), name=f"acc{i}") for i in range(self.lanes)]
        acc_tag = Signal(TagLayout)
        with m.If(en):
            m.d.sync += acc_tag.eq(tag)
        m.d.comb += self.acc_tag.eq(acc_tag)
        for i in range(self.lanes):
            m.d.comb += self.acc[i].eq(acc[i])

        finish = Signal()  # os: this product completes the tile's sum
        if self.has_os:
            m.d.comb += [finish.eq(is_os & tag.valid & tag.last), self.capture.eq(en & finish)]
            shadow = [Signal(signed(self.acc_width), name=f"shadow{i}") for i in range(self.lanes)]
            for i in range(self.lanes):
                m.d.comb += self.shadow_out[i].eq(shadow[i])
                with m.If(self.drain):
                    m.d.sync += shadow[i].eq(self.shadow_in[i])
                # Capture wins over drain; the array never asks for both at once.
                with m.If(self.capture):
                    m.d.sync += shadow[i].eq(acc[i] + pu.products[i])
        for i in range(self.lanes):
            with m.If(self.en[3 + i]):
                if self.has_ws and self.has_os:
                    nxt_acc = Mux(is_os, Mux(finish, 0, acc[i] + pu.products[i]),
                                  self.psum_in[i] + pu.products[i])
                elif self.has_ws:
                    nxt_acc = self.psum_in[i] + pu.products[i]
                else:
                    nxt_acc = Mux(finish, 0, acc[i] + pu.products[i])
                m.d.sync += acc[i].eq(nxt_acc)
        return m
