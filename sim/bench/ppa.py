"""PPA benchmark: fmax and FPGA resources of the int8-only and scalable arrays and of the NPU (ECP5-85F).

``python -m npuforge.sim.bench.ppa`` writes ``build/bench/ppa.json``, prints a table and draws
``build/bench/ppa_fmax_mult18.png`` (fmax and MULT18X18D count against array size) from the JSON:

* arrays: int8-only and scalable (all five modes) at 4x4, 8x8 and 12x12 (the largest scalable square array within
  the LFE5U-85F's 156 MULT18X18D: one block per PE), with the fmax pipeline (``mac_pipeline`` 4) and, for 8x8, the
  default pipeline 2 and pipeline 5 (a register after the block's bias adder, and registered array edges); place
  and route with seeds 1, 2, 3,
  the best kept (with its seed);
* the NPU: the ``ecp5-85f`` preset placed and routed (seeds as above), and the default NPU's resource table by unit
  (synthesis only: it does not fit the device);
* the scalable MAC's Yosys ``stat -tech cmos`` transistor estimate against the int8-only MAC's.

``--sizes 8 --macs scalable --pipelines 4 --seeds 1`` measures a subset (the JSON holds what was asked for).
nextpnr routes int8-only arrays with router1 and the scalable arrays and the NPU with router2
(``gen.ppa.synth.auto_router``; ``--router`` forces one): router1, nextpnr's default for ECP5, had not finished
the scalable 8x8 array with 100 k of its 111 k arcs left, and router2 gave the 8x8 int8 array 153 MHz where
router1 gave 183 (seed 1). Each point records its router. Every seed after the first places and routes
the first seed's netlist again (``gen.ppa.synth.pnr_seed``: one Yosys run per point).
fmax figures live here, never in test assertions. Every point is cached under build/bench/ppa/ by its config,
seed and the RTL sources, so a rerun only synthesizes what changed.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from npuforge.gen.build.elaborate import content_hash
from npuforge.gen.config.array import ArrayConfig
from npuforge.gen.ppa.sweep import _rtl_fingerprint
from npuforge.gen.ppa.synth import ROUTERS, auto_router
from npuforge.spec.precision import MODE_NAMES
from npuforge.sim.harness.runner import BUILD

__all__ = ["main", "array_points", "run_cached"]

MACS = {"int8": ("int8",), "scalable": MODE_NAMES}
SIZES = (4, 8, 12)
SEEDS = (1, 2, 3)
FMAX_PIPELINE = 4


def array_points(sizes=SIZES, macs=tuple(MACS), pipelines=None) -> list[tuple[str, ArrayConfig]]:
    """(MAC name, config) of every array point: each size at the fmax pipeline, 8x8 also at the default 2
    (``pipelines`` given: exactly those depths at every size)."""
    points = []
    for mac in macs:
        precs = MACS[mac]
        for n in sizes:
            depths = pipelines if pipelines is not None else ((FMAX_PIPELINE, 5, 2) if n == 8 else (FMAX_PIPELINE,))
            for pipe in depths:
                points.append((mac, ArrayConfig(rows=n, cols=n, precisions=precs, mac_pipeline=pipe,
                                                name=f"array_{n}x{n}_{mac}_p{pipe}")))
    return points


def run_cached(key_data: str, fn, cache_dir: Path) -> dict:
    """``fn()`` (a synthesis result dict), cached under ``cache_dir`` by ``key_data`` and the RTL sources."""
    key = content_hash(key_data, _rtl_fingerprint())
    path = cache_dir / f"{key}.json"
    if path.exists():
        return json.loads(path.read_text())
    t0 = time.perf_counter()
    res = fn()
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=2, sort_keys=True) + "\n")
    return res


def _best_of_seeds(label: str, cfg: ArrayConfig, seeds, cache: Path, router: str = "auto", **kw) -> dict:
    from npuforge.gen.ppa.synth import pnr_seed, synthesize

    router = auto_router(cfg) if router == "auto" else router
    runs = []
    first = None   # run folder whose netlist the later seeds place and route again (one Yosys run per point)
    for seed in seeds:
        out = BUILD / "bench" / "ppa" / "runs" / f"{label}_s{seed}"
        npu = kw.get("npu")
        key = json.dumps({"cfg": cfg.to_dict(), "npu": npu.to_dict() if npu is not None else None, "seed": seed,
                          "unit": kw.get("unit", "array"), "pnr": kw.get("pnr", True),
                          # router1 points were cached before the router was a parameter: their keys stay.
                          **({"router": router} if router != "router1" else {})}, sort_keys=True)

        def run(seed=seed, out=out, npu=npu):
            if first is not None and (first / "synth.json").is_file() and \
                    json.loads((first / "synth.json").read_text()).get("pnr"):
                return pnr_seed(first, seed, out_dir=out, router=router)
            return synthesize(cfg, target="ecp5", cmos=False, seed=seed, out_dir=out, pnr=kw.get("pnr", True),
                              unit=kw.get("unit", "array"), npu=npu, router=router)

        runs.append(run_cached(key, run, cache))
        first = first or out
        print(f"  {label} seed {seed}: fmax {runs[-1].get('fmax_mhz')} MHz, LUT {runs[-1].get('luts')}, "
              f"MULT18 {runs[-1].get('dsps')}, DP16KD {runs[-1].get('brams')}", flush=True)
    best = max(runs, key=lambda r: r.get("fmax_mhz") or 0)
    return {"label": label, "config": cfg.to_dict(), "fmax_mhz": best.get("fmax_mhz"),
            "seed": best.get("pnr", {}).get("seed"), "fmax_by_seed": [r.get("fmax_mhz") for r in runs],
            "router": best.get("pnr", {}).get("router", "router1") if best.get("pnr") else None,
            "wall_s_by_seed": [r.get("wall_s") for r in runs],
            "luts": best.get("luts"), "ffs": best.get("ffs"), "dsps": best.get("dsps"), "brams": best.get("brams"),
            "mult18": best.get("mult18"), "units": best.get("units"), "fits": best.get("fits"),
            "pnr_skipped": best.get("pnr_skipped"), "critical_path": best.get("critical_path")}


def plot(json_path: Path) -> Path:
    """fmax and MULT18X18D count against array size, from ``ppa.json``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads(json_path.read_text())
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for mac in MACS:
        for pipe in (FMAX_PIPELINE, 5, 2):
            pts = sorted((r["config"]["rows"] * r["config"]["cols"], r["fmax_mhz"], r["dsps"])
                         for r in data["arrays"] if r["mac"] == mac and r["config"]["mac_pipeline"] == pipe)
            if not pts:
                continue
            label = f"{mac}, mac_pipeline {pipe}"
            ax1.plot([p[0] for p in pts], [p[1] or 0 for p in pts], "o-", label=label)
            ax2.plot([p[0] for p in pts], [p[2] for p in pts], "o-", label=label)
    ax2.axhline(156, color="gray", ls="--", lw=1, label="LFE5U-85F: 156")
    for ax, ylabel in ((ax1, "fmax [MHz], best of seeds"), (ax2, "MULT18X18D")):
        ax.set_xlabel("PEs (rows x cols)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("PE arrays on ECP5-85F speed 6 (nextpnr out of context)", fontsize=9)
    fig.tight_layout()
    path = json_path.with_name("ppa_fmax_mult18.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    from npuforge.gen.config.npu import NPUConfig
    from npuforge.gen.config.presets import preset
    from npuforge.gen.ppa.synth import synthesize

    parser = argparse.ArgumentParser(prog="python -m npuforge.sim.bench.ppa", description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default=str(BUILD / "bench" / "ppa.json"), help="JSON output file")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="square array sizes (default 4,8,12)")
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)), help="nextpnr seeds (default 1,2,3)")
    parser.add_argument("--router", default="auto", choices=("auto",) + ROUTERS,
                        help="nextpnr router (default auto: router1 for int8-only arrays, router2 otherwise)")
    parser.add_argument("--macs", default=",".join(MACS), help="array MACs (default int8,scalable)")
    parser.add_argument("--pipelines", default=None,
                        help=f"MAC pipeline depths at every size (default {FMAX_PIPELINE}, 8x8 also 5 and 2)")
    parser.add_argument("--no-npu", action="store_true", help="arrays only")
    args = parser.parse_args(argv)
    macs = [m.strip() for m in args.macs.split(",") if m.strip()]
    for mac in macs:
        if mac not in MACS:
            parser.error(f"--macs: {mac!r} is not one of {', '.join(MACS)}")
    pipelines = [int(s) for s in args.pipelines.split(",")] if args.pipelines else None
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    cache = BUILD / "bench" / "ppa" / "cache"
    record: dict = {"benchmark": "ppa", "device": "LFE5U-85F speed 6, nextpnr-ecp5 out of context",
                    "seeds": seeds, "arrays": [], "npu": {}, "mac_transistors": {}}

    def save():
        out.write_text(json.dumps(record, indent=2) + "\n")

    for mac, cfg in array_points(sizes, macs, pipelines):
        print(f"[bench_ppa] {cfg.name}", flush=True)
        rec = _best_of_seeds(cfg.name, cfg, seeds, cache, router=args.router)
        rec["mac"] = mac
        record["arrays"].append(rec)
        save()
    for mac, precs in list(MACS.items()) + [("scalable8", ("int8", "w4a8", "int4"))]:
        cfg = ArrayConfig(rows=1, cols=1, precisions=precs)
        res = run_cached(json.dumps({"mac_cmos": cfg.to_dict()}),
                         lambda: synthesize(cfg, unit="mac", target="generic",
                                            out_dir=BUILD / "bench" / "ppa" / "runs" / f"mac_{mac}"), cache)
        record["mac_transistors"][mac] = res["transistors"]
    base = record["mac_transistors"]["int8"]
    record["mac_transistor_ratio"] = {m: round(t / base, 3) for m, t in record["mac_transistors"].items()}
    save()
    if not args.no_npu:
        p = preset("ecp5-85f")
        arr = ArrayConfig.from_dict(p["array"])
        npu = NPUConfig.from_dict({**p["npu"], "array": arr})
        print("[bench_ppa] NPU preset ecp5-85f", flush=True)
        record["npu"]["ecp5-85f"] = _best_of_seeds("npu_ecp5-85f", arr, seeds, cache, unit="npu", npu=npu,
                                                  router=args.router)
        save()
        print("[bench_ppa] default NPU (resource table)", flush=True)
        record["npu"]["default"] = _best_of_seeds("npu_default", ArrayConfig(), seeds[:1], cache, unit="npu",
                                                  pnr=False, npu=NPUConfig())
        save()
    png = plot(out)
    print(f"{'point':26} {'fmax':>7} {'seed':>4} {'LUT':>6} {'FF':>6} {'MULT18':>6} {'DP16KD':>6}")
    rows = record["arrays"] + list(record["npu"].values())
    for r in rows:
        print(f"{r['label']:26} {r['fmax_mhz'] or '-':>7} {r['seed'] or '-':>4} {r['luts']:>6} {r['ffs']:>6} "
              f"{r['dsps']:>6} {r['brams']:>6}" + (f"  ({r['pnr_skipped']})" if r.get("pnr_skipped") else ""))
    print(f"MAC transistors (stat -tech cmos): {record['mac_transistors']} ratio to int8 "
          f"{record['mac_transistor_ratio']}")
    print(f"wrote {out}, {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
