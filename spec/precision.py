"""Precision modes of the MAC and of MATMUL: the one table that the golden model, the RTL, the ISA, the
compiler, the performance models and the testbenches read.

A mode fixes the operand widths (two's complement) and how many operands of each kind one PE takes per cycle:
``act_lanes`` activation rows (the M direction) times ``weight_lanes`` weight columns (the N direction) gives
the products one PE delivers per cycle. Accumulation is always int32 (wider with ``ArrayConfig.acc_width``).
The ``code`` is the value of the :data:`MODE_BITS`-bit ``mode`` port of the MAC/array and of ``MATMUL.mode``;
codes not in :data:`PRECISION_MODES` are illegal (the hardware reports them as an error, never computes with them).

Encoding: codes 0..2 are the 8-bit-activation modes. The 16-bit-activation modes have the low two bits ``11``
(code 3, the one 2-bit code that was always illegal) and bit 2 selects int4 weights: w8a16 = 3, w4a16 = 7; codes
4..6 are reserved. So hardware that decodes only the low two bits (built before the field grew to 3 bits) refuses
both 16-bit-activation modes instead of computing something else.

Products per PE per cycle, chosen by cost (one 18x18 multiplier block per PE, rtl/mac.py): every 8-bit-activation
mode packs its products into the block's 36-bit result (int8 1, w4a8 2, int4 4). A 16-bit activation times an
int8 weight is a 24-bit product and times an int4 weight a 20-bit one: two of them need 40 or more result bits,
more than one block has, and a second multiplier per PE would double the array's blocks (the scarce FPGA
resource) for a mode whose use, decode, is bound by weight bytes, not MACs. So w8a16 and w4a16 make one product
per PE per cycle; w4a16 saves weight storage and bandwidth (two weights per byte in memory), not multiplies.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PrecisionMode", "PRECISION_MODES", "MODE_NAMES", "MODE_CODES", "MODE_BITS", "mode", "mode_by_code",
           "check_precisions"]

#: Width of the ``mode`` port of the MAC/array and of ``MATMUL.mode`` (bits).
MODE_BITS = 3


@dataclass(frozen=True)
class PrecisionMode:
    """One run-time precision mode.

    Members
    -------
    name : str
        ``int8`` (int8 x int8), ``w4a8`` (int4 weight x int8 activation), ``int4`` (int4 x int4), ``w8a16``
        (int8 weight x int16 activation), ``w4a16`` (int4 weight x int16 activation).
    code : int
        Encoding on the ``mode`` port and in ``MATMUL.mode`` (:data:`MODE_BITS` bits).
    act_bits, weight_bits : int
        Operand widths in bits, signed. Int4 operands travel two per byte, element ``2i`` in the low nibble;
        int16 activations are 16-bit little-endian words.
    act_lanes, weight_lanes : int
        Activation rows and weight columns one PE consumes per cycle (the array's M and N packing).
    """

    name: str
    code: int
    act_bits: int
    weight_bits: int
    act_lanes: int
    weight_lanes: int

    @property
    def products(self) -> int:
        """Products per PE per cycle (``act_lanes * weight_lanes``)."""
        return self.act_lanes * self.weight_lanes

    @property
    def packing(self) -> tuple[int, int]:
        """``(act_lanes, weight_lanes)``: activation rows and weight columns packed into one PE."""
        return self.act_lanes, self.weight_lanes

    @property
    def wide_act(self) -> bool:
        """True for the 16-bit-activation modes (activation operands travel as 16-bit words)."""
        return self.act_bits > 8

    @property
    def bits(self) -> tuple[int, int]:
        """``(act_bits, weight_bits)``: the operand widths of ``golden.gemm`` (A, B)."""
        return self.act_bits, self.weight_bits


#: Every mode, in code order. int8 is the base mode every MAC supports.
PRECISION_MODES: dict[str, PrecisionMode] = {m.name: m for m in (
    PrecisionMode("int8", code=0, act_bits=8, weight_bits=8, act_lanes=1, weight_lanes=1),
    PrecisionMode("w4a8", code=1, act_bits=8, weight_bits=4, act_lanes=1, weight_lanes=2),
    PrecisionMode("int4", code=2, act_bits=4, weight_bits=4, act_lanes=2, weight_lanes=2),
    PrecisionMode("w8a16", code=3, act_bits=16, weight_bits=8, act_lanes=1, weight_lanes=1),
    PrecisionMode("w4a16", code=7, act_bits=16, weight_bits=4, act_lanes=1, weight_lanes=1),
)}
#: Mode names in code order (``MATMUL.mode`` enumeration).
MODE_NAMES: tuple[str, ...] = tuple(PRECISION_MODES)
#: Name -> code of the ``mode`` port.
MODE_CODES: dict[str, int] = {m.name: m.code for m in PRECISION_MODES.values()}


def mode(name: str) -> PrecisionMode:
    """The mode called ``name`` (``ValueError`` naming the allowed names otherwise)."""
    try:
        return PRECISION_MODES[name]
    except (KeyError, TypeError):
        raise ValueError(f"mode must be one of {', '.join(MODE_NAMES)}, got {name!r}") from None


def mode_by_code(code: int) -> PrecisionMode:
    """The mode with encoding ``code`` (``ValueError`` for an illegal code)."""
    for m in PRECISION_MODES.values():
        if m.code == code:
            return m
    raise ValueError(f"mode code must be one of {sorted(MODE_CODES.values())}, got {code!r}")


def check_precisions(precisions) -> tuple[str, ...]:
    """``precisions`` as a tuple of mode names: non-empty, known, int8 included (``ValueError`` otherwise)."""
    precisions = tuple(precisions) if not isinstance(precisions, str) else (precisions,)
    if not precisions or "int8" not in precisions or any(p not in PRECISION_MODES for p in precisions):
        raise ValueError(f"precisions must be a subset of {MODE_NAMES} that includes int8, got {precisions!r}")
    return precisions
