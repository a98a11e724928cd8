"""A newcomer's first hour on tiny data, through the CLI only: prepare two folders, train on a time budget keeping
models along the way, translate with a kept model into a page, evaluate, and open the kept models in the app."""
import json
import re

from PIL import Image

from conftest import toy_image, toy_truth
from translate.cli import main

TINY = ["--ngf", "8", "--ndf", "8", "--n-blocks", "1", "--n-layers", "2", "--crop-size", "32", "--load-size", "32",
        "--workers", "0", "--log-every", "2", "--sample-every", "1000", "--save-every", "1000"]


def _folders(root):
    """Two folders of a user's own images: 12 red shapes and 12 channel-rolled ones, plus a hidden folder of junk."""
    import numpy as np
    rng = np.random.default_rng(0)
    for name, make in (("reds", toy_image), ("blues", lambda r: toy_truth(toy_image(r)))):
        (root / name / ".thumbnails").mkdir(parents=True)
        for i in range(12):
            Image.fromarray(make(rng)).save(root / name / f"shot {i:02d}.png")
        (root / name / ".thumbnails" / "junk.png").write_bytes(b"")
    return root / "reds", root / "blues"


def test_prepare_train_for_minutes_apply_html_eval_and_app(tmp_path, capsys):
    reds, blues = _folders(tmp_path)
    data, runs = tmp_path / "data", tmp_path / "runs"
    assert main(["data", "prepare", str(reds), str(blues), "--out", str(data), "--test-fraction", "0.25"]) == 0
    out = capsys.readouterr().out
    assert "domain A: 12 found, 12 copied (9 train, 3 test)" in out and "skipped 1 image(s) in hidden" in out

    assert main(["train", "--data", str(data), "--model", "cyclegan", *TINY, "--minutes", "0.1", "--keep-every", "2",
                 "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out + capsys.readouterr().err
    run = runs / "data-cyclegan"  # the default name: the data folder's and the recipe's
    assert f"run folder: {run}" in out and f"sample grids: testA/ and testB/ of {data}" in out
    plan = re.search(r"about 0.1 min: ([\d,]+) steps at ([\d.e-]+) s/step", out)
    assert plan, out
    steps = int(plan.group(1).replace(",", ""))
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["max_steps"] == steps >= 4  # saved: a --resume continues to the same end
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["step"] == steps
    kept = sorted(p.name for p in (run / "models").iterdir())
    assert kept == [f"step_{s:07d}.safetensors" for s in range(2, steps + 1, 2)]
    report = (run / "report.html").read_text()
    assert f"{steps:,} of {steps:,}" in report and "wall time" in report and "new run" in report
    assert "9 training images from" in report and "testA/ and testB/ of" in report

    pages = tmp_path / "translated"
    assert main(["apply", str(run), str(data / "testA"), "--out", str(pages), "--step", "2", "--html"]) == 0
    page = (pages / "index.html").read_text()
    assert "<title>data-cyclegan (step 2): A → B</title>" in page and page.count("<figure>") == 3
    capsys.readouterr()

    assert main(["eval", str(run), "--encoder-steps", "20", "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert f"data: {data} (the run's --data)" in captured.err and "paired L1" not in captured.out
    results = json.loads((run / "eval.json").read_text())
    assert [r["name"] for r in results["runs"]] == ["input unchanged", "data-cyclegan"]
    assert results["runs"][1]["results"]["a2b"]["n_inputs"] == 3  # the held-out test images
    assert "<h2>Evaluation</h2>" in (run / "report.html").read_text()  # eval refreshed the report

    from test_app import app  # app.py, loaded from the repository root
    store = app.ModelStore(run / "models", device="cpu")
    assert sorted(store.models) == kept  # each kept model is one choice in the app
