"""Which programs of a whole-model run go to the RTL (sim.harness.model_run._schedule: ``rtl_from``,
``rtl_phases``, ``rtl_programs``) and the RTL part's progress bar and estimate (sim.harness.progress)."""

from __future__ import annotations

import io

import pytest

from npuforge.sim.harness.model_run import _rtl_decode, _schedule
from npuforge.sim.harness.progress import RtlProgress, minutes

PHASES = ["prefill", "step1", "step2", "step3"]


class _Plan:
    """Three programs per phase, named like gen.lower.llama's (layers, then the head)."""

    def programs_of(self, phase):
        return [f"{phase}.l0", f"{phase}.l1", f"{phase}.head"]


def _on_rtl(schedule):
    return [n for phase in PHASES for n in schedule[phase][0]]


def test_every_program_runs_once_in_order():
    for args in [("rtl", None, None, None), ("rtl", "step1", 2, None), ("rtl", None, 1, 4), ("isa", None, None, None)]:
        schedule = _schedule(_Plan(), PHASES, *args)
        for phase in PHASES:
            on_rtl, on_isa = schedule[phase]
            assert on_rtl + on_isa == _Plan().programs_of(phase), (args, phase)


@pytest.mark.parametrize("backend, rtl_from, rtl_phases, rtl_programs, want", [
    ("rtl", None, None, None, 12),
    ("isa", None, None, None, 0),
    ("rtl", None, 2, None, 6),             # the demo: the prefill and the first decode step
    ("rtl", None, 0, None, 0),
    ("rtl", "step1", 2, None, 6),
    ("rtl", "step3", 2, None, 3),          # past the last phase: only what is there
    ("rtl", None, None, 4, 4),             # a program budget cuts inside a phase
    ("rtl", None, 2, 4, 4),
    ("rtl", "step2", None, 1, 1),
])
def test_which_programs_go_to_the_rtl(backend, rtl_from, rtl_phases, rtl_programs, want):
    schedule = _schedule(_Plan(), PHASES, backend, rtl_from, rtl_phases, rtl_programs)
    on_rtl = _on_rtl(schedule)
    assert len(on_rtl) == want
    first = 0 if rtl_from is None else PHASES.index(rtl_from)
    phases_on_rtl = [PHASES.index(n.split(".")[0]) for n in on_rtl]
    assert all(i >= first for i in phases_on_rtl)
    if rtl_phases is not None:
        assert all(i < first + rtl_phases for i in phases_on_rtl)
    # the RTL part is one run of consecutive programs from the first phase on the RTL
    flat = [n for phase in PHASES for n in _Plan().programs_of(phase)]
    if on_rtl:
        start = flat.index(on_rtl[0])
        assert flat[start:start + len(on_rtl)] == on_rtl


def test_rtl_decode_takes_only_steps_run_whole_on_the_rtl():
    steps = [{"phase": "step1", "tokens": 1, "cycles": 1000, "predicted_cycles": 990},
             {"phase": "step2", "tokens": 1, "predicted_cycles": 995}]
    got = _rtl_decode(steps, clock_mhz=100.0)
    assert got["phases"] == ["step1"] and got["cycles"] == 1000 and got["predicted_cycles"] == 990
    assert got["tokens_per_s"] == pytest.approx(1e8 / 1000)
    assert got["predicted_tokens_per_s"] == pytest.approx(1e8 / 990)
    assert _rtl_decode(steps[1:], clock_mhz=100.0) is None


def test_progress_estimate_and_summary():
    lines, bar = [], io.StringIO()
    progress = RtlProgress(say=lines.append, rate_hint=250_000, hint_source="measured before", file=bar)
    progress.start({"prefill.l0": 3_000_000, "prefill.head": 1_500_000, "step1.l0": 10_500_000})
    assert lines[0].startswith("RTL: 3 programs, 15.00 M cycles by the cycle model; about 1 min 00 s of simulation")
    assert "250 k cycles/s measured before" in lines[0]
    for name, cycles in (("prefill.l0", 3_000_123), ("prefill.head", 1_499_000), ("step1.l0", 10_600_000)):
        assert len(lines) == 1
        progress.done(name, {"cycles": cycles})
    assert len(lines) == 2          # the last planned program closes the bar and prints the summary
    assert progress.bar is None
    progress.close()
    assert len(lines) == 2
    assert lines[1].startswith(f"RTL part: 3 programs, {3_000_123 + 1_499_000 + 10_600_000:,} cycles in ")
    assert "step1.l0" in bar.getvalue() and "100%" in bar.getvalue()   # measured past the model: still a bar
    quiet = []
    empty = RtlProgress(say=quiet.append, file=io.StringIO())
    empty.start({})
    empty.close()
    assert quiet == []


def test_minutes():
    assert minutes(42.4) == "42 s" and minutes(75) == "1 min 15 s" and minutes(600) == "10 min 00 s"


def test_phase_line_says_where_and_the_verdict():
    from npuforge.sim.harness.model_run import _phase_line

    rtl = {"phase": "step1", "cycles": 1000, "predicted_cycles": 990, "bit_exact": True, "matches_golden": True}
    assert _phase_line(rtl) == ("step1 done: RTL 1,000 cycles, model 990 (-1.00%), bit-exact yes; logits equal to "
                                "the golden model's")
    split = {"phase": "prefill", "predicted_cycles": 5000, "rtl_programs": 2, "rtl_cycles": 700,
             "rtl_predicted_cycles": 702, "bit_exact": False, "matches_golden": False}
    assert _phase_line(split) == ("prefill done: 2 program(s) on the RTL: 700 cycles, model 702, bit-exact NO; the "
                                  "rest on the ISA simulator, model 5,000 cycles; logits DIFFER from the golden "
                                  "model's")
    isa = {"phase": "step2", "predicted_cycles": 995, "matches_golden": True}
    assert _phase_line(isa) == "step2 done: ISA simulator, model 995 cycles; logits equal to the golden model's"
