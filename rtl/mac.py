"""Precision-scalable multiply-accumulate: on FPGAs every mode in ONE registered 18x18 multiplier block per MAC.

Operands are one activation word ``a`` (8 bits, or 16 when a 16-bit-activation mode is generated) and one weight
byte ``w``; the run-time ``mode`` (:data:`spec.precision.MODE_CODES`) says how they are read and how many products
one MAC makes per cycle. Lane ``2*i + j`` is the product of activation ``i`` and weight ``j``:

======  ==========================================  =====  ===========================================
mode    operands                                    lanes  lane products
======  ==========================================  =====  ===========================================
int8    a[7:0] one int8, w one int8                 1      L0 = a*w
w4a8    a[7:0] one int8, w = int4 lo | int4 hi<<4   2      L0 = a*w_lo, L1 = a*w_hi (two output columns)
int4    a[7:0] = int4 lo | hi<<4, w = lo | hi<<4    4      L0 = a_lo*w_lo, L1 = a_lo*w_hi,
                                                           L2 = a_hi*w_lo, L3 = a_hi*w_hi (2x2 outputs)
w8a16   a[15:0] one int16, w one int8               1      L0 = a*w
w4a16   a[15:0] one int16, w[3:0] one int4          1      L0 = a*w_lo (w[7:4] ignored)
======  ==========================================  =====  ===========================================

Two arithmetics, the same products in the same cycles (:data:`ARITHMETICS`, chosen by the elaboration platform)
-----------------------------------------------------------------------------------------------------------------
* ``block`` (a multiplier-block family, e.g. ``rtl.dsp.TechTarget("ecp5")``): every mode in ONE 18x18 multiply,
  the ECP5's MULT18X18D with its registers (below). Wide operands cost nothing there: the block is one block.
* ``split`` (generic synthesis, Verilator/Icarus models): in gates a multiplier costs per operand-bit pair, so an
  18x18 multiply that packs four 4x4 products would cost 4.8 int8 multipliers. Instead, at most: a main
  ``a x w`` multiplier as wide as the activation (8x8, or 16x8 with a 16-bit mode), a side ``a x w_hi`` 8x4 one
  (w4a8's second lane, int4's ``a_lo*w_hi``) and 4x4 ones for int4's ``a_hi`` products (``a_hi*w_lo`` rides
  in the 16-bit main multiplier 8 bits above ``a_lo*w_lo`` when it is there anyway: ``P = p0 + p1 * 2^8`` with
  p0, p1 in [-56, 64], so p0 = P[7:0] signed and p1 = P[15:8] signed + P[7], the borrow of p0's sign).
  Measured with Yosys ``stat -tech cmos`` (``python -m npuforge.sim.bench.ppa``), the MAC with the three 8-bit
  modes costs 2.66x the int8-only MAC's transistors and with all five 3.17x (``block`` generic: 4.06x / 5.02x);
  four int32 accumulators alone are 1.3x the int8-only MAC, which bounds what any 4-lane MAC can reach.
  The int8-only unit is one 8x8 multiply in both.
The Amaranth simulator checks both exhaustively (tests/rtl/test_mac.py); the emitted Verilog is ``split``.

How the products share one multiplier ``P = A * B`` in ``block`` (A, B signed, <= 18 bits; the ECP5 MULT18X18D)
-----------------------------------------------------------------------------------------------------------
* int8, w8a16, w4a16: ``A = a``, ``B = w``; the product is the low 16/24/20 bits of P.
* w4a8: ``A = a``, ``B = w_lo + w_hi * 2^11`` (the two int4 weights of the byte beside the shared activation), so
  ``P = a*w_lo + a*w_hi * 2^11``. Each product lies in [-1016, 1024]: adding 1016 to both 11-bit digits
  (``Y = 1016 * (1 + 2^11)``) makes them non-negative and below 2^11, so ``P + Y`` has no borrow between them
  and lane = digit - 1016: the sign correction of the packed-weight trick, one adder for both lanes.
* int4: ``A = a_lo + a_hi * 2^7``, ``B = w_lo + w_hi * 2^14``, so the four products sit at bits 0 (L0), 7 (L2),
  14 (L1) and 21 (L3) of P. Each lies in [-56, 64] (121 values, 7 bits): ``Y = 56 * (1 + 2^7 + 2^14 + 2^21)``
  makes every 7-bit digit of ``P + Y`` equal product + 56. ``B`` needs 19 signed bits only for w_hi = -8 with a
  negative w_lo; the block gets ``B mod 2^18`` (which reads as ``B + 2^18``) and ``A * 2^18`` is subtracted back
  through ``Y`` (its bits 18..27, computed beside the operands and carried with them). So all four int4
  products come out of the one block; nothing is left for LUTs but the adder.
* Two int16 products would need two 20- or 24-bit fields (>= 40 bits), more than the block's 36: the
  16-bit-activation modes make one product per cycle (:mod:`spec.precision` explains the choice).

Every lane product fits ``signed(product_width)``: 16 bits (int8 extreme (-128)*(-128) = 2^14), 24 when a
16-bit-activation mode is generated ((-32768)*(-128) = 2^22). Lanes a mode does not use are 0, so unused
accumulators/partial sums keep their value. A code that is not a generated mode computes as int8 (no mode gating
in front of the block); the array never feeds operands under such a code (its error flag blocks the streams).

With ``precisions == ("int8",)`` the block is a plain 8x8 multiply (one lane), so sweeps can measure what
scalability costs.

Pipeline (``pipeline`` = 1..5 register stages between operands and accumulator, as ``ArrayConfig.mac_pipeline``):
stage 1 is the multiplier's input register (in a PE it takes its operands in the same cycle as the systolic
pass-through register), stage 2 the multiplier's output register, stage 3 registers the lane products in fabric,
stage 4 adds a fabric register (stage 0) in front of the multiplier's input register (so on an FPGA every block
input comes from a nearby flip-flop and every block output goes to one: the fmax configuration), stage 5 splits
what lies between the block's output and the lane registers: ``block`` registers ``P + Y`` (the bias adder) and the
lanes are extracted after it (the 4x4 scalable array's critical path at 4 was block out -> bias adder -> lane
subtract); ``split`` registers the lanes twice.
Every register advances only when ``en`` is high. The ``block`` multiplier is :class:`rtl.dsp.Multiplier`: a
MULT18X18D with its input and output registers inside for the ``ecp5`` target, a generic multiply otherwise, with
identical cycle behaviour. Where the packing logic sits in ``block``:

* ``ecp5`` at depth 1..3: pack the PE's operands, then the block's input register (stage 1) holds ``A``/``B``
  (int4's Y bits 27..18 and the mode in fabric registers beside it);
* depth 4..5 (``ecp5`` and generic alike): pack, then stage 0 holds the packed operands ``A``, ``B``, int4's wrap
  flag and the mode in fabric; stage 1 (the multiplier's input register) takes ``A``/``B`` from those flip-flops,
  and int4's Y bits are computed from stage 0's ``A`` into a fabric register beside it. The packing adders lie
  between the PE's input and stage 0, not between a register and the block's pins (a raw-operand stage 0 was
  merged by Yosys with the PE's pass-through register, which also feeds the next PE, and the 4x4 array's critical
  path at depth 5 ran from it through the int4 packing adder into the block's A input); the Y subtract is not
  chained behind the packing adder (with both in stage 0 that chain became the 4x4 array's critical path);
* generic at depth 1..3: register the raw operands at stage 1, then pack in front of the multiply (the PE's
  pass-through register has the same input, so synthesis merges the two: fewer flip-flops where no block holds
  them).

``split`` registers its raw operands at stage 1 (and stage 0 at depth 4..5) and its (up to four) raw products at
stage 2.
"""

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from npuforge.rtl.dsp import DSP_FAMILIES, Multiplier, dsp_family
from npuforge.spec.precision import MODE_BITS, MODE_CODES, PRECISION_MODES, check_precisions

__all__ = ["ARITHMETICS", "MODE_LANES", "PRODUCT_WIDTH", "PIPELINE_MAX", "check_mac_params", "lanes_for", "act_width_for", "product_width_for",
           "ProductUnit", "MAC"]

#: Products per MAC per cycle in each mode (:attr:`spec.precision.PrecisionMode.products`).
MODE_LANES = {name: m.products for name, m in PRECISION_MODES.items()}
#: Bits of one lane product (signed) without 16-bit-activation modes (see :func:`product_width_for`).
PRODUCT_WIDTH = 16

_W4A8_SHIFT, _W4A8_BIAS = 11, 1016               # w4a8 digits: 11 bits, products in [-1016, 1024]
_INT4_SHIFT, _INT4_BIAS = 7, 56                  # int4 digits: 7 bits, products in [-56, 64]
_INT4_Y = sum(_INT4_BIAS << (_INT4_SHIFT * i) for i in range(4))
_W4A8_Y = _W4A8_BIAS + (_W4A8_BIAS << _W4A8_SHIFT)
_WRAP_BIT = 18                                   # the block's B operand is 18 bits signed
_SPLIT_DIGIT = 8                                 # split int4 packing: 8-bit digits, products in [-56, 64]

#: Arithmetic of the scalable product unit: ``block`` (every product in one 18x18 multiplier block, for FPGAs)
#: or ``split`` (the fewest gates, for generic synthesis and simulation); see the module docstring.
ARITHMETICS = ("block", "split")


#: Largest MAC pipeline depth (register stages between operands and accumulator).
PIPELINE_MAX = 5


def _check_pipeline(pipeline) -> int:
    if not isinstance(pipeline, int) or not 1 <= pipeline <= PIPELINE_MAX:
        raise ValueError(f"pipeline must be an integer in [1, {PIPELINE_MAX}], got {pipeline!r}")
    return pipeline


def check_mac_params(*, precisions, pipeline, acc_width) -> None:
    """Raise ``ValueError`` naming the bad value unless the MAC parameters are in range."""
    check_precisions(precisions)
    _check_pipeline(pipeline)
    if not isinstance(acc_width, int) or not 16 <= acc_width <= 64:
        raise ValueError(f"acc_width must be an integer in [16, 64], got {acc_width!r}")
    need = product_width_for(precisions)
    if acc_width < need:
        raise ValueError(f"acc_width must be >= {need} (one product) for precisions {tuple(precisions)}, "
                         f"got {acc_width!r}")


def lanes_for(precisions) -> int:
    """Product lanes (accumulators per MAC) needed for ``precisions``: 1, 2 or 4."""
    return max(MODE_LANES[p] for p in check_precisions(precisions))


def act_width_for(precisions) -> int:
    """Bits of one activation operand word: 16 with a 16-bit-activation mode, else 8."""
    return 16 if any(PRECISION_MODES[p].wide_act for p in check_precisions(precisions)) else 8


def product_width_for(precisions) -> int:
    """Bits of one lane product (signed): 24 with a 16-bit-activation mode, else 16."""
    return 24 if act_width_for(precisions) == 16 else PRODUCT_WIDTH


class ProductUnit(wiring.Component):
    """Lane products of one activation word and one weight byte in one multiplier block (stages 1..3).

    Parameters
    ----------
    precisions : tuple of str
        Supported modes; ``("int8",)`` gives the plain int8 multiplier.
    pipeline : int
        MAC pipeline depth 1..5; this unit holds all of it (latency ``pipeline`` enabled cycles).
    arith : str or None
        ``block`` or ``split`` (:data:`ARITHMETICS`); None picks by the elaboration platform
        (:meth:`arith_for`). Both give the same products in the same cycles.
    en_copies : int
        1, or 2: ``en`` is two copies of one enable (equal in every cycle), the first for the stages up to the
        multiplier's output register, the second for the stages after it (a distributed enable: neither copy
        drives every register).

    Members
    -------
    en : In(en_copies)
        Advance the pipeline registers (copies of one enable).
    mode : In(MODE_BITS)
        Mode code (:data:`MODE_CODES`), travels down the pipeline with its operands.
    a : In(act_width)
        Activation word (int8 / two packed int4 in bits 7..0; int16 in 16-bit modes).
    w : In(8)
        Weight byte (int8, or two packed int4 nibbles).
    products : Out(ArrayLayout(signed(product_width), lanes))
        Lane products, ``pipeline`` enabled cycles after ``a``/``w``.
    """

    def __init__(self, *, precisions=("int8", "w4a8", "int4"), pipeline=2, arith=None, en_copies=1):
        self.precisions = check_precisions(precisions)
        if en_copies not in (1, 2):
            raise ValueError(f"en_copies must be 1 or 2, got {en_copies!r}")
        self.en_copies = en_copies
        self.pipeline = _check_pipeline(pipeline)
        if arith not in (None, *ARITHMETICS):
            raise ValueError(f"arith must be one of {', '.join(ARITHMETICS)} or None, got {arith!r}")
        self.arith = arith
        self.scalable = self.precisions != ("int8",)
        self.lanes = lanes_for(self.precisions)
        self.act_width = act_width_for(self.precisions)
        self.product_width = product_width_for(self.precisions)
        self.latency = self.pipeline
        has = set(self.precisions)
        # Operand widths of the block: only as wide as the generated modes need (generic synthesis pays per bit).
        self.a_bits = 16 if self.act_width == 16 else (12 if "int4" in has else 8)
        self.b_bits = 18 if "int4" in has else (16 if "w4a8" in has else 8)
        super().__init__({
            "en": In(en_copies),
            "mode": In(MODE_BITS),
            "a": In(self.act_width),
            "w": In(8),
            "products": Out(data.ArrayLayout(signed(self.product_width), self.lanes)),
        })

    def _stage(self, m, value, name, back=False):
        """``value`` registered on ``en`` (``back``: on the copy for the stages after the multiplier's output)."""
        reg = Signal.like(value, name=name)
        with m.If(self.en[-1] if back else self.en[0]):
            m.d.sync += reg.eq(value)
        return reg

    def _pack(self, m, a, w, mode):
        """Block operands ``(A, B)`` and int4's wrap flag (``B`` wrapped modulo 2^18, see :meth:`_y_hi`) for
        activation ``a``, weight ``w``, ``mode``."""
        has = set(self.precisions)
        code = {name: MODE_CODES[name] for name in self.precisions}
        a8 = a[0:8]
        w_lo, w_hi = w[0:4].as_signed(), w[4:8].as_signed()
        op_a, op_b = Signal(signed(self.a_bits)), Signal(signed(self.b_bits))
        wrap = Signal()   # int4: B wrapped (B < -2^17, i.e. w_hi = -8 and w_lo < 0): Y must take A * 2^18 back
        # Codes that are not a generated mode read the operands as int8: no mode gating on the block's inputs (the
        # array takes no operands while its mode is illegal, so only zero bubbles meet such a code).
        with m.Switch(mode):
            if "w4a8" in has:
                with m.Case(code["w4a8"]):
                    m.d.comb += [op_a.eq(a8.as_signed()), op_b.eq(w_lo + (w_hi << _W4A8_SHIFT))]
            if "int4" in has:
                with m.Case(code["int4"]):
                    a_int4 = a8[0:4].as_signed() + (a8[4:8].as_signed() << _INT4_SHIFT)
                    b_int4 = Signal(signed(19))
                    m.d.comb += [op_a.eq(a_int4), b_int4.eq(w_lo + (w_hi << (2 * _INT4_SHIFT))),
                                 op_b.eq(b_int4[0:18])]
                    # B < -2^17 wraps to B + 2^18 in the 18-bit operand. Only w_hi = -8 with w_lo < 0 reaches it:
                    # decoded from the weight bits, so no carry chain lies in front of the flag.
                    m.d.comb += wrap.eq((w[4:8] == 0b1000) & w[3])
            if "w8a16" in has:
                with m.Case(code["w8a16"]):
                    m.d.comb += [op_a.eq(a.as_signed()), op_b.eq(w.as_signed())]
            if "w4a16" in has:
                with m.Case(code["w4a16"]):
                    m.d.comb += [op_a.eq(a.as_signed()), op_b.eq(w_lo)]
            with m.Default():
                m.d.comb += [op_a.eq(a8.as_signed()), op_b.eq(w.as_signed())]
        return op_a, op_b, wrap

    def _y_hi(self, m, op_a, wrap):
        """int4: bits 27..18 of the sign-correction addend Y for block operand ``op_a``: a wrapped ``B`` makes P gain
        ``A * 2^18``, which Y takes back (carried with the operands to the bias adder)."""
        y_hi = Signal(28 - _WRAP_BIT)
        m.d.comb += y_hi.eq((_INT4_Y >> _WRAP_BIT) - Mux(wrap, op_a[0:28 - _WRAP_BIT], 0))
        return y_hi

    def arith_for(self, platform) -> str:
        """The arithmetic elaborated for ``platform``: ``arith`` if given, else ``block`` on a multiplier-block family
        (and for the int8-only unit, where both are one 8x8 multiply), ``split`` otherwise."""
        if self.arith is not None:
            return self.arith
        return "block" if not self.scalable or dsp_family(platform) in DSP_FAMILIES else "split"

    def elaborate(self, platform):
        if self.arith_for(platform) == "split":
            return self._elaborate_split()
        m = Module()
        has = set(self.precisions)
        code = {name: MODE_CODES[name] for name in self.precisions}
        # Pack first wherever a register sits between the operands and the multiply's input register: on ecp5
        # (the block's own input register) and at depth >= 4 (the fabric stage-0 register holds the packed operands,
        # so the block's A/B come straight from flip-flops). Generic at depth < 4: register the raw operands (a PE's
        # pass-through register has the same input, so synthesis merges the two), then pack: same values, same
        # cycles, fewer flip-flops where no block holds them.
        pack_first = dsp_family(platform) in DSP_FAMILIES or self.pipeline >= 4
        mult = Multiplier(a_width=self.a_bits, b_width=self.b_bits, in_reg=pack_first, out_reg=self.pipeline >= 2)
        m.submodules.mult = mult
        m.d.comb += mult.en.eq(self.en[0])
        a, w, mode = self.a, self.w, self.mode
        y_carry = None
        if pack_first:
            op_a, op_b, wrap = self._pack(m, a, w, mode)
            if self.pipeline >= 4:
                # Stage 0 in fabric: the packed operands. The packing logic then lies between the PE's input and
                # these flip-flops, and nothing but a route lies between them and the block (the raw-operand register
                # it replaces was merged with the PE's pass-through register, which also feeds the next PE). int4's
                # Y bits are computed after it (one subtract, stage 0 -> 1), not behind the packing adder.
                op_a, op_b = self._stage(m, op_a, "op_a_s0"), self._stage(m, op_b, "op_b_s0")
                mode = self._stage(m, mode, "mode_s0")
                if "int4" in has:
                    wrap = self._stage(m, wrap, "wrap_s0")
            mode = self._stage(m, mode, "mode_s1")
            if "int4" in has:
                y_carry = self._stage(m, self._y_hi(m, op_a, wrap), "y_hi_s1")
        else:
            a1, w1 = self._stage(m, a, "a_s1"), self._stage(m, w, "w_s1")
            mode = self._stage(m, mode, "mode_s1")
            op_a, op_b, wrap = self._pack(m, a1, w1, mode)
            if "int4" in has:
                y_carry = self._y_hi(m, op_a, wrap)
        m.d.comb += [mult.a.eq(op_a), mult.b.eq(op_b)]
        if self.pipeline >= 2:
            mode = self._stage(m, mode, "mode_s2")
            if "int4" in has:
                y_carry = self._stage(m, y_carry, "y_hi_s2")
        p = Signal(signed(2 * 18))
        m.d.comb += p.eq(mult.p)

        lanes = [Signal(signed(self.product_width), name=f"lane{i}") for i in range(self.lanes)]
        packed = has & {"w4a8", "int4"}
        if packed:
            # One adder puts the mode's bias (and the int4 wrap correction) on P: its digits are the products.
            y = Signal(28)
            with m.Switch(mode):
                if "w4a8" in has:
                    with m.Case(code["w4a8"]):
                        m.d.comb += y.eq(_W4A8_Y)
                if "int4" in has:
                    with m.Case(code["int4"]):
                        m.d.comb += y.eq(Cat(Const(_INT4_Y & ((1 << _WRAP_BIT) - 1), _WRAP_BIT), y_carry))
            biased = Signal(28)
            m.d.comb += biased.eq(p[0:28] + y)
        def lane_cases(p, biased):
            """What each mode writes into which lane (lanes a mode does not write are 0; int8 is lane 0's default)."""
            cases = {}
            if "w4a8" in has:
                cases["w4a8"] = {j: biased[_W4A8_SHIFT * j:_W4A8_SHIFT * (j + 1)] - _W4A8_BIAS for j in range(2)}
            if "int4" in has:
                # Digit d at bit 7d: d = 0 a_lo*w_lo (L0), 1 a_hi*w_lo (L2), 2 a_lo*w_hi (L1), 3 a_hi*w_hi (L3).
                cases["int4"] = {lane: biased[_INT4_SHIFT * d:_INT4_SHIFT * (d + 1)] - _INT4_BIAS
                                 for d, lane in enumerate((0, 2, 1, 3))}
            if "w8a16" in has:
                cases["w8a16"] = {0: p[0:24].as_signed()}
            if "w4a16" in has:
                cases["w4a16"] = {0: p[0:20].as_signed()}
            return cases

        if self.pipeline >= 5:
            # Stage 5 (between the block's output and the lane registers): the biased sum and P's low bits, so the
            # bias adder and the lane subtract are in different register-to-register paths, and the mode as one
            # registered flag per lane and mode, decoded in front of the register (no decoder behind it and no net
            # from one mode register to every lane's multiplexer).
            flags = {(i, name): self._stage(m, mode == code[name], f"lane{i}_{name}_s2b", back=True)
                     for name, vals in lane_cases(p, biased if packed else None).items() for i in vals}
            p = self._stage(m, p[0:self.product_width], "p_s2b", back=True)
            if packed:
                biased = self._stage(m, biased, "biased_s2b", back=True)
            cases = lane_cases(p, biased if packed else None)
            for i, lane in enumerate(lanes):
                value = p[0:16].as_signed() if i == 0 else Const(0, 1)   # int8 (and codes of no generated mode)
                for name, vals in cases.items():
                    if i in vals:
                        value = Mux(flags[i, name], vals[i], value)
                m.d.comb += lane.eq(value)
        else:
            with m.Switch(mode):
                for name, vals in lane_cases(p, biased if packed else None).items():
                    with m.Case(code[name]):
                        m.d.comb += [lanes[i].eq(v) for i, v in vals.items()]
                with m.Default():  # int8 (and, see _pack, codes that are not a generated mode)
                    m.d.comb += lanes[0].eq(p[0:16].as_signed())
        for i, lane in enumerate(lanes):
            m.d.comb += self.products[i].eq(self._stage(m, lane, f"lane{i}_s3", back=True) if self.pipeline >= 3
                                            else lane)
        return m


    def _elaborate_split(self):
        """``split`` arithmetic: the fewest gates where no multiplier block exists (see the module docstring)."""
        m = Module()
        has = set(self.precisions)
        code = {name: MODE_CODES[name] for name in self.precisions}
        wide = self.act_width == 16
        a, w, mode = self.a, self.w, self.mode
        if self.pipeline >= 4:
            a, w, mode = self._stage(m, a, "a_s0"), self._stage(m, w, "w_s0"), self._stage(m, mode, "mode_s0")
        # Stage 1: the raw operands (in a PE the pass-through register has the same input: synthesis merges them).
        a, w, mode = self._stage(m, a, "a_s1"), self._stage(m, w, "w_s1"), self._stage(m, mode, "mode_s1")
        a8, a_lo, a_hi = a[0:8].as_signed(), a[0:4].as_signed(), a[4:8].as_signed()
        w_lo, w_hi = w[0:4].as_signed(), w[4:8].as_signed()
        has_side = bool(has & {"w4a8", "int4"})
        # int4 with a 16-bit main multiplier: a_hi*w_lo rides in it 8 bits above a_lo*w_lo (no extra multiplier).
        int4_in_main = wide and "int4" in has
        x_main, y_main = Signal(signed(16 if wide else 8)), Signal(signed(8))
        x_side = Signal(signed(8))
        a_int4 = a_lo + (a_hi << _SPLIT_DIGIT)
        with m.Switch(mode):
            if "w4a8" in has:
                with m.Case(code["w4a8"]):
                    m.d.comb += [x_main.eq(a8), y_main.eq(w_lo), x_side.eq(a8)]
            if "int4" in has:
                with m.Case(code["int4"]):
                    m.d.comb += [x_main.eq(a_int4 if int4_in_main else a_lo), y_main.eq(w_lo), x_side.eq(a_lo)]
            if "w8a16" in has:
                with m.Case(code["w8a16"]):
                    m.d.comb += [x_main.eq(a.as_signed()), y_main.eq(w.as_signed())]
            if "w4a16" in has:
                with m.Case(code["w4a16"]):
                    m.d.comb += [x_main.eq(a.as_signed()), y_main.eq(w_lo)]
            with m.Default():  # int8 (and codes that are not a generated mode, as in the block arithmetic)
                m.d.comb += [x_main.eq(a8), y_main.eq(w.as_signed())]
        p_main = Signal(signed(len(x_main) + 8))
        m.d.comb += p_main.eq(x_main * y_main)
        if has_side:
            p_side = Signal(signed(len(x_side) + 4))
            m.d.comb += p_side.eq(x_side * w_hi)
        if "int4" in has:
            p_hi_hi = Signal(signed(8))
            m.d.comb += p_hi_hi.eq(a_hi * w_hi)
        if "int4" in has and not int4_in_main:
            p_hi_lo = Signal(signed(8))
            m.d.comb += p_hi_lo.eq(a_hi * w_lo)
        if self.pipeline >= 2:  # stage 2: the products, as the block's output register
            mode = self._stage(m, mode, "mode_s2")
            p_main = self._stage(m, p_main, "p_main_s2")
            if has_side:
                p_side = self._stage(m, p_side, "p_side_s2")
            if "int4" in has and not int4_in_main:
                p_hi_lo = self._stage(m, p_hi_lo, "p_hi_lo_s2")
            if "int4" in has:
                p_hi_hi = self._stage(m, p_hi_hi, "p_hi_hi_s2")

        def digits(p):
            """The two int4 products of ``lo + hi * 2^8`` (each in [-56, 64]): hi borrows lo's sign."""
            return p[0:8].as_signed(), p[8:16].as_signed() + p[7]

        lanes = [Signal(signed(self.product_width), name=f"lane{i}") for i in range(self.lanes)]
        with m.Switch(mode):
            if "w4a8" in has:
                with m.Case(code["w4a8"]):
                    m.d.comb += [lanes[0].eq(p_main[0:12].as_signed()), lanes[1].eq(p_side[0:12].as_signed())]
            if "int4" in has:
                with m.Case(code["int4"]):
                    l1, l3 = p_side[0:8].as_signed(), p_hi_hi
                    l0, l2 = digits(p_main) if int4_in_main else (p_main[0:8].as_signed(), p_hi_lo)
                    m.d.comb += [lanes[0].eq(l0), lanes[1].eq(l1), lanes[2].eq(l2), lanes[3].eq(l3)]
            if "w8a16" in has:
                with m.Case(code["w8a16"]):
                    m.d.comb += lanes[0].eq(p_main[0:24].as_signed())
            if "w4a16" in has:
                with m.Case(code["w4a16"]):
                    m.d.comb += lanes[0].eq(p_main[0:20].as_signed())
            with m.Default():
                m.d.comb += lanes[0].eq(p_main[0:16].as_signed())
        if self.pipeline >= 5:  # stage 5: the same cycles as the block arithmetic's biased-sum register
            lanes = [self._stage(m, lane, f"lane{i}_s2b", back=True) for i, lane in enumerate(lanes)]
        for i, lane in enumerate(lanes):
            m.d.comb += self.products[i].eq(self._stage(m, lane, f"lane{i}_s3", back=True) if self.pipeline >= 3
                                            else lane)
        return m


class MAC(wiring.Component):
    """One precision-scalable MAC: :class:`ProductUnit` (operand registers included), ``lanes`` accumulators.

    Latency: a product enters the accumulator ``pipeline`` enabled cycles after ``a``/``w`` are presented
    and is visible on ``acc`` one cycle later.

    Parameters
    ----------
    precisions, pipeline, arith : see :class:`ProductUnit`.
    acc_width : int
        Accumulator width in bits (16..64); sums wrap modulo 2^acc_width (the config bounds K so they never do).

    Members
    -------
    en : In(1)
        Advance every register (global stall when low).
    mode : In(MODE_BITS)
        Mode code (:data:`MODE_CODES`) of the operands presented now.
    a : In(act_width)
        Activation word (8 bits, 16 with a 16-bit-activation mode).
    w : In(8)
        Weight byte.
    load : In(1)
        This operand pair starts a new sum: its products replace the accumulators instead of adding.
    acc : Out(ArrayLayout(signed(acc_width), lanes))
        Accumulators, lane ``2*i + j`` as in the module docstring.
    """

    def __init__(self, *, precisions=("int8", "w4a8", "int4"), pipeline=2, acc_width=32, arith=None):
        check_mac_params(precisions=precisions, pipeline=pipeline, acc_width=acc_width)
        self.acc_width = acc_width
        self.product_unit = ProductUnit(precisions=precisions, pipeline=pipeline, arith=arith)
        self.lanes = self.product_unit.lanes
        self.latency = pipeline  # enabled cycles from operands to accumulator input
        self.act_width = self.product_unit.act_width
        super().__init__({
            "en": In(1),
            "mode": In(MODE_BITS),
            "a": In(self.act_width),
            "w": In(8),
            "load": In(1),
            "acc": Out(data.ArrayLayout(signed(acc_width), self.lanes)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.product_unit = pu = self.product_unit
        m.d.comb += [pu.en.eq(self.en), pu.mode.eq(self.mode), pu.a.eq(self.a), pu.w.eq(self.w)]
        # The load flag rides beside its operands through the product pipeline.
        load = self.load
        for stage in range(pu.latency):
            nxt = Signal(name=f"load_s{stage + 1}")
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
