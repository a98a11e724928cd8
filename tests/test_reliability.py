"""Bad input across the commands: every file of the broken-and-unusual corpus through `train`, `apply`,
`data prepare` and the app, each translated (or trained on) or named with its reason while the good files go
through; bad arguments and untrusted files get one clear line, exit status 2, no traceback, and nothing written."""
import base64
import dataclasses
import errno
import json
import os
import shutil
from pathlib import Path

import gradio as gr
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from broken import (make_broken, make_edge_cases, make_more_broken, make_odd_models, make_unusual_but_valid,
                    png_bomb)
from conftest import tiny_config
from test_app import app
from test_inference import make_model
from test_reference import Exploit, ResnetGenerator
from translate import run_folder as run_folder_rules
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
    assert sorted(p.stem for p in out_dir.glob("*.png")) == sorted(Path(n).stem for n in corpus.valid)


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
        out, _, note = app.translate_image(store, model.name, "a2b", str(corpus.folder / name), 1.0, False,
                                           at_model_size=False)
        assert out.size == size and note.endswith(f"{size[0]}x{size[1]} px"), name
        out = app.translate_image(store, model.name, "a2b", str(corpus.folder / name), 1.0, False)[0]
        side = store.get(model.name).meta["image_size"]  # scaled to the model's size, within the 512 px cap
        assert min(out.size) == side or max(out.size) == 512, (name, out.size)
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
     ["domain A: none of its 5 files is a readable image"]),
    (["train", "--data", "{toy}", "--model", "pix2pix"], ["unknown recipe 'pix2pix'"]),
    (["train", "--data", "{toy}", "--crop-size", "30"], ["--crop-size 30 must be divisible by 4"]),
    (["data", "prepare", "{tmp}/nope", "{toy}/trainB", "--out", "{tmp}/out"], ["nope: not a folder"]),
    (["data", "prepare", "{broken}", "{toy}/trainB", "--out", "{tmp}/out"],
     ["broken: none of its 5 images is readable"]),
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
    make_broken(broken)  # with truncated.jpg, which passes the cheap check and fails to decode
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
    """Every file's bytes, but the run's lock file (it stays, unlocked, once a process has held it)."""
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file() and p.name != run_folder_rules.LOCK}


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


# --- user data is never lost or overwritten -------------------------------------------------------------------------
@pytest.fixture
def dataset(toy_root, tmp_path) -> Path:
    """A copy of the toy trainA/trainB: the user's own data, which no command may change."""
    root = tmp_path / "ds"
    for split in ("trainA", "trainB"):
        shutil.copytree(toy_root / split, root / split)
    return root


@pytest.mark.parametrize("out", ["{ds}", "{ds}/trainA/prepared", "{ds}/trainA"],
                         ids=["out-holds-the-inputs", "out-inside-an-input", "out-is-an-input"])
def test_prepare_never_deletes_or_writes_inside_its_inputs(dataset, capsys, out):
    before = _snapshot(dataset)
    argv = ["data", "prepare", str(dataset / "trainA"), str(dataset / "trainB"), "--out",
            out.format(ds=dataset), "--overwrite"]
    code, _, err = run(argv, capsys)
    assert_one_clear_line(code, err, "choose")
    assert "overwrite" not in err.splitlines()[-1]  # the old message suggested exactly the command that deletes
    assert _snapshot(dataset) == before and sorted(p.name for p in dataset.iterdir()) == ["trainA", "trainB"]


def test_prepare_on_a_full_disk_leaves_no_partial_output(dataset, tmp_path, monkeypatch, capsys):
    """The second file written fails with ENOSPC: one line, no half-written dataset, an earlier one kept."""
    import translate.dataset_tools as tools
    real, calls = shutil.copyfile, []

    def full_disk(src, dst, **kw):
        calls.append(dst)
        if len(calls) == 2:
            Path(dst).write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real(src, dst, **kw)

    monkeypatch.setattr(tools.shutil, "copyfile", full_disk)
    out = tmp_path / "new"
    code, _, err = run(["data", "prepare", str(dataset / "trainA"), str(dataset / "trainB"), "--out", str(out)],
                       capsys)
    assert_one_clear_line(code, err, "No space left on device", "partial output removed")
    assert not out.exists()
    old = tmp_path / "old"
    (old / "trainA").mkdir(parents=True)
    (old / "trainA" / "kept.png").write_bytes(b"earlier output")
    calls.clear()
    code, _, err = run(["data", "prepare", str(dataset / "trainA"), str(dataset / "trainB"), "--out", str(old),
                        "--overwrite"], capsys)
    assert_one_clear_line(code, err, "No space left on device")
    assert [p.relative_to(old) for p in old.rglob("*")] == [Path("trainA"), Path("trainA/kept.png")]


def _rgb_file(path: Path, colour: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 16), colour).save(path)
    return path


def test_apply_outputs_of_same_named_inputs_never_collide(model, tmp_path, capsys):
    for i, colour in enumerate(("red", "green", "blue")):  # a square in a different place in each: a flat image
        image = _rgb_file(tmp_path / f"d{i}" / "x.png", "white")  # would be one flat output through instance norm
        with Image.open(image) as im:
            im.paste(colour, (4 * i, 4 * i, 4 * i + 6, 4 * i + 6))
            im.save(image)
    out = tmp_path / "o"
    code, stdout, _ = run(["apply", str(model), *(str(tmp_path / f"d{i}") for i in range(3)), "--out", str(out)],
                          capsys)
    assert code == 0 and "translated 3 of 3" in stdout
    outputs = sorted(out.glob("*.png"))
    assert len(outputs) == 3 and len({p.read_bytes() for p in outputs}) == 3


def test_apply_never_replaces_a_file_it_did_not_write(model, tmp_path, capsys):
    """`apply ow/a.jpg --out ow` must keep the user's own ow/a.png; an output apply wrote itself is replaced."""
    folder = tmp_path / "ow"
    _rgb_file(folder / "a.jpg", "red")
    mine = _rgb_file(folder / "a.png", "green").read_bytes()
    code, _, err = run(["apply", str(model), str(folder / "a.jpg"), "--out", str(folder)], capsys)
    assert code == 1 and "a.png already exists and was not written by translate apply; not replaced" in err
    assert (folder / "a.png").read_bytes() == mine
    out = tmp_path / "out"
    for _ in range(2):  # the second run replaces the first run's output
        code, stdout, _ = run(["apply", str(model), str(folder / "a.jpg"), "--out", str(out)], capsys)
        assert code == 0 and "translated 1 of 1" in stdout


@pytest.mark.parametrize("argv,parts", [
    (["{ds}/trainA", "--out", "{ds}/trainA"], ["is inside the input folder", "trainA"]),
    (["{ds}/trainA", "--out", "{ds}/trainA/fakes"], ["is inside the input folder", "trainA"]),
    (["{ds}/trainA/*.png", "--out", "{ds}/trainA"], ["is inside the input folder", "trainA"]),
    (["{ds}/trainA", "--out", "{tmp}/out", "--suffix", "/../../x"], ["--suffix", "path separator"]),
    (["{ds}/trainA", "--out", "{tmp}/out", "--overlap", "-10"], ["--overlap -10 must be 0 or more"]),
    (["{ds}/trainA", "--out", "{tmp}/out", "--size", "30000"], ["--size 30000", "megapixels"]),
], ids=["out-is-input", "out-inside-input", "out-is-glob-root", "suffix-escapes", "negative-overlap", "huge-size"])
def test_apply_refuses_outputs_among_inputs_or_outside_out(model, dataset, tmp_path, capsys, argv, parts):
    before = _snapshot(dataset)
    argv = [a.format(ds=dataset, tmp=tmp_path) for a in argv]
    code, _, err = run(["apply", str(model), *argv], capsys)
    assert_one_clear_line(code, err, *parts)
    assert _snapshot(dataset) == before and not (tmp_path / "out").exists() and not (tmp_path / "x").exists()


def test_import_cyclegan_refuses_to_write_over_its_input(tmp_path, capsys):
    torch.save(ResnetGenerator(ngf=4, n_blocks=2).state_dict(), tmp_path / "G_A.pth")
    torch.save(ResnetGenerator(ngf=4, n_blocks=2).state_dict(), tmp_path / "G_B.pth")
    before = _snapshot(tmp_path)
    code, _, err = run(["import-cyclegan", str(tmp_path / "G_A.pth"), str(tmp_path / "G_B.pth"), "--out",
                        str(tmp_path / "G_B.pth")], capsys)
    assert_one_clear_line(code, err, "is one of the input files")
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("command", ["import-cyclegan", "export", "export-onnx"])
def test_a_full_disk_is_one_line_and_leaves_no_temporary_file(model, tmp_path, monkeypatch, capsys, command):
    import translate.checkpoint as checkpoint

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.os, "fsync", no_space)
    out = tmp_path / "out"
    out.mkdir()
    if command == "import-cyclegan":
        for name in ("G_A.pth", "G_B.pth"):
            torch.save(ResnetGenerator(ngf=4, n_blocks=2).state_dict(), tmp_path / name)
        argv = ["import-cyclegan", str(tmp_path / "G_A.pth"), str(tmp_path / "G_B.pth"), "--out", str(out / "m.st")]
    else:
        argv = ["export", str(model), "--onnx" if command == "export-onnx" else "--out", str(out / "m.out")]
    code, _, err = run(argv, capsys)
    assert code == 1 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(f"translate {command.split('-onnx')[0]}: stopped: ")
    assert "No space left on device" in err and list(out.iterdir()) == []


def test_eval_keeps_its_results_when_the_out_file_cannot_be_written(model, toy_root, tmp_path, capsys):
    out = tmp_path / "not-a-folder"
    out.write_text("a file where the --out folder should be")
    code, stdout, err = run(["eval", str(model), "--data", str(toy_root), "--out", str(out / "eval.json"),
                             "--encoder-steps", "2", "--device", "cpu"], capsys)
    assert code == 1 and "Traceback" not in err and "could not write" in err.strip().splitlines()[-1]
    assert json.loads(stdout[stdout.index("{"):])["runs"][0]["name"] == "input unchanged"


# --- model files ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def odd_models(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    folder = tmp_path_factory.mktemp("odd-models")
    make_model(folder / "good.safetensors")
    return folder, make_odd_models(folder)


def test_the_app_skips_each_odd_model_file_and_serves_the_rest(odd_models):
    folder, odd = odd_models
    store = app.ModelStore(folder, device="cpu")
    assert sorted(store.models) == ["good.safetensors", "partial.safetensors"]
    assert store.problems.keys() == odd.keys()
    for name, word in odd.items():
        assert word in store.problems[name] and "\n" not in store.problems[name], (name, store.problems[name])
    app.build_app(store)  # every served model gets its card and directions
    assert "ResNet-1, ngf 8" in app.model_card(store.get("partial.safetensors"))


def test_a_header_claiming_a_huge_net_is_refused_before_any_net_is_built(odd_models, tmp_path, monkeypatch, capsys):
    """Shapes are checked against the config on the meta device: no real net of the claimed size is built."""
    import translate.inference as inference
    devices = []
    real = inference.build_generator
    monkeypatch.setattr(inference, "build_generator",
                        lambda cfg: devices.append(torch.get_default_device().type) or real(cfg))
    folder, _ = odd_models
    code, _, err = run(["apply", str(folder / "claims-ngf-256.safetensors"), str(_rgb_file(tmp_path / "a.png", "red")),
                        "--out", str(tmp_path / "out")], capsys)
    assert_one_clear_line(code, err, "claims-ngf-256.safetensors: weights do not fit the model in its metadata")
    assert devices == ["meta"]


@pytest.mark.parametrize("name,parts", [("nan.safetensors", ["NaN or infinite values"]),
                                        ("int8.safetensors", ["torch.int8 values", "floating point"])])
def test_non_finite_or_integer_weights_are_refused(odd_models, tmp_path, capsys, name, parts):
    folder, _ = odd_models
    image = str(_rgb_file(tmp_path / "in" / "a.png", "red"))
    for command in (["apply", str(folder / name), image, "--out", str(tmp_path / "out")],
                    ["export", str(folder / name), "--onnx", str(tmp_path / "out" / "m.onnx")]):
        code, _, err = run(command, capsys)
        assert_one_clear_line(code, err, name, *parts)
    assert not (tmp_path / "out").exists()


def test_export_onnx_never_reports_a_match_on_nan_outputs(tmp_path, capsys):
    """Finite weights of 1e38 overflow to infinity in the first conv; instance norm turns that into NaN."""
    nets = {name: build_generator(ModelConfig(ngf=8, n_blocks=1)) for name in ("g_ab", "g_ba")}
    for net in nets.values():
        torch.nn.init.constant_(next(net.parameters()), 1e38)
    export_model(tmp_path / "overflow.safetensors", nets, {"model": dataclasses.asdict(ModelConfig(ngf=8, n_blocks=1))})
    code, out, err = run(["export", str(tmp_path / "overflow.safetensors"), "--onnx", str(tmp_path / "m.onnx")], capsys)
    assert code == 1 and "matches" not in out and "not finite" in err


def test_apply_and_export_take_a_run_folder(model, tmp_path, capsys):
    run_dir = tmp_path / "runs" / "r"
    run_dir.mkdir(parents=True)
    shutil.copy(model, run_dir / "model.safetensors")
    _rgb_file(tmp_path / "in" / "a.png", "red")
    assert run(["apply", str(run_dir), str(tmp_path / "in"), "--out", str(tmp_path / "out")], capsys)[0] == 0
    assert run(["export", str(run_dir), "--out", str(tmp_path / "copy.safetensors")], capsys)[0] == 0


# --- app uploads --------------------------------------------------------------------------------------------------------
def _data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_a_data_url_upload_is_checked_before_anything_decodes_it(model, monkeypatch):
    """gradio takes an image inline as a base64 data: URL in FileData.url, past the upload route's byte limit; a
    169-megapixel PNG of 518 KB was decoded in full (+1.5 GB). Now bytes are limited before base64 decoding, pixels
    before image decoding, and the file lands in the cache that DELETE_CACHE cleans."""
    from gradio.data_classes import FileData
    decoded = []
    monkeypatch.setattr(Image.Image, "load", lambda self: decoded.append(self.size) or None)
    image = app.pass_path_unopened(gr.Image(type="filepath", image_mode=None))
    store = app.ModelStore(model.parent, device="cpu")
    path = image.preprocess(FileData(path="", url=_data_url(png_bomb(13_000, 13_000))))
    with pytest.raises(gr.Error, match="169.0 megapixels"):
        app.translate_image(store, model.name, "a2b", path, 1.0, False)
    assert decoded == [] and path in image.temp_files
    with pytest.raises(gr.Error, match="over the 20mb upload limit"):
        image.preprocess(FileData(path="", url=_data_url(b"\0" * (app.MAX_FILE_BYTES + 1))))
    assert app.build_app(store).delete_cache == app.DELETE_CACHE


# --- the run folder ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flags,parts", [
    (["--batch-size", "0"], ["--batch-size 0 must be 1 or more"]),
    (["--log-every", "0"], ["--log-every 0 must be 1 or more"]),
    (["--save-every", "0"], ["--save-every 0 must be 1 or more"]),
    (["--sample-every", "0"], ["--sample-every 0 must be 1 or more"]),
    (["--n-samples", "0"], ["--n-samples 0 must be 1 or more"]),
    (["--g-steps", "0"], ["--g-steps 0 must be 1 or more"]),
    (["--d-steps", "0"], ["--d-steps 0 must be 1 or more"]),
    (["--pool-size", "-1"], ["--pool-size -1 must be 0 or more"]),
    (["--lambda-smooth", "-1"], ["--lambda-smooth -1.0 must be 0 or more"]),
    (["--ngf", "0"], ["--ngf 0 must be 1 or more"]),
    (["--max-steps", "0"], ["--max-steps 0 must be 1 or more"]),
    (["--epochs", "0"], ["--epochs 0 must be 1 or more"]),
    (["--crop-size", "0"], ["--crop-size 0 must be 1 or more"]),
    (["--load-size", "-1"], ["--load-size -1 must be 0 or more"]),
    (["--device", "banana"], ["--device banana: not a device"]),
    (["--device", "cuda"], ["--device cuda: no CUDA GPU is available here"]),
    (["--generator", "unet"], ["--crop-size 32 does not fit a U-Net of depth 6", "multiples of 64"]),
    (["--model", "dualgan", "--paper-nets"], ["--crop-size 32 does not fit a U-Net of depth 8"]),
    (["--n-layers", "5"], ["--crop-size 32 is too small for a PatchGAN with --n-layers 5"]),
    (["--mask", "--model", "cyclegan"], ["--mask gates a residual generator's change: it needs --residual"]),
    (["--upsample", "transpose", "--generator", "unet", "--unet-depth", "3", "--mask"],
     ["--mask needs a generator that ends in a convolution, not a transposed one (use --upsample resize-conv)"]),
], ids=lambda v: v[0] if isinstance(v, list) and v and v[0].startswith("--") else None)
def test_every_bad_training_flag_is_one_line_before_any_folder(flags, parts, toy_root, tmp_path, capsys):
    if "cuda" in flags and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    runs = tmp_path / "runs"
    code, _, err = run(["train", "--data", str(toy_root), "--runs-dir", str(runs), *TINY, "--max-steps", "1",
                        *flags], capsys)
    assert_one_clear_line(code, err, *parts)
    assert not runs.exists()


def _train(args: list[str], capsys) -> tuple[int, str, str]:
    return run(["train", *TINY, "--log-every", "1", "--sample-every", "2", "--save-every", "2", *args], capsys)


@pytest.fixture
def finished(toy_root, tmp_path, capsys) -> Path:
    """runs/r: a finished 2-step run."""
    code, _, err = _train(["--data", str(toy_root), "--runs-dir", str(tmp_path / "runs"), "--name", "r",
                           "--max-steps", "2"], capsys)
    assert code == 0, err
    return tmp_path / "runs" / "r"


def test_an_existing_run_is_never_replaced_without_resume(finished, toy_root, capsys):
    before = _snapshot(finished)
    code, _, err = _train(["--data", str(toy_root), "--runs-dir", str(finished.parent), "--name", "r",
                           "--max-steps", "2"], capsys)
    assert_one_clear_line(code, err, "already holds a run", f"--resume --name r --runs-dir {finished.parent}",
                          "--name r-2")
    assert _snapshot(finished) == before


def test_resume_of_a_finished_run_says_so_and_writes_nothing(finished, capsys):
    before = _snapshot(finished)
    code, out, _ = run(["train", "--resume", "--name", "r", "--runs-dir", str(finished.parent)], capsys)
    assert code == 0 and "already finished (2 of 2 steps); nothing to do" in out and "--max-steps 4" in out
    assert _snapshot(finished) == before


@pytest.mark.parametrize("flags,parts", [
    (["--lr-g", "0.001"], ["--lr-g cannot change on --resume", "0.0002"]),
    (["--optimizer", "rmsprop"], ["--optimizer cannot change on --resume"]),
    (["--crop-size", "64", "--load-size", "64"], ["--crop-size cannot change on --resume"]),
    (["--ngf", "16"], ["--ngf cannot change on --resume"]),
    (["--batch-size", "2"], ["--batch-size cannot change on --resume"]),
], ids=["lr-g", "optimizer", "crop-size", "ngf", "batch-size"])
def test_resume_refuses_a_change_it_cannot_make_and_keeps_the_run(finished, capsys, flags, parts):
    before = _snapshot(finished)
    code, _, err = run(["train", "--resume", "--name", "r", "--runs-dir", str(finished.parent), "--max-steps", "4",
                        *flags], capsys)
    assert_one_clear_line(code, err, *parts)
    assert _snapshot(finished) == before  # config.json above all: a plain --resume still works


def test_resume_extends_from_another_folder_and_says_what_changed(finished, tmp_path, monkeypatch, capsys):
    """The run was started with a relative --data from one folder and is resumed from another."""
    monkeypatch.chdir(finished.parent.parent)
    (tmp_path / "data").symlink_to(Path(json.loads((finished / "config.json").read_text())["data"]["data"]))
    code, _, err = _train(["--data", "data", "--runs-dir", "runs", "--name", "rel", "--max-steps", "2"], capsys)
    assert code == 0, err
    monkeypatch.chdir(tmp_path / "runs")
    code, out, err = run(["train", "--resume", "--name", "rel", "--runs-dir", ".", "--max-steps", "4",
                          "--log-every", "2"], capsys)
    assert code == 0, err
    assert "resume: --max-steps 2 -> 4" in out and "resume: --log-every 1 -> 2" in out
    assert "the LR at this step goes from 0 to 1" in out  # stated, not a silent sawtooth
    assert json.loads((tmp_path / "runs" / "rel" / "config.json").read_text())["train"]["max_steps"] == 4


def test_a_second_run_in_the_same_folder_is_refused_while_one_trains(finished, toy_root, capsys):
    from translate.run_folder import lock
    with lock(finished):
        code, _, err = run(["train", "--resume", "--name", "r", "--runs-dir", str(finished.parent), "--max-steps",
                            "4"], capsys)
    assert_one_clear_line(code, err, "is in use by a training process", f"pid {os.getpid()}")
    code, _, err = run(["train", "--resume", "--name", "r", "--runs-dir", str(finished.parent), "--max-steps", "4"],
                       capsys)
    assert code == 0, err  # the lock went with its holder


def test_ctrl_c_during_start_up_is_one_line(toy_root, tmp_path, monkeypatch, capsys):
    import translate.trainer as trainer

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer.Trainer, "__init__", interrupted)
    code, _, err = _train(["--data", str(toy_root), "--runs-dir", str(tmp_path / "runs"), "--max-steps", "1"], capsys)
    assert code == 130 and err.strip() == "translate train: interrupted"
    assert not (tmp_path / "runs").exists()


def test_a_test_folder_whose_files_are_all_unreadable_does_not_stop_training(toy_root, tmp_path, capsys):
    root = tmp_path / "ds"
    for split in ("trainA", "trainB", "testB"):
        shutil.copytree(toy_root / split, root / split)
    make_broken(root / "testA")
    (root / "testA" / "bomb.png").unlink()
    code, _, err = _train(["--data", str(root), "--runs-dir", str(tmp_path / "runs"), "--name", "t",
                           "--max-steps", "2"], capsys)
    assert code == 0, err
    assert (tmp_path / "runs" / "t" / "samples" / "step_0000002.png").is_file()


def test_a_sample_grid_that_cannot_be_written_does_not_stop_training(toy_root, tmp_path, monkeypatch, capsys):
    import translate.run as run_module

    def full_disk(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(run_module, "atomic_write", full_disk)
    code, out, err = _train(["--data", str(toy_root), "--runs-dir", str(tmp_path / "runs"), "--name", "s",
                             "--max-steps", "2"], capsys)
    assert code == 0 and (tmp_path / "runs" / "s" / "model.safetensors").is_file()
    assert "could not write a sample grid" in out + err and not list((tmp_path / "runs" / "s").rglob("*.tmp"))
