"""The layer bench's command line (sim/bench/layer.py): a bad scheme list exits 2 with one line naming it, before
any checkpoint is loaded."""

from __future__ import annotations

import pytest

from npuforge.sim.bench import layer


@pytest.mark.parametrize("value", ["w4a8", "best,int8", ","])
def test_bad_schemes_exit_2(value, capsys):
    assert layer.main(["--schemes", value]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--schemes must name entries among w8a16, best" in err[0] and repr(value) in err[0], err


def test_best_is_the_golden_models_best():
    from npuforge.golden.models.schemes import BEST, SCHEMES as GOLDEN_SCHEMES
    from npuforge.gen.lower import bert as bert_lower, llama as llama_lower

    assert layer.SCHEMES["best"] == {"smollm2": BEST["llama"], "minilm": BEST["bert"]}
    # every bench scheme is one the NPU lowering runs, on the bench's (kv16) NPU
    for names in layer.SCHEMES.values():
        assert names["smollm2"] in llama_lower.NPU_SCHEMES and names["smollm2"] in GOLDEN_SCHEMES
        assert names["minilm"] in bert_lower.NPU_SCHEMES and names["minilm"] in GOLDEN_SCHEMES
    assert layer.bench_config(8, 64).kv16
