"""The native NPU harness (sim/harness/native.py, sim/native/): the same jobs as the fast cocotb harness give the
same cycles, counters, status and DRAM bytes; the DRAM bandwidth cap; bad input gives one line and exit 2;
a cycle limit is a result, not a hang.

One native build of the small NPU of tests/npu/test_npu_fast_cocotb.py (4x4 array, 64-bit AXI); the fast
harness's build of the same NPU is shared with that file.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from npuforge.cli.main import main as cli_main
from npuforge.gen.build.npu import emit_npu_verilog, register_map
from npuforge.gen.config.array import ArrayConfig
from npuforge.gen.config.npu import NPUConfig
from npuforge.gen.isa.gemm_program import compile_gemm
from npuforge.gen.isa.isasim import Window
from npuforge.sim.harness.native import NativeError, native_binary, npu_rtlil, run_script, write_script
from npuforge.sim.harness.native_train import trainer
from npuforge.sim.harness.npu_run import gemm_job, gemm_operands, program_job, run_jobs
from npuforge.spec.isa import INSTR_BYTES, Nop, encode_program
from tests.conftest import require_simulator

CFG = NPUConfig(array=ArrayConfig(rows=4, cols=4), spad_bytes=16384, spad_banks=2, acc_bytes=4096,
                axi_data_bits=64, windows=2)
CLI_CFG = ["--rows", "4", "--cols", "4", "--spad-kib", "16", "--spad-banks", "2", "--acc-kib", "4", "--windows", "2",
           "--axi-bits", "64"]


def _jobs():
    """GEMMs in every mode (one tiled, one with 16-bit outputs), a write outside its window (error status) and a
    soft reset in the middle of a GEMM, then one more GEMM (state carries over)."""
    a, b, mult, shift = gemm_operands(9, 12, 10, "int8", seed=40)
    comp = compile_gemm(CFG, a, b, mult, shift, mode="int8")
    ro = [comp.windows[0], Window(comp.windows[1].base, comp.windows[1].size, read=True, write=False)]
    fault = program_job(CFG, "store_outside_window", comp.program_bytes, comp.image, ro,
                        ring_size=comp.plan.program_bytes)
    reset = gemm_job(CFG, 17, 33, 21, "int8", seed=9, name="soft_reset")[0]
    reset.soft_reset_after = 300
    return [gemm_job(CFG, 17, 33, 21, "int8", seed=2)[0],
            gemm_job(CFG, 13, 20, 11, "int8", seed=3, tiles=(8, 8, 4), order="nm", name="tiled_nm")[0],
            gemm_job(CFG, 7, 19, 9, "int8", seed=4, out_bits=16, name="int8_out16")[0],
            gemm_job(CFG, 9, 64, 40, "w4a8", seed=5)[0],
            gemm_job(CFG, 11, 24, 18, "int4", seed=8)[0],
            fault, reset,
            gemm_job(CFG, 5, 16, 8, "int8", seed=6, name="after_reset")[0]]


@pytest.fixture(scope="module")
def build():
    require_simulator("verilator")
    path, top = emit_npu_verilog(CFG)
    return native_binary(path, top, CFG.axi_data_bits, rtlil=lambda: npu_rtlil(CFG, top), train=trainer(CFG))


# -- no simulator ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kw, needle", [
    ({"harness": "native", "sim": "icarus"}, "verilator"),
    ({"harness": "native", "waves": True}, "waves"),
    ({"harness": "fast", "bandwidth": 8}, "bandwidth"),
    ({"harness": "native", "bandwidth": -1}, "bandwidth"),
])
def test_run_jobs_bad_native_arguments(kw, needle):
    job = gemm_job(CFG, 2, 3, 2, "int8")[0]
    with pytest.raises(ValueError, match=needle):
        run_jobs(CFG, [job], **kw)


def test_script_makes_the_cocotb_register_traffic(tmp_path):
    """The set-up script holds the fast testbench's accesses in its order: windows, ring, IRQ_STATUS, CTRL twice,
    the wait, STATUS .. counters, the IRQ acknowledge and the dump."""
    job = gemm_job(CFG, 2, 3, 2, "int8")[0]
    image = tmp_path / "image0.npy"
    np.save(image, job.image)
    regs = register_map()
    spec = {"regs": regs, "ram_size": 1 << 16, "latency": 3, "stall": 0.25, "seed": 5, "n_windows": 2,
            "jobs": [{"name": job.name, "image": str(image), "windows": [[w.base, w.size, 3] for w in job.windows],
                      "ring_base": 0, "ring_size": job.ring_size, "ring_head": job.program_len,
                      "timeout_cycles": 1234}]}
    write_script(tmp_path / "s.txt", spec, tmp_path, config_hash="npu_x")
    lines = (tmp_path / "s.txt").read_text().splitlines()
    assert lines[:4] == ["npuforge-native 1", "config npu_x", "dram 65536 3 3 0 64 5", "reset"]
    writes = [ln.split()[1] for ln in lines if ln.startswith("wr ")]
    reg, win = regs["reg"], regs["window"]
    assert writes[:6] == [str(win["BASE"]), str(win["SIZE"]), str(win["PERM"]), str(win["BASE"] + 16),
                          str(win["SIZE"] + 16), str(win["PERM"] + 16)]
    assert writes[6:] == [str(reg[r]) for r in ("RING_BASE", "RING_SIZE", "RING_HEAD", "IRQ_STATUS", "CTRL", "CTRL",
                                                "IRQ_STATUS")]
    assert "wait_irq 1234" in lines and lines[-1] == f"dump {job.image.size} {tmp_path / 'memory0.bin'}"
    assert np.array_equal(np.fromfile(tmp_path / "image0.bin", dtype=np.uint8), job.image)


# -- against the fast cocotb harness -------------------------------------------------------------------------------
def _compare(jobs, fast, native):
    for job, f, n in zip(jobs, fast, native, strict=True):
        assert n["harness"] == "native" and f["harness"] == "fast"
        assert n["sim_cycles"] == f["sim_cycles"], job.name
        if job.soft_reset_after:
            assert (n["status_word"], n["irq"]) == (f["status_word"], f["irq"]) == (0, 0), job.name
            continue
        for key in ("timeout", "cycles", "status_word", "error", "fault_addr", "tail", "irq_status", "counters",
                    "dram_protocol_error", "isasim_mismatch_bytes"):
            assert n[key] == f[key], (job.name, key, n[key], f[key])
        assert np.array_equal(n["memory"], f["memory"]), job.name
        assert n["isasim_mismatch_bytes"] == 0 and n["error"] == job.expect_status, job.name


@pytest.mark.cocotb
@pytest.mark.parametrize("latency, stall", [(7, 0.3), (0, 0.0)])
def test_native_equals_fast_cycle_for_cycle(build, latency, stall):
    """Every job: same cycles to the interrupt, counters (BUSY/STALL_CYCLES included), status, fault address,
    ring tail, total clock cycles and final DRAM bytes; both equal the ISA simulator's image."""
    jobs = _jobs() if stall else _jobs()[:2]
    kw = dict(latency=latency, stall=stall, seed=11, keep_memory=True, check=True)
    fast = run_jobs(CFG, jobs, harness="fast", **kw)
    native = run_jobs(CFG, jobs, harness="native", **kw)
    _compare(jobs, fast, native)


@pytest.mark.cocotb
def test_native_vector_unit_equals_fast(build):
    """The native build's Yosys pre-pass rewrites the vector unit (sim.harness.native.YOSYS_PREPASS): every vector
    operator of the NPU (softmax with int8 and int32 scores and a causal mask, GELU / SiLU tables, residual add,
    gate, requant after a matmul) gives the same cycles, counters and DRAM bytes as the fast harness, which
    Verilates the NPU as Amaranth writes it, and both equal the golden operators and the ISA simulator."""
    from npuforge.golden.activations import gelu_table
    from npuforge.golden.elementwise import gate_params
    from npuforge.golden.softmax import softmax_params
    from npuforge.sim.harness.npu_vec_jobs import chain_job, edge_operands, vec_job

    a, b = edge_operands(5, 24, seed=31)
    from npuforge.golden.models.llama import SCORE_SCALE

    scores = np.round(np.random.default_rng(32).normal(0, 4.0, (3, 16)) / SCORE_SCALE).astype(np.int32)
    scores[0, :3] = [-(1 << 31), (1 << 31) - 1, 0]
    jobs = [chain_job(CFG, 4, 8, 8, seed=33)[0],
            vec_job(CFG, "softmax_5x24", "softmax", a, None, softmax_params(0.06, input_bits=8)),
            vec_job(CFG, "softmax_int32_causal", "softmax", scores, None, softmax_params(SCORE_SCALE, input_bits=32),
                    flags=4 | 1, imm=1),                 # flags: int32 scores, causal; row offset 1
            vec_job(CFG, "gelu_5x24", "act", a, None, gelu_table(0.05, 0.04)),
            vec_job(CFG, "gate_5x24", "gate", a, b, gate_params(0.05, 0.03, 0.6))]
    kw = dict(latency=3, stall=0.2, seed=12, keep_memory=True, check=True)
    _compare(jobs, run_jobs(CFG, jobs, harness="fast", **kw), run_jobs(CFG, jobs, harness="native", **kw))


# -- the DRAM model's bandwidth cap (native only) ----------------------------------------------------------------------
@pytest.mark.cocotb
def test_bandwidth_cap_limits_bytes_per_cycle(build):
    """A DMA-bound GEMM: under a cap of 2 B/cycle on the 8 B bus it stays bit-exact, takes longer and moves at most
    2 B per busy cycle (+ the two bus words the budget starts with); a cap of 16 B (two words every cycle, more
    than a read and a write beat need) never binds, so the cycles equal the uncapped run."""
    job = gemm_job(CFG, 4, 64, 48, "int8", seed=21)[0]
    free, capped, loose = (run_jobs(CFG, [job], harness="native", latency=0, check=True, bandwidth=bw)[0]
                           for bw in (0, 2, 16))
    busy = capped["counters"]["BUSY_CYCLES"]
    moved = capped["counters"]["BYTES_READ"] + capped["counters"]["BYTES_WRITTEN"] + INSTR_BYTES * job.instructions
    assert busy > free["counters"]["BUSY_CYCLES"]
    assert moved <= 2 * busy + 16
    assert loose["counters"] == free["counters"] and loose["sim_cycles"] == free["sim_cycles"]


@pytest.mark.cocotb
def test_latency_delays_only_through_dram(build):
    """More DRAM latency: same bytes moved and results, more busy and stall cycles."""
    job = gemm_job(CFG, 9, 20, 12, "int8", seed=22)[0]
    near, far = (run_jobs(CFG, [job], harness="native", latency=lat, check=True)[0] for lat in (0, 40))
    for key in ("BYTES_READ", "BYTES_WRITTEN", "MACS"):
        assert near["counters"][key] == far["counters"][key]
    assert far["counters"]["BUSY_CYCLES"] > near["counters"]["BUSY_CYCLES"] + 40
    assert far["counters"]["STALL_CYCLES"] > near["counters"]["STALL_CYCLES"]


# -- bad input: one line, exit 2; a cycle limit is a result -------------------------------------------------------
def _script(tmp_path, build, *, config=None, image_bytes=64, extra=()):
    """A set-up file that loads an image of NOPs (``image_bytes``) and then runs ``extra``."""
    image = tmp_path / "img.bin"
    nops = np.frombuffer(encode_program([Nop()] * (-(-image_bytes // INSTR_BYTES))), dtype=np.uint8)
    nops[:image_bytes].tofile(image)
    lines = ["npuforge-native 1", f"config {config or build.config_hash}", "dram 65536 0 0 0 0 1", "reset", "job j",
             f"load {image}", *extra]
    path = tmp_path / "setup.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def _refused(build, setup, tmp_path) -> str:
    proc = subprocess.run([str(build.binary), str(setup), str(tmp_path / "out.txt")], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2, proc
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("npu_sim: "), proc.stderr
    return lines[0]


@pytest.mark.cocotb
def test_bad_input_one_line_exit_2(build, tmp_path):
    assert "cannot open the set-up file" in _refused(build, tmp_path / "none.txt", tmp_path)
    (tmp_path / "junk.txt").write_bytes(b"\x00\x01binary junk\n")
    assert "not an npuforge native set-up file" in _refused(build, tmp_path / "junk.txt", tmp_path)
    assert "built for " + build.config_hash in _refused(build, _script(tmp_path, build, config="npu_0123456789"),
                                                         tmp_path)
    assert "unknown command 'poke'" in _refused(build, _script(tmp_path, build, extra=["poke 1 2"]), tmp_path)
    assert "ADDR must be an unsigned integer, got 'x'" in _refused(build, _script(tmp_path, build, extra=["wr x 1"]),
                                                                   tmp_path)
    assert "more than the DRAM's 65536" in _refused(build, _script(tmp_path, build, image_bytes=65537), tmp_path)
    assert "is empty" in _refused(build, _script(tmp_path, build, image_bytes=0), tmp_path)
    setup = _script(tmp_path, build)
    setup.write_text(setup.read_text().replace("img.bin", "missing.bin"))
    assert "cannot open the DRAM image" in _refused(build, setup, tmp_path)
    # Through the Python driver: the same line as a NativeError.
    with pytest.raises(NativeError, match="cannot open the DRAM image"):
        run_script(build.binary, setup, tmp_path / "out.txt")


@pytest.mark.cocotb
def test_cycle_limit_is_a_result_not_a_hang(build, tmp_path):
    """A ring of NOPs whose head is not on an instruction boundary never ends: the wait stops at its
    limit and reports it, and the NPU is still busy."""
    regs = register_map()
    reg, win, ctrl, status = regs["reg"], regs["window"], regs["ctrl"], regs["status"]
    start = [(win["BASE"], 0), (win["SIZE"], 1 << 16), (win["PERM"], 3), (reg["RING_BASE"], 0), (reg["RING_SIZE"], 64),
             (reg["RING_HEAD"], 8), (reg["CTRL"], 1 << ctrl["IRQ_EN"] | 1 << ctrl["START"])]
    setup = _script(tmp_path, build, extra=[*(f"wr {a} {v}" for a, v in start), "wait_irq 5000",
                                           f"rd status {reg['STATUS']}"])
    out = run_script(build.binary, setup, tmp_path / "out.txt")
    assert out.jobs[0]["timeout"] == 5000 and "irq_cycles" not in out.jobs[0]
    assert out.jobs[0]["status"] >> status["BUSY"] & 1


@pytest.mark.cocotb
def test_cli_native_json_and_cycle_limit(build, capsys):
    """``npuforge run`` defaults to the native harness, reports its speed, and a cycle limit is exit 1, one line."""
    import json

    assert cli_main(["run", "gemm", "--m", "5", "--k", "16", "--n", "8", "--json", *CLI_CFG]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["harness"] == "native" and out["bit_exact"] and out["mismatches"] == 0
    assert out["sim_wall_s"] > 0 and out["sim_cycles_per_s"] > 0
    assert cli_main(["run", "gemm", "--m", "5", "--k", "16", "--n", "8", "--max-cycles", "50", *CLI_CFG]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("npuforge run: cycle limit reached") and "50 cycles" in err[-1]
    assert cli_main(["run", "gemm", "--bandwidth", "8", "--harness", "fast", *CLI_CFG]) == 2
    assert "--bandwidth needs --harness native" in capsys.readouterr().err
