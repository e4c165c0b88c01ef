"""Row-operator benchmark (LayerNorm, RMSNorm, softmax): elements/cycle and row latency, ECP5 resources.

``bench_rows()`` returns the per-operator records that ``sim.bench.vector`` writes to
``build/bench/vector.json``: for each operator and lanes setting, at least 4 rows of 64, 384, 896 and 4096
elements stream back to back (``o.ready`` high) through the Amaranth simulator (cycle counts are deterministic),
giving the sustained (steady-state) elements per cycle -- row length times the rows completed after the first,
over the cycles between the first and the last row's completion -- and the latency of the first row (first
beat accepted -> its last beat out).
Target: >= lanes / 2 elements per cycle averaged over the rows of 384 or more (``meets_target``).

Run alone: ``python -m npuforge.sim.bench.vector_rows [--lanes 1 4 8 16] [--rows ...] [--no-synth] [-o FILE]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from npuforge.sim.bench.vector_common import BenchOp, resources, stream_rows
from npuforge.sim.harness.runner import BUILD

__all__ = ["ROW_OPS", "bench_rows", "main"]

ROW_LENGTHS = (64, 384, 896, 4096)
LANES = (1, 4, 8, 16)
MAX_ROW = 4096
ROW_OPS = ("layernorm", "rmsnorm", "softmax")
TARGET = "row operators >= lanes/2 elements per cycle averaged over rows of 384 or more"


def _build(op: str, lanes: int):
    if op == "softmax":
        from npuforge.rtl.vector.softmax import Softmax
        return Softmax(lanes=lanes, max_row=MAX_ROW)
    from npuforge.rtl.vector.norm import LayerNorm, RMSNorm
    return {"layernorm": LayerNorm, "rmsnorm": RMSNorm}[op](lanes=lanes, max_row=MAX_ROW)


def _configure(op: str):
    """Scalar ports that make a legal row; the timing does not depend on the data (fixed-latency units)."""
    def configure(ctx, dut, row_len):
        if op == "softmax":
            ctx.set(dut.exp_multiplier, 1 << 30)
            ctx.set(dut.exp_shift, 0)
        else:
            ctx.set(dut.var_frac_bits, 0)
            ctx.set(dut.gamma_shift, 0)
    return configure


def _bench_op(op: str):
    return BenchOp(op, lambda lanes: _build(op, lanes), _configure(op))


#: Elements streamed per point (at least MIN_ROWS rows), as in sim.bench.vector.
ELEMENTS_PER_POINT = 8192
MIN_ROWS = 4


def measure_rows(op: str, lanes: int, row_len: int) -> dict:
    """Stream rows back to back with ``o.ready`` high; steady-state elements/cycle and first-row latency."""
    dut = _build(op, lanes)
    n_rows = max(MIN_ROWS, ELEMENTS_PER_POINT // row_len)
    first_in, done = stream_rows(_bench_op(op), dut, lanes=lanes, row_len=row_len, n_rows=n_rows)
    return {
        "rows": n_rows,
        "cycles": done[-1] - first_in + 1,
        "elements_per_cycle": round((n_rows - 1) * row_len / (done[-1] - done[0]), 4),
        "latency_cycles": done[0] - first_in + 1,
    }


def bench_rows(*, lanes=LANES, rows=ROW_LENGTHS, ops=ROW_OPS, synth: bool = True, progress=None) -> dict:
    """Measure every (operator, lanes, row length); returns ``{op: {str(lanes): point}}``.

    ``point = {"rows": {str(n): {"rows", "cycles", "elements_per_cycle", "latency_cycles"}},
    "avg_elements_per_cycle_384_up", "target_elements_per_cycle", "meets_target", ["ecp5": {...}]}``.
    ``progress`` is called with a label after each point (e.g. a progress bar's update).
    """
    for n in rows:
        if not 1 <= n <= MAX_ROW:
            raise ValueError(f"row lengths must be in [1, {MAX_ROW}], got {n}")
    for op in ops:
        if op not in ROW_OPS:
            raise ValueError(f"row operator must be one of {ROW_OPS}, got {op!r}")
    synth_dir = BUILD / "bench" / "vector_synth"
    result = {}
    for op in ops:
        bench_op = _bench_op(op)
        for n_lanes in lanes:
            point = {"rows": {str(n): measure_rows(op, n_lanes, n) for n in rows}}
            long_rows = [point["rows"][str(n)]["elements_per_cycle"] for n in rows if n >= 384]
            if long_rows:
                avg = sum(long_rows) / len(long_rows)
                point["avg_elements_per_cycle_384_up"] = round(avg, 4)
                point["target_elements_per_cycle"] = n_lanes / 2
                point["meets_target"] = avg >= n_lanes / 2
            if synth:
                point["ecp5"] = resources(bench_op, n_lanes, synth_dir)
            result.setdefault(op, {})[str(n_lanes)] = point
            if progress is not None:
                progress(f"{op} lanes={n_lanes}")
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m npuforge.sim.bench.vector_rows", description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", default=str(BUILD / "bench" / "vector_rows.json"))
    ap.add_argument("--lanes", type=int, nargs="+", default=list(LANES))
    ap.add_argument("--rows", type=int, nargs="+", default=list(ROW_LENGTHS))
    ap.add_argument("--ops", nargs="+", default=list(ROW_OPS))
    ap.add_argument("--no-synth", action="store_true", help="skip the ECP5 resource figures")
    args = ap.parse_args(argv)
    for n_lanes in args.lanes:
        if n_lanes < 1 or n_lanes & (n_lanes - 1) or n_lanes > 64:
            print(f"error: --lanes must be powers of two in [1, 64], got {n_lanes}", file=sys.stderr)
            return 2
    try:
        from tqdm import tqdm
        bar = tqdm(total=len(args.ops) * len(args.lanes), desc="row-operator bench", unit="point")
        progress = lambda label: bar.update(1)  # noqa: E731
    except ImportError:
        bar, progress = None, None
    t0 = time.time()
    try:
        ops = bench_rows(lanes=args.lanes, rows=args.rows, ops=args.ops, synth=not args.no_synth,
                         progress=progress)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if bar is not None:
        bar.close()
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"max_row": MAX_ROW, "row_lengths": args.rows, "lanes": args.lanes, "target": TARGET,
                               "operators": ops, "wall_s": round(time.time() - t0, 1)}, indent=2) + "\n")
    print(f"{'op':10} {'lanes':>5} " + " ".join(f"{'e/c@' + str(n):>9}" for n in args.rows)
          + f" {'avg>=384':>9} {'target':>7} {'lat@' + str(args.rows[-1]):>9}")
    for name, per_lanes in ops.items():
        for n_lanes, p in per_lanes.items():
            print(f"{name:10} {n_lanes:>5} " + " ".join(f"{p['rows'][str(n)]['elements_per_cycle']:>9.3f}" for n in args.rows)
                  + f" {p.get('avg_elements_per_cycle_384_up', float('nan')):>9.3f} {p.get('target_elements_per_cycle', '-')!s:>7}"
                  f" {p['rows'][str(args.rows[-1])]['latency_cycles']:>9}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
