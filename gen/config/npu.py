"""NPU system configuration: the PE array plus on-chip memories, the AXI bus and the vector unit.

One frozen, validated object per design point (copy it with :func:`dataclasses.replace` for sweeps). Every bad
value raises :class:`gen.config.array.ConfigError` with a one-line message naming the value and the allowed range.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from npuforge.spec.block_scale import ACC_EXT_BYTES, BLOCK, BLOCK_MODES
from npuforge.gen.config.array import ArrayConfig, ConfigError, _check_int, check_keys, read_toml
from npuforge.spec.dataflow import NPU_DATAFLOW_CHOICES
from npuforge.spec.isa import ADDR_BITS, VEC_EXECUTABLE
from npuforge.rtl.memories import read_words_for

__all__ = ["NPUConfig", "AXI_DATA_BITS", "DEFAULT_VECTOR_OPS"]

#: The vector operators a default NPU is built with (see ``NPUConfig.vector_ops``).
DEFAULT_VECTOR_OPS = ("softmax", "act", "residual", "gate")

AXI_DATA_BITS = (32, 64, 128, 256)
_LOCAL_MAX = 1 << ADDR_BITS  # the ISA's 20-bit local addresses


def _pow2(name: str, value: Any, lo: int, hi: int) -> int:
    _check_int(name, value, lo, hi)
    if value & (value - 1):
        raise ConfigError(f"{name} must be a power of two in [{lo}, {hi}], got {value!r}")
    return value


@dataclass(frozen=True)
class NPUConfig:
    """One NPU design point.

    Parameters
    ----------
    array : ArrayConfig
        The PE array (rows, cols, dataflow, precisions). Its ``acc_width`` must be 32: the accumulator SRAM,
        the DMA and the requant unit hold int32.
    spad_bytes : int
        Scratchpad size in bytes, a power of two in [4 KiB, 1 MiB] (20-bit ISA addresses).
    spad_banks : int
        Scratchpad banks, a power of two in [1, 16]; bank ``i`` holds the contiguous byte range
        ``[i * spad_bytes / spad_banks, (i + 1) * spad_bytes / spad_banks)`` so DMA and array use different banks.
    acc_bytes : int
        Accumulator SRAM size in bytes, a power of two in [1 KiB, 1 MiB].
    axi_data_bits : int
        AXI4 data width of the DMA, one of 32, 64, 128, 256.
    windows : int
        Number of host-programmed DMA address windows, 1..16.
    vector_lanes : int
        Elements per cycle of the vector unit, a power of two in [1, 64]. In the NPU it is capped at the
        scratchpad word (``axi_data_bits / 8`` int8 elements): the vector sequencer reads one word per cycle.
    vector_ops : tuple[str, ...]
        Vector operators (``spec.isa.VEC_EXECUTABLE``: softmax, layernorm, rmsnorm, act, residual, gate, rope) the
        NPU executes; () leaves the vector unit out. Any other vector opcode is ILLEGAL_INSTRUCTION. Default
        :data:`DEFAULT_VECTOR_OPS` (softmax, act, residual, gate): layernorm, rmsnorm and rope are opt-in, they
        cost +25 % Verilator build time on the default NPU and about 27k ECP5 LUTs / 144 MULT18 at 8 lanes
        (docs/isa.md, "Build cost").
    queue_depth : int
        Instructions each unit's queue holds, 2..64 (>= 2 so a MATMUL can wait behind a running one).
    block_scaled : bool
        Block-scaled MATMULs (``MATMUL.blocks``, ``VEC_REQUANT.wide``; ``spec.block_scale``): GGUF-style weights in
        blocks of 32 with 16-bit block multipliers, a 48-bit result. Adds the accumulator extension (16 bits per
        int32 element: ``acc_bytes / 2`` bytes) and the accumulator writer's block stage. Needs w8a16 or w4a16 in
        ``array.precisions``, the ws dataflow, ``array.rows`` dividing 32 (a k-fold inside one block) and
        ``4 * array.cols`` a multiple of the scratchpad word (an n-fold's records are whole words); with w4a16,
        ``array.rows >= 4`` (its codes are packed along K, two K rows per weight beat). Default
        False: ``blocks = 1`` / ``wide = 1`` are then ILLEGAL_INSTRUCTION.
    kv16 : bool
        ``MATMUL.b16``: an int16 B read one byte plane per MATMUL (the int16 K / V caches of the ``*-kv16``
        schemes: Q.K^T and P.V as two accumulating w8a16 MATMULs into the 48-bit accumulator; docs/isa.md). Needs
        ``block_scaled`` (the extension and the block stage). Executed by the ISA simulator and built by the RTL;
        an NPU without it traps ``b16 != 0`` as ILLEGAL_INSTRUCTION (and its Verilog is as before the option
        existed). Default False.
    """

    array: ArrayConfig = field(default_factory=ArrayConfig)
    spad_bytes: int = 256 * 1024
    spad_banks: int = 4
    acc_bytes: int = 64 * 1024
    axi_data_bits: int = 64
    windows: int = 4
    vector_lanes: int = 8
    queue_depth: int = 4
    vector_ops: tuple = DEFAULT_VECTOR_OPS
    block_scaled: bool = False
    kv16: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.array, ArrayConfig):
            raise ConfigError(f"array must be an ArrayConfig, got {type(self.array).__name__}")
        if self.array.acc_width != 32:
            raise ConfigError(f"array.acc_width must be 32 for the NPU (int32 accumulator SRAM), "
                              f"got {self.array.acc_width}")
        if "w4a16" in self.array.precisions and self.array.cols % 2:
            # w4a16 B rows hold two int4 weights per byte and an n-fold is ``cols`` columns: an odd ``cols`` would
            # start every other fold in the middle of a byte.
            raise ConfigError(f"array.cols must be even for w4a16 on the NPU (two int4 weights per scratchpad "
                              f"byte), got {self.array.cols}")
        if self.array.dataflow not in NPU_DATAFLOW_CHOICES:
            raise ConfigError(f"array.dataflow must be one of {', '.join(NPU_DATAFLOW_CHOICES)} for the NPU (its "
                              f"controller schedules weight-stationary MATMULs), got {self.array.dataflow!r}")
        _pow2("spad_bytes", self.spad_bytes, 4096, _LOCAL_MAX)
        _pow2("spad_banks", self.spad_banks, 1, 16)
        _pow2("acc_bytes", self.acc_bytes, 1024, _LOCAL_MAX)
        if self.axi_data_bits not in AXI_DATA_BITS:
            raise ConfigError(f"axi_data_bits must be one of {', '.join(map(str, AXI_DATA_BITS))}, "
                              f"got {self.axi_data_bits!r}")
        _check_int("windows", self.windows, 1, 16)
        _pow2("vector_lanes", self.vector_lanes, 1, 64)
        _check_int("queue_depth", self.queue_depth, 2, 64)
        if isinstance(self.vector_ops, str) or not isinstance(self.vector_ops, (tuple, list)):
            raise ConfigError(f"vector_ops must be a list of {', '.join(VEC_EXECUTABLE)}, got {self.vector_ops!r}")
        object.__setattr__(self, "vector_ops", tuple(self.vector_ops))
        for op in self.vector_ops:
            if op not in VEC_EXECUTABLE:
                raise ConfigError(f"vector_ops entries must be among {', '.join(VEC_EXECUTABLE)}, got {op!r}")
        if len(set(self.vector_ops)) != len(self.vector_ops):
            raise ConfigError(f"vector_ops lists an operator twice: {self.vector_ops!r}")
        # Canonical order, so one hardware design point has one config hash.
        object.__setattr__(self, "vector_ops", tuple(op for op in VEC_EXECUTABLE if op in self.vector_ops))
        if not isinstance(self.block_scaled, bool):
            raise ConfigError(f"block_scaled must be true or false, got {self.block_scaled!r}")
        if self.block_scaled:
            if not any(p in BLOCK_MODES for p in self.array.precisions):
                raise ConfigError(f"block_scaled needs {' or '.join(BLOCK_MODES)} in array.precisions (int16 "
                                  f"activations), got {self.array.precisions}")
            if self.array.dataflow == "os":
                raise ConfigError("block_scaled needs the ws dataflow (array.dataflow ws or both), got os")
            if BLOCK % self.array.rows:
                raise ConfigError(f"block_scaled needs array.rows dividing {BLOCK} (a k-fold inside one block), "
                                  f"got {self.array.rows}")
            if "w4a16" in self.array.precisions and self.array.rows < 4:
                # block-scaled w4a16 codes are K-packed: a weight beat writes two K rows (rtl.array row pairs)
                raise ConfigError(f"block_scaled with w4a16 needs array.rows >= 4 (two K rows per weight beat), "
                                  f"got {self.array.rows}")
            if (4 * self.array.cols) % (self.axi_data_bits // 8):
                # an n-fold's cols block records (4 bytes each) are whole scratchpad words of a record row
                raise ConfigError(f"block_scaled needs 4 * array.cols a multiple of the {self.axi_data_bits // 8}-byte "
                                  f"scratchpad word, got cols {self.array.cols}")
        if not isinstance(self.kv16, bool):
            raise ConfigError(f"kv16 must be true or false, got {self.kv16!r}")
        if self.kv16 and not self.block_scaled:
            raise ConfigError("kv16 (MATMUL.b16, the int16 KV cache) needs block_scaled (the 48-bit accumulator)")
        if self.spad_bytes // self.spad_banks < 16 * self.spad_word_bytes:
            raise ConfigError(f"spad_bytes / spad_banks must hold >= 16 scratchpad words of "
                              f"{self.spad_word_bytes} bytes, got {self.spad_bytes} / {self.spad_banks}")

    # -- derived figures -------------------------------------------------------------------------------
    @property
    def spad_word_bytes(self) -> int:
        """Scratchpad row granule (bytes) = one AXI data word, the DMA's local word (rtl/dma.py): DMA rows and
        tile rows start on it and their strides are rounded up to it."""
        return self.axi_data_bits // 8

    @property
    def sequencer_lanes(self) -> int:
        """Elements per cycle of the NPU's vector sequencer: ``vector_lanes`` capped at the scratchpad word (it
        reads one word per cycle)."""
        return min(self.vector_lanes, self.spad_word_bytes)

    @property
    def spad_read_words(self) -> int:
        """Scratchpad words per matmul operand read (``I``, rtl.memories.read_words_for): the array's operand
        beats (``rows`` / ``cols`` bytes) each come from one read of ``I`` consecutive words, 1 when a beat fits a
        word (e.g. 8x8 on 64-bit AXI), 2 for 16x16 on 64-bit AXI. With a 16-bit-activation mode an activation
        beat is ``2 * rows`` bytes (one int16 per PE row), so 8x8 on 64-bit AXI reads 2 words; with ``kv16`` a weight
        beat of MATMUL.b16 is ``2 * cols`` bytes (the int16 B row segment whose byte plane the array takes)."""
        w_beat = self.array.cols * (2 if self.kv16 else 1)     # kv16: an int16 B row segment per weight beat
        return read_words_for(self.spad_word_bytes, (self.array.rows * self.array.act_width // 8, w_beat))

    @property
    def acc_word_bytes(self) -> int:
        """Accumulator row granule (bytes), the same DMA local word (the DMA moves int32 rows in and out)."""
        return self.axi_data_bits // 8

    @property
    def axi_bytes(self) -> int:
        return self.axi_data_bits // 8

    def word_bytes(self, mem: str) -> int:
        """Local word of memory ``"spad"`` or ``"acc"``: DMA rows and tile rows start on this boundary."""
        return self.spad_word_bytes if mem == "spad" else self.acc_word_bytes

    def mem_bytes(self, mem: str) -> int:
        return self.spad_bytes if mem == "spad" else self.acc_bytes

    def local_stride(self, mem: str, row_bytes: int) -> int:
        """Local row stride of a ``row_bytes`` row: rounded up to the local word."""
        w = self.word_bytes(mem)
        return -(-row_bytes // w) * w

    @property
    def acc_ext_bytes(self) -> int:
        """Bytes of the accumulator extension (the high 16 bits of 48-bit block-scaled results; 0 without
        ``block_scaled``)."""
        return self.acc_bytes // 4 * ACC_EXT_BYTES if self.block_scaled else 0

    def supports(self, mode: str, dataflow: str) -> bool:
        """True when a MATMUL with this mode and dataflow runs on this NPU."""
        df_ok = self.array.dataflow == "both" or self.array.dataflow == dataflow
        return mode in self.array.precisions and df_ok

    # -- (de)serialisation -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["array"] = self.array.to_dict()
        if not self.block_scaled:
            # an NPU without the option serialises (and hashes, gen.build's caches) as before the option existed
            del d["block_scaled"]
        if not self.kv16:
            del d["kv16"]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "NPUConfig":
        check_keys(cls, data, "NPU config")
        data = dict(data)
        if isinstance(data.get("array"), Mapping):
            data["array"] = ArrayConfig.from_dict(data["array"])
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> "NPUConfig":
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_toml(cls, path: str | Path) -> "NPUConfig":
        """Load ``[npu]`` (system keys) and ``[array]`` (ArrayConfig keys) from a TOML file."""
        data = read_toml(path)
        npu = dict(data.get("npu", {}))
        if "array" in data:
            npu["array"] = data["array"]
        return cls.from_dict(npu)

    def with_overrides(self, **overrides: Any) -> "NPUConfig":
        """Copy with the given fields changed (None values ignored); array fields go through ``array=``."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})
