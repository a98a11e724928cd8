"""Bad input across the commands: every file of the broken-and-unusual corpus through `train`, `apply`,
`data prepare` and the app, each translated (or trained on) or named with its reason while the good files go
through; bad arguments and untrusted files get one clear line, exit status 2, no traceback, and nothing written."""
import dataclasses
import json
from pathlib import Path

import gradio as gr
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from broken import make_broken, make_edge_cases, make_more_broken, make_unusual_but_valid
from conftest import tiny_config
from test_app import app
from test_inference import make_model
from test_reference import Exploit, ResnetGenerator
from translate.apply import EXIT_PARTIAL
from translate.checkpoint import export_model
from translate.cli import main
from translate.config import ModelConfig
from translate.nets import build_generator

TINY = ["--ngf", "8", "--n-blocks", "1", "--ndf", "8", "--n-layers", "2", "--load-size", "32", "--crop-size", "32",
        "--workers", "0", "--device", "cpu", "--amp", "off"]
APP_WORDS = {"bomb-81mp.png": "megapixels"}  # the app's own, lower limit speaks of megapixels


@dataclasses.dataclass
class Corpus:
    folder: Path
    broken: dict[str, str]  # name -> a word its reason must contain
    valid: dict[str, tuple[int, int]]  # name -> (width, height) as loaded


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Corpus:
    folder = tmp_path_factory.mktemp("corpus") / "in"
    broken = {**make_broken(folder), **make_more_broken(folder)}
    valid = {name: image.size for name, image in make_unusual_but_valid(folder).items()}
    valid["exif.jpg"] = (20, 40)  # stored landscape, EXIF says portrait
    valid.update(make_edge_cases(folder))
    assert len(broken) == 8 and len(valid) == 15 and len(list(folder.iterdir())) == 23
    return Corpus(folder, broken, valid)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "style.safetensors"
    make_model(path)
    return path


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `translate ARGV`; argparse's own errors included."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_clear_line(code: int, err: str, *parts: str) -> None:
    """Exit 2, no traceback, and the last stderr line (argparse prints its usage above it) holds every part."""
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines and all(part in lines[-1] for part in parts), err
    assert lines[-1].startswith("translate") and (len(lines) == 1 or lines[0].startswith("usage:")), err


# --- the corpus through each command -------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:skipping unreadable image")
def test_train_names_each_broken_file_and_trains_on_every_good_one(corpus, toy_root, tmp_path, capsys):
    """Domain A is the corpus alone; batch 8 x 2 steps is one pass over its 16 listed files (the cheap check
    drops 7 broken ones; truncated.jpg is caught while decoding), so every good file is decoded once."""
    code, out, err = run(["train", "--data-a", str(corpus.folder), "--data-b", str(toy_root / "trainB"),
                          "--runs-dir", str(tmp_path), "--name", "corpus", *TINY, "--batch-size", "8",
                          "--max-steps", "2", "--log-every", "1"], capsys)
    assert code == 0, err
    skipped = dict(line.split(": ", 1) for line in (tmp_path / "corpus" / "skipped.txt").read_text().splitlines())
    assert {Path(path).name for path in skipped} == set(corpus.broken)
    for path, reason in skipped.items():
        assert Path(path).parent == corpus.folder and corpus.broken[Path(path).name] in reason, (path, reason)
    assert f"skipped {len(corpus.broken)} unreadable image(s)" in out and "Traceback" not in err
    assert (tmp_path / "corpus" / "model.safetensors").is_file()


def test_apply_translates_each_good_file_and_names_each_broken_one(corpus, model, tmp_path, capsys):
    out_dir = tmp_path / "out"
    code, out, err = run(["apply", str(model), str(corpus.folder), "--out", str(out_dir), "--batch-size", "4"],
                         capsys)
    assert code == EXIT_PARTIAL and "Traceback" not in err
    assert f"translated {len(corpus.valid)} of {len(corpus.valid) + len(corpus.broken)} images" in out
    for name, size in corpus.valid.items():
        with Image.open(out_dir / f"{Path(name).stem}.png") as image:
            assert image.size == size and image.mode == "RGB", name
    reasons = dict(line.strip().split(": ", 1) for line in err.splitlines()[1:])
    assert {Path(path).name for path in reasons} == set(corpus.broken)
    for path, reason in reasons.items():
        assert corpus.broken[Path(path).name] in reason, (path, reason)
    assert sorted(p.stem for p in out_dir.iterdir()) == sorted(Path(n).stem for n in corpus.valid)


def test_prepare_lists_each_broken_file_and_writes_every_good_one(corpus, toy_root, tmp_path, capsys):
    out_dir = tmp_path / "prepared"
    code, out, err = run(["data", "prepare", str(corpus.folder), str(toy_root / "trainB"), "--out", str(out_dir),
                          "--size", "16"], capsys)
    assert code == 0 and "Traceback" not in err
    report = json.loads((out_dir / "prepare_report.json").read_text())["domains"]["A"]
    unreadable = {Path(u["file"]).name: u["reason"] for u in report["unreadable"]}
    assert set(unreadable) == set(corpus.broken)
    for name, reason in unreadable.items():
        assert corpus.broken[name] in reason and f"{corpus.folder / name}: " in out, (name, reason)
    written = [p for split in ("trainA", "testA") for p in (out_dir / split).glob("*")]
    assert sorted(p.stem for p in written) == sorted(Path(n).stem for n in corpus.valid)
    for path in written:
        with Image.open(path) as image:
            assert image.mode == "RGB" and min(image.size) == 16, path.name


def test_app_translates_each_good_upload_and_names_each_broken_one(corpus, model):
    store = app.ModelStore(model.parent, device="cpu")
    for name, size in corpus.valid.items():
        out, _, note = app.translate_image(store, model.name, "a2b", str(corpus.folder / name), 1.0, False)
        assert out.size == size and note.endswith(f"{size[0]}x{size[1]} px"), name
    for name, word in corpus.broken.items():
        with pytest.raises(gr.Error) as info:
            app.translate_image(store, model.name, "a2b", str(corpus.folder / name), 1.0, False)
        assert info.value.message.startswith(name) and APP_WORDS.get(name, word) in info.value.message


# --- bad arguments: one clear line, exit 2, nothing written ---------------------------------------------------------
@pytest.fixture(scope="module")
def bad_models(tmp_path_factory) -> Path:
    """Model files that must be refused: truncated, a safetensors file that is no model, a config with an unknown
    field, weights that do not fit their config, a 1-channel model."""
    folder = tmp_path_factory.mktemp("bad-models")
    make_model(folder / "good.safetensors")
    raw = (folder / "good.safetensors").read_bytes()
    (folder / "truncated.safetensors").write_bytes(raw[: len(raw) // 2])
    save_file({"weight": torch.zeros(3)}, folder / "not-a-model.safetensors")
    model = ModelConfig(ngf=8, n_blocks=1)
    nets = {name: build_generator(model) for name in ("g_ab", "g_ba")}
    export_model(folder / "unknown-field.safetensors", nets, {"model": {**dataclasses.asdict(model), "wings": 2}})
    export_model(folder / "misfit.safetensors", nets, {"model": {**dataclasses.asdict(model), "ngf": 16}})
    make_model(folder / "gray.safetensors", channels=1)
    return folder


@pytest.mark.parametrize("argv,parts", [
    (["train", "--data-a", "{tmp}/nope", "--data-b", "{toy}/trainB"], ["nope: not a folder"]),
    (["train", "--data-a", "{broken}", "--data-b", "{toy}/trainB"],
     ["domain A: none of its 4 files is a readable image"]),
    (["train", "--data", "{toy}", "--model", "pix2pix"], ["unknown recipe 'pix2pix'"]),
    (["train", "--data", "{toy}", "--crop-size", "30"], ["--crop-size 30 must be divisible by 4"]),
    (["data", "prepare", "{tmp}/nope", "{toy}/trainB", "--out", "{tmp}/out"], ["nope: not a folder"]),
    (["data", "prepare", "{broken}", "{toy}/trainB", "--out", "{tmp}/out"],
     ["broken: none of its 4 images is readable"]),
    (["apply", "{models}/good.safetensors", "{toy}/testA", "--out", "{tmp}/out", "--direction", "sideways"],
     ["invalid choice: 'sideways'"]),
    (["apply", "{models}/truncated.safetensors", "{toy}/testA", "--out", "{tmp}/out"],
     ["truncated.safetensors: not a readable safetensors model"]),
    (["apply", "{models}/not-a-model.safetensors", "{toy}/testA", "--out", "{tmp}/out"],
     ["not-a-model.safetensors: not a translate model"]),
    (["apply", "{models}/unknown-field.safetensors", "{toy}/testA", "--out", "{tmp}/out"],
     ["unknown-field.safetensors: the model config in its metadata is invalid", "wings"]),
    (["apply", "{models}/misfit.safetensors", "{toy}/testA", "--out", "{tmp}/out"],
     ["misfit.safetensors: weights do not fit the model in its metadata (size mismatch for"]),
    (["apply", "{models}/gray.safetensors", "{toy}/testA", "--out", "{tmp}/out"],
     ["gray.safetensors: a 1-channel model; only RGB (3-channel) models translate images"]),
    (["export", "{models}/truncated.safetensors", "--onnx", "{tmp}/out/model.onnx"],
     ["truncated.safetensors: not a readable safetensors model"]),
], ids=["train-missing-folder", "train-all-broken", "train-unknown-recipe", "train-crop-size",
        "prepare-missing-folder", "prepare-all-broken", "apply-direction", "apply-truncated-model",
        "apply-not-a-model", "apply-unknown-config-field", "apply-misfit-weights", "apply-1-channel-model",
        "export-truncated-model"])
def test_bad_arguments_are_one_clear_line_and_write_nothing(argv, parts, toy_root, bad_models, tmp_path, capsys):
    broken = tmp_path / "broken"
    make_broken(broken)
    (broken / "truncated.jpg").unlink()  # the cheap check misses it; see docs/reliability.md
    fill = {"tmp": tmp_path, "toy": toy_root, "broken": broken, "models": bad_models}
    argv = [a.format(**fill) for a in argv]
    if argv[0] == "train":  # tiny defaults first, so the case's own flags win
        argv[1:1] = ["--runs-dir", str(tmp_path / "runs"), *TINY, "--max-steps", "1"]
    code, _, err = run(argv, capsys)
    assert_one_clear_line(code, err, *parts)
    assert not (tmp_path / "out").exists() and not (tmp_path / "runs").exists()


def test_a_model_trained_at_another_size_translates_any_size(tmp_path, capsys):
    """Decision: the nets are fully convolutional, so a model's training size (metadata image_size) is no limit;
    each image keeps its size (`--size` rescales inputs when wanted)."""
    make_model(tmp_path / "big.safetensors", meta={"image_size": 256})
    (tmp_path / "in").mkdir()
    for w, h in ((16, 16), (100, 70)):
        Image.new("RGB", (w, h), "red").save(tmp_path / "in" / f"{w}x{h}.png")
    code, out, _ = run(["apply", str(tmp_path / "big.safetensors"), str(tmp_path / "in"), "--out",
                        str(tmp_path / "out")], capsys)
    assert code == 0 and "translated 2 of 2" in out
    with Image.open(tmp_path / "out" / "100x70.png") as image:
        assert image.size == (100, 70)


def test_app_serves_only_the_models_it_can_use_and_names_the_rest(bad_models):
    store = app.ModelStore(bad_models, device="cpu")
    assert list(store.models) == ["good.safetensors"]
    expected = {"truncated.safetensors": "not a readable safetensors model", "gray.safetensors": "1-channel",
                "not-a-model.safetensors": "not a translate model", "misfit.safetensors": "weights do not fit",
                "unknown-field.safetensors": "model config in its metadata is invalid"}
    assert store.problems.keys() == expected.keys()
    for name, reason in expected.items():
        assert reason in store.problems[name] and "\n" not in store.problems[name], name


def test_reference_weights_of_an_unexpected_layout_are_one_clear_line(tmp_path, capsys):
    state = ResnetGenerator(ngf=4, n_blocks=2).state_dict()
    torch.save(state, tmp_path / "G_A.pth")
    del state["model.10.conv_block.5.weight"]  # a block's second conv lost
    torch.save(state, tmp_path / "G_B.pth")
    code, _, err = run(["import-cyclegan", str(tmp_path / "G_A.pth"), str(tmp_path / "G_B.pth"), "--out",
                        str(tmp_path / "out" / "m.safetensors")], capsys)
    assert_one_clear_line(code, err, "G_B.pth: weights do not fit a reference ResnetGenerator",
                          "Missing key(s) in state_dict")
    assert not (tmp_path / "out").exists()


def test_a_model_whose_metadata_is_not_json_is_named(tmp_path, capsys):
    save_file({"g_ab.w": torch.zeros(1)}, tmp_path / "bad-meta.safetensors",
              metadata={"format": "translate-model/1", "model": "{not json"})
    Image.new("RGB", (8, 8)).save(tmp_path / "in.png")
    code, _, err = run(["apply", str(tmp_path / "bad-meta.safetensors"), str(tmp_path / "in.png"), "--out",
                        str(tmp_path / "out")], capsys)
    assert_one_clear_line(code, err, "bad-meta.safetensors")


def test_a_channel_count_training_cannot_feed_is_refused(toy_root, tmp_path, capsys):
    code, _, err = run(["train", "--data", str(toy_root), "--runs-dir", str(tmp_path / "runs"), "--name", "c1", *TINY,
                        "--max-steps", "1", "--channels", "1"], capsys)
    assert_one_clear_line(code, err, "channels")
    assert not (tmp_path / "runs").exists()


# --- untrusted resume state ------------------------------------------------------------------------------------------
@pytest.fixture
def run_folder(toy_root, tmp_path) -> Path:
    """runs/x with a valid config.json and an empty state folder, ready for a crafted state/last.pt."""
    run_dir = tmp_path / "runs" / "x"
    (run_dir / "state").mkdir(parents=True)
    tiny_config(data=str(toy_root), name="x", runs_dir=str(tmp_path / "runs")).save(run_dir / "config.json")
    return run_dir


def _resume(run_dir: Path, capsys) -> tuple[int, str, str]:
    return run(["train", "--resume", "--name", run_dir.name, "--runs-dir", str(run_dir.parent)], capsys)


def _snapshot(folder: Path) -> dict:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_resume_state_that_would_run_code_never_runs_it(run_folder, tmp_path, capsys):
    marker = tmp_path / "pwned"
    torch.save({"step": 1, "payload": Exploit(tmp_path / "proof")}, tmp_path / "demo.pt")
    torch.load(tmp_path / "demo.pt", weights_only=False)  # the payload is live: a plain load runs it
    assert (tmp_path / "proof").exists()
    torch.save({"step": 1, "payload": Exploit(marker)}, run_folder / "state" / "last.pt")
    before = _snapshot(run_folder)
    _resume(run_folder, capsys)
    assert not marker.exists() and _snapshot(run_folder) == before


@pytest.mark.parametrize("kind", ["code", "truncated", "incomplete"])
def test_a_bad_resume_state_is_one_clear_line(run_folder, tmp_path, capsys, kind):
    state = run_folder / "state" / "last.pt"
    if kind == "code":
        torch.save({"step": 1, "payload": Exploit(tmp_path / "pwned")}, state)
    elif kind == "truncated":
        torch.save({"step": 1, "nets": {"w": torch.zeros(1000)}}, state)
        state.write_bytes(state.read_bytes()[:600])
    else:
        torch.save({"step": 1}, state)
    before = _snapshot(run_folder)
    code, _, err = _resume(run_folder, capsys)
    assert_one_clear_line(code, err, str(state))
    assert _snapshot(run_folder) == before


def test_a_corrupt_run_config_is_named_on_resume(run_folder, capsys):
    (run_folder / "config.json").write_text("{oops")
    code, _, err = _resume(run_folder, capsys)
    assert_one_clear_line(code, err, str(run_folder / "config.json"))
