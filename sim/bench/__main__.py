"""``make bench``: every benchmark in turn; each writes its JSON under build/bench/ and prints a short table.

    python -m npuforge.sim.bench [--only array,vector,dma,npu,npu_a16,layer,decode_gemv,model,perf_model,sim_speed,ppa]

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
    "array": ("npuforge.sim.bench.array", "main"),
    "vector": ("npuforge.sim.bench.vector", "main"),
    "dma": ("npuforge.sim.bench.dma", "main"),
    "npu": ("npuforge.sim.bench.npu", "main"),
    "npu_a16": ("npuforge.sim.bench.npu_a16", "main"),
    "layer": ("npuforge.sim.bench.layer", "main"),
    "decode_gemv": ("npuforge.sim.bench.decode_gemv", "main"),
    "model": ("npuforge.sim.bench.model", "main"),
    "perf_model": ("npuforge.sim.bench.perf_model", "main"),
    "sim_speed": ("npuforge.sim.bench.sim_speed", "main"),
    "ppa": ("npuforge.sim.bench.ppa", "main"),
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m npuforge.sim.bench", description=__doc__.splitlines()[0])
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
