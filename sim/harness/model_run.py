"""Real models on the NPU: a BERT encoder's programs (gen.lower.bert) run on the ISA simulator or the RTL,
program after program on the memory the previous one left, each checked against both golden tiers.

Per program (``embed``, ``layer{i}``) the result holds the JSON contract of ``npuforge run``: ``cycles`` (BUSY_CYCLES,
START to DONE), ``macs``, ``utilization`` (useful MACs / (peak MACs per cycle of the scheme's MATMUL mode x
cycles): vector work, DMA and fetch included), ``bus_efficiency`` (bytes moved / (AXI bytes per cycle x cycles)),
``bytes_moved`` (DMA payload + command fetch), ``predicted_cycles`` (gen.perf.program for the same DRAM timing),
``bit_exact`` (the whole DRAM image equals the ISA simulator's and the program's output buffer equals the golden
operators' bytes) and ``mismatches`` (output elements that differ from the golden bytes).
"""

from __future__ import annotations

import numpy as np

from npuforge.gen.config.npu import NPUConfig
from npuforge.gen.isa.builder import LayerProgram
from npuforge.gen.lower.execute import isasim_programs
from npuforge.gen.perf.layers import program_bytes_moved
from npuforge.gen.perf.program import program_cycles
from npuforge.sim.harness.npu_run import Job, program_job, run_jobs, summarize
from npuforge.spec.isa import encode_program
from npuforge.spec.precision import PRECISION_MODES

BACKENDS = ("isa", "rtl")


def _outputs(prog: LayerProgram) -> dict[str, str]:
    """Each program's last written buffer (its output)."""
    return {name: prog.written(name)[-1] for name in prog.programs}


def model_job(prog: LayerProgram, name: str, memory: np.ndarray, *, mode: str = "w8a16", inputs: dict | None = None,
              reference: dict | None = None) -> Job:
    """The program ``name`` of ``prog`` as a job starting from ``memory``: the ISA simulator's final image and its
    output buffer's golden bytes (``reference``: a golden pass of ``prog`` that holds them, default one up to
    ``name`` fed the host ``inputs``) expected; utilization against the peak of MATMUL ``mode``."""
    cfg = prog.cfg
    out = _outputs(prog)[name]
    job = program_job(cfg, name, encode_program(prog.programs[name]), prog.load(memory, name), prog.windows)
    want = (reference if reference is not None else prog.reference(upto=name, inputs=inputs))[out]
    lo = prog.bases[out]
    job.expect_c, job.c_range = want.ravel(), (lo, lo + want.size)
    job.c_elem_bytes = max(1, prog.roots[out].bits // 8)
    job.macs = prog.macs_of(name)
    job.peak_macs_per_cycle = cfg.array.rows * cfg.array.cols * PRECISION_MODES[mode].products
    return job


def predicted_cycles(prog: LayerProgram, name: str, latency: int = 0) -> int:
    """The cycle model's cycles of program ``name`` (gen.perf.program, the fast harness's DRAM timing)."""
    return program_cycles(encode_program(prog.programs[name]), prog.cfg, latency=latency, harness="fast").cycles


def run_programs(prog: LayerProgram, *, backend: str = "rtl", mode: str = "w8a16", harness: str = "native",
                 latency: int = 0, stall: float = 0.0, seed: int = 1, log=None, names: list[str] | None = None,
                 memory: np.ndarray | None = None, inputs: dict | None = None, predicted: dict | None = None,
                 done=None) -> tuple[np.ndarray, dict]:
    """Run the programs ``names`` of ``prog`` (default: all, in order) starting from ``memory`` (default: the image);
    returns (final memory, {program: result}). ``backend`` "isa": the ISA simulator alone (results carry ``macs``
    and the model's ``predicted_cycles``); "rtl": the NPU Verilog on ``harness`` (sim.harness.npu_run.run_jobs),
    the contract of the module docstring per program, checked against the golden operators fed the host ``inputs``
    ({input root: values}, every input written so far). ``predicted``: the cycle model's cycles of programs already
    priced ({name: cycles}, :func:`predicted_cycles`); ``done(name, result)`` is called after each RTL program (a
    progress bar's update)."""
    predicted = {} if predicted is None else predicted
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    cfg = prog.cfg
    outputs = _outputs(prog)
    names = list(prog.programs) if names is None else list(names)
    memory = prog.image if memory is None else memory
    bus = cfg.axi_data_bits // 8
    results: dict[str, dict] = {}
    if backend == "isa":
        memory, sims = isasim_programs(prog, memory, names)
        for name, res in sims.items():
            pred = predicted.get(name) or predicted_cycles(prog, name, latency)
            results[name] = {"macs": prog.macs_of(name), "predicted_cycles": pred, "output": outputs[name],
                             "bytes_moved": program_bytes_moved(prog.programs[name])}
        return memory, results
    # one golden pass up to the last program run; a buffer no later program rewrites is final after its own
    final = prog.reference(upto=names[-1], inputs=inputs)
    for i, name in enumerate(names):
        program = prog.programs[name]
        later = {root for n in names[i + 1:] for root in prog.written(n)}
        job = model_job(prog, name, memory, mode=mode,
                        reference=None if outputs[name] in later else final, inputs=inputs)
        if log:
            log(f"{name}: {len(program)} instructions, {job.macs:,} MACs on the RTL ({harness} harness)")
        res = run_jobs(cfg, [job], check=False, keep_memory=True, harness=harness, latency=latency, stall=stall,
                       seed=seed, tag=f"model{cfg.array.rows}x{cfg.array.cols}")[0]
        s = summarize(job, res)
        if res.get("timeout"):
            raise RuntimeError(f"program {name!r}: no interrupt from the NPU within the cycle limit")
        memory = res["memory"]
        pred = predicted.get(name) or predicted_cycles(prog, name, latency)
        results[name] = {k: s[k] for k in ("cycles", "macs", "utilization", "bytes_moved", "bit_exact",
                                            "mismatches")}
        results[name].update(bus_efficiency=s["bytes_moved"] / (bus * s["cycles"]) if s["cycles"] else 0.0,
                             predicted_cycles=pred, output=outputs[name], harness=harness,
                             sim_wall_s=res.get("sim_wall_s"))
        if done is not None:
            done(name, results[name])
    return memory, results


def totals(results: dict, cfg: NPUConfig, mode: str = "w8a16") -> dict:
    """The contract summed over programs (ratios recomputed from the sums); ``predicted_utilization`` and
    ``predicted_bus_efficiency``: the same ratios over the cycle model's cycles."""
    keys = ("cycles", "macs", "bytes_moved", "predicted_cycles", "mismatches")
    t = {k: sum(r[k] for r in results.values()) for k in keys if all(k in r for r in results.values())}
    peak = cfg.array.rows * cfg.array.cols * PRECISION_MODES[mode].products
    if t.get("predicted_cycles") and "bytes_moved" in t:
        t["predicted_utilization"] = t["macs"] / (peak * t["predicted_cycles"])
        t["predicted_bus_efficiency"] = t["bytes_moved"] / (cfg.axi_data_bits // 8 * t["predicted_cycles"])
    if "cycles" in t and t["cycles"]:
        t["utilization"] = t["macs"] / (peak * t["cycles"])
        t["bus_efficiency"] = t["bytes_moved"] / (cfg.axi_data_bits // 8 * t["cycles"])
        t["bit_exact"] = all(r["bit_exact"] for r in results.values())
    return t


def embed_on_npu(cfg: NPUConfig, model: str, sentences, *, backend: str = "rtl", scheme: str = "w8a16",
                 compare_float: bool = False, cache_dir="build/models", harness: str = "native", latency: int = 0,
                 log=None) -> dict:
    """Sentence embeddings with every encoder layer on the NPU: ``npuforge embed``'s JSON contract plus ``"npu"``.

    Per sentence (alone: no padding) the host gathers and sums the embedding rows (int32), the NPU runs the
    embedding LayerNorm and every layer (gen.lower.bert, programs on one image, each on the memory the previous one
    left), and the host sums the last layer's rows (pooling) and normalises. ``npu`` holds per sentence the tokens,
    the summed contract of its programs (``backend`` "rtl"; "isa": MACs and the model's predicted cycles),
    ``tokens_per_s`` at ``clock_mhz`` (gen.perf.model.npu_clock_mhz: a measured fmax, named in ``clock_source``)
    from the RTL's cycles (else the model's), and ``matches_golden``: the NPU's token sums equal the golden model's integer path (golden.models.bert.int_forward on
    the whole padded batch) exactly.
    """
    from npuforge.gen.lower.bert import bert_programs, check_model
    from npuforge.golden.models import bert
    from npuforge.golden.models.api import embedding_result, int_bert

    if not sentences:
        raise ValueError("give at least one sentence")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    directory, ck, m = int_bert(model, scheme, cache_dir)
    check_model(m, cfg)
    ids, mask = bert.tokenize(ck, sentences)
    golden_sums = bert.int_forward(m, ids, mask)
    sums, per_sentence = [], []
    for i, sentence in enumerate(sentences):
        one, _ = bert.tokenize(ck, [sentence])
        prog, out = bert_programs(cfg, m, e=bert.int_embed(m, one)[0])
        if log:
            log(f"sentence {i}: {one.shape[1]} tokens, {len(prog.programs)} programs on the "
                f"{'RTL' if backend == 'rtl' else 'ISA simulator'}")
        memory, results = run_programs(prog, backend=backend, harness=harness, latency=latency, log=log)
        x = prog.read(memory, out).view("<i2").astype(np.int64)
        sums.append(x.sum(axis=0))
        stats = totals(results, cfg)
        stats.update(tokens=int(one.shape[1]), matches_golden=bool(np.array_equal(sums[-1], golden_sums[i])),
                     programs={name: {k: v for k, v in r.items() if k != "output"} for name, r in results.items()})
        per_sentence.append(stats)
    from npuforge.gen.perf.model import npu_clock_mhz

    clock_mhz, clock_source = npu_clock_mhz(cfg)
    for s in per_sentence:      # the RTL's cycles where measured, else the cycle model's
        s["tokens_per_s"] = s["tokens"] * clock_mhz * 1e6 / s.get("cycles", s["predicted_cycles"])
    out = embedding_result(model, directory, m, ids, mask, np.stack(sums), compare_float=compare_float)
    out["npu"] = {"backend": backend, "harness": harness if backend == "rtl" else None,
                  "array": f"{cfg.array.rows}x{cfg.array.cols}", "axi_bits": cfg.axi_data_bits,
                  "clock_mhz": clock_mhz, "clock_source": clock_source,
                  "sentences": per_sentence,
                  "matches_golden": all(s["matches_golden"] for s in per_sentence),
                  "bit_exact": all(s.get("bit_exact", True) for s in per_sentence)}
    return out


def generate_on_npu(cfg: NPUConfig, model: str, ck, m, prompt_ids: list, *, tokens: int = 8, backend: str = "rtl",
                    harness: str = "native", latency: int = 0, rtl_programs: int | None = None,
                    rtl_from: str | None = None, rtl_phases: int | None = None, progress=None, log=None) -> dict:
    """Greedy continuation of ``prompt_ids`` by the integer model ``m`` of checkpoint ``ck`` (golden.models.api
    llama_prompt / int_llama) with every layer and the LM head on the NPU: ``npuforge generate``'s JSON contract
    plus ``"npu"``.

    The host tokenizes, looks up the embedding rows (gen.lower.llama.host_embedding) and picks the argmax; the NPU
    runs the prompt (phase ``prefill``: one program per layer, then the head) and one phase per generated token
    (``step{s}``, one token against the KV cache the earlier phases left in DRAM: gen.lower.llama). ``npu`` holds
    per phase the tokens, the start position, the summed contract of its programs, ``where`` ("rtl", "isa" or
    "rtl+isa") and ``matches_golden`` (its logits equal golden.models.llama.int_forward's with the same cache,
    exactly); ``prefill_tokens_per_s`` and ``decode_tokens_per_s`` at ``clock_mhz`` from the RTL's cycles (else the
    cycle model's), ``predicted_prefill_tokens_per_s`` / ``predicted_decode_tokens_per_s`` from the cycle model's,
    and ``rtl_decode``: the decode steps that ran whole on the RTL (their phases, measured and predicted cycles and
    tokens/s; None when there are none).

    Which programs go to the RTL (backend "rtl"; the rest run on the ISA simulator, on the memory the RTL left):
    ``rtl_from`` (``prefill``, ``step{s}``): the phases before it run on the ISA simulator (so decode steps can be
    measured without simulating the whole prefill); ``rtl_phases``: only that many phases from there on go to the
    RTL; ``rtl_programs``: at most that many programs in all (a whole real model is slow to simulate); a phase
    split between the two reports ``rtl_programs`` and ``rtl_cycles`` / ``rtl_predicted_cycles`` over its RTL
    programs. ``progress``: an object with ``start({program: predicted cycles})`` (the RTL programs planned, in
    order), ``done(name, result)`` after each RTL program and ``close()`` (sim.harness.progress.RtlProgress); it
    replaces the per-program ``log`` lines.
    """
    from npuforge.gen.lower.llama import LlamaPlan, check_model, host_embedding, llama_programs
    from npuforge.gen.perf.model import npu_clock_mhz
    from npuforge.golden.models import llama

    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    sch = m.scheme
    check_model(m, cfg)
    all_phases = LlamaPlan.phases(tokens - 1)
    if rtl_from is not None and (backend != "rtl" or rtl_from not in all_phases):
        raise ValueError(f"rtl_from must be a phase of this run ({all_phases[0]}..{all_phases[-1]}) with backend rtl, "
                         f"got {rtl_from!r} with backend {backend}")
    if rtl_phases is not None and (backend != "rtl" or rtl_phases < 0):
        raise ValueError(f"rtl_phases must be >= 0 with backend rtl, got {rtl_phases} with backend {backend}")
    try:
        plan = llama_programs(cfg, m, len(prompt_ids), steps=tokens - 1)
    except ValueError as e:     # a shape this NPU's memories or accumulator cannot hold, named by the builder
        raise ValueError(f"the model does not fit this NPU ({cfg.array.rows}x{cfg.array.cols}, scratchpad "
                         f"{cfg.spad_bytes // 1024} KiB, accumulator {cfg.acc_bytes // 1024} KiB): {e}") from e
    prog = plan.prog
    memory, inputs, ids, phases = prog.image, {}, [], []
    schedule = _schedule(plan, all_phases, backend, rtl_from, rtl_phases, rtl_programs)
    split = backend == "rtl" and (rtl_programs is not None or rtl_from is not None or rtl_phases is not None)
    predicted = {}
    if progress is not None:
        predicted = {n: predicted_cycles(prog, n, latency) for on_rtl, _ in schedule.values() for n in on_rtl}
        progress.start(predicted)
    caches = llama.new_caches(m)
    eos = llama.eos_id(ck)
    try:
        for s, phase in enumerate(all_phases):
            feed = prompt_ids if s == 0 else [ids[-1]]
            start = caches[0].length
            inputs[f"x.{phase}"] = host_embedding(m, feed)
            memory = prog.write(memory, f"x.{phase}", inputs[f"x.{phase}"])
            on_rtl, on_isa = schedule[phase]
            where = "isa" if not on_rtl else "rtl" if not on_isa else "rtl+isa"
            if log:
                log(f"{phase}: {len(feed)} token(s) at position {start}, {len(on_rtl) + len(on_isa)} programs on the "
                    + {"isa": "ISA simulator", "rtl": "RTL",
                       "rtl+isa": f"RTL ({len(on_rtl)}) and ISA simulator ({len(on_isa)})"}[where])
            results = {}
            for part, runs_on in ((on_rtl, backend), (on_isa, "isa")):
                if part:
                    memory, res = run_programs(prog, backend=runs_on, harness=harness, latency=latency,
                                               log=None if progress is not None else log, names=part, memory=memory,
                                               inputs=inputs, predicted=predicted,
                                               done=None if progress is None else progress.done)
                    results.update(res)
            logits = plan.logits(memory, phase)[0]
            want = llama.int_forward(m, feed, caches, last_only=True)[-1]
            stats = totals(results, cfg)
            stats.update(phase=phase, tokens=len(feed), start=start, where=where,
                         matches_golden=bool(np.array_equal(logits, want)))
            if split:
                rtl = [results[n] for n in on_rtl]
                stats.update(rtl_programs=len(rtl), rtl_cycles=sum(r["cycles"] for r in rtl),
                             rtl_predicted_cycles=sum(r["predicted_cycles"] for r in rtl),
                             bit_exact=all(r["bit_exact"] for r in rtl))
            phases.append(stats)
            if log:     # each phase's verdict as it ends: a long run that dies later still leaves its record
                log(_phase_line(stats))
            ids.append(int(np.argmax(logits)))
            if ids[-1] == eos:
                break
    finally:
        if progress is not None:
            progress.close()
    clock_mhz, clock_source = npu_clock_mhz(cfg)

    def rate(ph: list, key: str | None = None) -> float | None:
        cycles = sum(p[key] if key else p.get("cycles", p["predicted_cycles"]) for p in ph)
        return sum(p["tokens"] for p in ph) * clock_mhz * 1e6 / cycles if cycles else None

    return {"model": model, "scheme": sch.name, "prompt_ids": prompt_ids, "token_ids": ids,
            "text": ck.tokenizer.decode(ids), "top1_agreement": None,
            "npu": {"backend": backend, "harness": harness if backend == "rtl" else None,
                    "array": f"{cfg.array.rows}x{cfg.array.cols}", "axi_bits": cfg.axi_data_bits,
                    "clock_mhz": clock_mhz, "clock_source": clock_source, "phases": phases,
                    "prefill_tokens_per_s": rate(phases[:1]), "decode_tokens_per_s": rate(phases[1:]),
                    "predicted_prefill_tokens_per_s": rate(phases[:1], "predicted_cycles"),
                    "predicted_decode_tokens_per_s": rate(phases[1:], "predicted_cycles"),
                    "rtl_decode": _rtl_decode(phases[1:], clock_mhz),
                    "matches_golden": all(p["matches_golden"] for p in phases),
                    "bit_exact": all(p.get("bit_exact", True) for p in phases)}}


def _phase_line(p: dict) -> str:
    """One line: where phase ``p`` ran, its cycles against the model's, bit-exactness and the golden verdict."""
    if "cycles" in p:
        line = (f"RTL {p['cycles']:,} cycles, model {p['predicted_cycles']:,} "
                f"({100 * (p['predicted_cycles'] - p['cycles']) / p['cycles']:+.2f}%), "
                f"bit-exact {'yes' if p['bit_exact'] else 'NO'}")
    elif p.get("rtl_programs"):
        line = (f"{p['rtl_programs']} program(s) on the RTL: {p['rtl_cycles']:,} cycles, model "
                f"{p['rtl_predicted_cycles']:,}, bit-exact {'yes' if p['bit_exact'] else 'NO'}; the rest on the ISA "
                f"simulator, model {p['predicted_cycles']:,} cycles")
    else:
        line = f"ISA simulator, model {p['predicted_cycles']:,} cycles"
    verdict = "equal to" if p["matches_golden"] else "DIFFER from"
    return f"{p['phase']} done: {line}; logits {verdict} the golden model's"


def _schedule(plan, phases: list[str], backend: str, rtl_from: str | None, rtl_phases: int | None,
              rtl_programs: int | None) -> dict[str, tuple[list[str], list[str]]]:
    """{phase: (programs on the RTL, programs on the ISA simulator)}: from phase ``rtl_from`` (default the first)
    on, ``rtl_phases`` phases (default all) go to the RTL, at most ``rtl_programs`` programs in all."""
    out, budget = {}, None if rtl_programs is None else max(0, int(rtl_programs))
    first = 0 if rtl_from is None else phases.index(rtl_from)
    for i, phase in enumerate(phases):
        names = plan.programs_of(phase)
        on = backend == "rtl" and i >= first and (rtl_phases is None or i < first + rtl_phases)
        on_rtl = [] if not on else names if budget is None else names[:budget]
        if budget is not None:
            budget -= len(on_rtl)
        out[phase] = (on_rtl, names[len(on_rtl):])
    return out


def _rtl_decode(steps: list[dict], clock_mhz: float) -> dict | None:
    """The decode steps that ran whole on the RTL: their measured and predicted cycles and tokens/s."""
    whole = [p for p in steps if "cycles" in p]
    if not whole:
        return None
    cycles, model = sum(p["cycles"] for p in whole), sum(p["predicted_cycles"] for p in whole)
    n = sum(p["tokens"] for p in whole)
    return {"phases": [p["phase"] for p in whole], "cycles": cycles, "predicted_cycles": model,
            "tokens_per_s": n * clock_mhz * 1e6 / cycles, "predicted_tokens_per_s": n * clock_mhz * 1e6 / model}
