"""Technology mapping of the PE multiplier: one registered 18x18 multiplier block.

:class:`Multiplier` is ``p = a * b`` (two's complement) with an input register stage and an optional output
register stage, both advancing on ``en``. Elaborated for the ``ecp5`` family it instantiates one Lattice
``MULT18X18D`` with ``REG_INPUTA/B_CLK`` and (``out_reg``) ``REG_OUTPUT_CLK`` on, so the registers sit inside the
block (clk->P 0.735 ns at speed 6 instead of 3.93 ns combinational); for any other platform (simulation, generic
synthesis, iCE40) it is a plain Amaranth multiply between the same registers. Both give the same values in the
same cycles, so the simulator checks the arithmetic that the FPGA runs.

The family comes from the elaboration platform: ``getattr(platform, "dsp_family", None)``. :class:`TechTarget`
is a minimal platform that only says so (``rtlil.convert(top, platform=TechTarget("ecp5"))``); real Amaranth
platforms can carry the same attribute.
"""

from amaranth import ClockSignal, Const, Instance, Module, ResetSignal, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Multiplier", "TechTarget", "DSP_FAMILIES", "MULT18_WIDTH", "dsp_family", "replica_flop"]

#: Families with a registered multiplier block mapping; anything else gets the generic multiply.
DSP_FAMILIES = ("ecp5",)
#: Operand width of one ECP5 MULT18X18D (signed).
MULT18_WIDTH = 18


def dsp_family(platform) -> str | None:
    """The multiplier-block family the elaboration platform asks for (None: generic multiply)."""
    return getattr(platform, "dsp_family", None)


class TechTarget:
    """Elaboration platform that selects the multiplier mapping (``dsp_family``) and nothing else."""

    def __init__(self, dsp_family: str | None = None):
        if dsp_family is not None and dsp_family not in DSP_FAMILIES:
            raise ValueError(f"dsp_family must be one of {', '.join(DSP_FAMILIES)} or None, got {dsp_family!r}")
        self.dsp_family = dsp_family


class Multiplier(wiring.Component):
    """``p = a * b``, signed, with registered inputs and an optional registered output.

    Parameters
    ----------
    a_width, b_width : int
        Operand widths in bits (signed), each <= 18 (one MULT18X18D).
    in_reg : bool
        Register the operands (stage 1). The ``ecp5`` mapping always does (it is what the block is for); a caller
        that registers the operands itself in fabric passes False for the generic mapping only.
    out_reg : bool
        Register the product (one more enabled cycle of latency) or not.

    Members
    -------
    en : In(1)
        Advance the registers (the block's CE0).
    a, b : In(signed(a_width)), In(signed(b_width))
        Operands, taken into the input registers on an enabled cycle.
    p : Out(signed(a_width + b_width))
        Product of the operands taken ``latency`` enabled cycles ago (``latency - 1`` after the input register).
    """

    def __init__(self, *, a_width: int, b_width: int, in_reg: bool = True, out_reg: bool = True):
        for name, w in (("a_width", a_width), ("b_width", b_width)):
            if not isinstance(w, int) or not 2 <= w <= MULT18_WIDTH:
                raise ValueError(f"{name} must be an integer in [2, {MULT18_WIDTH}], got {w!r}")
        self.a_width, self.b_width = a_width, b_width
        self.in_reg, self.out_reg = bool(in_reg), bool(out_reg)
        self.latency = int(self.in_reg) + int(self.out_reg)
        super().__init__({
            "en": In(1),
            "a": In(signed(a_width)),
            "b": In(signed(b_width)),
            "p": Out(signed(a_width + b_width)),
        })

    def elaborate(self, platform):
        m = Module()
        if dsp_family(platform) == "ecp5":
            if not self.in_reg:
                raise ValueError("the ecp5 multiplier mapping registers its operands: in_reg must be True")
            a18, b18 = Signal(signed(MULT18_WIDTH)), Signal(signed(MULT18_WIDTH))
            p36 = Signal(signed(2 * MULT18_WIDTH))
            m.d.comb += [a18.eq(self.a), b18.eq(self.b), self.p.eq(p36)]
            reg = "CLK0"
            ports = {f"i_A{i}": a18[i] for i in range(MULT18_WIDTH)}
            ports.update({f"i_B{i}": b18[i] for i in range(MULT18_WIDTH)})
            ports.update({f"i_C{i}": Const(0, 1) for i in range(MULT18_WIDTH)})
            ports.update({f"o_P{i}": p36[i] for i in range(2 * MULT18_WIDTH)})
            # SRIA/SRIB (the cascade shift inputs) stay unconnected, as nextpnr expects.
            m.submodules.mult = Instance(
                "MULT18X18D",
                p_REG_INPUTA_CLK=reg, p_REG_INPUTA_CE="CE0", p_REG_INPUTA_RST="RST0",
                p_REG_INPUTB_CLK=reg, p_REG_INPUTB_CE="CE0", p_REG_INPUTB_RST="RST0",
                p_REG_INPUTC_CLK="NONE", p_REG_PIPELINE_CLK="NONE",
                p_REG_OUTPUT_CLK=reg if self.out_reg else "NONE", p_REG_OUTPUT_CE="CE0", p_REG_OUTPUT_RST="RST0",
                p_CLK0_DIV="ENABLED", p_CLK1_DIV="ENABLED", p_CLK2_DIV="ENABLED", p_CLK3_DIV="ENABLED",
                p_HIGHSPEED_CLK="NONE", p_GSR="DISABLED", p_CAS_MATCH_REG="FALSE", p_SOURCEB_MODE="B_SHIFT",
                p_MULT_BYPASS="DISABLED", p_RESETMODE="SYNC",
                i_SIGNEDA=Const(1, 1), i_SIGNEDB=Const(1, 1), i_SOURCEA=Const(0, 1), i_SOURCEB=Const(0, 1),
                i_CLK0=ClockSignal(), i_CLK1=Const(0, 1), i_CLK2=Const(0, 1), i_CLK3=Const(0, 1),
                i_CE0=self.en, i_CE1=Const(0, 1), i_CE2=Const(0, 1), i_CE3=Const(0, 1),
                i_RST0=ResetSignal(), i_RST1=Const(0, 1), i_RST2=Const(0, 1), i_RST3=Const(0, 1),
                **ports,
            )
            return m
        a_reg, b_reg = self.a, self.b
        if self.in_reg:
            a_reg, b_reg = Signal.like(self.a, name="a_reg"), Signal.like(self.b, name="b_reg")
            with m.If(self.en):
                m.d.sync += [a_reg.eq(self.a), b_reg.eq(self.b)]
        product = Signal.like(self.p, name="product")
        m.d.comb += product.eq(a_reg * b_reg)
        if self.out_reg:
            p_reg = Signal.like(self.p, name="p_reg")
            with m.If(self.en):
                m.d.sync += p_reg.eq(product)
            m.d.comb += self.p.eq(p_reg)
        else:
            m.d.comb += self.p.eq(product)
        return m


def replica_flop(m: Module, d, *, init: int, name: str, platform) -> Signal:
    """One flip-flop ``q <= d`` (synchronous reset to ``init``) that synthesis keeps even when another register has
    the same input: on ``ecp5`` an instantiated TRELLIS_FF (Yosys merges identical ``$dff`` cells, so identical
    registers collapse into one high-fanout flop), a plain register elsewhere (same cycle behaviour).

    Used to distribute a registered enable: each copy drives a local group of registers instead of one net
    driving the whole array.
    """
    q = Signal(init=init, name=name)
    if dsp_family(platform) == "ecp5":
        m.submodules[f"{name}_ff"] = Instance(
            "TRELLIS_FF", p_GSR="DISABLED", p_CEMUX="1", p_CLKMUX="CLK", p_LSRMUX="LSR",
            p_REGSET="SET" if init else "RESET", p_SRMODE="LSR_OVER_CE",
            i_CLK=ClockSignal(), i_LSR=ResetSignal(), i_DI=d, o_Q=q)
    else:
        m.d.sync += q.eq(d)
    return q
