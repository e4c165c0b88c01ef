"""golden.accuracy: the report's contract, the operator targets of issue 2, and the CLI (small shapes)."""

from __future__ import annotations

import json

import pytest

from npuforge.golden import accuracy
from npuforge.golden.checkpoint import write_random_checkpoint


@pytest.fixture(scope="module")
def small_report():
    return accuracy.run(small=True)


def test_contract_keys(small_report):
    assert set(small_report["operators"]) == set(accuracy.OPERATOR_NAMES)
    for entry in small_report["operators"].values():
        assert {"max_abs_err", "mean_abs_err", "input_bits"} <= set(entry)
        assert 0 <= entry["mean_abs_err"] <= entry["max_abs_err"]
    assert set(small_report["layers"]) == set(accuracy.LAYER_NAMES)
    for entry in small_report["layers"].values():
        assert {"cosine", "max_abs_err"} <= set(entry)
    assert small_report["setup"]["bert"]["weights"] == "random"
    assert small_report["setup"]["weight_statistics"]["weight_std"] == 0.02


def test_operator_targets(small_report):
    """Targets of issue 2, measured against the float twins."""
    ops = small_report["operators"]
    assert ops["requant"]["max_abs_err"] <= 0.5 + 1e-6           # one round-half-up step, in LSBs
    assert ops["softmax"]["input_bits"] == 16 and ops["softmax"]["max_abs_err"] <= 0.005
    for name in ("layernorm", "rmsnorm"):
        assert ops[name]["input_bits"] == 16 and ops[name]["max_abs_err"] <= 1e-3
        assert ops[name]["input_bits_8"]["max_abs_err"] <= 2e-2
    for name in ("gelu", "silu"):
        assert ops[name]["max_abs_err_lsb"] <= 0.5 + 1e-6
    assert ops["rope"]["max_abs_err_lsb"] <= 0.51               # Q1.14 table: 0.5 LSB + 2^-15 |x|


def test_layer_accuracy_small(small_report):
    layers = small_report["layers"]
    for name in ("bert-w8a8", "llama-w8a8"):
        assert layers[name]["cosine"] >= 0.99, name
    for name in ("bert-w4a8", "llama-w4a8"):
        assert layers[name]["cosine"] >= 0.95, name
    assert layers["llama-w8a8"]["update_cosine"] >= 0.95
    assert layers["llama-w8a8"]["decode_bit_exact"] is True and layers["llama-w4a8"]["decode_bit_exact"] is True


def test_cli_with_checkpoint(tmp_path, capsys):
    ckpt = write_random_checkpoint(tmp_path / "ckpt", accuracy.SMALL["llama"], seed=7)
    out = tmp_path / "acc.json"
    assert accuracy.main(["-o", str(out), "--checkpoint", str(ckpt), "--small", "--group-size", "64"]) == 0
    full = json.loads(out.read_text())
    assert list(full) == ["real_models", "random_weights"] and full["real_models"] is None  # --small: no models
    report = full["random_weights"]
    assert report["label"].startswith("RANDOM-WEIGHT SECTION")
    assert report["setup"]["llama"]["weights"] == f"{ckpt} layer 0"
    assert report["setup"]["bert"]["weights"] == "random"
    assert report["layers"]["llama-w4a8"]["group_size"] == 64
    printed = capsys.readouterr().out
    assert "llama-w8a8" in printed and "softmax" in printed


def test_cli_bad_checkpoint(tmp_path, capsys):
    assert accuracy.main(["-o", str(tmp_path / "a.json"), "--checkpoint", str(tmp_path), "--small"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no config.json" in err
    assert not (tmp_path / "a.json").exists()
