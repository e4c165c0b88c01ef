"""Map a validated :class:`~gen.config.ArrayConfig` to the Amaranth components of ``rtl/``.

This is the one place that turns config fields into RTL constructor keyword arguments; synthesis, sweeps,
``npuforge gen`` and the testbenches all build through it, so a design point means the same hardware
everywhere.
"""

from __future__ import annotations

from .config import ArrayConfig

__all__ = ["array_kwargs", "mac_kwargs", "build_array", "build_mac", "DATAFLOW_CODES", "MODE_CODES"]

from rtl.array import DATAFLOW_CODES  # noqa: F401  (re-exported: the ``dataflow`` port encoding)
from rtl.mac import MODE_CODES  # noqa: F401  (re-exported: the ``mode`` port encoding)


def _dataflows(cfg: ArrayConfig) -> tuple[str, ...]:
    return ("ws", "os") if cfg.dataflow == "both" else (cfg.dataflow,)


def mac_kwargs(cfg: ArrayConfig) -> dict:
    """Keyword arguments of :class:`rtl.mac.MAC` for ``cfg``."""
    if not isinstance(cfg, ArrayConfig):
        raise TypeError(f"cfg must be an ArrayConfig, got {type(cfg).__name__}")
    return {"precisions": cfg.precisions, "pipeline": cfg.mac_pipeline, "acc_width": cfg.acc_width}


def array_kwargs(cfg: ArrayConfig) -> dict:
    """Keyword arguments of :class:`rtl.array.PEArray` for ``cfg``."""
    kw = mac_kwargs(cfg)
    kw.update(rows=cfg.rows, cols=cfg.cols, dataflows=_dataflows(cfg))
    return kw


def build_mac(cfg: ArrayConfig):
    """One MAC of the design point (for unit synthesis: what one PE's multiplier/accumulator costs)."""
    from rtl.mac import MAC

    return MAC(**mac_kwargs(cfg))


def build_array(cfg: ArrayConfig):
    """The PE array component of the design point; its Verilog top-module name is ``cfg.name``."""
    from rtl.array import PEArray

    return PEArray(**array_kwargs(cfg))
