"""Glyph pairs in two typefaces, DejaVu Sans (A) -> DejaVu Serif (B): an exact-ground-truth benchmark pair.

    python datasets/build_glyphs.py --out datasets/_build/glyphs --size 64

Each character is drawn black on white at the same size and the same pen position in both faces (horizontally
centred on its advance, on a fixed baseline), so file `0041.png` in A and in B is the same letter in two styles.
Files are named by code point (lowercase hex); train/test is a hash split by character. The fonts come from
matplotlib's wheel (a pinned dependency) or, failing that, the system's DejaVu fonts.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

CHARACTERS = ("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
              "&?@%$#ÀÁÂÄÅÇÈÉÊËÑÒÓÔÖØÙÚÛÜßàáâäåæçèéêëñòóôöøùúûüÿ"
              "ΑΒΓΔΕΖΗΘΙΚΛΜΝΞΟΠΡΣΤΥΦΧΨΩαβγδεζηθικλμνξοπρστυφχψω")
FONTS = {"A": "DejaVuSans.ttf", "B": "DejaVuSerif.ttf"}


def font_path(filename: str) -> Path:
    """A DejaVu font file: matplotlib's bundled copy first, then the usual system folder."""
    folders = [Path("/usr/share/fonts/truetype/dejavu")]
    try:
        import matplotlib
        folders.insert(0, Path(matplotlib.get_data_path()) / "fonts" / "ttf")
    except ImportError:
        pass
    for folder in folders:
        if (folder / filename).is_file():
            return folder / filename
    raise FileNotFoundError(f"{filename} not found in {', '.join(map(str, folders))}")


def in_test(char: str, fraction: float) -> bool:
    digest = hashlib.sha256(f"glyphs:{ord(char):04x}".encode()).digest()
    return int.from_bytes(digest[:8], "big") < fraction * 2**64


def render(char: str, font: ImageFont.FreeTypeFont, size: int) -> bytes:
    """One glyph, black on white RGB, centred on its advance with the baseline at 70% of the height."""
    image = Image.new("RGB", (size, size), "white")
    ImageDraw.Draw(image).text((size / 2, size * 0.7), char, font=font, fill="black", anchor="ms")
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def build_glyphs(out: Path, size: int = 64, characters: str = CHARACTERS,
                 test_fraction: float = 0.1) -> dict[str, int]:
    fonts = {domain: ImageFont.truetype(str(font_path(name)), round(size * 0.625))
             for domain, name in FONTS.items()}
    for char in characters:
        split = "test" if in_test(char, test_fraction) else "train"
        for domain, font in fonts.items():
            folder = out / f"{split}{domain}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{ord(char):04x}.png").write_bytes(render(char, font, size))
    return {d: len(list((out / d).glob("*.png"))) for d in ("trainA", "trainB", "testA", "testB")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="dataset root to write (must be empty or absent)")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    args = parser.parse_args(argv)
    if args.out.exists() and any(args.out.iterdir()):
        parser.error(f"{args.out} is not empty; remove it first so no stale file survives")
    print(json.dumps(build_glyphs(args.out, args.size)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
