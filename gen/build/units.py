"""Map a validated :class:`~gen.config.array.ArrayConfig` to the Amaranth components of ``rtl/``.

This is the one place that turns config fields into RTL constructor keyword arguments; synthesis, sweeps,
``npuforge gen`` and the testbenches all build through it, so a design point means the same hardware
everywhere.
"""

from __future__ import annotations

from npuforge.gen.config.array import ArrayConfig

__all__ = ["array_kwargs", "mac_kwargs", "build_array", "build_mac", "build_vector", "build_npu"]

from npuforge.spec.dataflow import dataflows_of


def _dataflows(cfg: ArrayConfig) -> tuple[str, ...]:
    return dataflows_of(cfg.dataflow)


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
    from npuforge.rtl.mac import MAC

    return MAC(**mac_kwargs(cfg))


def build_array(cfg: ArrayConfig):
    """The PE array component of the design point; its Verilog top-module name is ``cfg.name``."""
    from npuforge.rtl.array import PEArray

    return PEArray(**array_kwargs(cfg))


def build_vector(cfg: ArrayConfig, npu=None):
    """The vector unit the NPU of this design point carries (for unit synthesis).

    ``npu`` (a :class:`~gen.config.npu.NPUConfig` around ``cfg``; default ``NPUConfig(array=cfg)``) sizes it: its
    ``sequencer_lanes`` elements per cycle and the operators of its ``vector_ops``, built as the NPU's vector
    sequencer builds them (:func:`rtl.controller.vector.build_vector_unit`).
    """
    from npuforge.gen.config.npu import NPUConfig
    from npuforge.rtl.controller.vector import build_vector_unit

    npu = NPUConfig(array=cfg) if npu is None else npu
    return build_vector_unit(lanes=npu.sequencer_lanes, ops=npu.vector_ops)


def build_npu(cfg: ArrayConfig):
    """The whole NPU (array, scratchpad, accumulator SRAM, DMA, CSRs, controller) around this array, the other
    NPU parameters at their defaults (:class:`gen.config.npu.NPUConfig`); ``ConfigError`` if the array cannot
    serve an NPU (e.g. ``acc_width`` other than 32)."""
    from npuforge.gen.build.npu import build_npu as _build
    from npuforge.gen.config.npu import NPUConfig

    return _build(NPUConfig(array=cfg))
