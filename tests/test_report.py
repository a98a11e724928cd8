"""report.html: built from a run folder, self-contained, and rendered by the real browser."""
import json
from pathlib import Path

import pytest
from PIL import Image

from translate.monitor import Finding
from translate.report import write_report

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
EVAL = {"data": "toy", "image_size": 32, "directions": ["a2b"], "notes": ["FID/KID with Inception skipped"],
        "runs": [{"name": "input unchanged", "model": None, "results": {"a2b": {"domain_score": 0.0, "l1": 0.2}}},
                 {"name": "run", "model": "run/model.safetensors",
                  "results": {"a2b": {"domain_score": 0.875, "l1": 0.05}}}]}


def make_run(folder: Path, findings: list[Finding], evaluation: dict | None = None) -> Path:
    """A run folder as the trainer leaves it: config, metrics (the last line lists the active findings),
    findings.jsonl, three sample grids."""
    (folder / "samples").mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"train": {"recipe": "cyclegan", "adversarial": "lsgan",
                                                              "lr_g": 2e-4, "lr_d": 2e-4, "max_steps": 30}}))
    with (folder / "metrics.jsonl").open("w") as f:
        for step in range(5, 35, 5):
            f.write(json.dumps({"step": step, "g_adv": 1.0 - step / 60, "g_cycle": 3 / step, "g_identity": 1 / step,
                                "d_a": 0.25, "d_b": 0.24, "d_real": 0.6, "d_fake": 0.4, "lr_g": 2e-4, "lr_d": 2e-4,
                                "images_per_s": 40.0, "findings": [x.name for x in findings if step >= 20]}) + "\n")
    with (folder / "findings.jsonl").open("w") as f:
        for finding in findings:
            f.write(json.dumps({"step": 20, **finding.to_dict()}) + "\n")
    for step, colour in ((10, "red"), (20, "green"), (30, "blue")):
        Image.new("RGB", (206, 70), colour).save(folder / "samples" / f"step_{step:07d}.png")
    if evaluation:
        (folder / "eval.json").write_text(json.dumps(evaluation))
    return folder


D_WINS = Finding("d-wins", 15, "D separates real from fake with confidence 0.93", ["--lr-d 5e-05 (TTUR)",
                                                                                    "--spectral-norm"])


def test_report_lists_findings_curves_samples_and_evaluation(tmp_path):
    run = make_run(tmp_path / "run", [D_WINS], EVAL)
    page = write_report(run).read_text()
    assert "d-wins (active), since step 15" in page and "confidence 0.93" in page
    assert "<code>--lr-d 5e-05 (TTUR)</code>" in page and "<code>--spectral-norm</code>" in page
    assert page.count('src="samples/step_') == 3 and 'src="losses.png"' in page
    assert Image.open(run / "losses.png").size[0] > 500
    assert "domain score" in page and "0.875" in page and "Inception skipped" in page
    assert "http://" not in page and "https://" not in page  # nothing to fetch


def test_report_of_a_healthy_run_says_so(tmp_path):
    page = write_report(make_run(tmp_path / "run", [])).read_text()
    assert "No finding" in page and "Evaluation" not in page


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium (/usr/bin/chromium) is not installed")
def test_report_renders_offline_in_the_browser(tmp_path):
    from playwright.sync_api import sync_playwright
    run = make_run(tmp_path / "run", [D_WINS, Finding("checkerboard", 20, "power at the 2-pixel period is 7.0x",
                                                      ["--upsample resize-conv"])], EVAL)
    write_report(run)
    requests = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("request", lambda r: requests.append(r.url))
            page.goto((run / "report.html").as_uri())
            text = page.inner_text("body")
            widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.naturalWidth)")
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    assert "d-wins (active), since step 15" in text and "checkerboard (active), since step 20" in text
    assert "--upsample resize-conv" in text and "0.875" in text
    assert len(widths) == 4 and all(w > 0 for w in widths)  # loss curves and three sample grids all load
    assert all(url.startswith("file://") for url in requests)


def test_report_summarises_speed_data_sessions_and_marks_the_best(tmp_path):
    run = make_run(tmp_path / "run", [], EVAL)
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    start = 1_700_000_000.0
    with (run / "metrics.jsonl").open("w") as f:  # a slow run: 0.0213 images/s; resumed after step 15
        for m in metrics:
            m.update(images_per_s=0.0213, step_time_s=47.0, g_identity=0.0,
                     time=start + 47 * m["step"] + (600 if m["step"] > 15 else 0))
            f.write(json.dumps(m) + "\n")
    config = {"train": {"recipe": "cyclegan", "lr_g": 2e-4, "max_steps": 30}}
    data = {"train_a": 415, "train_b": 400, "names": ["noto", "twemoji"], "source_a": "data/noto",
            "source_b": "data/twemoji", "samples": "training images (no test split)"}
    sessions = [{"time": start, "step": 0, "total_steps": 30, "config": config, "data": data},
                {"time": start + 47 * 15 + 600, "step": 15, "total_steps": 30,
                 "config": {"train": {**config["train"], "lr_g": 1e-4}}, "data": data}]
    (run / "sessions.jsonl").write_text("".join(json.dumps(s) + "\n" for s in sessions))
    (run / "skipped.txt").write_text("a/x.png: empty file (0 bytes)\na/y.png: truncated\n")
    page = write_report(run).read_text()
    assert "0.0213 images/s" in page and "0.0 images/s" not in page
    assert "23 min 30 s over 2 session(s)" in page  # 47 s x (15 + 15) steps; the 10 minutes between do not count
    assert "415 training images from data/noto" in page and "training images (no test split)" in page
    assert '2 unreadable, listed in <a href="skipped.txt">' in page
    assert "new run" in page and "--lr-g 0.0002 → 0.0001" in page
    # the best of each row is marked: the run's domain score and L1 beat the do-nothing baseline
    assert '<td class=best>0.875</td>' in page and '<td class=best>0.050</td>' in page
    assert '<td class=best>0.000</td>' not in page


def test_loss_plot_drops_unused_losses_and_keeps_legends_off_the_curves(tmp_path):
    from translate.report import plot_losses
    metrics = [{"step": s, "g_adv": 1.0, "d_a": 0.3 + s / 100, "d_b": 0.2, "g_cycle": 1 / s, "g_identity": 0.0,
                "d_real": 0.6, "d_fake": 0.4, "lr_g": 2e-4, "lr_d": 2e-4} for s in range(1, 40)]
    fig = plot_losses(metrics, [], "lsgan", tmp_path / "losses.png")
    labels = [line.get_label() for ax in fig.axes for line in ax.lines]
    assert "g_cycle" in labels and "g_identity" not in labels
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is not None:
            assert legend.get_window_extent().x0 >= ax.get_window_extent().x1  # beside the panel
