"""The app's Train tab: data staging and checks, the training subprocess (killed, raced), and the tab end to end in
Chromium (upload, start, samples, stop, resume, translate with the new model)."""
import importlib.util
import os
import signal
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import make_toy_dataset
from translate import app_training
from translate.app_training import DataRoot, DomainData, Trainings, TrainingError, stage_uploads, train_flags
from translate.run_folder import saved_step

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TINY = {"ngf": 8, "n-blocks": 1, "ndf": 8, "batch-size": 2, "ema": None, "workers": 0, "log-every": 5,
        "sample-every": 1000, "save-every": 5}  # a sample grid (and the report) only at the end: they take seconds
IMG = np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)


def _tiny_flags(data: Path, name: str, runs: Path, steps: int) -> list[str]:
    return train_flags(data / "trainA", data / "trainB", name, runs, "cyclegan", 32, 0, {**TINY, "max-steps": steps})


def _wait(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)
    return value


# --- data ----------------------------------------------------------------------------------------------------------
def test_uploads_are_staged_flat_and_checked_like_data_inspect(tmp_path):
    Image.fromarray(IMG).save(tmp_path / "one.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with zipfile.ZipFile(tmp_path / "set.zip", "w") as z:
        z.writestr("nested/two.png", (tmp_path / "one.png").read_bytes())
        z.writestr("../../escape.png", (tmp_path / "one.png").read_bytes())  # a zip-slip name
        z.writestr("notes.txt", "hello")
        z.writestr("__MACOSX/._two.png", "resource fork")
    (tmp_path / "fake.zip").write_text("not a zip")
    dest = tmp_path / "staged" / "A"
    left_out = stage_uploads([str(tmp_path / n) for n in ("one.png", "broken.png", "set.zip", "fake.zip")], dest)
    assert left_out == {"set.zip/notes.txt": "not an image file type (.txt)",
                        "fake.zip": "not a readable zip file (File is not a zip file)"}
    assert sorted(p.name for p in tmp_path.rglob("*escape*")) == ["00004-set-zip-escape.png"]  # inside dest only
    data = DomainData.inspect(dest)
    assert len(data.images) == 3 and list(data.skipped) == ["00002-broken.png"]
    assert "truncated" in data.skipped["00002-broken.png"] or "not an image" in data.skipped["00002-broken.png"]
    summary = data.summary("Domain A")
    assert "3 image(s), 1 skipped" in summary and "00002-broken.png" in summary
    strip = app_training.thumbnail_strip(data.images, n=8, size=64)
    assert strip.size == (8 * 68 - 4, 64) and strip.getpixel((32, 32)) != (255, 255, 255)


def test_upload_limits_are_checked_before_extracting(tmp_path, monkeypatch):
    monkeypatch.setattr(app_training, "MAX_UPLOAD_BYTES", 1000)
    with zipfile.ZipFile(tmp_path / "big.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("zeros.png", b"\0" * 100_000)  # compresses to almost nothing
    with pytest.raises(TrainingError, match="Too much data for one domain: the limit is"):
        stage_uploads([str(tmp_path / "big.zip")], tmp_path / "staged")
    assert list((tmp_path / "staged").iterdir()) == []


def test_data_root_lists_and_reads_nothing_outside_it(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    for folder in (root / "set" / "trainA", root / "set" / "trainB", root / ".hidden", outside):
        folder.mkdir(parents=True)
        Image.fromarray(IMG).save(folder / "x.png")
    (root / "escape").symlink_to(outside)
    (root / "set" / "trainA" / "link.png").symlink_to(outside / "x.png")
    data_root = DataRoot(root)
    assert data_root.folders() == ["set/trainA", "set/trainB"]
    for bad in ("escape", "../outside", str(outside), ".hidden", "set/../../outside"):
        with pytest.raises(TrainingError, match="not one of the folders under the data root"):
            data_root.resolve(bad)
    data = DomainData.inspect(data_root.resolve("set/trainA"), data_root.root)
    assert [p.name for p in data.images] == ["x.png"]
    assert data.skipped == {"link.png": "points outside the data root; not read"}
    with pytest.raises(TrainingError, match="started without --data-root"):
        DataRoot(None).resolve("set/trainA")


def test_settings_become_translate_train_flags_or_one_clear_message(tmp_path):
    flags = train_flags(Path("/d/a"), Path("/d/b"), "my-run", tmp_path, "dualgan", 64, 7.5,
                        {"ngf": "32", "lr-g": "", "lr-d": " 1e-4", "ema": 0.999, "sample-every": "50",
                         "max-steps": None})
    assert flags == ["--data-a", "/d/a", "--data-b", "/d/b", "--name", "my-run", "--runs-dir", str(tmp_path),
                     "--model", "dualgan", "--crop-size", "64", "--load-size", "72", "--minutes", "7.5",
                     "--ngf", "32", "--lr-d", "0.0001", "--ema", "0.999", "--sample-every", "50", "--save-every", "50",
                     "--log-every", "10"]
    assert "--max-steps" in train_flags(Path("a"), Path("b"), "r", tmp_path, "cyclegan", 32, 5, {"max-steps": "40"})
    assert "--load-size" not in train_flags(Path("a"), Path("b"), "r", tmp_path, "residual-cyclegan", 64, 5, {})
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "model.safetensors").write_bytes(b"")
    (tmp_path / "stopped-early").mkdir()  # nothing saved: the name may be used again, as with the CLI
    assert "stopped-early" in train_flags(Path("a"), Path("b"), "stopped-early", tmp_path, "cyclegan", 32, 5, {})
    for name, size, minutes, advanced, message in (
            ("../x", 64, 5, {}, "use 1-64 letters"), ("taken", 64, 5, {}, "exists already"),
            ("ok", 30, 5, {}, "multiple of 4"), ("ok", 64, 0, {}, "Give a time budget"),
            ("ok", 64, 5, {"ngf": "8.5"}, "--ngf: '8.5' is not a whole number of 0 or more"),
            ("ok", 64, 5, {"lr-g": "fast"}, "--lr-g: 'fast' is not a number"),
            ("ok", 64, 5, {"ema": "-1"}, "--ema: '-1' is not a number of 0 or more")):
        with pytest.raises(TrainingError, match=message):
            train_flags(Path("a"), Path("b"), name, tmp_path, "cyclegan", size, minutes, advanced)


def test_run_folder_reading_progress_samples_losses_and_findings(tmp_path):
    run = tmp_path / "run"
    (run / "samples").mkdir(parents=True)
    assert app_training.progress_text([], None).startswith("Starting")
    assert app_training.latest_sample(run) is None
    for step in (10, 20):
        Image.fromarray(IMG).save(run / "samples" / f"step_{step:07d}.png")
        os.utime(run / "samples" / f"step_{step:07d}.png", (time.time() - 5,) * 2)
    assert app_training.latest_sample(run).name == "step_0000020.png"
    (run / "metrics.jsonl").write_text('{"step": 10, "g_adv": 1.5, "d_a": 0.2, "images_per_s": 4.0, '
                                       '"step_time_s": 0.5}\n{"step": 20, "g_adv": 1.0, "d_a": 0.25, "images_per_s": '
                                       '4.0, "step_time_s": 0.5, "findings": ["d-wins"]}\n{"step": 3')  # half-written
    metrics = app_training.read_jsonl(run / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [10, 20]
    assert app_training.progress_text(metrics, 260) == "step 20 / 260 (8 %) · 4 images/s · about 2 min 0 s left"
    assert app_training.loss_rows(metrics) == {"step": [10, 10, 20, 20], "loss": ["g_adv", "d_a", "g_adv", "d_a"],
                                               "value": [1.5, 0.2, 1.0, 0.25]}
    log = tmp_path / "run.log"
    log.write_text("about 5 min: 1,234 steps at 0.2 s/step (measured over 4 warm-up steps, which count); "
                   "the run ends at step 1,234\n")
    assert app_training.planned_steps(log, run / "config.json") == 1234
    (run / "config.json").write_text('{"train": {"max_steps": 300}}')
    assert app_training.planned_steps(log, run / "config.json") == 300
    findings = [{"name": "d-wins", "since_step": 20, "evidence": "D is sure", "remedies": ["--lr-d 0.0001"]},
                {"name": "checkerboard", "since_step": 10, "evidence": "2-px period", "remedies": []}]
    text = app_training.findings_text(findings, ["d-wins"])
    assert "**d-wins** since step 20: D is sure" in text and "`--lr-d 0.0001`" in text and "checkerboard" not in text
    assert app_training.findings_text(findings, []) == "**Health:** no problem seen so far."


# --- the training process ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("toy"), n_train=8, n_test=2)


def test_killed_training_is_reported_and_resumes_to_the_end(toy, tmp_path):
    trainings = Trainings(tmp_path / "runs", quota_bytes=1024**3)
    job = trainings.start("killed", _tiny_flags(toy, "killed", trainings.runs_dir, 400), task="expression")
    _wait(lambda: saved_step(job.run_dir), 180, "a first save")
    os.kill(job.process.pid, signal.SIGKILL)
    job.process.wait(10)
    assert trainings.poll() is job and not job.running
    assert "killed (SIGKILL), outside the app. Press **Resume**" in job.outcome()
    with pytest.raises(TrainingError, match="no saved state"):
        trainings.start("never-ran", [], resume=True)
    end = saved_step(job.run_dir) + 10  # a short end, past the state (at most one save of 5 steps ahead)
    job = trainings.start("killed", ["--max-steps", str(end)], resume=True)
    _wait(lambda: not job.running, 180, "the resumed run to end")
    assert job.outcome() == "**killed** finished.", job.log.read_text()
    assert saved_step(job.run_dir) == end
    assert trainings.task("killed") == "expression" and trainings.runs() == ["killed"]


def test_quota_refuses_a_new_training(toy, tmp_path):
    trainings = Trainings(tmp_path / "runs", quota_bytes=10)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "old.bin").write_bytes(b"\0" * 100)
    with pytest.raises(TrainingError, match="uses 0.00 GB of its 0.00 GB quota"):
        trainings.start("new", _tiny_flags(toy, "new", trainings.runs_dir, 10))
    assert trainings.job is None


# --- the app, live ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(toy, tmp_path_factory):
    """`python app.py` with an empty checkpoints folder, a runs folder and the toy data as its data root."""
    spec = importlib.util.spec_from_file_location("load_benchmark", ROOT / "benchmarks" / "load.py")
    load = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(load)
    base = tmp_path_factory.mktemp("train-app")
    (base / "checkpoints").mkdir()
    args = ("--runs-dir", str(base / "runs"), "--data-root", str(toy))
    with load.serve(base / "checkpoints", base / "server", args=args) as (url, _, _):
        yield url, base / "runs"


def _upload_files(toy: Path, tmp_path: Path) -> tuple[list[str], str]:
    """Domain A as separate PNGs plus one broken file; domain B as one zip."""
    files = [str(p) for p in sorted((toy / "trainA").glob("*.png"))[:6]]
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with zipfile.ZipFile(tmp_path / "b.zip", "w") as z:
        for path in sorted((toy / "trainB").glob("*.png"))[:6]:
            z.write(path, f"b/{path.name}")
    return [*files, str(tmp_path / "broken.png")], str(tmp_path / "b.zip")


def _text(page, selector: str) -> str:
    return page.inner_text(selector) if page.query_selector(selector) else ""


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium (/usr/bin/chromium) is not installed")
def test_browser_upload_train_stop_resume_and_translate(server, toy, tmp_path):
    from playwright.sync_api import sync_playwright
    url, runs = server
    files_a, zip_b = _upload_files(toy, tmp_path)
    shots = Path(os.environ.get("TRAIN_TAB_SCREENSHOTS", tmp_path))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(url)
            page.get_by_role("tab", name="Train").click()
            page.set_input_files("#train-upload-a input[type=file]", files_a)
            page.set_input_files("#train-upload-b input[type=file]", zip_b)
            page.wait_for_function("document.querySelector('#train-summary-a')?.innerText.includes('6 image(s), "
                                   "1 skipped') && document.querySelector('#train-summary-b')?.innerText"
                                   ".includes('6 image(s)')", timeout=30_000)
            assert "broken.png" in _text(page, "#train-summary-a")
            page.wait_for_selector("#train-strip-a img", timeout=10_000)
            page.get_by_label("Expression editing").check()
            page.locator("#train-size label", has_text="32").click()
            page.click("#train-advanced button")
            for flag, value in (("ngf", 8), ("n-blocks", 1), ("ndf", 8), ("batch-size", 2), ("max-steps", 40),
                                ("sample-every", 10)):
                page.fill(f"#train-{flag} input, #train-{flag} textarea", str(value))
            page.fill("#train-name input, #train-name textarea", "e2e")
            page.screenshot(path=str(shots / "train-idle.png"), full_page=True)
            page.click("#train-start")
            page.wait_for_function("document.querySelector('#train-message').innerText.includes('Started e2e')",
                                   timeout=20_000)
            page.wait_for_function("document.querySelector('#train-sample img')?.naturalWidth > 0", timeout=180_000)
            assert "Training e2e" in _text(page, "#train-status") and "step " in _text(page, "#train-progress")
            page.screenshot(path=str(shots / "train-running.png"), full_page=True)
            page.click("#train-stop")
            page.wait_for_function("document.querySelector('#train-status').innerText.includes('stopped')",
                                   timeout=120_000)
            assert "Resume" in _text(page, "#train-status")
            page.click("#train-resume")
            page.wait_for_function("document.querySelector('#train-status').innerText.includes('finished')",
                                   timeout=240_000)
            page.wait_for_function("document.querySelector('#train-links').innerText.includes('training report')",
                                   timeout=10_000)
            page.screenshot(path=str(shots / "train-finished.png"), full_page=True)
            report = page.request.get(f"{url}runs/e2e/report.html")
            assert report.ok and report.headers["content-type"].startswith("text/html")
            assert page.request.get(f"{url}runs/e2e/state/last.pt").status == 404
            assert page.request.get(f"{url}runs/.app/logs/e2e.log").status == 404

            page.get_by_role("tab", name="Expression editing").click()
            page.wait_for_selector("#expression-model", timeout=10_000)
            page.wait_for_function("document.querySelector('#expression-model input')?.value.startsWith('e2e')",
                                   timeout=10_000)
            page.set_input_files("#expression-input input[type=file]", files_a[0])
            page.wait_for_selector("#expression-input img", timeout=30_000)
            page.click("#expression-translate")
            page.wait_for_function("document.querySelector('#expression-output img')?.naturalWidth > 0",
                                   timeout=60_000)
        finally:
            browser.close()
    assert (runs / "e2e" / "config.json").is_file() and (runs / "e2e" / "model.safetensors").is_file()


def test_two_clients_racing_to_start_get_one_training(server, tmp_path):
    from gradio_client import Client
    url, runs = server
    clients = [Client(url, verbose=False, analytics_enabled=False) for _ in range(2)]
    advanced = ["8", "1", "8", "2", "", "", "", "0", "2000", "1000"]  # a long run, stopped below
    barrier, messages = threading.Barrier(2), {}

    def start(i):
        barrier.wait()
        messages[i] = clients[i].predict("folders", "trainA", "trainB", "style", "cyclegan", 32, 10, f"race-{i}",
                                         *advanced, api_name="/train_start")[0]

    threads = [threading.Thread(target=start, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    started = [m for m in messages.values() if m.startswith("Started")]
    refused = [m for m in messages.values() if "already running in this app" in m]
    assert len(started) == 1 and len(refused) == 1, messages
    assert "One training runs at a time" in refused[0]
    assert "Stopping" in clients[0].predict(api_name="/train_stop")
    _wait(lambda: clients[1].predict(api_name="/train_stop") == "No training is running.", 120, "the stop")
