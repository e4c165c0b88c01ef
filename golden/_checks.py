"""Shared argument validation for the golden operators.

Every check raises ``ValueError`` whose message names the argument, shows the bad value and states the
allowed range, so a caller (or the CLI, which turns it into one line) can fix the input without reading code.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np


def int_range(bits: int) -> tuple[int, int]:
    """Two's complement range of a signed ``bits``-wide integer: (-2^(bits-1), 2^(bits-1) - 1)."""
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def check_choice(name: str, value, choices: Iterable) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def check_int(name: str, value, lo: int | None = None, hi: int | None = None) -> int:
    """A Python/NumPy integer (not bool) within [lo, hi]; returns it as a Python int."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
    value = int(value)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value}")
    return value


def check_scale(name: str, value) -> float:
    """A finite, strictly positive real scale (float or NumPy scalar); returns it as a Python float."""
    try:
        scale = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite positive number, got {value!r}") from None
    if isinstance(value, (bool, np.bool_)) or not math.isfinite(scale) or scale <= 0.0:
        raise ValueError(f"{name} must be a finite positive number (0 < {name} < inf), got {value!r}")
    return scale


def check_float_array(name: str, x, *, ndim_min: int = 0) -> np.ndarray:
    """A real (float or integer) array with only finite values; returned as float64."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"{name} must be a real-valued array (float or integer dtype), got dtype {arr.dtype}")
    if arr.ndim < ndim_min:
        raise ValueError(f"{name} must have at least {ndim_min} dimension(s), got shape {arr.shape}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must contain only finite values (no NaN/inf)")
    return arr


def check_int_array(name: str, x, bits: int, *, ndim_min: int = 0, signed: bool = True) -> np.ndarray:
    """An integer-dtype array whose values fit a ``bits``-wide (signed or unsigned) integer.

    Floats and bools are rejected even when their values are integral: a float reaching an integer kernel is a
    missing quantization step, which we want to catch rather than silently round.
    Returns the values as int64 (the width every kernel computes in).
    """
    if not isinstance(x, np.ndarray):
        raise ValueError(f"{name} must be a NumPy integer array, got {type(x).__name__}")
    if x.dtype.kind not in "iu":
        raise ValueError(f"{name} must have an integer dtype (e.g. int8/int16/int32), got dtype {x.dtype}")
    if x.ndim < ndim_min:
        raise ValueError(f"{name} must have at least {ndim_min} dimension(s), got shape {x.shape}")
    lo, hi = int_range(bits) if signed else (0, (1 << bits) - 1)
    if x.size:
        # uint64 values above int64 max would wrap when cast, so compare in the native dtype first.
        xmin, xmax = int(x.min()), int(x.max())
        if xmin < lo or xmax > hi:
            bad = xmin if xmin < lo else xmax
            kind = "signed" if signed else "unsigned"
            raise ValueError(f"{name} values must be in [{lo}, {hi}] ({kind} {bits}-bit), got {bad}")
    return x.astype(np.int64)
