"""rtl.controller.Decoder on Amaranth's simulator for the -pt forms (issue #13), against the ISA's own rules
(``spec.isa.vec_static_error`` / ``spec.isa.decode``): every vec.gate and vec.rmsnorm flags value (gate 5 and rmsnorm 7
legal beside the old forms, 4 / 6 / 7 and 4 / 5 / 6 ILLEGAL, layernorm bit 2 ILLEGAL), the token scale's imm /
param_page rules and the LOCAL_RANGE of its k_r bytes (misaligned, past the scratchpad, exactly at its end), the exact
gate product's param_page not checked, and VEC_REQUANT.row_shift (with bias ILLEGAL, its k_r bytes' LOCAL_RANGE)."""

from __future__ import annotations

import pytest

from npuforge.gen.build.npu import used_masks
from npuforge.gen.config.array import ArrayConfig
from npuforge.gen.config.npu import NPUConfig
from npuforge.rtl.controller import Decoder
from npuforge.spec.isa import ErrorCode, VecOp, VecRequant, decode, encode, vec_static_error
from tests.rtl.test_controller_decode_amaranth import ACC_WORDS, SPAD_WORDS, WORD_BYTES, run_decoder

OPS = ("layernorm", "rmsnorm", "gate")
SPAD = SPAD_WORDS * WORD_BYTES


def _run(instrs):
    cfg = NPUConfig(array=ArrayConfig(), vector_ops=OPS)
    dut = Decoder(word_bytes=WORD_BYTES, spad_words=SPAD_WORDS, acc_words=ACC_WORDS, precisions=("int8",),
                  dataflows=("ws",), used_masks=used_masks(cfg), vector_ops=OPS, vector_lanes=8)
    return run_decoder(dut, [i if isinstance(i, int) else int.from_bytes(encode(i), "little") for i in instrs])


@pytest.mark.parametrize("op", OPS)
def test_every_flags_value_as_the_isa_rules(op):
    """flags 0..255 with the other fields as the form needs: ILLEGAL exactly when spec.isa says so."""
    instrs = []
    for flags in range(256):
        src2 = 0x800 if op == "gate" or (op == "rmsnorm" and flags & 4) else 0
        instrs.append(VecOp(op, m=2, n=8, src_addr=0, dst_addr=0x400, src2_addr=src2, flags=flags,
                            param_page=0 if op == "rmsnorm" and flags & 4 else 1))
    got = _run(instrs)
    for instr, (code, _) in zip(instrs, got):
        want = ErrorCode.ILLEGAL_INSTRUCTION if vec_static_error(instr, 8) else ErrorCode.NONE
        assert code == want, (op, instr.flags, code, vec_static_error(instr, 8))
    legal = [i.flags for i, (c, _) in zip(instrs, got) if c == ErrorCode.NONE]
    assert legal == {"layernorm": [0, 1, 2, 3], "rmsnorm": [0, 1, 2, 3, 7], "gate": [0, 1, 2, 3, 5]}[op]


def test_token_scale_fields_and_k_bytes_range():
    tok = dict(m=9, n=8, src_addr=0, dst_addr=0x400, flags=7)
    cases = [(VecOp("rmsnorm", src2_addr=0x800, **tok), (ErrorCode.NONE, 0)),
             (VecOp("rmsnorm", src2_addr=SPAD - 16, **tok), (ErrorCode.NONE, 0)),        # 9 bytes in the last 2 words
             (VecOp("rmsnorm", src2_addr=SPAD - 8, **tok), (ErrorCode.LOCAL_RANGE, SPAD - 8)),
             (VecOp("rmsnorm", src2_addr=0x804, **tok), (ErrorCode.LOCAL_RANGE, 0x804)),
             (VecOp("rmsnorm", src2_addr=0x800, param_page=1, **tok), (ErrorCode.ILLEGAL_INSTRUCTION, 0)),
             (VecOp("rmsnorm", src2_addr=0x800, imm=1, **tok), (ErrorCode.ILLEGAL_INSTRUCTION, 0)),
             # the exact gate product reads no block: a param_page past the scratchpad is not checked
             (VecOp("gate", m=2, n=8, src_addr=0, dst_addr=0x400, src2_addr=0x800, flags=5, param_page=4095),
              (ErrorCode.NONE, 0)),
             (VecOp("gate", m=2, n=8, src_addr=0, dst_addr=0x400, src2_addr=0x800, flags=1, param_page=4095),
              (ErrorCode.LOCAL_RANGE, 4095 * 256))]
    assert _run([i for i, _ in cases]) == [w for _, w in cases]


def test_requant_row_shift_fields():
    rq = dict(m=9, n=8, src_addr=0, dst_addr=0, param_page=1, row_shift=1)
    ok = VecRequant(bias_addr=0x800, **rq)
    both = int.from_bytes(encode(ok), "little") | (1 << 9)                  # bias with row_shift
    with pytest.raises(ValueError, match="exclusive"):
        decode(both.to_bytes(16, "little"))
    plain_addr = int.from_bytes(encode(ok), "little") & ~(1 << 12)         # bias_addr without either flag
    cases = [(ok, (ErrorCode.NONE, 0)), (VecRequant(bias_addr=0, **rq), (ErrorCode.NONE, 0)),
             (VecRequant(bias_addr=SPAD - 16, **rq), (ErrorCode.NONE, 0)),
             (VecRequant(bias_addr=SPAD - 8, **rq), (ErrorCode.LOCAL_RANGE, SPAD - 8)),
             (VecRequant(bias_addr=0x804, **rq), (ErrorCode.LOCAL_RANGE, 0x804)),
             (both, (ErrorCode.ILLEGAL_INSTRUCTION, 0)), (plain_addr, (ErrorCode.ILLEGAL_INSTRUCTION, 0))]
    assert _run([i for i, _ in cases]) == [w for _, w in cases]
