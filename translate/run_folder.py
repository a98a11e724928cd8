"""The rules of a run folder: it belongs to one run (an existing name needs --resume), one process trains in it at
a time (a lock), and --resume continues that run: only the flags in RESUMABLE may change, each change is printed,
anything else is refused in one line before the folder is touched.

--max-steps / --epochs on resume set a new end; the LR schedule is recomputed over the new length (constant for
the first --lr-decay-start of it, then linear to zero at the new end), so extending a finished run raises the LR
again: the message says by how much.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path

from .config import Config
from .validate import flag

LOCK = ".lock"
# How long, how often to log/sample/save, and how the machine runs it: the run itself stays the same.
RESUMABLE = ("max_steps", "epochs", "log_every", "sample_every", "save_every", "keep_every", "n_samples",
             "save_retries", "on_nan", "workers", "device", "amp", "channels_last", "compile",
             "winograd")
IDENTITY = ("name", "runs_dir")


def holds_a_run(run_dir: Path) -> bool:
    """Whether the folder holds a run that saved something: a resume state or a model. (A run stopped before its
    first checkpoint left nothing to resume, so the same command may start it again.)"""
    return (run_dir / "state" / "last.pt").exists() or (run_dir / "model.safetensors").exists()


def refuse_existing(run_dir: Path) -> None:
    """ValueError naming the two commands the user probably meant when `run_dir` already holds a run."""
    if not holds_a_run(run_dir):
        return
    free = next(f"{run_dir.name}-{i}" for i in range(2, 10_000) if not (run_dir.parent / f"{run_dir.name}-{i}").exists())
    raise ValueError(f"{run_dir} already holds a run; continue it: translate train --resume --name {run_dir.name} "
                     f"--runs-dir {run_dir.parent} (add --max-steps N to train longer), or start a new one with "
                     f"--name {free}")


def absolute_data(cfg: Config) -> None:
    """Store data folders (and --init's model) as absolute paths, so --resume works from any working directory."""
    for key in ("data", "data_a", "data_b"):
        if getattr(cfg.data, key):
            setattr(cfg.data, key, str(Path(getattr(cfg.data, key)).resolve()))
    if cfg.train.init:
        cfg.train.init = str(Path(cfg.train.init).resolve())


def init_settings(overrides: dict) -> dict:
    """The generator settings of the model --init starts from (ArtifactError, one line, for a bad file), so
    its weights fit this run's nets unless a flag given asks for other ones."""
    from .checkpoint import read_model
    from .config import GENERATOR_FIELDS
    if not overrides.get("init"):
        return {}
    _, meta = read_model(overrides["init"])
    model = meta.get("model", {})
    return {key: model[key] for key in GENERATOR_FIELDS if key in model}


def resume_changes(saved: Config, overrides: dict) -> dict[str, tuple]:
    """{field: (saved value, new value)} for the flags given on --resume that differ from the run's; ValueError
    (one line) for a change --resume cannot make."""
    changes = {}
    for key, value in overrides.items():
        if key in IDENTITY:
            continue
        section = next((s for s in (saved.model, saved.data, saved.train) if hasattr(s, key)), None)
        if section is None:
            raise ValueError(f"unknown config field {key!r}")
        old = getattr(section, key)
        if key in ("data", "data_a", "data_b") and value and old and Path(value).resolve() == Path(old):
            continue
        if value == old:
            continue
        if key not in RESUMABLE:
            raise ValueError(f"{flag(key)} cannot change on --resume (this run has {old}): only "
                             f"{', '.join(map(flag, RESUMABLE))} can; to train with {flag(key)} {value}, start a new "
                             "run with another --name")
        changes[key] = (old, value)
    return changes


def describe(changes: dict[str, tuple]) -> list[str]:
    """Lines saying what the resume changes; a "lr factor" entry (before, after) says what happens to the LR."""
    lines = [f"resume: {flag(k)} {old} -> {new}" for k, (old, new) in changes.items() if k != "lr factor"]
    before, after = changes.get("lr factor", (None, None))
    if before != after:
        lines.append(f"resume: the LR schedule is recomputed for the new length (constant, then linear to zero at the "
                     f"new end): the LR at this step goes from {before:.3g} to {after:.3g} of --lr-g/--lr-d")
    return lines


def previous_total(cfg: Config, changes: dict[str, tuple], steps_per_epoch: int) -> int:
    """The run's length before this resume changed --max-steps or --epochs."""
    max_steps = changes["max_steps"][0] if "max_steps" in changes else cfg.train.max_steps
    epochs = changes["epochs"][0] if "epochs" in changes else cfg.train.epochs
    return max_steps if max_steps is not None else epochs * steps_per_epoch


def saved_step(run_dir: Path) -> int | None:
    """The step of the run's last save (from its model's metadata, without loading the weights), or None."""
    from safetensors import SafetensorError, safe_open
    try:
        with safe_open(str(run_dir / "model.safetensors"), framework="pt") as f:
            step = json.loads((f.metadata() or {}).get("steps", "null"))
    except (OSError, SafetensorError, ValueError):
        return None
    return step if isinstance(step, int) else None


@contextlib.contextmanager
def lock(run_dir: Path):
    """Hold RUN/.lock (an advisory flock, released when the process ends, even killed) while training; ValueError
    when another process holds it. Only the main process of a torchrun job locks."""
    if os.environ.get("RANK", "0") != "0":
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            raise ValueError(f"{run_dir} is in use by a training process ({holder}); wait for it to finish or stop "
                             "it, or train under another --name") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
