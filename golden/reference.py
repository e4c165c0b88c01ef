"""Float twins of the integer operators: what each integer kernel approximates, to measure its error.

All functions take real-valued arrays (float or integer dtype), compute in float64 and return float32.
They use the same axis conventions as the integer kernels (rows over the last axis; Hugging Face Llama RoPE
rotate-half pairs (i, i + head_dim/2)).
"""

from __future__ import annotations

import numpy as np

from npuforge.golden._checks import check_float_array


def _f64(name, x):
    return check_float_array(name, x)


def float_requant(acc, real_scale) -> np.ndarray:
    """acc * real_scale (per-channel scales broadcast along the last axis), no rounding, no saturation."""
    return (_f64("acc", acc) * np.asarray(real_scale, dtype=np.float64)).astype(np.float32)


def causal_mask(shape: tuple[int, ...], row_offset: int = 0) -> np.ndarray:
    """Boolean mask, True where column j > row i + row_offset (masked), for [..., L_rows, L_cols]."""
    rows, cols = shape[-2], shape[-1]
    i = np.arange(rows)[:, None] + row_offset
    j = np.arange(cols)[None, :]
    return np.broadcast_to(j > i, shape)


def float_softmax(x, *, causal: bool = False, row_offset: int = 0) -> np.ndarray:
    """Softmax over the last axis; with ``causal`` column j of row i is 0 when j > i + row_offset."""
    z = _f64("x", x)
    if causal:
        z = np.where(causal_mask(z.shape, row_offset), -np.inf, z)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def float_layernorm_normalized(x, *, eps: float = 1e-5) -> np.ndarray:
    """(x - mean) / sqrt(var + eps) over the last axis (population variance), before gamma/beta.

    A row with var + eps == 0 (constant row, eps = 0) normalises to 0, as in the integer kernel.
    """
    z = _f64("x", x)
    mean = z.mean(axis=-1, keepdims=True)
    var = ((z - mean) ** 2).mean(axis=-1, keepdims=True)
    return _safe_div(z - mean, np.sqrt(var + eps)).astype(np.float32)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return num / np.where(den > 0, den, 1.0) * (den > 0)


def float_layernorm(x, gamma, beta, *, eps: float = 1e-5) -> np.ndarray:
    """LayerNorm over the last axis: normalized * gamma + beta."""
    y = float_layernorm_normalized(x, eps=eps).astype(np.float64)
    return (y * _f64("gamma", gamma) + _f64("beta", beta)).astype(np.float32)


def float_rmsnorm_normalized(x, *, eps: float = 1e-6) -> np.ndarray:
    """x / sqrt(mean(x^2) + eps) over the last axis, before gamma (an all-zero row with eps = 0 gives 0)."""
    z = _f64("x", x)
    return _safe_div(z, np.sqrt((z * z).mean(axis=-1, keepdims=True) + eps)).astype(np.float32)


def float_rmsnorm(x, gamma, *, eps: float = 1e-6) -> np.ndarray:
    """RMSNorm over the last axis: normalized * gamma (Llama)."""
    return (float_rmsnorm_normalized(x, eps=eps).astype(np.float64) * _f64("gamma", gamma)).astype(np.float32)


def erf(x) -> np.ndarray:
    """Vectorised erf, float64, absolute error <= 1.2e-7 (Numerical Recipes erfc Chebyshev fit), below float32 eps."""
    z = np.abs(np.asarray(x, dtype=np.float64))
    t = 1.0 / (1.0 + 0.5 * z)
    poly = (-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (
        -0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))))
    erfc = t * np.exp(poly)
    return np.sign(x) * (1.0 - erfc)


def float_gelu(x) -> np.ndarray:
    """Exact (erf) GELU, as in BERT: x * (1 + erf(x / sqrt 2)) / 2."""
    z = _f64("x", x)
    return (0.5 * z * (1.0 + erf(z / np.sqrt(2.0)))).astype(np.float32)


def float_silu(x) -> np.ndarray:
    """SiLU (swish), as in Llama's MLP: x * sigmoid(x)."""
    z = _f64("x", x)
    # exp of a non-positive argument only, so large |x| cannot overflow.
    sig = np.where(z >= 0, 1.0 / (1.0 + np.exp(-np.abs(z))), np.exp(-np.abs(z)) / (1.0 + np.exp(-np.abs(z))))
    return (z * sig).astype(np.float32)


def float_residual_add(a, b) -> np.ndarray:
    return (_f64("a", a) + _f64("b", b)).astype(np.float32)


def float_gate_mul(a, b) -> np.ndarray:
    """Elementwise product (SwiGLU gate: silu(gate) * up)."""
    return (_f64("a", a) * _f64("b", b)).astype(np.float32)


def rope_angles(head_dim: int, positions, *, base: float = 10000.0) -> np.ndarray:
    """theta[p, i] = p * base^(-2i / head_dim), i < head_dim / 2, float64 [..., head_dim // 2]."""
    inv_freq = base ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    return np.asarray(positions, dtype=np.float64)[..., None] * inv_freq


def float_rope(x, positions, *, base: float = 10000.0) -> np.ndarray:
    """Hugging Face Llama rotary embedding (rotate_half): x [..., T, head_dim], positions broadcast to x[..., 0]."""
    z = _f64("x", x)
    half = z.shape[-1] // 2
    theta = rope_angles(z.shape[-1], positions, base=base)
    cos, sin = np.cos(theta), np.sin(theta)
    x1, x2 = z[..., :half], z[..., half:]
    return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(np.float32)
