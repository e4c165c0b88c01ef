"""GELU / SiLU: 256-entry tables for int8 inputs, and I-BERT's integer polynomial GELU (i-GELU) for wider inputs.

Tables (host builds them, hardware only looks up)
-------------------------------------------------
``gelu_table(in_scale, out_scale)[i] = clamp(rint(gelu((i - 128) * in_scale) / out_scale), -128, 127)`` for
i = 0..255, i.e. the entry for int8 x is at index x + 128 (``lookup``: one 256 x 8-bit ROM/RAM read, index = x
with its sign bit inverted). The table IS the float function rounded to the nearest output step (ties to even),
so every unsaturated entry is within 0.5 output LSB of the float function; GELU is the exact erf form (BERT),
SiLU is x * sigmoid(x) (Llama). Tables are computed in float64 with ``math.erf`` / ``math.exp``.

i-GELU (Kim et al., "I-BERT", 2021), integers only at run time
--------------------------------------------------------------
erf is approximated on [0, -b] by L(z) = a (z + b)^2 + 1, a = -0.2888, b = -1.769, odd-extended, and saturated
beyond -b; GELU(x) = x (1 + erf(x / sqrt 2)) / 2. With S' = in_scale / sqrt 2, the host computes

    q_b = floor(b / S'),  q_c = floor(1 / (a S'^2)),  q_1 = floor(1 / (a S'^2)) = q_c,  clip = floor(-b / S')
    out_scale = |in_scale * a S'^2 / 2|

and the kernel computes, for input x (signed input_bits <= 16):

    z     = min(|x|, clip)                              unsigned, <= clip
    L     = (z + q_b)^2 + q_c                           signed; L * a S'^2 = erf(|x| S')
    e     = sign(x) * L                                 erf(x / sqrt 2) in units of a S'^2 (< 0)
    q_out = -(x * (e + q_1))                            GELU(x) in units of out_scale (> 0)

Bit widths: |q_b|, clip < 1.77 / S' and |q_c| < 3.47 / S'^2, so for |x| < 2^15 the product needs
15 + bitlength(2 |q_c|) + 1 bits; ``i_gelu_params`` raises ``ValueError`` if that exceeds 63 bits (int64), which
only happens for in_scale < ~1e-7. Typical: 16-bit x with in_scale = 10/32767 -> |q_c| ~ 2^26, |q_out| < 2^43.
The output is an int64 (wide) value at ``out_scale``; requantize it with a Q31 multiplier after pre-shifting to
32 bits, as the RTL does for any wide accumulator.
Accuracy: the erf approximation limits GELU to an absolute error of about 0.018 (measured in tests: <= 0.0183
over every 16-bit input at in_scale = 10/32767 and every 8-bit input at 6/127; the tests assert <= 0.02). A
coarse input step adds the floor() of q_b and q_c: 0.033 at in_scale = 0.1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from npuforge.golden._checks import check_choice, check_int_array, check_scale
from npuforge.spec.vector_ops import TABLE_ENTRIES as TABLE_SIZE   # one entry per int8 input (rtl.vector.table)

I_GELU_A = -0.2888
I_GELU_B = -1.769


def _table(fn, in_scale: float, out_scale: float) -> np.ndarray:
    s_in = check_scale("in_scale", in_scale)
    s_out = check_scale("out_scale", out_scale)
    values = np.array([fn((i - 128) * s_in) for i in range(TABLE_SIZE)], dtype=np.float64) / s_out
    return np.clip(np.rint(values), -128, 127).astype(np.int8)


def _gelu(x: float) -> float:
    return 0.5 * x * (1.0 + math.erf(x / math.sqrt(2.0)))


def _silu(x: float) -> float:
    # written to avoid overflow of exp for large |x|
    return x / (1.0 + math.exp(-x)) if x >= 0 else x * math.exp(x) / (1.0 + math.exp(x))


def gelu_table(in_scale: float, out_scale: float) -> np.ndarray:
    """int8 [256]: entry x + 128 = GELU(x * in_scale) / out_scale rounded and saturated to int8."""
    return _table(_gelu, in_scale, out_scale)


def silu_table(in_scale: float, out_scale: float) -> np.ndarray:
    """int8 [256]: entry x + 128 = SiLU(x * in_scale) / out_scale rounded and saturated to int8."""
    return _table(_silu, in_scale, out_scale)


def lookup(x, table) -> np.ndarray:
    """``table[x + 128]`` for int8 x: the hardware's 256-entry lookup. Returns int8 of x's shape."""
    x64 = check_int_array("x", x, 8)
    if not isinstance(table, np.ndarray) or table.shape != (TABLE_SIZE,) or table.dtype != np.int8:
        raise ValueError(f"table must be an int8 array of shape (256,), got "
                         f"{getattr(table, 'dtype', type(table).__name__)} {getattr(table, 'shape', '')}")
    return table[x64 + 128]


@dataclass(frozen=True)
class IGeluParams:
    """i-GELU constants (ints) for one input scale; ``out_scale`` is the host-side meaning of the output."""

    input_bits: int
    q_b: int
    q_c: int
    clip: int
    out_scale: float


def i_gelu_params(in_scale: float, *, input_bits: int = 16) -> IGeluParams:
    """Host side: the I-BERT constants for ``in_scale`` (``ValueError`` if the output would not fit int64)."""
    check_choice("input_bits", input_bits, (8, 16))
    s = check_scale("in_scale", in_scale)
    s_erf_in = s / math.sqrt(2.0)
    s_l = I_GELU_A * s_erf_in * s_erf_in  # scale of L, negative
    q_b = math.floor(I_GELU_B / s_erf_in)
    q_c = math.floor(1.0 / s_l)
    clip = math.floor(-I_GELU_B / s_erf_in)
    worst = (1 << (input_bits - 1)) * (2 * abs(q_c) + (clip + abs(q_b)) ** 2 + 1)
    if worst.bit_length() > 62:
        raise ValueError(f"in_scale must be large enough for the {input_bits}-bit i-GELU output to fit 62 bits "
                         f"(needs {worst.bit_length()} bits), got {in_scale!r}")
    return IGeluParams(input_bits=input_bits, q_b=q_b, q_c=q_c, clip=clip, out_scale=abs(s * s_l / 2.0))


def i_gelu_kernel(x, params: IGeluParams) -> np.ndarray:
    """Integer i-GELU: int64 GELU(x) in units of ``params.out_scale``."""
    if not isinstance(params, IGeluParams):
        raise ValueError(f"params must be an IGeluParams, got {type(params).__name__}")
    x64 = check_int_array("x", x, params.input_bits)
    z = np.minimum(np.abs(x64), params.clip)
    poly = (z + params.q_b) ** 2 + params.q_c
    erf_q = np.sign(x64) * poly
    # both erf_q and q_1 = q_c are in units of the negative scale a*S'^2; negate so out_scale is positive.
    return -(x64 * (erf_q + params.q_c))


def i_gelu(x, in_scale: float, *, input_bits: int = 16) -> tuple[np.ndarray, float]:
    """I-BERT integer GELU of x (signed input_bits, real value x * in_scale) -> (int64 q, out_scale)."""
    params = i_gelu_params(in_scale, input_bits=input_bits)
    return i_gelu_kernel(x, params), params.out_scale
