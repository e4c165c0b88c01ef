"""AXI4-Lite control/status registers on the emitted Verilog (run on the DMA harness build)."""

from __future__ import annotations

import pytest

from npuforge.rtl.csr import CsrConfig
from npuforge.sim.bench.dma import run_dma_tb, harness_config
from tests.conftest import require_simulator


@pytest.mark.cocotb
def test_csr_verilator():
    require_simulator("verilator")
    run_dma_tb(harness_config(64), test_module="npuforge.sim.tb.csr", sim="verilator", DMA_SEED=7)


@pytest.mark.parametrize("kwargs, name", [
    (dict(n_windows=0), "n_windows"), (dict(macs_width=33), "macs_width"), (dict(hw_config=1 << 32), "hw_config"),
])
def test_csr_config_rejects_bad_values(kwargs, name):
    with pytest.raises(ValueError, match=name):
        CsrConfig(**kwargs)
