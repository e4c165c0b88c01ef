"""One real Transformer layer on the NPU (``npuforge run layer``, sim.bench.layer): a Llama decoder layer's prefill
or decode steps, or a BERT encoder layer's prefill, with the golden model's activations of real text as input, run
on the ISA simulator or the RTL and checked against the golden tiers.

A :class:`LayerCase` is everything a run needs: the built programs (gen.lower.llama / gen.lower.bert), the memory
with the host's inputs written, the host inputs themselves (for the golden layer programs' reference), the programs
to run in order, and each program's output as the golden *model* computes it (golden.models.llama.int_layer /
golden.models.bert.int_layer), so a run is checked against the layer program's golden operators, the ISA
simulator's DRAM (RTL), and the model's own integer path.

* Llama prefill of T tokens at layer N: the input is the residual entering layer N of the text's first T tokens
  (golden.models.llama.int_layer_input); one program ``prefill.l{N}``.
* Llama decode of T steps after a context of C tokens: the layer's KV cache (host inputs, gen.lower.llama
  ``prefill=False``) holds the golden model's K/V of the text's first C tokens at layer N; step s (1..T) feeds the
  residual entering layer N of token C + s - 1 of the text (teacher forcing: a layer alone has no logits to choose a
  token from) at position C + s - 1; programs ``step{s}.l{N}``.
* BERT prefill of T tokens (the only phase of an encoder): program ``layer{N}``.

:func:`run_case` returns the contract of ``npuforge run layer`` summed over the case's programs (module docstring
of sim.harness.model_run); on the ISA backend ``cycles`` are the cycle model's (gen.perf.program), labelled by
``"backend": "isa"``, and ``bytes_moved`` counts the programs' DMA payload and command fetch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from npuforge.gen.config.npu import NPUConfig
from npuforge.gen.isa.builder import LayerProgram
from npuforge.gen.isa.layer_ir import to_bytes
from npuforge.sim.harness.model_run import run_programs, totals
from npuforge.spec.isa import INSTR_BYTES, DmaLoad, DmaStore
from npuforge.spec.precision import PRECISION_MODES

__all__ = ["LayerCase", "LLAMA_TEXTS", "llama_text", "llama_golden", "llama_case", "bert_case", "run_case",
           "program_bytes_moved"]

PHASES = ("prefill", "decode")


@dataclass
class LayerCase:
    """A layer run prepared: ``prog`` with ``memory`` (inputs written), the host ``inputs``, the program ``names`` in
    run order, each program's output root and the golden model's bytes of it (``expected``), and the MATMUL
    ``mode`` whose peak utilization refers to."""
    prog: LayerProgram
    memory: np.ndarray
    inputs: dict
    names: list[str]
    outputs: dict[str, str]
    expected: dict[str, np.ndarray]
    mode: str = "w8a16"
    info: dict = field(default_factory=dict)


#: the held-out texts shipped with the project (golden.models.assets.data_text), joined: the default Llama text
LLAMA_TEXTS = ("eval_prose.txt", "eval_dialogue.txt", "eval_code.txt")


def llama_text() -> str:
    """The default text of a Llama layer run: :data:`LLAMA_TEXTS` joined by blank lines."""
    from npuforge.golden.models.assets import data_text

    return "\n\n".join(data_text(name) for name in LLAMA_TEXTS)


def _cache_rows(cache_array: np.ndarray, positions: int) -> np.ndarray:
    """A golden KV cache [KV, C, d] as the NPU's cache rows [positions, KV * d] (rows past C zero)."""
    kv, c, d = cache_array.shape
    rows = np.zeros((positions, kv * d), dtype=np.int64)
    rows[:c] = cache_array.transpose(1, 0, 2).reshape(c, kv * d)
    return rows


def _check_llama(m, ids, layer: int, phase: str, tokens: int, context: int) -> None:
    """ValueError naming a bad layer, phase or length of a Llama layer run."""
    n_layers = len(m.layers)
    if not 0 <= layer < n_layers:
        raise ValueError(f"--layer must be in [0, {n_layers - 1}], got {layer}")
    if phase not in PHASES:
        raise ValueError(f"--phase must be one of {', '.join(PHASES)}, got {phase!r}")
    if phase == "prefill" and context:
        raise ValueError(f"--context is the KV cache of --phase decode; a prefill starts at position 0, got "
                         f"--context {context}")
    if phase == "decode" and context < 1:
        raise ValueError(f"--context must be >= 1 cached tokens for --phase decode, got {context}")
    limit = m.rope_cos.shape[0]
    if tokens < 1 or context + tokens > limit:
        raise ValueError(f"--context + --tokens must be in [1, {limit}] (the model's context), got "
                         f"{context} + {tokens}")
    if len(ids) < context + tokens:
        raise ValueError(f"--context + --tokens must be at most the text's {len(ids)} tokens, got "
                         f"{context} + {tokens}")


def llama_golden(m, ids, layer: int, phase: str, tokens: int, context: int = 0) -> tuple[dict, dict]:
    """The golden model's side of a Llama layer run (module docstring), independent of the NPU: (the host inputs
    {root: values}, each program's output {program: values}). ValueError names a bad layer, phase or length."""
    from npuforge.golden.attention import KVCache
    from npuforge.golden.models import llama

    _check_llama(m, ids, layer, phase, tokens, context)
    ids = np.asarray(ids[:context + tokens], dtype=np.int64)
    r = llama.int_layer_input(m, ids, layer).astype(np.int64)
    cache = KVCache(m.ck.cfg.kv_heads, m.ck.cfg.head_dim, np.int8 if m.scheme.kv_bits == 8 else np.int16)
    if phase == "prefill":
        return {"x.prefill": r}, {f"prefill.l{layer}": llama.int_layer(m, layer, r, cache, 0)}
    llama.int_layer(m, layer, r[:context], cache, 0)        # the context's K/V at this layer
    positions = context + tokens
    inputs = {f"l{layer}.k_cache": _cache_rows(cache.k, positions),
              f"l{layer}.v_cache": _cache_rows(cache.v, positions)}
    want = {}
    for s in range(1, tokens + 1):
        row = r[context + s - 1:context + s]
        inputs[f"x.step{s}"] = row
        want[f"step{s}.l{layer}"] = llama.int_layer(m, layer, row, cache, context + s - 1)
    return inputs, want


def llama_case(cfg: NPUConfig, m, ids, layer: int, phase: str, tokens: int, context: int = 0, *,
               golden: tuple[dict, dict] | None = None) -> LayerCase:
    """Layer ``layer`` of the integer Llama ``m`` on the token ids ``ids`` (at least context + tokens of them): a
    prefill of the first ``tokens``, or ``tokens`` decode steps after a cache of the first ``context`` (module
    docstring). ``golden``: :func:`llama_golden`'s result for these arguments, when already computed (one per design
    point of a sweep). ValueError names a bad layer, phase, length or a shape the NPU's memories cannot hold."""
    from npuforge.gen.lower.llama import llama_programs

    _check_llama(m, ids, layer, phase, tokens, context)
    # the programs first: a shape the NPU's memories cannot hold is refused before the golden model runs
    if phase == "prefill":
        plan = llama_programs(cfg, m, tokens, 0, layers=range(layer, layer + 1))
    else:
        plan = llama_programs(cfg, m, context, tokens, layers=range(layer, layer + 1), prefill=False)
    inputs, want = llama_golden(m, ids, layer, phase, tokens, context) if golden is None else golden
    prog = plan.prog
    memory = prog.image
    for name, values in inputs.items():
        memory = prog.write(memory, name, values)
    names = list(want)
    outputs = {n: prog.written(n)[-1] for n in names}
    expected = {n: to_bytes(v, prog.roots[outputs[n]].bits) for n, v in want.items()}
    mode = "w4a16" if m.scheme.name.startswith("w4") else "w8a16"      # the scheme's linear mode
    return LayerCase(prog, memory, inputs, names, outputs, expected, mode,
                     info={"phase": phase, "tokens": tokens, "context": context})


def bert_case(cfg: NPUConfig, m, ids, layer: int, tokens: int) -> LayerCase:
    """Encoder layer ``layer`` of the integer BERT ``m`` over the first ``tokens`` of ``ids`` (one sentence, no
    padding)."""
    from npuforge.gen.lower.bert import bert_programs
    from npuforge.golden.models import bert

    n_layers = len(m.layers)
    if not 0 <= layer < n_layers:
        raise ValueError(f"--layer must be in [0, {n_layers - 1}], got {layer}")
    if not 1 <= tokens <= len(ids):
        raise ValueError(f"--tokens must be in [1, {len(ids)}] (the text's tokens, at most the model's "
                         f"{m.ck.max_tokens}), got {tokens}")
    ids = np.array([list(ids[:tokens])])
    x = bert.int_layer_input(m, ids, layer)[0]
    prog, out = bert_programs(cfg, m, x=x, layers=range(layer, layer + 1))
    name = f"layer{layer}"
    want = bert.int_layer(m, layer, x[None])[0]
    return LayerCase(prog, prog.image, {}, [name], {name: out}, {name: to_bytes(want, prog.roots[out].bits)},
                     info={"phase": "prefill", "tokens": tokens, "context": 0})


def program_bytes_moved(program: list) -> int:
    """DMA payload plus command fetch of a program: what the RTL's BYTES_READ / BYTES_WRITTEN counters and the
    fetch count."""
    return sum(i.rows * i.row_bytes for i in program if isinstance(i, (DmaLoad, DmaStore))) \
        + INSTR_BYTES * len(program)


def _element_mismatches(got: np.ndarray, want: np.ndarray, elem_bytes: int) -> int:
    diff = (np.asarray(got, dtype=np.uint8).reshape(want.shape[0], -1) != want).reshape(want.shape[0], -1,
                                                                                        elem_bytes)
    return int(diff.any(axis=2).sum())


def run_case(case: LayerCase, *, backend: str = "rtl", harness: str = "native", latency: int = 0,
             stall: float = 0.0, seed: int = 1, log=None) -> dict:
    """Run ``case`` on ``backend`` ("isa" or "rtl"); returns the summed contract plus ``golden_mismatches`` (output
    elements that differ from the golden model's layer), ``programs`` (each program's contract), the final
    ``memory`` and ``sim_wall_s``. ``bit_exact``: every check of every program passed (RTL: DRAM = ISA simulator,
    output = the layer program's golden operators; ISA: output = those operators'), and every output equals the
    golden model's."""
    prog, cfg = case.prog, case.prog.cfg
    t0 = time.time()
    memory, results = run_programs(prog, backend=backend, mode=case.mode, harness=harness, latency=latency,
                                   stall=stall, seed=seed, log=log, names=case.names, memory=case.memory,
                                   inputs=case.inputs)
    wall = time.time() - t0
    reference = prog.reference(upto=case.names[-1], inputs=case.inputs) if backend == "isa" else None
    golden_bad = 0
    for name in case.names:
        out = case.outputs[name]
        elem = max(1, prog.roots[out].bits // 8)
        got = prog.read(memory, out)
        bad = _element_mismatches(got, case.expected[name], elem)
        golden_bad += bad
        r = results[name]
        if backend == "isa":
            ref_bad = _element_mismatches(got, reference[out], elem)
            cycles = r["predicted_cycles"]
            moved = program_bytes_moved(prog.programs[name])
            peak = cfg.array.rows * cfg.array.cols * PRECISION_MODES[case.mode].products
            r.update(cycles=cycles, bytes_moved=moved, utilization=r["macs"] / (peak * cycles),
                     bus_efficiency=moved / (cfg.axi_data_bits // 8 * cycles), mismatches=ref_bad,
                     bit_exact=ref_bad == 0)
        r["golden_mismatches"] = bad
        r["bit_exact"] = bool(r["bit_exact"] and bad == 0)
        r["mismatches"] = max(r["mismatches"], bad)
    out = totals(results, cfg, case.mode)
    out["golden_mismatches"] = golden_bad
    out["programs"] = {n: {k: v for k, v in r.items() if k != "output"} for n, r in results.items()}
    rtl_wall = [r.get("sim_wall_s") for r in results.values()]
    out["sim_wall_s"] = round(sum(rtl_wall) if backend == "rtl" and None not in rtl_wall else wall, 3)
    out["memory"] = memory
    return out
