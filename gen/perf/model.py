r"""Analytic performance model: GEMM cycles on the bare PE array, SCALE-Sim's fold formulas, model tokens/s.

Array GEMM model (:func:`gemm_cycles`)
======================================
A GEMM ``C[M,N] = A[M,K] @ B[K,N]`` (A activations, B weights) on an ``R x C`` array (``rows x cols``) in
mode ``mode``. In the narrower modes one 8-bit lane carries several 4-bit operands (rtl/mac.py):

* ``w4a8``: a weight byte holds two int4 weights -> every PE makes 2 products for 2 output columns
  (``n_lanes = 2``);
* ``int4``: additionally an activation byte holds two int4 activations for two output rows (``m_lanes = 2``);
* ``w8a16``, ``w4a16``: one 16-bit activation word and one weight per PE, one product per cycle like int8.

so one array pass covers ``n_lanes * C`` output columns (and in OS ``m_lanes * R`` output rows), and an
activation stream of M rows takes ``ceil(M / m_lanes)`` beats. ``L`` = ``cfg.mac_pipeline`` register stages.

Weight-stationary (rows reduce over K, columns index N): a *fold* is one ``R x (n_lanes*C)`` weight tile,
``F = ceil(K/R) * ceil(N/(n_lanes*C))`` folds, each streaming ``B = ceil(M/m_lanes)`` activation beats (one
result beat each; partial sums over K tiles are added by the consumer). A tile's weights are ``R`` beats on the
one weight stream into the free one of two banks (double buffering): the load of fold ``i`` overlaps fold
``i-1``'s activations and may start ``Y`` cycles after fold ``i-2``'s last activation, which used bank
``i mod 2``. The array releases a bank row by row as that activation's wavefront passes (weight writes are
skewed like the activations, rtl/array.py), so ``Y = 0``: weight row ``k`` of the new tile is written one
cycle after the old activation was multiplied in that row. Exact event recurrence (:func:`ws_fold_starts`),
with ``e_i = s_i + B``::

    l_i = max(e_{i-2} + Y, l_{i-1}) + R        (weight tile i loaded)
    s_i = max(e_{i-1}, l_i)                    (fold i starts streaming)
    T_ws = s_{F-1} + B + tail_ws

Its steady state is one fold per ``max(B, R, (B + R + Y) / 2) = max(B, R)`` cycles: stream-bound for many
tokens, weight-load-bound (``R`` cycles per tile, ``C * n_lanes`` weights per cycle, the weight stream's full
rate) for GEMVs such as decode.

Output-stationary (rows index M, columns index N): a fold is one ``(m_lanes*R) x (n_lanes*C)`` output
tile, ``F = ceil(M/(m_lanes*R)) * ceil(N/(n_lanes*C))``; each fold takes K skewed operand pairs. The tile is
captured into shadow registers and drained as ``R`` beats (in int4 one beat carries both output rows of the
PE's 2x2 block); the next tile's operands already stream in, but its last pair waits until the previous
drain has finished::

    T_os = K + (F - 1) * max(K, tail_os + 1) + tail_os

Constants (``L`` = ``cfg.mac_pipeline``), measured on the RTL of rtl/array.py (cocotb cycle counts from the
first offered input to the last result taken, sim/harness/array_gemm.py) and checked in tests/gen/test_perf_rtl.py:
``tail_ws = (R + C - 2) + L + 2 + 2E`` (skew across the array, MAC pipeline, input and output registers, and
``E`` = :func:`EDGE` registers on each of the array's edges: 1 from ``L = 5`` on, rtl.array.edge_stages),
``Y = 0`` (before the wavefront release it was ``R + C - 1``: a bank waited for the bottom-right PE),
``tail_os = (R + C - 2) + L + R + E`` (skew, pipeline, ``R`` drain beats, the input edge).

Utilization = MACs / (peak MACs/cycle x cycles), peak = ``R * C * products_per_pe(mode)``.
``dataflow="both"`` (a run-time switch) takes the faster of the two per GEMM, as a compiler would.

SCALE-Sim (:func:`scalesim_cycles`)
====================================
SCALE-Sim (Samajdar et al., ISPASS 2020; scale-sim-v2 ``systolic_compute_{os,ws,is}.py``) maps a GEMM to
spatial rows ``S_R``, spatial columns ``S_C`` and a temporal dimension ``T`` and charges every fold
``2R + C + T - 2`` cycles (R cycles to fill the stationary operand, T to stream, R + C - 2 to skew and drain)::

    T_scalesim = (2R + C + T - 2) * ceil(S_R / R) * ceil(S_C / C)
    OS: S_R = M, S_C = N, T = K;   WS: S_R = K, S_C = N, T = M;   IS: S_R = K, S_C = M, T = N

It has no double buffering (every fold pays its fill) and no precision modes; for w4a8/int4 we give it the
equivalent wider array (``C * n_lanes`` columns, ``R * m_lanes`` rows for OS) and ``ceil(M/m_lanes)`` beats.
The difference to :func:`gemm_cycles` is the per-fold fill/drain that npuforge's double buffering hides.

Model-level estimate (:func:`model_perf`)
==========================================
Per Transformer layer the GEMMs are: fused QKV projection, attention scores ``Q K^T`` and values ``P V`` per
head, output projection, FFN up (x2 with a GLU gate), FFN down; decoders add the LM head (last token only).
Each layer type's time is ``max(compute, memory)`` (roofline; tiles double-buffered so transfer overlaps
compute): compute = array cycles / clock; memory = DRAM bytes / bandwidth, where bytes = weights (read once
per pass; 1 byte int8, 0.5 byte int4) + activations in and out + KV cache (activation precision) read for
attention and written for new tokens. Element-wise operators (norms, softmax, activations, RoPE) run on the
vector unit in parallel and are not counted. Prefill processes the whole prompt (``M = P``, causal
attention computed as full ``P x P`` tiles); TTFT = prefill time; decode runs one token (``M = 1``) with
``context`` keys in the cache. Decode can never beat ``DRAM bandwidth / bytes read per token``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from npuforge.gen.config.array import ArrayConfig
from npuforge.gen.config.npu import NPUConfig
from npuforge.spec.precision import MODE_NAMES, PRECISION_MODES

__all__ = ["MEASURED_FMAX_MHZ", "MEASURED_NPU_FMAX_MHZ", "default_clock_mhz", "npu_clock_mhz", "GemmCycles", "gemm_cycles", "scalesim_cycles", "ModelShape", "MODELS", "load_model",
           "layer_gemms", "model_perf", "transformer_utilization", "roofline_plot", "HardwarePoint"]

#: (m_lanes, n_lanes): activation rows and weight columns one 8-bit lane carries in each mode.


def EDGE(L: int) -> int:  # noqa: N802  (a formula constant, see the module docstring)
    """Registers on each edge of the array (input and, ws, output) at MAC pipeline depth ``L``: 1 from depth 5 on
    (rtl.array.edge_stages; the depth-5 arrays register their edges for fmax)."""
    return 1 if L >= 5 else 0


def WS_TAIL(R: int, C: int, L: int) -> int:  # noqa: N802  (a formula constant, see the module docstring)
    """WS cycles from the end of the last fold's activations to the last result beat taken."""
    return (R + C - 2) + L + 2 + 2 * EDGE(L)


def WS_BANK_FREE(R: int, C: int, L: int) -> int:  # noqa: N802
    """WS cycles from the end of a fold's activations until its weight bank can take the next tile's first row.

    0: row ``k`` is released as soon as the fold's last activation has been multiplied there, and the writes of
    the following rows trail that activation's wavefront down the rows and (skewed) across the columns."""
    return 0


def WS_PAIR_HOLD(R: int) -> int:  # noqa: N802
    """WS cycles a retired bank waits before it takes row-pair weight beats (rtl.array.pair_hold: the pairs outrun
    the retired tile's last activation wavefront, which moves one row per cycle)."""
    return R // 2 - 1


def OS_TAIL(R: int, C: int, L: int) -> int:  # noqa: N802
    """OS cycles from a fold's last operand pair to its last drained result beat."""
    return (R + C - 2) + L + R + EDGE(L)
MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
MODELS = tuple(sorted(p.stem for p in MODELS_DIR.glob("*.json")))


#: Measured fmax (MHz) of PE arrays on the LFE5U-85F (speed 6, nextpnr-ecp5 out of context; ``python -m
#: npuforge.sim.bench.ppa`` / ``npuforge synth --pnr``): (MAC variant, mac_pipeline) -> ((PEs, MHz, seed), ...).
#: The perf model's default clock comes from here, never from an assumed figure.
MEASURED_FMAX_MHZ: dict[tuple[str, int], tuple[tuple[int, float, int], ...]] = {
    # 8x8 int8-only, mac_pipeline 4, measured 2026-12-07 on commit 6cae499 (output queue sliced per column and lane,
    # distributed PE enables; npuforge synth --rows 8 --cols 8 --precisions int8 --mac-pipeline 4 --target ecp5 --pnr
    # --no-cmos --seed 1 -o DIR, seeds 2 / 3 with --netlist-from DIR --seed S, router1; seeds 1 / 2 / 3: 189.18 /
    # 188.39 / 183.28 MHz, the best kept; critical path of seed 1: a PE's lane register -> its 32-bit accumulate carry
    # chain, 2.44 ns logic and 2.85 ns routing). Before those changes: 182.82 / 163.69 / 159.34 MHz (router2: 153.23 /
    # 143.1 / 138.5), the product register -> the partial-sum carry chain, 1.80 + 3.67 ns.
    ("int8", 4): ((64, 189.18, 1),),
    # 8x8 int8-only, mac_pipeline 5 with the registered array edges (rtl.array.edge_stages), the queue sliced per
    # column and lane and the distributed PE enables (commit 6cae499), measured 2026-12-07 (npuforge synth --rows 8
    # --cols 8 --precisions int8 --mac-pipeline 5 --target ecp5 --pnr --no-cmos --seed 1 -o DIR, seeds 2 / 3 with
    # --netlist-from DIR --seed S; router1; seeds 1 / 2 / 3: 194.7 / 194.1 / 204.62 MHz, the best kept; critical path
    # of seeds 2 and 3: a PE's partial sum -> the next row's 32-bit carry chain, 1.94 ns logic and 2.94-3.21 ns
    # routing; seed 1: a stage-0 register -> the MULT18X18D's B input, 0.61 + 4.53 ns). With the edges alone (commit
    # 4577f47): 203.79 / 204.62 / 209.03 MHz; depth 5 without the edges: 158.4 / 170.01 / 163.64 MHz, every seed
    # limited by an edge (the enable -> row 0's input multiplexer -> PE(0, 0); the corner PE's tag -> the output
    # queue's pointers). README "ECP5 fmax". 4x4 on the same commit (python -m npuforge.sim.bench.ppa --sizes 4 --macs
    # int8 --pipelines 5 --seeds 1,2,3 --no-npu --router router1): 226.14 / 246.85 / 236.07 MHz, seed 2 limited by
    # the mode check -> the registered enable -> a row's handshake copy (1.23 + 2.82 ns).
    ("int8", 5): ((16, 246.85, 2), (64, 204.62, 3)),
    # 8x8 with all five modes, mac_pipeline 4 (python -m npuforge.sim.bench.ppa --sizes 8 --macs scalable --pipelines 4
    # --no-npu; seed 1 only, routing congested; critical path: the output queue's ready -> payload-register enable).
    # Measured before the output queue and the enable copies were restructured; not re-measured at depth 4 since (at
    # depth 5 on 2026-12-07 routing did not finish: README "ECP5 fmax").
    # 4x4, measured 2026-12-07 on the RTL whose stage 0 holds the packed block operands, before the output queue's
    # lane slices and the distributed PE enables (not re-measured at depth 4 since; python -m
    # npuforge.sim.bench.ppa --sizes 4 --macs scalable --pipelines 4 --seeds 1,2,3 --no-npu --router router2; seeds
    # 1 / 2 / 3: 92.58 / 98.79 / 89.91 MHz; the RTL before it: 88.77 / 86.75 / 88.43). Critical path of seed 2: MULT18X18D
    # P -> bias adder -> lane digit subtract -> lane register (rtl/mac.py, 3.2 ns logic and 7.0 ns routing). An
    # earlier session's 112.65 MHz (router1, seed 1) was on older RTL.
    ("scalable", 4): ((16, 98.79, 2), (64, 69.3, 1)),
    # 4x4 with all five modes, mac_pipeline 5, measured 2026-12-07 on commit 6cae499 (registered array edges, output
    # queue sliced per column and lane, distributed PE enables, the mode as per-lane flags in stage 5; python -m
    # npuforge.sim.bench.ppa --sizes 4 --macs scalable --pipelines 5 --seeds 1,2,3 --no-npu --router router2; seeds
    # 1 / 2 / 3: 141.82 / 145.6 / 144.84 MHz; every seed limited inside a PE, a carry chain (lane digit subtract,
    # accumulate, operand packing) with about 5 ns of routing: README "ECP5 fmax"). Before those changes (commit
    # aa031b1): 88.43 / 111.47 / 104.59 MHz, every seed limited by the array's edges (the output queue -> `c`
    # boundary register or the weight-bank handshake, 8-10 ns of routing). The 8x8 at depth 5 did not finish routing
    # before them (post-placement estimate 55.94 MHz, seed 1; README "ECP5 fmax"). The 8x8 on the RTL of commit
    # 8dd94ec (same as 6cae499), measured 2026-12-07 (npuforge synth --rows 8 --cols 8 --precisions
    # int8,w4a8,int4,w8a16,w4a16 --mac-pipeline 5 --name array_8x8_scalable_p5 --target ecp5 --pnr --no-cmos --seed 1
    # --router router2; seed 1 only: about 32 min of Yosys and 27 min of nextpnr beside other jobs): 96.09 MHz,
    # critical path PE(3, 1)'s MULT18X18D output -> its product register, 1.72 ns logic and 8.69 ns routing.
    ("scalable", 5): ((16, 145.6, 2), (64, 96.09, 1)),
}


def default_clock_mhz(cfg: ArrayConfig, target: str = "ecp5") -> tuple[float, str]:
    """``(MHz, where from)``: the measured fmax of the closest measured array point to ``cfg`` on ``target``
    (same MAC variant, nearest ``mac_pipeline``, nearest PE count)."""
    if target != "ecp5":
        raise ValueError(f"target must be ecp5 (the only target with measured fmax), got {target!r}")
    variant = "int8" if cfg.precisions == ("int8",) else "scalable"
    keys = [k for k in MEASURED_FMAX_MHZ if k[0] == variant] or list(MEASURED_FMAX_MHZ)
    key = min(keys, key=lambda k: (abs(k[1] - cfg.mac_pipeline), k[0] != variant))
    pes, mhz, seed = min(MEASURED_FMAX_MHZ[key], key=lambda p: abs(p[0] - cfg.rows * cfg.cols))
    side = int(round(pes ** 0.5))
    return mhz, (f"measured fmax of the {side}x{side} {key[0]} array, mac_pipeline {key[1]}, on the LFE5U-85F "
                 f"(nextpnr seed {seed})")


#: Whole-NPU fmax measured on the LFE5U-85F (speed 6, nextpnr-ecp5 out of context, registered-boundary wrapper):
#: (design point, MHz, nextpnr seed, what the figure is, commit). The preset is the only NPU that fits the device;
#: its clock is set by the paths into and out of the scratchpad and by the control and vector paths around the array,
#: not by the array (the 8x8 array alone routes at 96-205 MHz). ``npuforge synth --unit npu --preset ecp5-85f
#: --target ecp5 --pnr --place-only --no-cmos --seed 1 --router router2`` (README "ECP5 fmax").
MEASURED_NPU_FMAX_MHZ: tuple[str, float, int, str, str] = ("ecp5-85f", 36.07, 1, "post-placement estimate", "c1562b2")


def npu_clock_mhz(cfg: NPUConfig, target: str = "ecp5") -> tuple[float, str]:
    """``(MHz, where from)``: the clock of a whole NPU on ``target``. The array's measured fmax
    (:func:`default_clock_mhz`), capped by the whole NPU's measured fmax (:data:`MEASURED_NPU_FMAX_MHZ`): the paths
    around the array limit a whole NPU, and an NPU larger than the measured point (more memory, lanes or vector
    operators, so longer routes) is not assumed to be faster than it."""
    mhz, source = default_clock_mhz(cfg.array, target)
    name, npu_mhz, seed, what, commit = MEASURED_NPU_FMAX_MHZ
    if npu_mhz >= mhz:
        return mhz, source
    return npu_mhz, (f"whole-NPU fmax of the {name} preset on the LFE5U-85F ({what}, nextpnr seed {seed}, commit "
                     f"{commit}), below the array's {mhz:g} MHz ({source})")


def _check_pos_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


def _check_pos_float(name: str, value: Any, unit: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number > 0 {unit}, got {value!r}") from None
    if not (v > 0 and math.isfinite(v)):
        raise ValueError(f"{name} must be a finite number > 0 {unit}, got {value!r}")
    return v


def _check_mode(cfg: ArrayConfig, mode: str) -> str:
    if mode not in MODE_NAMES:
        raise ValueError(f"mode must be one of {', '.join(MODE_NAMES)}, got {mode!r}")
    if mode not in cfg.precisions:
        raise ValueError(f"mode {mode!r} is not supported by this array; supported: {', '.join(cfg.precisions)}")
    return mode


# -- bare-array GEMM ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class GemmCycles:
    """Cycle estimate of one GEMM on the bare array."""

    m: int
    k: int
    n: int
    mode: str
    dataflow: str
    cycles: int
    folds: int
    macs: int
    peak_macs_per_cycle: int

    @property
    def ideal_cycles(self) -> int:
        """MACs / peak MACs per cycle, rounded up: no fill, drain or padding."""
        return -(-self.macs // self.peak_macs_per_cycle)

    @property
    def utilization(self) -> float:
        return self.macs / (self.peak_macs_per_cycle * self.cycles)


def ws_fold_starts(folds: int, beats: int, rows: int, bank_free: int) -> list[int]:
    """Start cycles ``s_i`` of the activation streams of WS folds 0..folds-1 (exact event recurrence).

    Fold ``i`` streams ``beats`` activation beats from ``s_i`` (ends ``e_i = s_i + beats``). Its weight tile
    (``rows`` beats on the one weight stream) loads into bank ``i mod 2``, which is free ``bank_free`` cycles
    after fold ``i-2`` ended: ``l_i = max(e_{i-2} + bank_free, l_{i-1}) + rows``; ``s_i = max(e_{i-1}, l_i)``.
    """
    starts: list[int] = []
    ends: list[int] = []
    load_end = 0
    for i in range(folds):
        bank_ready = ends[i - 2] + bank_free if i >= 2 else 0
        load_end = max(bank_ready, load_end) + rows
        s = max(ends[i - 1] if i else 0, load_end)
        starts.append(s)
        ends.append(s + beats)
    return starts


def _ws_last_start(folds: int, beats: int, rows: int, bank_free: int) -> int:
    # The recurrence settles into a two-fold period within a few folds; extrapolate it for long GEMMs
    # (tests check this against the full recurrence).
    exact = 12
    if folds <= exact:
        return ws_fold_starts(folds, beats, rows, bank_free)[-1]
    s = ws_fold_starts(exact, beats, rows, bank_free)
    period2 = s[-1] - s[-3]
    j = exact - 1 if (folds - 1 - (exact - 1)) % 2 == 0 else exact - 2
    return s[j] + (folds - 1 - j) // 2 * period2


def _ws_cycles(R: int, C: int, L: int, m: int, k: int, n: int, mode: str,
               row_pairs: bool = False) -> tuple[int, int]:
    m_lanes, n_lanes = PRECISION_MODES[mode].packing
    folds = math.ceil(k / R) * math.ceil(n / (n_lanes * C))
    beats = math.ceil(m / m_lanes)
    # Row pairs (w4a16 K-packed weights, rtl/array.py): R / 2 weight beats per tile, a retired bank held
    # pair_hold(R) cycles.
    w_beats, free = (R // 2, WS_PAIR_HOLD(R)) if row_pairs else (R, WS_BANK_FREE(R, C, L))
    return _ws_last_start(folds, beats, w_beats, free) + beats + WS_TAIL(R, C, L), folds


def _os_cycles(R: int, C: int, L: int, m: int, k: int, n: int, mode: str) -> tuple[int, int]:
    m_lanes, n_lanes = PRECISION_MODES[mode].packing
    folds = math.ceil(m / (m_lanes * R)) * math.ceil(n / (n_lanes * C))
    tail = OS_TAIL(R, C, L)
    return k + (folds - 1) * max(k, tail + 1) + tail, folds


def gemm_cycles(cfg: ArrayConfig, m: int, k: int, n: int, *, mode: str = "int8",
                dataflow: str | None = None, row_pairs: bool = False) -> GemmCycles:
    """Cycles of ``[m,k] @ [k,n]`` on the array of ``cfg`` (formulas in the module docstring).

    ``dataflow`` defaults to ``cfg.dataflow``; ``"both"`` picks the faster of ws and os. ``row_pairs`` (w4a16 with
    K-packed weights, ws): two K rows per weight beat (:func:`WS_PAIR_HOLD`).
    """
    m, k, n = (_check_pos_int(x, v) for x, v in (("m", m), ("k", k), ("n", n)))
    _check_mode(cfg, mode)
    dataflow = cfg.dataflow if dataflow is None else dataflow
    if dataflow not in ("ws", "os", "both"):
        raise ValueError(f"dataflow must be one of ws, os, both, got {dataflow!r}")
    if cfg.dataflow != "both" and dataflow != cfg.dataflow:
        raise ValueError(f"dataflow {dataflow!r} is not built into this array (dataflow={cfg.dataflow!r})")
    R, C, L = cfg.rows, cfg.cols, cfg.mac_pipeline
    options = []
    if dataflow in ("ws", "both"):
        options.append(("ws", *_ws_cycles(R, C, L, m, k, n, mode, row_pairs)))
    if dataflow in ("os", "both"):
        options.append(("os", *_os_cycles(R, C, L, m, k, n, mode)))
    df, cycles, folds = min(options, key=lambda o: o[1])
    return GemmCycles(m=m, k=k, n=n, mode=mode, dataflow=df, cycles=cycles, folds=folds, macs=m * k * n,
                      peak_macs_per_cycle=R * C * PRECISION_MODES[mode].products)


def scalesim_cycles(rows: int, cols: int, m: int, k: int, n: int, *, dataflow: str, mode: str = "int8") -> int:
    """SCALE-Sim's closed-form compute cycles ``(2R + C + T - 2) * ceil(S_R/R) * ceil(S_C/C)`` (module doc)."""
    rows, cols, m, k, n = (_check_pos_int(x, v) for x, v in
                           (("rows", rows), ("cols", cols), ("m", m), ("k", k), ("n", n)))
    if mode not in PRECISION_MODES:
        raise ValueError(f"mode must be one of {', '.join(MODE_NAMES)}, got {mode!r}")
    m_lanes, n_lanes = PRECISION_MODES[mode].packing
    R, C = rows, cols * n_lanes
    beats = math.ceil(m / m_lanes)
    if dataflow == "os":
        R = rows * m_lanes
        s_r, s_c, t = m, n, k
    elif dataflow == "ws":
        s_r, s_c, t = k, n, beats
    elif dataflow == "is":
        s_r, s_c, t = k, beats, n
    else:
        raise ValueError(f"dataflow must be one of os, ws, is, got {dataflow!r}")
    return (2 * R + C + t - 2) * math.ceil(s_r / R) * math.ceil(s_c / C)


# -- model shapes ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelShape:
    """Transformer shape (no weights). ``glu``: gated FFN (gate + up); ``decoder``: autoregressive LM."""

    name: str
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    glu: bool
    decoder: bool
    params_b: float | None = None

    def __post_init__(self) -> None:
        for f in ("layers", "hidden", "intermediate", "heads", "kv_heads", "head_dim", "vocab"):
            _check_pos_int(f"model {f}", getattr(self, f))
        if self.heads % self.kv_heads:
            raise ValueError(f"model heads ({self.heads}) must be a multiple of kv_heads, got {self.kv_heads}")


def _from_dict(d: dict[str, Any], source: str) -> ModelShape:
    try:
        if "layers" in d:  # npuforge's own shape files (gen/models/*.json)
            return ModelShape(name=d["name"], layers=d["layers"], hidden=d["hidden"], intermediate=d["intermediate"],
                              heads=d["heads"], kv_heads=d.get("kv_heads", d["heads"]),
                              head_dim=d.get("head_dim", d["hidden"] // d["heads"]), vocab=d["vocab"],
                              glu="glu" in d.get("activation", ""), decoder="encoder" not in d.get("family", ""),
                              params_b=d.get("params_b"))
        # Hugging Face config.json
        heads = d["num_attention_heads"]
        model_type = d.get("model_type", "")
        encoder = model_type in ("bert", "roberta", "distilbert", "xlm-roberta") or d.get("is_decoder") is False
        return ModelShape(name=d.get("_name_or_path") or model_type or Path(source).parent.name,
                          layers=d["num_hidden_layers"], hidden=d["hidden_size"],
                          intermediate=d["intermediate_size"], heads=heads,
                          kv_heads=d.get("num_key_value_heads") or heads,
                          head_dim=d.get("head_dim") or d["hidden_size"] // heads, vocab=d["vocab_size"],
                          glu=not encoder, decoder=not encoder)
    except KeyError as e:
        raise ValueError(f"model config {source!r} lacks key {e.args[0]!r}") from None


def load_model(name_or_path: str) -> ModelShape:
    """A shape from ``gen/models/NAME.json`` or from a Hugging Face / npuforge ``config.json`` path."""
    if name_or_path in MODELS:
        return _from_dict(json.loads((MODELS_DIR / f"{name_or_path}.json").read_text()), name_or_path)
    path = Path(name_or_path)
    if path.suffix == ".json" or path.is_dir():
        if path.is_dir():
            path = path / "config.json"
        if not path.is_file():
            raise ValueError(f"model config file {str(path)!r} does not exist")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"model config {str(path)!r} is not valid JSON: {e}") from None
        return _from_dict(data, str(path))
    raise ValueError(f"model must be one of {', '.join(MODELS)} or a path to a config.json, got {name_or_path!r}")


# -- per-layer GEMMs ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerGemm:
    """``count`` GEMMs ``[m,k] @ [k,n]`` of one layer type, with their DRAM traffic in bytes."""

    kind: str
    m: int
    k: int
    n: int
    count: int
    weight_bytes: float
    act_bytes: float
    kv_bytes: float

    @property
    def macs(self) -> int:
        return self.m * self.k * self.n * self.count

    @property
    def bytes(self) -> float:
        return self.weight_bytes + self.act_bytes + self.kv_bytes


LAYER_KINDS = ("qkv_proj", "attn_scores", "attn_values", "out_proj", "ffn_up", "ffn_down", "lm_head")


def layer_gemms(shape: ModelShape, *, mode: str, tokens: int, context: int, lm_head: bool) -> list[LayerGemm]:
    """GEMMs of ONE layer (and the LM head when ``lm_head``) for ``tokens`` new tokens attending to ``context``.

    Prefill: ``tokens = context = P``. Decode: ``tokens = 1``, ``context`` = keys in the cache (incl. the new one).
    """
    a_bits, w_bits = PRECISION_MODES[mode].bits
    wb, ab = w_bits / 8, a_bits / 8
    h, hd, t, L = shape.hidden, shape.head_dim, tokens, context
    q_dim, kv_dim = shape.heads * hd, shape.kv_heads * hd
    ffn_n = shape.intermediate * (2 if shape.glu else 1)
    g = []

    def proj(kind: str, k: int, n: int, m: int = t, kv_write: float = 0.0) -> LayerGemm:
        return LayerGemm(kind, m, k, n, 1, weight_bytes=k * n * wb, act_bytes=(m * k + m * n) * ab, kv_bytes=kv_write)

    # New K and V rows go to the KV cache in DRAM (decoders keep them for later tokens).
    g.append(proj("qkv_proj", h, q_dim + 2 * kv_dim, kv_write=t * 2 * kv_dim * ab if shape.decoder else 0.0))
    # Scores: per head [t, hd] @ [hd, L]; K is read from the cache once per KV head (GQA shares it).
    # Prefill's keys were just computed; they are still read back, as they do not fit on chip in general.
    g.append(LayerGemm("attn_scores", t, hd, L, shape.heads, weight_bytes=0.0,
                       act_bytes=(t * q_dim + shape.heads * t * L) * ab, kv_bytes=L * kv_dim * ab))
    g.append(LayerGemm("attn_values", t, L, hd, shape.heads, weight_bytes=0.0,
                       act_bytes=(shape.heads * t * L + t * q_dim) * ab, kv_bytes=L * kv_dim * ab))
    g.append(proj("out_proj", q_dim, h))
    g.append(proj("ffn_up", h, ffn_n))
    g.append(proj("ffn_down", shape.intermediate, h))
    if lm_head:
        g.append(proj("lm_head", h, shape.vocab, m=1))
    return g


@dataclass(frozen=True)
class HardwarePoint:
    """Array + clock + DRAM: what the model-level estimate runs on."""

    cfg: ArrayConfig
    mode: str
    clock_mhz: float
    dram_gbps: float

    def __post_init__(self) -> None:
        _check_mode(self.cfg, self.mode)
        object.__setattr__(self, "clock_mhz", _check_pos_float("clock_mhz", self.clock_mhz, "MHz"))
        object.__setattr__(self, "dram_gbps", _check_pos_float("dram_gbps", self.dram_gbps, "GB/s"))

    @property
    def peak_macs_per_s(self) -> float:
        return self.cfg.rows * self.cfg.cols * PRECISION_MODES[self.mode].products * self.clock_mhz * 1e6

    @property
    def dram_bytes_per_s(self) -> float:
        return self.dram_gbps * 1e9


def _phase(hw: HardwarePoint, shape: ModelShape, *, tokens: int, context: int, lm_head: bool) -> dict[str, Any]:
    """Time of one pass (prefill of ``tokens``, or one decode step) over all layers, per layer type."""
    per_kind: dict[str, dict[str, float]] = {}
    for lg in layer_gemms(shape, mode=hw.mode, tokens=tokens, context=context, lm_head=lm_head):
        reps = 1 if lg.kind == "lm_head" else shape.layers
        cyc = gemm_cycles(hw.cfg, lg.m, lg.k, lg.n, mode=hw.mode).cycles * lg.count * reps
        compute_s = cyc / (hw.clock_mhz * 1e6)
        memory_s = lg.bytes * reps / hw.dram_bytes_per_s
        per_kind[lg.kind] = {"macs": lg.macs * reps, "bytes": lg.bytes * reps, "weight_bytes": lg.weight_bytes * reps,
                             "kv_bytes": lg.kv_bytes * reps, "cycles": cyc, "compute_s": compute_s,
                             "memory_s": memory_s, "time_s": max(compute_s, memory_s),
                             "bound": "compute" if compute_s >= memory_s else "memory",
                             "macs_per_byte": lg.macs / lg.bytes if lg.bytes else float("inf")}
    total_s = sum(v["time_s"] for v in per_kind.values())
    total_bytes = sum(v["bytes"] for v in per_kind.values())
    compute_s = sum(v["compute_s"] for v in per_kind.values())
    memory_s = sum(v["memory_s"] for v in per_kind.values())
    return {"time_s": total_s, "bytes": total_bytes, "macs": sum(v["macs"] for v in per_kind.values()),
            "compute_s": compute_s, "memory_s": memory_s,
            "bound": "compute" if compute_s >= memory_s else "memory", "layer_types": per_kind}


def model_perf(shape: ModelShape, hw: HardwarePoint, *, prompt: int, context: int) -> dict[str, Any]:
    """Prefill and decode estimate; JSON contract keys first (``decode_*`` are None for encoders)."""
    _check_pos_int("prompt", prompt)
    _check_pos_int("context", context)
    if context < prompt:
        raise ValueError(f"context must be >= prompt ({prompt}) tokens, got {context!r}")
    prefill = _phase(hw, shape, tokens=prompt, context=prompt, lm_head=shape.decoder)
    decode = _phase(hw, shape, tokens=1, context=context, lm_head=True) if shape.decoder else None
    out: dict[str, Any] = {
        "prefill_tokens_per_s": prompt / prefill["time_s"],
        "decode_tokens_per_s": 1.0 / decode["time_s"] if decode else None,
        "ttft_s": prefill["time_s"],
        "decode_bound": decode["bound"] if decode else None,
        "decode_bytes_per_token": decode["bytes"] if decode else None,
        "decode_bandwidth_limit_tokens_per_s": hw.dram_bytes_per_s / decode["bytes"] if decode else None,
        "model": shape.name,
        "array": {"rows": hw.cfg.rows, "cols": hw.cfg.cols, "dataflow": hw.cfg.dataflow},
        "mode": hw.mode, "clock_mhz": hw.clock_mhz, "dram_gbps": hw.dram_gbps,
        "prompt": prompt, "context": context,
        "peak_macs_per_s": hw.peak_macs_per_s,
        "prefill": prefill, "decode": decode,
    }
    return out


def transformer_utilization(cfg: ArrayConfig, *, mode: str = "int8", model: str = "all-minilm-l6-v2",
                            tokens: int = 128) -> float:
    """Array utilization (useful MACs / (peak x cycles)) over one layer's GEMMs of ``model`` at ``tokens``."""
    shape = load_model(model)
    macs = cycles = 0
    for lg in layer_gemms(shape, mode=mode, tokens=tokens, context=tokens, lm_head=False):
        g = gemm_cycles(cfg, lg.m, lg.k, lg.n, mode=mode)
        macs += lg.macs
        cycles += g.cycles * lg.count
    return macs / (cycles * cfg.rows * cfg.cols * PRECISION_MODES[mode].products)


# -- roofline plot -----------------------------------------------------------------------------------------
def roofline_plot(result: dict[str, Any], path: str | Path) -> Path:
    """PNG roofline (MAC/s vs MACs per DRAM byte) with one point per layer type and phase."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    peak, bw = result["peak_macs_per_s"], result["dram_gbps"] * 1e9
    fig, ax = plt.subplots(figsize=(7, 4.5))
    pts = []
    for phase, marker in (("prefill", "o"), ("decode", "^")):
        data = result.get(phase)
        if not data:
            continue
        for kind, v in data["layer_types"].items():
            ai = v["macs"] / v["bytes"]
            perf = v["macs"] / v["time_s"]
            pts.append(ai)
            ax.scatter(ai, perf, marker=marker, label=f"{phase} {kind}")
    lo, hi = min(pts + [0.1]) / 2, max(pts + [peak / bw]) * 4
    xs = [lo * (hi / lo) ** (i / 200) for i in range(201)]
    ax.plot(xs, [min(peak, bw * x) for x in xs], "k-", lw=1.5, label="roof (peak, DRAM)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity [MACs / DRAM byte]")
    ax.set_ylabel("attained [MAC/s]")
    ax.set_title(f"{result['model']} on {result['array']['rows']}x{result['array']['cols']} {result['mode']}, "
                 f"{result['clock_mhz']:g} MHz, {result['dram_gbps']:g} GB/s")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
