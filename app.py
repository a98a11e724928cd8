"""Gradio demo: style transfer and expression editing with the models in a checkpoints folder.

    python app.py                                   # http://127.0.0.1:7860, models from checkpoints/
    python app.py --checkpoints runs/my-run --host 0.0.0.0 --port 8080

Every `*.safetensors` model in the folder is loaded once at start. A model's tab comes from its metadata
("task": "style" | "expression"), else from its file name (containing "expression" or not). Nothing is
downloaded; uploads are limited in bytes and pixels; large images are downscaled to --max-side for speed.
Requests wait in a bounded queue and are served CONCURRENCY at a time (see docs/reliability.md).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import translate  # noqa: F401  (first: sets the no-network environment before gradio is imported)
import gradio as gr
from PIL import Image

from translate.checkpoint import ArtifactError
from translate.data import DataError, IMAGE_EXTENSIONS, check_image, load_rgb
from translate.runtime import add_runtime_flags
from translate.inference import DIRECTIONS, Translator

ROOT = Path(__file__).resolve().parent
TASKS = {"style": ("Style transfer", ROOT / "datasets" / "emoji-style"),
         "expression": ("Expression editing", ROOT / "datasets" / "emoji-expression")}
MAX_FILE_SIZE = "20mb"
MAX_PIXELS = 40_000_000
CONCURRENCY = 2  # requests worked on at once (each model still runs one at a time); the rest wait in the queue
QUEUE_SIZE = 64  # waiting requests beyond this are refused at once ("queue is full") instead of piling up
N_EXAMPLES = 4  # per domain
CSS = ".translate-image img { width: 100%; height: 100%; object-fit: contain; }"  # show small images enlarged


class ModelStore:
    """The models of one folder, loaded once. Only regular `*.safetensors` files that resolve inside the folder
    are served (a symlink out of it is ignored), and a model is chosen by its file name, never by a path."""

    def __init__(self, folder: str | Path, device: str = "auto", precision: str = "auto", backend: str = "torch"):
        self.folder = Path(folder).resolve()
        self.models: dict[str, Translator] = {}
        self.problems: dict[str, str] = {}
        paths = sorted(self.folder.glob("*.safetensors")) if self.folder.is_dir() else []
        for path in paths:
            if path.resolve().parent != self.folder or not path.resolve().is_file():
                self.problems[path.name] = "points outside the checkpoints folder; ignored"
                continue
            try:
                translator = Translator.from_file(path, device, precision, backend)
                translator.require_rgb(path)
                self.models[path.name] = translator
            except ArtifactError as exc:
                self.problems[path.name] = str(exc)

    def get(self, name: str) -> Translator:
        if name not in self.models:
            raise gr.Error(f"Unknown model {name!r}: choose one of {', '.join(self.models) or 'none'}.")
        return self.models[name]

    def task(self, name: str) -> str:
        task = self.models[name].meta.get("task")
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
        return str(payload.path) if payload is not None and payload.path else opened(payload)

    image.preprocess = preprocess
    return image


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


def open_upload(path: str | None, max_side: int) -> tuple[Image.Image, str]:
    """The uploaded image as RGB (grayscale, palette, RGBA on white, 16-bit, EXIF rotation handled), downscaled
    to max_side; and a note on what was done. gr.Error with a clear message for anything unusable."""
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
    if max(image.size) <= max_side:
        return image, f"{image.width}x{image.height} px"
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return image, f"{image.width}x{image.height} px (downscaled from {width}x{height})"


def translate_image(store: ModelStore, name: str, direction: str, path: str | None, strength: float,
                    show_cycle: bool, max_side: int = 512):
    """(translated image blended with the input by `strength`, cycle reconstruction or None, timing note)."""
    translator = store.get(name)
    if direction not in DIRECTIONS:
        raise gr.Error(f"Unknown direction {direction!r}.")
    image, size_note = open_upload(path, max_side)
    start = time.perf_counter()
    translated = translator(image, direction=direction)
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


def _task_tab(store: ModelStore, task: str, max_side: int) -> None:
    names = store.names(task)
    if not names:
        gr.Markdown(f"No {TASKS[task][0].lower()} model in `{store.folder}`. Train one (`translate train ...`) and "
                    "copy its `model.safetensors` there, or import a reference CycleGAN (`translate import-cyclegan`).")
        return
    first = store.get(names[0])
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            model = gr.Dropdown([(Path(n).stem, n) for n in names], value=names[0], label="Model")
            card = gr.Markdown(model_card(first))
            direction = gr.Radio(direction_choices(first), value="a2b", label="Direction")
            strength = gr.Slider(0, 1, value=1, step=0.05, label="Strength",
                                 info="0 = the input, 1 = the full translation")
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
        gr.Examples(examples, inputs=[source], label="Examples from the test split (A, then B)",
                    examples_per_page=2 * N_EXAMPLES)

    def on_model(name: str):
        translator = store.get(name)
        return model_card(translator), gr.Radio(choices=direction_choices(translator), value="a2b")

    model.change(on_model, model, [card, direction], api_name=False)
    show_cycle.change(lambda show: gr.Image(visible=show), show_cycle, cycle, api_name=False)
    button.click(lambda *args: translate_image(store, *args, max_side=max_side),
                 [model, direction, source, strength, show_cycle], [output, cycle, timing], api_name=f"translate_{task}")


def build_app(store: ModelStore, max_side: int = 512) -> gr.Blocks:
    with gr.Blocks(title="translate: unpaired image-to-image translation") as demo:
        gr.Markdown("## Unpaired image-to-image translation\nCycleGAN / DiscoGAN / DualGAN models from "
                    f"`{store.folder}`. Upload an image, pick a direction, press **Translate**.")
        for problem in store.problems.items():
            gr.Markdown(f"Skipped `{problem[0]}`: {problem[1]}")
        for task, (title, _) in TASKS.items():
            with gr.Tab(title):
                _task_tab(store, task, max_side)
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
    args = parser.parse_args(argv)
    store = ModelStore(args.checkpoints, args.device, args.precision, args.backend)
    for name, problem in store.problems.items():
        print(f"app: skipped {name}: {problem}", file=sys.stderr)
    if not store.models:
        print(f"app: no models in {store.folder}; the tabs will say how to add one", file=sys.stderr)
    print(f"app: {len(store.models)} model(s) from {store.folder}: {', '.join(store.models)}")
    launch(build_app(store, args.max_side), args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
