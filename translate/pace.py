"""Speed of a run, measured over a short warm-up: the ETA printed at the start of every run, and the number of
steps that fits a `--minutes` budget. The budget is wall time from the process start to its exit: start-up and
warm-up count, and the end-of-run work (samples, report, checkpoint, export) is done once after the warm-up and
timed, so that much is kept back for the end; the end is set again at each log interval from the speed so far."""
from __future__ import annotations

import math
import time

WARMUP_S = 15.0  # the warm-up times steps for this long at most...
WARMUP_SHARE = 0.05  # ...and for at most this share of a --minutes budget
MIN_TIMED = 3  # steps timed after the first one (which pays for start-up: workers, allocations)
EXIT_S = 6.0  # after the last save: closing the logs and the process, and the app seeing it end (4.7-5.8 s measured
#                by benchmarks/browser_newcomer.py: the last step to the page saying "finished", less the end work)
DISTRIBUTED_TIMED = 10  # under torchrun every process ends the warm-up at the same step; rank 0's clock decides


def duration(seconds: float) -> str:
    """A span of time a person reads: '45 s', '12 min 05 s', '3 h 07 min'."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class Pace:
    """Call `after_step(step)` after every step; it returns a message once, when the warm-up has measured the speed.
    With a budget it first sets `end`, the last step of the run."""

    def __init__(self, start_step: int, end: int, minutes: float | None = None, images_per_step: int = 1,
                 world=None, clock=time.perf_counter, started: float | None = None):
        self.start_step, self.end, self.images_per_step = start_step, end, images_per_step
        self.budget_s = None if minutes is None else minutes * 60
        self.world, self.clock = world, clock
        self.started = clock() if started is None else started  # on `clock`'s scale: when the budget began
        self.first: tuple[int, float] | None = None  # (step, time) after the first step
        self.measured = False
        self.reserve = 0.0  # seconds of end-of-run work, timed once after the warm-up
        self.last_plan: tuple[int, float] | None = None  # (step, time) of the last replan

    def _warm(self, step: int, now: float) -> bool:
        timed = step - self.first[0]
        if self.world is not None and self.world.distributed:
            return timed >= DISTRIBUTED_TIMED
        limit = WARMUP_S if self.budget_s is None else min(WARMUP_S, WARMUP_SHARE * self.budget_s)
        return timed >= MIN_TIMED and now - self.first[1] >= limit

    def after_step(self, step: int, end_work=None) -> str | None:
        """With a budget, `end_work` (the run's closing work) is called once when the warm-up ends, and its time
        is kept back from the steps."""
        if self.measured:
            return None
        now = self.clock()
        if self.first is None:
            self.first = (step, now)
            return None
        if not self._warm(step, now) and step < self.end:
            return None
        self.measured = True
        timed = step - self.first[0]
        if timed == 0:  # the run ended before a second step
            return None
        s_per_step = (now - self.first[1]) / timed
        if self.budget_s is not None:
            if end_work is not None:
                end_work()
            self.reserve = self.clock() - now
            self.last_plan = (step, self.clock())
            self.end = self._fit(step, self.clock(), s_per_step)
            return (f"about {self.budget_s / 60:g} min: {self.end - self.start_step:,} steps at {s_per_step:.3g} "
                    f"s/step (measured over {timed} warm-up steps; {now - self.started:.3g} s spent so far, "
                    f"{self.reserve:.2g} s kept for the samples and save at the end); the run ends at step "
                    f"{self.end:,}")
        return (f"about {duration((self.end - step) * s_per_step)} to go at this speed: {self.end - step:,} more steps "
                f"at {s_per_step:.3g} s/step, {self.images_per_step / s_per_step:.3g} images/s")

    def replan(self, step: int) -> bool:
        """A budget run between steps after its warm-up: set `end` again from the mean step time since the warm-up
        began (which takes in the sample grids and saves between steps), or since the last replan if that is
        slower (a machine getting busier). True if the end moved."""
        if self.budget_s is None or not self.measured or step <= self.first[0]:
            return False
        now = self.clock()
        mean = (now - self.first[1] - self.reserve) / (step - self.first[0])
        last_step, last_time = self.last_plan or (step, now)
        recent = (now - last_time) / (step - last_step) if step > last_step else 0.0
        self.last_plan = (step, now)
        end = self._fit(step, now, max(mean, recent))  # steps getting slower: the recent pace, lest the run end late
        moved, self.end = end != self.end, end
        return moved

    def _fit(self, step: int, now: float, s_per_step: float) -> int:
        """The last step that fits: the budget less the time spent, the end work to come and the exit."""
        left = self.budget_s - (now - self.started) - self.reserve - EXIT_S
        return self._agree(step + max(0, math.floor(left / s_per_step + 1e-6)))  # no float crumbs

    def _agree(self, end: int) -> int:
        """Under torchrun, every process takes rank 0's choice."""
        if self.world is None or not self.world.distributed:
            return end
        import torch.distributed as dist
        choice = [end]
        dist.broadcast_object_list(choice, src=0)
        return choice[0]
