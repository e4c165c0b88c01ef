"""``npuforge run layer`` on a Llama (the tiny GGUF and Hugging Face checkpoints the tests write) on the ISA backend:
the JSON contract of a prefill and of decode steps after a cached context, bit-exact against the layer program's
golden operators and the golden model's own layer, and bad input (exit 2, one line naming the value). The RTL run of
the same command is tests/rtl/npu/test_llama_cocotb.py."""

from __future__ import annotations

import json

import pytest

from npuforge.cli.main import main
from npuforge.golden.models import llama
from tests.golden import tiny_models as tm

LAYER_KEYS = ["cycles", "macs", "utilization", "bus_efficiency", "bytes_moved", "predicted_cycles", "bit_exact",
              "mismatches", "model", "layer", "phase", "tokens", "context", "scheme", "backend", "harness",
              "sim_wall_s", "golden_mismatches"]
TEXT = "the cat sat on the mat . " * 12          # 84 tokens of the tiny vocabulary, past its 64 positions
NPU = ["--rows", "4", "--cols", "4", "--spad-kib", "16", "--spad-banks", "2", "--acc-kib", "4", "--windows", "2"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    tm.write_tiny_gguf(root / "tiny.gguf")
    (root / "hf").mkdir()
    tm.write_tiny_hf_llama(root / "hf", llama.load_llama(root / "tiny.gguf"))
    return root


def _run(capsys, argv):
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def _layer(files, tmp_path, model: str, *extra: str) -> list[str]:
    return ["run", "layer", "--model", str(files / model), "--backend", "isa", "--text", TEXT, "--cache-dir",
            str(tmp_path), "--json", *NPU, *extra]


@pytest.mark.parametrize("model, scheme", [("tiny.gguf", "w4a16"), ("hf", "w8a16")])
def test_llama_prefill_and_decode_json_contract(files, capsys, tmp_path, model, scheme):
    """A prefill of 11 tokens at layer 1, then 3 decode steps after a context of 40 cached tokens: every output equal
    to the golden operators' and the golden model's layer, MACs and bytes from the programs, cycles the cycle
    model's (ISA backend)."""
    rc, out, err = _run(capsys, _layer(files, tmp_path, model, "--layer", "1", "--tokens", "11", "--scheme",
                                       scheme))
    assert rc == 0, err
    pre = json.loads(out)
    assert list(pre) == LAYER_KEYS
    assert pre["bit_exact"] and pre["mismatches"] == 0 and pre["golden_mismatches"] == 0
    assert (pre["phase"], pre["tokens"], pre["context"], pre["scheme"], pre["layer"]) == ("prefill", 11, 0, scheme, 1)
    assert pre["backend"] == "isa" and pre["harness"] is None and pre["cycles"] == pre["predicted_cycles"] > 0
    c = tm.LLAMA
    proj = c.hidden * (c.heads + 2 * c.kv_heads) * c.head_dim + c.heads * c.head_dim * c.hidden
    mlp = 3 * c.hidden * c.intermediate
    # linears, plus Q.K^T and P.V per query head over the 11 positions
    assert pre["macs"] == 11 * (proj + mlp) + 2 * c.heads * 11 * 11 * c.head_dim
    assert 0 < pre["utilization"] < 1 and 0 < pre["bus_efficiency"] < 1
    rc, out, err = _run(capsys, _layer(files, tmp_path, model, "--layer", "1", "--phase", "decode", "--tokens", "3",
                                       "--context", "40", "--scheme", scheme))
    assert rc == 0, err
    dec = json.loads(out)
    assert dec["bit_exact"] and dec["mismatches"] == 0 and dec["golden_mismatches"] == 0
    assert (dec["phase"], dec["tokens"], dec["context"]) == ("decode", 3, 40)
    # step s attends over the 40 cached positions and the s new ones
    assert dec["macs"] == 3 * (proj + mlp) + 2 * c.heads * c.head_dim * sum(40 + s for s in (1, 2, 3))


@pytest.mark.parametrize("extra, words", [
    (["--layer", "2"], ["--layer must be in [0, 1], got 2"]),
    (["--phase", "decode", "--context", "60", "--tokens", "5"], ["--context + --tokens", "[1, 64]", "60 + 5"]),
    (["--phase", "decode", "--context", "0"], ["--context must be >= 1", "got 0"]),
    (["--context", "8"], ["--context is the KV cache of --phase decode", "8"]),
    (["--scheme", "w8a8"], ["scheme must be one the NPU runs", "w8a16, w4a16", "'w8a8'"]),
    (["--scheme", "w8a16-kv16"], ["int16 KV cache", "must be built with kv16"]),
    (["--phase", "decode", "--tokens", "0", "--context", "4"], ["--context + --tokens", "4 + 0"]),
    (["--phase", "decode", "--context", "60", "--tokens", "1", "--text", "the cat"],
     ["at most the text's", "60 + 1"]),
])
def test_llama_bad_input_exit_2(files, capsys, tmp_path, extra, words):
    rc, out, err = _run(capsys, _layer(files, tmp_path, "hf", *extra))
    assert rc == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in lines[0], (w, lines[0])


def test_a_layer_that_differs_from_the_golden_model_exits_1(files, capsys, tmp_path, monkeypatch):
    """The third check is live: with the golden model's layer 1 made off by one (so the NPU's output, equal to the
    layer program's golden operators, no longer equals it), the run reports every element and exits 1."""
    real = llama.int_layer

    def off_by_one(m, index, r, cache, start):
        out = real(m, index, r, cache, start)
        return out + 1 if index == 1 else out

    monkeypatch.setattr(llama, "int_layer", off_by_one)
    rc, out, err = _run(capsys, _layer(files, tmp_path, "hf", "--layer", "1", "--phase", "decode", "--tokens", "2",
                                       "--context", "9"))
    assert rc == 1, err
    res = json.loads(out)
    assert not res["bit_exact"] and res["golden_mismatches"] == 2 * tm.LLAMA.hidden == res["mismatches"]
