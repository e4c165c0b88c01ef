"""Layer benchmark: real SmolLM2-135M and MiniLM layers on the NPU -> build/bench/layer.json.

Each workload is one whole layer of the real checkpoint (sim.harness.layer_run, as ``npuforge run layer``): weights
from the checkpoint, the input the golden model's activations of real text at that layer (the shipped held-out
texts: sim.harness.layer_run.llama_text for SmolLM2, the evaluation prose for MiniLM), every output checked
against the golden operators and the golden model's own layer. Schemes (``--schemes``): ``w8a16`` (SmolLM2: the
GGUF's own Q4_1 / Q8_0 blocks on the block-scaled MATMUL; MiniLM: int8 per channel) and ``best``, each model's most
accurate scheme (golden.models.api; SmolLM2 ``w4a16-kv16-pt``: int16 K/V through MATMUL.b16 and the per-token
scaled down projection; MiniLM ``w8a16-kv16``):

* ``prefill``: 64 tokens (SmolLM2 and MiniLM). Utilization = useful MACs / (the w8a16 peak, one product per PE per
  cycle, x cycles from START to DONE): the whole layer, attention, vector work, DMA and fetch included.
* ``decode``: one step at context 256 and 1024 (SmolLM2; MiniLM is an encoder). Bus efficiency = bytes moved (DMA
  payload + command fetch) / (AXI bytes per cycle x cycles): the whole layer.

Design points 8x8 / 64-bit and 16x16 / 128-bit AXI, plus 8x8 / 128 and 16x16 / 64, one NPU each (all vector
operators, MATMUL modes int8 / w8a16 / w4a16, the block-scaled MATMUL with MATMUL.b16 (``kv16``); other fields
NPUConfig's defaults). Every
point and workload runs on the ISA simulator, its cycles from the program cycle model (gen.perf.program; labelled
``"cycles_from": "model"``); the RTL (native harness, DRAM without added latency or stalls) runs ``--rtl``'s
workloads (default: SmolLM2 prefill 64 and decode at 256 on 8x8 / 64-bit, decode at 256 on 16x16 / 128-bit,
under each scheme), ``"cycles_from": "rtl"``, with the
model's error per program (predicted - measured) / measured.

``--ops`` adds the vector operators in every format the layer programs use (softmax of int8 / int16 / int32 scores
into uint8 or Q0.15, the int8 and int32-stream residual adds, LayerNorm / RMSNorm of int8 and int32 rows into int8
/ int16, 8- and 16-bit GELU / SiLU, gate, RoPE), each as a small program (load, the instruction once or three
times, store) on 8 x 128 and 5 x 40 random operands, on the 8x8 / 64-bit RTL: the model's error per program and per
instruction (the difference of the three- and one-instruction programs, the vector unit's occupancy).
Usage: ``python -m npuforge.sim.bench.layer [--rtl none|default|8x8|all] [--layer N] [--schemes w8a16,best]
[--ops]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from npuforge.gen.config.array import ArrayConfig
from npuforge.gen.config.npu import NPUConfig
from npuforge.gen.isa.ops import SoftmaxBlock, WideResidualParams
from npuforge.gen.perf.program import program_cycles, vec_cycles
from npuforge.golden.activations import gelu_table, silu_table
from npuforge.golden.elementwise import gate_params, residual_params, rope_table
from npuforge.golden.models.intops import IDENTITY_REQUANT, gelu_float, interp_table, silu_float, wide_norm_params
from npuforge.golden.models.schemes import BEST
from npuforge.golden.norms import layernorm_params, rmsnorm_params
from npuforge.golden.softmax import softmax_params
from npuforge.sim.harness.npu_run import run_jobs
from npuforge.sim.harness.npu_vec_jobs import vec_job
from npuforge.sim.harness.runner import BUILD
from npuforge.spec.isa import VEC_EXECUTABLE, VecOp, decode_program

# Every vector operator (BERT's LayerNorm and Llama's RMSNorm / RoPE / gate too), so one build per point serves all.
VECTOR_OPS = VEC_EXECUTABLE
PRECISIONS = ("int8", "w8a16", "w4a16")
#: (model, phase, tokens, context): prefill of 64 tokens; one decode step after 256 / 1024 cached tokens
WORKLOADS = (("smollm2", "prefill", 64, 0), ("smollm2", "decode", 1, 256), ("smollm2", "decode", 1, 1024),
             ("minilm", "prefill", 64, 0))
#: ``--schemes`` names -> the scheme of each model (``best``: golden.models.api's most accurate, both NPU-executable
#: on a kv16 NPU)
SCHEMES = {"w8a16": {"smollm2": "w8a16", "minilm": "w8a16"},
           "best": {"smollm2": BEST["llama"], "minilm": BEST["bert"]}}
POINTS = [(8, 64), (16, 128), (8, 128), (16, 64)]
#: what ``--rtl default`` runs on the RTL (under every scheme): SmolLM2 prefill 64 and decode at 256 on 8x8 /
#: 64-bit, decode at 256 on 16x16 / 128-bit (its native build takes 15-30 minutes once, then the run about a minute)
RTL_DEFAULT = {(8, 64): (WORKLOADS[0], WORKLOADS[1]), (16, 128): (WORKLOADS[1],)}
LAYER = 2
TARGETS = {"prefill": ("utilization", 0.80), "decode": ("bus_efficiency", 0.85)}


def _residual_flags(a_bits: int, b_bits: int, out_bits: int) -> int:
    """vec.residual flags of the int32 residual stream's add (spec.vector_ops: wide, width codes, out32)."""
    code = {8: 0, 16: 1, 32: 2}
    return 1 | code[a_bits] << 1 | code[b_bits] << 3 | (out_bits == 32) << 5


def vector_op_variants(m: int, n: int, lanes: int, *, seed: int = 0) -> dict:
    """``name -> (op, a, b, params, flags)``: every vector format of the layer programs on random [m, n] operands
    (RoPE when n is a multiple of 2 lanes and at most 256)."""
    rng = np.random.default_rng(seed)

    def ints(bits, shift=0):
        return (rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), (m, n)) >> shift).astype(f"int{bits}")

    def norm(kind, out_bits, wide):
        gamma, beta = rng.uniform(0.5, 1.5, n), rng.uniform(-0.5, 0.5, n)
        scale = 0.03 / (256 if out_bits == 16 else 1)
        if kind == "layernorm":
            build = lambda s, **kw: layernorm_params(s, gamma, beta, scale, **kw)   # noqa: E731
        else:
            build = lambda s, **kw: rmsnorm_params(s, gamma, scale, **kw)          # noqa: E731
        return wide_norm_params(build, 2.0 ** -12, out_bits=out_bits) if wide else build(0.05, out_bits=out_bits)
    p32 = softmax_params(2.0 ** -16, input_bits=32)
    out = {
        "softmax_i8_u8": ("softmax", ints(8), None, softmax_params(0.06, input_bits=8), 0),
        "softmax_i8_causal_u8": ("softmax", ints(8), None, softmax_params(0.06, input_bits=8), 1),
        "softmax_i8_q15": ("softmax", ints(8), None, softmax_params(0.06, input_bits=8), 8),
        "softmax_i16_q15_causal": ("softmax", ints(16), None, softmax_params(0.004, input_bits=16), 2 | 8 | 1),
        "softmax_i32_q15_pad": ("softmax", ints(32, 14), None, SoftmaxBlock(p32, max(1, n - 3)), 4 | 8 | 16 | 1),
        "softmax_i32_u8": ("softmax", ints(32, 14), None, p32, 4),
        "residual_i8": ("residual", ints(8), ints(8), residual_params(0.05, 0.03, 0.06), 0),
        "residual_32_32_to_32": ("residual", ints(32, 8), ints(32, 8), WideResidualParams(*IDENTITY_REQUANT),
                                 _residual_flags(32, 32, 32)),
        "residual_16_32_to_32": ("residual", ints(16), ints(32, 8), WideResidualParams(1_700_000_000, -2),
                                 _residual_flags(16, 32, 32)),
        "residual_8_32_to_32": ("residual", ints(8), ints(32, 8), WideResidualParams(1 << 30, -2),
                                _residual_flags(8, 32, 32)),
        "residual_32_16_to_16": ("residual", ints(32, 8), ints(16), WideResidualParams(1_100_000_000, 5),
                                 _residual_flags(32, 16, 16)),
        "residual_8_16_to_16": ("residual", ints(8), ints(16), WideResidualParams(1 << 30, -20),
                                _residual_flags(8, 16, 16)),
        "layernorm_i8": ("layernorm", ints(8), None, norm("layernorm", 8, False), 0),
        "layernorm_i8_q16": ("layernorm", ints(8), None, norm("layernorm", 16, False), 2),
        "layernorm_i32_i8": ("layernorm", ints(32, 8), None, norm("layernorm", 8, True), 1),
        "layernorm_i32_q16": ("layernorm", ints(32, 8), None, norm("layernorm", 16, True), 3),
        "rmsnorm_i8": ("rmsnorm", ints(8), None, norm("rmsnorm", 8, False), 0),
        "rmsnorm_i32_q16": ("rmsnorm", ints(32, 8), None, norm("rmsnorm", 16, True), 3),
        "gelu8": ("act", ints(8), None, gelu_table(0.05, 0.03), 0),
        "silu8": ("act", ints(8), None, silu_table(0.05, 0.03), 1),
        "gelu16": ("act", ints(16), None, interp_table(gelu_float, 1 / 2048, 1 / 4096), 2),
        "silu16": ("act", ints(16), None, interp_table(silu_float, 1 / 1024, 1 / 8192), 3),
        "gate": ("gate", ints(8), ints(8), gate_params(0.05, 0.03, 0.6), 0),
    }
    if n % (2 * lanes) == 0 and n <= 256:
        out["rope_2_heads"] = ("rope", ints(8), None, rope_table(n, 16), 1)
    return out


OPS_SHAPES = ((8, 128), (5, 40))


def bench_ops(cfg: NPUConfig, *, log=print) -> list[dict]:
    """The vector-operator programs of ``--ops`` on the RTL (native harness, no stalls) beside the model."""
    jobs, meta = [], []
    for m, n in OPS_SHAPES:
        for name, (op, a, b, params, flags) in vector_op_variants(m, n, cfg.sequencer_lanes, seed=m * n).items():
            pair = [vec_job(cfg, f"{name}_{m}x{n}_x{rep}", op, a, b, params, flags=flags, repeat=rep)
                    for rep in (1, 3)]
            jobs += pair
            meta.append((name, m, n, pair))
    t0 = time.time()
    log(f"  {cfg.array.rows}x{cfg.array.cols}, {cfg.axi_data_bits}-bit AXI: {len(jobs)} vector-op programs on the "
        f"RTL (native harness)...")
    results = {r["name"]: r for r in run_jobs(cfg, jobs, latency=0, stall=0.0, check=False, harness="native",
                                              tag=f"layer_ops{cfg.array.rows}_{cfg.axi_data_bits}")}
    log(f"    ({time.time() - t0:.0f} s wall)")
    rows = []
    for name, m, n, (one, three) in meta:
        r1, r3 = results[one.name], results[three.name]
        program = one.image[:one.program_len].tobytes()
        instr = next(i for i in decode_program(program) if isinstance(i, VecOp))
        got1, got3 = r1["counters"]["BUSY_CYCLES"], r3["counters"]["BUSY_CYCLES"]
        model1 = program_cycles(program, cfg, latency=0, harness="fast").cycles
        per_instr = (got3 - got1) / 2
        model_instr = vec_cycles(instr, cfg)
        rows.append({"array": f"{cfg.array.rows}x{cfg.array.cols}", "axi_bits": cfg.axi_data_bits, "variant": name,
                     "op": instr.op, "flags": instr.flags, "m": m, "n": n,
                     "predicted_cycles": model1, "cycles": got1, "model_error": (model1 - got1) / got1,
                     "predicted_instruction_cycles": model_instr, "instruction_cycles": per_instr,
                     "instruction_model_error": (model_instr - per_instr) / per_instr,
                     "bit_exact": all(r["error"] == 0 and r["isasim_mismatch_bytes"] == 0
                                      and r["golden_mismatch_bytes"] == 0 for r in (r1, r3))})
    return rows


def bench_config(size: int, axi_bits: int) -> NPUConfig:
    """The NPU of a bench point (``npuforge run layer --precisions int8,w8a16,w4a16 --vector-ops all
    --block-scaled --kv16`` at that array and bus; sim.bench.decode_gemv uses it too, so they share native builds)."""
    return NPUConfig(array=ArrayConfig(rows=size, cols=size, precisions=PRECISIONS), axi_data_bits=axi_bits,
                     vector_ops=VECTOR_OPS, block_scaled=True, kv16=True)


class _Models:
    """The two checkpoints under each bench scheme, their token ids and the golden side of each workload (computed
    once)."""

    def __init__(self, layer: int, schemes=tuple(SCHEMES)):
        from npuforge.golden.models import llama
        from npuforge.golden.models.api import int_bert, int_llama, resolve_model
        from npuforge.golden.models.assets import data_text
        from npuforge.sim.harness.layer_run import llama_text

        ck = llama.load_llama(resolve_model("smollm2", "llama"), name="smollm2")
        self.llama = {s: int_llama(ck, SCHEMES[s]["smollm2"]) for s in schemes}
        self.llama_ids = ck.tokenizer.encode(llama_text()).ids
        self.bert = {}
        for s in schemes:
            _, bck, self.bert[s] = int_bert("minilm", SCHEMES[s]["minilm"])
        self.bert_ids = bck.tokenizer.encode(data_text("eval_prose.txt")).ids[:bck.max_tokens]
        self.layer = layer
        self._golden: dict = {}

    def case(self, cfg: NPUConfig, workload: tuple, scheme: str):
        from npuforge.sim.harness.layer_run import bert_case, llama_case, llama_golden

        model, phase, tokens, context = workload
        if model == "minilm":
            return bert_case(cfg, self.bert[scheme], self.bert_ids, self.layer, tokens)
        m = self.llama[scheme]
        if (workload, scheme) not in self._golden:
            self._golden[workload, scheme] = llama_golden(m, self.llama_ids, self.layer, phase, tokens, context)
        return llama_case(cfg, m, self.llama_ids, self.layer, phase, tokens, context,
                          golden=self._golden[workload, scheme])


def _on_rtl(rtl: str, point: tuple, workload: tuple) -> bool:
    if rtl == "all":
        return True
    if rtl == "8x8":
        return point == (8, 64)
    return rtl == "default" and workload in RTL_DEFAULT.get(point, ())


def bench_point(models: _Models, size: int, axi_bits: int, *, rtl: str, schemes=tuple(SCHEMES),
                log=print) -> list[dict]:
    from npuforge.sim.harness.layer_run import run_case

    cfg = bench_config(size, axi_bits)
    rows = []
    for sname, workload in ((s, w) for s in schemes for w in WORKLOADS):
        model, phase, tokens, context = workload
        scheme = SCHEMES[sname][model]
        t0 = time.time()
        case = models.case(cfg, workload, sname)
        isa = run_case(case, backend="isa")
        row = {"array": f"{size}x{size}", "axi_bits": axi_bits, "model": model, "layer": models.layer,
               "phase": phase, "tokens": tokens, "context": context, "scheme": scheme,
               "programs": len(case.names), "instructions": sum(len(case.prog.programs[n]) for n in case.names),
               "macs": isa["macs"], "predicted_cycles": isa["predicted_cycles"],
               "predicted_utilization": isa["utilization"], "predicted_bytes_moved": isa["bytes_moved"],
               "predicted_bus_efficiency": isa["bus_efficiency"], "isa_bit_exact": isa["bit_exact"],
               "cycles_from": "model", "cycles": isa["cycles"], "utilization": isa["utilization"],
               "bus_efficiency": isa["bus_efficiency"], "bytes_moved": isa["bytes_moved"],
               "bit_exact": isa["bit_exact"]}
        if _on_rtl(rtl, (size, axi_bits), workload):
            log(f"  {size}x{size}, {axi_bits}-bit AXI: {model} ({scheme}) layer {models.layer} {phase} {tokens} token(s)"
                f"{f' at context {context}' if context else ''} on the RTL (native harness)...")
            res = run_case(case, backend="rtl", harness="native")
            row.update(cycles_from="rtl", cycles=res["cycles"], utilization=res["utilization"],
                       bus_efficiency=res["bus_efficiency"], bytes_moved=res["bytes_moved"],
                       bit_exact=bool(res["bit_exact"] and isa["bit_exact"]),
                       model_error=(res["predicted_cycles"] - res["cycles"]) / res["cycles"],
                       program_model_errors={n: (r["predicted_cycles"] - r["cycles"]) / r["cycles"]
                                             for n, r in res["programs"].items()},
                       sim_wall_s=res["sim_wall_s"])
        metric, target = TARGETS[phase]
        row.update(target_metric=metric, target=target, meets_target=bool(row[metric] >= target),
                   wall_s=round(time.time() - t0, 1))
        log(f"    {size}x{size}/{axi_bits} {model} {scheme} {phase} {tokens}@{context}: {row['cycles']:,} cycles "
            f"({row['cycles_from']}), util {100 * row['utilization']:.1f}%, bus {100 * row['bus_efficiency']:.1f}%, "
            f"bit-exact {row['bit_exact']} ({row['wall_s']} s)")
        rows.append(row)
    return rows


def _table(rows: list[dict]) -> None:
    print("whole real layers, real text; util = MACs / (one product per PE x cycles: the w8a16 / w4a16 peak); bus = "
          "bytes / (AXI bytes x cycles); cycles from the RTL where run, else the cycle model")
    print(f"{'array':6s} {'axi':>4s} {'model':8s} {'scheme':14s} {'phase':8s} {'T@ctx':>8s} {'cycles':>10s} {'from':5s} "
          f"{'util%':>6s} {'bus%':>6s} {'target':>12s} {'err%':>6s} exact")
    for r in rows:
        err = f"{100 * r['model_error']:6.2f}" if "model_error" in r else f"{'-':>6s}"
        target = f"{r['target_metric'][:4]}>={100 * r['target']:.0f}% {'ok' if r['meets_target'] else 'no'}"
        work = f"{r['tokens']}@{r['context']}"
        print(f"{r['array']:6s} {r['axi_bits']:>4d} {r['model']:8s} {r['scheme']:14s} {r['phase']:8s} {work:>8s} "
              f"{r['cycles']:>10,} {r['cycles_from']:5s} {100 * r['utilization']:6.1f} "
              f"{100 * r['bus_efficiency']:6.1f} {target:>12s} {err} {r['bit_exact']}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m npuforge.sim.bench.layer", description=__doc__.splitlines()[0])
    ap.add_argument("--rtl", choices=("none", "default", "8x8", "all"), default="default",
                    help="what runs on the RTL besides the model: none; default (SmolLM2 prefill 64 and decode at "
                         "256 on 8x8 / 64-bit, decode at 256 on 16x16 / 128-bit); 8x8 (every workload on 8x8 / "
                         "64-bit); all")
    ap.add_argument("--layer", type=int, default=LAYER, help=f"the layer of both models (default {LAYER})")
    ap.add_argument("--schemes", default=",".join(SCHEMES),
                    help=f"comma-separated, of {', '.join(SCHEMES)} (default all): w8a16, and best = "
                         f"{SCHEMES['best']['smollm2']} / {SCHEMES['best']['minilm']}")
    ap.add_argument("--ops", action="store_true",
                    help="also the vector operators in every layer format, model vs RTL, on 8x8 / 64-bit")
    ap.add_argument("-o", "--out", default=str(BUILD / "bench" / "layer.json"))
    args = ap.parse_args(argv)
    schemes = tuple(s for s in args.schemes.split(",") if s)
    bad = [s for s in schemes if s not in SCHEMES]
    if bad or not schemes:
        print(f"python -m npuforge.sim.bench.layer: error: --schemes must name entries among {', '.join(SCHEMES)}, "
              f"got {args.schemes!r}", file=sys.stderr)
        return 2
    t0 = time.time()
    models = _Models(args.layer, schemes)
    print(f"  models loaded ({time.time() - t0:.0f} s)", flush=True)
    rows, ops = [], []
    for size, bits in POINTS:
        rows += bench_point(models, size, bits, rtl=args.rtl, schemes=schemes, log=lambda msg: print(msg, flush=True))
    if args.ops:
        ops = bench_ops(bench_config(8, 64))
    out = {"description": __doc__.split("\n\n")[0],
           "data": "SmolLM2-135M-Instruct (GGUF Q4_1 / Q8_0 blocks) and all-MiniLM-L6-v2 checkpoints, shipped "
                   "held-out text; vector operators (--ops): random operands",
           "npu": f"NPUConfig per array / AXI width with precisions={list(PRECISIONS)}, block_scaled, kv16, "
                  f"vector_ops={list(VECTOR_OPS)}",
           "rows": rows, "vector_ops": ops,
           "all_bit_exact": all(r.get("bit_exact", True) for r in rows + ops)}
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}")
    _table(rows)
    measured = [r for r in rows if "model_error" in r]
    if measured:
        worst = max(measured, key=lambda r: abs(r["model_error"]))
        print(f"model error, layer programs on the RTL: max |err| {100 * abs(worst['model_error']):.2f} % "
              f"({worst['array']} {worst['axi_bits']}-bit {worst['model']} {worst['scheme']} {worst['phase']} at "
              f"{worst['context']})")
    if ops:
        print("\nvector operators, random data: program = load, the instruction, store; instr = the vector unit's "
              "occupancy (3-instruction minus 1-instruction program, / 2)")
        print(f"{'array':6s} {'axi':>4s} {'variant':24s} {'shape':>7s} {'model':>7s} {'RTL':>7s} {'err%':>6s} "
              f"{'instr mdl':>9s} {'instr RTL':>9s} {'err%':>6s} exact")
        for r in ops:
            print(f"{r['array']:6s} {r['axi_bits']:>4d} {r['variant']:24s} {r['m']:>3d}x{r['n']:<3d} "
                  f"{r['predicted_cycles']:>7d} {r['cycles']:>7d} {100 * r['model_error']:6.2f} "
                  f"{r['predicted_instruction_cycles']:>9d} {r['instruction_cycles']:>9.1f} "
                  f"{100 * r['instruction_model_error']:6.2f} {r['bit_exact']}")
        worst = max(ops, key=lambda r: abs(r["instruction_model_error"]))
        print(f"model error, vector operators: max |err| per program "
              f"{100 * max(abs(r['model_error']) for r in ops):.2f} %, per instruction "
              f"{100 * abs(worst['instruction_model_error']):.2f} % ({worst['variant']} {worst['m']}x{worst['n']})")
    return 0 if out["all_bit_exact"] else 1


if __name__ == "__main__":
    sys.exit(main())
