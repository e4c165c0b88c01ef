"""DMA engine on the emitted Verilog (cocotb + cocotbext-axi AXI RAM): random 2-D loads/stores compared
byte for byte with NumPy slicing of the memory images, 4 KiB crossing, windows, AXI errors, soft reset."""

from __future__ import annotations

import pytest

from npuforge.rtl.axi import AXI4LiteSignature, AXI4Signature
from npuforge.rtl.dma import DmaConfig
from npuforge.sim.bench.dma import run_dma_tb, harness_config
from tests.conftest import require_simulator

TB_TESTS = ["random_transfers", "long_rows_cross_4k", "out_of_window_refused", "axi_error_then_soft_reset",
            "bench_long_transfers"]


@pytest.mark.cocotb
@pytest.mark.parametrize("data_width", [64, 128])
def test_dma_verilator(data_width):
    require_simulator("verilator")
    run_dma_tb(harness_config(data_width), test_module="npuforge.sim.tb.dma", sim="verilator",
               testcase=TB_TESTS, DMA_SEED=data_width, AXI_LATENCY=4, AXI_STALL=0.25)


@pytest.mark.cocotb
@pytest.mark.icarus
def test_dma_icarus_32bit():
    require_simulator("icarus")
    run_dma_tb(DmaConfig(data_width=32, local_depth=1024, max_outstanding=2), test_module="npuforge.sim.tb.dma",
               sim="icarus", testcase=["random_transfers", "out_of_window_refused", "axi_error_then_soft_reset"],
               DMA_SEED=32, DMA_TRANSFERS=16, AXI_LATENCY=2, AXI_STALL=0.3)


@pytest.mark.cocotb
@pytest.mark.icarus
def test_dma_icarus_256bit():
    """The widest bus: 32-byte beats, 4 KiB bursts of 128 beats."""
    require_simulator("icarus")
    run_dma_tb(DmaConfig(data_width=256, local_depth=512, max_outstanding=4), test_module="npuforge.sim.tb.dma",
               sim="icarus", testcase=["random_transfers", "long_rows_cross_4k"],
               DMA_SEED=256, DMA_TRANSFERS=12, AXI_LATENCY=3, AXI_STALL=0.2)


@pytest.mark.parametrize("kwargs, name", [
    (dict(data_width=48), "data_width"), (dict(data_width=512), "data_width"),
    (dict(local_depth=1), "local_depth"), (dict(n_windows=0), "n_windows"), (dict(n_windows=17), "n_windows"),
    (dict(max_outstanding=0), "max_outstanding"),
])
def test_dma_config_rejects_bad_values(kwargs, name):
    with pytest.raises(ValueError, match=name):
        DmaConfig(**kwargs)


def test_axi_signatures_member_names():
    sig = AXI4Signature(data_width=128)
    names = set(sig.members)
    for ch in ("aw", "ar"):
        assert {f"{ch}{m}" for m in ("valid", "ready", "id", "addr", "len", "size", "burst")} <= names
    assert {"wdata", "wstrb", "wlast", "bresp", "rdata", "rresp", "rlast"} <= names
    assert sig.members["wstrb"].shape == 16 and sig.members["rdata"].shape == 128
    assert {"awaddr", "wdata", "wstrb", "bresp", "araddr", "rdata", "rresp"} <= set(AXI4LiteSignature().members)
    with pytest.raises(ValueError, match="data_width"):
        AXI4Signature(data_width=8)
