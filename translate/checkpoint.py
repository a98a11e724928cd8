"""Resume state (atomic, weights-only loadable) and the exported model artifact (one self-describing
.safetensors file: both generators' weights, with the JSON config and domain names in its metadata)."""
from __future__ import annotations

import io
import json
import os
import pickle
import re
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from safetensors import safe_open

ARTIFACT_FORMAT = "translate-model/1"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over `path`: readers see the old
    file or the new one, never a half-written one. On failure the old file is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save_state(path: str | Path, state: dict) -> None:
    """Save a resume state (plain dicts of tensors and primitives) atomically."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write(path, buffer.getvalue())


STATE_KEYS = ("step", "nets", "ema", "optim", "sched", "pools", "rng", "bad_files", "monitor")


class StateError(ValueError):
    """A resume state that is unreadable, incomplete, or would run code when unpickled."""


def load_state(path: str | Path) -> dict:
    """Load a resume state with weights-only unpickling: a file that would run code is refused, never run; an
    unreadable or incomplete one is a StateError naming the file."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        reason = (f"refused: it holds Python objects that would run code when loaded ({found.group(1)})" if found
                  else "not a readable resume state (corrupt or truncated)")
        raise StateError(f"{path}: {reason}") from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise StateError(f"{path}: not a readable resume state ({str(exc).splitlines()[0]})") from None
    missing = [key for key in STATE_KEYS if key not in state] if isinstance(state, dict) else list(STATE_KEYS)
    if missing:
        raise StateError(f"{path}: an incomplete resume state (missing {', '.join(missing)})")
    return state


class SaveError(RuntimeError):
    """A checkpoint could not be written (disk full, folder not writable); the previous one is intact."""


class ArtifactError(ValueError):
    """A model file that is missing, truncated or not a translate model."""


def export_model(path: str | Path, generators: dict[str, torch.nn.Module], metadata: dict) -> None:
    """Write generators (name -> module) and JSON-able metadata as one safetensors file, atomically."""
    write_model(path, {name: net.state_dict() for name, net in generators.items()}, metadata)


def write_model(path: str | Path, states: dict[str, dict[str, torch.Tensor]], metadata: dict) -> None:
    """Write state dicts (generator name -> state dict) and JSON-able metadata as one safetensors file."""
    tensors = {f"{name}.{key}": value.detach().cpu().contiguous()
               for name, state in states.items() for key, value in state.items()}
    meta = {"format": ARTIFACT_FORMAT, **{k: json.dumps(v) for k, v in metadata.items()}}
    atomic_write(path, save(tensors, metadata=meta))


def read_model(path: str | Path) -> tuple[dict[str, dict[str, torch.Tensor]], dict]:
    """(generator name -> state dict, metadata) from an artifact; a clear ArtifactError for a bad file."""
    path = Path(path)
    if path.is_dir():  # a run folder
        path = path / "model.safetensors"
    if not path.is_file():
        raise ArtifactError(f"{path}: no such model file")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: not a readable safetensors model ({exc})") from None
    if raw.get("format") != ARTIFACT_FORMAT:
        raise ArtifactError(f"{path}: not a translate model (metadata format is {raw.get('format')!r})")
    try:
        meta = {k: json.loads(v) for k, v in raw.items() if k != "format"}
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path}: its metadata is not valid JSON ({exc})") from None
    nets: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        name, _, param = key.partition(".")
        nets.setdefault(name, {})[param] = value
    return nets, meta


def kept_model_path(run_dir: str | Path, step: int) -> Path:
    """Where `--keep-every` keeps the model exported at `step`: RUN/models/step_NNNNNNN.safetensors."""
    return Path(run_dir) / "models" / f"step_{step:07d}.safetensors"


def model_file(run_or_model: str | Path, step: int | None = None) -> Path:
    """The model file a user means: a .safetensors file as given, a run folder's model.safetensors, or with
    `step` the model that run kept at that step. FileNotFoundError names what is there instead."""
    path = Path(run_or_model)
    if not path.is_dir():
        if step is not None:
            raise FileNotFoundError(f"--step {step} needs a run folder, not the file {path}")
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such model file or run folder")
        return path
    if step is None:
        if not (path / "model.safetensors").is_file():
            raise FileNotFoundError(f"{path}: no model.safetensors in this folder (has the run saved yet?)")
        return path / "model.safetensors"
    kept = kept_model_path(path, step)
    if not kept.is_file():
        steps = sorted(int(m.group(1)) for f in (path / "models").glob("step_*.safetensors")
                       if (m := re.fullmatch(r"step_(\d+)\.safetensors", f.name)))
        have = (f"kept steps: {', '.join(map(str, steps))}" if steps else
                "it kept none (train with --keep-every N to keep models along the way)")
        raise FileNotFoundError(f"{kept}: no model kept at step {step}; {have}")
    return kept
