"""The loop around Trainer.step: data loading, logging, health findings, samples, the report, checkpoints,
NaN rollback and deferred signals. All of a run's files go into the trainer's run folder."""
from __future__ import annotations

import contextlib
import io
import json
import math
import signal
import threading
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .checkpoint import atomic_write, kept_model_path
from .data import DataError, UnpairedDataset, build_transform, collate, load_rgb, to_tensor
from .pace import Pace
from .report import write_report
from .trainer import NonFiniteError, Trainer

MAX_ROLLBACKS = 5  # then the run stops: halving the LR again and again will not fix it
UNPLANNED = 10**12  # the end of a --minutes run until its warm-up has measured the speed


def fit(trainer: Trainer, resume: bool = False, stop_at: int | None = None, minutes: float | None = None,
        started: float | None = None) -> dict:
    """Train to total_steps, or for about `minutes` from `started` (a time.perf_counter(); default now; the steps
    are set after a short warm-up and saved as max_steps), or pause at step `stop_at`, saving the state; returns
    the last logged metrics. SIGINT or SIGTERM finish the current step, save the state and raise
    KeyboardInterrupt."""
    return Run(trainer).fit(resume, stop_at, minutes, started)


def samples_source(trainer: Trainer) -> str:
    """Where the sample grids' images come from, in words."""
    data = trainer.cfg.data
    if trainer.domains.test_a is not trainer.domains.train_a:
        return f"testA/ and testB/ of {data.data}"
    if data.data:
        return f"trainA/ and trainB/ of {data.data} (it has no testA/ testB/)"
    return ("the training folders (--data-a/--data-b have no test split; `translate data prepare` makes one, "
            "then train with --data)")


def data_summary(trainer: Trainer) -> dict:
    """Image counts, sources and sample source of the run's data, for sessions.jsonl and the report."""
    d, data = trainer.domains, trainer.cfg.data
    return {"train_a": len(d.train_a), "train_b": len(d.train_b), "names": list(d.names),
            "source_a": data.data_a or f"{data.data}/trainA", "source_b": data.data_b or f"{data.data}/trainB",
            "samples": samples_source(trainer), "skipped": len(trainer.bad_files)}


def loader(trainer: Trainer, start: int, stop: int) -> torch.utils.data.DataLoader:
    """One loader for steps start..stop (workers live across epochs); the data depend only on seed and step."""
    d = trainer.cfg.data
    dataset = UnpairedDataset(trainer.domains.train_a, trainer.domains.train_b,
                              build_transform(d.load_size, d.crop_size, d.resize, d.crop, d.flip))
    return torch.utils.data.DataLoader(dataset, batch_sampler=trainer.batches(start, stop), collate_fn=collate,
                                       num_workers=d.workers, generator=torch.Generator(),
                                       pin_memory=trainer.device.type == "cuda")


def fixed_samples(trainer: Trainer) -> tuple[torch.Tensor, torch.Tensor]:
    """n_samples test images per domain, spread over each set, centre-cropped to the training size."""
    size = trainer.cfg.data.crop_size
    transform = build_transform(size, size, train=False)
    batches, d = [], trainer.domains
    for test, train in ((d.test_a, d.train_a), (d.test_b, d.train_b)):
        images = []
        for files in (test, train):  # a test folder whose every file is unreadable: training images instead
            stride = max(1, len(files) // trainer.cfg.train.n_samples)  # spread over the set, not its start
            for path in dict.fromkeys(files[::stride] + files):  # an unreadable pick is replaced, never repeated
                if len(images) == trainer.cfg.train.n_samples:
                    break
                with contextlib.suppress(DataError):
                    images.append(to_tensor(transform(image=load_rgb(path))["image"]))
            if images:
                break
        batches.append(torch.stack(images).to(trainer.device))
    return batches[0], batches[1]


@torch.no_grad()
def sample_grid(trainer: Trainer, samples: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Rows of real A | fake B | rec A || real B | fake A | rec B on the sample images, in [0, 1]."""
    from torchvision.utils import make_grid
    g = trainer.generators()
    for net in g.values():
        net.eval()
    real_a, real_b = samples
    fake_b, fake_a = g["g_ab"](real_a), g["g_ba"](real_b)
    rec_a, rec_b = g["g_ba"](fake_b), g["g_ab"](fake_a)
    n = min(len(real_a), len(real_b))
    rows = torch.stack([real_a[:n], fake_b[:n], rec_a[:n], real_b[:n], fake_a[:n], rec_b[:n]], dim=1)
    return make_grid(rows.flatten(0, 1).float().cpu().add(1).div(2).clamp(0, 1), nrow=6, padding=2,
                     pad_value=1.0)


class Run:
    """One fit() of a trainer: the progress bar, TensorBoard writer, rollback count and pending stop signal."""

    def __init__(self, trainer: Trainer):
        self.trainer = trainer
        self.stop_signal: int | None = None
        self.rollbacks = 0
        self.bar = self.writer = self._samples = None

    def fit(self, resume: bool, stop_at: int | None, minutes: float | None = None,
            started: float | None = None) -> dict:
        tr = self.trainer
        if resume:
            tr.resume()
        main = tr.world.is_main
        if minutes is not None:
            tr.total_steps = UNPLANNED  # constant LR until the warm-up sets the end (and max_steps)
        self.end = min(tr.total_steps, stop_at or tr.total_steps)
        self.pace = Pace(tr.step_count, self.end, minutes, tr.cfg.train.batch_size * tr.world.world_size, tr.world,
                         started=started)
        tr.run_dir.mkdir(parents=True, exist_ok=True)
        if main:
            from torch.utils.tensorboard import SummaryWriter
            tr.cfg.save(tr.run_dir / "config.json")
            self.writer = SummaryWriter(str(tr.run_dir / "tensorboard"))
            with (tr.run_dir / "sessions.jsonl").open("a") as f:  # every start and resume, for the report
                f.write(json.dumps({"time": time.time(), "step": tr.step_count, "minutes": minutes,
                                    "total_steps": None if minutes else tr.total_steps,
                                    "config": tr.cfg.to_dict(), "data": data_summary(tr)}) + "\n")
        self.bar = tqdm(total=None if minutes else self.end, initial=tr.step_count, desc=tr.run_dir.name,
                        unit="step", dynamic_ncols=True, disable=not main)
        metrics: dict = {}
        with _deferred_signals(self):
            try:
                while tr.step_count < self.end:
                    try:
                        metrics = self._run() or metrics
                    except NonFiniteError as exc:
                        self._roll_back(str(exc))
            finally:
                self.bar.close()
                if self.writer is not None:
                    self.writer.close()
        if main and tr.bad_files:
            (tr.run_dir / "skipped.txt").write_text("".join(f"{p}: {r}\n" for p, r in sorted(tr.bad_files.items())))
            print(f"skipped {len(tr.bad_files)} unreadable image(s); listed in {tr.run_dir / 'skipped.txt'}")
        return metrics

    def _plan(self, step: int) -> None:
        """Once the warm-up has measured the speed: say the ETA, or with --minutes set the run's end (and move it
        at each log interval, from the speed so far)."""
        tr = self.trainer
        message = self.pace.after_step(step, end_work=self._checkpoint if tr.world.is_main else None)
        moved = message is None and step % tr.cfg.train.log_every == 0 and self.pace.replan(step)
        if message is None and not moved:
            return
        if self.pace.budget_s is not None:
            self.end = tr.total_steps = tr.cfg.train.max_steps = self.pace.end
            self.bar.total = self.end
            self.bar.refresh()
            if tr.world.is_main:
                tr.cfg.save(tr.run_dir / "config.json")  # a --resume continues to this end
        if message and tr.world.is_main:
            self.bar.write(message)

    def _run(self) -> dict:
        """Steps from the current one to self.end: log, sample and save at their intervals."""
        tr, bar = self.trainer, self.bar
        t, main = tr.cfg.train, tr.world.is_main
        sums: dict[str, torch.Tensor] = {}
        metrics: dict = {}
        tick, tick_step = time.perf_counter(), tr.step_count
        with (tr.run_dir / "metrics.jsonl").open("a") if main else contextlib.nullcontext() as log_file:
            for batch in loader(tr, tr.step_count, self.end):
                self._note_bad(batch["bad"])
                for key, value in tr.step(batch["a"], batch["b"]).items():
                    sums[key] = sums.get(key, 0) + value
                bar.update(1)
                s = tr.step_count
                self._plan(s)
                end = self.end
                if self.stop_signal is not None:
                    if main:
                        bar.write(f"{signal.Signals(self.stop_signal).name}: saving state at step {s}")
                        tr.save()
                    raise KeyboardInterrupt
                if s % t.log_every == 0 or s == end:
                    n, elapsed = s - tick_step, time.perf_counter() - tick
                    metrics = {"step": s, **{k: float(v) / n for k, v in sums.items()},
                               "lr_g": tr.opt_g.param_groups[0]["lr"], "lr_d": tr.opt_d.param_groups[0]["lr"],
                               "images_per_s": n * t.batch_size * tr.world.world_size / elapsed,
                               "step_time_s": elapsed / n, "time": time.time()}
                    if main:
                        self._check_health(s, metrics)
                    if not all(math.isfinite(v) for v in metrics.values()):  # checked before every save too
                        raise NonFiniteError(f"non-finite loss between steps {tick_step} and {s}")
                    if main:
                        log_file.write(json.dumps({**metrics, "findings": sorted(tr.monitor.active)}) + "\n")
                        log_file.flush()
                        for k, v in metrics.items():
                            if k != "step":
                                self.writer.add_scalar(k, v, s)
                        bar.set_postfix({**{k: f"{metrics[k]:.3g}" for k in ("g_adv", "g_cycle", "d_a", "d_b")},
                                         "health": ",".join(sorted(tr.monitor.active)) or "ok"})
                    sums, tick, tick_step = {}, time.perf_counter(), s
                if main and (s % t.sample_every == 0 or s == end):
                    self._views()
                if main and (s % t.save_every == 0 or s == end):
                    if not all(bool(torch.isfinite(v)) for v in sums.values()):
                        raise NonFiniteError(f"non-finite loss between steps {tick_step} and {s}")
                    tr.save()
                if main and t.keep_every and s % t.keep_every == 0:
                    tr.export(kept_model_path(tr.run_dir, s))
                if s >= end:  # a --minutes run's loader reaches past its end
                    break
        return metrics

    def _views(self) -> None:
        """The sample grid and report.html: views of the run, so one that cannot be written does not stop it (a
        full disk stops the save)."""
        tr = self.trainer
        try:
            self.write_samples()
        except OSError as exc:
            self.bar.write(f"could not write a sample grid in {tr.run_dir / 'samples'}: {exc.strerror or exc}")
        try:
            write_report(tr.run_dir)
        except OSError as exc:
            self.bar.write(f"could not write {tr.run_dir / 'report.html'}: {exc.strerror or exc}")

    def _checkpoint(self) -> None:
        """What the end of a run writes, done once after a --minutes run's warm-up to time it (the user gets a
        first grid, a model and a resumable state early)."""
        self._views()
        self.trainer.save()

    def _note_bad(self, messages: list[str]) -> None:
        for message in messages:
            path, _, reason = message.partition(": ")
            if path not in self.trainer.bad_files:
                self.trainer.bad_files[path] = reason
                self.bar.write(f"skipped unreadable image {message}")

    def _roll_back(self, reason: str) -> None:
        """Reload the last saved state and halve both learning rates, or stop (--on-nan stop)."""
        tr = self.trainer
        self.rollbacks += 1
        if tr.cfg.train.on_nan == "stop" or not tr.state_path.is_file() or self.rollbacks > MAX_ROLLBACKS:
            raise NonFiniteError(f"{reason}; stopped (no checkpoint was written with these values). "
                                 "Try lower --lr-g/--lr-d, --spectral-norm or --adversarial lsgan")
        tr.resume()
        for sched in (tr.sched_g, tr.sched_d):
            sched.base_lrs = [lr / 2 for lr in sched.base_lrs]
            for group, base in zip(sched.optimizer.param_groups, sched.base_lrs):
                group["lr"] = base * tr._lr_factor(sched.last_epoch)
        self.bar.write(f"{reason}: rolled back to step {tr.step_count} and halved the learning rates "
                       f"(lr_g {tr.opt_g.param_groups[0]['lr']:.3g}, lr_d {tr.opt_d.param_groups[0]['lr']:.3g})")

    def _check_health(self, step: int, metrics: dict) -> None:
        """Feed the monitor; each new finding goes to findings.jsonl, TensorBoard and the console."""
        tr = self.trainer
        for finding in tr.monitor.update(step, metrics, tr.last_batch):
            with (tr.run_dir / "findings.jsonl").open("a") as f:
                f.write(json.dumps({"step": step, **finding.to_dict()}) + "\n")
            self.writer.add_text(f"findings/{finding.name}", f"since step {finding.since_step}: {finding.evidence}"
                                 "\n\n" + "\n".join(f"- `{r}`" for r in finding.remedies), step)
            self.bar.write(f"health: {finding}\n  try: " + " | ".join(finding.remedies))

    def write_samples(self) -> Path:
        from torchvision.utils import save_image
        tr = self.trainer
        if self._samples is None:
            self._samples = fixed_samples(tr)
        grid = sample_grid(tr, self._samples)
        path = tr.run_dir / "samples" / f"step_{tr.step_count:07d}.png"
        buffer = io.BytesIO()
        save_image(grid, buffer, format="png")
        atomic_write(path, buffer.getvalue())  # a full disk leaves no half-written grid
        if self.writer is not None:
            self.writer.add_image("samples", grid, tr.step_count)
        return path


@contextlib.contextmanager
def _deferred_signals(run: Run):
    """While training, SIGINT/SIGTERM only set run.stop_signal; the loop stops at the next step boundary,
    so the saved state is always a consistent one."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        run.stop_signal = signum
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
