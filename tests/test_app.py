"""The Gradio app: its functions in-process, a live server through gradio_client, and a real browser."""
import importlib.util
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from broken import png_bomb
from test_inference import make_model

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]

spec = importlib.util.spec_from_file_location("app", ROOT / "app.py")
app = importlib.util.module_from_spec(spec)
spec.loader.exec_module(app)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A style model (task in its metadata), an expression model (task from its name), a corrupt file, a model
    in a subfolder, and a symlink to a model outside the folder."""
    base = tmp_path_factory.mktemp("app")
    folder = base / "checkpoints"
    folder.mkdir()
    make_model(folder / "emoji-style.safetensors", half=True,
               meta={"task": "style", "domains": ["Noto", "Twemoji"], "steps": 12000})
    make_model(folder / "emoji-expression.safetensors", seed=1, meta={"domains": ["neutral", "smiling"]})
    (folder / "broken.safetensors").write_bytes(b"\0" * 100)
    (folder / "nested").mkdir()
    make_model(folder / "nested" / "hidden.safetensors")
    make_model(base / "outside.safetensors")
    (folder / "escape.safetensors").symlink_to(base / "outside.safetensors")
    return folder


@pytest.fixture(scope="module")
def store(checkpoints):
    return app.ModelStore(checkpoints, device="cpu")


def _image(tmp_path, name, array, mode=None) -> str:
    path = tmp_path / name
    Image.fromarray(array, mode).save(path)
    return str(path)


def test_models_are_found_by_task_and_only_inside_the_folder(store, checkpoints):
    assert store.names("style") == ["emoji-style.safetensors"]
    assert store.names("expression") == ["emoji-expression.safetensors"]
    assert "escape.safetensors" in store.problems and "outside" in store.problems["escape.safetensors"]
    assert "not a readable safetensors model" in store.problems["broken.safetensors"]
    for name in ("../outside.safetensors", str(checkpoints.parent / "outside.safetensors"), "escape.safetensors",
                 "nested/hidden.safetensors", "broken.safetensors"):
        with pytest.raises(gr.Error, match="Unknown model"):
            store.get(name)
    card = app.model_card(store.get("emoji-style.safetensors"))
    assert "cyclegan" in card and "Noto ↔ Twemoji" in card and "12,000" in card


@pytest.mark.parametrize("shape,mode", [((53, 37, 3), None), ((30, 20), "L"), ((41, 41, 4), "RGBA")])
def test_translate_keeps_size_for_any_mode(store, tmp_path, shape, mode):
    path = _image(tmp_path, "in.png", np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8), mode)
    out, cycle, note = app.translate_image(store, "emoji-style.safetensors", "b2a", path, 1.0, True, False)
    assert out.size == cycle.size == (shape[1], shape[0]) and out.mode == "RGB"
    assert note.endswith(f"{shape[1]}x{shape[0]} px") and " ms on cpu, " in note and "(2 passes)" in note


@pytest.mark.parametrize("shape,size", [((53, 37, 3), (32, 46)), ((16, 20, 3), (40, 32)), ((32, 40, 3), (40, 32))])
def test_translate_at_the_model_training_size_by_default(store, tmp_path, shape, size):
    """The test models were trained at 32 px: an image's shorter side is scaled to 32, up or down."""
    path = _image(tmp_path, "in.png", np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8))
    out, _, note = app.translate_image(store, "emoji-style.safetensors", "a2b", path, 1.0, False)
    assert out.size == size
    assert note.endswith(f"{size[0]}x{size[1]} px" + ("" if size == shape[1::-1] else
                                                      f" (scaled from {shape[1]}x{shape[0]})"))


def test_strength_blends_input_and_translation(store, tmp_path):
    array = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    path = _image(tmp_path, "in.png", array)
    full, none, _ = app.translate_image(store, "emoji-expression.safetensors", "a2b", path, 1.0, False)
    half = app.translate_image(store, "emoji-expression.safetensors", "a2b", path, 0.5, False)[0]
    same = app.translate_image(store, "emoji-expression.safetensors", "a2b", path, 0.0, False)[0]
    assert none is None and np.array_equal(np.asarray(same), array)
    expected = (array.astype(float) + np.asarray(full, float)) / 2
    assert np.abs(np.asarray(half, float) - expected).max() <= 1


def test_smooth_checkbox_smooths_the_translation(store, tmp_path):
    path = _image(tmp_path, "in.png", np.random.default_rng(3).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    plain = app.translate_image(store, "emoji-style.safetensors", "a2b", path, 1.0, False)[0]
    smoothed = app.translate_image(store, "emoji-style.safetensors", "a2b", path, 1.0, False, smooth=True)[0]
    with Image.open(path) as image:  # 32 px, the test model's training size: not scaled
        want = store.get("emoji-style.safetensors")(image, smooth=True)
    assert np.array_equal(np.asarray(smoothed), np.asarray(want))
    assert not np.array_equal(np.asarray(smoothed), np.asarray(plain))


def test_large_images_are_downscaled_and_huge_ones_refused(store, tmp_path, monkeypatch):
    path = _image(tmp_path, "wide.png", np.zeros((300, 400, 3), np.uint8))
    out, _, note = app.translate_image(store, "emoji-style.safetensors", "a2b", path, 1.0, False, False, max_side=64)
    assert out.size == (64, 48) and "scaled from 400x300" in note
    out, _, _ = app.translate_image(store, "emoji-style.safetensors", "a2b", path, 1.0, False, max_side=40)
    assert out.size == (40, 30)  # the model's 32 px shorter side would make it 43 px wide
    monkeypatch.setattr(app, "MAX_PIXELS", 110_000)
    with pytest.raises(gr.Error, match="wide.png is 400x300 = 0.1 megapixels; this app takes images up to 0.1"):
        app.translate_image(store, "emoji-style.safetensors", "a2b", path, 1.0, False)


def test_bad_uploads_get_a_clear_message(store, tmp_path):
    with pytest.raises(gr.Error, match="Upload an image first"):
        app.translate_image(store, "emoji-style.safetensors", "a2b", None, 1.0, False)
    (tmp_path / "notes.png").write_text("hello")
    with pytest.raises(gr.Error, match="notes.png: not an image"):
        app.translate_image(store, "emoji-style.safetensors", "a2b", str(tmp_path / "notes.png"), 1.0, False)
    (tmp_path / "bomb.png").write_bytes(png_bomb(100_000, 100_000))
    with pytest.raises(gr.Error, match="bomb.png: far too many pixels"):
        app.translate_image(store, "emoji-style.safetensors", "a2b", str(tmp_path / "bomb.png"), 1.0, False)
    with pytest.raises(gr.Error, match="Unknown direction"):
        app.translate_image(store, "emoji-style.safetensors", "up", str(tmp_path / "notes.png"), 1.0, False)


def test_app_without_models_says_how_to_add_one(tmp_path):
    demo = app.build_app(app.ModelStore(tmp_path))
    texts = [b.value or "" for b in demo.blocks.values() if isinstance(b, gr.Markdown)]  # some start empty
    assert any("No style transfer model" in t for t in texts) and any("No expression editing model" in t for t in texts)


# --- a live server -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(checkpoints, tmp_path_factory):
    """`python app.py` on a free port, as a user starts it."""
    spec = importlib.util.spec_from_file_location("load_benchmark", ROOT / "benchmarks" / "load.py")
    load = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(load)
    with load.serve(checkpoints, tmp_path_factory.mktemp("server")) as (url, _, _):
        yield url


def test_live_server_with_gradio_client(server, tmp_path):
    from gradio_client import Client, handle_file
    client = Client(server, verbose=False, analytics_enabled=False, download_files=str(tmp_path / "downloads"))
    path = _image(tmp_path, "face.png", np.random.default_rng(2).integers(0, 256, (53, 37, 4), dtype=np.uint8),
                  "RGBA")
    out, cycle, note = client.predict("emoji-expression.safetensors", "b2a", handle_file(path), 0.7, True, False,
                                      api_name="/translate_expression")
    with Image.open(out) as translated, Image.open(cycle) as reconstructed:
        assert translated.size == reconstructed.size == (37, 53)
    assert "ms on cpu, " in note and "(2 passes)" in note
    with pytest.raises(Exception, match="not in the list of choices"):  # and ModelStore.get would refuse it too
        client.predict("../outside.safetensors", "a2b", handle_file(path), 1.0, False, True, api_name="/translate_style")



def test_uploads_over_the_size_limit_are_refused(server):
    import httpx
    big = b"\0" * (21 * 1024 * 1024)
    response = httpx.post(f"{server}gradio_api/upload", files={"files": ("big.png", big, "image/png")})
    assert response.status_code == 413 and "maximum allowed size of 20971520 bytes" in response.text


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium (/usr/bin/chromium) is not installed")
def test_browser_upload_translate_and_no_outside_requests(server, tmp_path):
    from playwright.sync_api import sync_playwright
    path = _image(tmp_path, "odd.png", np.random.default_rng(3).integers(0, 256, (53, 37, 3), dtype=np.uint8))
    outside = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("request", lambda r: None if r.url.startswith((server, "data:", "blob:")) else outside.append(r.url))
            page.goto(server)
            page.set_input_files("#style-input input[type=file]", path)
            page.wait_for_selector("#style-input img", timeout=30_000)
            page.click("#style-translate")
            page.wait_for_selector("#style-output img", timeout=60_000)
            page.wait_for_function("document.querySelector('#style-output img').naturalWidth > 0")
            size = page.eval_on_selector("#style-output img", "img => [img.naturalWidth, img.naturalHeight]")
            assert size == [32, 46]  # at the model's 32 px training size, the default
            assert "ms on cpu" in page.inner_text("#style-timing") and "scaled from 37x53" in page.inner_text(
                "#style-timing")
            page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
        finally:
            browser.close()
    assert outside == []  # no request leaves the machine


def test_train_tab_offers_every_recipe_the_cli_has():
    from translate.recipes import DEFAULT_RECIPE, RECIPES
    assert [name for _, name in app.RECIPES] == list(RECIPES)
    assert app.RECIPES[0][1] == DEFAULT_RECIPE  # the default first
