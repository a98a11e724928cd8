"""Dataset tools: `prepare` two folders into trainA/trainB/testA/testB, and `inspect` a dataset root.

    translate data prepare photos/ paintings/ --out data/photo2paint --test-fraction 0.1 --size 256
    translate data inspect data/photo2paint

prepare decodes every file fully; unreadable ones are listed in the report (printed and saved as
`prepare_report.json` in the output root), never copied. Identical files (same bytes) are kept once per domain.
The split hashes each file's content with the seed, so it depends neither on file names nor on listing order.
Without --size files are copied byte for byte (extension kept); with --size the shorter side is resized to SIZE
(aspect kept, Lanczos) and the result is written as RGB PNG (transparency composited on white).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

from PIL import Image

from .checkpoint import atomic_write
from .data import DataError, check_image, list_images, load_rgb

SPLITS = ("trainA", "trainB", "testA", "testB")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _problem(path: Path) -> str | None:
    """Why the file is unusable (cheap header/CRC check, then a full decode), or None."""
    reason = check_image(path)
    if reason is None:
        try:
            load_rgb(path)
        except DataError as exc:
            reason = str(exc).removeprefix(f"{path}: ")
    return reason


def _hidden(file: Path, source: Path) -> bool:
    """Whether a file under `source` is hidden or inside a hidden folder (.git, .ipynb_checkpoints, ._x.jpg)."""
    return any(part.startswith(".") for part in file.relative_to(source).parts)


def _short_side(path: Path) -> int:
    with Image.open(path) as img:
        return min(img.size)


def _resized(path: Path, size: int) -> Image.Image:
    """The image as RGB with its shorter side resized to `size`, aspect kept."""
    img = Image.fromarray(load_rgb(path))
    scale = size / min(img.size)
    return img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.LANCZOS)


def _out_name(source: Path, file: Path, taken: set[str], digest: str, suffix: str) -> str:
    """Flatten the path under the source folder ('a/b.png' -> 'a-b.png'); add a hash on a clash."""
    stem = "-".join(file.relative_to(source).with_suffix("").parts)
    name = f"{stem}{suffix}"
    if name.lower() in taken:
        name = f"{stem}-{digest[:8]}{suffix}"
    taken.add(name.lower())
    return name


def prepare(src_a: str | Path, src_b: str | Path, out: str | Path, test_fraction: float = 0.1,
            size: int | None = None, seed: int = 0, overwrite: bool = False) -> dict:
    """Make `out`/trainA, trainB, testA, testB from two folders; returns (and saves) the report.

    Each domain's test share is round(test_fraction * unique files), at least one file stays in train; a split
    folder that would be empty is not made. Raises DataError when a source has no images or no readable image,
    or when `out` already holds a split folder that is not empty (unless overwrite, which replaces those
    folders once both sources have been read).
    """
    if not 0 <= test_fraction < 1:
        raise DataError(f"--test-fraction must be in [0, 1), got {test_fraction}")
    if size is not None and size < 1:
        raise DataError(f"--size must be a positive number of pixels, got {size}")
    out = Path(out)
    _check_apart((Path(src_a), Path(src_b)), out)
    occupied = [out / split for split in SPLITS if (out / split).is_dir() and any((out / split).iterdir())]
    if occupied and not overwrite:
        raise DataError(f"{occupied[0]}: already exists and is not empty (add --overwrite to replace it)")
    report = {"settings": {"src_a": str(src_a), "src_b": str(src_b), "out": str(out),
                           "test_fraction": test_fraction, "size": size, "seed": seed}, "domains": {}}
    plans = {}
    for domain, source in (("A", Path(src_a)), ("B", Path(src_b))):
        listed = list_images(source)
        files = [f for f in listed if not _hidden(f, source)]
        if not files:
            raise DataError(f"{source}: its only images are in hidden folders or files (names starting with '.')")
        unique, duplicates, unreadable, upscaled = {}, [], [], []
        for file in files:
            digest = _sha256(file)
            if digest in unique:
                duplicates.append({"file": str(file), "same_as": str(unique[digest])})
                continue
            reason = _problem(file)
            if reason is None:
                unique[digest] = file
                if size and _short_side(file) < size:
                    upscaled.append(str(file))
            else:
                unreadable.append({"file": str(file), "reason": reason})
        if not unique:
            raise DataError(f"{source}: none of its {len(files)} images is readable")
        order = sorted(unique, key=lambda d: hashlib.sha256(f"{seed}:{d}".encode()).hexdigest())
        n_test = min(round(test_fraction * len(order)), len(order) - 1)
        plans[domain] = (source, unique, set(order[:n_test]))
        report["domains"][domain] = {"found": len(files), "copied": len(unique), "train": len(order) - n_test,
                                     "test": n_test, "duplicates": duplicates, "unreadable": unreadable,
                                     "hidden_skipped": len(listed) - len(files), "upscaled": upscaled}
    made_out = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=out, prefix=".prepare-"))
    except OSError as exc:
        raise DataError(f"{out}: cannot create the dataset there ({exc.strerror or exc})") from None
    try:
        _write_splits(plans, staging, size)
        for folder in occupied:  # only now that both sources were read and every output was written
            shutil.rmtree(folder)
        for split in staging.iterdir():
            split.rename(out / split.name)
        atomic_write(out / "prepare_report.json", (json.dumps(report, indent=2) + "\n").encode())
    except OSError as exc:
        raise DataError(f"{out}: could not write the dataset ({exc.strerror or exc}"
                        f"{f': {exc.filename}' if exc.filename else ''}); partial output removed") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if made_out and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
    return report


def _check_apart(sources: tuple[Path, ...], out: Path) -> None:
    """DataError unless `out` lies outside every source and no source lies inside a split folder of `out`:
    prepare never writes among its inputs, and --overwrite can never delete them."""
    target = out.resolve()
    for source in sources:
        src = source.resolve()
        if target == src or src in target.parents:
            raise DataError(f"--out {out} is inside the input folder {source}: prepare never writes among its "
                            "inputs; choose an --out outside both input folders")
        for split in SPLITS:
            if src == target / split or (target / split) in src.parents:
                raise DataError(f"the input folder {source} is inside {out / split}, which prepare would replace; "
                                "choose another --out, e.g. a new folder")


def _write_splits(plans: dict, root: Path, size: int | None) -> None:
    """Write each domain's files into root/trainX and root/testX."""
    for domain, (source, unique, test) in plans.items():
        taken: dict[str, set[str]] = {"train": set(), "test": set()}
        for digest, file in sorted(unique.items(), key=lambda item: item[1]):
            split = "test" if digest in test else "train"
            folder = root / f"{split}{domain}"
            folder.mkdir(parents=True, exist_ok=True)
            name = _out_name(source, file, taken[split], digest, ".png" if size else file.suffix)
            if size:
                _resized(file, size).save(folder / name, format="PNG", optimize=True)
            else:
                shutil.copyfile(file, folder / name)


def inspect(root: str | Path) -> dict:
    """Per split folder: file count, size and mode histograms, corrupt files (decoded fully); plus problems.

    `problems` lists what makes the root unusable for training: a missing or empty (no readable image)
    trainA or trainB. A missing test folder is fine; corrupt files are reported but not a problem by themselves.
    """
    root = Path(root)
    result: dict = {"root": str(root), "splits": {}, "problems": []}
    for split in SPLITS:
        folder = root / split
        if not folder.is_dir():
            if split.startswith("train"):
                result["problems"].append(f"{folder}: missing")
            continue
        try:
            files = list_images(folder)
        except DataError:
            files = []
        sizes, modes, corrupt = Counter(), Counter(), []
        for file in files:
            reason = _problem(file)
            if reason is not None:
                corrupt.append({"file": str(file), "reason": reason})
                continue
            with Image.open(file) as img:
                sizes[f"{img.width}x{img.height}"] += 1
                modes[img.mode] += 1
        result["splits"][split] = {"files": len(files), "readable": len(files) - len(corrupt),
                                   "sizes": dict(sizes.most_common()), "modes": dict(modes.most_common()),
                                   "corrupt": corrupt}
        if split.startswith("train") and len(files) == len(corrupt):
            result["problems"].append(f"{folder}: no readable image")
    return result


def _histogram(counts: dict[str, int], top: int = 3) -> str:
    items = [f"{key} ({n})" for key, n in list(counts.items())[:top]]
    return ", ".join(items) + (f", +{len(counts) - top} more" if len(counts) > top else "") or "-"


def format_inspect(result: dict) -> str:
    rows = [("split", "files", "corrupt", "sizes", "modes")]
    rows += [(split, str(info["files"]), str(len(info["corrupt"])), _histogram(info["sizes"]),
              _histogram(info["modes"])) for split, info in result["splits"].items()]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]:<{widths[3]}}  {r[4]}"
             for r in rows]
    lines += [f"corrupt: {c['file']}: {c['reason']}" for info in result["splits"].values() for c in info["corrupt"]]
    lines += [f"problem: {p}" for p in result["problems"]]
    return "\n".join(lines)


def format_prepare(report: dict) -> str:
    lines = []
    for domain, info in report["domains"].items():
        lines.append(f"domain {domain}: {info['found']} found, {info['copied']} copied "
                     f"({info['train']} train, {info['test']} test), {len(info['duplicates'])} duplicates skipped, "
                     f"{len(info['unreadable'])} unreadable")
        lines += [f"  unreadable: {u['file']}: {u['reason']}" for u in info["unreadable"]]
        if info.get("hidden_skipped"):
            lines.append(f"  skipped {info['hidden_skipped']} image(s) in hidden folders or files (names starting "
                         "with '.')")
        if info.get("upscaled"):
            lines.append(f"  upscaled {len(info['upscaled'])} image(s) smaller than --size "
                         f"{report['settings']['size']} (they will look soft), e.g. {info['upscaled'][0]}")
    lines.append(f"report: {Path(report['settings']['out']) / 'prepare_report.json'}")
    return "\n".join(lines)


def add_parser(sub) -> None:
    """`translate data prepare|inspect ...`."""
    data = sub.add_parser("data", help="prepare and inspect datasets", description=__doc__,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = data.add_subparsers(dest="data_command", metavar="{prepare,inspect}")
    p = commands.add_parser("prepare", help="two image folders -> trainA/trainB/testA/testB")
    p.add_argument("src_a", type=Path, help="folder of domain A images (searched recursively)")
    p.add_argument("src_b", type=Path, help="folder of domain B images (searched recursively)")
    p.add_argument("--out", type=Path, required=True, help="dataset root to create")
    p.add_argument("--test-fraction", type=float, default=0.1, help="share of each domain held out (default 0.1)")
    p.add_argument("--size", type=int, help="resize the shorter side to SIZE (aspect kept) and save PNG")
    p.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    p.add_argument("--overwrite", action="store_true", help="replace existing split folders in --out")
    i = commands.add_parser("inspect", help="counts, sizes, modes and corrupt files of a dataset root")
    i.add_argument("root", type=Path, help="folder holding trainA/ trainB/ (and optionally testA/ testB/)")
    i.add_argument("--json", action="store_true", help="print the full result as JSON")
    data.set_defaults(func=run, data_parser=data)


def run(args: argparse.Namespace) -> int:
    """Exit status: 0 done, 1 when inspect finds a missing or empty domain, 2 without a subcommand; DataError
    goes to the CLI."""
    if args.data_command is None:
        args.data_parser.print_usage(sys.stderr)
        print("translate data: error: choose a subcommand:\n"
              "  translate data prepare FOLDER_A FOLDER_B --out ROOT [--test-fraction 0.1] [--size 286] [--overwrite]\n"
              "  translate data inspect ROOT [--json]", file=sys.stderr)
        return 2
    if args.data_command == "prepare":
        print(format_prepare(prepare(args.src_a, args.src_b, args.out, args.test_fraction, args.size,
                                     args.seed, args.overwrite)))
        return 0
    result = inspect(args.root)
    print(json.dumps(result, indent=2) if args.json else format_inspect(result))
    return 1 if result["problems"] else 0
