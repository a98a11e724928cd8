"""Training from the app: the user's data (uploads, or folders under an allowed root), one `translate train`
subprocess at a time, and what its run folder says (progress, samples, losses, findings).

Nothing here imports the trainer: a run is `python -m translate train ...` in its own process, writing the same
run folder as the CLI, so the app resumes CLI runs and the CLI resumes app runs. The app's own files live in
RUNS_DIR/.app/: `uploads/` (staged data), `logs/NAME.log` (the process's output) and `NAME.json` (the run's
task, for the model tabs).
"""
from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from .data import IMAGE_EXTENSIONS
from .dataset_tools import _problem as image_problem
from .recipes import recipe_config
from .run_folder import holds_a_run

APP_DIR = ".app"
MAX_UPLOAD_FILES = 5_000  # images per domain, after unzipping
MAX_UPLOAD_BYTES = 500 * 1024**2  # per domain, after unzipping
MAX_FOLDERS = 500  # folders listed under the data root
STOP_WAIT_S = 60  # a stop request waits this long for the step to end and the state to be saved, then kills
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class TrainingError(ValueError):
    """A user-facing problem: bad data or settings, the quota, or a training already running."""


# --- data -----------------------------------------------------------------------------------------------------------
@dataclass
class DomainData:
    """One domain's folder, its usable images and the files skipped with their reasons."""
    folder: Path
    images: list[Path] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    @classmethod
    def inspect(cls, folder: Path, root: Path | None = None) -> "DomainData":
        """Check every file under `folder` the way `translate data inspect` does (a full decode). With `root`,
        files that resolve outside it (symlinks) are skipped, never read."""
        data = cls(folder)
        files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
        for path in files:
            name = str(path.relative_to(folder))
            if root is not None and not path.resolve().is_relative_to(root):
                data.skipped[name] = "points outside the data root; not read"
            elif path.suffix.lower() not in IMAGE_EXTENSIONS:
                data.skipped[name] = f"not an image file type ({path.suffix or 'no extension'})"
            elif reason := image_problem(path):
                data.skipped[name] = reason
            else:
                data.images.append(path)
        return data

    def summary(self, label: str) -> str:
        """Markdown: the count and each skipped file with its reason."""
        lines = [f"**{label}**: {len(self.images)} image(s)"
                 + (f", {len(self.skipped)} skipped" if self.skipped else "")]
        lines += [f"- skipped `{name}`: {reason}" for name, reason in list(self.skipped.items())[:20]]
        if len(self.skipped) > 20:
            lines.append(f"- ... and {len(self.skipped) - 20} more")
        return "\n".join(lines)


def thumbnail_strip(images: list[Path], n: int = 8, size: int = 64) -> Image.Image | None:
    """The first n images side by side, each fitted into a size x size cell on white."""
    if not images:
        return None
    strip = Image.new("RGB", (n * (size + 4) - 4, size), "white")
    for i, path in enumerate(images[:n]):
        with Image.open(path) as img:
            thumb = img.convert("RGB")
        thumb.thumbnail((size, size))
        strip.paste(thumb, (i * (size + 4) + (size - thumb.width) // 2, (size - thumb.height) // 2))
    return strip


class DataRoot:
    """The folders a user may train on: those under `root` that hold images. Nothing outside it is listed or read."""

    def __init__(self, root: str | Path | None):
        self.root = Path(root).resolve() if root else None

    def folders(self) -> list[str]:
        """Subfolders (relative, sorted) holding at least one image file directly; hidden folders skipped."""
        if self.root is None or not self.root.is_dir():
            return []
        found = []
        for parent, dirs, files in os.walk(self.root):  # does not follow symlinked folders
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            if any(Path(f).suffix.lower() in IMAGE_EXTENSIONS for f in files) and Path(parent) != self.root:
                found.append(str(Path(parent).relative_to(self.root)))
                if len(found) == MAX_FOLDERS:
                    break
        return sorted(found)

    def resolve(self, relative: str | None) -> Path:
        """The folder for a listed name; anything else (an absolute path, '..', a symlink out) is refused."""
        if self.root is None:
            raise TrainingError("This app was started without --data-root: upload the images instead.")
        if not relative:
            raise TrainingError("Choose a folder for each domain.")
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root) or relative not in self.folders():
            raise TrainingError(f"{relative!r} is not one of the folders under the data root.")
        return path


def stage_uploads(paths: list[str], dest: Path) -> dict[str, str]:
    """Copy uploaded images, and the images inside uploaded zip files, flat into `dest` (replacing what was there).
    Returns {name: reason} for what was left out. Limits: MAX_UPLOAD_FILES images and MAX_UPLOAD_BYTES per domain,
    checked on the zip directory before anything is extracted."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    left_out: dict[str, str] = {}
    count, total = 0, 0

    def take(name: str, size: int) -> Path | None:
        nonlocal count, total
        if Path(name).suffix.lower() not in IMAGE_EXTENSIONS:
            left_out[name] = f"not an image file type ({Path(name).suffix or 'no extension'})"
            return None
        count, total = count + 1, total + size
        if count > MAX_UPLOAD_FILES or total > MAX_UPLOAD_BYTES:
            raise TrainingError(f"Too much data for one domain: the limit is {MAX_UPLOAD_FILES:,} images and "
                                f"{MAX_UPLOAD_BYTES // 1024**2} MB. Upload fewer images, or ask for a --data-root "
                                "folder on the server.")
        stem = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(name).with_suffix("").as_posix()).strip("-") or "image"
        return dest / f"{count:05d}-{stem[-80:]}{Path(name).suffix.lower()}"

    for upload in paths or []:
        upload = Path(upload)
        if upload.suffix.lower() != ".zip":
            if target := take(upload.name, upload.stat().st_size):
                shutil.copyfile(upload, target)
            continue
        try:
            with zipfile.ZipFile(upload) as archive:
                members = [m for m in archive.infolist() if not m.is_dir() and "__MACOSX" not in m.filename
                           and not Path(m.filename).name.startswith(".")]
                for member in members:
                    if target := take(f"{upload.name}/{member.filename}", member.file_size):
                        with archive.open(member) as src, target.open("wb") as out:
                            shutil.copyfileobj(src, out, 1 << 20)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, OSError, EOFError) as exc:
            left_out[upload.name] = f"not a readable zip file ({exc})"
    return left_out


# --- settings -> `translate train` flags -----------------------------------------------------------------------------
def train_flags(data_a: Path, data_b: Path, name: str, runs_dir: Path, recipe: str, size: int, minutes: float,
                advanced: dict) -> list[str]:
    """The `translate train` arguments for a new run. `advanced` maps flag names (without --) to values;
    None or "" leaves the recipe default. A positive "max-steps" replaces the time budget; "sample-every" also
    sets the save interval (and logs at least every 10 steps), unless they are given."""
    if not NAME_RE.fullmatch(name or ""):
        raise TrainingError(f"Run name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter "
                            "or digit.")
    if holds_a_run(runs_dir / name):
        raise TrainingError(f"A run named {name!r} exists already: pick it under Runs and press Resume, or choose "
                            "another name.")
    size = int(size)
    if size < 16 or size % 4:
        raise TrainingError(f"Image size {size}: use a multiple of 4, at least 16.")
    flags = ["--data-a", str(data_a), "--data-b", str(data_b), "--name", name, "--runs-dir", str(runs_dir),
             "--model", recipe, "--crop-size", str(size)]
    if recipe_config(recipe).data.load_size:  # a recipe that zooms before cropping: by the reference's 9/8 here
        flags += ["--load-size", str(size + size // 8 // 4 * 4)]
    values = {flag: flag_value(flag, value) for flag, value in advanced.items()}
    if values.get("sample-every") and "save-every" not in values:  # save with each sample grid; log more often
        values["save-every"] = values["sample-every"]
        values.setdefault("log-every", str(min(10, int(values["sample-every"]))))
    steps = values.pop("max-steps", None)
    if steps:
        flags += ["--max-steps", steps]
    elif minutes and float(minutes) > 0:
        flags += ["--minutes", f"{float(minutes):g}"]
    else:
        raise TrainingError("Give a time budget in minutes (or a number of steps under Advanced).")
    for flag, value in values.items():
        if value is not None:
            flags += [f"--{flag}", value]
    return flags


INTEGER_FLAGS = {"ngf", "n-blocks", "ndf", "n-layers", "batch-size", "seed", "max-steps", "sample-every",
                 "save-every", "log-every", "workers"}


def flag_value(flag: str, value) -> str | None:
    """A setting as the text of its flag: None when left empty; a clear error for anything not a number >= 0
    (or not a whole number where the flag takes one)."""
    if value is None or str(value).strip() == "":
        return None
    try:
        number = float(str(value).strip())
    except ValueError:
        raise TrainingError(f"--{flag}: {value!r} is not a number.") from None
    if not 0 <= number < 1e12 or (flag in INTEGER_FLAGS and not number.is_integer()):
        kind = "a whole number" if flag in INTEGER_FLAGS else "a number"
        raise TrainingError(f"--{flag}: {value!r} is not {kind} of 0 or more.")
    return str(int(number)) if flag in INTEGER_FLAGS else f"{number:g}"


# --- the training process ------------------------------------------------------------------------------------------
def dir_bytes(folder: Path) -> int:
    total = 0
    for parent, _, files in os.walk(folder):
        for f in files:
            try:
                total += os.lstat(os.path.join(parent, f)).st_size
            except OSError:  # removed while we walked
                pass
    return total


@dataclass
class Job:
    """One training process and what the app knows about it."""
    name: str
    run_dir: Path
    log: Path
    process: subprocess.Popen
    started: float
    stop_requested: str | None = None  # why the app asked it to stop (the user, the disk quota)

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def outcome(self) -> str:
        """How it ended, in words, with what to do next."""
        code = self.process.returncode
        resumable = (self.run_dir / "state" / "last.pt").is_file()
        again = " Press **Resume** to continue from its last saved step." if resumable else ""
        if code == 0:
            return f"**{self.name}** finished."
        if self.stop_requested and code in (130, -signal.SIGTERM, -signal.SIGKILL):
            return f"**{self.name}** stopped ({self.stop_requested}).{again}"
        if code is not None and code < 0:
            return (f"**{self.name}**: the training process was killed ({signal.Signals(-code).name}), "
                    f"outside the app.{again}")
        tail = [line for line in self.log.read_text(errors="replace").splitlines() if line.strip()][-3:] \
            if self.log.is_file() else []
        detail = "\n".join(f"    {line[-300:]}" for line in tail)
        return f"**{self.name}** failed (exit status {code}).{again}\n\n{detail}"


class Trainings:
    """At most one `translate train` process per app; start, stop, resume and status for every client.

    The status is read from the process itself each time (never a stored "training" flag), so a crashed or
    killed process shows as ended at the next refresh. On app exit a running training is stopped and saved.
    """

    def __init__(self, runs_dir: str | Path, quota_bytes: int, python: str = sys.executable):
        self.runs_dir = Path(runs_dir).resolve()
        self.app_dir = self.runs_dir / APP_DIR
        self.quota_bytes = quota_bytes
        self.python = python
        self.job: Job | None = None
        self._lock = threading.Lock()
        self._quota_checked = 0.0
        atexit.register(self.shutdown)

    # runs in the folder
    def runs(self) -> list[str]:
        """Run folders (holding config.json or model.safetensors), newest first."""
        if not self.runs_dir.is_dir():
            return []
        found = [p for p in self.runs_dir.iterdir() if not p.name.startswith(".") and p.is_dir()
                 and ((p / "config.json").is_file() or (p / "model.safetensors").is_file())]
        return [p.name for p in sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)]

    def task(self, name: str) -> str | None:
        """The task the run was started for in the app ("style", "expression", "other"), if any."""
        try:
            return json.loads((self.app_dir / f"{name}.json").read_text()).get("task")
        except (OSError, ValueError, AttributeError):
            return None

    def staging(self, token: str, domain: str) -> Path:
        """Where one client's uploads for one domain are staged."""
        return self.app_dir / "uploads" / re.sub(r"[^a-f0-9]", "", token)[:32] / domain

    @staticmethod
    def new_token() -> str:
        return uuid.uuid4().hex

    def used_bytes(self) -> int:
        return dir_bytes(self.runs_dir) if self.runs_dir.is_dir() else 0

    def check_quota(self) -> None:
        used = self.used_bytes()
        if used >= self.quota_bytes:
            raise TrainingError(f"The runs folder uses {used / 1024**3:.2f} GB of its {self.quota_bytes / 1024**3:.2f} "
                                f"GB quota. Delete old runs in {self.runs_dir} first.")

    # the process
    def start(self, name: str, flags: list[str], task: str | None = None, resume: bool = False) -> Job:
        """Start `translate train FLAGS` (with --resume: continue run `name`). Refused while one is running."""
        with self._lock:
            if self.job is not None and self.job.running:
                raise TrainingError(f"A training is already running in this app: **{self.job.name}** (started "
                                    f"{time.strftime('%H:%M', time.localtime(self.job.started))}). One training "
                                    "runs at a time: wait for it to finish, or watch it under Runs.")
            if not NAME_RE.fullmatch(name):
                raise TrainingError(f"Run name {name!r}: the app trains runs named with letters, digits, '.', '_' "
                                    "and '-' only.")
            self.check_quota()
            run_dir = self.runs_dir / name
            if resume:
                if not (run_dir / "state" / "last.pt").is_file():
                    raise TrainingError(f"Run {name!r} has no saved state to resume from (it saves at its "
                                        "first checkpoint).")
                flags = ["--resume", "--name", name, "--runs-dir", str(self.runs_dir), *flags]
            (self.app_dir / "logs").mkdir(parents=True, exist_ok=True)
            if task:
                (self.app_dir / f"{name}.json").write_text(json.dumps({"task": task}) + "\n")
            log = self.app_dir / "logs" / f"{name}.log"
            env = {**os.environ, "TQDM_DISABLE": "1", "PYTHONUNBUFFERED": "1"}
            with log.open("a") as out:
                out.write(f"\n$ translate train {' '.join(flags)}\n")
                out.flush()
                process = subprocess.Popen([self.python, "-m", "translate", "train", *flags], stdout=out,
                                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                           cwd=Path(__file__).resolve().parents[1])
            self.job = Job(name, run_dir, log, process, time.time())
            return self.job

    def stop(self, reason: str = "stopped by a user") -> str:
        """Ask the running training to finish its step, save and exit (SIGTERM); killed after STOP_WAIT_S."""
        with self._lock:
            job = self.job
            if job is None or not job.running:
                return "No training is running."
            if job.stop_requested:
                return f"Stopping **{job.name}** ({job.stop_requested})..."
            job.stop_requested = reason
            job.process.send_signal(signal.SIGTERM)
        threading.Thread(target=self._reap, args=(job,), daemon=True).start()
        return f"Stopping **{job.name}**: it saves its state at the end of the current step."

    @staticmethod
    def _reap(job: Job) -> None:
        try:
            job.process.wait(STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            job.process.kill()
            job.process.wait()

    def poll(self) -> Job | None:
        """The current (or last) job; a running one is stopped when the runs folder is over its quota
        (checked every few seconds)."""
        job = self.job
        if job is not None and job.running and job.stop_requested is None and time.time() - self._quota_checked > 5:
            self._quota_checked = time.time()
            if self.used_bytes() >= self.quota_bytes:
                self.stop(f"the runs folder reached its {self.quota_bytes / 1024**3:.2f} GB disk quota")
        return job

    def shutdown(self) -> None:
        if self.job is not None and self.job.running:
            self.stop("the app was shut down")
            self._reap(self.job)


# --- reading a run folder --------------------------------------------------------------------------------------------
def read_jsonl(path: Path) -> list[dict]:
    rows = []
    if path.is_file():
        for line in path.read_text(errors="replace").splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:  # a line being written
                continue
    return rows


def latest_sample(run_dir: Path) -> Path | None:
    """The newest sample grid that is not being written right now."""
    samples = sorted((run_dir / "samples").glob("step_*.png"))
    for path in reversed(samples):
        if time.time() - path.stat().st_mtime > 0.5 or path is samples[0]:
            return path
    return None


def planned_steps(log: Path, config: Path) -> int | None:
    """The run's total steps: --max-steps in its config.json, else what `translate train` announced in its output
    (after the time-budget warm-up, or from --epochs)."""
    try:
        steps = json.loads(config.read_text())["train"]["max_steps"]
        if isinstance(steps, int) and steps > 0:
            return steps
    except (OSError, ValueError, KeyError, TypeError):
        pass
    if not log.is_file():
        return None
    found = re.findall(r"(?:\bsteps: |the run ends at step )(\d[\d,]*)", log.read_text(errors="replace"))
    return int(found[-1].replace(",", "")) if found else None


def progress_text(metrics: list[dict], total: int | None) -> str:
    """'step 120 / 400 (30 %) · 3.1 images/s · about 2 min 10 s left' from the logged metrics."""
    if not metrics:
        return "Starting: loading the data and building the nets..."
    last = metrics[-1]
    step = int(last["step"])
    parts = [f"step {step:,}" + (f" / {total:,} ({100 * step / total:.0f} %)" if total else "")]
    if "images_per_s" in last:
        parts.append(f"{last['images_per_s']:.3g} images/s")
    if total and step < total and last.get("step_time_s"):
        left = (total - step) * last["step_time_s"]
        parts.append(f"about {int(left // 60)} min {int(left % 60)} s left" if left >= 60 else
                     f"about {int(left)} s left")
    return " · ".join(parts)


LOSS_KEYS = ("g_adv", "g_cycle", "g_identity", "d_a", "d_b")


def loss_rows(metrics: list[dict]) -> dict[str, list]:
    """Long-format columns (step, loss, value) of the main losses, for a line plot."""
    columns: dict[str, list] = {"step": [], "loss": [], "value": []}
    for row in metrics:
        for key in LOSS_KEYS:
            if key in row and isinstance(row[key], (int, float)):
                columns["step"].append(row["step"])
                columns["loss"].append(key)
                columns["value"].append(row[key])
    return columns


def findings_text(findings: list[dict], active: list[str] | None) -> str:
    """Markdown: each finding still active (or all, when nothing says which) with its evidence and remedies."""
    latest = {f["name"]: f for f in findings if "name" in f}
    shown = [latest[n] for n in latest if active is None or n in active]
    if not shown:
        return "**Health:** no problem seen so far." if findings or active is not None else ""
    lines = ["**Health findings**"]
    for f in shown:
        lines.append(f"- **{f['name']}** since step {f.get('since_step', '?')}: {f.get('evidence', '')}")
        lines += [f"    - try `{r}`" for r in f.get("remedies", [])]
    return "\n".join(lines)


SERVED_SUFFIXES = {".html": "text/html", ".png": "image/png"}


def run_files_route(runs_dir: Path):
    """A Starlette route serving `/runs/NAME/FILE` (report.html and its PNGs) from the runs folder: only .html and
    .png files inside a run folder, never the app's own folder, nothing outside."""
    from starlette.responses import FileResponse, PlainTextResponse
    from starlette.routing import Route
    runs_dir = Path(runs_dir).resolve()

    async def serve(request):
        name, rel = request.path_params["name"], request.path_params["path"]
        path = (runs_dir / name / rel).resolve()
        if (not NAME_RE.fullmatch(name) or not path.is_relative_to(runs_dir / name) or not path.is_file()
                or path.suffix.lower() not in SERVED_SUFFIXES):
            return PlainTextResponse("not found", status_code=404)
        return FileResponse(path, media_type=SERVED_SUFFIXES[path.suffix.lower()])

    return Route("/runs/{name}/{path:path}", serve)
