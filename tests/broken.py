"""Real broken and unusual image files, made on the fly, for the bad-input tests."""
from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def _png_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **kw)
    return buf.getvalue()


def png_bomb(width: int, height: int) -> bytes:
    """A decompression bomb: a well-formed PNG claiming width x height pixels, with a tiny compressed stream."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) \
        + chunk(b"IEND", b"")


def make_unusual_but_valid(folder: Path) -> dict[str, Image.Image]:
    """Files that must load as correct RGB: grayscale, RGBA, palette+transparency, 16-bit, CMYK JPEG,
    EXIF-rotated JPEG, animated GIF. Returns name -> the image as written."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    out = {}
    out["gray.png"] = Image.fromarray(rng.integers(0, 256, (40, 40), dtype=np.uint8), "L")
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:20, :, 3] = 255  # top half opaque red, bottom half transparent (-> white)
    out["rgba.png"] = Image.fromarray(rgba, "RGBA")
    pal = Image.new("P", (40, 40), 0)
    pal.putpalette([0, 0, 255] + [0, 255, 0] * 255)
    pal.paste(1, (0, 0, 40, 20))
    pal.info["transparency"] = 1
    out["palette.png"] = pal
    out["deep16.png"] = Image.fromarray((np.arange(1600, dtype=np.uint16).reshape(40, 40) * 40), "I;16")
    out["cmyk.jpg"] = Image.new("CMYK", (40, 40), (0, 255, 255, 0))  # red in CMYK
    for name, img in out.items():
        img.save(folder / name, **({"transparency": 1} if name == "palette.png" else {}))
    exif_img = Image.new("RGB", (40, 20), "red")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 on display
    exif_img.save(folder / "exif.jpg", exif=exif)
    out["exif.jpg"] = exif_img
    frames = [Image.new("RGB", (40, 40), c) for c in ("blue", "yellow")]
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    out["anim.gif"] = frames[0]
    return out


def make_broken(folder: Path) -> dict[str, str]:
    """Files that must be rejected with a reason. Returns name -> a word the reason must contain."""
    folder.mkdir(parents=True, exist_ok=True)
    good = _png_bytes(Image.fromarray(np.full((64, 64, 3), 100, np.uint8)))
    (folder / "empty.png").write_bytes(b"")
    (folder / "truncated.png").write_bytes(good[: len(good) // 2])
    jpeg = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(jpeg, "JPEG")
    (folder / "truncated.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 3])
    (folder / "notes.png").write_text("this is not an image\n")
    (folder / "bomb.png").write_bytes(png_bomb(100_000, 100_000))
    return {"empty.png": "empty", "truncated.png": "truncated", "truncated.jpg": "truncated",
            "notes.png": "not an image", "bomb.png": "bomb"}
