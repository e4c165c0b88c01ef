"""A BERT encoder (the tiny checkpoint of the model tests: hidden 32, 4 heads of 8, MLP 64, 2 layers; scheme
w8a16) lowered by gen.lower.bert and run on the NPU's Verilog, program after program (embedding LayerNorm, layer
0, layer 1) on the memory the previous one left: every buffer byte for byte equal to the golden layer program, the
whole DRAM image equal to the ISA simulator's, and the last layer's output equal to the golden model's own integer
path (golden.models.bert). Ragged lengths: 8 tokens, and the checkpoint's longest sequence (32) with random AXI
stalls. The w8a16 build of test_npu_qkt_cocotb.py
(same Verilator build, fast harness)."""

from __future__ import annotations

import numpy as np
import pytest

from npuforge.gen.lower.bert import bert_programs
from npuforge.golden.models import bert
from npuforge.sim.harness.npu_run import run_jobs, run_layer_programs
from tests.conftest import require_simulator
from tests.gen.lower.test_bert import as_bytes, golden_layers, tiny, tiny_bert, tiny_kv16  # noqa: F401  (fixtures)
from tests.rtl.npu.test_npu_qkt_cocotb import CFG16


#: 30 words + [CLS] + [SEP]: the tiny checkpoint's longest sequence (32 positions)
LONGEST = "the cat sat on the mat . " * 4 + "a dog"


@pytest.mark.cocotb
@pytest.mark.parametrize("sentence, stall, scheme", [("the cat sat on a mat", 0.0, "w8a16"), (LONGEST, 0.15, "w8a16"),
                                                     ("a dog ran on the mat", 0.1, "w8a16-kv16")])
def test_tiny_bert_on_the_rtl(tiny, tiny_kv16, sentence, stall, scheme):  # noqa: F811
    """w8a16, and w8a16-kv16 (int16 K / V: Q.K^T and P.V as MATMUL.b16 plane pairs, VEC_REQUANT.wide)."""
    require_simulator("verilator")
    if scheme == "w8a16-kv16":
        tiny = tiny_kv16
    ids, _ = bert.tokenize(tiny.ck, [sentence])
    assert ids.shape[1] == {0.0: 8, 0.15: tiny.ck.max_tokens}.get(stall, ids.shape[1])
    prog, out = bert_programs(CFG16, tiny, e=bert.int_embed(tiny, ids)[0])
    runs = run_layer_programs(prog, harness="fast", latency=3, stall=stall, seed=len(sentence))
    assert [name for name, _, _ in runs] == ["embed", "layer0", "layer1"]
    for name, res, memory in runs:
        assert not res["timeout"] and res["error"] == 0 and res["isasim_mismatch_bytes"] == 0, (name, res)
        want = prog.reference(upto=name)
        for buf in prog.buffers():
            assert np.array_equal(prog.read(memory, buf), want[buf]), (name, buf)
    assert np.array_equal(prog.read(runs[-1][2], out), as_bytes(golden_layers(tiny, ids)[-1]))


@pytest.mark.cocotb
def test_run_layer_cli_json_contract(tmp_path, capsys):
    """``npuforge run layer`` on the tiny checkpoint directory, on the same build (the CLI flags give CFG16): the JSON
    contract, bit-exact, and the bad-input path (a layer the model does not have: exit 2, one line)."""
    import json

    from npuforge.cli.main import main
    from tests.golden import tiny_models as tm

    require_simulator("verilator")
    tm.write_tiny_bert(tmp_path / "bert")
    flags = ["--model", str(tmp_path / "bert"), "--rows", "4", "--cols", "4", "--precisions", "int8,w8a16,w4a16",
             "--block-scaled", "--kv16",
             "--spad-kib", "16", "--spad-banks", "2", "--acc-kib", "4", "--windows", "2",
             "--vector-ops", "all", "--harness", "fast", "--cache-dir", str(tmp_path)]
    assert main(["run", "layer", "--layer", "1", "--tokens", "9", "--text", "the cat sat on the mat . a dog ran fast",
                 "--json", *flags]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out)[:8] == ["cycles", "macs", "utilization", "bus_efficiency", "bytes_moved", "predicted_cycles",
                             "bit_exact", "mismatches"]
    assert out["bit_exact"] and out["mismatches"] == 0 and out["tokens"] == 9 and out["layer"] == 1
    assert 0 < out["utilization"] < 1 and 0 < out["bus_efficiency"] < 1 and out["predicted_cycles"] > 0
    assert main(["run", "layer", "--layer", "2", *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--layer must be in [0, 1], got 2" in err


@pytest.mark.cocotb
def test_corrupted_layer_program_faults_then_the_next_runs(tiny):  # noqa: F811
    """A reserved bit set in one DMA instruction in the middle of a BERT layer program: ILLEGAL_INSTRUCTION with an
    error interrupt (the ISA simulator agrees), then, after the testbench's soft reset, the intact program runs
    bit-exact on the same simulator instance."""
    from npuforge.sim.harness.npu_run import program_job
    from npuforge.spec.isa import DmaLoad, ErrorCode, encode_program

    require_simulator("verilator")
    ids, _ = bert.tokenize(tiny.ck, ["a dog ran fast"])
    x = bert.int_layer_input(tiny, ids, 1)[0]
    prog, out = bert_programs(CFG16, tiny, x=x, layers=range(1, 2))
    program = prog.programs["layer1"]
    index = next(i for i in range(len(program) // 2, len(program)) if isinstance(program[i], DmaLoad))
    raw = bytearray(encode_program(program))
    raw[16 * index + 1] ^= 1 << 1                        # w0 bit 9: reserved in DMA_LOAD
    bad = program_job(CFG16, "corrupt", bytes(raw), prog.image, prog.windows)
    good = program_job(CFG16, "intact", encode_program(program), prog.image, prog.windows)
    assert bad.expect_status == ErrorCode.ILLEGAL_INSTRUCTION and good.expect_status == ErrorCode.NONE
    results = run_jobs(CFG16, [bad, good], harness="fast", latency=2, keep_memory=True)
    assert results[0]["error"] == ErrorCode.ILLEGAL_INSTRUCTION and results[0]["irq_status"] == 3
    assert results[0]["isasim_mismatch_bytes"] == 0
    assert results[1]["error"] == 0 and results[1]["irq_status"] == 1 and results[1]["isasim_mismatch_bytes"] == 0
    memory = results[1]["memory"]
    assert np.array_equal(prog.read(memory, out), as_bytes(bert.int_layer(tiny, 1, x[None])[0]))


@pytest.mark.cocotb
def test_embed_on_three_backends_identical(tmp_path, capsys):
    """``npuforge embed`` on the tiny checkpoint: golden, ISA simulator and RTL (fast harness, the CFG16 build) give
    the same embeddings, and the RTL run reports itself bit-exact against both golden tiers."""
    import json

    from npuforge.cli.main import main
    from tests.golden import tiny_models as tm

    require_simulator("verilator")
    tm.write_tiny_bert(tmp_path / "bert")
    base = ["embed", "--model", str(tmp_path / "bert"), "the cat sat on the mat", "a dog ran", "--json",
            "--scheme", "w8a16", "--cache-dir", str(tmp_path)]
    flags = ["--rows", "4", "--cols", "4", "--precisions", "int8,w8a16,w4a16", "--block-scaled", "--kv16", "--spad-kib", "16",
             "--spad-banks", "2",
             "--acc-kib", "4", "--windows", "2", "--vector-ops", "all", "--harness", "fast"]
    out = {}
    for backend in ("golden", "isa", "rtl"):
        assert main(base + ["--backend", backend] + (flags if backend != "golden" else [])) == 0, backend
        out[backend] = json.loads(capsys.readouterr().out)
    assert out["golden"]["embeddings"] == out["isa"]["embeddings"] == out["rtl"]["embeddings"]
    npu = out["rtl"]["npu"]
    assert npu["bit_exact"] and npu["matches_golden"] and npu["harness"] == "fast"
    assert all(s["cycles"] > 0 and s["mismatches"] == 0 for s in npu["sentences"])
