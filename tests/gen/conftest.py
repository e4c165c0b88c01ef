"""Fixtures of the generator / PPA tests: fresh output folders under build/ (yowasp tools sandbox /tmp)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def out_dir(request) -> Path:
    """An empty folder build/test_gen/<test name> (inside the repo: the Wasm tools cannot see the host /tmp)."""
    name = request.node.name.replace("[", "_").replace("]", "").replace("/", "_")
    path = ROOT / "build" / "test_gen" / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path
