"""Named design points (``--preset``): an array and NPU configuration chosen for a target device.

A preset is the base that ``--config`` files and explicit flags override. ``ecp5-85f`` is the FPGA point that
places and routes on the Lattice LFE5U-85F (156 MULT18X18D, 208 DP16KD): an 8x8 array with the fmax pipeline
(``mac_pipeline`` 4: every multiplier block registered on both sides) and one block per PE in every mode, and
memories and vector operators sized so the whole NPU fits (figures: ``npuforge synth --unit npu --preset
ecp5-85f``, ``make bench``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["PRESETS", "preset"]

#: name -> {"array": ArrayConfig fields, "npu": NPUConfig fields (without ``array``)}.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "ecp5-85f": {
        "array": {"rows": 8, "cols": 8, "dataflow": "ws", "precisions": ("int8", "w4a8", "int4", "w8a16", "w4a16"),
                  "mac_pipeline": 4},
        "npu": {"spad_bytes": 64 * 1024, "spad_banks": 4, "acc_bytes": 16 * 1024, "axi_data_bits": 64,
                "vector_lanes": 4, "vector_ops": ("softmax", "act", "residual", "gate")},
    },
}


def preset(name: str) -> dict[str, dict[str, Any]]:
    """The preset called ``name`` (``ValueError`` naming the allowed names otherwise)."""
    if name not in PRESETS:
        raise ValueError(f"--preset must be one of {', '.join(PRESETS)}, got {name!r}")
    return PRESETS[name]
