"""The warm-up measurement behind the start-of-run ETA and `train --minutes`, on a fake clock."""
from translate.pace import EXIT_S, Pace, duration


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def _drive(pace: Pace, clock: Clock, step_s: float, first_s: float = 5.0) -> tuple[int, str]:
    """Steps until the pace reports; the first step is slow (start-up), the others take step_s."""
    step = pace.start_step
    while True:
        clock.now += first_s if step == pace.start_step else step_s
        step += 1
        message = pace.after_step(step)
        if message:
            return step, message


def test_budget_sets_the_steps_that_fit_counting_the_warm_up():
    clock = Clock()
    pace = Pace(0, end=10**9, minutes=10, clock=clock)
    step, message = _drive(pace, clock, 0.5)
    assert step == 31  # 15 s of timed steps after the first
    # 600 s budget: 5 s start-up + 15 s warm-up spent, 580 s left at 0.5 s a step, less the exit
    assert pace.end == 31 + int((580 - EXIT_S) / 0.5)
    assert message.startswith(f"about 10 min: {pace.end:,} steps at 0.5 s/step (measured over 30 warm-up steps")


def test_short_budget_warms_up_for_a_share_of_it_and_a_resume_counts_from_its_step():
    clock = Clock()
    pace = Pace(500, end=10**9, minutes=0.5, clock=clock)  # 30 s: warm up 1.5 s (5 %), at least 3 steps
    step, message = _drive(pace, clock, 0.1, first_s=1.0)
    assert step == 516 and pace.end == 516 + round((30 - 1.0 - 1.5 - EXIT_S) / 0.1)
    assert message.startswith(f"about 0.5 min: {pace.end - 500:,} steps at 0.1 s/step")


def test_a_budget_smaller_than_the_warm_up_ends_the_run_there():
    clock = Clock()
    pace = Pace(0, end=10**9, minutes=0.01, clock=clock)
    step, _ = _drive(pace, clock, 1.0, first_s=2.0)
    assert pace.end == step == 4  # at least MIN_TIMED timed steps, then no time left


def test_eta_of_a_planned_run():
    clock = Clock()
    pace = Pace(0, end=5000, images_per_step=4, clock=clock)
    step, message = _drive(pace, clock, 2.0)
    assert pace.end == 5000 and step == 9  # 8 timed steps fill the 15 s warm-up
    assert message == "about 2 h 46 min to go at this speed: 4,991 more steps at 2 s/step, 2 images/s"
    assert pace.after_step(step + 1) is None  # said once


def test_durations_read_naturally():
    assert [duration(s) for s in (0.4, 59.6, 61, 3599, 3600 * 5 + 7 * 60)] == [
        "0 s", "1 min 00 s", "1 min 01 s", "59 min 59 s", "5 h 07 min"]


def test_a_budget_counts_from_the_process_start_and_keeps_back_the_timed_end_work():
    """The budget is wall time to the process's exit: time before the Pace was made counts, and the end-of-run
    work (done once at the warm-up's end) is kept back twice: once spent, once to come."""
    clock = Clock()
    pace = Pace(0, end=10**9, minutes=10, clock=clock, started=clock.now - 7.0)  # 7 s of start-up before

    def end_work():
        clock.now += 4.0

    step = 0
    message = None
    while message is None:
        clock.now += 0.5
        step += 1
        message = pace.after_step(step, end_work=end_work)
    # 600 s: 7 s start-up, 16 s of steps (32 x 0.5: the first one starts the warm-up clock), 2 x 4 s end work
    assert pace.end == step + round((600 - 7 - 0.5 * step - 8 - EXIT_S) / 0.5)
    assert "4 s kept for the samples and save at the end" in message


def test_a_budget_run_moves_its_end_when_steps_get_slower():
    """Sample grids between steps and a machine that gets busier make later steps slower than the warm-up's:
    the end is set again from the mean step time since the warm-up began, so the run still ends in time."""
    clock = Clock()
    pace = Pace(0, end=10**9, minutes=10, clock=clock, started=clock.now)
    step = 0
    while not pace.after_step(step := step + 1):
        clock.now += 0.5
    planned = pace.end
    while step < pace.end:
        clock.now += 1.0  # twice as slow from here on
        step += 1
        if step % 10 == 0:
            pace.replan(step)
    assert pace.end < planned and pace.end == step
    assert 600 - EXIT_S - 1.0 <= clock.now - (1000.0) <= 600 - EXIT_S  # ends within the budget, at most a step early
