"""`translate apply --html`: titled pages, inputs beside outputs, scaled up, paginated, movable; and picking a kept
model of a run with --step."""
import re
import shutil
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from PIL import Image

from test_inference import make_model
from translate import gallery
from translate.cli import main as cli_main

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run folder as training leaves it with --keep-every: model.safetensors and models/step_*.safetensors."""
    folder = tmp_path_factory.mktemp("runs") / "faces-cyclegan"
    (folder / "models").mkdir(parents=True)
    make_model(folder / "model.safetensors", meta={"steps": 30})
    for step in (10, 20):
        make_model(folder / "models" / f"step_{step:07d}.safetensors", seed=step, meta={"steps": step})
    return folder


@pytest.fixture
def inputs(tmp_path):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    for i in range(5):
        rng = np.random.default_rng(i)
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / ("sub" if i else ".")
                                                                                  / f"img {i}.png")
    return folder


def _links(page: str) -> list[str]:
    return [unquote(x) for x in re.findall(r'(?:src|href)="([^"#]+)"', page)]


def test_page_is_titled_scaled_up_paginated_and_works_when_moved(run, inputs, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(gallery, "PAGE_SIZE", 2)
    out = tmp_path / "out"
    assert cli_main(["apply", str(run), str(inputs), "--out", str(out), "--direction", "b2a", "--html"]) == 0
    assert "index: " in capsys.readouterr().out
    moved = tmp_path / "elsewhere" / "gallery"
    shutil.move(out, moved)
    shutil.rmtree(inputs)  # the page must not need the original inputs
    pages = sorted(moved.glob("index*.html"))
    assert [p.name for p in pages] == ["index-2.html", "index-3.html", "index.html"]
    first = (moved / "index.html").read_text()
    assert "<title>faces-cyclegan (step 30): dogs → cats</title>" in first
    assert "5 translated, 0 skipped; images 1-2" in first and 'href="index-3.html"' in first
    figures = sum(p.read_text().count("<figure>") for p in pages)
    assert figures == 5
    for page in pages:
        text = page.read_text()
        assert text.count('alt="input"') == text.count('alt="output"') == text.count("<figure>")
        assert 'class=px' in text  # 32 px images are drawn scaled up, pixelated
        for link in _links(text):
            assert not Path(link).is_absolute() and (moved / link).is_file(), link


def test_side_by_side_shows_the_input_once_and_step_picks_a_kept_model(run, inputs, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli_main(["apply", str(run), str(inputs / "img 0.png"), "--out", str(out), "--step", "20",
                     "--side-by-side", "--html"]) == 0
    page = (out / "index.html").read_text()
    assert "faces-cyclegan (step 20): cats → dogs" in page
    assert 'alt="input"' not in page and page.count('alt="input | output"') == 1
    assert not (out / "index_files").exists()


@pytest.mark.parametrize("args, message", [
    (["--step", "15"], "no model kept at step 15; kept steps: 10, 20"),
    (["--step", "10", "model"], "--step 10 needs a run folder"),
])
def test_a_missing_step_names_the_kept_ones(run, inputs, tmp_path, capsys, args, message):
    model = str(run / "model.safetensors") if args[-1] == "model" else str(run)
    assert cli_main(["apply", model, str(inputs), "--out", str(tmp_path / "o"), *args[:2]]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium (/usr/bin/chromium) is not installed")
def test_page_renders_in_the_browser_with_scaled_up_images(run, inputs, tmp_path):
    from playwright.sync_api import sync_playwright
    from test_report import CHROMIUM_FLAGS
    out = tmp_path / "out"
    assert cli_main(["apply", str(run), str(inputs), "--out", str(out), "--html"]) == 0
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 2000})  # all in view: lazy images load
            page.goto((out / "index.html").as_uri())
            # lazy images do not hold back the load event: wait until every one has decoded
            page.wait_for_function("[...document.querySelectorAll('figure img')].every(i => i.complete && "
                                   "i.naturalWidth > 0)")
            shown = page.eval_on_selector_all(
                "figure img", "imgs => imgs.map(i => [i.naturalWidth, i.getBoundingClientRect().width])")
        finally:
            browser.close()
    assert len(shown) == 10 and all(natural == 32 and width == gallery.THUMB for natural, width in shown)
