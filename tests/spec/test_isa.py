"""ISA encoding: round trips, hand-computed encodings from the docs/isa.md tables, every field's range check,
illegal words, and NPUConfig validation."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from npuforge.gen.config.array import ArrayConfig, ConfigError
from npuforge.spec.isa import (ROPE_MAX_HEAD_DIM, ROPE_POSITIONS, VEC_EXECUTABLE, encoding_tables, rope_positions,
                     vec_param_bytes, vec_param_ranges, vec_static_error)
from npuforge.spec.isa import (FORMATS, DmaLoad, DmaStore, Fence, Halt, MatMul, Nop, Opcode, VecOp, VecRequant, decode,
                     decode_program, decode_words, encode, encode_program, encode_words)
from npuforge.gen.config.npu import NPUConfig
from tests.conftest import REPO

U20 = st.integers(0, (1 << 20) - 1)
U32 = st.integers(0, (1 << 32) - 1)
TILE = st.integers(1, 4095)
S16 = st.integers(-(1 << 15), (1 << 15) - 1)
VEC_OPS = ("softmax", "layernorm", "rmsnorm", "act", "residual", "gate", "rope")


def _dma(cls):
    return st.builds(cls, mem=st.sampled_from(["spad", "acc"]), local_addr=U20, ext_addr=U32, ext_stride=U32,
                     rows=st.integers(1, 65535), row_bytes=st.integers(1, 65535))


COUNT = st.none() | st.integers(0, 255)
INSTRS = st.one_of(
    st.just(Nop()), st.just(Halt()),
    st.builds(Fence, load=COUNT, store=COUNT, matrix=COUNT, vector=COUNT),
    _dma(DmaLoad), _dma(DmaStore),
    st.builds(MatMul, mode=st.sampled_from(["int8", "w4a8", "int4"]), dataflow=st.sampled_from(["ws", "os"]),
              accumulate=st.integers(0, 1), m=TILE, k=TILE, n=TILE, a_addr=U20, b_addr=U20, acc_addr=U20),
    st.builds(VecRequant, m=TILE, n=TILE, src_addr=U20, dst_addr=U20, param_page=st.integers(0, 4095),
              zero_point=S16, out16=st.integers(0, 1)),
    st.builds(VecRequant, m=TILE, n=TILE, src_addr=U20, dst_addr=U20, param_page=st.integers(0, 4095),
              zero_point=S16, wide=st.integers(0, 1), row_shift=st.just(1), bias_addr=U20),
    st.builds(VecOp, op=st.sampled_from(VEC_OPS), m=TILE, n=TILE, src_addr=U20, dst_addr=U20, src2_addr=U20,
              param_page=st.integers(0, 4095), flags=st.integers(0, 255), imm=S16),
)


@settings(max_examples=400, deadline=None)
@given(INSTRS)
def test_encode_decode_round_trip(instr):
    data = encode(instr)
    assert len(data) == 16
    assert decode(data) == instr
    words = encode_words(instr)
    assert all(0 <= w < 1 << 32 for w in words)
    assert decode_words(words) == instr
    assert words[0] & 0xFF == data[0]  # opcode in w0[7:0], the first byte


@settings(max_examples=50, deadline=None)
@given(st.lists(INSTRS, max_size=20))
def test_program_round_trip(program):
    assert decode_program(encode_program(program)) == program


# Encodings computed by hand from the tables in docs/isa.md (not from the encoder).
HAND = [
    (Nop(), (0x01, 0, 0, 0)),
    (Halt(), (0x02, 0, 0, 0)),
    (Fence(load=0, matrix=1), (0x03 | (1 << 8) | (1 << 10), 1 << 16, 0, 0)),
    (Fence(store=7, vector=255), (0x03 | (1 << 9) | (1 << 11), (7 << 8) | (255 << 24), 0, 0)),
    (DmaLoad("spad", 0x40, 0x1000, 384, 64, 384), (0x10 | (0x40 << 12), 0x1000, 384, 64 | (384 << 16))),
    (DmaStore("acc", 0xFFFFF, 0xFFFFFFFF, 0, 65535, 1), (0x11 | (1 << 8) | (0xFFFFF << 12), 0xFFFFFFFF, 0, 65535 | (1 << 16))),
    (MatMul("w4a8", "os", 1, 64, 384, 4095, 0x100, 0x6000, 0x80),
     (0x20 | (1 << 8) | (1 << 10) | (1 << 11) | (64 << 20), 0x100 | (384 << 20), 0x6000 | (4095 << 20), 0x80)),
    (MatMul("int4", "ws", 0, 1, 1, 1, 0, 0, 0), (0x20 | (2 << 8) | (1 << 20), 1 << 20, 1 << 20, 0)),
    (MatMul("int8", "ws", 0, 2, 64, 3, 0, 0x40, 0x80, b_trans=1),
     (0x20 | (1 << 13) | (2 << 20), 64 << 20, 0x40 | (3 << 20), 0x80)),
    (VecRequant(m=3, n=5, src_addr=0x20, dst_addr=0x300, param_page=2, zero_point=-1, out16=1),
     (0x30 | (1 << 8) | (0xFFFF << 16), 0x20 | (3 << 20), 0x300 | (5 << 20), 2 << 20)),
    (VecRequant(m=3, n=5, src_addr=0x20, dst_addr=0x300, param_page=2, bias=1, bias_addr=0xFFFF8),
     (0x30 | (1 << 9), 0x20 | (3 << 20), 0x300 | (5 << 20), (2 << 20) | 0xFFFF8)),
    # row_shift w0[12] with wide w0[11]; bias_addr (the k_r bytes) in w3[19:0]
    (VecRequant(m=3, n=5, src_addr=0x20, dst_addr=0x300, param_page=2, wide=1, row_shift=1, bias_addr=0x808),
     (0x30 | (1 << 11) | (1 << 12), 0x20 | (3 << 20), 0x300 | (5 << 20), (2 << 20) | 0x808)),
    # vec.gate (0x36) flags 5: int16 operands, the exact int32 product (bit 2); vec.rmsnorm (0x33) flags 7: token scale
    (VecOp("gate", m=4, n=64, src_addr=0x100, dst_addr=0x400, src2_addr=0x200, flags=5),
     (0x36 | (5 << 8), 0x100 | (4 << 20), 0x400 | (64 << 20), 0x200)),
    (VecOp("rmsnorm", m=4, n=64, src_addr=0x100, dst_addr=0x400, src2_addr=0x200, flags=7),
     (0x33 | (7 << 8), 0x100 | (4 << 20), 0x400 | (64 << 20), 0x200)),
    (VecOp("rope", m=2, n=64, src_addr=1, dst_addr=2, src2_addr=3, param_page=4, flags=0x81, imm=7),
     (0x37 | (0x81 << 8) | (7 << 16), 1 | (2 << 20), 2 | (64 << 20), 3 | (4 << 20))),
]


@pytest.mark.parametrize("instr,words", HAND, ids=lambda x: type(x).__name__ if not isinstance(x, tuple) else "")
def test_hand_encodings(instr, words):
    assert encode_words(instr) == words
    assert decode_words(words) == instr
    assert encode(instr) == b"".join(w.to_bytes(4, "little") for w in words)


def test_vector_opcodes():
    for i, op in enumerate(VEC_OPS):
        assert encode_words(VecOp(op, m=1, n=1, src_addr=0, dst_addr=0))[0] == 0x31 + i


# Every numeric field and its range, from the spec (docs/isa.md), independent of spec/isa.py's tables.
RANGES = {
    DmaLoad: {"local_addr": (0, 2**20 - 1), "ext_addr": (0, 2**32 - 1), "ext_stride": (0, 2**32 - 1),
              "rows": (1, 65535), "row_bytes": (1, 65535)},
    MatMul: {"accumulate": (0, 1), "m": (1, 4095), "k": (1, 4095), "n": (1, 4095), "a_addr": (0, 2**20 - 1),
             "b_addr": (0, 2**20 - 1), "acc_addr": (0, 2**20 - 1), "b_trans": (0, 1),
             "blocks": (0, 1), "b16": (0, 2)},
    VecRequant: {"m": (1, 4095), "n": (1, 4095), "src_addr": (0, 2**20 - 1), "dst_addr": (0, 2**20 - 1),
                 "param_page": (0, 4095), "zero_point": (-32768, 32767), "out16": (0, 1), "out32": (0, 1), "bias": (0, 1),
                 "bias_addr": (0, 2**20 - 1), "wide": (0, 1), "row_shift": (0, 1)},
    VecOp: {"m": (1, 4095), "n": (1, 4095), "src_addr": (0, 2**20 - 1), "dst_addr": (0, 2**20 - 1),
            "src2_addr": (0, 2**20 - 1), "param_page": (0, 4095), "flags": (0, 255), "imm": (-32768, 32767)},
    Fence: {"load": (0, 255), "store": (0, 255), "matrix": (0, 255), "vector": (0, 255)},
}
RANGES[DmaStore] = RANGES[DmaLoad]
ENUMS = {DmaLoad: {"mem": ("spad", "acc")}, DmaStore: {"mem": ("spad", "acc")},
         MatMul: {"mode": ("int8", "w4a8", "int4", "w8a16", "w4a16"), "dataflow": ("ws", "os")}}
VALID = {
    DmaLoad: dict(mem="spad", local_addr=0, ext_addr=0, ext_stride=0, rows=1, row_bytes=1),
    # w8a16 with k = 32: b_trans = 1 (int8 B) and blocks = 1 (whole blocks) are each legal on it
    MatMul: dict(mode="w8a16", dataflow="ws", accumulate=0, m=1, k=32, n=1, a_addr=0, b_addr=0, acc_addr=0),
    VecRequant: dict(m=1, n=1, src_addr=0, dst_addr=0, param_page=0, bias=1),
    VecOp: dict(op="gate", m=1, n=1, src_addr=0, dst_addr=0),
    Fence: {},
}
VALID[DmaStore] = VALID[DmaLoad]
#: Fields whose valid instruction differs from VALID (row_shift and bias are exclusive).
VALID_FOR = {(VecRequant, "row_shift"): dict(VALID[VecRequant], bias=0)}
CASES = [(cls, name, lo, hi) for cls, table in RANGES.items() for name, (lo, hi) in table.items()]


@pytest.mark.parametrize("cls,name,lo,hi", CASES, ids=[f"{c.__name__}.{n}" for c, n, _, _ in CASES])
def test_field_range(cls, name, lo, hi):
    valid = VALID_FOR.get((cls, name), VALID[cls])
    for good in (lo, hi):
        cls(**{**valid, name: good})
    for bad in (lo - 1, hi + 1, "7", 1.5):
        with pytest.raises(ValueError, match=rf"{name}.*\[{lo}, {hi}\].*got"):
            cls(**{**valid, name: bad})


@pytest.mark.parametrize("cls", list(ENUMS))
def test_enum_fields(cls):
    for name, allowed in ENUMS[cls].items():
        for good in allowed:
            cls(**{**VALID[cls], name: good})
        with pytest.raises(ValueError, match=rf"{name} must be one of {', '.join(allowed)}, got 'bogus'"):
            cls(**{**VALID[cls], name: "bogus"})
    with pytest.raises(ValueError, match="op must be one of"):
        VecOp(**{**VALID[VecOp], "op": "conv"})


def test_every_field_is_range_tested():
    """The tables above cover every field of every format (new fields cannot skip the range test)."""
    for op, fmt in FORMATS.items():
        cls = {Opcode.DMA_LOAD: DmaLoad, Opcode.DMA_STORE: DmaStore, Opcode.MATMUL: MatMul,
               Opcode.VEC_REQUANT: VecRequant, Opcode.FENCE: Fence}.get(op, VecOp if op >= 0x31 else None)
        if cls is None:
            assert fmt == ()
            continue
        names = {f.name for f in fmt}
        if cls is Fence:
            names = {n.rsplit("_", 1)[0] for n in names}
        assert names <= set(RANGES[cls]) | set(ENUMS.get(cls, {})), (op, names)


def _words(instr):
    return list(encode_words(instr))


@pytest.mark.parametrize("words,pattern", [
    ([0, 0, 0, 0], r"opcode 0x00 is not defined"),
    ([0xFF, 0, 0, 0], r"opcode 0xff is not defined"),
    ([0x12, 0, 0, 0], r"opcode 0x12 is not defined"),
    ([0x01 | 1 << 8, 0, 0, 0], r"Nop: reserved bit w0\[8\]"),
    ([0x02, 0, 0, 1 << 31], r"Halt: reserved bit w3\[31\]"),
    ([0x03, 1, 0, 0], r"Fence.load_count must be 0 when load_en is 0"),
    ([0x03 | 1 << 12, 0, 0, 0], r"reserved bit w0\[12\]"),
    ([0x20 | 1 << 12 | 1 << 20, 1 << 20, 1 << 20, 0], r"mode encoding 4 is reserved"),
    ([0x20 | 1 << 12 | 2 << 8 | 1 << 20, 1 << 20, 1 << 20, 0], r"mode encoding 6 is reserved"),
    ([0x20, 1 << 20, 1 << 20, 0], r"MatMul.m must be in \[1, 4095\], got 0"),
    ([0x20 | 1 << 17 | 1 << 20, 1 << 20, 1 << 20, 0], r"reserved bit w0\[17\]"),
    ([0x20 | 1 << 14 | 1 << 20, 1 << 20, 1 << 20, 0], r"MatMul.blocks needs mode w8a16 or w4a16"),
    ([0x20 | 3 << 8 | 1 << 14 | 1 << 20, 33 << 20, 1 << 20, 0], r"MatMul.blocks needs k a multiple of 32 \(whole blocks\), got 33"),
    ([0x20 | 3 << 8 | 1 << 13 | 1 << 14 | 1 << 20, 32 << 20, 1 << 20, 0], r"blocks and b_trans are exclusive"),
    ([0x20 | 1 << 15 | 1 << 20, 1 << 20, 1 << 20, 0], r"MatMul.b16 needs mode w8a16"),
    ([0x20 | 3 << 8 | 1 << 10 | 2 << 15 | 1 << 20, 1 << 20, 1 << 20, 0], r"MatMul.b16 needs dataflow ws"),
    ([0x20 | 3 << 8 | 1 << 14 | 1 << 15 | 1 << 20, 32 << 20, 1 << 20, 0], r"b16 and blocks are exclusive"),
    ([0x20 | 3 << 8 | 3 << 15 | 1 << 20, 1 << 20, 1 << 20, 0], r"MatMul.b16 must be in \[0, 2\], got 3"),
    ([0x20 | 1 << 20, 1 << 20, 1 << 20, 1 << 20], r"reserved bit w3\[20\]"),
    ([0x10 | 1 << 9, 0, 0, 1 | 1 << 16], r"reserved bit w0\[9\]"),
    ([0x10, 0, 0, 1], r"row_bytes must be in \[1, 65535\], got 0"),
    ([0x30 | 1 << 13, 1 << 20, 1 << 20, 0], r"reserved bit w0\[13\]"),
    ([0x30 | 1 << 8 | 1 << 10, 1 << 20, 1 << 20, 0], r"out16 and out32 are exclusive"),
    ([0x30, 1 << 20, 1 << 20, 8], r"bias_addr must be 0 when bias and row_shift are 0, got 8"),
    ([0x30 | 1 << 9 | 1 << 12, 1 << 20, 1 << 20, 8], r"bias and row_shift are exclusive"),
])
def test_decode_rejects(words, pattern):
    with pytest.raises(ValueError, match=pattern):
        decode_words(words)


def test_decode_lengths():
    with pytest.raises(ValueError, match="16 bytes"):
        decode(b"\x01" * 15)
    with pytest.raises(ValueError, match="multiple of 16"):
        decode_program(b"\x01" * 17)
    with pytest.raises(ValueError, match=r"instruction 1: opcode 0x00"):
        decode_program(encode(Nop()) + bytes(16))
    with pytest.raises(ValueError, match="4 words"):
        decode_words([1, 0, 0])


# -- NPUConfig ----------------------------------------------------------------------------------------------
def test_npu_config_defaults_and_derived():
    cfg = NPUConfig()
    assert cfg.array == ArrayConfig()
    assert cfg.spad_word_bytes == 8 and cfg.acc_word_bytes == 8  # one 64-bit AXI word (the DMA's local word)
    wide = NPUConfig(axi_data_bits=256)
    assert wide.spad_word_bytes == 32 and wide.acc_word_bytes == 32
    assert cfg.local_stride("spad", 9) == 16 and cfg.local_stride("acc", 4) == 8
    assert wide.local_stride("spad", 33) == 64 and wide.local_stride("acc", 32) == 32
    assert NPUConfig.from_json(cfg.to_json()) == cfg
    assert cfg.supports("int8", "ws") and not cfg.supports("int8", "os")
    assert NPUConfig(array=ArrayConfig(dataflow="both")).supports("int4", "os")
    assert not NPUConfig(array=ArrayConfig(precisions=("int8",))).supports("w4a8", "ws")


@pytest.mark.parametrize("kw,pattern", [
    (dict(spad_bytes=3000), r"spad_bytes must be in \[4096, 1048576\], got 3000"),
    (dict(spad_bytes=12288), r"spad_bytes must be a power of two"),
    (dict(spad_bytes=2 << 20), r"spad_bytes must be in \[4096, 1048576\]"),
    (dict(spad_banks=3), r"spad_banks must be a power of two in \[1, 16\], got 3"),
    (dict(spad_banks=32), r"spad_banks must be in \[1, 16\], got 32"),
    (dict(acc_bytes=512), r"acc_bytes must be in \[1024, 1048576\], got 512"),
    (dict(axi_data_bits=48), r"axi_data_bits must be one of 32, 64, 128, 256, got 48"),
    (dict(windows=0), r"windows must be in \[1, 16\], got 0"),
    (dict(windows=17), r"windows must be in \[1, 16\], got 17"),
    (dict(vector_lanes=3), r"vector_lanes must be a power of two in \[1, 64\], got 3"),
    (dict(queue_depth=1), r"queue_depth must be in \[2, 64\], got 1"),
    (dict(vector_ops="act"), r"vector_ops must be a list of softmax, layernorm, rmsnorm, act, residual, gate, rope, got 'act'"),
    (dict(vector_ops=("act", "norm")), r"vector_ops entries must be among softmax, layernorm, rmsnorm, act, residual, gate, rope, got 'norm'"),
    (dict(vector_ops=("gate", "gate")), r"vector_ops lists an operator twice"),
    (dict(array=ArrayConfig(acc_width=40)), r"array.acc_width must be 32"),
    (dict(array="8x8"), r"array must be an ArrayConfig"),
    (dict(spad_bytes=4096, spad_banks=16, axi_data_bits=256), r"spad_bytes / spad_banks must hold >= 16"),
])
def test_npu_config_errors(kw, pattern):
    with pytest.raises(ConfigError, match=pattern) as err:
        NPUConfig(**kw)
    assert "\n" not in str(err.value)


def test_npu_config_unknown_key():
    with pytest.raises(ConfigError, match="unknown NPU config key 'banks'"):
        NPUConfig.from_dict({"banks": 2})


def test_npu_config_toml(tmp_path):
    path = tmp_path / "npu.toml"
    path.write_text('[array]\nrows = 16\ncols = 16\ndataflow = "both"\n\n[npu]\naxi_data_bits = 128\nwindows = 2\n')
    cfg = NPUConfig.from_toml(path)
    assert cfg == NPUConfig(array=ArrayConfig(rows=16, cols=16, dataflow="both"), axi_data_bits=128, windows=2)
    path.write_text("[npu]\naxi_data_bits = 100\n")
    with pytest.raises(ConfigError, match="axi_data_bits must be one of 32, 64, 128, 256, got 100"):
        NPUConfig.from_toml(path)
    with pytest.raises(ConfigError, match="does not exist"):
        NPUConfig.from_toml(tmp_path / "missing.toml")


def test_npu_config_vector_ops():
    assert NPUConfig().vector_ops == ("softmax", "act", "residual", "gate")
    cfg = NPUConfig(vector_ops=["gate", "act", "softmax"])
    assert cfg.vector_ops == ("softmax", "act", "gate")            # canonical order: one design point, one hash
    assert NPUConfig.from_json(cfg.to_json()) == cfg
    assert NPUConfig(vector_ops=()).vector_ops == ()


# -- vector operator rules ------------------------------------------------------------------------------------
def _vec(op, **kw):
    return VecOp(op, m=1, n=8, src_addr=0, dst_addr=0x40, **kw)


@pytest.mark.parametrize("instr,message", [
    (_vec("act"), None),
    (_vec("act", flags=1), None),
    (_vec("act", flags=2), None),                      # the 16-bit interpolated GELU table
    (_vec("act", flags=4), "vec.act flags must be 0..3 (bit 0: GELU 0 / SiLU 1 slot, bit 1: 16-bit interpolated "
                           "table), got 0x4"),
    (_vec("act", flags=0x81), "vec.act flags must be 0..3 (bit 0: GELU 0 / SiLU 1 slot, bit 1: 16-bit interpolated "
                              "table), got 0x81"),
    (_vec("act", imm=-1), "vec.act imm must be 0, got -1"),
    (_vec("act", src2_addr=8), "vec.act src2_addr must be 0, got 0x8"),
    (_vec("residual", imm=31, src2_addr=8), None),
    (_vec("residual", imm=0), None),                    # the shift's range is a run-time BAD_PARAM, not decode
    (_vec("residual", flags=1, imm=31), None),          # the int32 residual stream's add (wide)
    (_vec("residual", flags=2, imm=31), "vec.residual flags must be 0 (int8), or have bit 0 set (wide), got 0x2"),
    (_vec("residual", flags=0x81, imm=31),
     "vec.residual flags (wide) must have bits [7:6] 0 and width codes (bits [2:1], [4:3]) 0..2, got 0x81"),
    (_vec("gate", src2_addr=8), None),
    (_vec("gate", imm=3), "vec.gate imm must be 0, got 3"),
    (_vec("gate", flags=3), None),
    (_vec("gate", flags=5, param_page=9), None),        # the exact int32 product: the block is not read
    *[(_vec("gate", flags=f), "vec.gate flags must be 0..3 (bit 0: int16 operands, bit 1: int16 result) or 5 (bit "
                              f"2: the exact int32 product of int16 operands), got 0x{f:x}")
      for f in (4, 6, 7, 8, 0x0D)],
    (_vec("rmsnorm", flags=7, src2_addr=0x80), None),   # token scale only: src2_addr is the k_r bytes
    *[(_vec("rmsnorm", flags=f), "vec.rmsnorm flags bit 2 (token scale only) needs bits 0 (int32 rows) and 1 (int16 "
                                 f"output) and bits [7:3] 0, got 0x{f:x}") for f in (4, 5, 6, 0xF)],
    (_vec("rmsnorm", flags=7, param_page=1), "vec.rmsnorm param_page must be 0, got 1"),
    (_vec("rmsnorm", flags=7, imm=1), "vec.rmsnorm imm must be 0, got 1"),
    (_vec("rmsnorm", flags=8), "vec.rmsnorm flags must be 0..3 (bit 0 int32 rows, bit 1 int16 output) or 7 (bit 2: "
                               "token scale only), got 0x8"),
    (_vec("rmsnorm", flags=3, src2_addr=8), "vec.rmsnorm src2_addr must be 0, got 8"),
    (_vec("softmax"), None),
    (_vec("softmax", flags=1, imm=7), None),
    (_vec("softmax", flags=1), None),
    (_vec("softmax", flags=0x81, imm=7), "vec.softmax flags must have bits [7:5] 0 and score width code (bits [2:1]) 0..2, got 0x81"),
    (_vec("softmax", imm=7), "vec.softmax imm (causal row offset) must be 0, or >= 0 with flags bit 0 (causal) "
                             "set, got 7 with flags 0x0"),
    (_vec("softmax", flags=1, imm=-1), "vec.softmax imm (causal row offset) must be 0, or >= 0 with flags bit 0 "
                                       "(causal) set, got -1 with flags 0x1"),
    (_vec("softmax", src2_addr=8), "vec.softmax src2_addr must be 0, got 0x8"),
    (_vec("layernorm"), None),
    (_vec("rmsnorm"), None),
    (_vec("layernorm", flags=3), None),                # int32 rows, int16 output
    (_vec("layernorm", flags=4), "vec.layernorm flags must be 0..3 (bit 0 int32 rows, bit 1 int16 output), got 0x4"),
    (_vec("layernorm", flags=7), "vec.layernorm flags must be 0..3 (bit 0 int32 rows, bit 1 int16 output), got 0x7"),
    (_vec("rmsnorm", imm=-2), "vec.rmsnorm imm must be 0, got -2"),
    (_vec("layernorm", src2_addr=8), "vec.layernorm src2_addr must be 0, got 8"),
    (_vec("rope", flags=0x81, imm=7), None),
    (_vec("rope", imm=-1), "vec.rope imm (first position) must be >= 0, got -1"),
    (_vec("rope", src2_addr=8), "vec.rope src2_addr must be 0, got 0x8"),
    (VecOp("rope", m=1, n=7, src_addr=0, dst_addr=0), "vec.rope n (head_dim) must be even and in [2, 256], got 7"),
    (VecOp("rope", m=1, n=258, src_addr=0, dst_addr=0),
     "vec.rope n (head_dim) must be even and in [2, 256], got 258"),
    (VecOp("rope", m=8, n=8, src_addr=0, dst_addr=0), None),                    # 8 positions, one head each
    (VecOp("rope", m=9, n=8, src_addr=0, dst_addr=0), "vec.rope m must be <= 8 positions * heads (flags bits [5:0] + 1 = 1) "
                                                      "= 8, got 9"),
    (VecOp("rope", m=24, n=8, src_addr=0, dst_addr=0, flags=2), None),           # 8 positions x 3 heads
    (VecOp("rope", m=25, n=8, src_addr=0, dst_addr=0, flags=2),
     "vec.rope m must be <= 8 positions * heads (flags bits [5:0] + 1 = 3) = 24, got 25"),
])
def test_vec_static_error(instr, message):
    assert vec_static_error(instr) == message


def test_vec_static_error_rope_lanes():
    instr = VecOp("rope", m=1, n=24, src_addr=0, dst_addr=0)
    assert vec_static_error(instr, lanes=4) is None                 # halves of 12 = 3 beats of 4 lanes
    assert vec_static_error(instr, lanes=8) == ("vec.rope n (head_dim) must be a multiple of 2 * lanes = 16 on this "
                                                "NPU, got 24")
    assert vec_static_error(instr) is None                          # no lanes given: the ISA-level rules only


def test_vec_static_error_needs_a_vector_instruction():
    with pytest.raises(ValueError, match="not a vector instruction"):
        vec_static_error(Nop())


def test_vec_param_bytes():
    assert [vec_param_bytes(op) for op in ("softmax", "act", "residual", "gate")] == [8, 256, 8, 8]
    # Norms: 16-byte header + 8 (LayerNorm G int16 | B int48) or 2 (RMSNorm G int16) bytes per channel.
    assert vec_param_bytes("layernorm", 40) == 16 + 320 and vec_param_bytes("rmsnorm", 40) == 16 + 80
    assert vec_param_bytes("rope") == 16
    with pytest.raises(ValueError, match="op must be one of softmax, layernorm, rmsnorm, act, residual, gate, rope, "
                                         "got 'norm'"):
        vec_param_bytes("norm")


def test_vec_param_ranges():
    assert vec_param_ranges(_vec("layernorm")) == [(0, 16 + 8 * 8)]
    assert vec_param_ranges(_vec("act")) == [(0, 256)]
    # rope, head_dim 64 (a table row = 32 entries x 4 bytes = 128 bytes), 10 rows x 4 heads from position 5:
    # positions 5, 6, 7 -> bytes [16 + 5 * 128, 16 + 8 * 128).
    instr = VecOp("rope", m=10, n=64, src_addr=0, dst_addr=0, flags=3, imm=5)
    assert rope_positions(instr) == 3
    assert vec_param_ranges(instr) == [(0, 16), (16 + 5 * 128, 16 + 8 * 128)]
    assert (ROPE_MAX_HEAD_DIM, ROPE_POSITIONS) == (256, 8)


def test_pt_additions_read_no_block_and_have_their_widths():
    """The exact int32 gate product and the token-scale-only rmsnorm read no parameter block; their element widths
    (src, src2, dst bytes) and the k_r bytes the token scale writes beside its rows."""
    from npuforge.spec.vector_ops import by_name, gate_flags, gate_format
    gate, norm = _vec("gate", flags=5, src2_addr=0x80), _vec("rmsnorm", flags=7, src2_addr=0x80)
    assert vec_param_ranges(gate) == [] and vec_param_ranges(norm) == []
    assert by_name("gate").elem_bytes(gate) == (2, 2, 4)
    assert by_name("rmsnorm").elem_bytes(norm) == (4, 1, 2)
    m3 = VecOp("rmsnorm", m=3, n=8, src_addr=0, dst_addr=0x40, src2_addr=0x80, flags=7)
    assert by_name("rmsnorm").side_writes(m3) == [(0x80, 0x83)]
    assert by_name("rmsnorm").side_writes(_vec("rmsnorm", flags=3)) == []
    assert by_name("gate").param_error({"multiplier": 0, "shift": 99}, gate) is None     # not read, never BAD_PARAM
    assert by_name("gate").param_error({"multiplier": 0, "shift": 99}, _vec("gate", flags=3)) is not None
    assert gate_flags(16, 32) == 5 and gate_format(5) == (16, 32) and gate_format(3) == (16, 16)
    with pytest.raises(ValueError, match=r"out_bits must be 8, 16 or \(int16 operands\) 32, got 32 with in_bits 8"):
        gate_flags(8, 32)


def test_executable_vector_ops_keep_their_opcodes():
    assert VEC_EXECUTABLE == ("softmax", "layernorm", "rmsnorm", "act", "residual", "gate", "rope")
    for op, code in zip(VEC_EXECUTABLE, (0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37)):
        assert encode_words(_vec(op))[0] & 0xFF == code


def test_docs_encoding_tables_are_generated():
    """docs/isa.md's encoding tables are exactly spec.isa.encoding_tables() (regenerate: python -m npuforge.spec.isa)."""
    doc = (REPO / "docs" / "isa.md").read_text()
    assert doc.rstrip("\n").endswith(encoding_tables().rstrip("\n"))
    # Hand check of one generated row against the spec position of VEC_*.imm (w0[31:16], signed).
    assert "| imm | w0 | [31:16] | -32768..32767 signed |" in encoding_tables()


@pytest.mark.parametrize("mode", ["w8a16", "w4a16"])
def test_16bit_activation_modes_only_on_npus_built_with_them(mode):
    """An NPU without w8a16/w4a16 traps such a MATMUL as ILLEGAL_INSTRUCTION in the ISA simulator and its decoder
    keeps mode bit 2 (w0[12]) reserved (mode[1:0] = 3 is no mode it was built with, so both encodings trap); an NPU
    built with them decodes the whole 3-bit field and runs the MATMUL in either dataflow."""
    import numpy as np

    from npuforge.gen.build.npu import used_masks
    from npuforge.gen.config.array import ArrayConfig
    from npuforge.gen.config.npu import NPUConfig
    from npuforge.gen.isa.isasim import Window, run
    from npuforge.spec.isa import ErrorCode
    from npuforge.spec.precision import MODE_CODES

    instr = MatMul(mode=mode, dataflow="ws", accumulate=0, m=1, k=1, n=1, a_addr=0, b_addr=0x100, acc_addr=0)
    image, windows = np.zeros(0x1000, dtype=np.uint8), [Window(base=0, size=0x1000, read=True, write=True)]
    cfg = NPUConfig()
    res = run(cfg, encode(instr) + encode(Halt()), image, windows)
    assert res.status == ErrorCode.ILLEGAL_INSTRUCTION and res.pc == 0, (res.status, res.message)
    word0 = encode_words(instr)[0]
    assert (word0 >> 8) & 3 == 3 == MODE_CODES[mode] & 3          # never an 8-bit mode's low bits
    assert used_masks(cfg)[0x20] & (1 << 12) == 0                 # w0[12] reserved on this NPU
    wide = NPUConfig(array=ArrayConfig(dataflow="both", precisions=("int8", mode)))
    assert used_masks(wide)[0x20] & (1 << 12)
    assert run(wide, encode(instr) + encode(Halt()), image, windows).status == ErrorCode.NONE
    os_instr = MatMul(mode=mode, dataflow="os", accumulate=0, m=1, k=1, n=1, a_addr=0, b_addr=0x100, acc_addr=0)
    assert run(wide, encode(os_instr) + encode(Halt()), image, windows).status == ErrorCode.NONE


@pytest.mark.parametrize("mode, dataflow, ok", [("int8", "ws", True), ("w8a16", "ws", True), ("int8", "os", False),
                                                ("w4a8", "ws", False), ("int4", "ws", False), ("w4a16", "ws", False)])
def test_matmul_b_trans_needs_ws_and_int8_b(mode, dataflow, ok):
    """B^T [n, k] (Q.K^T) is defined for an int8 B on the weight-stationary schedule only; anything else is a
    reserved combination, refused by the constructor and by decode (ILLEGAL_INSTRUCTION)."""
    kw = dict(mode=mode, dataflow=dataflow, accumulate=0, m=1, k=1, n=1, a_addr=0, b_addr=0, acc_addr=0)
    if ok:
        assert decode(encode(MatMul(**kw, b_trans=1))).b_trans == 1
        return
    with pytest.raises(ValueError, match="b_trans needs dataflow ws and a mode with int8 B"):
        MatMul(**kw, b_trans=1)
    word = int.from_bytes(encode(MatMul(**kw)), "little") | 1 << 13
    with pytest.raises(ValueError, match="b_trans needs"):
        decode(word.to_bytes(16, "little"))
