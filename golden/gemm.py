"""Exact integer GEMM in the precision modes of the precision-scalable MAC (spec.precision).

``gemm(a, b)`` computes ``a @ b`` with a [..., M, K] activations (a_bits signed) and b [..., K, N] weights
(b_bits signed; note: Hugging Face stores Linear weights as [N, K], pass ``q.T``). Every product and every partial
sum is exact; the result is int32.

Widths and the accumulator bound
--------------------------------
A product of an a_bits and a b_bits signed value has magnitude at most 2^(a_bits-1) * 2^(b_bits-1)
= 2^(a_bits+b_bits-2) (reached only by (-2^(a_bits-1)) * (-2^(b_bits-1))). A sum of K such products therefore fits a
signed acc_bits accumulator, in ANY summation order (so any systolic/tiling order in the RTL), iff

    K * 2^(a_bits + b_bits - 2) <= 2^(acc_bits - 1) - 1.

``max_reduction_length`` returns the largest such K; ``gemm`` raises ``ValueError`` above it:

    mode   (a_bits, b_bits)  product bits  max K (int32)
    int8   (8, 8)            15 signed     131071
    w4a8   (8, 4)            11 signed     2097151
    int4   (4, 4)             7 signed     33554431
    w8a16  (16, 8)           23 signed     511
    w4a16  (16, 4)           19 signed     8191
"""

from __future__ import annotations

import numpy as np

from npuforge.golden._checks import check_choice, check_int, check_int_array
from npuforge.spec.precision import PRECISION_MODES

#: Mode -> (A bits, B bits), from the one precision table of :mod:`spec.precision`.
MODES: dict[str, tuple[int, int]] = {name: m.bits for name, m in PRECISION_MODES.items()}
"""Mode name -> (activation bits, weight bits)."""


def max_reduction_length(a_bits: int, b_bits: int, acc_bits: int = 32) -> int:
    """Largest K with ``K * 2^(a_bits+b_bits-2) <= 2^(acc_bits-1) - 1`` (no overflow in any summation order)."""
    a_bits = check_int("a_bits", a_bits, 2, 16)
    b_bits = check_int("b_bits", b_bits, 2, 16)
    acc_bits = check_int("acc_bits", acc_bits, 2, 64)
    return ((1 << (acc_bits - 1)) - 1) // (1 << (a_bits + b_bits - 2))


def gemm(a, b, *, a_bits: int = 8, b_bits: int = 8, acc_bits: int = 32) -> np.ndarray:
    """Exact ``a @ b`` in integers: a [..., M, K] (a_bits signed), b [..., K, N] (b_bits signed) -> int32 [..., M, N].

    Leading (batch) axes broadcast as in ``np.matmul``. Raises ``ValueError`` for non-integer dtypes, values
    outside the operand ranges, mismatched K, or K above :func:`max_reduction_length`.
    """
    check_choice("a_bits", a_bits, (4, 8, 16))
    check_choice("b_bits", b_bits, (4, 8))
    check_choice("acc_bits", acc_bits, (32,))
    k_max = max_reduction_length(a_bits, b_bits, acc_bits)
    # The K bound is checked on the shape first, before any (large) int64 copy is made.
    if isinstance(a, np.ndarray) and a.ndim >= 2 and a.shape[-1] > k_max:
        raise ValueError(f"K must be in [1, {k_max}] for {a_bits}x{b_bits}-bit operands in an int{acc_bits} "
                         f"accumulator, got K={a.shape[-1]}")
    a64 = check_int_array("a", a, a_bits, ndim_min=2)
    b64 = check_int_array("b", b, b_bits, ndim_min=2)
    k = a64.shape[-1]
    if b64.shape[-2] != k:
        raise ValueError(f"b must have shape [..., K={k}, N] to match a [..., M, K={k}], got b shape {b64.shape}")
    try:
        np.broadcast_shapes(a64.shape[:-2], b64.shape[:-2])
    except ValueError:
        raise ValueError(f"a and b batch axes must broadcast, got a {a64.shape} and b {b64.shape}") from None
    # Every product and every partial sum is an integer below 2^31 in magnitude (the bound above), so a float64
    # (BLAS) matmul is exact in any summation order (53-bit mantissa) and far faster than NumPy's int64 matmul.
    return np.matmul(a64.astype(np.float64), b64.astype(np.float64)).astype(np.int32)


def gemm_mode(a, b, mode: str) -> np.ndarray:
    """:func:`gemm` with operand widths taken from ``MODES[mode]`` (a name of :data:`spec.precision.MODE_NAMES`)."""
    check_choice("mode", mode, tuple(MODES))
    a_bits, b_bits = MODES[mode]
    return gemm(a, b, a_bits=a_bits, b_bits=b_bits)
