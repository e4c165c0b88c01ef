"""``make bench``: every benchmark in turn; each writes its JSON under build/bench/ and prints a short table.

    python -m sim.bench [--only array,vector,dma,npu,perf_model]

Timings, cycles and utilisation live here, never in test assertions. Exit code 1 when a benchmark's
results differ from the golden model (the benches check as they measure).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time

#: name -> (module, entry point). Entry points take no arguments and return an exit code or records.
BENCHES = {
    "array": ("sim.bench_array", "main"),
    "vector": ("sim.bench_vector", "main"),
    "dma": ("sim.bench_dma", "main"),
    "npu": ("sim.bench_npu", "main"),
    "perf_model": ("sim.bench_perf_model", "main"),
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sim.bench", description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(BENCHES),
                    help=f"comma-separated subset of {','.join(BENCHES)} (default: all)")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    for n in names:
        if n not in BENCHES:
            print(f"error: --only must name benchmarks among {', '.join(BENCHES)}, got {n!r}", file=sys.stderr)
            return 2
    status = 0
    summary = []
    for n in names:
        module_name, entry = BENCHES[n]
        print(f"== bench {n} ({module_name}) ==", flush=True)
        t0 = time.time()
        rc = getattr(importlib.import_module(module_name), entry)([])
        rc = rc if isinstance(rc, int) else 0
        status = status or rc
        summary.append((n, time.time() - t0, rc))
    print("\nbenchmark  wall s  result")
    for n, secs, rc in summary:
        print(f"{n:9} {secs:7.1f}  {'ok' if rc == 0 else 'MISMATCH'}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
