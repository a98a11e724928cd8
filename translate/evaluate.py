"""`translate eval MODEL --data ROOT`: a trained model's translations of testA/testB, measured.

Per direction: the domain-classifier score, FID / KID and k-NN precision / recall in the feature space of a small
encoder trained here on real trainA vs trainB (always available), FID / KID with Inception-v3 when its weights are
on disk, output diversity and near-duplicates, and L1 / PSNR / SSIM against ground truth where testA and testB
hold files of the same name. The first column is the do-nothing baseline (input unchanged): a model that works
beats it. `--compare` puts more runs side by side, measured with the same encoder. Read the domain score next to
KID and recall: outputs unlike both domains can still land on the target's side of the classifier.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DIRECTIONS = {"a2b": ("A", "B"), "b2a": ("B", "A")}
# (key, label, which way is better): the table's rows, in order.
ROWS = [("domain_score", "domain score: share classified as target", "↑"),
        ("fid_encoder", "FID, encoder features", "↓"), ("kid_encoder", "KID, encoder features", "↓"),
        ("fid_inception", "FID, Inception", "↓"), ("kid_inception", "KID, Inception", "↓"),
        ("precision", "precision: k-NN realism", "↑"), ("recall", "recall: k-NN coverage", "↑"),
        ("diversity", "diversity: output / input", "≈1"), ("near_duplicates", "near-duplicate share", "↓"),
        ("l1", "paired L1, 0-1 scale", "↓"), ("psnr", "paired PSNR, dB", "↑"), ("ssim", "paired SSIM", "↑")]
BASELINE = "input unchanged"
DEFAULT_SIZE = 256  # for a model whose metadata has no image_size: the reference CycleGAN's crop


def load_folder(folder: Path, size: int, keep: int | None = None) -> tuple[list[str], "torch.Tensor"]:
    """(file stems, NCHW tensor in [-1, 1]) of a folder's images, resized and centre-cropped to size (then
    area-downsampled to `keep` px, to hold many); unreadable files are skipped with a warning."""
    import torch
    import torch.nn.functional as F
    from .data import DataError, build_transform, list_images, load_rgb, to_tensor
    transform = build_transform(size, size, train=False)
    names, images = [], []
    for path in list_images(folder):
        try:
            image = to_tensor(transform(image=load_rgb(path))["image"])
        except DataError as exc:
            print(f"skipping {exc}", file=sys.stderr)
            continue
        images.append(F.interpolate(image[None], size=(keep, keep), mode="area")[0] if keep else image)
        names.append(path.stem)
    if not images:
        raise DataError(f"{folder}: no readable image")
    return names, torch.stack(images)


def _split(root: Path | tuple[Path, Path], split: str, size: int, keep: int | None = None) -> dict:
    """A dataset root's {split}A and {split}B, or the two folders of a (folder_a, folder_b) pair."""
    folders = dict(zip("AB", root)) if isinstance(root, tuple) else {d: root / f"{split}{d}" for d in "AB"}
    return {d: load_folder(f, size, keep) if f.is_dir() else None for d, f in folders.items()}


class Judge:
    """Everything the models are measured against: real test images, the trained encoder, Inception features."""

    def __init__(self, root: str | Path | tuple, size: int, inception: str | Path | None = None,
                 encoder_steps: int = 300, log=print):
        """`root`: a dataset root (testA/ testB/, trainA/ trainB/), or a pair of folders (A, B) without a split."""
        from . import metrics
        from .data import DataError
        root = tuple(map(Path, root)) if isinstance(root, (tuple, list)) else Path(root)
        for folder in root if isinstance(root, tuple) else (root,):
            if not folder.is_dir():
                raise DataError(f"{folder}: {'folder' if isinstance(root, tuple) else 'dataset root'} not found")
        weights = metrics.find_inception(inception)
        if inception and weights is None:
            raise FileNotFoundError(f"{inception}: no Inception-v3 weights file there")
        self.root, self.size, self.notes = root, size, []
        test = _split(root, "test", size)
        if isinstance(root, tuple):
            self.notes.append(f"measured on the training folders (no held-out images); to hold some out: translate "
                              f"data prepare {root[0]} {root[1]} --out DATASET, then train with --data DATASET")
        elif not (test["A"] and test["B"]):
            test = _split(root, "train", size)
            if not (test["A"] and test["B"]):
                raise DataError(f"{root}: needs testA/ and testB/ (or trainA/ and trainB/)")
            self.notes.append("no testA/testB: measured on the training images")
        self.test = test
        train = _split(root, "train", size, min(size, 64))  # the encoder sees at most 64 px
        fit = train if train["A"] and train["B"] else test
        log(f"training the feature encoder on {len(fit['A'][1])} A and {len(fit['B'][1])} B images...")
        self.encoder = metrics.train_encoder(fit["A"][1], fit["B"][1], steps=encoder_steps)
        self.inception = metrics.InceptionFeatures(weights) if weights else None
        if self.inception is None:
            self.notes.append(f"FID/KID with Inception skipped: no weights file {metrics.INCEPTION_FILE} in the "
                              "torch hub cache (nothing is downloaded); pass --inception PATH to use a local copy")
        else:
            self.notes.append(f"Inception-v3 weights: {weights} (torchvision's; comparable between runs here, not "
                              "with FIDs published from the TensorFlow graph)")
        self._features = {d: self.features(test[d][1]) for d in "AB"}
        self.accuracy = {"A": float((self._features["A"]["prob_b"] <= 0.5).double().mean()),
                         "B": float((self._features["B"]["prob_b"] > 0.5).double().mean())}
        self.notes.append(f"domain classifier accuracy on real test images: A {self.accuracy['A']:.0%}, "
                          f"B {self.accuracy['B']:.0%}")
        n = min(len(test["A"][1]), len(test["B"][1]))
        dims = max(f.shape[1] for k, f in self._features["A"].items() if k in ("encoder", "inception"))
        if n <= dims:
            self.notes.append(f"FID from {n} images in up to {dims} feature dimensions is biased upwards; "
                              "compare runs by KID, which is unbiased")

    def features(self, x) -> dict:
        from .metrics import pixel_features
        out = {"encoder": self.encoder.embed(x), "pixels": pixel_features(x, 16), "prob_b": self.encoder.prob_b(x)}
        if self.inception is not None:
            out["inception"] = self.inception(x)
        return out

    def measure(self, src: str, outputs) -> dict:
        """Metrics of `outputs` (translations of test[src], in its order) against the other domain."""
        from . import metrics
        tgt = "B" if src == "A" else "A"
        out_f, in_f, tgt_f = self.features(outputs), self._features[src], self._features[tgt]
        result = {"n_inputs": len(outputs), "n_targets": len(self.test[tgt][1])}
        prob_target = out_f["prob_b"] if tgt == "B" else 1 - out_f["prob_b"]
        result["domain_score"] = metrics.domain_score(prob_target)
        for space in ("encoder", "inception"):
            if space in out_f:
                result[f"fid_{space}"] = metrics.fid(tgt_f[space], out_f[space])
                result[f"kid_{space}"] = metrics.kid(tgt_f[space], out_f[space])[0]
        result["precision"], result["recall"] = metrics.precision_recall(tgt_f["encoder"], out_f["encoder"])
        in_div = metrics.mean_pairwise_distance(in_f["pixels"])
        result["diversity"] = metrics.mean_pairwise_distance(out_f["pixels"]) / max(in_div, 1e-12)
        result["near_duplicates"] = metrics.near_duplicate_rate(out_f["pixels"], 0.1 * in_div)
        names_src, names_tgt = self.test[src][0], self.test[tgt][0]
        index = {n: i for i, n in enumerate(names_tgt)}
        pairs = [(i, index[n]) for i, n in enumerate(names_src) if n in index]
        if pairs:
            i, j = zip(*pairs)
            result.update(metrics.paired_metrics(outputs[list(i)], self.test[tgt][1][list(j)]), n_pairs=len(pairs))
        return result


def run_folder(model: Path) -> Path:
    """The run folder a model file belongs to (RUN/model.safetensors or RUN/models/step_N.safetensors)."""
    return model.parent.parent if model.parent.name == "models" else model.parent


def model_name(model: Path) -> str:
    """A model's column name: its run folder's name (with the step for a kept model), or the file's stem."""
    if model.parent.name == "models":
        prefix, _, step = model.stem.rpartition("_")
        return f"{model.parent.parent.name} {prefix} {int(step)}" if step.isdigit() else model.stem
    return model.parent.name if model.name == "model.safetensors" else model.stem


def run_data(model: Path, log=print) -> str | tuple[str, str]:
    """The data a run trained on, from its config.json: the dataset root, or the --data-a/--data-b folders."""
    from .config import Config
    config = run_folder(model) / "config.json"
    if not config.is_file():
        raise ValueError(f"{model}: not in a run folder (no {config.name} beside it); give --data ROOT, a dataset "
                         "with testA/ and testB/")
    data = Config.load(config).data
    if data.data:
        log(f"data: {data.data} (the run's --data)")
        return data.data
    log(f"data: {data.data_a} and {data.data_b} (the run's --data-a/--data-b)")
    return data.data_a, data.data_b


def evaluate(models: list[str | Path], root: str | Path, directions: tuple[str, ...] = ("a2b", "b2a"),
             inception: str | Path | None = None, encoder_steps: int = 300, device: str = "cpu", log=print) -> dict:
    """Measure each model (and the do-nothing baseline) on root's test images; returns the JSON-able results."""
    import torch
    from .inference import Translator
    translators = [(Path(m), Translator.from_file(m, device=device)) for m in models]
    size = translators[0][1].meta.get("image_size")
    if not isinstance(size, int) or size < 1:
        size = DEFAULT_SIZE
        log(f"{translators[0][0]}: no training image size in its metadata; measuring at {size} px")
    judge = Judge(root, size, inception, encoder_steps, log)
    runs = [{"name": BASELINE, "model": None,
             "results": {d: judge.measure(DIRECTIONS[d][0], judge.test[DIRECTIONS[d][0]][1]) for d in directions}}]
    for path, translator in translators:
        log(f"translating with {path}...")
        results = {}
        for d in directions:
            x = judge.test[DIRECTIONS[d][0]][1]
            outputs = torch.cat([translator.translate_tensor(x[i:i + 32], d).float().cpu()
                                 for i in range(0, len(x), 32)])
            results[d] = judge.measure(DIRECTIONS[d][0], outputs)
        runs.append({"name": model_name(path), "model": str(path), "recipe": translator.meta.get("recipe"),
                     "steps": translator.meta.get("steps"), "results": results})
    return {"data": " + ".join(map(str, root)) if isinstance(root, tuple) else str(root), "image_size": size, "directions": list(directions), "runs": runs,
            "classifier_accuracy": judge.accuracy, "inception": judge.inception is not None, "notes": judge.notes}


def _fmt(value) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if abs(value) < 1000 else f"{value:.4g}"


def table_rows(results: dict) -> list[list[str]]:
    """The comparison table: a header row, then one row per metric present; columns are run / direction."""
    columns = [(run["name"], d) for run in results["runs"] for d in results["directions"]]
    cells = {(run["name"], d): run["results"][d] for run in results["runs"] for d in results["directions"]}
    rows = [["metric", *(f"{name} {d}" for name, d in columns)]]
    for key, label, better in ROWS:
        if any(key in cells[c] for c in columns):
            rows.append([f"{label} {better}", *(_fmt(cells[c].get(key)) for c in columns)])
    return rows


def format_table(results: dict) -> str:
    rows = table_rows(results)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines + [f"note: {n}" for n in results["notes"]])


def cmd_eval(args: argparse.Namespace) -> int:
    from .checkpoint import atomic_write
    directions = ("a2b", "b2a") if args.direction == "both" else (args.direction,)
    from .checkpoint import model_file
    def log(message: str) -> None:
        print(message, file=sys.stderr)
    models = [model_file(args.model, args.step), *map(model_file, args.compare)]
    data = args.data or run_data(models[0], log)
    results = evaluate(models, data, directions, args.inception, args.encoder_steps, args.device, log=log)
    print(format_table(results))
    out = Path(args.out) if args.out else run_folder(models[0]) / "eval.json"
    text = json.dumps(results, indent=2) + "\n"
    try:
        atomic_write(out, text.encode())
    except OSError as exc:  # the results took minutes to compute: never lose them
        print(text, end="")
        print(f"translate eval: could not write {out} ({exc.strerror or exc}); the results are printed above as "
              "JSON", file=sys.stderr)
        return 1
    print(f"results: {out}")
    if out.name == "eval.json" and (out.parent / "config.json").is_file():  # a run folder: its report shows them
        from .report import write_report
        print(f"report: {write_report(out.parent)}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="measure a trained model on a dataset's test images",
                       description=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="model.safetensors, or a run folder (its model.safetensors; --step N: the model "
                                 "it kept at step N)")
    p.add_argument("--step", type=int, help="with a run folder: the model kept at this step (train --keep-every)")
    p.add_argument("--data", help="dataset root with testA/ testB/ (trainA/ trainB/ train the feature encoder); "
                                  "default: the data the run trained on")
    p.add_argument("--direction", choices=("a2b", "b2a", "both"), default="both")
    p.add_argument("--out", help="JSON results (default: eval.json next to the model, which the run's report shows)")
    p.add_argument("--compare", nargs="+", default=[], metavar="RUN_OR_MODEL", help="more runs to put side by side")
    p.add_argument("--inception", metavar="PATH", help="Inception-v3 weights (torchvision's "
                   "inception_v3_google-0cc3c7bd.pth); default: the torch hub cache, if there. Never downloaded")
    p.add_argument("--encoder-steps", type=int, default=300, help="training steps of the feature encoder")
    p.add_argument("--device", default="auto", help="cuda | cpu | auto")
    p.set_defaults(func=cmd_eval)
