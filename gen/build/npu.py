"""NPUConfig -> the :class:`rtl.npu.NPU` component, and its Verilog under ``build/``.

The one place that maps an :class:`~gen.config.npu.NPUConfig` to the NPU's RTL parameters: the instruction
decoder's reserved-bit masks come from :data:`spec.isa.FORMATS` (the ISA's single source of truth), so the
hardware traps exactly the words :func:`spec.isa.decode` rejects.
"""

from __future__ import annotations

from pathlib import Path

from npuforge.gen.build.elaborate import content_hash, emit_verilog_cached
from npuforge.spec.isa import FORMATS, Opcode
from npuforge.spec.precision import PRECISION_MODES
from npuforge.gen.config.npu import NPUConfig

__all__ = ["used_masks", "executed_opcodes", "build_npu", "npu_top_name", "emit_npu_verilog"]

#: Opcodes every NPU executes; ``NPUConfig.vector_ops`` adds its vector operators (VEC_SOFTMAX ... VEC_ROPE), every
#: other vector opcode decodes as ILLEGAL_INSTRUCTION.
EXECUTED = (Opcode.NOP, Opcode.HALT, Opcode.FENCE, Opcode.DMA_LOAD, Opcode.DMA_STORE, Opcode.MATMUL,
            Opcode.VEC_REQUANT)


def executed_opcodes(cfg: NPUConfig | None = None) -> tuple[Opcode, ...]:
    """Opcodes the NPU of ``cfg`` executes: :data:`EXECUTED` plus its ``vector_ops`` (None: EXECUTED only)."""
    vec = tuple(Opcode[f"VEC_{op.upper()}"] for op in cfg.vector_ops) if cfg is not None else ()
    return EXECUTED + vec


def used_masks(cfg: NPUConfig | None = None) -> dict[int, int]:
    """Opcode -> 128-bit mask of the opcode byte and every field bit of each instruction the NPU executes
    (``cfg`` None: the opcodes every NPU executes, without vector operators)."""
    wide = cfg is not None and any(PRECISION_MODES[p].wide_act for p in cfg.array.precisions)
    out = {}
    for op in executed_opcodes(cfg):
        mask = 0xFF
        for f in FORMATS[op]:
            if op == Opcode.MATMUL and f.name == "mode" and not wide:
                # Without 16-bit-activation modes the controller decodes mode[1:0] only: mode bit 2 (w0[12]) stays
                # reserved, so a w4a16 word (or a reserved code 4..6) traps as ILLEGAL_INSTRUCTION.
                mask |= f.place((1 << f.low_width) - 1)
            elif op == Opcode.MATMUL and f.name == "b16" and not (cfg is not None and cfg.kv16):
                # MATMUL.b16 (the int16 KV cache) is decoded only by an NPU built with kv16; elsewhere it stays a
                # reserved field: b16 != 0 traps as ILLEGAL_INSTRUCTION (and the Verilog of those NPUs is unchanged)
                continue
            else:
                mask |= f.mask
        out[int(op)] = mask
    return out


def build_npu(cfg: NPUConfig):
    """The NPU component of a design point (``ValueError``/``ConfigError`` naming a bad value)."""
    if not isinstance(cfg, NPUConfig):
        raise ValueError(f"cfg must be an NPUConfig, got {type(cfg).__name__}")
    from npuforge.rtl.npu import NPU

    return NPU(cfg, used_masks=used_masks(cfg))


def npu_top_name(cfg: NPUConfig) -> str:
    """Verilog top-module name: ``npu_`` + a hash of the config (one build folder per design point)."""
    return "npu_" + content_hash(cfg.to_json())[:10]


def emit_npu_verilog(cfg: NPUConfig, out_dir: Path | str | None = None) -> tuple[Path, str]:
    """Write the NPU's Verilog (only when it changed) and return ``(path, top_name)``; a configuration elaborated
    before from the same sources is not elaborated again (gen.build.elaborate.emit_verilog_cached)."""
    name = npu_top_name(cfg)
    out_dir = Path(out_dir) if out_dir is not None else Path(__file__).resolve().parents[2] / "build" / "npu"
    return emit_verilog_cached(lambda: build_npu(cfg), name=name, out_dir=out_dir, key=cfg.to_json()), name


def register_map() -> dict:
    """The AXI4-Lite register map of the NPU (from rtl/csr.py) as plain data for testbenches and drivers."""
    from npuforge.rtl.csr import COUNTERS, CTRL, IRQ, REG, STATUS, counter_reg, window_reg

    return {"reg": dict(REG), "ctrl": dict(CTRL), "status": dict(STATUS), "irq": dict(IRQ),
            "counters": {name: counter_reg(name) for name in COUNTERS},
            "window": {f: window_reg(0, f) for f in ("BASE", "SIZE", "PERM")}, "window_stride": 16}
