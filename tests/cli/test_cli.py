"""`npuforge` CLI: dispatch, and bad input -> exactly one line on stderr naming the value, exit code 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from npuforge.cli.main import available_subcommands, main
from tests.conftest import REPO as ROOT


def _run(capsys, argv):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


BAD_INPUT = [
    # (argv, words the one-line message must contain)
    (["gen", "--rows", "0"], ["rows", "[1, 64]", "0"]),
    (["gen", "--cols", "65"], ["cols", "[1, 64]", "65"]),
    (["gen", "--precisions", "int8,fp16"], ["precision", "int8, w4a8, int4", "'fp16'"]),
    (["gen", "--dataflow", "is"], ["dataflow", "ws, os, both", "'is'"]),
    (["gen", "--acc-width", "16", "--max-k", "4096"], ["acc_width 16", "max_k=4096", "need >="]),
    (["gen", "--rows", "two"], ["--rows", "'two'"]),
    (["synth", "--target", "xilinx"], ["target", "ecp5, ice40, generic", "'xilinx'"]),
    (["synth", "--unit", "gpu"], ["unit", "array", "'gpu'"]),
    (["synth", "--target", "generic", "--pnr"], ["--pnr", "ecp5", "'generic'"]),
    (["run", "layer", "--phase", "train"], ["--phase", "prefill, decode", "'train'"]),
    (["run", "layer", "--model", "no/such/checkpoint"], ["--model", "smollm2", "'no/such/checkpoint'"]),
    (["run", "layer", "--backend", "fpga"], ["--backend", "rtl, isa", "'fpga'"]),
    (["run", "layer", "--phase", "decode"], ["--phase", "prefill", "BERT encoder"]),
    (["run", "workload"], ["workload", "gemm, layer", "'workload'"]),
    (["demo", "--rows", "1"], ["--rows", "4, 8, 16", "1"]),
    (["demo", "--axi-bits", "32"], ["--axi-bits", "64 or 128", "32"]),
    (["demo", "--llm-rtl-phases", "-1"], ["--llm-rtl-phases", ">= 0", "-1"]),
    (["perf", "--model", "gpt-5"], ["model", "qwen2-0.5b", "'gpt-5'"]),
    (["perf", "--clock-mhz", "-100"], ["clock_mhz", "> 0", "-100"]),
    (["perf", "--dram-gbps", "-1"], ["dram_gbps", "> 0", "-1"]),
    (["perf", "--dram-gbps", "0"], ["dram_gbps", "> 0", "0"]),
    (["perf", "--mode", "int2"], ["mode", "int8, w4a8, int4", "'int2'"]),
    (["perf", "--prompt", "600", "--context", "512"], ["context", ">= prompt", "512"]),
    (["perf", "--gemm", "8x8"], ["--gemm", "MxKxN", "'8x8'"]),
    (["perf", "--precisions", "int8", "--mode", "int4"], ["mode 'int4'", "supported: int8"]),
    (["sweep", "--sizes", "0,4"], ["--sizes", "[1, 64]", "'0'"]),
    (["sweep", "--macs", "fp8"], ["--macs", "int8, scalable", "'fp8'"]),
    (["sweep", "--shapes", "4by8"], ["--shapes", "ROWSxCOLS", "'4by8'"]),
    (["gen", "--unit", "gpu"], ["--unit", "array, npu", "'gpu'"]),
    (["gen", "--unit", "npu", "--axi-bits", "48"], ["axi_data_bits", "32, 64, 128, 256", "48"]),
    (["gen", "--unit", "npu", "--vector-ops", "softmax,gelu"], ["vector_ops", "layernorm", "'gelu'"]),
    (["gen", "--unit", "npu", "--spad-kib", "3"], ["spad_bytes", "[4096, 1048576]", "3072"]),
    (["synth", "--unit", "npu", "--windows", "17"], ["windows", "[1, 16]", "17"]),
    (["run", "gemm", "--vector-lanes", "3"], ["vector_lanes", "power of two", "3"]),
    (["run", "gemm", "--mode", "w9a16"], ["--mode", "int8, w4a8, int4, w8a16, w4a16", "'w9a16'"]),
    (["run", "gemm", "--mode", "w8a16", "--k", "512"], ["K must be in [1, 511]", "w8a16", "512"]),
    (["run", "gemm", "--mode", "w4a16", "--k", "8192"], ["K must be in [1, 8191]", "w4a16", "8192"]),
    (["run", "gemm", "--mode", "w8a16", "--precisions", "int8"], ["mode 'w8a16'", "precisions: int8"]),
    (["run", "gemm", "--mode", "w4a16", "--cols", "3"], ["cols must be even for w4a16", "3"]),
    (["frobnicate"], ["invalid choice", "'frobnicate'"]),
]


@pytest.mark.parametrize("argv,words", BAD_INPUT, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_bad_input_one_line_exit_2(capsys, argv, words):
    code, out, err = _run(capsys, argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0], (w, lines[0])


def test_malformed_and_missing_toml(capsys, out_dir):
    bad = out_dir / "bad.toml"
    bad.write_text("[array]\nrows = = 4\n")
    code, _, err = _run(capsys, ["gen", "--config", str(bad), "-o", str(out_dir)])
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "not valid TOML" in err and "bad.toml" in err
    code, _, err = _run(capsys, ["gen", "--config", str(out_dir / "absent.toml")])
    assert code == 2 and "does not exist" in err and len(err.strip().splitlines()) == 1
    unknown = out_dir / "unknown.toml"
    unknown.write_text("[array]\nrowz = 4\n")
    code, _, err = _run(capsys, ["gen", "--config", str(unknown)])
    assert code == 2 and "'rowz'" in err


def test_subprocess_bad_input_has_no_traceback():
    """The real entry point (`python -m npuforge.cli.main`), as `make gen` calls it."""
    proc = subprocess.run([sys.executable, "-m", "npuforge.cli.main", "gen", "--rows", "0"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["npuforge gen: error: rows must be in [1, 64], got 0"]
    assert proc.stdout == ""


def test_lists_only_existing_subcommands(capsys):
    names = available_subcommands()
    for mine in ("gen", "synth", "sweep", "perf"):
        assert mine in names
    assert "run" not in names or (ROOT / "cli" / "cmd_run.py").exists()
    code, out, err = _run(capsys, ["--help"])
    assert code == 0
    for n in names:
        assert n in out
    code, _, err = _run(capsys, [])
    assert code == 2  # no subcommand: usage on stderr


def test_perf_json_contract(capsys, out_dir):
    import json

    code, out, _ = _run(capsys, ["perf", "--model", "tinyllama-1.1b", "--rows", "16", "--cols", "16", "--mode",
                                 "w4a8", "--clock-mhz", "250", "--dram-gbps", "25.6", "--prompt", "64",
                                 "--context", "256", "--json", "-o", str(out_dir)])
    assert code == 0
    res = json.loads(out)
    for key in ("prefill_tokens_per_s", "decode_tokens_per_s", "ttft_s"):
        assert isinstance(res[key], float) and res[key] > 0
    assert res["decode_bound"] in ("memory", "compute")
    assert (out_dir / "roofline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out_dir / "perf.json").read_text())["ttft_s"] == res["ttft_s"]
