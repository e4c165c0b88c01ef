"""Stream whole GEMMs of any M, K, N through the PE-array RTL (cocotb) and get C and the RTL cycle count.

``run_gemm(cfg, a, b, mode=..., dataflow=...)`` is the API for demos and benchmarks; ``run_gemms`` runs many GEMMs
(and resets, illegal-mode probes) in one simulator process, which is what the tests use. The tiling and byte
packing (:func:`plan_gemm`) lives here too, so the cocotb testbench (``sim.tb.array``) and the Python side share it:

* ws: for each N tile (``cols`` PE columns x lanes per column) and K tile (``rows``): ``rows`` weight beats, then
  one activation beat per M row (int4: per row pair) with ``last`` on the tile's final beat; one result beat per
  activation beat. Partial sums of the K tiles are added here in int64 (the accumulator SRAM's job in the NPU).
* os: for each M tile (``rows`` PE rows, int4: 2 x rows) and N tile: K operand pairs (``a`` = column k of the A
  tile, ``w`` = row k of the B tile), then ``rows`` drained result beats. The whole K reduction is in the RTL.

Operand bytes: int8 two's complement; int4 pairs are ``lo | hi << 4`` (see :mod:`rtl.array`). Arrays with a
16-bit-activation mode take 16-bit activation words (int16 two's complement; the 8-bit modes use the low byte);
w4a16 weights are one int4 per byte (low nibble).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from npuforge.gen.config.array import ArrayConfig
from npuforge.rtl.mac import lanes_for
from npuforge.spec.dataflow import DATAFLOW_CODES, dataflows_of
from npuforge.spec.precision import MODE_CODES, PRECISION_MODES

__all__ = ["GemmRun", "GemmPlan", "plan_gemm", "run_gemm", "run_gemms", "golden_gemm", "verilog_for"]

#: (activation values per byte, output columns per PE column) in each mode.


def golden_gemm(a, b, mode: str) -> np.ndarray:
    """The spec: ``golden.gemm.gemm`` with the operand widths of ``mode``."""
    from npuforge.golden.gemm import gemm

    a_bits, b_bits = PRECISION_MODES[mode].bits
    return gemm(np.asarray(a), np.asarray(b), a_bits=a_bits, b_bits=b_bits)


@dataclass
class GemmRun:
    """Result of one GEMM on the RTL.

    c : int64 [M, N]; cycles : clock cycles from the first offered input to the last result taken;
    macs : M*K*N; ideal_cycles : macs / peak MACs per cycle of the mode; utilization : ideal / cycles;
    sim_seconds : wall time of the simulated GEMM (without build/startup); cycles_per_s : simulation speed.
    """

    c: np.ndarray
    cycles: int
    macs: int
    mode: str
    dataflow: str
    ideal_cycles: float
    utilization: float
    sim_seconds: float
    cycles_per_s: float
    beats_in: int = 0
    beats_out: int = 0
    extra: dict = field(default_factory=dict)


@dataclass
class GemmPlan:
    """Stream beats (payload integers) of one GEMM and how to turn result beats back into C."""

    cfg: ArrayConfig
    mode: str
    dataflow: str
    shape: tuple[int, int, int]
    a_beats: list[int]
    w_beats: list[int]
    n_out: int
    tiles: list[tuple]  # per result group: (kind, m0, n0, beats)

    def assemble(self, out_beats: list[int]) -> np.ndarray:
        """C [M, N] int64 from the result beat payloads (in arrival order)."""
        cfg, (m_size, _, n_size) = self.cfg, self.shape
        lanes = lanes_for(cfg.precisions)
        m_pack, n_pack = PRECISION_MODES[self.mode].packing
        vals = _unpack_results(out_beats, cfg.cols * lanes, cfg.acc_width)  # [beats, cols*lanes]
        vals = vals.reshape(len(out_beats), cfg.cols, lanes)
        # Lane 2*i + j -> (row offset i, column offset j); keep the lanes this mode uses.
        block = np.zeros((len(out_beats), m_pack, cfg.cols * n_pack), dtype=np.int64)
        for i in range(m_pack):
            for j in range(n_pack):
                block[:, i, j::n_pack] = vals[:, :, 2 * i + j]
        m_pad = max(m0 + beats * m_pack for _kind, m0, _n0, beats in self.tiles)
        n_tile = cfg.cols * n_pack
        n_pad = -(-n_size // n_tile) * n_tile
        c = np.zeros((m_pad, n_pad), dtype=np.int64)
        pos = 0
        for _kind, m0, n0, beats in self.tiles:
            part = block[pos:pos + beats]  # [beats, m_pack, n_tile]
            pos += beats
            c[m0:m0 + beats * m_pack, n0:n0 + n_tile] += part.reshape(beats * m_pack, n_tile)
        assert pos == len(out_beats)
        return c[:m_size, :n_size]


def _unpack_results(beats: list[int], elements: int, width: int) -> np.ndarray:
    if width in (16, 32, 64):
        dtype = {16: "<i2", 32: "<i4", 64: "<i8"}[width]
        nbytes = elements * width // 8
        mask = (1 << (elements * width)) - 1
        buf = b"".join((x & mask).to_bytes(nbytes, "little") for x in beats)
        return np.frombuffer(buf, dtype=dtype).reshape(len(beats), elements).astype(np.int64)
    mask, sign = (1 << width) - 1, 1 << (width - 1)
    out = np.zeros((len(beats), elements), dtype=np.int64)
    for b, x in enumerate(beats):
        for e in range(elements):
            v = (x >> (e * width)) & mask
            out[b, e] = v - (1 << width) if v & sign else v
    return out


def _check_operands(cfg: ArrayConfig, a, b, mode: str, dataflow: str):
    if mode not in cfg.precisions:
        raise ValueError(f"mode must be one of {', '.join(cfg.precisions)} for this array, got {mode!r}")
    allowed = dataflows_of(cfg.dataflow)
    if dataflow not in allowed:
        raise ValueError(f"dataflow must be one of {', '.join(allowed)} for this array, got {dataflow!r}")
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0] or 0 in a.shape or 0 in b.shape:
        raise ValueError(f"a must be [M, K] and b [K, N] with M, K, N >= 1, got a {a.shape} and b {b.shape}")
    a_bits, b_bits = PRECISION_MODES[mode].bits
    for name, x, bits in (("a", a, a_bits), ("b", b, b_bits)):
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        if not np.issubdtype(x.dtype, np.integer) or x.min() < lo or x.max() > hi:
            raise ValueError(f"{name} values must be integers in [{lo}, {hi}] for mode {mode}, "
                             f"got range [{x.min()}, {x.max()}]")
    k_limit = cfg.k_limit(mode)
    if a.shape[1] > k_limit:
        raise ValueError(f"K must be in [1, {k_limit}] for mode {mode} on this array (exact int{cfg.acc_width} "
                         f"sums), got {a.shape[1]}")
    return a.astype(np.int64), b.astype(np.int64)


def _bytes_to_ints(byte_rows: np.ndarray) -> list[int]:
    """Rows of uint8 or uint16 words (lane 0 first) -> little-endian payload integers."""
    dtype = "<u2" if byte_rows.dtype == np.uint16 else np.uint8
    byte_rows = np.ascontiguousarray(byte_rows, dtype=dtype)
    return [int.from_bytes(row.tobytes(), "little") for row in byte_rows]


def _act_words(cfg: ArrayConfig, values: np.ndarray) -> np.ndarray:
    """Activation values (int8 / int16) as the array's words: bytes, or 16-bit words with a 16-bit mode."""
    return (values & 0xFFFF).astype(np.uint16) if cfg.act_width == 16 else (values & 0xFF).astype(np.uint8)


def _act_pairs(cfg: ArrayConfig, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    pairs = _pack_pairs(lo, hi)
    return pairs.astype(np.uint16) if cfg.act_width == 16 else pairs


def _pack_pairs(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return ((lo & 15) | ((hi & 15) << 4)).astype(np.uint8)


def plan_gemm(cfg: ArrayConfig, a, b, *, mode: str, dataflow: str) -> GemmPlan:
    """Tile, pack and order the stream beats of ``a @ b`` for the array of ``cfg``."""
    a, b = _check_operands(cfg, a, b, mode, dataflow)
    rows, cols = cfg.rows, cfg.cols
    m_size, k_size = a.shape
    n_size = b.shape[1]
    m_pack, n_pack = PRECISION_MODES[mode].packing
    n_tile = cols * n_pack
    n_pad = -(-n_size // n_tile) * n_tile
    last_bit = cfg.act_width * rows
    a_beats, w_beats, tiles = [], [], []
    if dataflow == "ws":
        m_pad = -(-m_size // m_pack) * m_pack
        k_pad = -(-k_size // rows) * rows
        ap = np.zeros((m_pad, k_pad), dtype=np.int64)
        ap[:m_size, :k_size] = a
        bp = np.zeros((k_pad, n_pad), dtype=np.int64)
        bp[:k_size, :n_size] = b
        # Activation bytes per M step: [m_pad / m_pack, k_pad].
        act = _act_pairs(cfg, ap[0::2], ap[1::2]) if m_pack == 2 else _act_words(cfg, ap)
        wgt = _pack_pairs(bp[:, 0::2], bp[:, 1::2]) if n_pack == 2 else (bp & 0xFF).astype(np.uint8)
        steps = m_pad // m_pack
        for n0 in range(0, n_pad, n_tile):
            c0 = n0 // n_pack
            for k0 in range(0, k_pad, rows):
                w_beats += _bytes_to_ints(wgt[k0:k0 + rows, c0:c0 + cols])
                beats = _bytes_to_ints(act[:, k0:k0 + rows])
                beats[-1] |= 1 << last_bit
                a_beats += beats
                tiles.append(("ws", 0, n0, steps))
    else:
        m_tile = rows * m_pack
        m_pad = -(-m_size // m_tile) * m_tile
        ap = np.zeros((m_pad, k_size), dtype=np.int64)
        ap[:m_size] = a
        bp = np.zeros((k_size, n_pad), dtype=np.int64)
        bp[:, :n_size] = b
        act = _act_pairs(cfg, ap[0::2], ap[1::2]) if m_pack == 2 else _act_words(cfg, ap)  # [m_pad/m_pack, K]
        wgt = _pack_pairs(bp[:, 0::2], bp[:, 1::2]) if n_pack == 2 else (bp & 0xFF).astype(np.uint8)
        for m0 in range(0, m_pad, m_tile):
            r0 = m0 // m_pack
            for n0 in range(0, n_pad, n_tile):
                c0 = n0 // n_pack
                beats = _bytes_to_ints(act[r0:r0 + rows, :].T)
                beats[-1] |= 1 << last_bit
                a_beats += beats
                w_beats += _bytes_to_ints(wgt[:, c0:c0 + cols])
                tiles.append(("os", m0, n0, rows))
    n_out = sum(t[3] for t in tiles)
    return GemmPlan(cfg=cfg, mode=mode, dataflow=dataflow, shape=(m_size, k_size, n_size), a_beats=a_beats,
                    w_beats=w_beats, n_out=n_out, tiles=tiles)


# -- running on the RTL -------------------------------------------------------------------------------
def verilog_for(cfg: ArrayConfig) -> Path:
    """Emit the array Verilog of ``cfg`` under build/rtl/array/<hash>/, cached by config and RTL source text."""
    import npuforge.rtl.array
    import npuforge.rtl.mac
    import npuforge.rtl.pe
    from npuforge.gen.build.units import build_array
    from npuforge.gen.build.elaborate import content_hash, emit_verilog
    from npuforge.sim.harness.runner import BUILD

    sources = [Path(mod.__file__).read_text() for mod in (npuforge.rtl.dsp, npuforge.rtl.mac, npuforge.rtl.pe,
                                                         npuforge.rtl.array)]
    out_dir = BUILD / "rtl" / "array" / content_hash(cfg.to_json(), *sources)
    path = out_dir / f"{cfg.name}.v"
    if path.exists() and (out_dir / "config.json").exists() and (out_dir / "config.json").read_text() == cfg.to_json():
        return path
    emit_verilog(build_array(cfg), name=cfg.name, out_dir=out_dir)
    (out_dir / "config.json").write_text(cfg.to_json())
    return path


def run_gemms(cfg: ArrayConfig, jobs: list[dict], *, sim: str = "verilator", waves: bool = False,
              tag: str = "") -> list[dict]:
    """Run ``jobs`` in order in one simulation of the array of ``cfg``; return one result dict per job.

    A job is ``{"kind": "gemm", "a": [M,K], "b": [K,N], "mode", "dataflow", "stalls": 0..1, "seed"}``
    (result: ``c``, ``cycles``, ``sim_seconds``), ``{"kind": "reset", <gemm keys>, "reset_after": cycles}`` (starts
    the GEMM, pulses ``rst`` after that many cycles, abandons it; result: beats taken before the reset), or
    ``{"kind": "illegal", "mode_code": 0..3, "dataflow_code": 0..1, "cycles": N}`` (offers data for N cycles;
    result: ``error`` flag seen, input beats accepted, result beats seen).
    """
    from npuforge.sim.harness.runner import BUILD, run_cocotb

    verilog = verilog_for(cfg)
    work = []
    for job in jobs:
        job = dict(job)
        if job.get("kind", "gemm") in ("gemm", "reset"):
            plan = plan_gemm(cfg, job["a"], job["b"], mode=job["mode"], dataflow=job["dataflow"])
            job["plan"] = plan
        work.append(job)
    from npuforge.gen.build.elaborate import content_hash

    payload = []
    for job in work:
        entry = {k: v for k, v in job.items() if k not in ("a", "b", "plan")}
        if "plan" in job:
            p = job["plan"]
            entry.update(a_beats=[format(x, "x") for x in p.a_beats], w_beats=[format(x, "x") for x in p.w_beats],
                         n_out=p.n_out, mode_code=MODE_CODES[p.mode], dataflow_code=DATAFLOW_CODES[p.dataflow])
        payload.append(entry)
    text = json.dumps({"jobs": payload, "rows": cfg.rows, "cols": cfg.cols})
    key = content_hash(text, sim, cfg.to_json(), str(waves), tag)
    job_dir = BUILD / "sim" / "array_jobs" / key
    job_dir.mkdir(parents=True, exist_ok=True)
    (job_dir / "jobs.json").write_text(text)
    result_file = job_dir / "results.json"
    if result_file.exists():
        result_file.unlink()
    # sim/tb/array.py touches the array's ports only: no --public-flat-rw (a faster build and simulation).
    summary = run_cocotb(verilog=[verilog], toplevel=cfg.name, test_module="npuforge.sim.tb.array", sim=sim,
                         env={"ARRAY_JOBS": str(job_dir / "jobs.json"), "ARRAY_RESULTS": str(result_file)},
                         waves=waves, tag=tag, public=False)
    raw = json.loads(result_file.read_text())
    results = []
    for job, res in zip(work, raw):
        if "plan" in job and job.get("kind", "gemm") == "gemm":
            res["c"] = job["plan"].assemble([int(x, 16) for x in res.pop("out_beats")])
        res.pop("out_beats", None)
        res["test_dir"] = summary["test_dir"]
        results.append(res)
    return results


def run_gemm(cfg: ArrayConfig, a, b, *, mode: str = "int8", dataflow: str | None = None, sim: str = "verilator",
             waves: bool = False, stalls: float = 0.0, seed: int = 0) -> GemmRun:
    """``a @ b`` on the array RTL of ``cfg`` (cocotb + ``sim``); raises ``ValueError`` for bad operands/modes."""
    if dataflow is None:
        dataflow = "ws" if cfg.dataflow == "both" else cfg.dataflow
    if not 0.0 <= stalls < 1.0:
        raise ValueError(f"stalls must be a probability in [0, 1), got {stalls!r}")
    t0 = time.perf_counter()
    res = run_gemms(cfg, [{"kind": "gemm", "a": a, "b": b, "mode": mode, "dataflow": dataflow,
                           "stalls": stalls, "seed": seed}], sim=sim, waves=waves)[0]
    a, b = np.asarray(a), np.asarray(b)
    macs = a.shape[0] * a.shape[1] * b.shape[1]
    ideal = macs / cfg.peak_macs_per_cycle[mode]
    extra = {"test_dir": res["test_dir"], "wall_seconds": time.perf_counter() - t0}
    if waves:
        extra["waves"] = _find_waves(Path(res["test_dir"]), sim)
    return GemmRun(c=res["c"], cycles=res["cycles"], macs=macs, mode=mode, dataflow=dataflow, ideal_cycles=ideal,
                   utilization=ideal / res["cycles"], sim_seconds=res["sim_seconds"],
                   cycles_per_s=res["cycles"] / max(res["sim_seconds"], 1e-9), beats_in=res["beats_in"],
                   beats_out=res["beats_out"], extra=extra)


def _find_waves(test_dir: Path, sim: str) -> str | None:
    """The waveform the simulator left (Verilator: dump.vcd in the run folder, Icarus: <top>.fst in the build)."""
    candidates = list(test_dir.glob("*.vcd")) + list(test_dir.glob("*.fst"))
    candidates += list(test_dir.parent.parent.glob("*.fst")) + list(test_dir.parent.parent.glob("*.vcd"))
    return str(candidates[0]) if candidates else None


if __name__ == "__main__":  # pragma: no cover - quick manual check
    cfg = ArrayConfig(rows=int(os.environ.get("ROWS", 4)), cols=int(os.environ.get("COLS", 4)), dataflow="both")
    rng = np.random.default_rng(0)
    a = rng.integers(-128, 128, (5, 9))
    b = rng.integers(-128, 128, (9, 7))
    run = run_gemm(cfg, a, b)
    print(run.cycles, np.array_equal(run.c, golden_gemm(a, b, "int8")))
