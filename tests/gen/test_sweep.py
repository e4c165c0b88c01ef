"""Sweep over a tiny grid: tables and plots written, finished points cached, Dask scheduler path; real-model
metrics per point (MiniLM's prefill; a Llama's prefill and decode step: the tiny random-weight GGUF of the model
tests, its own Q4_1 / Q8_0 blocks) and the reason a point cannot run a model."""

from __future__ import annotations

import csv
import json

import pytest

from npuforge.cli.main import main
from npuforge.gen.config.array import ArrayConfig
from npuforge.gen.ppa.llm_metrics import LLM_KEYS, llm_metrics, llm_workload
from npuforge.gen.ppa.sweep import make_grid, point_key, run_sweep
from npuforge.spec.precision import MODE_NAMES
from tests.golden import tiny_models as tm

PNG = b"\x89PNG\r\n\x1a\n"
PLOTS = ("area_vs_peak_macs.png", "fmax_vs_size.png", "mult18_vs_size.png", "macs_per_lut.png",
         "utilization_vs_size.png", "minilm_tokens_vs_size.png", "llm_decode_tokens_vs_size.png")


@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory):
    """The LLM workload of the tiny GGUF (2 layers, hidden 64, context 64): an 8-token prompt."""
    path = tmp_path_factory.mktemp("llm") / "tiny.gguf"
    tm.write_tiny_gguf(path)
    return llm_workload(str(path), 8)


def test_grid_copies_the_base_config():
    pts = make_grid(sizes=(2, 4), shapes=((4, 8),), macs=("int8", "scalable"), dataflows=("ws", "os"),
                    acc_widths=(24, 32), base=ArrayConfig(mac_pipeline=3))
    assert len(pts) == 3 * 2 * 2 * 2
    assert {(p.cfg.rows, p.cfg.cols) for p in pts} == {(2, 2), (4, 4), (4, 8)}
    assert all(p.cfg.mac_pipeline == 3 for p in pts)
    # acc24 holds int8 sums exactly while K * 2^14 <= 2^23 - 1, i.e. K <= 511: max_k halves from 4096 to 256.
    assert {p.cfg.max_k for p in pts if p.cfg.acc_width == 24} == {256}
    assert {p.cfg.max_k for p in pts if p.cfg.acc_width == 32} == {4096}
    assert len({point_key(p) for p in pts}) == len(pts)


def test_cache_key_follows_the_rtl(monkeypatch):
    """A cached point measured on other RTL is not reused: the key covers the rtl/ sources."""
    import npuforge.gen.ppa.sweep as sweep

    point = make_grid(sizes=(2,), shapes=(), macs=("int8",))[0]
    before = point_key(point)
    assert point_key(point) == before  # deterministic
    monkeypatch.setattr(sweep, "_rtl_fingerprint", lambda: "edited rtl")
    assert point_key(point) != before


def test_tiny_sweep_cached_rerun(capsys, out_dir):
    argv = ["sweep", "--sizes", "1,2", "--shapes", "", "--macs", "int8", "--target", "generic", "--jobs", "2",
            "-o", str(out_dir)]
    assert main(argv) == 0
    assert "2 points (0 cached, 2 run, 0 failed)" in capsys.readouterr().out
    with open(out_dir / "sweep.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["rows"], r["cols"], r["mac"]) for r in rows] == [("1", "1", "int8"), ("2", "2", "int8")]
    assert all(int(r["transistors"]) > 0 and r["fmax_mhz"] == "" and r["error"] == "" for r in rows)
    assert int(rows[1]["transistors"]) > int(rows[0]["transistors"])  # 4 PEs cost more than 1
    assert [r["peak_macs_int8"] for r in rows] == ["1", "4"]
    data = json.loads((out_dir / "sweep.json").read_text())
    assert [p["key"] for p in data["points"]] == [r["key"] for r in rows]
    for name in PLOTS:
        assert (out_dir / name).read_bytes()[:8] == PNG
    cache = sorted((out_dir / "cache").glob("*.json"))
    assert len(cache) == 2
    stamps = [p.stat().st_mtime_ns for p in cache]
    # Rerun: nothing is synthesized again, the cache files are untouched, the tables are identical.
    before = (out_dir / "sweep.csv").read_text()
    assert main(argv) == 0
    assert "2 points (2 cached, 0 run, 0 failed)" in capsys.readouterr().out
    assert [p.stat().st_mtime_ns for p in cache] == stamps
    assert (out_dir / "sweep.csv").read_text() == before


def test_dask_scheduler(out_dir):
    """The same sweep through a Dask distributed scheduler (a local in-process cluster)."""
    from distributed import LocalCluster

    points = make_grid(sizes=(1,), macs=("int8",), target="generic", pnr=False)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        res = run_sweep(points, out_dir, scheduler=cluster.scheduler_address, progress=False, plots=False)
    assert (res["ran"], res["cached"], res["failed"]) == (1, 0, 0)
    assert res["rows"][0]["transistors"] > 0
    assert "missing w8a16" in res["rows"][0]["llm_reason"]      # the LLM workload reached the worker
    assert (out_dir / "cache" / f"{point_key(points[0])}.json").exists()


def test_real_model_metrics_of_a_point():
    """MiniLM's prefill priced from its real NPU programs for an 8x8 w8a16 array; none for an array without w8a16."""
    from npuforge.gen.ppa.sweep import model_metrics

    cfg = ArrayConfig(rows=8, cols=8, precisions=("int8", "w8a16"))
    at_100 = model_metrics(cfg, 100.0)
    assert 0.5 < at_100["minilm_prefill_util"] < 1 and 0 < at_100["minilm_prefill_bus"] < 1
    assert at_100["minilm_clock_mhz"] == 100.0
    at_200 = model_metrics(cfg, 200.0)
    assert at_200["minilm_prefill_tokens_s"] == pytest.approx(2 * at_100["minilm_prefill_tokens_s"])
    none = model_metrics(ArrayConfig(rows=8, cols=8), 100.0)
    assert "missing w8a16" in none.pop("minilm_reason") and set(none.values()) == {None}
    # the NPU's accumulator SRAM is int32: an acc24 array gets a reason, not a crash
    acc24 = model_metrics(ArrayConfig(rows=8, cols=8, precisions=("int8", "w8a16"), acc_width=24, max_k=256), 100.0)
    assert "acc_width must be 32" in acc24["minilm_reason"] and acc24["minilm_prefill_tokens_s"] is None


def test_llm_metrics_of_a_point(tiny_llm, tmp_path):
    """Prefill and decode priced from the tiny Llama's NPU programs: rates scale with the clock, the decode step's
    cycles are layer 0's and more (two layers + the LM head), and a point differing only in its Verilog name reuses
    the cached cycles; points that cannot run the checkpoint's blocks get a reason."""
    cfg = ArrayConfig(rows=4, cols=4, precisions=MODE_NAMES)
    at_100 = llm_metrics(cfg, 100.0, tiny_llm, cache_root=tmp_path)
    assert at_100["llm_reason"] is None and at_100["llm_clock_mhz"] == 100.0
    assert 0 < at_100["llm_decode_bus"] < 1 and 0 < at_100["llm_decode_util"] < at_100["llm_prefill_util"] < 1
    assert 2 * at_100["llm_decode_l0_cycles"] < at_100["llm_decode_cycles"]
    assert at_100["llm_decode_tokens_s"] == pytest.approx(100e6 / at_100["llm_decode_cycles"])
    assert len(list(tmp_path.glob("*.json"))) == 1
    at_200 = llm_metrics(cfg.with_overrides(name="renamed"), 200.0, tiny_llm, cache_root=tmp_path)
    assert at_200["llm_s"] == 0.0 and at_200["llm_decode_cycles"] == at_100["llm_decode_cycles"]
    for k in ("llm_prefill_tokens_s", "llm_decode_tokens_s"):
        assert at_200[k] == pytest.approx(2 * at_100[k])
    for bad, needle in ((ArrayConfig(rows=4, cols=4), "missing w8a16"),
                        (ArrayConfig(rows=4, cols=4, precisions=("int8", "w8a16")), "missing w4a16"),
                        (ArrayConfig(rows=12, cols=12, precisions=MODE_NAMES), "rows dividing 32"),
                        (ArrayConfig(rows=4, cols=4, precisions=MODE_NAMES, dataflow="os"), "dataflow")):
        res = llm_metrics(bad, 100.0, tiny_llm, cache_root=tmp_path)
        assert needle in res["llm_reason"] and res["llm_decode_tokens_s"] is None, res["llm_reason"]
    assert llm_metrics(cfg, 100.0, None)["llm_reason"].startswith("no LLM workload")


def test_sweep_with_llm_metrics_and_cache_upgrade(capsys, out_dir, tiny_llm):
    """The CLI with --llm: a 4x4 scalable point (block-scaled w4a16 needs rows >= 4) gets the LLM columns; a rerun with another prompt length recomputes
    only the LLM metrics (the synthesis stays cached)."""
    argv = ["sweep", "--sizes", "4", "--shapes", "", "--macs", "scalable", "--target", "generic", "--jobs", "1",
            "--llm", tiny_llm["model"], "--llm-prompt", "8", "-o", str(out_dir)]
    assert main(argv) == 0
    with open(out_dir / "sweep.csv") as fh:
        rows = {r["mac"]: r for r in csv.DictReader(fh)}
    assert all(k in rows["scalable"] for k in LLM_KEYS)
    assert float(rows["scalable"]["llm_decode_tokens_s"]) > 0 and rows["scalable"]["llm_reason"] == ""
    assert json.loads((out_dir / "sweep.json").read_text())["llm_workload"] == tiny_llm
    assert (out_dir / "llm_decode_tokens_vs_size.png").read_bytes()[:8] == PNG
    capsys.readouterr()
    assert main(argv[:-4] + ["--llm-prompt", "16", "-o", str(out_dir)]) == 0
    out = capsys.readouterr().out
    assert "1 points (1 cached, 0 run, 0 failed)" in out
    with open(out_dir / "sweep.csv") as fh:
        longer = {r["mac"]: r for r in csv.DictReader(fh)}
    assert longer["scalable"]["synth_s"] == rows["scalable"]["synth_s"]     # not synthesized again
    assert "real-model metrics added to 1 cached point(s)" in out
    assert int(longer["scalable"]["llm_decode_cycles"]) > int(rows["scalable"]["llm_decode_cycles"])  # longer context


def test_rtl_check_picks_points_that_run_the_llm_spread_over_sizes():
    """--rtl-check N: N points with LLM metrics, from the smallest array to the largest (the RTL run itself needs a
    Verilator build per point and is exercised by hand: sweep --rtl-check)."""
    from npuforge.sim.harness.sweep_check import pick_points

    def row(n, runs=True):
        return {"key": f"k{n}", "config": {"rows": n, "cols": n, "name": f"array_{n}"},
                "metrics": {"llm_decode_cycles": 1000 // n if runs else None}}

    results = [row(16), row(2), row(12, runs=False), row(8), row(4)]
    assert [r["config"]["rows"] for r in pick_points(results, 2)] == [2, 16]
    assert [r["config"]["rows"] for r in pick_points(results, 3)] == [2, 8, 16]
    assert [r["config"]["rows"] for r in pick_points(results, 1)] == [2]
    assert [r["config"]["rows"] for r in pick_points(results, 9)] == [2, 4, 8, 16]


@pytest.mark.parametrize("argv, needle", [(["--llm-prompt", "0"], "--llm-prompt"),
                                          (["--rtl-check", "1", "--llm", "none"], "--rtl-check"),
                                          (["--rtl-check", "-1"], "--rtl-check")])
def test_bad_llm_flags_exit_2_one_line(capsys, tmp_path, argv, needle):
    assert main(["sweep", *argv, "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and needle in err
