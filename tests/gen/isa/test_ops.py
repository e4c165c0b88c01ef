"""spec.vector_ops (descriptors, parameter-block records) and gen.isa.ops (the registry): byte layouts checked against
hand-built words from docs/isa.md, and each operator's block packed, decoded and executed against its golden op."""

from __future__ import annotations

import numpy as np
import pytest

from npuforge.gen.isa.layout import pack_records, read_records
from npuforge.gen.isa.ops import OPERATORS, operator
from npuforge.golden.activations import silu_table
from npuforge.golden.elementwise import gate_params, residual_params, rope_table
from npuforge.golden.norms import layernorm_params, rmsnorm_params
from npuforge.golden.softmax import softmax_params
from npuforge.spec.isa import Opcode, VecOp, encode_words
from npuforge.spec.vector_ops import (NORM_HEADER, REQUANT_RECORD, RESIDUAL_RECORD, ROPE_ENTRY, ROPE_HEADER,
                                      VECTOR_OPS, by_name, by_opcode, norm_channel)


# -- records: the byte layouts of docs/isa.md --------------------------------------------------------------------
def test_requant_record_bits():
    # multiplier bits [30:0], shift signed 7 bit at [37:31]: -3 = 0b1111101.
    word = 0x4000_0001 | (0b1111101 << 31)
    assert REQUANT_RECORD.pack(multiplier=0x4000_0001, shift=-3) == word.to_bytes(8, "little")
    # Bits [63:38] are ignored on read, as the hardware does.
    assert REQUANT_RECORD.unpack((word | 0xFF << 56).to_bytes(8, "little")) == {"multiplier": 0x4000_0001,
                                                                                "shift": -3}


def test_residual_record_bits():
    assert RESIDUAL_RECORD.pack(a_multiplier=5, b_multiplier=(1 << 31) - 1) == \
        (5 | ((1 << 31) - 1) << 31).to_bytes(8, "little")


def test_norm_header_bytes():
    raw = NORM_HEADER.pack(eps_term=(1 << 61) - 1, var_frac_bits=28, gamma_shift=-15)
    assert raw == ((1 << 61) - 1).to_bytes(8, "little") + bytes([28, 0xF1]) + bytes(6)
    # eps_term bits [63:61] and bytes [10, 16) are ignored.
    assert NORM_HEADER.unpack(bytes([0xFF] * 8) + bytes([4, 16]) + bytes([0xAA] * 6)) == \
        {"eps_term": (1 << 61) - 1, "var_frac_bits": 4, "gamma_shift": 16}


def test_rope_header_and_entry_bytes():
    assert ROPE_HEADER.pack(positions=0x0102_0304, frac_bits=14) == bytes([4, 3, 2, 1, 14]) + bytes(11)
    assert ROPE_ENTRY.pack(cos=-2, sin=0x1234) == bytes([0xFE, 0xFF, 0x34, 0x12])


def test_norm_channel_words():
    ln8 = norm_channel("layernorm")
    assert (ln8.nbytes, norm_channel("rmsnorm").nbytes) == (8, 2)
    # G int16 bits [15:0], B int48 bits [63:16].
    assert ln8.pack(gamma=-1, beta=-2) == (0xFFFF | (((1 << 48) - 2) << 16)).to_bytes(8, "little")
    ln16 = norm_channel("layernorm", 16)          # the operator's port word for int16 outputs: G 24 bit, B 56 bit
    assert ln16.to_int(gamma=-(1 << 23), beta=1) == (1 << 23) | (1 << 24)
    with pytest.raises(ValueError, match="kind must be 'layernorm' or 'rmsnorm', got 'norm'"):
        norm_channel("norm")


@pytest.mark.parametrize("values, message", [
    (dict(multiplier=1 << 31, shift=0), r"requant record.multiplier must be in \[0, 2147483647\], got 2147483648"),
    (dict(multiplier=1, shift=64), r"requant record.shift must be in \[-64, 63\], got 64"),
    (dict(multiplier=1), r"requant record.shift is missing"),
    (dict(multiplier=1, shift=0, zero=0), r"requant record has no field 'zero'"),
    (dict(multiplier=1.5, shift=0), r"must be an integer"),
])
def test_record_refuses_bad_values(values, message):
    with pytest.raises(ValueError, match=message):
        REQUANT_RECORD.pack(**values)


@pytest.mark.parametrize("record", [REQUANT_RECORD, RESIDUAL_RECORD, ROPE_ENTRY, norm_channel("layernorm"),
                                    norm_channel("rmsnorm")], ids=lambda r: r.name)
def test_numpy_records_match_the_scalar_pack(record):
    """gen.isa.layout's vectorised records give the bytes of spec.vector_ops' stdlib pack, field for field."""
    rng = np.random.default_rng(3)
    cols = {f.name: rng.integers(f.lo, f.hi, size=17, endpoint=True) for f in record.fields}
    cols = {k: np.concatenate([v, [record.field(k).lo, record.field(k).hi]]) for k, v in cols.items()}
    raw = pack_records(record, **cols)
    rows = [{k: int(v[i]) for k, v in cols.items()} for i in range(19)]
    assert bytes(raw) == record.pack_many(rows)
    back = read_records(record, raw)
    assert {k: v.tolist() for k, v in back.items()} == {k: v.tolist() for k, v in cols.items()}
    assert record.unpack_many(bytes(raw)) == rows


# -- descriptors ----------------------------------------------------------------------------------------------------
def test_descriptors_give_the_opcodes_and_blocks():
    assert [(op.name, op.opcode) for op in VECTOR_OPS] == [
        ("softmax", 0x31), ("layernorm", 0x32), ("rmsnorm", 0x33), ("act", 0x34), ("residual", 0x35),
        ("gate", 0x36), ("rope", 0x37)]
    for op in VECTOR_OPS:
        assert Opcode[f"VEC_{op.name.upper()}"] == op.opcode == by_opcode(op.opcode).opcode
        instr = VecOp(op.name, m=1, n=2, src_addr=0, dst_addr=0)
        assert encode_words(instr)[0] & 0xFF == op.opcode
    assert [by_name(n).param_bytes(10) for n in ("softmax", "layernorm", "rmsnorm", "act", "residual", "gate",
                                                 "rope")] == [8, 16 + 80, 16 + 20, 256, 8, 8, 16]
    assert [op.name for op in VECTOR_OPS if op.operands == 2] == ["residual", "gate"]
    with pytest.raises(ValueError, match="op must be one of softmax, .*, rope, got 'norm'"):
        by_name("norm")
    with pytest.raises(ValueError, match="opcode 0x38 is not a vector operator"):
        by_opcode(0x38)


def test_param_rules():
    rope = VecOp("rope", m=4, n=8, src_addr=0, dst_addr=0, flags=1, imm=5)   # positions 5, 6
    assert by_name("rope").param_error({"positions": 7, "frac_bits": 14}, rope) is None
    assert "positions 5..6 inside the table's 6" in by_name("rope").param_error({"positions": 6, "frac_bits": 14},
                                                                                rope)
    assert "frac_bits 0 must be in [1, 14]" in by_name("rope").param_error({"positions": 7, "frac_bits": 0}, rope)
    norm = VecOp("layernorm", m=1, n=8, src_addr=0, dst_addr=0)
    assert by_name("layernorm").param_error({"eps_term": 0, "var_frac_bits": 28, "gamma_shift": -15}, norm) is None
    assert by_name("layernorm").param_error({"eps_term": 0, "var_frac_bits": 27, "gamma_shift": 0}, norm)
    assert by_name("layernorm").param_error({"eps_term": 0, "var_frac_bits": 4, "gamma_shift": 17}, norm)
    gate = VecOp("gate", m=1, n=8, src_addr=0, dst_addr=0)
    assert by_name("gate").param_error({"multiplier": (1 << 30) - 1, "shift": 0}, gate)
    assert by_name("gate").param_error({"multiplier": 1 << 30, "shift": 31}, gate) is None
    res = VecOp("residual", m=1, n=8, src_addr=0, dst_addr=0, imm=63)
    assert by_name("residual").param_error({}, res) == "vec.residual shift (imm) 63 must be in [1, 62]"
    assert not by_name("residual").param_fault_at_block


# -- registry: pack -> decode -> golden --------------------------------------------------------------------------
def _case(name: str, rng):
    """(instruction fields, golden params, a, b) of a small instance of operator ``name``."""
    m, n = 4, 16
    a = rng.integers(-128, 128, size=(m, n)).astype(np.int8)
    b = rng.integers(-128, 128, size=(m, n)).astype(np.int8)
    if name == "softmax":
        return dict(flags=1, imm=2), softmax_params(0.07, input_bits=8), a, None
    if name == "layernorm":
        return {}, layernorm_params(0.05, rng.uniform(0.5, 1.5, n), rng.uniform(-0.5, 0.5, n), 0.04), a, None
    if name == "rmsnorm":
        return {}, rmsnorm_params(0.05, rng.uniform(0.5, 1.5, n), 0.04), a, None
    if name == "act":
        return dict(flags=1), silu_table(0.06, 0.04), a, None
    if name == "residual":
        p = residual_params(0.05, 0.03, 0.06)
        return dict(imm=p.shift), p, a, b
    if name == "gate":
        return {}, gate_params(0.05, 0.03, 0.1), a, b
    if name == "rope":
        return dict(flags=1, imm=3), rope_table(n, 6), a, None
    raise AssertionError(f"no test case for vector operator {name!r}: add one with its registry entry")


@pytest.mark.parametrize("name", [op.name for op in VECTOR_OPS])
def test_registry_executes_its_block_like_the_golden_operator(name):
    """Every descriptor has a registry entry whose block, decoded as the ISA simulator does, runs its golden op."""
    op = operator(name)
    assert op.spec is by_name(name) and OPERATORS[name] is op
    fields, params, a, b = _case(name, np.random.default_rng(7))
    m, n = a.shape
    if name == "residual":   # the instruction carries the residual's shift; other operators' imm is positional
        assert op.imm_of(params) == params.shift
    instr = VecOp(name, m=m, n=n, src_addr=0, dst_addr=0, src2_addr=0, **fields)
    assert op.spec.static_error(instr, lanes=4) is None
    block = op.block(params)
    (lo, hi), *table = op.spec.param_ranges(instr)
    assert block.size >= hi
    record = op.spec.record.unpack(bytes(block[:op.spec.header_bytes])) if op.spec.record is not None else {}
    assert op.spec.param_error(record, instr) is None
    items = block[table[0][0]:table[0][1]] if table else block[op.spec.header_bytes:hi]
    got = op.execute(instr, a, b, record, items)
    want = op.golden(a, b, params, flags=instr.flags, imm=instr.imm)
    assert np.array_equal(np.asarray(got).view(np.uint8), np.asarray(want).view(np.uint8))
