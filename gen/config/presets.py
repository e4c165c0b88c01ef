"""Named design points (``--preset``): an array and NPU configuration chosen for a target device.

A preset is the base that ``--config`` files and explicit flags override. ``ecp5-85f`` is the FPGA point for the
Lattice LFE5U-85F (156 MULT18X18D, 208 DP16KD, 83,640 LUT/FF slots): an 8x8 array with the fmax pipeline
(``mac_pipeline`` 5: every multiplier block registered on both sides, a fabric register behind its output,
registered array edges), the three MAC modes the real models' quantization schemes use (int8, w8a16, w4a16: the
modes of ``npuforge demo``'s NPU; docs/quantization.md), a 32 KiB scratchpad, a 16 KiB accumulator, 64-bit AXI and a
2-lane vector unit with softmax, act, residual and gate.

Why these sizes (measured 2026-12-07, ``npuforge synth --unit npu --preset ecp5-85f --target ecp5 --no-cmos``, Yosys
only, hierarchical; README.md "ECP5 fmax"):

* Modes: with all five modes (w4a8 and int4 pack two or four products into each multiplier block) the array takes
  about 23,700 LUTs instead of about 4,500, and the NPU about 66,000 LUTs: nextpnr-ecp5 packed it into 87 % of the device's
  LUT slots and then failed to legalise its placement (``Unable to find legal placement`` after 30 minutes, seed 1).
  With int8, w8a16 and w4a16 the NPU takes about 41,000 LUTs (49 %) and places. ``--precisions`` adds w4a8/int4 back.
* Memories: with a 64 KiB scratchpad the NPU needed 212 DP16KD (the scratchpad 128: its four read ports make four
  copies); 32 KiB takes 64.
* Vector unit: it runs one operator at a time, so its operators share each lane's multipliers
  (``rtl.vector.mulpool``): residual's, gate's and rope's products ride on softmax's multipliers (the 16-bit tables
  keep their own small one, for timing), 17 MULT18X18D per lane against 30 unshared. The preset's vector unit
  (``npuforge synth --unit vector --preset ecp5-85f --target ecp5 --no-cmos``) takes 34 MULT18X18D, 11,145 LUTs,
  4,097 FFs and 46 DP16KD, against 60, 11,558, 4,097 and 46 without sharing; with 4 lanes 68 MULT18X18D against 120.
  Out of context (``--pnr --seed 1``) it routes at only 44.63 MHz (40.82 MHz without sharing): its operators'
  wide products and table interpolation are not pipelined for a 150 MHz clock, and they limit the NPU.
* Block RAM output registers are not used (a scratchpad read would take one cycle more).

BERT programs also need layernorm and Llama programs rmsnorm and rope (gen.lower): this preset leaves those out.
Rope takes part in the sharing and adds no multiplier block of its own (2 lanes, Yosys DSP count); the norms do not
share yet (an earlier estimate put the three at about 18 MULT18X18D per lane, docs/isa.md's 144 at 8 lanes; not
measured).
"""

from __future__ import annotations

from typing import Any

__all__ = ["PRESETS", "preset"]

#: name -> {"array": ArrayConfig fields, "npu": NPUConfig fields (without ``array``)}.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "ecp5-85f": {
        "array": {"rows": 8, "cols": 8, "dataflow": "ws", "precisions": ("int8", "w8a16", "w4a16"),
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
