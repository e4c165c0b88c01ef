"""Named design points (``--preset``): an array and NPU configuration chosen for a target device.

A preset is the base that ``--config`` files and explicit flags override. ``ecp5-85f`` is the FPGA point for the
Lattice LFE5U-85F (156 MULT18X18D, 208 DP16KD): an 8x8 array with the fmax pipeline (``mac_pipeline`` 5: every
multiplier block registered on both sides, a fabric register behind its output, registered array edges), one
block per PE in every mode, all five MAC modes, a 32 KiB scratchpad, a 16 KiB accumulator, 64-bit AXI and a
2-lane vector unit with softmax, act, residual and gate.

Why these sizes (measured, ``npuforge synth --unit npu --preset ecp5-85f --target ecp5 --pnr --no-cmos``): with a
64 KiB scratchpad and 4 vector lanes the NPU needed 188 MULT18X18D (vector unit 108) and 212 DP16KD (scratchpad
128: its four read ports make four copies). The vector unit's multipliers were per lane and per operator
(softmax's two exp engines 31x31 and its 23x33 normalisation product, residual's two 32x31 products, gate's 16x16 and
32x31 products: 30 MULT18X18D per lane), so 2 lanes took 60 and halving the scratchpad freed 64 DP16KD: 142
MULT18X18D and 160 DP16KD, 65,687 LUTs (2026-12-07, before the sharing below; table by unit in README.md); its fmax
is not measured yet (nextpnr's placement of its 62,123 cells takes longer than a session had: README.md "ECP5
fmax"). Block RAM output registers are not used (a scratchpad read would take one cycle more).
The vector unit runs one operator at a time, so its operators now share each lane's multipliers
(``rtl.vector.mulpool``): residual's and gate's products ride on softmax's multipliers (the 16-bit tables keep
their own small one, for timing), 17 MULT18X18D per lane. The preset's vector unit (``npuforge synth --unit vector
--preset ecp5-85f --target ecp5 --no-cmos``, Yosys only) takes 34 MULT18X18D, 11,145 LUTs, 4,097 FFs and 46
DP16KD, against 60, 11,558, 4,097 and 46 without sharing; with 4 lanes 68 MULT18X18D against 120. Out of context
(``--pnr --seed 1``) it routes at 44.63 MHz against 40.82 MHz without sharing. The whole NPU (``npuforge synth --unit
npu --preset ecp5-85f --target ecp5 --no-cmos``, Yosys only, hierarchical) takes 116 MULT18X18D, 160 DP16KD, 66,088
LUTs against 142, 160, 66,317 without sharing; with ``--vector-lanes 4`` 150 MULT18X18D, 172 DP16KD and 77,675 LUTs
(93 %) against 202 MULT18X18D: 4 lanes would now fit the device's multipliers (placement not tried).
BERT programs also need layernorm and Llama programs rmsnorm and rope (gen.lower): this preset leaves those out;
adding them (``--vector-ops``) costs about 18 MULT18X18D per lane more (docs/isa.md's 144 at 8 lanes; they do not
take part in the sharing yet), an estimate, not measured.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PRESETS", "preset"]

#: name -> {"array": ArrayConfig fields, "npu": NPUConfig fields (without ``array``)}.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "ecp5-85f": {
        "array": {"rows": 8, "cols": 8, "dataflow": "ws", "precisions": ("int8", "w4a8", "int4", "w8a16", "w4a16"),
                  "mac_pipeline": 5},
        "npu": {"spad_bytes": 32 * 1024, "spad_banks": 4, "acc_bytes": 16 * 1024, "axi_data_bits": 64,
                "vector_lanes": 2, "vector_ops": ("softmax", "act", "residual", "gate")},
    },
}


def preset(name: str) -> dict[str, dict[str, Any]]:
    """The preset called ``name`` (``ValueError`` naming the allowed names otherwise)."""
    if name not in PRESETS:
        raise ValueError(f"--preset must be one of {', '.join(PRESETS)}, got {name!r}")
    return PRESETS[name]
