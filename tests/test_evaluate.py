"""`translate eval`: known answers from the toy data's ground truth, the CLI's table, JSON and errors."""
import json

import pytest
import torch

from test_inference import make_model
from translate.cli import main
from translate.evaluate import BASELINE, Judge


@pytest.fixture(scope="module")
def judge(toy_root):
    return Judge(toy_root, 32, encoder_steps=60, log=lambda m: None)


def test_ground_truth_scores_perfectly_and_the_input_does_not(judge):
    """toy testB holds the exact translations of testA under the same names."""
    assert judge.accuracy == {"A": 1.0, "B": 1.0}
    truth = judge.measure("A", judge.test["B"][1])
    assert truth["n_pairs"] == 8 and truth["l1"] == 0 and truth["psnr"] == 100.0
    assert truth["ssim"] == pytest.approx(1.0, abs=1e-4) and abs(truth["fid_encoder"]) < 1e-3
    assert truth["domain_score"] == 1.0 and truth["precision"] == truth["recall"] == 1.0
    unchanged = judge.measure("A", judge.test["A"][1])
    assert unchanged["domain_score"] == 0.0 and unchanged["diversity"] == 1.0
    assert unchanged["l1"] > 0.05 and unchanged["fid_encoder"] > 10 and unchanged["recall"] < 0.5
    collapsed = judge.measure("A", torch.zeros_like(judge.test["A"][1]))
    assert collapsed["diversity"] == 0.0 and collapsed["near_duplicates"] == 1.0 and collapsed["recall"] == 0.0


def test_cli_compares_runs_side_by_side(toy_root, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty-hub"))
    for seed, name in enumerate(("run1", "run2")):
        (tmp_path / name).mkdir()
        make_model(tmp_path / name / "model.safetensors", seed=seed)
    argv = ["eval", str(tmp_path / "run1"), "--data", str(toy_root), "--compare", str(tmp_path / "run2"),
            "--encoder-steps", "30", "--device", "cpu"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0].split()
    assert header[:1] == ["metric"] and out.count("input unchanged a2b") == 1 and "run2 b2a" in out
    assert "paired SSIM ↑" in out and "Inception skipped" in out
    results = json.loads((tmp_path / "run1" / "eval.json").read_text())
    assert [r["name"] for r in results["runs"]] == [BASELINE, "run1", "run2"]
    assert results["runs"][1]["results"]["b2a"]["n_pairs"] == 8 and results["inception"] is False


def test_cli_errors_are_one_clear_line(toy_root, tmp_path, capsys):
    make_model(tmp_path / "model.safetensors")
    assert main(["eval", str(tmp_path / "model.safetensors"), "--data", str(toy_root), "--inception",
                 str(tmp_path / "nope.pth")]) == 2
    assert "nope.pth: no Inception-v3 weights file there" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "missing.safetensors"), "--data", str(toy_root)]) == 2
    assert "no such model file" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "model.safetensors"), "--data", str(tmp_path / "nodata")]) == 2
    assert "not found" in capsys.readouterr().err


def test_eval_of_a_run_uses_the_data_it_trained_on(toy_root, tmp_path, capsys):
    from translate.config import Config
    run = tmp_path / "runs" / "toy-cyclegan"
    (run / "models").mkdir(parents=True)
    Config().update({"data_a": str(toy_root / "trainA"), "data_b": str(toy_root / "trainB")}).save(
        run / "config.json")
    make_model(run / "models" / "step_0000004.safetensors")
    assert main(["eval", str(run), "--step", "4", "--encoder-steps", "30", "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert f"data: {toy_root / 'trainA'} and {toy_root / 'trainB'} (the run's --data-a/--data-b)" in captured.err
    assert f"note: measured on the training folders (no held-out images); to hold some out: translate data " \
           f"prepare {toy_root / 'trainA'} {toy_root / 'trainB'} --out DATASET" in captured.out
    results = json.loads((run / "eval.json").read_text())
    assert results["runs"][1]["name"] == "toy-cyclegan step 4"
    assert results["runs"][1]["results"]["a2b"]["n_inputs"] == 48  # every training image of A
    make_model(tmp_path / "loose.safetensors")
    assert main(["eval", str(tmp_path / "loose.safetensors")]) == 2
    assert "not in a run folder (no config.json beside it); give --data ROOT" in capsys.readouterr().err


def test_a_model_without_an_image_size_is_measured_at_the_default(toy_root, tmp_path, capsys):
    make_model(tmp_path / "model.safetensors", meta={"image_size": None})
    assert main(["eval", str(tmp_path / "model.safetensors"), "--data", str(toy_root), "--encoder-steps", "10",
                 "--direction", "a2b", "--out", str(tmp_path / "eval.json")]) == 0
    assert "no training image size in its metadata; measuring at 256 px" in capsys.readouterr().err
    assert json.loads((tmp_path / "eval.json").read_text())["image_size"] == 256
