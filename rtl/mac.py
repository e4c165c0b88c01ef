"""Precision-scalable multiply-accumulate built from four 4-bit slices.

Operands are always one 8-bit activation byte ``a`` and one 8-bit weight byte ``w``; the run-time ``mode``
says how the bytes are read and how many products one MAC makes per cycle. Lane ``2*i + j`` is the product
of activation nibble/byte ``i`` and weight nibble/byte ``j``:

======  ==========================================  =====  ===========================================
mode    operands in the bytes                       lanes  lane products
======  ==========================================  =====  ===========================================
int8    a = one int8, w = one int8                  1      L0 = a*w
w4a8    a = one int8, w = int4 lo | int4 hi << 4    2      L0 = a*w_lo, L1 = a*w_hi (two output columns)
int4    a = int4 lo | int4 hi, w = int4 lo | hi     4      L0 = a_lo*w_lo, L1 = a_lo*w_hi,
                                                           L2 = a_hi*w_lo, L3 = a_hi*w_hi (2x2 outputs)
======  ==========================================  =====  ===========================================

The slices are four 5x5-bit signed multipliers ``s_xy = ext(a_x) * ext(w_y)`` (x, y in {lo, hi}). High
nibbles are always sign-extended; a low nibble is sign-extended when it is an int4 value of its own and
zero-extended when it is the low half of an int8. Then, with a = 16*a_hi + a_lo and w = 16*w_hi + w_lo:

* int8:  a*w    = (s_hh << 8) + ((s_hl + s_lh) << 4) + s_ll
* w4a8:  a*w_lo = (s_hl << 4) + s_ll,   a*w_hi = (s_hh << 4) + s_lh
* int4:  the four slices are the four products.

Every lane product fits ``signed(16)`` (the int8 extreme (-128)*(-128) = 2^14). Lanes a mode does not use
are 0, so unused accumulators/partial sums keep their value.

With ``precisions == ("int8",)`` a plain 8x8 signed multiplier is generated instead (one lane), so sweeps can
measure what scalability costs.

Pipeline (``pipeline`` = 1..3 register stages between operands and accumulator, counted as in
``ArrayConfig.mac_pipeline``): stage 1 is the operand register (the MAC's own, or a PE's systolic
pass-through register); stage 2 registers the four slice products (the plain MAC: the product); stage 3
registers the combined lane products. :class:`ProductUnit` holds stages 2 and 3, so its latency is
``pipeline - 1`` enabled cycles. Every register advances only when ``en`` is high (the array's global stall).

Mode codes on the ``mode`` port: :data:`MODE_CODES`.
"""

from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from npuforge.spec.precision import MODE_CODES, PRECISION_MODES, check_precisions

__all__ = ["MODE_LANES", "PRODUCT_WIDTH", "check_mac_params", "lanes_for", "ProductUnit", "MAC"]

#: Products per MAC per cycle in each mode (:attr:`spec.precision.PrecisionMode.products`).
MODE_LANES = {name: m.products for name, m in PRECISION_MODES.items()}
#: Bits of one lane product (signed).
PRODUCT_WIDTH = 16

_MODE_INT8, _MODE_W4A8, _MODE_INT4 = MODE_CODES["int8"], MODE_CODES["w4a8"], MODE_CODES["int4"]


def _check_precisions(precisions) -> tuple:
    return check_precisions(precisions)


def _check_pipeline(pipeline) -> int:
    if not isinstance(pipeline, int) or not 1 <= pipeline <= 3:
        raise ValueError(f"pipeline must be an integer in [1, 3], got {pipeline!r}")
    return pipeline


def check_mac_params(*, precisions, pipeline, acc_width) -> None:
    """Raise ``ValueError`` naming the bad value unless the MAC parameters are in range."""
    _check_precisions(precisions)
    _check_pipeline(pipeline)
    if not isinstance(acc_width, int) or not 16 <= acc_width <= 64:
        raise ValueError(f"acc_width must be an integer in [16, 64], got {acc_width!r}")


def lanes_for(precisions) -> int:
    """Product lanes (accumulators per MAC) needed for ``precisions``: 1, 2 or 4."""
    return max(MODE_LANES[p] for p in _check_precisions(precisions))


class ProductUnit(wiring.Component):
    """Lane products of one activation byte and one weight byte (pipeline stages 2 and 3).

    Parameters
    ----------
    precisions : tuple of str
        Supported modes; ``("int8",)`` gives the plain int8 multiplier.
    pipeline : int
        MAC pipeline depth 1..3; this unit adds ``pipeline - 1`` register stages.

    Members
    -------
    en : In(1)
        Advance the pipeline registers.
    mode : In(2)
        Mode code (:data:`MODE_CODES`), travels down the pipeline with its operands.
    a, w : In(8)
        Activation and weight bytes (two's complement int8, or two packed int4 nibbles).
    products : Out(ArrayLayout(signed(16), lanes))
        Lane products, ``pipeline - 1`` enabled cycles after ``a``/``w``.
    """

    def __init__(self, *, precisions=("int8", "w4a8", "int4"), pipeline=2):
        self.precisions = _check_precisions(precisions)
        self.pipeline = _check_pipeline(pipeline)
        self.scalable = self.precisions != ("int8",)
        self.lanes = lanes_for(self.precisions)
        self.latency = self.pipeline - 1
        super().__init__({
            "en": In(1),
            "mode": In(2),
            "a": In(8),
            "w": In(8),
            "products": Out(data.ArrayLayout(signed(PRODUCT_WIDTH), self.lanes)),
        })

    def _stage(self, m, value, enabled, name):
        """``value`` registered (on ``en``) when ``enabled``, else passed through."""
        if not enabled:
            return value
        reg = Signal.like(value, name=name)
        with m.If(self.en):
            m.d.sync += reg.eq(value)
        return reg

    def elaborate(self, platform):
        m = Module()
        stage2, stage3 = self.pipeline >= 2, self.pipeline >= 3
        if not self.scalable:
            product = Signal(signed(PRODUCT_WIDTH))
            m.d.comb += product.eq(self.a.as_signed() * self.w.as_signed())
            product = self._stage(m, product, stage2, "product_s2")
            product = self._stage(m, product, stage3, "product_s3")
            m.d.comb += self.products[0].eq(product)
            return m

        mode = self.mode
        # A low nibble is its own int4 value (sign-extend) or the low half of an int8 (zero-extend).
        a_lo_signed = mode == _MODE_INT4
        w_lo_signed = mode != _MODE_INT8
        a_lo, a_hi = Signal(signed(5)), Signal(signed(5))
        w_lo, w_hi = Signal(signed(5)), Signal(signed(5))
        m.d.comb += [
            a_lo.eq(Cat(self.a[0:4], self.a[3] & a_lo_signed)),
            a_hi.eq(Cat(self.a[4:8], self.a[7])),
            w_lo.eq(Cat(self.w[0:4], self.w[3] & w_lo_signed)),
            w_hi.eq(Cat(self.w[4:8], self.w[7])),
        ]
        slices = {}
        for x, ax in (("l", a_lo), ("h", a_hi)):
            for y, wy in (("l", w_lo), ("h", w_hi)):
                s = Signal(signed(10), name=f"slice_{x}{y}")
                m.d.comb += s.eq(ax * wy)
                slices[x + y] = self._stage(m, s, stage2, f"slice_{x}{y}_s2")
        mode2 = self._stage(m, mode, stage2, "mode_s2")
        s_ll, s_lh, s_hl, s_hh = slices["ll"], slices["lh"], slices["hl"], slices["hh"]

        lanes = [Signal(signed(PRODUCT_WIDTH), name=f"lane{i}") for i in range(self.lanes)]
        with m.Switch(mode2):
            with m.Case(_MODE_INT8):
                m.d.comb += lanes[0].eq((s_hh << 8) + ((s_hl + s_lh) << 4) + s_ll)
            if "w4a8" in self.precisions:
                with m.Case(_MODE_W4A8):
                    m.d.comb += [lanes[0].eq((s_hl << 4) + s_ll), lanes[1].eq((s_hh << 4) + s_lh)]
            if "int4" in self.precisions:
                with m.Case(_MODE_INT4):
                    m.d.comb += [lanes[0].eq(s_ll), lanes[1].eq(s_lh), lanes[2].eq(s_hl), lanes[3].eq(s_hh)]
            # Unsupported codes give 0 products; the array raises its error flag and accepts no data.
        for i, lane in enumerate(lanes):
            m.d.comb += self.products[i].eq(self._stage(m, lane, stage3, f"lane{i}_s3"))
        return m


class MAC(wiring.Component):
    """One precision-scalable MAC: operand registers, :class:`ProductUnit`, ``lanes`` accumulators.

    Latency: a product enters the accumulator ``pipeline`` enabled cycles after ``a``/``w`` are presented
    and is visible on ``acc`` one cycle later.

    Parameters
    ----------
    precisions, pipeline : see :class:`ProductUnit`.
    acc_width : int
        Accumulator width in bits (16..64); sums wrap modulo 2^acc_width (the config bounds K so they never do).

    Members
    -------
    en : In(1)
        Advance every register (global stall when low).
    mode : In(2)
        Mode code (:data:`MODE_CODES`) of the operands presented now.
    a, w : In(8)
        Activation and weight bytes.
    load : In(1)
        This operand pair starts a new sum: its products replace the accumulators instead of adding.
    acc : Out(ArrayLayout(signed(acc_width), lanes))
        Accumulators, lane ``2*i + j`` as in the module docstring.
    """

    def __init__(self, *, precisions=("int8", "w4a8", "int4"), pipeline=2, acc_width=32):
        check_mac_params(precisions=precisions, pipeline=pipeline, acc_width=acc_width)
        self.acc_width = acc_width
        self.product_unit = ProductUnit(precisions=precisions, pipeline=pipeline)
        self.lanes = self.product_unit.lanes
        self.latency = pipeline  # enabled cycles from operands to accumulator input
        super().__init__({
            "en": In(1),
            "mode": In(2),
            "a": In(8),
            "w": In(8),
            "load": In(1),
            "acc": Out(data.ArrayLayout(signed(acc_width), self.lanes)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.product_unit = pu = self.product_unit
        a_reg, w_reg, mode_reg, load_reg = Signal(8), Signal(8), Signal(2), Signal()
        with m.If(self.en):
            m.d.sync += [a_reg.eq(self.a), w_reg.eq(self.w), mode_reg.eq(self.mode), load_reg.eq(self.load)]
        m.d.comb += [pu.en.eq(self.en), pu.mode.eq(mode_reg), pu.a.eq(a_reg), pu.w.eq(w_reg)]
        # The load flag rides beside its operands through the product pipeline.
        load = load_reg
        for stage in range(pu.latency):
            nxt = Signal(name=f"load_s{stage + 2}")
            with m.If(self.en):
                m.d.sync += nxt.eq(load)
            load = nxt
        acc = [Signal(signed(self.acc_width), name=f"acc{i}") for i in range(self.lanes)]
        with m.If(self.en):
            for i in range(self.lanes):
                m.d.sync += acc[i].eq(Mux(load, 0, acc[i]) + pu.products[i])
        for i in range(self.lanes):
            m.d.comb += self.acc[i].eq(acc[i])
        return m
