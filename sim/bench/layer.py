"""Layer-program benchmark: the feed-forward halves of MiniLM and SmolLM2-135M layers as single NPU programs
(gen.isa.builder) -> build/bench/layer.json.

* MiniLM (hidden 384, MLP 1536): ``x @ W1 -> GELU -> @ W2 -> + x -> LayerNorm``.
* SmolLM2-135M (hidden 576, MLP 1536): ``RMSNorm(x) -> gate, up projections -> SiLU(gate) * up -> @ W_down -> + x``.

Prefill of 64 tokens and one decode token (T = 1) per shape. All int8 (weights and activations), **random data**:
these programs exercise the NPU's operators at the real layers' shapes; the real models run under their 16-bit
schemes through gen.lower.bert / gen.lower.llama (sim.bench.model, npuforge generate), so no accuracy is claimed here.

Per design point: the program cycle model's prediction (gen.perf.program, validated on the RTL within 3 % by
tests/rtl/npu/test_layer_cocotb.py) for 8x8 and 16x16 arrays with 64- and 128-bit AXI, and the RTL run (native
harness, DRAM without added latency or stalls, checked bit for bit against the ISA simulator and the golden
operators) on the points given by ``--rtl`` (default 8x8 with 64-bit AXI; ``all`` for every point, one Verilator
build each). Utilization = useful MACs / (peak MACs per cycle x cycles from START to DONE, vector work, DMA and
fetch included); bus efficiency = bytes moved / (AXI bytes per cycle x cycles).
Per program the table prints the model's cycles, the RTL's and the model's error (predicted - measured) / measured.

``--ops`` adds the vector operators in every format the layer programs use (softmax of int8 / int16 / int32 scores
into uint8 or Q0.15, the int8 and int32-stream residual adds, LayerNorm / RMSNorm of int8 and int32 rows into int8
/ int16, 8- and 16-bit GELU / SiLU, gate, RoPE), each as a small program (load, the instruction once or three
times, store) on 8 x 128 and 5 x 40 random operands, on the RTL points: the model's error per program and per
instruction (the difference of the three- and one-instruction programs, the vector unit's occupancy).
Usage: ``python -m npuforge.sim.bench.layer [--rtl none|8x8|all] [--ops]``.
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
from npuforge.gen.isa.builder import LayerBuilder, LayerProgram
from npuforge.gen.isa.ops import SoftmaxBlock, WideResidualParams
from npuforge.gen.perf.program import program_cycles, vec_cycles
from npuforge.golden.activations import gelu_table, silu_table
from npuforge.golden.elementwise import gate_params, residual_params, rope_table
from npuforge.golden.models.intops import IDENTITY_REQUANT, gelu_float, interp_table, silu_float, wide_norm_params
from npuforge.golden.norms import layernorm_params, rmsnorm_params
from npuforge.golden.requant import quantize_multipliers
from npuforge.golden.softmax import softmax_params
from npuforge.sim.harness.npu_run import layer_job, run_jobs, summarize
from npuforge.sim.harness.npu_vec_jobs import vec_job
from npuforge.sim.harness.runner import BUILD
from npuforge.spec.isa import INSTR_BYTES, VEC_EXECUTABLE, DmaLoad, DmaStore, VecOp, decode_program

# Every vector operator (attention's softmax and RoPE too), so one build per point serves --ops.
VECTOR_OPS = VEC_EXECUTABLE
SHAPES = {"minilm_ffn": (384, 1536), "smollm2_mlp": (576, 1536)}
TOKENS = {"prefill": 64, "decode": 1}
POINTS = [(8, 64), (8, 128), (16, 64), (16, 128)]


def _requant(rng, n: int, k: int, a_std: float = 74.0, b_std: float = 74.0):
    return quantize_multipliers(rng.uniform(0.5, 2.0, n) * 48.0 / (np.sqrt(k) * a_std * b_std))


def _weight(rng, lb: LayerBuilder, name: str, k: int, n: int):
    return lb.constant(name, rng.integers(-128, 128, (k, n)))


def minilm_ffn(cfg: NPUConfig, t: int, *, seed: int = 0) -> LayerProgram:
    hidden, ffn = SHAPES["minilm_ffn"]
    rng = np.random.default_rng(seed)
    lb = LayerBuilder(cfg)
    x = lb.constant("x", rng.integers(-128, 128, (t, hidden)))
    h, g = lb.buffer("h", t, ffn), lb.buffer("g", t, ffn)
    y, r, out = lb.buffer("y", t, hidden), lb.buffer("r", t, hidden), lb.buffer("out", t, hidden)
    lb.gemm(x, _weight(rng, lb, "w1", hidden, ffn), h, *_requant(rng, ffn, hidden))
    lb.vector("act", h, g, gelu_table(0.05, 0.03))
    lb.gemm(g, _weight(rng, lb, "w2", ffn, hidden), y, *_requant(rng, hidden, ffn, a_std=45.0))
    lb.vector("residual", y, r, residual_params(0.04, 0.05, 0.07), src2=x)
    lb.vector("layernorm", r, out, layernorm_params(0.07, rng.uniform(0.5, 1.5, hidden),
                                                    rng.uniform(-0.5, 0.5, hidden), 0.04))
    return lb.build()


def smollm2_mlp(cfg: NPUConfig, t: int, *, seed: int = 0) -> LayerProgram:
    hidden, ffn = SHAPES["smollm2_mlp"]
    rng = np.random.default_rng(seed)
    lb = LayerBuilder(cfg)
    x = lb.constant("x", rng.integers(-128, 128, (t, hidden)))
    xn = lb.buffer("xn", t, hidden)
    gate, up, act, prod = (lb.buffer(n, t, ffn) for n in ("gate", "up", "act", "prod"))
    down, out = lb.buffer("down", t, hidden), lb.buffer("out", t, hidden)
    lb.vector("rmsnorm", x, xn, rmsnorm_params(0.07, rng.uniform(0.5, 1.5, hidden), 0.04))
    lb.gemm(xn, _weight(rng, lb, "w_gate", hidden, ffn), gate, *_requant(rng, ffn, hidden))
    lb.gemm(xn, _weight(rng, lb, "w_up", hidden, ffn), up, *_requant(rng, ffn, hidden))
    lb.vector("act", gate, act, silu_table(0.05, 0.03))
    lb.vector("gate", act, prod, gate_params(0.03, 0.05, 0.04), src2=up)
    lb.gemm(prod, _weight(rng, lb, "w_down", ffn, hidden), down, *_requant(rng, hidden, ffn, a_std=45.0))
    lb.vector("residual", down, out, residual_params(0.04, 0.07, 0.07), src2=x)
    return lb.build()


BUILDERS = {"minilm_ffn": minilm_ffn, "smollm2_mlp": smollm2_mlp}


def _bytes_moved(prog: LayerProgram) -> int:
    """DMA payload plus command fetch of a program (what the BYTES_READ / BYTES_WRITTEN counters and the fetch
    count on the RTL)."""
    return sum(i.rows * i.row_bytes for i in prog.program if isinstance(i, (DmaLoad, DmaStore))) \
        + INSTR_BYTES * len(prog.program)


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


def _cfg(size: int, axi_bits: int) -> NPUConfig:
    return NPUConfig(array=ArrayConfig(rows=size, cols=size), axi_data_bits=axi_bits, vector_ops=VECTOR_OPS)


def bench_point(size: int, axi_bits: int, *, rtl: bool, log=print) -> list[dict]:
    cfg = _cfg(size, axi_bits)
    peak = cfg.array.rows * cfg.array.cols
    progs = {(shape, phase): BUILDERS[shape](cfg, t, seed=i)
             for i, (shape, (phase, t)) in enumerate((s, p) for s in SHAPES for p in TOKENS.items())}
    rows = []
    for (shape, phase), prog in progs.items():
        model = program_cycles(prog.program_bytes, cfg, latency=0, harness="fast")
        moved = _bytes_moved(prog)
        rows.append({"array": f"{size}x{size}", "axi_bits": axi_bits, "workload": shape, "phase": phase,
                     "tokens": TOKENS[phase], "macs": prog.macs, "instructions": len(prog.program),
                     "predicted_cycles": model.cycles,
                     "predicted_utilization": prog.macs / (peak * model.cycles), "predicted_bytes_moved": moved,
                     "predicted_bus_efficiency": moved / (axi_bits // 8 * model.cycles)})
    if rtl:
        jobs = [layer_job(prog, f"{shape}_{phase}", "out") for (shape, phase), prog in progs.items()]
        t0 = time.time()
        log(f"  {size}x{size}, {axi_bits}-bit AXI: {len(jobs)} layer programs on the RTL (native harness)...")
        results = run_jobs(cfg, jobs, latency=0, stall=0.0, check=False, harness="native",
                           tag=f"layer{size}_{axi_bits}")
        for row, job, res in zip(rows, jobs, results):
            s = summarize(job, res)
            row.update(cycles=s["cycles"], utilization=s["utilization"], bytes_moved=s["bytes_moved"],
                       bus_efficiency=s["bytes_moved"] / (axi_bits // 8 * s["cycles"]) if s["cycles"] else 0.0,
                       bit_exact=s["bit_exact"],
                       model_error=(row["predicted_cycles"] - s["cycles"]) / s["cycles"] if s["cycles"] else None)
        log(f"    ({time.time() - t0:.0f} s wall)")
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m npuforge.sim.bench.layer", description=__doc__.splitlines()[0])
    ap.add_argument("--rtl", choices=("none", "8x8", "all"), default="8x8",
                    help="design points run on the RTL besides the model: none, 8x8 with 64-bit AXI, or all")
    ap.add_argument("--ops", action="store_true",
                    help="also the vector operators in every layer format, model vs RTL, on the RTL points")
    ap.add_argument("-o", "--out", default=str(BUILD / "bench" / "layer.json"))
    args = ap.parse_args(argv)
    rows, ops = [], []
    for size, bits in POINTS:
        rtl = args.rtl == "all" or (args.rtl == "8x8" and (size, bits) == (8, 64))
        rows += bench_point(size, bits, rtl=rtl)
        if rtl and args.ops:
            ops += bench_ops(_cfg(size, bits))
    out = {"description": __doc__.split("\n\n")[0], "data": "random int8 operands (not a real checkpoint)",
           "npu": f"default NPUConfig per array / AXI width with vector_ops={list(VECTOR_OPS)}",
           "rows": rows, "vector_ops": ops,
           "all_bit_exact": all(r.get("bit_exact", True) for r in rows + ops)}
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}")
    print("int8, random data; util = useful MACs / (peak x cycles), whole program; RTL columns where run")
    print(f"{'array':6s} {'axi':>4s} {'workload':12s} {'phase':8s} {'model cyc':>10s} {'util':>6s} {'bus':>6s} "
          f"{'RTL cyc':>9s} {'util%':>6s} {'bus%':>6s} {'err%':>6s} exact")
    for r in rows:
        rtl = (f"{r['cycles']:>9d} {100 * r['utilization']:6.1f} {100 * r['bus_efficiency']:6.1f} "
               f"{100 * r['model_error']:6.2f} {r['bit_exact']}") if "cycles" in r else f"{'-':>9s}"
        print(f"{r['array']:6s} {r['axi_bits']:>4d} {r['workload']:12s} {r['phase']:8s} {r['predicted_cycles']:>10d} "
              f"{100 * r['predicted_utilization']:5.1f}% {100 * r['predicted_bus_efficiency']:5.1f}% {rtl}")
    measured = [r for r in rows if "cycles" in r]
    if measured:
        worst = max(measured, key=lambda r: abs(r["model_error"]))
        print(f"model error, layer programs: max |err| {100 * abs(worst['model_error']):.2f} % "
              f"({worst['array']} {worst['axi_bits']}-bit {worst['workload']} {worst['phase']})")
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
