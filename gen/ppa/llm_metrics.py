"""Llama-family metrics of a sweep's design point: prefill and decode tokens/s and decode bus efficiency of a real
model (default SmolLM2-135M-Instruct) from its own NPU programs, priced by the whole-program cycle model.

The workload (:data:`LLM_WORKLOAD`): the checkpoint's integer model under ``scheme`` (a GGUF checkpoint keeps its
own Q4_1 / Q8_0 blocks, so the point must carry the block-scaled MATMUL), a prompt of ``prompt_tokens`` tokens
(phase ``prefill``: every layer and the LM head), then one decode step at context ``prompt_tokens + 1`` (phase
``step1``: one token against the KV cache, every layer and the LM head). gen.lower.llama builds the programs for
an NPU around the point's array (default memories, ``axi_bits``-bit AXI, Llama's vector operators);
gen.perf.layers prices each program (the cycle model `make bench` checks against the RTL). Utilization is of the
w8a16 peak (as ``npuforge generate`` reports it); tokens/s are at the point's clock.

A point that cannot run the model (no w8a16 / w4a16 mode, the block-scaled MATMUL's limits on rows and columns,
an accumulator other than int32, the os dataflow) gets None values and ``llm_reason`` naming what it lacks.

Cost: lowering SmolLM2 (30 layers + the 49152-row LM head, 2 phases) and pricing it takes minutes per NPU
configuration, and the integer model takes ~3 GB per worker process. The clock-independent results (cycles, MACs,
bytes) are therefore cached per NPU configuration, in the process and on disk under ``cache_root`` (keyed by the
NPU config without the Verilog name, the workload and the sources they come from): points that differ only in
flow options (target, DSP mapping, place and route) or in a rerun reuse them.
"""

from __future__ import annotations

import functools
import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from npuforge.gen.build.elaborate import content_hash
from npuforge.gen.config.array import ArrayConfig

__all__ = ["LLM_WORKLOAD", "LLM_KEYS", "llm_workload", "llm_metrics", "llm_npu_config", "load_llm"]

#: Default Llama workload of the sweep (``npuforge sweep --llm``, ``--llm-prompt``).
LLM_WORKLOAD = {"model": "smollm2", "scheme": "w8a16", "prompt_tokens": 32}
#: Metric columns (``llm_decode_l0_cycles``: the model's cycles of layer 0's decode program, what ``sweep
#: --rtl-check`` measures; ``llm_s``: seconds this point spent on them, 0 when the cycles were cached).
LLM_KEYS = ("llm_prefill_tokens_s", "llm_prefill_util", "llm_decode_tokens_s", "llm_decode_bus", "llm_decode_util",
            "llm_decode_cycles", "llm_decode_l0_cycles", "llm_clock_mhz", "llm_reason", "llm_s")
_MAX_PROMPT = 4095


def llm_workload(model: str = "smollm2", prompt_tokens: int = 32, scheme: str = "w8a16") -> dict[str, Any]:
    """A validated workload dict (what the sweep's rows record)."""
    from npuforge.gen.lower.llama import NPU_SCHEMES

    if not isinstance(model, str) or not model:
        raise ValueError(f"--llm must name a model (smollm2 or a .gguf path) or none, got {model!r}")
    if isinstance(prompt_tokens, bool) or not isinstance(prompt_tokens, int) or not 1 <= prompt_tokens <= _MAX_PROMPT:
        raise ValueError(f"--llm-prompt must be an integer in [1, {_MAX_PROMPT}], got {prompt_tokens!r}")
    if scheme not in NPU_SCHEMES:
        raise ValueError(f"the LLM scheme must be one of {', '.join(NPU_SCHEMES)}, got {scheme!r}")
    return {"model": model, "scheme": scheme, "prompt_tokens": prompt_tokens}


@functools.lru_cache(maxsize=1)
def load_llm(model: str, scheme: str, cache_dir: str):
    """The integer Llama of ``model`` under ``scheme`` (kept for the next point of this process: loading SmolLM2
    takes ~20 s and ~3 GB)."""
    from npuforge.golden.models import llama
    from npuforge.golden.models.api import int_llama, resolve_model

    ck = llama.load_llama(resolve_model(model, "llama"), name=model)
    return int_llama(ck, scheme, cache_dir)


def _npu(cfg: ArrayConfig, axi_bits: int, block_scaled: bool, kv16: bool = False):
    from npuforge.gen.config.npu import NPUConfig
    from npuforge.gen.lower.llama import VECTOR_OPS

    return NPUConfig(array=cfg, axi_data_bits=axi_bits, vector_ops=VECTOR_OPS, block_scaled=block_scaled or kv16,
                     kv16=kv16)


def llm_npu_config(cfg: ArrayConfig, m, *, axi_bits: int = 64):
    """The NPU around ``cfg`` that runs the integer Llama ``m`` (ValueError naming what the point lacks)."""
    from npuforge.gen.lower.llama import block_modes, check_model

    npu = _npu(cfg, axi_bits, bool(block_modes(m)), m.scheme.kv_bits == 16)   # *-kv16: MATMUL.b16
    check_model(m, npu)
    return npu


@functools.lru_cache(maxsize=1)
def _sources_hash() -> str:
    """Hash of the sources the cycles come from (lowering, compiler, cycle model, specs, golden models)."""
    root = Path(__file__).resolve().parents[2]
    files = sorted(p for d in ("gen/isa", "gen/lower", "gen/perf", "gen/config", "spec", "golden/models")
                   for p in (root / d).rglob("*.py"))
    return content_hash(*(f"{p.relative_to(root)}\n{p.read_text()}" for p in files))


_CYCLES: dict[str, dict[str, Any]] = {}


def _phase_cycles(npu, m, workload: dict[str, Any], cache_root: Path | None) -> tuple[dict[str, Any], bool]:
    """Clock-independent totals of both phases for ``npu`` (cached): ({phase: {cycles, macs, bytes_moved,
    programs}}, reused?)."""
    from npuforge.gen.lower.llama import llama_programs
    from npuforge.gen.perf.layers import programs_perf

    generic = replace(npu, array=replace(npu.array, name=ArrayConfig.name))   # the Verilog name changes no cycle
    key = content_hash(generic.to_json(), json.dumps(workload, sort_keys=True), _sources_hash())
    path = None if cache_root is None else Path(cache_root) / f"{key}.json"
    if key in _CYCLES:
        return _CYCLES[key], True
    if path is not None and path.exists():
        _CYCLES[key] = json.loads(path.read_text())
        return _CYCLES[key], True
    t0, cpu0 = time.perf_counter(), time.process_time()
    plan = llama_programs(npu, m, workload["prompt_tokens"], steps=1)
    out: dict[str, Any] = {}
    for phase, tokens in (("prefill", workload["prompt_tokens"]), ("step1", 1)):
        res = programs_perf(plan.prog, mode="w8a16", tokens=tokens, clock_mhz=1.0, harness="fast",
                            names=plan.programs_of(phase))
        out[phase] = {k: res["total"][k] for k in ("cycles", "macs", "bytes_moved")}
        out[phase]["tokens"] = tokens
        out[phase]["programs"] = {n: r["cycles"] for n, r in res["programs"].items()}
    out["build_s"] = round(time.perf_counter() - t0, 2)            # wall, lowering + pricing
    out["build_cpu_s"] = round(time.process_time() - cpu0, 2)     # CPU of this process (the machine may be shared)
    _CYCLES[key] = out
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
        tmp.replace(path)
    return out, False


def llm_metrics(cfg: ArrayConfig, clock_mhz: float, workload: dict[str, Any] | None, *, axi_bits: int = 64,
                cache_dir: str = "build/models", cache_root: Path | None = None) -> dict[str, Any]:
    """The :data:`LLM_KEYS` of one point at ``clock_mhz`` (None values and ``llm_reason`` when it cannot run the
    workload; ``workload`` None: not requested). ``cache_dir``: the model's calibration cache."""
    from npuforge.gen.config.npu import NPUConfig
    from npuforge.gen.lower import require_features
    from npuforge.gen.lower.llama import PRECISIONS, VECTOR_OPS
    from npuforge.spec.precision import PRECISION_MODES

    out: dict[str, Any] = dict.fromkeys(LLM_KEYS)
    if workload is None:
        out["llm_reason"] = "no LLM workload (sweep --llm none)"
        return out
    t0 = time.perf_counter()
    try:
        # what any Llama program needs, checked before the (large) model is loaded
        require_features(NPUConfig(array=cfg, axi_data_bits=axi_bits, vector_ops=VECTOR_OPS), "Llama",
                         PRECISIONS, VECTOR_OPS)
        m = load_llm(workload["model"], workload["scheme"], str(cache_dir))
        npu = llm_npu_config(cfg, m, axi_bits=axi_bits)
        phases, reused = _phase_cycles(npu, m, workload, cache_root)
    except ValueError as e:         # ConfigError included: what the point lacks, one line
        out["llm_reason"] = " ".join(str(e).split())
        return out
    peak = cfg.rows * cfg.cols * PRECISION_MODES["w8a16"].products
    pre, dec = phases["prefill"], phases["step1"]
    out.update(llm_prefill_tokens_s=pre["tokens"] * clock_mhz * 1e6 / pre["cycles"],
               llm_prefill_util=pre["macs"] / (peak * pre["cycles"]),
               llm_decode_tokens_s=clock_mhz * 1e6 / dec["cycles"],
               llm_decode_bus=dec["bytes_moved"] / (axi_bits // 8 * dec["cycles"]),
               llm_decode_util=dec["macs"] / (peak * dec["cycles"]), llm_decode_cycles=dec["cycles"],
               llm_decode_l0_cycles=dec["programs"].get("step1.l0"),
               llm_clock_mhz=clock_mhz, llm_s=0.0 if reused else round(time.perf_counter() - t0, 2))
    return out
