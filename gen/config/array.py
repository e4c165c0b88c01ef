"""Design-point configuration: one frozen, validated object per design point, copied for sweeps.

Validation happens here, once, where values enter (constructor, TOML, CLI flags). Every error is a
:class:`ConfigError` whose one-line message names the bad value and the allowed range; the CLI turns it
into exit code 2. ``rtl/`` trusts what it is given.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Mapping

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from npuforge.spec.dataflow import DATAFLOW_CHOICES
from npuforge.spec.precision import MODE_NAMES, PRECISION_MODES

__all__ = ["ConfigError", "ArrayConfig", "acc_bits_needed", "max_k_exact"]

MAX_DIM = 64


class ConfigError(ValueError):
    """An invalid configuration value; the message is one line naming the value and the allowed range."""


def acc_bits_needed(mode: str, max_k: int) -> int:
    """Signed accumulator width that holds any sum of ``max_k`` products of ``mode`` without overflow.

    The largest product magnitude is (-2^(a-1)) * (-2^(w-1)) = 2^(a+w-2); a sum of K of them needs
    a+w-2 + ceil(log2 K) magnitude bits plus a sign bit.
    """
    a_bits, w_bits = PRECISION_MODES[mode].bits
    peak = max_k * (1 << (a_bits + w_bits - 2))
    return peak.bit_length() + 1  # + sign; peak itself must be representable as a positive value


def max_k_exact(mode: str, acc_width: int) -> int:
    """Longest reduction whose sum of ``mode`` products an ``acc_width``-bit accumulator holds exactly in any
    summation order (the inverse of :func:`acc_bits_needed`; 0 if not even one product fits)."""
    a_bits, w_bits = PRECISION_MODES[mode].bits
    return ((1 << (acc_width - 1)) - 1) // (1 << (a_bits + w_bits - 2))


def _check_int(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be in [{lo}, {hi}], got {value!r}")
    return value


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML config file; a missing or malformed file is a one-line :class:`ConfigError`."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {e}") from None


def check_keys(cls: type, data: Mapping[str, Any], what: str) -> None:
    """Refuse keys of ``data`` that are not fields of the dataclass ``cls`` (``what`` names the config)."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown {what} key {unknown[0]!r}; allowed: {', '.join(sorted(known))}")


@dataclass(frozen=True)
class ArrayConfig:
    """One PE-array design point.

    Parameters
    ----------
    rows, cols : int
        PE grid size, 1..64 each. Rows reduce over K (weight-stationary) / index M (output-stationary).
    dataflow : str
        ``"ws"`` weight-stationary, ``"os"`` output-stationary, ``"both"`` (run-time select).
    precisions : tuple of str
        Run-time modes the MAC supports, a subset of ``spec.precision.MODE_NAMES`` (int8, w4a8, int4, w8a16,
        w4a16) that includes int8; default the three 8-bit-activation modes. ``("int8",)`` alone generates the
        plain int8 MAC (the baseline that measures what scalability costs). A 16-bit-activation mode widens the
        activation operands to 16 bits.
    acc_width : int
        Accumulator width in bits, 16..64 (default 32).
    max_k : int
        Longest reduction the accumulator must hold exactly in the 8-bit-activation modes, 1..2^20 (default 4096);
        validated against ``acc_width``. The 16-bit-activation modes have their own exact bound
        (:meth:`k_limit`: at int32, w8a16 511 and w4a16 8191), checked where programs are compiled.
    mac_pipeline : int
        Register stages in the MAC between operands and accumulator, 1..5 (default 2: the multiplier block's input
        and output registers; 3 adds a fabric register on the products, 4 also one on the operands: the fmax
        point; 5 also one between the block's output and the lane products, see rtl/mac.py, and the array registers
        its edges, rtl.array.edge_stages). The array's latency grows by one cycle per stage, and at 5 by two more
        cycles in ws and one in os for the edges (the cycle model follows ``mac_pipeline``).
    name : str
        Verilog top-module name.
    """

    rows: int = 8
    cols: int = 8
    dataflow: str = "ws"
    precisions: tuple[str, ...] = ("int8", "w4a8", "int4")
    acc_width: int = 32
    max_k: int = 4096
    mac_pipeline: int = 2
    name: str = "npuforge_array"

    def __post_init__(self) -> None:
        _check_int("rows", self.rows, 1, MAX_DIM)
        _check_int("cols", self.cols, 1, MAX_DIM)
        if self.dataflow not in DATAFLOW_CHOICES:
            raise ConfigError(f"dataflow must be one of {', '.join(DATAFLOW_CHOICES)}, got {self.dataflow!r}")
        precisions = self.precisions
        if isinstance(precisions, str):
            precisions = tuple(p.strip() for p in precisions.split(",") if p.strip())
        precisions = tuple(precisions)
        if not precisions:
            raise ConfigError(f"precisions must be a non-empty subset of {', '.join(MODE_NAMES)}, got {self.precisions!r}")
        for p in precisions:
            if p not in MODE_NAMES:
                raise ConfigError(f"precision must be one of {', '.join(MODE_NAMES)}, got {p!r}")
        if len(set(precisions)) != len(precisions):
            raise ConfigError(f"precisions must not repeat a mode, got {self.precisions!r}")
        if "int8" not in precisions:
            # The 4-bit slices always compose an int8x8 product; int8 is the mode every program can use.
            raise ConfigError(f"precisions must include int8, got {self.precisions!r}")
        # Canonical order, so equal configs give equal files.
        object.__setattr__(self, "precisions", tuple(p for p in MODE_NAMES if p in precisions))
        _check_int("acc_width", self.acc_width, 16, 64)
        _check_int("max_k", self.max_k, 1, 1 << 20)
        _check_int("mac_pipeline", self.mac_pipeline, 1, 5)
        need = max(acc_bits_needed(m, self.max_k) for m in self.precisions if not PRECISION_MODES[m].wide_act)
        if self.acc_width < need:
            raise ConfigError(f"acc_width {self.acc_width} is too narrow for max_k={self.max_k}: "
                              f"need >= {need} bits (or lower max_k)")
        for m in self.precisions:
            if max_k_exact(m, self.acc_width) < 1:
                raise ConfigError(f"acc_width {self.acc_width} is too narrow for mode {m}: need >= "
                                  f"{acc_bits_needed(m, 1)} bits")
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ConfigError(f"name must be a Verilog identifier, got {self.name!r}")

    # -- derived figures ---------------------------------------------------------------------------
    @property
    def scalable(self) -> bool:
        """True when the precision-scalable MAC is generated (any mode besides int8)."""
        return self.precisions != ("int8",)

    @property
    def peak_macs_per_cycle(self) -> dict[str, int]:
        return {m: self.rows * self.cols * PRECISION_MODES[m].products for m in self.precisions}

    @property
    def act_width(self) -> int:
        """Bits of one activation operand word on the array's ``a`` stream: 16 with a 16-bit-activation mode."""
        return 16 if any(PRECISION_MODES[m].wide_act for m in self.precisions) else 8

    def k_limit(self, mode: str) -> int:
        """Longest reduction (K) a GEMM in ``mode`` may have on this array: ``max_k``, or the exact bound of the
        accumulator when that is lower (the 16-bit-activation modes)."""
        if mode not in self.precisions:
            raise ConfigError(f"mode must be one of {', '.join(self.precisions)} for this array, got {mode!r}")
        return min(self.max_k, max_k_exact(mode, self.acc_width))

    def mode_table(self) -> dict[str, dict[str, int]]:
        """Per generated mode: code, operand bits, products per PE per cycle, peak MACs/cycle, K limit (manifest)."""
        return {m: {"code": PRECISION_MODES[m].code, "act_bits": PRECISION_MODES[m].act_bits,
                    "weight_bits": PRECISION_MODES[m].weight_bits,
                    "products_per_pe_per_cycle": PRECISION_MODES[m].products,
                    "peak_macs_per_cycle": self.rows * self.cols * PRECISION_MODES[m].products,
                    "k_limit": self.k_limit(m)} for m in self.precisions}

    # -- (de)serialisation ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["precisions"] = list(self.precisions)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ArrayConfig":
        check_keys(cls, data, "config")
        data = dict(data)
        if "precisions" in data and isinstance(data["precisions"], list):
            data["precisions"] = tuple(data["precisions"])
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> "ArrayConfig":
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_toml(cls, path: str | Path) -> "ArrayConfig":
        """Load ``[array]`` (or top-level keys) from a TOML file."""
        data = read_toml(path)
        return cls.from_dict(data.get("array", data))

    def with_overrides(self, **overrides: Any) -> "ArrayConfig":
        """Copy with the given fields changed (None values are ignored), re-validated."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})
