"""Design-space sweep: synthesize many array design points in parallel, cache each, tabulate, plot.

Each point is one :class:`~gen.config.array.ArrayConfig` (copied from a base with ``dataclasses.replace``) plus the
flow options (target, place and route). A finished point is stored as ``DIR/cache/KEY.json`` where ``KEY``
hashes the config, the flow options and :data:`FLOW_VERSION`; a rerun loads it instead of synthesizing.

Execution goes through the standard ``concurrent.futures.Executor`` interface: a local
``ProcessPoolExecutor`` by default, or a Dask distributed cluster (``Client(address).get_executor()``) when a
scheduler address is given, so a sweep that outgrows one machine runs unchanged on a cluster (the workers need
this package installed).

Outputs: ``sweep.csv`` and ``sweep.json`` (one row per point), then PNG plots drawn from ``sweep.csv``:
``area_vs_peak_macs.png``, ``fmax_vs_size.png``, ``mult18_vs_size.png``, ``macs_per_lut.png``,
``utilization_vs_size.png``, ``minilm_tokens_vs_size.png``, ``llm_decode_tokens_vs_size.png``.

Real-model metrics per point (:func:`model_metrics`, for arrays with the w8a16 mode): all-MiniLM-L6-v2's prefill
from its real NPU programs (the checkpoint's weights, gen.lower.bert) through the whole-program cycle model, which
`make bench` (``model``) checks against the RTL: utilization, bus efficiency and tokens/s at the point's fmax.
A point that cannot run MiniLM gets None values and ``minilm_reason``.

Llama metrics per point (gen.ppa.llm_metrics, workload :data:`LLM_WORKLOAD`: SmolLM2-135M-Instruct's own Q4_1 /
Q8_0 blocks on the block-scaled MATMUL by default): prefill tokens/s of a ``prompt_tokens`` prompt, decode tokens/s,
bus efficiency and utilization of one decode step at context ``prompt_tokens + 1`` (every layer and the LM head),
from the real model's NPU programs through the same cycle model, at the same clock as MiniLM's; ``llm_reason``
names what a point lacks to run it. Both are computed beside the synthesis; a cached point that lacks them (or has
another LLM workload's) gets them computed and written back to its cache file, without synthesizing again.
"""

from __future__ import annotations

import concurrent.futures as cf
import csv
import functools
import json
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

from npuforge.gen.config.array import ArrayConfig, acc_bits_needed
from npuforge.gen.ppa.llm_metrics import LLM_KEYS, LLM_WORKLOAD, llm_metrics
from npuforge.spec.precision import MODE_NAMES, PRECISION_MODES
from npuforge.gen.build.elaborate import content_hash

__all__ = ["FLOW_VERSION", "PRECISION_SETS", "SweepPoint", "make_grid", "point_key", "run_point", "run_sweep",
           "write_tables", "plot_sweep", "CSV_FIELDS", "WORKLOAD", "LLM_WORKLOAD", "model_metrics"]

#: Bump when synthesis or metrics change, so cached points are recomputed.
FLOW_VERSION = "3"
#: Named MAC variants: the plain int8 MAC, the precision-scalable one with every mode, and with the 8-bit-activation
#: modes only (the scalable MAC before the 16-bit-activation modes widened its activation operand).
PRECISION_SETS = {"int8": ("int8",), "scalable": MODE_NAMES, "scalable8": ("int8", "w4a8", "int4")}
#: Transformer workload of the utilization metric: one all-MiniLM-L6 encoder layer over 128 tokens.
WORKLOAD = {"model": "all-minilm-l6-v2", "tokens": 128}

CSV_FIELDS = ["key", "name", "rows", "cols", "pes", "dataflow", "mac", "precisions", "mac_pipeline", "acc_width", "max_k",
              "target", "pnr", "dsp", "luts", "lut4", "ccu2c", "ffs", "dsps", "brams", "transistors", "fmax_mhz",
              "peak_macs_int8", "peak_macs_max", "max_mode", "macs_per_lut", "util_int8", "util_max",
              "critical_path_ns", "minilm_prefill_util", "minilm_prefill_bus", "minilm_prefill_tokens_s",
              "minilm_clock_mhz", "minilm_reason", *LLM_KEYS, "synth_s", "error"]
MINILM_KEYS = ("minilm_prefill_util", "minilm_prefill_bus", "minilm_prefill_tokens_s", "minilm_clock_mhz",
               "minilm_reason")


@dataclass(frozen=True)
class SweepPoint:
    cfg: ArrayConfig
    target: str = "ecp5"
    pnr: bool = True
    dsp: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.cfg.to_dict(), "target": self.target, "pnr": self.pnr, "dsp": self.dsp}


def _largest_max_k(precisions: Sequence[str], acc_width: int, cap: int = 4096) -> int:
    """Largest K <= cap that ``acc_width`` holds exactly in every 8-bit-activation mode of ``precisions`` (the
    16-bit-activation modes have their own bound, ``ArrayConfig.k_limit``)."""
    k = cap
    narrow = [m for m in precisions if not PRECISION_MODES[m].wide_act]
    while k > 1 and max(acc_bits_needed(m, k) for m in narrow) > acc_width:
        k //= 2
    return k


def make_grid(*, sizes: Iterable[int] = (2, 4, 8, 16), shapes: Iterable[tuple[int, int]] = (),
              macs: Iterable[str] = ("int8", "scalable"), dataflows: Iterable[str] = ("ws",),
              acc_widths: Iterable[int] = (32,), target: str = "ecp5", pnr: bool = True, dsp: bool = True,
              base: ArrayConfig | None = None) -> list[SweepPoint]:
    """Cartesian grid: square ``sizes`` plus non-square ``shapes`` x MAC variants x dataflows x acc widths.

    ``max_k`` of each point is the largest (<= 4096) that its accumulator holds exactly.
    """
    base = base or ArrayConfig()
    dims = [(n, n) for n in sizes] + [tuple(s) for s in shapes]
    points = []
    for mac in macs:
        if mac not in PRECISION_SETS:
            raise ValueError(f"MAC variant must be one of {', '.join(PRECISION_SETS)}, got {mac!r}")
        precs = PRECISION_SETS[mac]
        for r, c in dims:
            for df in dataflows:
                for acc in acc_widths:
                    cfg = replace(base, rows=r, cols=c, dataflow=df, precisions=precs, acc_width=acc,
                                  max_k=_largest_max_k(precs, acc) if isinstance(acc, int) else base.max_k,
                                  name=f"array_{r}x{c}_{df}_{mac}_acc{acc}")
                    points.append(SweepPoint(cfg, target, pnr, dsp))
    # Small points first: early results (and a useful table) long before the big ones finish.
    points.sort(key=lambda p: (p.cfg.rows * p.cfg.cols, p.cfg.rows, p.cfg.precisions, p.cfg.dataflow,
                               p.cfg.acc_width))
    seen, unique = set(), []
    for p in points:
        if point_key(p) not in seen:
            seen.add(point_key(p))
            unique.append(p)
    return unique


def _rtl_fingerprint() -> str:
    """Hash of the RTL sources (rtl/**/*.py): a cached point is only reused for the hardware it measured."""
    root = Path(__file__).resolve().parents[2] / "rtl"
    return content_hash(*(f"{p.relative_to(root)}\n{p.read_text()}" for p in sorted(root.rglob("*.py"))))


def point_key(point: SweepPoint) -> str:
    """Cache key of a point: its config, target and flow options, the flow version and the RTL it synthesizes."""
    return content_hash(point.cfg.to_json(), point.target, str(point.pnr), str(point.dsp), FLOW_VERSION,
                        _rtl_fingerprint())


def _metrics(cfg: ArrayConfig, synth: dict[str, Any]) -> dict[str, Any]:
    from npuforge.gen.perf.model import transformer_utilization

    peaks = cfg.peak_macs_per_cycle
    max_mode = max(cfg.precisions, key=lambda m: (peaks[m], -cfg.precisions.index(m)))  # most MACs per cycle
    luts = synth.get("luts")
    return {
        "peak_macs_int8": peaks["int8"], "peak_macs_max": peaks[max_mode], "max_mode": max_mode,
        "macs_per_lut": (peaks[max_mode] / luts) if luts else None,
        "util_int8": transformer_utilization(cfg, mode="int8", **WORKLOAD),
        "util_max": transformer_utilization(cfg, mode=max_mode, **WORKLOAD),
    }


@functools.lru_cache(maxsize=1)
def _minilm():
    from npuforge.golden.models.api import int_bert

    return int_bert("minilm", "w8a16")[2]


def model_metrics(cfg: ArrayConfig, fmax_mhz: float | None, *, axi_bits: int = 64) -> dict[str, Any]:
    """Real-model metrics of a design point: all-MiniLM-L6-v2's prefill of WORKLOAD["tokens"] tokens (the real
    checkpoint's NPU programs under w8a16, gen.lower.bert, priced by the whole-program cycle model gen.perf.layers)
    on an NPU around this array (default memories, ``axi_bits``-bit AXI): utilization of the w8a16 peak, bus
    efficiency, tokens/s at the point's measured fmax (else gen.perf.model.default_clock_mhz). None values and
    ``minilm_reason`` where the point cannot run it (no w8a16 mode, no weight-stationary MATMUL, not an NPU array)."""
    from npuforge.gen.config.npu import NPUConfig
    from npuforge.gen.lower.bert import PRECISIONS, VECTOR_OPS
    from npuforge.gen.lower import require_features

    out: dict[str, Any] = dict.fromkeys(MINILM_KEYS)
    try:
        if cfg.dataflow == "os":
            raise ValueError("BERT's programs need the weight-stationary MATMUL (dataflow ws or both), got os")
        npu = NPUConfig(array=cfg, axi_data_bits=axi_bits, vector_ops=VECTOR_OPS)
        require_features(npu, "BERT", PRECISIONS, VECTOR_OPS)
    except ValueError as e:          # ConfigError included
        out["minilm_reason"] = " ".join(str(e).split())
        return out
    total = _minilm_totals(replace(npu, array=replace(cfg, name=ArrayConfig.name)).to_json())
    clock = point_clock_mhz(cfg, fmax_mhz)
    out.update(minilm_prefill_util=total["utilization"], minilm_prefill_bus=total["bus_efficiency"],
               minilm_prefill_tokens_s=WORKLOAD["tokens"] * clock * 1e6 / total["cycles"], minilm_clock_mhz=clock)
    return out


@functools.lru_cache(maxsize=16)
def _minilm_totals(npu_json: str) -> dict[str, Any]:
    """MiniLM's prefill program totals on one NPU (clock-independent; the Verilog name blanked: points that differ
    only in their flow options or clock reuse them)."""
    import numpy as np

    from npuforge.gen.config.npu import NPUConfig
    from npuforge.gen.lower.bert import bert_programs
    from npuforge.gen.perf.layers import programs_perf

    m, tokens = _minilm(), WORKLOAD["tokens"]
    prog, _ = bert_programs(NPUConfig.from_json(npu_json), m, e=np.zeros((tokens, m.ck.cfg.hidden), np.int64))
    return programs_perf(prog, mode="w8a16", tokens=tokens, clock_mhz=1.0, harness="fast")["total"]


def point_clock_mhz(cfg: ArrayConfig, fmax_mhz: float | None) -> float:
    """The clock of a point's tokens/s: its measured fmax, else gen.perf.model.default_clock_mhz."""
    from npuforge.gen.perf.model import default_clock_mhz

    return fmax_mhz or default_clock_mhz(cfg)[0]


def _complete(row: dict[str, Any], llm: dict[str, Any] | None) -> bool:
    """Does a cached row hold both real-model metric groups, the LLM group for workload ``llm``?"""
    m = row.get("metrics", {})
    return all(k in m for k in MINILM_KEYS + LLM_KEYS) and row.get("llm_workload") == llm


def _add_model_metrics(row: dict[str, Any], cfg: ArrayConfig, llm: dict[str, Any] | None, out_dir: str) -> bool:
    """Fill the real-model metric groups a row lacks (MiniLM's; the LLM's, or another workload's); True if changed."""
    m, fmax, changed = row["metrics"], row["synth"].get("fmax_mhz"), False
    if not all(k in m for k in MINILM_KEYS):
        m.update(model_metrics(cfg, fmax))
        changed = True
    if not all(k in m for k in LLM_KEYS) or row.get("llm_workload") != llm:
        m.update(llm_metrics(cfg, point_clock_mhz(cfg, fmax), llm, cache_root=Path(out_dir) / "cache" / "llm"))
        row["llm_workload"] = llm
        changed = True
    return changed


def _write_cache(cache: Path, row: dict[str, Any]) -> None:
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(row, indent=2, sort_keys=True) + "\n")
    tmp.replace(cache)  # atomic: a crashed worker never leaves a half-written cache entry


def run_point(point: dict[str, Any], out_dir: str, llm: dict[str, Any] | None = None) -> dict[str, Any]:
    """Synthesize one point (dict form of :class:`SweepPoint`) unless cached, add its real-model metrics (``llm``:
    the LLM workload, gen.ppa.llm_metrics.llm_workload; None: none); return its result row.

    A module-level function taking plain data, so process pools and Dask workers can run it.
    """
    from npuforge.gen.ppa.synth import auto_router, synthesize

    sp = SweepPoint(ArrayConfig.from_dict(point["config"]), point["target"], point["pnr"], point.get("dsp", True))
    key = point_key(sp)
    cache = Path(out_dir) / "cache" / f"{key}.json"
    if cache.exists():
        row = json.loads(cache.read_text())
        if _add_model_metrics(row, sp.cfg, llm, out_dir):   # cached before these metrics, or another LLM workload
            _write_cache(cache, row)
        return row
    t0 = time.perf_counter()
    row: dict[str, Any] = {"key": key, "config": sp.cfg.to_dict(), "target": sp.target, "pnr": sp.pnr,
                           "dsp": sp.dsp}
    try:
        synth = synthesize(sp.cfg, target=sp.target, pnr=sp.pnr and sp.target == "ecp5",
                           dsp=sp.dsp, out_dir=Path(out_dir) / "points" / key,
                           router=auto_router(sp.cfg))
        row["synth"] = {k: v for k, v in synth.items() if k != "config"}
        row["error"] = None
    except Exception as e:  # one failed point must not lose the others; it is reported, not cached
        row["synth"] = {}
        row["error"] = " ".join(f"{type(e).__name__}: {e}".split())
    row["synth_s"] = round(time.perf_counter() - t0, 2)
    row["metrics"] = _metrics(sp.cfg, row["synth"])
    _add_model_metrics(row, sp.cfg, llm, out_dir)
    if row["error"] is None:
        _write_cache(cache, row)
    return row


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    cfg, s, m = row["config"], row.get("synth", {}), row["metrics"]
    cp = s.get("critical_path") or {}
    mac = next((name for name, precs in PRECISION_SETS.items() if list(precs) == list(cfg["precisions"])), "custom")
    out = {"key": row["key"], "name": cfg["name"], "rows": cfg["rows"], "cols": cfg["cols"],
           "pes": cfg["rows"] * cfg["cols"], "dataflow": cfg["dataflow"], "mac": mac,
           "precisions": "+".join(cfg["precisions"]), "mac_pipeline": cfg.get("mac_pipeline"), "acc_width": cfg["acc_width"], "max_k": cfg["max_k"],
           "target": row["target"], "pnr": row["pnr"], "dsp": row.get("dsp", True), "critical_path_ns": cp.get("delay_ns"),
           "synth_s": row.get("synth_s"), "error": row.get("error")}
    for f in ("luts", "lut4", "ccu2c", "ffs", "dsps", "brams", "transistors", "fmax_mhz"):
        out[f] = s.get(f)
    out.update(m)
    return {k: out.get(k) for k in CSV_FIELDS}


def write_tables(rows: list[dict[str, Any]], out_dir: str | Path,
                 llm: dict[str, Any] | None = None) -> tuple[Path, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    flat = sorted((_flat(r) for r in rows), key=lambda f: (f["mac"], f["dataflow"], f["acc_width"], f["pes"],
                                                           f["rows"]))
    with open(out / "sweep.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        w.writeheader()
        for f in flat:
            w.writerow({k: ("" if v is None else v) for k, v in f.items()})
    (out / "sweep.json").write_text(json.dumps({"workload": WORKLOAD, "llm_workload": llm,
                                                "flow_version": FLOW_VERSION, "points": flat}, indent=2) + "\n")
    return out / "sweep.csv", out / "sweep.json"


def _read_csv(path: Path) -> list[dict[str, Any]]:
    def num(v: str):
        if v == "":
            return None
        try:
            return int(v)
        except ValueError:
            try:
                return float(v)
            except ValueError:
                return v
    with open(path, newline="") as fh:
        return [{k: num(v) for k, v in r.items()} for r in csv.DictReader(fh)]


def plot_sweep(csv_path: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Draw the sweep plots from ``sweep.csv`` (results are data first; plots only read them)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    csv_path = Path(csv_path)
    out = Path(out_dir) if out_dir else csv_path.parent
    rows = [r for r in _read_csv(csv_path) if not r["error"]]
    meta = csv_path.parent / "sweep.json"
    llm = json.loads(meta.read_text()).get("llm_workload") if meta.exists() else None
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(f"{r['mac']} {r['dataflow']} acc{r['acc_width']} pipe{r['mac_pipeline']}", []).append(r)
    paths = []

    def figure(name, xlabel, ylabel, series, title, logx=False):
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        for label, pts in series:
            pts = [(x, y, t) for x, y, t in pts if x is not None and y is not None]
            if not pts:
                continue
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=label)
            for x, y, t in pts:
                ax.annotate(t, (x, y), fontsize=6, textcoords="offset points", xytext=(3, 3))
        if logx:
            ax.set_xscale("log", base=2)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        fig.tight_layout()
        p = out / name
        fig.savefig(p, dpi=120)
        plt.close(fig)
        paths.append(p)

    dims = lambda r: f"{r['rows']}x{r['cols']}"  # noqa: E731
    figure("area_vs_peak_macs.png", "peak MACs/cycle (widest mode)", "LUT4 equivalents (LUT4 + 2 x CCU2C)",
           [(g, [(r["peak_macs_max"], r["luts"], dims(r)) for r in rs]) for g, rs in groups.items()],
           "Area vs peak throughput (ECP5)", logx=True)
    figure("fmax_vs_size.png", "PEs (rows x cols)", "fmax [MHz] (nextpnr-ecp5 85F speed 6, OOC)",
           [(g, [(r["pes"], r["fmax_mhz"], dims(r)) for r in rs]) for g, rs in groups.items()],
           "fmax vs array size", logx=True)
    figure("mult18_vs_size.png", "PEs (rows x cols)", "MULT18X18D blocks (LFE5U-85F has 156)",
           [(g, [(r["pes"], r["dsps"], dims(r)) for r in rs]) for g, rs in groups.items()],
           "Multiplier blocks vs array size (one per PE in every mode)", logx=True)
    figure("macs_per_lut.png", "PEs (rows x cols)", "peak MACs/cycle per LUT4 equivalent",
           [(g, [(r["pes"], r["macs_per_lut"], dims(r)) for r in rs]) for g, rs in groups.items()],
           "Area efficiency (DSP multipliers not counted as LUTs)", logx=True)
    series = []
    for g, rs in groups.items():
        series.append((f"{g} int8", [(r["pes"], r["util_int8"], dims(r)) for r in rs]))
        if rs and rs[0]["max_mode"] != "int8":
            series.append((f"{g} {rs[0]['max_mode']}", [(r["pes"], r["util_max"], dims(r)) for r in rs]))
    figure("utilization_vs_size.png", "PEs (rows x cols)", "array utilization (analytic model)", series,
           f"Utilization on one {WORKLOAD['model']} layer, {WORKLOAD['tokens']} tokens", logx=True)
    figure("minilm_tokens_vs_size.png", "PEs (rows x cols)", "MiniLM prefill tokens/s (at the point's fmax)",
           [(g, [(r["pes"], r["minilm_prefill_tokens_s"], f"{dims(r)} {100 * (r['minilm_prefill_util'] or 0):.0f}%")
                 for r in rs]) for g, rs in groups.items()],
           f"all-MiniLM-L6-v2 prefill of {WORKLOAD['tokens']} tokens from its NPU programs (w8a16, 64-bit AXI)",
           logx=True)
    figure("llm_decode_tokens_vs_size.png", "PEs (rows x cols)",
           "LLM decode tokens/s (point's fmax, else nearest measured)",
           [(g, [(r["pes"], r["llm_decode_tokens_s"], f"{dims(r)} bus {100 * (r['llm_decode_bus'] or 0):.0f}%")
                 for r in rs]) for g, rs in groups.items()],
           "no LLM workload" if not llm else
           f"{llm['model']} ({llm['scheme']}): one decode step at context {llm['prompt_tokens'] + 1}\n"
           f"(all layers + LM head, from its NPU programs, 64-bit AXI)", logx=True)
    return paths


def _executor(scheduler: str | None, jobs: int):
    if scheduler:
        from distributed import Client

        client = Client(scheduler)
        # pure=False: every submission runs (the cache file, not Dask's key dedup, decides what is skipped)
        return client.get_executor(pure=False), client
    return cf.ProcessPoolExecutor(max_workers=jobs), None


def run_sweep(points: Sequence[SweepPoint], out_dir: str | Path, *, jobs: int = 2, scheduler: str | None = None,
              progress: bool = True, plots: bool = True,
              llm: dict[str, Any] | None = LLM_WORKLOAD) -> dict[str, Any]:
    """Run every point (cached ones are loaded, not rerun; a cached one without its real-model metrics for ``llm``
    gets them, unsynthesized), write tables and plots; return a summary (``model_s``: seconds of real-model
    metrics per point that computed them)."""
    from tqdm import tqdm

    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be an integer >= 1, got {jobs!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    pending, ran, upgraded = [], [], 0
    for p in points:
        cache = out / "cache" / f"{point_key(p)}.json"
        row = json.loads(cache.read_text()) if cache.exists() else None
        if row is not None and _complete(row, llm):
            rows.append(row)
        else:
            pending.append(p)
            upgraded += row is not None
    cached = len(rows) + upgraded
    if pending:
        executor, client = _executor(scheduler, jobs)
        try:
            futures = [executor.submit(run_point, p.to_dict(), str(out.resolve()), llm) for p in pending]
            with tqdm(total=len(points), initial=len(rows), desc="sweep", unit="pt", disable=not progress) as bar:
                for fut in cf.as_completed(futures):
                    row = fut.result()
                    rows.append(row)
                    ran.append(row)
                    bar.set_postfix_str(row["config"]["name"])
                    bar.update(1)
        finally:
            executor.shutdown(wait=True)
            if client is not None:
                client.close()
    csv_path, json_path = write_tables(rows, out, llm)
    pngs = plot_sweep(csv_path, out) if plots else []
    return {"points": len(points), "cached": cached, "ran": len(pending) - upgraded, "upgraded": upgraded,
            "failed": sum(1 for r in rows if r.get("error")), "csv": csv_path, "json": json_path, "plots": pngs,
            "llm_s": [r["metrics"]["llm_s"] for r in ran if r["metrics"].get("llm_s")],
            "rows": [_flat(r) for r in rows], "results": rows}
