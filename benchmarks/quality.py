"""Translation quality at an equal budget, on sets with pixel-aligned ground truth.

    python benchmarks/quality.py                    # the default budget (about 30 min a candidate on 2 CPU cores)
    python benchmarks/quality.py --quick            # a quarter of it, for iteration
    python benchmarks/quality.py --sets glyphs --candidates baseline default
    python benchmarks/quality.py --quick --size 128 --candidates default   # at 128 px: docs/quality_128px.md

Each candidate is trained unpaired on a set's trainA/trainB for the same number of training images (steps x batch),
with the same small nets; its exported model then translates testA (A -> B) and is scored against testB, the
same emoji or glyph in the target style: paired L1, PSNR, SSIM (torchmetrics) and a hue-histogram distance (colour
fidelity). Every table has two reference rows: *input unchanged* (returning the input, which a weak GAN fails to
beat) and *baseline*, the reference CycleGAN's configuration in our engine (transposed-conv upsampling, LSGAN,
batch 1, no EMA). Results are kept per run in runs/quality/MODE/results.json, so candidates can be added and
rerun one at a time; the page (docs/quality.md for --quick, docs/quality_full.md for the default budget) and one
sample sheet per set beside it (input | baseline | default | truth) are rewritten from them.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "datasets"))

import torch  # noqa: E402

from translate.config import Config  # noqa: E402
from translate.evaluate import load_folder  # noqa: E402
from translate.inference import Translator, smooth_flat_areas  # noqa: E402
from translate.metrics import hue_histogram, hue_distance, paired_metrics  # noqa: E402
from translate.recipes import DEFAULT_RECIPE, recipe_config  # noqa: E402

SIZE = 64  # the default image size; --size measures at another (sets, nets' crop, results and page follow)
BUILD = ROOT / "datasets" / "_build"
BUDGETS = {"default": 12_000, "quick": 3_000}  # training images seen per candidate (steps x batch)


def nets(size: int) -> dict:
    """Equal nets for every candidate: small enough for a CPU, as a user would start."""
    return dict(ngf=16, ndf=32, n_blocks=6, crop_size=size)


def zoomed_load_size(size: int) -> int:
    """The shorter side before the crop for candidates that zoom: the reference's 286 for 256, at this size."""
    return size * 9 // 8


def build_set(name: str, size: int) -> Path:
    """The data set's root (built on first use into datasets/_build/, git-ignored)."""
    import build_emoji
    import build_glyphs
    root = BUILD / f"{name}{size}"
    if (root / "testB").is_dir():
        return root
    tmp = root.with_name(root.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    if name == "openmoji":
        build_emoji.build_openmoji(tmp, size)
    elif name == "emoji-style":
        build_emoji.build_style(tmp, size, full=True)
    elif name == "glyphs":
        cyrillic = "".join(map(chr, range(0x410, 0x450)))
        build_glyphs.build_glyphs(tmp, size, build_glyphs.CHARACTERS + cyrillic, test_fraction=0.2)
    tmp.rename(root)
    return root


SETS = {"openmoji": "OpenMoji line art -> colour", "emoji-style": "Noto -> Twemoji (same emoji)",
        "glyphs": "DejaVu Sans -> DejaVu Serif (same glyph)"}

# name -> (recipe, overrides, what it is). "baseline" is the reference CycleGAN's configuration.
BASELINE = dict(upsample="transpose", adversarial="lsgan", batch_size=1, ema=0.0)  # the reference's configuration
ZOOM = dict(load_size=286)  # zoom before cropping, as the default did until 2026-12-03 (train() scales it to --size)
R1_1 = dict(r1_weight=1.0, lambda_smooth=0.0, **ZOOM)  # the default of 2026-12-01 to 2026-12-02: R1 1, no smoothness
BEFORE = dict(d_norm="instance", r1_weight=0.1, lambda_smooth=0.0, **ZOOM)  # the default's critics until 2026-12-01

SHEET = ("baseline", "default")  # a sheet's columns between input and truth, where trained

CANDIDATES = {
    "baseline": ("cyclegan", BASELINE,
                 "reference CycleGAN configuration: transposed conv, LSGAN, batch 1, no EMA"),
    "default": (DEFAULT_RECIPE, {}, f"`translate train` without --model: {DEFAULT_RECIPE} (residual generators, "
                "L2 cycle loss, identity loss 0.1, batch 4, EMA 0.999, critics without instance norm, R1 0.3, "
                "edge-aware smoothness 1 on the change, images resized to the crop size, not zoomed past it)"),
    "zoom": (DEFAULT_RECIPE, ZOOM, "the default until 2026-12-03: images zoomed by 9/8 before the crop, as the "
             "reference zooms 256 px crops from 286"),
    "default-seed1": (DEFAULT_RECIPE, {"seed": 1}, "the default with another seed"),
    "zoom-seed1": (DEFAULT_RECIPE, {**ZOOM, "seed": 1}, "zoom with another seed"),
    "no-flip": (DEFAULT_RECIPE, dict(flip=False), "the default without random horizontal flips: at the crop scale "
                "they were its last augmentation, and a mirrored glyph or emoji is not one of the set's"),
    "baseline-seed1": ("cyclegan", {**BASELINE, "seed": 1}, "the baseline with another seed"),
    "r1-1-nosmooth": (DEFAULT_RECIPE, R1_1, "the default until 2026-12-02: R1 1, no smoothness"),
    "r1-1-nosmooth-seed1": (DEFAULT_RECIPE, {**R1_1, "seed": 1}, "r1-1-nosmooth with another seed"),
    "in-norm": (DEFAULT_RECIPE, BEFORE, "the default until 2026-12-01: critics with instance norm, R1 0.1"),
    "in-norm-seed1": (DEFAULT_RECIPE, {**BEFORE, "seed": 1}, "in-norm with another seed: how far two runs of one "
                      "recipe land apart"),
    "no-r1": (DEFAULT_RECIPE, {**BEFORE, "r1_weight": 0.0}, "in-norm without R1 (the default before R1)"),
    "no-r1-b1": (DEFAULT_RECIPE, {**BEFORE, "r1_weight": 0.0, "batch_size": 1}, "no-r1 at batch 1: four times the "
                 "updates at equal images"),
    "no-r1-sn": (DEFAULT_RECIPE, {**BEFORE, "r1_weight": 0.0, "spectral_norm": True}, "no-r1 with spectral norm on "
                 "the critics"),
    "r1-1": (DEFAULT_RECIPE, {**BEFORE, "r1_weight": 1.0}, "in-norm with R1 weight 1"),
    "diffaug": (DEFAULT_RECIPE, {**BEFORE, "diffaugment": "translation"}, "in-norm with DiffAugment translation "
                "on real and fake images before the critics (Zhao et al. 2020)"),
    "d-nonorm": (DEFAULT_RECIPE, {**BEFORE, "d_norm": "none"}, "in-norm's R1 0.1 with critics without instance "
                 "norm"),
    "diffaug-nonorm": (DEFAULT_RECIPE, {**BEFORE, "d_norm": "none", "diffaugment": "translation"}, "diffaug and "
                       "d-nonorm together"),
    "cyclegan-ema": ("cyclegan", dict(ema=0.999), "cyclegan recipe (resize-conv, batch 1) with EMA: the baseline "
                     "without transposed convs"),
    "cut": ("cut", {}, "CUT (PatchNCE, no cycle), both directions, batch 1"),
    "fastcut": ("fastcut", {}, "FastCUT (PatchNCE weight 10, no identity term), both directions, batch 1"),
    "residual": ("cyclegan", dict(batch_size=4, ema=0.999, residual=True),
                 "cyclegan's losses, batch 4, EMA, residual generators (start as the identity)"),
    "residual-noid": ("cyclegan", dict(batch_size=4, ema=0.999, residual=True, lambda_identity=0.0),
                      "residual without the identity loss"),
    "lr-x2": (DEFAULT_RECIPE, dict(R1_1, lr_g=4e-4, lr_d=4e-4), "r1-1-nosmooth at twice the learning rates "
              "(batch 4: square-root scaling of the reference's batch-1 rate)"),
    "unet": (DEFAULT_RECIPE, dict(R1_1, generator="unet", unet_depth=4, g_norm="instance"), "r1-1-nosmooth with "
             "U-Net generators (4 downsamplings, skip connections at every scale): changes can follow the input's "
             "edges"),
    "lr-half": (DEFAULT_RECIPE, dict(R1_1, lr_g=1e-4, lr_d=1e-4), "r1-1-nosmooth at half the learning rates "
                "(lr-x2 was worse on every figure)"),
    "r1-4": (DEFAULT_RECIPE, dict(R1_1, r1_weight=4.0), "r1-1-nosmooth with R1 weight 4 (1 smoothed fills more "
             "than 0.1)"),
    "r1-0.3": (DEFAULT_RECIPE, dict(R1_1, r1_weight=0.3), "r1-1-nosmooth with R1 weight 0.3: the default without "
               "its smoothness term"),
    "id-0.5": (DEFAULT_RECIPE, dict(R1_1, lambda_identity=0.5), "r1-1-nosmooth with identity weight 0.5 (squared, "
               "as the cycle loss: no lasso)"),
    "ngf32": (DEFAULT_RECIPE, dict(R1_1, ngf=32), "r1-1-nosmooth with twice the generator width (128-channel "
              "residual blocks, where Winograd training convolutions start)"),
    "mask": (DEFAULT_RECIPE, dict(R1_1, mask=True), "r1-1-nosmooth with a learned mask gating each generator's "
             "change (attention-guided, Mejjati et al. 2018): regions left alone can stay exactly as they were"),
    "id-1": (DEFAULT_RECIPE, dict(R1_1, lambda_identity=1.0), "r1-1-nosmooth with identity weight 1 (squared)"),
    "d-layers2": (DEFAULT_RECIPE, dict(R1_1, n_layers=2), "r1-1-nosmooth with 34x34-pixel critic patches "
                  "(n_layers 2): at 64 px the 70x70 PatchGAN sees the whole image"),
    "d-layers1": (DEFAULT_RECIPE, dict(R1_1, n_layers=1), "r1-1-nosmooth with 16x16-pixel critic patches "
                  "(n_layers 1): the reference's 70 px patch on a 256 px image, scaled to 64 px"),
    "residual-l2": ("cyclegan", dict(batch_size=4, ema=0.999, residual=True, lambda_identity=0.0, recon_loss="l2"),
                    "residual-noid with a squared (L2) cycle loss"),
    "smooth-1": (DEFAULT_RECIPE, dict(r1_weight=1.0, lambda_smooth=1.0), "r1-1-nosmooth with edge-aware "
                 "smoothness 1 on each generator's change (--lambda-smooth: flat where the input is flat, free to "
                 "jump at its edges)"),
    "smooth-1-seed1": (DEFAULT_RECIPE, dict(r1_weight=1.0, lambda_smooth=1.0, seed=1), "smooth-1 with another seed"),
    "smooth-2": (DEFAULT_RECIPE, dict(r1_weight=1.0, lambda_smooth=2.0), "r1-1-nosmooth with smoothness 2"),
    "smooth-5": (DEFAULT_RECIPE, dict(r1_weight=1.0, lambda_smooth=5.0), "r1-1-nosmooth with smoothness 5"),
    "r1-0.1": (DEFAULT_RECIPE, dict(r1_weight=0.1, lambda_smooth=0.0), "r1-1-nosmooth with R1 0.1 (d-nonorm's "
               "configuration, rerun 2026-12-02)"),
    "r1-0.1-smooth-1": (DEFAULT_RECIPE, dict(r1_weight=0.1, lambda_smooth=1.0), "R1 0.1 and edge-aware "
                        "smoothness 1"),
    "r1-0.1-smooth-2": (DEFAULT_RECIPE, dict(r1_weight=0.1, lambda_smooth=2.0), "R1 0.1 and edge-aware "
                        "smoothness 2"),
    "r1-0.3-smooth-2": (DEFAULT_RECIPE, dict(lambda_smooth=2.0), "the default with smoothness 2"),
    "r1-0.3-smooth-3": (DEFAULT_RECIPE, dict(lambda_smooth=3.0), "the default with smoothness 3"),
    "ttur-2": (DEFAULT_RECIPE, dict(lr_d=4e-4), "the default with twice the critics' learning rate (TTUR, Heusel "
               "et al. 2017): a critic that keeps up where the domains are close"),
    "ttur-4": (DEFAULT_RECIPE, dict(lr_d=8e-4), "the default with four times the critics' learning rate"),
    "vanilla": (DEFAULT_RECIPE, dict(adversarial="vanilla"), "the default with the non-saturating GAN loss (R1's "
                "own pairing, Mescheder et al. 2018)"),
    "hinge": (DEFAULT_RECIPE, dict(adversarial="hinge"), "the default with the hinge loss"),
    "d-layers2-r1": (DEFAULT_RECIPE, dict(n_layers=2, r1_weight=0.055), "the default with 34x34-pixel critic patches "
                     "and R1 scaled to their count (0.3 x 36 / 196 logits)"),
    "d-layers1-r1": (DEFAULT_RECIPE, dict(n_layers=1, r1_weight=0.012), "the default with 16x16-pixel critic patches "
                     "and R1 scaled to their count (0.3 x 36 / 900 logits)"),
    "upsample-aa": (DEFAULT_RECIPE, dict(upsample="antialiased"), "the default with anti-aliased upsampling (4x4 "
                    "transposed conv + blur)"),
    "cycle-5": (DEFAULT_RECIPE, dict(lambda_cycle=5.0), "the default with cycle weight 5: less pull toward the "
                "mean colour that an L2 cycle asks where one line drawing has many colourings"),
    "cycle-ssim": (DEFAULT_RECIPE, dict(recon_loss="l2-ssim"), "the default with 1 - SSIM added to its cycle and "
                   "identity distances (Zhao et al. 2017): structure kept on the round trip, not only pixels"),
    "multiscale": (DEFAULT_RECIPE, dict(discriminator="multiscale"), "the default with multi-scale PatchGAN critics "
                   "(pix2pixHD: one on the image, one on a half-size copy, each scale weighing the same)"),
    "multiscale-r1": (DEFAULT_RECIPE, dict(discriminator="multiscale", r1_weight=0.15), "multiscale with R1 halved "
                      "(the penalty's logits doubled)"),
    "default-smoothed": (DEFAULT_RECIPE, {}, "the default's model (not trained again), its translations smoothed "
                         "where flat as `translate apply --smooth` does (guided filter, He et al. 2010)"),
    "paired-l1": (DEFAULT_RECIPE, {}, "a ceiling, not a candidate: the default's generator trained *with* the "
                  "training pairs (supervised, L1 loss, no critic), at the same budget: what these nets reach when "
                  "shown the answer"),
    "paired-ssim": (DEFAULT_RECIPE, {}, "paired-l1 with 1 - SSIM added to its loss"),
    "paired-ssim-0.3": (DEFAULT_RECIPE, {}, "paired-l1 with 0.3 (1 - SSIM) added to its loss: between the two"),
}
SMOOTHED = {"default-smoothed": "default"}  # test-time candidates: the candidate whose model they translate
PAIRED = {"paired-l1": 0.0, "paired-ssim": 1.0, "paired-ssim-0.3": 0.3}  # ceilings trained on the pairs: SSIM weight


def train(root: Path, candidate: str, images: int, size: int, run_dir: Path) -> dict:
    from translate.trainer import Trainer
    recipe, overrides, _ = CANDIDATES[candidate]
    cfg = recipe_config(recipe).update({**nets(size), **overrides, "data": str(root), "sample_every": 10**9,
                                        "log_every": 50, "n_samples": 4, "workers": 0})
    if cfg.data.load_size:  # a recipe or candidate that zooms before cropping
        cfg.data.load_size = zoomed_load_size(size)
    cfg.train.max_steps = max(1, images // cfg.train.batch_size)
    cfg.train.save_every = cfg.train.max_steps
    if run_dir.exists():  # an earlier try of this candidate: replace it, but never a folder a run did not make
        if not (run_dir / "config.json").is_file():
            sys.exit(f"{run_dir} exists and is not a run folder; move it away first")
        shutil.rmtree(run_dir)
    start = time.perf_counter()
    Trainer(cfg, run_dir).fit()
    return {"minutes": (time.perf_counter() - start) / 60, "images": cfg.train.max_steps * cfg.train.batch_size,
            "steps": cfg.train.max_steps, "batch": cfg.train.batch_size}


def train_paired(root: Path, candidate: str, images: int, size: int, inputs: torch.Tensor) -> tuple:
    """A ceiling for the unpaired candidates: the default's generator fitted to the training pairs (A -> B of the
    same name), batch and Adam as the default's, for the same number of images. (its test outputs, info)"""
    from torchmetrics.functional.image import structural_similarity_index_measure as ssim
    from translate.nets import build_generator
    cfg = recipe_config(DEFAULT_RECIPE).update(nets(size))
    t = cfg.train
    torch.manual_seed(t.seed)
    names_a, a = load_folder(root / "trainA", size)
    names_b, b = load_folder(root / "trainB", size)
    common = sorted(set(names_a) & set(names_b))
    a, b = a[[names_a.index(n) for n in common]], b[[names_b.index(n) for n in common]]
    net = build_generator(cfg.model)
    opt = torch.optim.Adam(net.parameters(), lr=t.lr_g, betas=(t.beta1, t.beta2))
    steps, start = images // t.batch_size, time.perf_counter()
    for _ in range(steps):
        i = torch.randint(len(a), (t.batch_size,))
        out = net(a[i])
        loss = (out - b[i]).abs().mean()
        if PAIRED[candidate]:
            loss = loss + PAIRED[candidate] * (1 - ssim(out.add(1).div(2), b[i].add(1).div(2), data_range=1.0))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        outputs = torch.cat([net(inputs[i:i + 32]) for i in range(0, len(inputs), 32)]).clamp(-1, 1)
    return outputs, {"minutes": (time.perf_counter() - start) / 60, "images": steps * t.batch_size, "steps": steps,
                     "batch": t.batch_size}


def score(outputs: torch.Tensor, inputs: torch.Tensor, truth: torch.Tensor) -> dict:
    """Paired metrics, the hue distance (degrees) and the chroma ratio (output's colourfulness / truth's), and two
    figures that say where a model loses to the input: PSNR over the pairs whose input is not already the truth
    (an identical pair counts 100 dB for *input unchanged*, so three of them move the mean by 1.3 dB), and SSIM on
    the background (pixels white in input and truth, where haze costs line art -> colour its SSIM)."""
    from torchmetrics.functional.image import structural_similarity_index_measure
    h_out, h_truth = hue_histogram(outputs), hue_histogram(truth)
    to_change = (inputs != truth).flatten(1).any(1)
    _, ssim_map = structural_similarity_index_measure(outputs.add(1).div(2).clamp(0, 1), truth.add(1).div(2),
                                                      data_range=1.0, return_full_image=True)
    background = (inputs > 0.9).all(1) & (truth > 0.9).all(1)
    return {**paired_metrics(outputs, truth), "hue": hue_distance(h_out, h_truth),
            "chroma": float(h_out.sum() / h_truth.sum()) if float(h_truth.sum()) > 1e-9 else float("nan"),
            "psnr_to_change": paired_metrics(outputs[to_change], truth[to_change])["psnr"],
            "ssim_background": float(ssim_map.mean(1)[background].mean())}


def test_pairs(root: Path, size: int) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    names_a, a = load_folder(root / "testA", size)
    names_b, b = load_folder(root / "testB", size)
    common = sorted(set(names_a) & set(names_b))
    pick = lambda names, x: x[[names.index(n) for n in common]]  # noqa: E731
    return common, pick(names_a, a), pick(names_b, b)


@torch.no_grad()
def translate(model: Path, inputs: torch.Tensor, smooth: bool = False) -> torch.Tensor:
    t = Translator.from_file(model, device="cpu", precision="fp32")
    out = torch.cat([t.translate_tensor(inputs[i:i + 32], "a2b") for i in range(0, len(inputs), 32)])
    return smooth_flat_areas(out) if smooth else out


def sample_sheet(path: Path, columns: dict[str, torch.Tensor], rows: int = 8) -> None:
    """input | candidates... | truth, one test image a row (evenly spread over the test set), at 2x."""
    import torch.nn.functional as F
    from torchvision.utils import save_image
    first = next(iter(columns.values()))
    idx = torch.linspace(0, len(first) - 1, min(rows, len(first))).long()
    grid = torch.stack([c[idx] for c in columns.values()], dim=1).flatten(0, 1)
    grid = F.interpolate(grid.add(1).div(2).clamp(0, 1), scale_factor=2, mode="nearest")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(grid, path, nrow=len(columns), padding=2, pad_value=1.0)


METRICS = (("l1", "L1 ↓", 4, min), ("psnr", "PSNR ↑", 2, max), ("ssim", "SSIM ↑", 3, max),
           ("hue", "hue ↓", 1, min), ("chroma", "chroma ≈1", 2, None),
           ("psnr_to_change", "PSNR, pairs to change ↑", 2, max), ("ssim_background", "SSIM, background ↑", 3, max))


START, END = "<!-- written by benchmarks/quality.py: start -->", "<!-- written by benchmarks/quality.py: end -->"


def sheet_name(set_name: str, page: Path) -> str:
    """A page's sheet for a set, beside it in img/: pages at other budgets or sizes never share sheets."""
    return f"{page.stem}_{set_name}.png"


def write_doc(results: dict, mode: str, size: int, path: Path) -> None:
    lines = ["Written by `python benchmarks/quality.py" + (" --quick" if mode == "quick" else "")
             + ("" if size == SIZE else f" --size {size}")
             + "`: each candidate trained unpaired at the same budget (training images seen), with the same nets "
             f"({', '.join(f'{k} {v}' for k, v in nets(size).items())}; load_size {zoomed_load_size(size)} for "
             "those that zoom before cropping, as the reference does), on this 2-core CPU; scored A -> B against "
             "the test pairs' truth. L1 on the 0-1 scale. Colour: *hue* is the distance in degrees between the "
             "chroma-weighted hue histograms of output and truth (0 = the same colours; n/a for black and white); "
             "*chroma* is the output's total colourfulness over the truth's (1 = as colourful, 0 = grey). "
             "Best model value per column in bold.", "", "| candidate | what it is |", "|---|---|"]
    lines += [f"| {name} | {desc} |" for name, (_, _, desc) in CANDIDATES.items()]
    for set_name, rows in results.items():
        models = {k: v for k, v in rows.items() if k != "input unchanged" and k not in PAIRED}
        nan = float("nan")  # also for figures that results stored before them lack
        best = {key: pick(v.get(key, nan) for v in models.values() if v.get(key, nan) == v.get(key, nan))
                for key, _, _, pick in METRICS
                if pick and models and any(v.get(key, nan) == v.get(key, nan) for v in models.values())}
        lines += ["", f"## {SETS.get(set_name, set_name)} (`{set_name}`, {rows['input unchanged']['n']} test pairs)",
                  "", f"| | {' | '.join(label for _, label, _, _ in METRICS)} | images seen | minutes |",
                  "|---" * (len(METRICS) + 3) + "|"]
        for name, r in rows.items():
            cells = ["" if key not in r else "n/a" if r[key] != r[key] else
                     f"**{r[key]:.{digits}f}**" if name in models and best.get(key) == r[key] else f"{r[key]:.{digits}f}"
                     for key, _, digits, _ in METRICS]
            extra = f"{r['images']} | {r['minutes']:.1f}" if "images" in r else " | "
            lines.append(f"| {name} | {' | '.join(cells)} | {extra} |")
        lines += ["", f"![{set_name}](img/{sheet_name(set_name, path)})", "",
                  f"Rows: test pairs; columns: input | {' | '.join(c for c in SHEET if c in models)} | truth."]
    generated = "\n".join([START, *lines, END])
    text = path.read_text() if path.is_file() else ""
    if START in text and END in text:  # keep the hand-written parts around the generated tables
        generated = text[:text.index(START)] + generated + text[text.index(END) + len(END):]
    else:
        generated += "\n"
    path.write_text(generated)


def save_result(path: Path, set_name: str, rows: dict) -> dict:
    """Merge one set's rows into the results file (other candidates may be being run by another process)."""
    results = json.loads(path.read_text()) if path.is_file() else {}
    results[set_name] = {**results.get(set_name, {}), **rows}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(results, indent=1))
    tmp.replace(path)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"{BUDGETS['quick']} training images, not "
                        f"{BUDGETS['default']}")
    parser.add_argument("--sets", nargs="+", choices=SETS, default=list(SETS))
    parser.add_argument("--candidates", nargs="*", choices=CANDIDATES, default=list(CANDIDATES),
                        help="train these (others keep their stored results); none: rewrite the doc and sheets")
    parser.add_argument("--images", type=int, help="override the budget (training images seen)")
    parser.add_argument("--size", type=int, default=SIZE, help=f"image size in pixels (default {SIZE})")
    parser.add_argument("--doc", type=Path, help="page to write (default docs/quality.md with --quick, "
                        "docs/quality_full.md without; _SIZEpx before .md at another --size)")
    args = parser.parse_args(argv)
    if args.size < 32 or args.size % 16:
        parser.error(f"--size {args.size}: give a multiple of 16, at least 32")
    mode = "quick" if args.quick else "default"
    images = args.images or BUDGETS[mode]
    suffix = "" if args.size == SIZE else f"_{args.size}px"
    doc = args.doc or ROOT / "docs" / f"quality{'' if args.quick else '_full'}{suffix}.md"
    if doc.is_file() and START not in doc.read_text():  # never overwrite a page this script did not write
        parser.error(f"{doc} exists and has no section written by this script; give --doc a new file")
    if not doc.is_file():  # nor, for a new page, a picture that happens to have its sheets' names
        taken = [sheet for sheet in (doc.parent / "img" / sheet_name(n, doc) for n in args.sets) if sheet.exists()]
        if taken:
            parser.error(f"{taken[0]} exists and was not written for {doc}; give --doc another name")
    out = ROOT / "runs" / "quality" / (mode + suffix)
    results_path = out / "results.json"
    for set_name in args.sets:
        root = build_set(set_name, args.size)
        names, inputs, truth = test_pairs(root, args.size)
        results = save_result(results_path, set_name,
                              {"input unchanged": {**score(inputs, inputs, truth), "n": len(names)}})
        for candidate in args.candidates:
            base = SMOOTHED.get(candidate, candidate)
            run_dir = out / set_name / base
            if candidate in PAIRED:
                outputs, info = train_paired(root, candidate, images, args.size, inputs)
            else:
                if candidate in SMOOTHED:  # a test-time option on another candidate's model, trained in this mode
                    if base not in results[set_name] or not (run_dir / "model.safetensors").is_file():
                        sys.exit(f"{candidate} translates {base}'s model: run --candidates {base} first")
                    info = {k: results[set_name][base][k] for k in ("minutes", "images", "steps", "batch")}
                else:
                    info = train(root, candidate, images, args.size, run_dir)
                outputs = translate(run_dir / "model.safetensors", inputs, candidate in SMOOTHED)
            row = {**score(outputs, inputs, truth), **info}
            print(json.dumps({"set": set_name, "candidate": candidate, **row}), flush=True)
            results = save_result(results_path, set_name, {candidate: row})
        models = {c: out / set_name / c / "model.safetensors" for c in SHEET if c in results[set_name]}
        if all(model.is_file() for model in models.values()):  # else keep the sheet of the runs that made the rows
            columns = {"input": inputs, **{c: translate(model, inputs) for c, model in models.items()}, "truth": truth}
            sample_sheet(doc.parent / "img" / sheet_name(set_name, doc), columns)
        else:
            print(f"{set_name}: the models of {', '.join(models)} are not in {out}; its sheet is left as it is")
    write_doc(results, mode, args.size, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
