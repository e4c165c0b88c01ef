"""Shared pytest fixtures: which simulators exist, and where generated files go."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from npuforge.sim.harness.runner import BUILD, available_simulators

#: The repository root (docs/, build/, Makefile).
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def simulators() -> list[str]:
    return available_simulators()


@pytest.fixture(scope="session")
def build_root():
    BUILD.mkdir(parents=True, exist_ok=True)
    return BUILD


def require_simulator(name: str) -> None:
    """Skip (with the reason) when a simulator is missing; CI installs both, so CI never skips."""
    if name not in available_simulators():
        pytest.skip(f"{name} is not installed (CI installs it: see .ci/run)")


def pytest_collection_modifyitems(config, items):
    """Every test in a ``*_cocotb.py`` file simulates emitted Verilog: mark it so ``-m "not cocotb"`` skips it.

    Then the slowest tests (tests/costs.py) move to the front, slowest first, the others keep their order: pytest-xdist
    hands tests out in collection order, so a two-minute test collected last would leave one worker running it alone
    at the end (longest-first balances the workers' totals). ``--maxschedchunk=2`` (pyproject.toml) makes xdist hand
    them out two at a time: its default first chunk (a quarter of a worker's share, in order) gave one worker every
    slow test."""
    from tests.costs import SECONDS

    for item in items:
        if item.path.name.endswith("_cocotb.py"):
            item.add_marker(pytest.mark.cocotb)
    items.sort(key=lambda item: -SECONDS.get(item.nodeid, 0))


@pytest.fixture
def out_dir(request) -> Path:
    """An empty folder build/test_gen/<test name> (inside the repo: the Wasm tools cannot see the host /tmp)."""
    name = request.node.name.replace("[", "_").replace("]", "").replace("/", "_")
    path = REPO / "build" / "test_gen" / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def simulate(dut, bench) -> None:
    """Run one Amaranth testbench coroutine ``bench(ctx)`` on ``dut`` with a 1 MHz clock (unit tests of components)."""
    from amaranth.sim import Simulator

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def set_ports(ctx, dut, **values) -> None:
    """``ctx.set`` every ``dut`` port named in ``values`` (an Amaranth testbench step)."""
    for name, value in values.items():
        ctx.set(getattr(dut, name), value)
