"""A golden BERT encoder lowered to NPU layer programs (gen.lower.bert), on the ISA simulator: the tiny BERT
checkpoint the model tests write (hidden 32, 4 heads, MLP 64, 2 layers), scheme w8a16. Three tiers agree: the
golden model's own integer path (golden.models.bert.int_layer), the layer program's operator-by-operator golden
reference, and the ISA simulator's memory, for every buffer."""

from __future__ import annotations

import numpy as np
import pytest

from npuforge.gen.config.array import ArrayConfig
from npuforge.gen.config.npu import NPUConfig
from npuforge.gen.lower.bert import bert_npu_config, bert_programs
from npuforge.gen.lower.execute import isasim_programs
from npuforge.golden.models import bert
from npuforge.golden.models.schemes import SCHEMES
from tests.golden.test_models import tiny_bert  # noqa: F401  (fixture)

CFG = bert_npu_config(4, 4, spad_bytes=16384, spad_banks=2, acc_bytes=4096, axi_data_bits=64, windows=2)
CFG_KV16 = bert_npu_config(4, 4, kv16=True, spad_bytes=16384, spad_banks=2, acc_bytes=4096, axi_data_bits=64,
                           windows=2)
SENTENCES = ["the cat sat on a mat", "a dog", "the dog sat on the mat . the cat ran fast on a mat ."]


@pytest.fixture(scope="module")
def tiny(tiny_bert):  # noqa: F811  (tiny_bert: the model tests' checkpoint and calibration peaks)
    ck, peaks = tiny_bert
    return bert.quantize_bert(ck, SCHEMES["w8a16"], peaks)


@pytest.fixture(scope="module")
def tiny_kv16(tiny_bert):  # noqa: F811
    """The best MiniLM scheme, w8a16-kv16: int16 K / V (MATMUL.b16 attention)."""
    ck, peaks = tiny_bert
    return bert.quantize_bert(ck, SCHEMES["w8a16-kv16"], peaks)


def golden_layers(m, ids) -> list[np.ndarray]:
    """int16 [T, H] after the embedding norm and after each layer, from the golden model's own path."""
    return [bert.int_layer_input(m, ids, i)[0] for i in range(len(m.layers) + 1)]


def as_bytes(x: np.ndarray) -> np.ndarray:
    return x.astype("<i2").view(np.uint8).reshape(x.shape[0], -1)


@pytest.mark.parametrize("scheme", ["w8a16", "w8a16-kv16"])
@pytest.mark.parametrize("sentence", SENTENCES)
def test_tiny_bert_on_the_isa_simulator_equals_the_golden_model(tiny, tiny_kv16, sentence, scheme):
    if scheme == "w8a16-kv16":
        tiny, cfg = tiny_kv16, CFG_KV16
    else:
        cfg = CFG
    ids, _ = bert.tokenize(tiny.ck, [sentence])
    prog, out = bert_programs(cfg, tiny, e=bert.int_embed(tiny, ids)[0])
    planes = {getattr(i, "b16", 0) for ops in prog.programs.values() for i in ops}
    assert planes == ({0, 1, 2} if scheme == "w8a16-kv16" else {0})
    assert list(prog.programs) == ["embed", "layer0", "layer1"]
    want = golden_layers(tiny, ids)
    ref = prog.reference()
    assert np.array_equal(ref["emb.x"], as_bytes(want[0]))
    assert np.array_equal(ref["l0.out"], as_bytes(want[1]))
    assert np.array_equal(ref[out], as_bytes(want[2]))
    memory, results = isasim_programs(prog)
    for name in prog.buffers():
        assert np.array_equal(prog.read(memory, name), ref[name]), name
    # the program's MACs are the layer's products; a b16 plane pair runs each int16 x int16 product twice
    stats = results["layer1"].stats
    assert stats["macs"] - stats.get("macs_b16", 0) // 2 == prog.macs_of("layer1") > 0


def test_one_layer_from_its_input(tiny):
    ids, _ = bert.tokenize(tiny.ck, [SENTENCES[0]])
    want = golden_layers(tiny, ids)
    prog, out = bert_programs(CFG, tiny, x=want[1], layers=range(1, 2))
    assert list(prog.programs) == ["layer1"] and out == "l1.out"
    memory, _ = isasim_programs(prog)
    assert np.array_equal(prog.read(memory, out), as_bytes(want[2]))


def test_refusals_name_the_missing_piece(tiny, tmp_path):
    ids, _ = bert.tokenize(tiny.ck, [SENTENCES[1]])
    e = bert.int_embed(tiny, ids)[0]
    with pytest.raises(ValueError, match="vector operators .*missing layernorm"):
        bert_programs(NPUConfig(array=ArrayConfig(rows=4, cols=4, precisions=("int8", "w8a16")),
                                vector_ops=("softmax", "act", "residual")), tiny, e=e)
    with pytest.raises(ValueError, match="MATMUL modes .*missing w8a16"):
        bert_programs(NPUConfig(vector_ops=("softmax", "layernorm", "act", "residual")), tiny, e=e)
    other = bert.quantize_bert(tiny.ck, SCHEMES["w8a16-kv16"], bert.calibrate_bert(tiny.ck, ["a dog"]))
    with pytest.raises(ValueError, match="int16 K / V: the NPU must be built with kv16"):
        bert_programs(CFG, other, e=e)
    a8 = bert.quantize_bert(tiny.ck, SCHEMES["w8a8"], bert.calibrate_bert(tiny.ck, ["a dog"]))
    with pytest.raises(ValueError, match="scheme must be one the NPU runs for BERT \\(w8a16, w8a16-kv16\\), got "
                                         "'w8a8'"):
        bert_programs(CFG, a8, e=e)
    with pytest.raises(ValueError, match="layers must be a non-empty range within \\[0, 2\\)"):
        bert_programs(CFG, tiny, e=e, layers=range(1, 3))
    with pytest.raises(ValueError, match="exactly one of e"):
        bert_programs(CFG, tiny)
    with pytest.raises(ValueError, match="input must be \\[T, 32\\]"):
        bert_programs(CFG, tiny, x=np.zeros((3, 16), np.int16))
