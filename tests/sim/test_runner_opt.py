"""sim/harness/runner.py's ``opt_slow``: the cold code's C++ optimisation level is checked where it enters."""

from __future__ import annotations

import pytest

from npuforge.sim.harness.runner import run_cocotb
from tests.conftest import require_simulator


def test_bad_opt_slow_names_the_value():
    require_simulator("verilator")
    with pytest.raises(ValueError, match=r"opt_slow must be one of .*got '-O9'"):
        run_cocotb(verilog=[], toplevel="top", test_module="none", opt="-O2", opt_slow="-O9")
