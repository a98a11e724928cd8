"""Render the embedded emoji datasets from pinned npm packages (SVG -> PNG with resvg-py), reproducibly.

    python datasets/build_emoji.py style --out datasets/emoji-style            # shipped: 3 categories, 64 px
    python datasets/build_emoji.py style --full --size 128 --out DIR           # every Noto/Twemoji pair (~1,680)
    python datasets/build_emoji.py expression --out datasets/emoji-expression  # shipped
    python datasets/build_emoji.py openmoji --out DIR                          # line art -> colour (CC-BY-SA)

Files are keyed by Unicode code point (lowercase hex joined by '-', without 'fe0f'). Images are RGB on white,
losslessly compressed PNG without metadata: the same package versions, tool versions and size give the same bytes.
Train/test membership hashes the emoji key, so a subset (--only) lands in the same folders as the full build.
The npm tarballs are fetched once with `npm pack` into datasets/_cache/; nothing else touches the network.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import resvg_py
from PIL import Image

HERE = Path(__file__).resolve().parent
CACHE = HERE / "_cache"

PACKAGES = {  # short name -> pinned npm package
    "noto": "@iconify-json/noto@1.2.9",
    "twemoji": "@iconify-json/twemoji@1.2.5",
    "blob": "@iconify-json/noto-v1@1.2.5",
    "emojitwo": "@iconify-json/emojione@1.2.3",
    "streamline": "@iconify-json/streamline-emojis@1.2.4",
    "openmoji": "openmoji@17.0.0",
}
STYLE_CATEGORIES = ("Smileys & Emotion", "Animals & Nature", "Food & Drink")
SKIN_TONES = {"1f3fb", "1f3fc", "1f3fd", "1f3fe", "1f3ff"}
EXPRESSION_DESIGNS = ("noto", "blob", "twemoji", "emojitwo", "streamline")

# Expression editing: A = not smiling (neutral, sad, worried, angry), B = smiling. Faces with props that
# change more than the expression (tissue, mask, party hat, hugging hands, rotated) are left out.
NOT_SMILING = ("1f610 1f611 1f636 1f641 2639 1f626 1f627 1f61f 1f615 1f61e 1f625 1f614 1f622 1f62d 1f620 1f621 "
               "1f623 1f616 1f629 1f62b 1f630 1f613 1f628 1f612 1f624 1f97a 1f63f 1f63e 1f640").split()
SMILING = ("1f600 1f603 1f604 1f601 1f606 1f605 1f602 1f642 1f60a 263a 1f607 1f60d 1f970 1f60e 1f609 1f60b "
           "1f929 1f60c 1f63a 1f638 1f639 1f63b 1f63c").split()
# Same-design ground truth: the closest smiling counterpart of a non-smiling face.
EXPRESSION_PAIRS = (("1f641", "1f642"), ("1f610", "1f642"), ("2639", "263a"), ("1f626", "1f603"),
                    ("1f613", "1f605"), ("1f614", "1f60c"), ("1f62d", "1f602"), ("1f63f", "1f639"),
                    ("1f63e", "1f63a"))


def emoji_key(codepoints: str) -> str:
    """'1F636-200D-1F32B-FE0F' -> '1f636-200d-1f32b'."""
    return "-".join(p for p in codepoints.lower().split("-") if p != "fe0f")


def in_test(key: str, fraction: float, salt: str) -> bool:
    """Hash split: stable per key, independent of which other keys are built."""
    digest = hashlib.sha256(f"{salt}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") < fraction * 2**64


def fetch(name: str, cache: Path = CACHE) -> Path:
    """The cached npm tarball of a pinned package; `npm pack` fetches it on first use."""
    spec = PACKAGES[name]
    package, version = spec.rsplit("@", 1)
    tarball = cache / f"{package.lstrip('@').replace('/', '-')}-{version}.tgz"
    if not tarball.exists():
        if shutil.which("npm") is None:
            raise RuntimeError(f"{tarball} is not cached and npm is not installed to fetch {spec}")
        cache.mkdir(parents=True, exist_ok=True)
        try:
            result = subprocess.run(["npm", "pack", spec, "--pack-destination", str(cache)],
                                    capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"npm pack {spec} took over 300 s") from None
        if result.returncode != 0 or not tarball.exists():
            raise RuntimeError(f"npm pack {spec} failed: {result.stderr.strip()[-500:]}")
    return tarball


def render(svg: str, size: int) -> bytes:
    """SVG -> size x size RGB PNG on white; deterministic bytes (no metadata, fixed encoder settings)."""
    rgba = Image.open(io.BytesIO(resvg_py.svg_to_bytes(svg_string=svg, width=size, height=size,
                                                       skip_system_fonts=True))).convert("RGBA")
    rgb = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    out = io.BytesIO()
    rgb.save(out, format="PNG", optimize=True)
    return out.getvalue()


class IconSet:
    """One Iconify JSON package: icon SVG by name, code point <-> name where the package says so."""

    def __init__(self, name: str, cache: Path = CACHE):
        with tarfile.open(fetch(name, cache)) as tar:
            data = {part: json.load(tar.extractfile(f"package/{part}.json"))
                    for part in ("info", "icons", "chars", "metadata")}
        self.info = data["info"]
        self.icons, self.aliases = data["icons"]["icons"], data["icons"].get("aliases", {})
        self.width, self.height = data["icons"].get("width", 16), data["icons"].get("height", 16)
        self.names = {emoji_key(cp): name for cp, name in data["chars"].items()}
        self.categories = data["metadata"].get("categories", {})

    def find(self, name: str) -> str | None:
        """The icon name this set uses for a CLDR-style emoji name ('crying-cat' may be 'crying-cat-face-1')."""
        cat_face = "-".join("cat-face" if t == "cat" else t for t in name.split("-"))
        for candidate in (name, cat_face, f"{name}-1", f"{cat_face}-1"):
            if candidate in self.icons or candidate in self.aliases:
                return candidate
        return None

    def svg(self, name: str) -> str:
        while name in self.aliases:
            name = self.aliases[name]["parent"]
        icon = self.icons[name]
        width, height = icon.get("width", self.width), icon.get("height", self.height)
        side = max(width, height)  # a square view box, the icon centred in it
        box = (icon.get("left", 0) - (side - width) / 2, icon.get("top", 0) - (side - height) / 2, side, side)
        return (f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
                f'viewBox="{" ".join(f"{v:g}" for v in box)}">{icon["body"]}</svg>')


def write(out: Path, folder: str, filename: str, png: bytes) -> None:
    (out / folder).mkdir(parents=True, exist_ok=True)
    (out / folder / filename).write_bytes(png)


def counts(out: Path) -> dict[str, int]:
    return {d: len(list((out / d).glob("*.png"))) for d in ("trainA", "trainB", "testA", "testB")}


def build_style(out: Path, size: int = 64, full: bool = False, only: list[str] | None = None,
                test_fraction: float = 0.1, cache: Path = CACHE) -> dict[str, int]:
    """Noto (A) -> Twemoji (B), same file name = same emoji. Default: three categories; full: every emoji
    both sets have, skin-tone variants excepted; only: just these emoji keys (as `emoji_key` writes them)."""
    noto, twemoji = IconSet("noto", cache), IconSet("twemoji", cache)
    if full:
        keys = {k for k in noto.names if not SKIN_TONES & set(k.split("-"))}
    else:
        in_categories = {n for c in STYLE_CATEGORIES for n in noto.categories[c]}
        keys = {k for k, n in noto.names.items() if n in in_categories}
    keys &= set(twemoji.names)
    if only is not None:
        keys &= set(only)
    for key in sorted(keys):
        split = "test" if in_test(key, test_fraction, "emoji-style") else "train"
        write(out, f"{split}A", f"{key}.png", render(noto.svg(noto.names[key]), size))
        write(out, f"{split}B", f"{key}.png", render(twemoji.svg(twemoji.names[key]), size))
    return counts(out)


def build_expression(out: Path, size: int = 64, designs: tuple[str, ...] = EXPRESSION_DESIGNS,
                     test_fraction: float = 0.2, cache: Path = CACHE) -> dict[str, int]:
    """Non-smiling (A) -> smiling (B) faces over several designs, files '<design>_<key>.png', plus pairs.csv.

    A face and its paired counterpart share one split (the split hashes design and pair group)."""
    cldr_names = IconSet("noto", cache).names | IconSet("twemoji", cache).names
    group = {key: key for key in NOT_SMILING + SMILING}
    for a, b in EXPRESSION_PAIRS:  # union of the pair graph: each face joins the group of its partner
        group.update({k: group[a] for k, g in group.items() if g == group[b]})
    files: dict[tuple[str, str], tuple[str, str]] = {}  # (design, key) -> (split, path under out)
    for design in designs:
        icons = IconSet(design, cache)
        for domain, keys in (("A", NOT_SMILING), ("B", SMILING)):
            for key in keys:
                name = icons.find(cldr_names[key])
                if name is None:
                    continue
                split = "test" if in_test(f"{design}:{group[key]}", test_fraction, "emoji-expression") else "train"
                write(out, f"{split}{domain}", f"{design}_{key}.png", render(icons.svg(name), size))
                files[design, key] = split, f"{split}{domain}/{design}_{key}.png"
    with open(out / "pairs.csv", "w", newline="") as handle:
        table = csv.writer(handle, lineterminator="\n")
        table.writerow(["design", "a_file", "b_file", "split"])
        for design in designs:
            for a, b in EXPRESSION_PAIRS:
                if (design, a) in files and (design, b) in files:
                    (split, a_file), (_, b_file) = files[design, a], files[design, b]
                    table.writerow([design, a_file, b_file, split])
    return counts(out)


def build_openmoji(out: Path, size: int = 64, only: list[str] | None = None, test_fraction: float = 0.1,
                   cache: Path = CACHE) -> dict[str, int]:
    """OpenMoji line art (A) -> colour (B), pixel aligned; standard emoji without skin-tone variants."""
    with tarfile.open(fetch("openmoji", cache)) as tar:  # one sequential pass: gzip has no random access
        files = {m.name: tar.extractfile(m).read() for m in tar if m.isfile() and m.name.endswith((".svg", ".json"))}
    for entry in json.loads(files["package/data/openmoji.json"]):
        key = emoji_key(entry["hexcode"])
        if entry["skintone"] or entry["group"].startswith("extras") or (only is not None and key not in only):
            continue
        split = "test" if in_test(key, test_fraction, "openmoji") else "train"
        for domain, folder in (("A", "black"), ("B", "color")):
            svg = files[f"package/{folder}/svg/{entry['hexcode']}.svg"].decode()
            write(out, f"{split}{domain}", f"{key}.png", render(svg, size))
    return counts(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["style", "expression", "openmoji"])
    parser.add_argument("--out", type=Path, required=True, help="dataset root to write (must be empty or absent)")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    parser.add_argument("--full", action="store_true", help="style: every Noto/Twemoji pair, not 3 categories")
    parser.add_argument("--only", help="style, openmoji: comma-separated emoji keys to build (a subset)")
    parser.add_argument("--cache", type=Path, default=CACHE, help="where npm tarballs are kept")
    args = parser.parse_args(argv)
    if args.out.exists() and any(args.out.iterdir()):
        parser.error(f"{args.out} is not empty; remove it first so no stale file survives")
    only = [emoji_key(k) for k in args.only.split(",")] if args.only else None
    if args.kind == "style":
        result = build_style(args.out, args.size, args.full, only, cache=args.cache)
    elif args.kind == "expression":
        result = build_expression(args.out, args.size, cache=args.cache)
    else:
        result = build_openmoji(args.out, args.size, only, cache=args.cache)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
