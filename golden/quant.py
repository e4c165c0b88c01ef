"""Symmetric quantization of weights and activations, int4 packing, dequantization (host side).

Weights (Hugging Face Linear layout w [N, K] = out x in)
    bits b in {8, 4}, q_max = 2^(b-1) - 1 (127 or 7). Per output channel (row n), or per group of G in {32, 64, 128}
    consecutive inputs along K (scale shape [N, K // G]):
        scale = max |w| over the row/group / q_max      (a row/group of zeros gets scale 1.0)
        q     = clip(rint(w / scale), -q_max, q_max)    rint = round half to even
    The range is symmetric: -128 / -8 never occur in quantized weights (they may in activations).
    q is stored as int8 for both widths.

Activations (per tensor)
    bits b in {4, 8, 16}: scale = max |x| over all calibration samples / (2^(b-1) - 1) (all-zero samples -> 1.0);
    q = clip(rint(x / scale), -2^(b-1), 2^(b-1) - 1), int8 for b <= 8, int16 for b = 16.

int4 packing (nibble order)
    Along the last axis, element 2i goes to the LOW nibble (bits 3..0) and element 2i+1 to the HIGH nibble
    (bits 7..4) of byte i, both as 4-bit two's complement. An odd length is padded with one 0 nibble.
    Example: [1, -2] -> 0xE1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from npuforge.golden._checks import check_choice, check_float_array, check_int, check_int_array, check_scale, int_range

GROUP_SIZES = (32, 64, 128)


@dataclass(frozen=True, eq=False)
class QuantizedWeight:
    """Quantized weight: ``q`` int8 [N, K] in [-q_max, q_max]; ``scale`` float64 [N] or [N, K // group_size]."""

    q: np.ndarray
    scale: np.ndarray
    bits: int
    group_size: int | None = None

    def __post_init__(self):
        check_choice("bits", self.bits, (8, 4))
        if self.group_size is not None:
            check_choice("group_size", self.group_size, GROUP_SIZES)
        check_int_array("q", self.q, self.bits, ndim_min=2)
        if self.q.ndim != 2 or self.q.dtype != np.int8:
            raise ValueError(f"q must be an int8 array [N, K], got dtype {self.q.dtype} shape {self.q.shape}")
        n, k = self.q.shape
        want = (n,) if self.group_size is None else (n, k // self.group_size)
        if self.group_size is not None and k % self.group_size:
            raise ValueError(f"K must be a multiple of group_size={self.group_size}, got K={k}")
        scale = np.asarray(self.scale)
        if scale.shape != want or not np.isfinite(scale).all() or (scale <= 0).any():
            raise ValueError(f"scale must be finite positive float64 of shape {want}, got shape {scale.shape}")

    @property
    def shape(self) -> tuple[int, int]:
        return self.q.shape

    def scale_per_element(self) -> np.ndarray:
        """The scale of every element, float64 [N, K]."""
        if self.group_size is None:
            return np.broadcast_to(self.scale[:, None], self.q.shape)
        return np.repeat(self.scale, self.group_size, axis=1)


def quantize_weight(w, *, bits: int = 8, group_size: int | None = None) -> QuantizedWeight:
    """Symmetric per-output-channel (or per-group along K) quantization of a float weight w [N, K]."""
    check_choice("bits", bits, (8, 4))
    if group_size is not None:
        check_choice("group_size", group_size, GROUP_SIZES)
    w64 = check_float_array("w", w, ndim_min=2)
    if w64.ndim != 2:
        raise ValueError(f"w must be a 2-D weight [N, K] (out x in), got shape {w64.shape}")
    n, k = w64.shape
    q_max = (1 << (bits - 1)) - 1
    if group_size is None:
        amax = np.abs(w64).max(axis=1) if k else np.zeros(n)
        scale = np.where(amax > 0, amax / q_max, 1.0)
        per_elem = scale[:, None]
    else:
        if k % group_size:
            raise ValueError(f"w's K must be a multiple of group_size={group_size}, got K={k}")
        amax = np.abs(w64.reshape(n, k // group_size, group_size)).max(axis=2)
        scale = np.where(amax > 0, amax / q_max, 1.0)
        per_elem = np.repeat(scale, group_size, axis=1)
    q = np.clip(np.rint(w64 / per_elem), -q_max, q_max).astype(np.int8)
    return QuantizedWeight(q=q, scale=scale.astype(np.float64), bits=bits, group_size=group_size)


def dequantize_weight(qw: QuantizedWeight) -> np.ndarray:
    """``q * scale`` as float32 [N, K]."""
    if not isinstance(qw, QuantizedWeight):
        raise ValueError(f"qw must be a QuantizedWeight, got {type(qw).__name__}")
    return (qw.q.astype(np.float64) * qw.scale_per_element()).astype(np.float32)


def calibrate_activation_scale(samples, *, bits: int = 8) -> float:
    """Per-tensor symmetric scale ``max |x| / (2^(bits-1) - 1)`` over one array or a list of arrays."""
    check_choice("bits", bits, (4, 8, 16))
    arrays = samples if isinstance(samples, (list, tuple)) else [samples]
    if not arrays:
        raise ValueError("samples must contain at least one array, got an empty list")
    amax = 0.0
    for i, s in enumerate(arrays):
        arr = check_float_array(f"samples[{i}]", s)
        if arr.size:
            amax = max(amax, float(np.abs(arr).max()))
    return amax / ((1 << (bits - 1)) - 1) if amax > 0 else 1.0


def quantize_activation(x, scale: float, *, bits: int = 8) -> np.ndarray:
    """``clip(rint(x / scale), -2^(bits-1), 2^(bits-1) - 1)`` as int8 (bits 4, 8) or int16 (bits 16)."""
    check_choice("bits", bits, (4, 8, 16))
    s = check_scale("scale", scale)
    x64 = check_float_array("x", x)
    lo, hi = int_range(bits)
    return np.clip(np.rint(x64 / s), lo, hi).astype(np.int16 if bits == 16 else np.int8)


def dequantize_activation(q, scale: float) -> np.ndarray:
    """``q * scale`` as float32."""
    s = check_scale("scale", scale)
    q64 = check_int_array("q", q, 32)
    return (q64.astype(np.float64) * s).astype(np.float32)


def pack_int4(q) -> np.ndarray:
    """Pack int4 values (in [-8, 7]) two per byte along the last axis: element 2i low nibble, 2i+1 high nibble."""
    q64 = check_int_array("q", q, 4, ndim_min=1)
    if q64.shape[-1] % 2:
        q64 = np.concatenate([q64, np.zeros(q64.shape[:-1] + (1,), dtype=np.int64)], axis=-1)
    low = q64[..., 0::2] & 0xF
    high = q64[..., 1::2] & 0xF
    return (low | (high << 4)).astype(np.uint8)


def unpack_int4(packed, n: int) -> np.ndarray:
    """Inverse of :func:`pack_int4`: uint8 [..., ceil(n/2)] -> int8 [..., n] (sign-extended nibbles)."""
    if not isinstance(packed, np.ndarray) or packed.dtype != np.uint8 or packed.ndim < 1:
        raise ValueError(f"packed must be a uint8 array with at least 1 dimension, got "
                         f"{getattr(packed, 'dtype', type(packed).__name__)}")
    n = check_int("n", n, 2 * packed.shape[-1] - 1 if packed.shape[-1] else 0, 2 * packed.shape[-1])
    p = packed.astype(np.int64)
    nibbles = np.stack([p & 0xF, p >> 4], axis=-1).reshape(packed.shape[:-1] + (2 * packed.shape[-1],))
    signed = (nibbles ^ 8) - 8  # sign-extend bit 3
    return signed[..., :n].astype(np.int8)
