"""`translate apply --html`: OUT/index.html (and index-2.html, ... past PAGE_SIZE rows), input beside output.

Everything the pages show lies inside OUT (outputs, and small copies of the inputs under `index_files/`) and is
linked relatively, so the folder can be moved or zipped as a whole. Thumbnails are shown at THUMB px whatever
their size; images smaller than that are scaled up with pixelated rendering, so 64 px outputs stay readable.
"""
from __future__ import annotations

import html
import os
from pathlib import Path
from urllib.parse import quote

PAGE_SIZE = 100
THUMB = 192  # px the images are shown at
INPUT_COPY_MAX = 512  # px: input copies larger than this are scaled down
CSS = """body{font:15px/1.4 system-ui,sans-serif;margin:1.5em;color:#222} h1{margin:.1em 0;font-size:1.5em}
.muted{color:#666} nav{margin:.8em 0} nav a,nav b{margin-right:.5em}
.grid{display:flex;flex-wrap:wrap;gap:14px} figure{margin:0;padding:6px;border:1px solid #ddd;border-radius:4px}
figure img{width:%dpx;height:auto;background:#f4f4f4} .wide img{width:%dpx} img.px{image-rendering:pixelated}
figcaption{font-size:12px;color:#555;max-width:%dpx;overflow-wrap:anywhere} .pair{display:flex;gap:6px}
.pair span{display:block;font-size:11px;color:#888}""" % (THUMB, 2 * THUMB, 2 * THUMB + 6)


def title_of(model: Path, meta: dict, direction: str) -> str:
    """'emoji-style-cyclegan (step 2,000): Noto -> Twemoji' from the model's path and metadata."""
    model = Path(model)
    run = model.parent.parent.name if model.parent.name == "models" else (
        model.parent.name if model.name == "model.safetensors" else model.stem)
    steps = meta.get("steps")
    domains = list(meta.get("domains") or ["A", "B"])
    src, tgt = domains if direction == "a2b" else domains[::-1]
    return f"{run}{f' (step {steps:,})' if isinstance(steps, int) else ''}: {src} → {tgt}"


def _link(path: Path, out: Path) -> str:
    return quote(Path(os.path.relpath(path, out)).as_posix())


def _img(path: Path, out: Path, label: str) -> str:
    from PIL import Image
    with Image.open(path) as image:
        small = max(image.size) < THUMB
    src = _link(path, out)
    return (f'<a href="{src}"><span>{label}</span><img src="{src}" alt="{html.escape(label)}" loading="lazy"'
            f'{" class=px" if small else ""}></a>')


def _input_copy(source: Path, target: Path, out: Path) -> Path:
    """A PNG copy of the input inside OUT/index_files/ (scaled down past INPUT_COPY_MAX px)."""
    from PIL import Image

    from .data import load_rgb
    copy = out / "index_files" / target.relative_to(out).with_suffix(".in.png")
    copy.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(load_rgb(source))
    image.thumbnail((INPUT_COPY_MAX, INPUT_COPY_MAX))
    image.save(copy)
    return copy


def _page_name(i: int) -> str:
    return "index.html" if i == 0 else f"index-{i + 1}.html"


def write_gallery(out: Path, done: list, skipped: list[tuple[Path, str]], title: str,
                  side_by_side: bool = False) -> Path:
    """Write the pages for `done` jobs (.source, .target) and the skipped (path, reason) list; returns the first.
    With side_by_side the outputs already hold the input, so it is not shown twice."""
    out = Path(out)
    cards = []
    for job in done:
        name = html.escape(str(job.source))
        if side_by_side:
            body = f'<div class="pair wide">{_img(job.target, out, "input | output")}</div>'
        else:
            body = (f'<div class="pair">{_img(_input_copy(job.source, job.target, out), out, "input")}'
                    f'{_img(job.target, out, "output")}</div>')
        cards.append(f"<figure>{body}<figcaption>{name}</figcaption></figure>")
    pages = [cards[i:i + PAGE_SIZE] for i in range(0, len(cards), PAGE_SIZE)] or [[]]
    bad = "".join(f"<li>{html.escape(str(p))}: {html.escape(r)}</li>" for p, r in skipped)
    for i, page_cards in enumerate(pages):
        links = (f"<b>{k + 1}</b>" if k == i else f'<a href="{_page_name(k)}">{k + 1}</a>' for k in range(len(pages)))
        nav = "" if len(pages) == 1 else "<nav>page " + "".join(links) + "</nav>"
        first = i * PAGE_SIZE
        page = (f"<!doctype html><html lang=en><meta charset=utf-8><title>{html.escape(title)}</title>"
                f"<style>{CSS}</style>\n<h1>{html.escape(title)}</h1>\n<p class=muted>{len(done)} translated, "
                f"{len(skipped)} skipped"
                + (f"; images {first + 1}-{first + len(page_cards)}" if len(pages) > 1 else "")
                + f"</p>{nav}\n<div class=grid>\n" + "\n".join(page_cards) + f"\n</div>{nav}\n"
                + (f"<h2>Skipped</h2><ul>{bad}</ul>\n" if skipped and i == 0 else "") + "</html>\n")
        (out / _page_name(i)).write_text(page, encoding="utf-8")
    return out / "index.html"
