"""The sign-bit rewrite of the native build (sim/harness/replicate.py): runs of equal single-bit selects inside a
concatenation become replications; everything else (function arguments, expressions, other bits) stays."""

from __future__ import annotations

import pytest

from npuforge.sim.harness.replicate import replicate_bits


@pytest.mark.parametrize("before, after, runs", [
    ("assign y = { p[7], p[7], p[7], p[7:0] };", "assign y = { {3{p[7]}}, p[7:0] };", 1),
    ("assign y = { \\a.b [3], \\a.b [3], \\a.b [3:0] };", "assign y = { {2{\\a.b [3]}}, \\a.b [3:0] };", 1),
    ("assign y = { q, p[7], p[7] };", "assign y = { q, {2{p[7]}} };", 1),
    ("assign y = { p[1], p[1], p[7], p[7], p[7] };", "assign y = { {2{p[1]}}, {3{p[7]}} };", 2),
    # Not a whole run of concatenation elements: unchanged.
    ("assign y = f(p[7], p[7]);", None, 0),
    ("assign y = { p[7], p[7] + 1 };", None, 0),
    ("assign y = { p[7], p[6], p[7] };", None, 0),
    ("assign y = { \\x{ [1], \\x{ [2] };", None, 0),
])
def test_runs_become_replications(before, after, runs):
    assert replicate_bits(before) == (after or before, runs)
