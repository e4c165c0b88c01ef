"""A progress bar and an estimate for the RTL part of a long model run (``make demo``, ``npuforge generate
--backend rtl``), counted in simulated cycles.

The bar's total is the cycle model's prediction for the programs planned on the RTL (gen.perf.program: within a
few percent of the RTL, exact on most programs); each finished program advances it by the cycles the RTL measured.
Before the first program the estimate is the total at a rate measured earlier (``rate_hint``: e.g. the demo's
MiniLM part, simulation alone); from then on tqdm's estimate divides the remaining cycles by the rate measured so far
over the whole RTL part (``smoothing=0``: simulation, memory images and the golden checks included), so it is an
estimate of wall time on this machine as loaded now, not a promise.
"""

from __future__ import annotations

import sys
import time


def minutes(seconds: float) -> str:
    """``75.0`` -> ``'1 min 15 s'``; below a minute ``'42 s'``."""
    seconds = int(round(seconds))
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60:02d} s"


class RtlProgress:
    """The ``progress`` object of sim.harness.model_run.generate_on_npu: ``start`` prints the plan and the estimate,
    ``done`` advances the bar, ``close`` prints what the RTL part took.

    Parameters
    ----------
    say : callable
        Prints one line of the plan and the summary (e.g. ``print``).
    rate_hint : float, optional
        Simulated cycles per wall second measured before (``None``: no estimate before the first program).
    hint_source : str
        What ``rate_hint`` was measured on, for the screen.
    file :
        Where the bar goes (default stderr).
    """

    def __init__(self, *, say=print, rate_hint: float | None = None, hint_source: str = "", file=None):
        self.say, self.rate_hint, self.hint_source = say, rate_hint, hint_source
        self.file = sys.stderr if file is None else file
        self.bar, self.cycles, self.programs, self.planned, self.t0 = None, 0, 0, 0, None

    def start(self, predicted: dict[str, int]) -> None:
        if not predicted:
            return
        from tqdm import tqdm

        self.planned = len(predicted)
        total = sum(predicted.values())
        line = f"RTL: {len(predicted)} programs, {total / 1e6:.2f} M cycles by the cycle model"
        if self.rate_hint:
            line += (f"; about {minutes(total / self.rate_hint)} of simulation at the {self.rate_hint / 1e3:,.0f} k "
                     f"cycles/s {self.hint_source} (plus memory images and golden checks)")
        self.say(line)
        self.t0 = time.perf_counter()
        self.bar = tqdm(total=total, unit="cycle", unit_scale=True, smoothing=0, mininterval=1.0, file=self.file,
                        desc="RTL", dynamic_ncols=True)

    def done(self, name: str, result: dict) -> None:
        self.cycles += result["cycles"]
        self.programs += 1
        if self.bar is not None:
            # the model's total can be a little short of the RTL's cycles: keep the bar a bar
            self.bar.total = max(self.bar.total, self.bar.n + result["cycles"])
            self.bar.set_postfix_str(name, refresh=False)
            self.bar.update(result["cycles"])
            if self.programs == self.planned:      # the RTL part is over: the ISA simulator's phases follow
                self.close()

    def close(self) -> None:
        if self.bar is None:
            return
        self.bar.close()
        self.bar = None
        wall = time.perf_counter() - self.t0
        self.say(f"RTL part: {self.programs} programs, {self.cycles:,} cycles in {minutes(wall)} of wall time "
                 f"({self.cycles / wall / 1e3:,.0f} k cycles/s, checks included)")
