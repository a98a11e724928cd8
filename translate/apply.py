"""`translate apply`: translate files, folders (recursive, mirrored in the output) or globs with an exported model.

    translate apply runs/my-run/model.safetensors photos/ --out translated/ --direction a2b
    python -m translate.apply model.safetensors "shots/**/*.jpg" --out out/ --tile 512 --html

Each image keeps its size (or `--size` resizes its shorter side). Unreadable files are skipped and listed with the
reason; the rest go on. Outputs never overwrite inputs. Exit status: 0 every image translated, 3 partial success
(some skipped), 1 none translated, 2 usage error (missing model or input, bad flags).
"""
from __future__ import annotations

import argparse
import glob
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .checkpoint import model_file
from .runtime import add_runtime_flags

EXIT_OK, EXIT_NONE, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3


@dataclass
class Job:
    source: Path
    target: Path


def add_parser(sub) -> None:
    p = sub.add_parser("apply", help="translate images, folders or globs with an exported model",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter, description=__doc__.split("\n")[0],
                       epilog="exit status: 0 all translated, 3 some skipped, 1 none translated, 2 usage error")
    p.add_argument("model", help="exported model (.safetensors), or a run folder: its model.safetensors, or with "
                   "--step N the model it kept at step N (train --keep-every)")
    p.add_argument("--step", type=int, help="with a run folder: the model kept at this step")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image file, folder (recursive) or glob")
    p.add_argument("--out", required=True, help="output folder (mirrors input folders)")
    p.add_argument("--direction", choices=("a2b", "b2a"), default="a2b")
    p.add_argument("--batch-size", type=int, default=4, help="equal-sized images per forward pass")
    add_runtime_flags(p)
    p.add_argument("--format", choices=("png", "jpg"), default="png", help="output image format")
    p.add_argument("--suffix", default="", help="added to each output file name, e.g. _b")
    p.add_argument("--size", type=int, help="resize the shorter side to SIZE first (default: keep each size)")
    p.add_argument("--tile", type=int, help="translate images larger than TILE px tile by tile (bounded memory)")
    p.add_argument("--overlap", type=int, help="overlap of neighbouring tiles, blended (default: the generator's "
                   "receptive field plus 8 px, capped at 3/4 of the tile; smaller is faster and less exact)")
    p.add_argument("--smooth", action="store_true", help="smooth the translations where flat, keeping outlines "
                   "(edge-preserving guided filter; for flat art such as emoji, icons, line art; not photos)")
    p.add_argument("--side-by-side", action="store_true", help="write input|output pairs instead of outputs")
    p.add_argument("--html", action="store_true", help="also write OUT/index.html: inputs beside outputs, scaled "
                   "up, 100 a page; self-contained, so it works when OUT is moved")
    p.set_defaults(func=cmd_apply)


def _sources(spec: str, out: Path) -> list[tuple[Path, Path]]:
    """(file, path relative to its input root) for one input; folders and globs keep their subfolders."""
    from .data import IMAGE_EXTENSIONS
    path = Path(spec)
    if path.is_file():
        return [(path, Path(path.name))]
    if path.is_dir():
        root, files = path, path.rglob("*")
    elif glob.has_magic(spec):
        root = Path(*_leading_plain_parts(path))
        files = (Path(f) for f in glob.glob(spec, recursive=True))
    else:
        raise FileNotFoundError(f"{spec}: no such file or folder")
    if root.resolve() == out.resolve() or root.resolve() in out.resolve().parents:
        raise ValueError(f"--out {out} is inside the input folder {root}: outputs would land among the inputs "
                         "(and be read as inputs next time); choose an --out outside it")
    found = sorted(f for f in files if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
    if not found:
        raise FileNotFoundError(f"{spec}: no images found")
    return [(f, f.relative_to(root)) for f in found]


def _leading_plain_parts(pattern: Path) -> list[str]:
    """The folders of a glob pattern before its first wildcard."""
    parts = []
    for part in pattern.parts[:-1]:
        if glob.has_magic(part):
            break
        parts.append(part)
    return parts


def plan(inputs: list[str], out: Path, fmt: str, suffix: str) -> list[Job]:
    """One job per input image: where its output goes. Outputs that would clash get the source's extension
    added to their name, then a number."""
    if Path(suffix).name != suffix or suffix in (".", ".."):
        raise ValueError(f"--suffix {suffix!r} must not contain a path separator: outputs stay inside --out")
    jobs, taken = [], set()
    for spec in inputs:
        for source, rel in _sources(spec, out):
            stem, n = rel.stem, 1
            target = out / rel.parent / f"{stem}{suffix}.{fmt}"
            while target in taken:
                n += 1
                stem = f"{rel.stem}_{rel.suffix.lstrip('.')}" + (f"_{n}" if n > 2 else "")
                target = out / rel.parent / f"{stem}{suffix}.{fmt}"
            taken.add(target)
            jobs.append(Job(source, target))
    return jobs


MANIFEST = ".translate-apply"  # in --out: the files apply wrote there, one relative path a line


def written_before(out: Path) -> set[str]:
    """The outputs an earlier `apply` wrote into `out` (the only existing files it may replace)."""
    try:
        return set((out / MANIFEST).read_text(encoding="utf-8").splitlines())
    except OSError:
        return set()


def _save(image, path: Path, fmt: str, out: Path) -> None:
    """Write through a temporary file, so an interrupted run never leaves a half-written image, then record it in
    out's manifest."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.part")
    try:
        image.save(partial, format="PNG" if fmt == "png" else "JPEG", **({"quality": 95} if fmt == "jpg" else {}))
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    with (out / MANIFEST).open("a", encoding="utf-8") as manifest:
        manifest.write(path.relative_to(out).as_posix() + "\n")


def _side_by_side(left, right):
    from PIL import Image
    pair = Image.new("RGB", (left.width + right.width, max(left.height, right.height)), "white")
    pair.paste(left, (0, 0))
    pair.paste(right, (left.width, 0))
    return pair


def cmd_apply(args: argparse.Namespace) -> int:
    from PIL import Image
    from tqdm.auto import tqdm

    from .data import MAX_PIXELS, DataError, load_rgb
    from .inference import Translator

    for flag in ("batch_size", "size", "tile"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be a positive number")
    if args.overlap is not None and args.overlap < 0:
        raise ValueError(f"--overlap {args.overlap} must be 0 or more")
    if args.size and args.size ** 2 > MAX_PIXELS:
        raise ValueError(f"--size {args.size} makes every image at least {args.size ** 2 / 1e6:.0f} megapixels; "
                         f"the limit is {MAX_PIXELS / 1e6:.0f} (--size {math.isqrt(MAX_PIXELS)} at most)")
    out = Path(args.out)
    jobs = plan(args.inputs, out, args.format, args.suffix)
    model = model_file(args.model, args.step)
    translator = Translator.from_file(model, args.device, args.precision, args.backend)
    translator.require_rgb(model)
    if args.tile and args.overlap is not None and args.tile - args.overlap < translator.multiple:
        raise ValueError(f"--tile {args.tile} must exceed --overlap {args.overlap} by at least {translator.multiple}")
    inputs = {j.source.resolve() for j in jobs}
    ours = written_before(out)
    done: list[Job] = []
    skipped: list[tuple[Path, str]] = []
    start = time.perf_counter()
    bar = tqdm(total=len(jobs), unit="img", desc="translate", dynamic_ncols=True)

    def finish(batch: list[tuple[Job, Image.Image]]) -> None:
        try:
            outputs = translator(
                [image for _, image in batch], args.direction, batch_size=args.batch_size, tile=args.tile,
                overlap=args.overlap, smooth=args.smooth)
        except (RuntimeError, ValueError, MemoryError) as exc:  # out of memory, an image too small for the net
            if len(batch) > 1:  # one image the net cannot take must not sink the others
                for item in batch:
                    finish([item])
                return
            skipped.append((batch[0][0].source, f"translation failed ({str(exc).splitlines()[0]})"))
            bar.update(1)
            return
        for (job, image), result in zip(batch, outputs):
            try:
                _save(_side_by_side(image, result) if args.side_by_side else result, job.target, args.format, out)
                done.append(job)
            except OSError as exc:
                skipped.append((job.source, f"could not write {job.target} ({exc.strerror or exc})"))
            bar.update(1)

    batch: list[tuple[Job, Image.Image]] = []
    try:
        for job in jobs:
            if job.target.resolve() in inputs:
                skipped.append((job.source, f"its output {job.target} would overwrite an input; "
                                            "choose another --out or a --suffix"))
                bar.update(1)
                continue
            if job.target.exists() and job.target.relative_to(out).as_posix() not in ours:
                skipped.append((job.source, f"{job.target} already exists and was not written by translate apply; "
                                            "not replaced (choose another --out or a --suffix)"))
                bar.update(1)
                continue
            try:
                image = Image.fromarray(load_rgb(job.source))
            except DataError as exc:
                skipped.append((job.source, str(exc).removeprefix(f"{job.source}: ")))
                bar.update(1)
                continue
            if args.size:
                scale = args.size / min(image.size)
                width, height = max(1, round(image.width * scale)), max(1, round(image.height * scale))
                if width * height > MAX_PIXELS:
                    skipped.append((job.source, f"--size {args.size} would make it {width}x{height}, over the "
                                                f"{MAX_PIXELS / 1e6:.0f} megapixel limit"))
                    bar.update(1)
                    continue
                image = image.resize((width, height), Image.Resampling.LANCZOS)
            batch.append((job, image))
            if len(batch) == args.batch_size:
                finish(batch)
                batch = []
        if batch:
            finish(batch)
    finally:
        bar.close()
    status = summarize(done, skipped, out, time.perf_counter() - start)
    if args.html:
        from .gallery import title_of, write_gallery
        title = title_of(model, translator.meta, args.direction)
        print(f"index: {write_gallery(out, done, skipped, title, args.side_by_side)}")
    return status


def summarize(done: list[Job], skipped: list[tuple[Path, str]], out: Path, elapsed: float) -> int:
    """Print what was done and what was skipped (with reasons); return the exit status."""
    total = len(done) + len(skipped)
    print(f"translated {len(done)} of {total} images into {out} in {elapsed:.1f} s "
          f"({len(done) / max(elapsed, 1e-9):.2f} images/s)")
    if skipped:
        print(f"skipped {len(skipped)}:", file=sys.stderr)
        for path, reason in skipped:
            print(f"  {path}: {reason}", file=sys.stderr)
    if not skipped:
        return EXIT_OK
    return EXIT_PARTIAL if done else EXIT_NONE


def main(argv: list[str] | None = None) -> int:
    """`python -m translate.apply ...`, the same as `translate apply ...`."""
    from .cli import main as cli_main
    return cli_main(["apply", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
