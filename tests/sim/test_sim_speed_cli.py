"""The simulation-speed bench's command line (sim/bench/sim_speed.py): bad values exit 2 with one line naming them,
before anything is built."""

from __future__ import annotations

import pytest

from npuforge.sim.bench import sim_speed


@pytest.mark.parametrize("argv, needle", [
    (["--sizes", "12"], "--sizes must be among 4, 8, 16"),
    (["--sizes", "x"], "--sizes must be integers"),
    (["--gemm", "4x4"], "--gemm must be MxKxN"),
    (["--minilm-tokens", "0"], "--minilm-tokens must be in [1, 64]"),
    (["--programs", "gemm,bert"], "--programs must name entries among gemm, minilm_layer, smollm2_decode, got 'bert'"),
    (["--harnesses", "slow"], "--harnesses must name entries among native, fast, fast_o1, got 'slow'"),
    (["--options", "default,fastest"], "--options must name entries among"),
])
def test_bad_arguments_exit_2(argv, needle, capsys):
    assert sim_speed.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err

