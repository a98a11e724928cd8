"""Gradio demo: style transfer and expression editing with the models in a checkpoints folder.

    python app.py                                   # http://127.0.0.1:7860, models from checkpoints/
    python app.py --checkpoints runs/my-run --host 0.0.0.0 --port 8080

Every `*.safetensors` model in the folder is loaded once at start. A model's tab comes from its metadata
("task": "style" | "expression"), else from its file name (containing "expression" or not). Nothing is
downloaded; uploads are limited in bytes and pixels; images are translated at the model's training size (a
checkbox turns that off) and never larger than --max-side.
Requests wait in a bounded queue and are served CONCURRENCY at a time (see docs/reliability.md).
"""
from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import signal
import sys
import threading
import time
from functools import partial
from pathlib import Path

import translate  # noqa: F401  (first: sets the no-network environment before gradio is imported)
import gradio as gr
import pandas as pd
from PIL import Image

from translate.app_training import (DataRoot, DomainData, Trainings, TrainingError, findings_text, latest_sample,
                                   loss_rows, planned_steps, progress_text, read_jsonl, run_files_route,
                                   stage_uploads, thumbnail_strip, train_flags)
from translate.checkpoint import ArtifactError
from translate.data import DataError, IMAGE_EXTENSIONS, check_image, load_rgb
from translate.runtime import add_runtime_flags
from translate.inference import DIRECTIONS, Translator

ROOT = Path(__file__).resolve().parent
TASKS = {"style": ("Style transfer", ROOT / "datasets" / "emoji-style"),
         "expression": ("Expression editing", ROOT / "datasets" / "emoji-expression")}
MAX_FILE_SIZE = "20mb"
MAX_FILE_BYTES = 20 * 1024 * 1024  # the same limit, for uploads sent inline as base64 data: URLs
DELETE_CACHE = (600, 3600)  # every 10 minutes, delete uploads and results older than an hour
MAX_PIXELS = 40_000_000
CONCURRENCY = 2  # requests worked on at once (each model still runs one at a time); the rest wait in the queue
QUEUE_SIZE = 64  # waiting requests beyond this are refused at once ("queue is full") instead of piling up
N_EXAMPLES = 4  # per domain
CSS = ".translate-image img { width: 100%; height: 100%; object-fit: contain; }"  # show small images enlarged


class ModelStore:
    """The models of one folder, loaded once. Only regular `*.safetensors` files that resolve inside the folder
    are served (a symlink out of it is ignored), and a model is chosen by its file name, never by a path."""

    def __init__(self, folder: str | Path, device: str = "auto", precision: str = "auto", backend: str = "auto"):
        self.folder = Path(folder).resolve()
        self.models: dict[str, Translator] = {}
        self.problems: dict[str, str] = {}
        paths = sorted(self.folder.glob("*.safetensors")) if self.folder.is_dir() else []
        for path in paths:
            try:
                inside = path.resolve().parent == self.folder and path.resolve().is_file()
            except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop
                self.problems[path.name] = f"cannot be opened ({exc}); ignored"
                continue
            if not inside:
                self.problems[path.name] = "points outside the checkpoints folder; ignored"
                continue
            try:
                translator = Translator.from_file(path, device, precision, backend)
                translator.require_rgb(path)
                self.models[path.name] = translator
            except (ArtifactError, OSError) as exc:
                self.problems[path.name] = str(exc)
        self.options = (device, precision, backend)
        self.trainings: Trainings | None = None
        self.tasks: dict[str, str] = {}  # run models: the task the run was started for in the app
        self._loaded: dict[str, int] = {}  # run models: file mtime when loaded
        self._refresh_lock = threading.Lock()

    def watch_runs(self, trainings: Trainings) -> None:
        """Also serve the model of every run in trainings.runs_dir, named "runs/NAME", reloaded when it changes."""
        self.trainings = trainings
        self.refresh()

    def refresh(self) -> None:
        """Load run models that are new or were saved again since the last call (cheap when none was)."""
        if self.trainings is None:
            return
        with self._refresh_lock:
            for run in self.trainings.runs():
                path, key = self.trainings.runs_dir / run / "model.safetensors", f"runs/{run}"
                try:
                    mtime = path.stat().st_mtime_ns
                except OSError:
                    continue
                if self._loaded.get(key) == mtime:
                    continue
                self._loaded[key] = mtime
                try:
                    translator = Translator.from_file(path, *self.options)
                    translator.require_rgb(path)
                except ArtifactError as exc:
                    self.problems[key] = str(exc)
                    continue
                self.models[key], self.tasks[key] = translator, self.trainings.task(run) or ""
                self.problems.pop(key, None)

    @staticmethod
    def label(name: str) -> str:
        return f"{name.removeprefix('runs/')} (trained here)" if name.startswith("runs/") else Path(name).stem

    def get(self, name: str) -> Translator:
        if name not in self.models:
            raise gr.Error(f"Unknown model {name!r}: choose one of {', '.join(self.models) or 'none'}.")
        return self.models[name]

    def task(self, name: str) -> str:
        task = self.models[name].meta.get("task") or self.tasks.get(name)
        return task if task in TASKS else "expression" if "expression" in name.lower() else "style"

    def names(self, task: str) -> list[str]:
        return [name for name in self.models if self.task(name) == task]


def pass_path_unopened(image: gr.Image) -> gr.Image:
    """Make an image input hand the function the uploaded file's path unopened. gr.Image opens every upload with
    Pillow first, and a file Pillow cannot identify (empty, text, a huge bomb) then fails inside gradio with an
    internal message; open_upload names the file and the problem instead. Gradio has already checked that the path
    is one of its uploads. (An instance override: a gr.Image subclass would make gradio write a .pyi file.)"""
    opened = image.preprocess

    def preprocess(payload):
        if payload is not None and payload.url and payload.url.startswith("data:"):
            return save_data_url(payload.url, image)
        return str(payload.path) if payload is not None and payload.path else opened(payload)

    image.preprocess = preprocess
    return image


def save_data_url(url: str, component: gr.Image) -> str:
    """An image sent inline as a base64 `data:` URL (gradio accepts one in FileData.url, past the upload route's size
    limit): refused over MAX_FILE_BYTES before decoding the base64, else written undecoded into the component's
    cache (cleaned by DELETE_CACHE) for open_upload to check its pixel count before decoding the image."""
    header, _, encoded = url.partition(",")
    if len(encoded) * 3 // 4 > MAX_FILE_BYTES:
        raise gr.Error(f"The image is over the {MAX_FILE_SIZE} upload limit.")
    try:
        data = base64.b64decode(encoded, validate=True)
    except binascii.Error:
        raise gr.Error("The image data URL is not valid base64.") from None
    folder = Path(component.GRADIO_CACHE) / hashlib.sha256(data).hexdigest()[:20]
    folder.mkdir(parents=True, exist_ok=True)
    kind = header.removeprefix("data:").split(";")[0].rpartition("/")[2][:8]  # "png" of data:image/png;base64
    path = folder / (f"upload.{kind}" if kind.isalnum() else "upload")
    path.write_bytes(data)
    component.temp_files.add(str(path))
    return str(path)


def model_card(translator: Translator) -> str:
    """Markdown: recipe, domains, training steps and nets of a model."""
    meta, m = translator.meta, translator.meta["model"]
    net = (f"ResNet-{m['n_blocks']}" if m["generator"] == "resnet" else f"{m['generator']} depth {m['unet_depth']}")
    steps = meta.get("steps")
    a, b = translator.domains
    lines = [f"**Recipe** {meta.get('recipe', '?')} · **domains** {a} ↔ {b}",
             f"**Steps** {steps:,}" if isinstance(steps, int) else "**Steps** unknown",
             f"**Generator** {net}, ngf {m['ngf']}, {m['upsample']} · trained at {meta.get('image_size', '?')} px"]
    if meta.get("source"):
        lines.append(f"**Source** {meta['source']}")
    return "  \n".join(lines)


def direction_choices(translator: Translator) -> list[tuple[str, str]]:
    a, b = translator.domains
    return [(f"{a} → {b}", "a2b"), (f"{b} → {a}", "b2a")]


def open_upload(path: str | None, max_side: int, side: int | None = None) -> tuple[Image.Image, str]:
    """The uploaded image as RGB (grayscale, palette, RGBA on white, 16-bit, EXIF rotation handled), scaled so its
    shorter side is `side` (the model's training size) if given, and downscaled to max_side; and a note on what was
    done. gr.Error with a clear message for anything unusable."""
    if not path:
        raise gr.Error("Upload an image first.")
    name = Path(path).name
    try:
        with Image.open(path) as probe:
            width, height = probe.size
    except Image.DecompressionBombError:
        raise gr.Error(f"{name}: far too many pixels (a possible decompression bomb).") from None
    except (OSError, SyntaxError, ValueError):
        raise gr.Error(f"{name}: {check_image(path) or 'not an image this app can read'}.") from None
    if width * height > MAX_PIXELS:
        raise gr.Error(f"{name} is {width}x{height} = {width * height / 1e6:.1f} megapixels; this app takes images "
                       f"up to {MAX_PIXELS / 1e6:.1f} megapixels. Downscale it first.")
    try:
        image = Image.fromarray(load_rgb(path))
    except DataError as exc:
        raise gr.Error(f"{name}: {str(exc).removeprefix(f'{path}: ')}") from None
    scale = min(side / min(image.size) if side else 1.0, max_side / max(image.size))
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    if size == image.size:
        return image, f"{image.width}x{image.height} px"
    return image.resize(size, Image.Resampling.LANCZOS), f"{size[0]}x{size[1]} px (scaled from {width}x{height})"


def translate_image(store: ModelStore, name: str, direction: str, path: str | None, strength: float,
                    show_cycle: bool, at_model_size: bool = True, smooth: bool = False, max_side: int = 512):
    """(translated image blended with the input by `strength`, cycle reconstruction or None, timing note).
    at_model_size: translate at the scale the model learned (shorter side = its training size), else at the
    upload's own size; either way no larger than max_side. smooth: smooth the translation where flat."""
    translator = store.get(name)
    if direction not in DIRECTIONS:
        raise gr.Error(f"Unknown direction {direction!r}.")
    side = translator.meta.get("image_size") if at_model_size else None
    image, size_note = open_upload(path, max_side, side if isinstance(side, int) and side > 0 else None)
    start = time.perf_counter()
    translated = translator(image, direction=direction, smooth=smooth)
    cycle = translator(translated, direction="b2a" if direction == "a2b" else "a2b") if show_cycle else None
    elapsed = time.perf_counter() - start
    strength = min(max(float(strength), 0.0), 1.0)
    output = Image.blend(image, translated, strength) if strength < 1 else translated
    passes = "2 passes" if show_cycle else "1 pass"
    return output, cycle, (f"{elapsed * 1000:.0f} ms on {translator.device.type}, {translator.precision} "
                           f"({passes}) · {size_note}")


def example_files(task: str) -> list[list[str]]:
    """A few images of each domain from the task's test split, if the dataset is present."""
    root = TASKS[task][1]
    files = []
    for split in ("testA", "testB"):
        folder = root / split
        if folder.is_dir():
            images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
            files += images[::max(1, len(images) // N_EXAMPLES)][:N_EXAMPLES]  # spread over the split
    return [[str(p)] for p in files]


def _task_tab(store: ModelStore, task: str, max_side: int) -> tuple[gr.Dropdown, gr.Markdown, gr.Column]:
    """The tab's UI; returns (model list, no-model note, body), which refresh_task updates when models appear."""
    names = store.names(task)
    empty = gr.Markdown(f"No {TASKS[task][0].lower()} model in `{store.folder}`. Train one (in the Train tab, or "
                        "`translate train ...` and copy its `model.safetensors` there), or import a reference "
                        "CycleGAN (`translate import-cyclegan`).", visible=not names)
    first = store.get(names[0]) if names else None
    body = gr.Column(visible=bool(names))
    with body, gr.Row():
        with gr.Column(scale=1, min_width=280):
            model = gr.Dropdown([(store.label(n), n) for n in names], value=names[0] if names else None,
                                label="Model", elem_id=f"{task}-model")
            card = gr.Markdown(model_card(first) if first else "")
            direction = gr.Radio(direction_choices(first) if first else [("A → B", "a2b"), ("B → A", "b2a")],
                                 value="a2b", label="Direction")
            strength = gr.Slider(0, 1, value=1, step=0.05, label="Strength",
                                 info="0 = the input, 1 = the full translation")
            at_model_size = gr.Checkbox(True, label="At the model's training size",
                                        info="the scale it learned; off: at the image's own size")
            smooth = gr.Checkbox(False, label="Smooth flat areas",
                                 info="flattens blotches, keeps outlines: for emoji and icons, not photos")
            show_cycle = gr.Checkbox(False, label="Show cycle reconstruction")
        with gr.Column(scale=3):
            with gr.Row(equal_height=True):
                source = pass_path_unopened(gr.Image(
                    type="filepath", image_mode=None, sources=["upload", "clipboard"], label="Input", height=320,
                    elem_id=f"{task}-input", elem_classes="translate-image"))
                output = gr.Image(format="png", label="Translated", interactive=False, height=320,
                                  elem_id=f"{task}-output", elem_classes="translate-image")
                cycle = gr.Image(format="png", label="Cycle reconstruction", interactive=False, height=320,
                                 visible=False, elem_id=f"{task}-cycle", elem_classes="translate-image")
            button = gr.Button("Translate", variant="primary", elem_id=f"{task}-translate")
            timing = gr.Markdown(elem_id=f"{task}-timing")
    examples = example_files(task)
    if examples:
        with body:
            gr.Examples(examples, inputs=[source], label="Examples from the test split (A, then B)",
                        examples_per_page=2 * N_EXAMPLES)

    def on_model(name: str):
        translator = store.get(name)
        return model_card(translator), gr.Radio(choices=direction_choices(translator), value="a2b")

    model.change(on_model, model, [card, direction], api_name=False)
    show_cycle.change(lambda show: gr.Image(visible=show), show_cycle, cycle, api_name=False)
    button.click(lambda *args: translate_image(store, *args, max_side=max_side),
                 [model, direction, source, strength, show_cycle, at_model_size, smooth], [output, cycle, timing],
                 api_name=f"translate_{task}")
    return model, empty, body


def refresh_task(store: ModelStore, task: str, current: str | None):
    """The task's model list after loading newly saved run models; keeps the chosen model if it is still there."""
    store.refresh()
    names = store.names(task)
    value = current if current in names else (names[0] if names else None)
    return (gr.Dropdown(choices=[(store.label(n), n) for n in names], value=value), gr.Markdown(visible=not names),
            gr.Column(visible=bool(names)))


# --- the Train tab ---------------------------------------------------------------------------------------------------
TRAIN_TASKS = [("Style transfer", "style"), ("Expression editing", "expression"), ("Other", "other")]
RECIPES = [("Residual CycleGAN (default)", "residual-cyclegan"), ("CycleGAN", "cyclegan"), ("DiscoGAN", "discogan"),
           ("DualGAN", "dualgan"), ("CUT", "cut"), ("FastCUT", "fastcut")]  # labels of translate.recipes.RECIPES
# Advanced settings: (flag, label, default, info). The defaults are the shipped demo models' small nets, which train
# in minutes on a CPU; an empty field keeps the recipe's own default (the paper's nets: ngf 64, 9 blocks, ndf 64).
ADVANCED = [("ngf", "Generator width (--ngf)", 32, "filters in its first layer"),
            ("n-blocks", "Residual blocks (--n-blocks)", 6, "depth of the ResNet generator"),
            ("ndf", "Discriminator width (--ndf)", 32, None),
            ("batch-size", "Batch size", 4, "images per domain per step"),
            ("lr-g", "Generator learning rate (--lr-g)", None, None),
            ("lr-d", "Discriminator learning rate (--lr-d)", None, None),
            ("ema", "EMA of generator weights (--ema)", 0.999, "0 = off"),
            ("seed", "Seed", 0, None),
            ("max-steps", "Steps (replaces the time budget)", None, "empty: set from the time budget"),
            ("sample-every", "Steps between sample grids and saves", 50, None)]


def load_domain(trainings: Trainings, data_root: DataRoot, source: str, token: str, domain: str,
                uploads: list[str] | None, folder: str | None):
    """Stage (uploads) or locate (a folder under the data root) one domain's images and check every file:
    (thumbnail strip, summary with the skipped files)."""
    try:
        if source == "upload":
            dest = trainings.staging(token, domain)
            left_out = stage_uploads(uploads or [], dest)  # none: the earlier uploads are removed
            if not uploads:
                return gr.Image(None, visible=False), ""
            data = DomainData.inspect(dest)
            data.skipped = {**left_out, **data.skipped}
        else:
            if not folder:
                return gr.Image(None, visible=False), ""
            data = DomainData.inspect(data_root.resolve(folder), data_root.root)
    except TrainingError as exc:
        return gr.Image(None, visible=False), f"**Domain {domain}**: {exc}"
    strip = thumbnail_strip(data.images)
    return gr.Image(strip, visible=strip is not None), data.summary(f"Domain {domain}")


def start_training(trainings: Trainings, data_root: DataRoot, source: str, token: str, folder_a: str | None,
                   folder_b: str | None, task: str, recipe: str, size: int, minutes: float, name: str, *advanced):
    """Start a new run from the tab's settings: (message, runs list showing the new run)."""
    try:
        if source == "upload":
            data_a, data_b = trainings.staging(token, "A"), trainings.staging(token, "B")
            for domain, folder in (("A", data_a), ("B", data_b)):
                if not folder.is_dir() or not any(folder.iterdir()):
                    raise TrainingError(f"Upload the images of domain {domain} first.")
        else:
            data_a, data_b = data_root.resolve(folder_a), data_root.resolve(folder_b)
        name = (name or "").strip() or f"{task}-{recipe}-{time.strftime('%Y%m%d-%H%M%S')}"
        values = dict(zip((flag for flag, *_ in ADVANCED), advanced))
        flags = train_flags(data_a, data_b, name, trainings.runs_dir, recipe, size, minutes, values)
        trainings.start(name, flags, task)
    except TrainingError as exc:
        return str(exc), gr.skip()
    return f"Started **{name}**.", gr.Dropdown(choices=[name, *trainings.runs()], value=name)


def resume_training(trainings: Trainings, run: str | None) -> str:
    if not run:
        return "Choose a run to resume under Runs."
    try:
        trainings.start(run, [], resume=True)
    except TrainingError as exc:
        return str(exc)
    return f"Resumed **{run}** from its last saved step."


def run_status(trainings: Trainings, run: str) -> tuple[str, bool]:
    """(status line of the run shown, whether it is training now)."""
    job = trainings.poll()
    if job is not None and job.name == run:
        if job.running:
            return (f"Stopping **{run}**..." if job.stop_requested else f"Training **{run}**."), True
        return job.outcome(), False
    busy = f" (**{job.name}** is training now.)" if job is not None and job.running else ""
    saved = (trainings.runs_dir / run / "state" / "last.pt").is_file()
    return f"Run **{run}**: {'saved; Resume continues it' if saved else 'no saved state'}.{busy}", False


def refresh_training(trainings: Trainings, store: ModelStore, run: str | None, shown: dict):
    """The live view of the run chosen under Runs (the training one by default). Outputs that did not change are
    skipped, so the page does not flicker: (runs list, status, progress, sample grid, losses, findings, links,
    shown)."""
    runs, job, metrics = trainings.runs(), trainings.poll(), []
    if job is not None and job.name not in runs:  # its folder appears once the process has started
        runs.insert(0, job.name)
    if run not in runs:
        run = job.name if job is not None else (runs[0] if runs else None)
    if run is None:
        values = {"runs": gr.Dropdown(choices=runs, value=None), "status": "No run yet: choose data and press "
                  "**Start training**.", "progress": "", "sample": None, "losses": None, "findings": "", "links": ""}
    else:
        run_dir = trainings.runs_dir / run
        status, training = run_status(trainings, run)
        metrics = read_jsonl(run_dir / "metrics.jsonl")
        total = planned_steps(trainings.app_dir / "logs" / f"{run}.log", run_dir / "config.json")
        if (run_dir / "model.safetensors").is_file():
            store.refresh()  # so the model tabs list it at once
        report = run_dir / "report.html"
        links = (f"[Open the training report](/runs/{run}/report.html) · the model: `{run_dir / 'model.safetensors'}`"
                 f" (in the {', '.join(TASKS[t][0] for t in TASKS if f'runs/{run}' in store.names(t))} tab)"
                 if report.is_file() and not training and f"runs/{run}" in store.models else "")
        sample = latest_sample(run_dir)
        values = {"runs": gr.Dropdown(choices=runs, value=run), "status": status,
                  "progress": progress_text(metrics, total) if training or metrics else "",
                  "sample": sample, "losses": (run, len(metrics)),
                  "findings": findings_text(read_jsonl(run_dir / "findings.jsonl"),
                                            metrics[-1].get("findings") if metrics else None), "links": links}
    keys = {**values, "runs": (tuple(runs), run)}
    out = []
    for key, value in values.items():
        if shown.get(key) == keys[key]:
            out.append(gr.skip())
        elif key == "losses":
            out.append(pd.DataFrame(loss_rows(metrics)) if metrics else None)
        elif key == "sample":
            out.append(open_sample(value) if value else None)
        else:
            out.append(value)
    return *out, keys


def open_sample(path: Path):
    """A copy of a sample grid (gradio does not serve run files); gr.skip() if it cannot be read just now."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except OSError:
        return gr.skip()


def _train_tab(trainings: Trainings, data_root: DataRoot, store: ModelStore) -> None:
    token = gr.State(trainings.new_token)
    folders = data_root.folders()
    gr.Markdown("Train a model on two sets of images, one per domain (for example photos and paintings); no pairs "
                "needed. It trains in its own process, exactly as `translate train` does, in "
                f"`{trainings.runs_dir}`; the model then appears in the other tabs.")
    source = gr.Radio([("Upload images", "upload"), ("Folders on the server", "folders")], value="upload",
                      label="1. Data", visible=bool(folders), elem_id="train-source")
    folder_of = {}  # domain -> its folder choice
    with gr.Row(equal_height=True):
        for domain in ("A", "B"):
            with gr.Column():
                uploads = gr.File(file_count="multiple", file_types=[*sorted(IMAGE_EXTENSIONS), ".zip"],
                                  label=f"Domain {domain}: images or a .zip", height=140,
                                  elem_id=f"train-upload-{domain.lower()}")
                folder = gr.Dropdown(folders, value=None, label=f"Domain {domain}: folder under {data_root.root}",
                                     visible=False, elem_id=f"train-folder-{domain.lower()}")
                strip = gr.Image(label=f"Domain {domain}", interactive=False, height=84, format="png", visible=False,
                                 elem_id=f"train-strip-{domain.lower()}", show_label=False)
                summary = gr.Markdown(elem_id=f"train-summary-{domain.lower()}")
            inspect = partial(load_domain, trainings, data_root, domain=domain)
            for event in (uploads.change, folder.change):
                event(lambda s, t, u, f, _i=inspect: _i(s, t, uploads=u, folder=f), [source, token, uploads, folder],
                      [strip, summary], api_name=False)
            source.change(lambda s: (gr.File(visible=s == "upload"), gr.Dropdown(visible=s != "upload")), source,
                          [uploads, folder], api_name=False)
            folder_of[domain] = folder
    with gr.Row():
        task = gr.Radio(TRAIN_TASKS, value="style", label="2. Task", info="the tab the model will appear in", scale=2)
        recipe = gr.Dropdown(RECIPES, value="residual-cyclegan", label="Recipe")
        size = gr.Radio([32, 64, 128, 256], value=64, label="Image size (px)", elem_id="train-size", scale=2,
                        info="128 px takes about 4x the time of 64 px")
        minutes = gr.Number(10, label="Time budget (minutes)", minimum=0.5, elem_id="train-minutes")
        name = gr.Textbox(label="Run name", placeholder="empty: task-recipe-date", elem_id="train-name")
    with gr.Accordion("Advanced", open=False, elem_id="train-advanced"):
        gr.Markdown("Every other setting is a `translate train` flag (`translate train --help`); a run started here "
                    "resumes from the CLI (`translate train --resume --name NAME`) and the other way round.")
        with gr.Row():
            advanced = [gr.Textbox("" if default is None else str(default), label=label, info=info, min_width=160,
                                   placeholder="recipe default", elem_id=f"train-{flag}")
                        for flag, label, default, info in ADVANCED]
    with gr.Row():
        start = gr.Button("Start training", variant="primary", elem_id="train-start")
        stop = gr.Button("Stop", variant="stop", elem_id="train-stop")
        resume = gr.Button("Resume", elem_id="train-resume")
        runs = gr.Dropdown(trainings.runs(), value=None, label="Runs", elem_id="train-runs",
                           info="the run shown below, and the one Resume continues")
    message = gr.Markdown(elem_id="train-message")
    status = gr.Markdown(elem_id="train-status")
    progress = gr.Markdown(elem_id="train-progress")
    with gr.Row():
        sample = gr.Image(label="Latest samples: real A | A→B | back to A | real B | B→A | back to B", format="png",
                          interactive=False, height=300, elem_id="train-sample", elem_classes="translate-image")
        losses = gr.LinePlot(x="step", y="value", color="loss", label="Losses", elem_id="train-losses")
    findings = gr.Markdown(elem_id="train-findings")
    links = gr.Markdown(elem_id="train-links")
    shown = gr.State(dict)

    start.click(partial(start_training, trainings, data_root),
                [source, token, folder_of["A"], folder_of["B"], task, recipe, size, minutes, name, *advanced],
                [message, runs],
                api_name="train_start", concurrency_limit=None)
    stop.click(lambda: trainings.stop(), None, message, api_name="train_stop", concurrency_limit=None)
    resume.click(partial(resume_training, trainings), runs, message, api_name="train_resume", concurrency_limit=None)
    outputs = [runs, status, progress, sample, losses, findings, links, shown]
    refresh = partial(refresh_training, trainings, store)
    gr.Timer(2).tick(refresh, [runs, shown], outputs, api_name=False, concurrency_limit=None, show_progress="hidden")
    runs.input(refresh, [runs, shown], outputs, api_name=False, show_progress="hidden")


def build_app(store: ModelStore, max_side: int = 512, trainings: Trainings | None = None,
              data_root: DataRoot | None = None) -> gr.Blocks:
    """The model tabs, and the Train tab when `trainings` is given (its models then join the model tabs)."""
    if trainings is not None:
        store.watch_runs(trainings)
    with gr.Blocks(title="translate: unpaired image-to-image translation", delete_cache=DELETE_CACHE) as demo:
        gr.Markdown("## Unpaired image-to-image translation\nCycleGAN / DiscoGAN / DualGAN models from "
                    f"`{store.folder}`. Upload an image, pick a direction, press **Translate**.")
        for problem in store.problems.items():
            gr.Markdown(f"Skipped `{problem[0]}`: {problem[1]}")
        for task, (title, _) in TASKS.items():
            with gr.Tab(title) as tab:
                parts = _task_tab(store, task, max_side)
            tab.select(partial(refresh_task, store, task), parts[0], parts, api_name=False)
        if trainings is not None:
            with gr.Tab("Train", id="train"):
                _train_tab(trainings, data_root or DataRoot(None), store)
    return demo


def launch(demo: gr.Blocks, host: str, port: int, **kwargs):
    """Serve the app: a queue of at most QUEUE_SIZE requests, CONCURRENCY at a time; uploads capped at
    MAX_FILE_SIZE; example files allowed; errors shown to the user."""
    demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)
    return demo.launch(server_name=host, server_port=port, max_file_size=MAX_FILE_SIZE, show_error=True, css=CSS,
                       allowed_paths=[str(d) for _, d in TASKS.values() if d.is_dir()], footer_links=["api"],
                       **kwargs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--checkpoints", default="checkpoints", help="folder of *.safetensors models")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 to serve the network)")
    parser.add_argument("--port", type=int, default=7860)
    add_runtime_flags(parser)
    parser.add_argument("--max-side", type=int, default=512, help="downscale larger images to this side first")
    parser.add_argument("--train", action=argparse.BooleanOptionalAction, default=True,
                        help="the Train tab (--no-train for a translate-only app)")
    parser.add_argument("--runs-dir", default="runs", help="where the Train tab's runs go (and whose models it serves)")
    parser.add_argument("--data-root", default=str(ROOT / "datasets"),
                        help="the Train tab may list and read image folders under this folder, nothing else")
    parser.add_argument("--runs-quota-gb", type=float, default=20.0,
                        help="disk quota of --runs-dir: no new training above it, and a running one is stopped")
    args = parser.parse_args(argv)
    store = ModelStore(args.checkpoints, args.device, args.precision, args.backend)
    for name, problem in store.problems.items():
        print(f"app: skipped {name}: {problem}", file=sys.stderr)
    if not store.models:
        print(f"app: no models in {store.folder}; the tabs will say how to add one", file=sys.stderr)
    print(f"app: {len(store.models)} model(s) from {store.folder}: {', '.join(store.models)}")
    if not args.train:
        launch(build_app(store, args.max_side), args.host, args.port)
        return 0
    trainings = Trainings(args.runs_dir, int(args.runs_quota_gb * 1024**3))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # exit through atexit: a running training is saved
    launch(build_app(store, args.max_side, trainings, DataRoot(args.data_root)), args.host, args.port,
           app_kwargs={"routes": [run_files_route(trainings.runs_dir)]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
