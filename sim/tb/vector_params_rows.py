"""Python-side packing for the row operators (LayerNorm, RMSNorm, softmax): golden params -> port values.

``norm_ports(params, max_row=...)`` gives the scalar run-time ports of :class:`rtl.vector.norm.LayerNorm` /
``RMSNorm`` and ``norm_param_words(params)`` the per-channel ``param_data`` words (channel c at
``param_addr`` c). ``softmax_ports(params, row_len=..., ...)`` gives the ports of
:class:`rtl.vector.softmax.Softmax` for one row. Every value is range-checked: a bad one raises ``ValueError`` naming it and its range.
"""

from __future__ import annotations

from npuforge.golden.norms import LayerNormParams, RMSNormParams
from npuforge.golden.softmax import SoftmaxParams
from npuforge.sim.tb.vector_params import check_range
from npuforge.spec.vector_ops import (EPS_TERM_MAX, EXP_SHIFT_MAX, EXP_SHIFT_MIN, GAMMA_SHIFT_MAX, GAMMA_SHIFT_MIN,
                                      MULTIPLIER_BITS, VAR_FRAC_BITS_MAX, norm_channel)

__all__ = ["GAMMA_SHIFT_MIN", "GAMMA_SHIFT_MAX", "EPS_TERM_MAX", "norm_ports", "norm_param_words",
           "norm_kind", "softmax_ports"]


def norm_kind(params) -> str:
    """``"layernorm"`` or ``"rmsnorm"`` for a golden params object; ``ValueError`` otherwise."""
    if isinstance(params, LayerNormParams):
        return "layernorm"
    if isinstance(params, RMSNormParams):
        return "rmsnorm"
    raise ValueError(f"params must be LayerNormParams or RMSNormParams, got {type(params).__name__}")


def norm_ports(params, *, max_row: int, in_width: int = 8, out_width: int = 8) -> dict[str, int]:
    """Scalar ports ``row_len``, ``eps_term``, ``var_frac_bits``, ``gamma_shift`` for golden norm params.

    ``params.dim`` must be in [1, max_row] and ``params.input_bits`` / ``out_bits`` must match the
    generated ``in_width`` / ``out_width``.
    """
    norm_kind(params)
    if params.input_bits != in_width:
        raise ValueError(f"params.input_bits must equal the hardware in_width {in_width}, got {params.input_bits}")
    if params.out_bits != out_width:
        raise ValueError(f"params.out_bits must equal the hardware out_width {out_width}, got {params.out_bits}")
    return {
        "row_len": check_range("params.dim (row_len)", params.dim, 1, max_row),
        "eps_term": check_range("params.eps_term", params.eps_term, 0, EPS_TERM_MAX),
        "var_frac_bits": _even_frac(params.var_frac_bits),
        "gamma_shift": check_range("params.gamma_shift", params.gamma_shift, GAMMA_SHIFT_MIN, GAMMA_SHIFT_MAX),
    }


def _even_frac(value) -> int:
    frac = check_range("params.var_frac_bits", value, 0, VAR_FRAC_BITS_MAX)
    if frac % 2:
        raise ValueError(f"params.var_frac_bits must be even in [0, {VAR_FRAC_BITS_MAX}], got {value!r}")
    return frac


def norm_param_words(params) -> list[int]:
    """Per-channel ``param_data`` integers: G (signed o + 8 bit) low, then (LayerNorm only) B (signed o + 40
    bit), o = ``params.out_bits``."""
    kind = norm_kind(params)
    record = norm_channel(kind, params.out_bits)
    words = []
    betas = params.beta_q if kind == "layernorm" else (0,) * len(params.gamma_q)
    if len(params.gamma_q) != params.dim or len(betas) != params.dim:
        raise ValueError(f"gamma_q/beta_q must have params.dim={params.dim} entries, "
                         f"got {len(params.gamma_q)}/{len(betas)}")
    for c, (g, bq) in enumerate(zip(params.gamma_q, betas)):
        values = {}
        for name, v in (("gamma", g), ("beta", bq))[:len(record.fields)]:
            f = record.field(name)
            values[name] = check_range(f"{name}_q[{c}]", v, f.lo, f.hi)
        words.append(record.to_int(**values))
    return words


def softmax_ports(params, *, row_len: int, max_row: int, in_width: int = 16, causal: bool = False,
                  query_pos: int = 0, q15: bool = False, valid_len: int | None = None) -> dict[str, int]:
    """Ports ``row_len``, ``exp_multiplier``, ``exp_shift``, ``causal``, ``query_pos``, ``pad``, ``valid_len``,
    ``q15`` for one softmax row.

    ``query_pos`` is the golden row index + ``row_offset`` of a causal row (columns j > query_pos are
    masked); ``valid_len`` (None: no padding mask) masks columns j >= valid_len; ``q15`` selects the Q0.15
    output; ``params.input_bits`` must equal the hardware ``in_width``.
    """
    if not isinstance(params, SoftmaxParams):
        raise ValueError(f"params must be a SoftmaxParams, got {type(params).__name__}")
    if params.input_bits != in_width:
        raise ValueError(f"params.input_bits must equal the hardware in_width {in_width}, got {params.input_bits}")
    return {
        "row_len": check_range("row_len", row_len, 1, max_row),
        "exp_multiplier": check_range("params.exp_multiplier", params.exp_multiplier, 0, (1 << MULTIPLIER_BITS) - 1),
        "exp_shift": check_range("params.exp_shift", params.exp_shift, EXP_SHIFT_MIN, EXP_SHIFT_MAX),
        "causal": int(bool(causal)),
        "query_pos": check_range("query_pos", query_pos, 0, (1 << 32) - 1),
        "pad": int(valid_len is not None),
        "valid_len": 0 if valid_len is None else check_range("valid_len", valid_len, 1, (1 << 16) - 1),
        "q15": int(bool(q15)),
    }
