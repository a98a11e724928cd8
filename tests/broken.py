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


def _raw_png(width: int, height: int, depth: int, colour_type: int, rows: bytes) -> bytes:
    """A PNG written chunk by chunk, for what Pillow will not write (huge claimed sizes, 48-bit RGB)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def png_bomb(width: int, height: int) -> bytes:
    """A decompression bomb: a well-formed PNG claiming width x height pixels, with a tiny compressed stream."""
    return _raw_png(width, height, 1, 0, b"\0" * 1000)


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


def make_more_broken(folder: Path) -> dict[str, str]:
    """More files that must be rejected, as make_broken: a PNG whose image data fails its checksum, one claiming
    0x0 pixels, and a bomb over translate's own limit (64 MP) but under Pillow's (89 MP)."""
    folder.mkdir(parents=True, exist_ok=True)
    good = bytearray(_png_bytes(Image.fromarray(np.full((16, 16, 3), 50, np.uint8))))
    good[good.index(b"IDAT") + 6] ^= 0x55  # one flipped byte in the compressed stream
    (folder / "bad-crc.png").write_bytes(bytes(good))
    (folder / "zero-size.png").write_bytes(_raw_png(0, 0, 8, 2, b""))
    (folder / "bomb-81mp.png").write_bytes(png_bomb(9000, 9000))
    return {"bad-crc.png": "unreadable", "zero-size.png": "not an image", "bomb-81mp.png": "bomb"}


def make_edge_cases(folder: Path) -> dict[str, tuple[int, int]]:
    """Valid files at the edges, which must be translated or trained on: 1x1, smaller than a 32 px crop, a 300x1
    strip, bilevel, grey + alpha, 48-bit RGB, a JPEG named .png, an out-of-range EXIF orientation (ignored).
    Returns name -> (width, height) as loaded."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    Image.new("RGB", (1, 1), "red").save(folder / "one-pixel.png")
    Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(folder / "small.png")
    Image.fromarray(rng.integers(0, 256, (1, 300, 3), dtype=np.uint8)).save(folder / "strip.png")
    Image.fromarray(rng.integers(0, 2, (20, 24), dtype=np.uint8).astype(bool)).save(folder / "bilevel.png")
    Image.fromarray(rng.integers(0, 256, (20, 20, 2), dtype=np.uint8), "LA").save(folder / "gray-alpha.png")
    rows = b"".join(b"\0" + rng.integers(0, 65536, (8, 3)).astype(">u2").tobytes() for _ in range(6))
    (folder / "rgb48.png").write_bytes(_raw_png(8, 6, 16, 2, rows))
    Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(folder / "jpeg-named.png", "JPEG")
    exif = Image.Exif()
    exif[0x0112] = 9  # orientations run 1..8
    Image.new("RGB", (30, 10), "green").save(folder / "exif-9.jpg", exif=exif)
    return {"one-pixel.png": (1, 1), "small.png": (10, 12), "strip.png": (300, 1), "bilevel.png": (24, 20),
            "gray-alpha.png": (20, 20), "rgb48.png": (8, 6), "jpeg-named.png": (30, 20), "exif-9.jpg": (30, 10)}


def make_odd_models(folder: Path) -> dict[str, str]:
    """Model files that must be refused by name while the good ones are served: a domains list of one, a header
    claiming ngf 256 over tiny tensors, NaN weights, int8 weights, a symlink loop. Returns name -> a word its
    reason must contain. Also writes `partial.safetensors`: a config naming only ngf and n_blocks (the rest
    default), which must be served."""
    import dataclasses

    import torch

    from translate.checkpoint import export_model, write_model
    from translate.config import ModelConfig
    from translate.nets import build_generator

    folder.mkdir(parents=True, exist_ok=True)
    model = ModelConfig(ngf=8, n_blocks=1)
    torch.manual_seed(0)
    nets = {name: build_generator(model) for name in ("g_ab", "g_ba")}
    config = dataclasses.asdict(model)
    export_model(folder / "one-domain.safetensors", nets, {"model": config, "domains": ["cats"]})
    export_model(folder / "partial.safetensors", nets, {"model": {"ngf": 8, "n_blocks": 1}})
    write_model(folder / "claims-ngf-256.safetensors", {n: {"stem.weight": torch.zeros(1)} for n in nets},
                {"model": {**config, "ngf": 256}})
    states = {name: net.state_dict() for name, net in nets.items()}
    poisoned = {name: dict(state) for name, state in states.items()}
    first = next(iter(states["g_ab"]))
    poisoned["g_ab"][first] = torch.full_like(states["g_ab"][first], float("nan"))
    write_model(folder / "nan.safetensors", poisoned, {"model": config})
    write_model(folder / "int8.safetensors", {n: {k: v.to(torch.int8) for k, v in s.items()} for n, s in
                                              states.items()}, {"model": config})
    (folder / "loop-a.safetensors").symlink_to("loop-b.safetensors")
    (folder / "loop-b.safetensors").symlink_to("loop-a.safetensors")
    return {"one-domain.safetensors": "domains", "claims-ngf-256.safetensors": "do not fit",
            "nan.safetensors": "NaN", "int8.safetensors": "int8", "loop-a.safetensors": "loop",
            "loop-b.safetensors": "loop"}
