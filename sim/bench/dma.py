"""DMA harness builds shared by the DMA/CSR tests, and the DMA bus-bandwidth benchmark.

``bench_dma()`` runs long 2-D loads and stores on the RTL (Verilator) against cocotbext-axi's AXI RAM
(no stalls; 0 or 20 cycles from address to data), checks every byte, and reports bandwidth efficiency =
``bytes / (bus bytes per cycle * cycles)``, where ``cycles`` counts every cycle the DMA is busy
for the command (checks, bus latency, drain).
"""

from __future__ import annotations

import json
from pathlib import Path

from npuforge.gen.build.elaborate import emit_verilog
from npuforge.rtl.csr import COUNTERS, CTRL, IRQ, REG, STATUS, counter_reg, window_reg
from npuforge.rtl.dma import DMA_DESCRIPTOR, DmaConfig, DmaError
from npuforge.sim.hdl.dma_harness import DmaHarness
from npuforge.sim.harness.runner import BUILD, run_cocotb

__all__ = ["harness_config", "harness_verilog", "harness_env", "run_dma_tb", "bench_dma", "TOPLEVEL"]

TOPLEVEL = "dma_harness"


def harness_config(data_width: int) -> DmaConfig:
    """The harness configuration of the tests and the bench for one bus width (shared builds)."""
    return DmaConfig(data_width=data_width, local_depth=2048, n_windows=4, max_outstanding=4)


def harness_verilog(config: DmaConfig) -> Path:
    """Emit the harness for ``config`` under build/verilog/dma/ (one file per configuration).

    The Icarus time-0 fix-up of Yosys's ``always @*`` triggers is applied by sim/harness/runner.py.
    """
    tag = f"w{config.data_width}_d{config.local_depth}_n{config.n_windows}_o{config.max_outstanding}"
    return emit_verilog(DmaHarness(config), name=TOPLEVEL, out_dir=BUILD / "verilog" / "dma" / tag)


def harness_env(config: DmaConfig, **extra) -> dict[str, str]:
    """Everything the testbenches need to know about the design, as JSON in ``DMA_CFG``; ``extra``
    become environment variables (``DMA_SEED``, ``AXI_LATENCY``, ``AXI_STALL``, ``DMA_TRANSFERS``, ...)."""
    fields = {}
    for name, field in DMA_DESCRIPTOR:
        fields[name] = [field.offset, field.width]
    cfg = {
        "data_width": config.data_width, "local_depth": config.local_depth,
        "n_windows": config.n_windows, "max_outstanding": config.max_outstanding,
        "desc_fields": fields, "desc_width": DMA_DESCRIPTOR.size,
        "regs": REG, "ctrl": CTRL, "status": STATUS, "irq": IRQ,
        "windows": [{f: window_reg(i, f) for f in ("BASE", "SIZE", "PERM")} for i in range(config.n_windows)],
        "counters": {n: counter_reg(n) for n in COUNTERS},
        "errors": {e.name: e.value for e in DmaError},
        "burst_boundary": min(4096, 256 * config.bus_bytes),
    }
    return {"DMA_CFG": json.dumps(cfg), **{k: str(v) for k, v in extra.items()}}


def run_dma_tb(config: DmaConfig, *, test_module: str, sim: str = "verilator", testcase=None,
               seed: int | None = None, **extra) -> dict:
    return run_cocotb(verilog=[harness_verilog(config)], toplevel=TOPLEVEL, test_module=test_module,
                      sim=sim, env=harness_env(config, **extra), testcase=testcase, seed=seed)


def bench_dma(data_widths=(64, 128), latencies=(0, 20), total_bytes: int = 16 * 1024,
              sim: str = "verilator") -> list[dict]:
    """Long loads/stores per bus width and memory latency; one record per (width, latency, direction, shape).

    Writes build/bench/dma.json and returns the records. The designs are the ones the tests use
    (``TEST_CONFIGS``), so the simulator builds are shared.
    """
    records = []
    out_dir = BUILD / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    for width in data_widths:
        config = harness_config(width)
        if total_bytes > config.local_depth * config.bus_bytes:
            raise ValueError(f"total_bytes must be <= {config.local_depth * config.bus_bytes} for a "
                             f"{width}-bit bus, got {total_bytes}")
        for latency in latencies:
            result_file = out_dir / f"dma_w{width}_l{latency}_raw.json"
            result_file.unlink(missing_ok=True)
            run_dma_tb(config, test_module="npuforge.sim.tb.dma", sim=sim, testcase="bench_long_transfers",
                       BENCH_OUT=str(result_file), BENCH_BYTES=total_bytes, BENCH_LATENCY=latency)
            for rec in json.loads(result_file.read_text()):
                rec.update(data_width=width, latency=latency, sim=sim, max_outstanding=config.max_outstanding,
                           efficiency=round(rec["bytes"] / ((width // 8) * rec["cycles"]), 4))
                records.append(rec)
            result_file.unlink()
    (out_dir / "dma.json").write_text(json.dumps(records, indent=1))
    return records


def main(argv=None) -> int:
    """``python -m npuforge.sim.bench.dma``: run :func:`bench_dma` and print a short table."""
    records = bench_dma()
    print(" bus  latency  dir    shape        bytes  cycles  efficiency")
    for r in records:
        print(f"{r['data_width']:4d}  {r['latency']:7d}  {r['direction']:5s}  {r['shape']:>10s}  {r['bytes']:6d}  "
              f"{r['cycles']:6d}  {r['efficiency']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
