"""The training workload of the native harness's profile-guided build (:attr:`sim.harness.native.BuildOptions.pgo`).

A profile-guided build compiles Verilator's hot code instrumented, runs this workload on it and compiles the hot
code again with the branch and call counts it recorded. The workload exercises what a model run uses, on the
configuration's own NPU: a GEMM in every precision mode of the array (block-scaled when the NPU has it), a matmul
-> requant -> activation -> residual chain with DMA running beside it, and the softmax, LayerNorm and RoPE
RMSNorm and gate operators when the NPU has them. It is small (about 100,000 cycles, well under a second) and shares no data with
the benchmark's programs (sim/bench/sim_speed.py measures whole-model layers). The profile only steers the C++
compiler: the model's behaviour and cycle counts do not depend on it (tests/sim/test_native.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from npuforge.gen.config.npu import NPUConfig

__all__ = ["training_jobs", "train_native", "trainer"]

def training_jobs(cfg: NPUConfig) -> list:
    """The jobs of the training workload for ``cfg`` (:mod:`sim.harness.npu_run` ``Job``)."""
    from npuforge.golden.elementwise import gate_params
    from npuforge.golden.norms import rmsnorm_params
    from npuforge.golden.softmax import softmax_params
    from npuforge.sim.harness.npu_run import gemm_job
    from npuforge.sim.harness.npu_vec_jobs import chain_job, edge_operands, norm_rope_chain_job, vec_job

    jobs = [gemm_job(cfg, 32, 256, 128, "int8", seed=101, name="train_int8")[0]]
    for i, mode in enumerate(m for m in cfg.array.precisions if m != "int8"):
        jobs.append(gemm_job(cfg, 16, 128, 64, mode, seed=102 + i, name=f"train_{mode}")[0])
    if cfg.block_scaled and "w4a16" in cfg.array.precisions:
        jobs.append(_block_scaled_job(cfg, "w4a16", 8, 128, 64, seed=120))
    ops = set(cfg.vector_ops)
    if {"act", "residual"} <= ops:
        jobs.append(chain_job(cfg, 8, 32, 16, seed=130)[0])
    if "softmax" in ops:
        a, _ = edge_operands(8, 64, seed=131)
        jobs.append(vec_job(cfg, "train_softmax", "softmax", a, None, softmax_params(0.06, input_bits=8)))
    if {"residual", "layernorm", "rope"} <= ops:
        jobs.append(norm_rope_chain_job(cfg, seed=132)[0])
    rng = np.random.default_rng(133)
    a, b = edge_operands(8, 64, seed=134)
    if "rmsnorm" in ops:
        jobs.append(vec_job(cfg, "train_rmsnorm", "rmsnorm", a, None,
                            rmsnorm_params(0.07, rng.uniform(0.5, 1.5, 64), 0.04)))
    if "gate" in ops:
        jobs.append(vec_job(cfg, "train_gate", "gate", a, b, gate_params(0.05, 0.03, 0.6)))
    return jobs


def _block_scaled_job(cfg: NPUConfig, mode: str, m: int, k: int, n: int, *, seed: int):
    """A block-scaled GEMM (``compile_gemm(blocks=...)``): codes in the mode's weight range, int16 block terms."""
    from npuforge.gen.isa.gemm_program import compile_gemm
    from npuforge.sim.harness.npu_run import compiled_job, gemm_operands

    a, b, mult, shift = gemm_operands(m, k, n, mode, seed=seed)
    rng = np.random.default_rng(seed)
    d = rng.integers(1, 64, size=(k // 32, n)).astype(np.int16)
    o = rng.integers(-64, 64, size=(k // 32, n)).astype(np.int16)
    comp = compile_gemm(cfg, a, b, mult, shift, mode=mode, blocks=(d, o))
    return compiled_job(cfg, comp, name=f"train_{mode}_blocks")


def train_native(cfg: NPUConfig, binary: Path, work: Path) -> None:
    """Run the training workload of ``cfg`` on the instrumented ``binary`` (files in ``work``); raises
    :class:`sim.harness.native.NativeError` when the binary fails."""
    from npuforge.sim.harness.native import run_script, write_script
    from npuforge.sim.harness.npu_run import job_spec

    work.mkdir(parents=True, exist_ok=True)
    spec = job_spec(cfg, training_jobs(cfg), work, latency=4, stall=0.0, seed=1, check=False)
    setup = work / "train_setup.txt"
    write_script(setup, spec, work, config_hash=binary_config(binary))
    run_script(binary, setup, work / "train_result.txt")


def trainer(cfg: NPUConfig):
    """The ``train`` callable of :func:`sim.harness.native.native_binary` for the NPU of ``cfg``."""
    return lambda binary, work: train_native(cfg, binary, work)


def binary_config(binary: Path) -> str:
    """The NPU configuration hash ``binary`` was built for (``npu_sim --config``)."""
    import subprocess

    # It prints the hash and the bus width: "npu_60ec289b20 64".
    return subprocess.run([str(binary), "--config"], capture_output=True, text=True, check=True).stdout.split()[0]
