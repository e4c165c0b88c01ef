"""Analytic performance model: hand-computed GEMM and model cases, SCALE-Sim formulas, the DRAM bound."""

from __future__ import annotations

import json
import random

import pytest

from npuforge.gen.config.array import ArrayConfig
from npuforge.gen.perf.model import (MODELS, HardwarePoint, _ws_last_start, gemm_cycles, layer_gemms, load_model, model_perf,
                      scalesim_cycles, transformer_utilization, ws_fold_starts)

A4 = ArrayConfig(rows=4, cols=4, dataflow="both", mac_pipeline=2)


def test_ws_hand_case():
    # 4x4, L=2: tail_ws = (4+4-2) + 2 + 2 = 10, bank free Y = 0 (rows released by the activation wavefront).
    # M=10, K=8, N=4: F = 2 folds of B = 10 beats. Fold 0: weights loaded at l0 = 4, streams 4..14.
    # Fold 1: bank 1 loads 4..8 (under fold 0), starts at max(14, 8) = 14, ends 24. T = 24 + 10 = 34.
    g = gemm_cycles(A4, 10, 8, 4, mode="int8", dataflow="ws")
    assert (g.cycles, g.folds, g.macs, g.peak_macs_per_cycle) == (34, 2, 320, 16)
    assert g.ideal_cycles == 20
    assert g.utilization == pytest.approx(320 / (16 * 34))
    # M=2: fold 0 streams 4..6, fold 1 waits for its weights (8) and streams 8..10: T = 20.
    assert gemm_cycles(A4, 2, 8, 4, dataflow="ws").cycles == 20
    # M=10, K=8, N=8 (int8): 4 folds. s = 4, 14; fold 2's bank frees at e0 = 14, load ends 18 -> s2 = max(24, 18)
    # = 24, e2 = 34; fold 3: bank frees at e1 = 24, load ends 28 -> s3 = 34, e3 = 44; T = 54.
    assert gemm_cycles(A4, 10, 8, 8, mode="int8", dataflow="ws").cycles == 54
    # Decode-like GEMV (M=1) over many folds: weight-load-bound, one fold per R = 4 cycles (the weight stream's
    # full rate): s_i = 4 + 4 i; 16 folds (K=16, N=16) -> s_15 = 64, T = 64 + 1 + 10 = 75.
    assert gemm_cycles(A4, 1, 16, 16, dataflow="ws").cycles == 75
    assert gemm_cycles(A4, 1, 16, 32, mode="w4a8", dataflow="ws").cycles == 75


def test_ws_recurrence_extrapolation_is_exact():
    rng = random.Random(3)
    for _ in range(400):
        folds, beats, rows = rng.randint(1, 60), rng.randint(1, 40), rng.randint(1, 16)
        free = rng.choice([0, rows + rng.randint(0, 20)])
        assert _ws_last_start(folds, beats, rows, free) == ws_fold_starts(folds, beats, rows, free)[-1]


def test_os_hand_case():
    # 4x4, L=2: tail_os = (4+4-2) + 2 + 4 drain beats = 12. M=8, K=16, N=4: F = 2 output tiles.
    # Fold 0's last pair at 16, fold 1's at 16 + max(16, 13) = 32; T = 32 + 12 = 44.
    g = gemm_cycles(A4, 8, 16, 4, mode="int8", dataflow="os")
    assert (g.cycles, g.folds) == (44, 2)
    # Short K: fold 1's last pair waits for fold 0's drain: K=2 -> 2 + 13 + 12 = 27.
    assert gemm_cycles(A4, 8, 2, 4, dataflow="os").cycles == 27


def test_narrow_modes_hand_cases():
    # w4a8: a PE column makes 2 output columns -> N=8 is one N tile on 4 columns: as the N=4 int8 case, 34.
    assert gemm_cycles(A4, 10, 8, 8, mode="w4a8", dataflow="ws").cycles == 34
    # int4: two activation rows per byte -> M=10 streams in 5 beats: s0 = 4, e0 = 9, s1 = max(9, 8), T = 14 + 10.
    assert gemm_cycles(A4, 10, 8, 8, mode="int4", dataflow="ws").cycles == 24
    # int4 OS: one tile covers 8 rows x 8 columns: M=8, N=8 -> 1 fold: 16 + 12 = 28.
    g = gemm_cycles(A4, 8, 16, 8, mode="int4", dataflow="os")
    assert (g.cycles, g.folds, g.peak_macs_per_cycle) == (28, 1, 64)


def test_both_picks_faster_and_rejects_missing_dataflow():
    # One token, one K tile: WS 4 + 1 + 10 = 15; OS 4 + 12 = 16: WS wins.
    assert (gemm_cycles(A4, 1, 4, 4).dataflow, gemm_cycles(A4, 1, 4, 4).cycles) == ("ws", 15)
    # Long K, one output tile: OS 64 + 12 = 76; WS needs 16 weight tiles, >= 4 + 16*4 + 10 = 78.
    assert (gemm_cycles(A4, 4, 64, 4).dataflow, gemm_cycles(A4, 4, 64, 4).cycles) == ("os", 76)
    assert gemm_cycles(A4, 4, 64, 4, dataflow="ws").cycles >= 78
    with pytest.raises(ValueError, match="dataflow 'os' is not built"):
        gemm_cycles(ArrayConfig(rows=4, cols=4, dataflow="ws"), 4, 4, 4, dataflow="os")
    with pytest.raises(ValueError, match="k must be an integer >= 1, got 0"):
        gemm_cycles(A4, 4, 0, 4)


def test_cycles_never_beat_ideal():
    rng = random.Random(7)
    for _ in range(300):
        cfg = ArrayConfig(rows=rng.choice([1, 2, 4, 8, 16]), cols=rng.choice([1, 2, 3, 8, 32]), dataflow="both")
        m, k, n = (rng.randint(1, 700) for _ in range(3))
        for mode in cfg.precisions:
            for df in ("ws", "os"):
                g = gemm_cycles(cfg, m, k, n, mode=mode, dataflow=df)
                assert g.cycles >= g.ideal_cycles and 0 < g.utilization <= 1


def test_scalesim_hand_cases():
    # (2R + C + T - 2) * ceil(Sr/R) * ceil(Sc/C) on 4x4; M=8, K=16, N=4.
    assert scalesim_cycles(4, 4, 8, 16, 4, dataflow="os") == (8 + 4 + 16 - 2) * 2 * 1   # Sr=M, Sc=N, T=K
    assert scalesim_cycles(4, 4, 8, 16, 4, dataflow="ws") == (8 + 4 + 8 - 2) * 4 * 1    # Sr=K, Sc=N, T=M
    assert scalesim_cycles(4, 4, 8, 16, 4, dataflow="is") == (8 + 4 + 4 - 2) * 4 * 2    # Sr=K, Sc=M, T=N
    # Double buffering hides the per-fold fill: npuforge's model is never slower on multi-fold GEMMs.
    for m, k, n in [(64, 384, 384), (128, 64, 256), (16, 512, 64)]:
        cfg = ArrayConfig(rows=8, cols=8, dataflow="both")
        for df in ("ws", "os"):
            assert gemm_cycles(cfg, m, k, n, dataflow=df).cycles <= scalesim_cycles(8, 8, m, k, n, dataflow=df)


def _tiny_model(tmp_dir):
    cfg = {"num_hidden_layers": 1, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 2,
           "num_key_value_heads": 1, "head_dim": 32, "vocab_size": 100, "model_type": "llama"}
    path = tmp_dir / "config.json"
    path.write_text(json.dumps(cfg))
    return load_model(str(path))


def test_decode_bytes_hand_case(out_dir):
    shape = _tiny_model(out_dir)
    assert (shape.glu, shape.decoder, shape.kv_heads) == (True, True, 1)
    # int8, one decode token, context L=16. Weights (bytes): qkv 64*(64+2*32) + out 64*64 + up 64*(2*128)
    # + down 128*64 + lm_head 64*100.
    weights = 64 * 128 + 64 * 64 + 64 * 256 + 128 * 64 + 64 * 100
    # Activations in+out per GEMM, plus KV: qkv writes the new K,V row (2*32); scores and values each read
    # the 16-entry K or V cache of the one KV head (16*32) and move the 2 heads' score row (2*16).
    acts = (64 + 128) + (64 + 2 * 16) + (2 * 16 + 64) + (64 + 64) + (64 + 256) + (128 + 64) + (64 + 100)
    kv = 2 * 32 + 16 * 32 + 16 * 32
    total = weights + acts + kv
    assert sum(g.bytes for g in layer_gemms(shape, mode="int8", tokens=1, context=16, lm_head=True)) == total
    # Compute made negligible (huge clock): decode is memory-bound and exactly DRAM bandwidth / bytes.
    hw = HardwarePoint(cfg=ArrayConfig(rows=16, cols=16), mode="int8", clock_mhz=1e9, dram_gbps=10.0)
    res = model_perf(shape, hw, prompt=4, context=16)
    assert res["decode_bound"] == "memory"
    assert res["decode_bytes_per_token"] == total
    assert res["decode_tokens_per_s"] == pytest.approx(10e9 / total)
    # 4-bit weights halve the weight bytes (activations stay 8 bits in w4a8).
    res4 = model_perf(shape, HardwarePoint(cfg=hw.cfg, mode="w4a8", clock_mhz=1e9, dram_gbps=10.0),
                      prompt=4, context=16)
    assert res4["decode_bytes_per_token"] == weights / 2 + acts + kv


def test_prefill_compute_hand_case(out_dir):
    shape = _tiny_model(out_dir)
    # Bandwidth made irrelevant: prefill time = array cycles of every GEMM / clock.
    cfg = ArrayConfig(rows=4, cols=4, dataflow="ws")
    hw = HardwarePoint(cfg=cfg, mode="int8", clock_mhz=100.0, dram_gbps=1e9)
    P = 8
    cyc = (gemm_cycles(cfg, P, 64, 128).cycles + 2 * gemm_cycles(cfg, P, 32, P).cycles
           + 2 * gemm_cycles(cfg, P, P, 32).cycles + gemm_cycles(cfg, P, 64, 64).cycles
           + gemm_cycles(cfg, P, 64, 256).cycles + gemm_cycles(cfg, P, 128, 64).cycles
           + gemm_cycles(cfg, 1, 64, 100).cycles)
    res = model_perf(shape, hw, prompt=P, context=P)
    assert res["ttft_s"] == pytest.approx(cyc / 100e6)
    assert res["prefill_tokens_per_s"] == pytest.approx(P / (cyc / 100e6))
    assert res["prefill"]["bound"] == "compute"


@pytest.mark.parametrize("model", MODELS)
def test_decode_never_beats_dram_bound(model):
    shape = load_model(model)
    for mode in ("int8", "w4a8", "int4"):
        for clock, bw in ((100.0, 1.0), (400.0, 12.8), (1e6, 51.2)):
            hw = HardwarePoint(cfg=ArrayConfig(rows=16, cols=16), mode=mode, clock_mhz=clock, dram_gbps=bw)
            res = model_perf(shape, hw, prompt=32, context=256)
            if not shape.decoder:
                assert res["decode_tokens_per_s"] is None
                continue
            weight_bytes = sum(v["weight_bytes"] for v in res["decode"]["layer_types"].values())
            # Every weight is read once per token: decode <= bandwidth / weight bytes, whatever the array.
            assert res["decode_tokens_per_s"] <= bw * 1e9 / weight_bytes
            assert res["decode_tokens_per_s"] <= res["decode_bandwidth_limit_tokens_per_s"] * (1 + 1e-12)
            assert res["prefill_tokens_per_s"] > 0 and res["ttft_s"] > 0


def test_model_weight_bytes_match_published_sizes():
    # int8 weight bytes per token ~= parameter count (embedding table not read in decode, LM head is).
    for model in ("qwen2-0.5b", "tinyllama-1.1b", "llama-3-8b", "phi-3-mini-4k"):
        shape = load_model(model)
        hw = HardwarePoint(cfg=ArrayConfig(rows=16, cols=16), mode="int8", clock_mhz=200.0, dram_gbps=10.0)
        res = model_perf(shape, hw, prompt=1, context=1)
        weights = sum(v["weight_bytes"] for v in res["decode"]["layer_types"].values())
        embed = shape.vocab * shape.hidden
        tied = model == "qwen2-0.5b"  # tied embeddings: the one table is read as the LM head
        expected = shape.params_b * 1e9 - (0 if tied else embed)
        # Norm weights and biases are the only parameters not counted: within 2 %.
        assert weights == pytest.approx(expected, rel=0.02), model


def test_transformer_utilization_in_range():
    for n in (2, 8, 32):
        u = transformer_utilization(ArrayConfig(rows=n, cols=n), mode="int8")
        assert 0 < u <= 1
    assert transformer_utilization(ArrayConfig(rows=2, cols=2)) > transformer_utilization(
        ArrayConfig(rows=32, cols=32))


def test_default_clock_is_a_measured_fmax():
    """The perf model's default clock is a measured ECP5 fmax of the closest array point, with its source named."""
    from npuforge.gen.perf.model import MEASURED_FMAX_MHZ, default_clock_mhz

    for (variant, pipeline), points in MEASURED_FMAX_MHZ.items():
        precisions = ("int8",) if variant == "int8" else ("int8", "w4a8", "int4")
        for pes, mhz, seed in points:
            n = int(round(pes ** 0.5))
            got, source = default_clock_mhz(ArrayConfig(rows=n, cols=n, precisions=precisions, mac_pipeline=pipeline))
            assert got == mhz and f"seed {seed}" in source and variant in source
    with pytest.raises(ValueError, match="target must be ecp5"):
        default_clock_mhz(ArrayConfig(), target="ice40")


def test_npu_clock_is_the_array_fmax_capped_by_the_measured_npu(monkeypatch):
    """A whole NPU runs at its array's measured fmax, or at the whole NPU's measured fmax when that is lower: the
    preset's control, DMA and vector paths, not its array, set the measured NPU's clock."""
    from npuforge.gen.config.npu import NPUConfig
    from npuforge.gen.config.presets import PRESETS
    from npuforge.gen.perf.model import MEASURED_NPU_FMAX_MHZ, default_clock_mhz, npu_clock_mhz

    name, npu_mhz, seed, what, commit = MEASURED_NPU_FMAX_MHZ
    assert name in PRESETS
    for array in (ArrayConfig(**PRESETS[name]["array"]), ArrayConfig(rows=8, cols=8, precisions=("int8",)),
                  ArrayConfig(rows=4, cols=4, precisions=("int8", "w8a16"), mac_pipeline=4)):
        array_mhz, array_source = default_clock_mhz(array)
        got, source = npu_clock_mhz(NPUConfig(array=array))
        assert got == min(array_mhz, npu_mhz)
        if npu_mhz < array_mhz:     # the source names both figures and where the NPU's comes from
            assert f"{array_mhz:g} MHz" in source and array_source in source
            assert name in source and f"seed {seed}" in source and what in source and commit in source
        else:
            assert source == array_source
    # a measured NPU faster than its array leaves the array's figure
    import npuforge.gen.perf.model as perf_model

    monkeypatch.setattr(perf_model, "MEASURED_NPU_FMAX_MHZ", (name, 1000.0, seed, what, commit))
    array = ArrayConfig(**PRESETS[name]["array"])
    assert perf_model.npu_clock_mhz(NPUConfig(array=array)) == default_clock_mhz(array)
