"""Shared pytest fixtures: which simulators exist, and where generated files go."""

from __future__ import annotations

import pytest

from sim.runner import BUILD, available_simulators


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
