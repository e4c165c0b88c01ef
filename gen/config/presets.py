"""Named design points (``--preset``): an array and NPU configuration chosen for a target device.

A preset is the base that ``--config`` files and explicit flags override. ``ecp5-85f`` is the FPGA point meant
for the Lattice LFE5U-85F (156 MULT18X18D, 208 DP16KD): an 8x8 array with the fmax pipeline (``mac_pipeline`` 4:
every multiplier block registered on both sides) and one block per PE in every mode. Measured
(``npuforge synth --unit npu --preset ecp5-85f --target ecp5 --pnr``, hierarchical, about 40 minutes of Yosys):
it does **not** fit yet: 188 MULT18X18D (array 64, vector unit 108, requant 8, control 5, DMA 3) and 212 DP16KD
(scratchpad 128, vector 34, accumulator 32, requant 18), 75,494 LUTs; place and route is skipped.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PRESETS", "preset"]

#: name -> {"array": ArrayConfig fields, "npu": NPUConfig fields (without ``array``)}.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "ecp5-85f": {
        "array": {"rows": 8, "cols": 8, "dataflow": "ws", "precisions": ("int8", "w4a8", "int4", "w8a16", "w4a16"),
                  "mac_pipeline": 4},
        "npu": {"spad_bytes": 32 * 1024, "spad_banks": 4, "acc_bytes": 16 * 1024, "axi_data_bits": 64,
                "vector_lanes": 2, "vector_ops": ("softmax", "act", "residual", "gate")},
    },
}


def preset(name: str) -> dict[str, dict[str, Any]]:
    """The preset called ``name`` (``ValueError`` naming the allowed names otherwise)."""
    if name not in PRESETS:
        raise ValueError(f"--preset must be one of {', '.join(PRESETS)}, got {name!r}")
    return PRESETS[name]
