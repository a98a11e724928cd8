import hashlib
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from broken import make_broken
from test_inference import make_model
from translate.apply import EXIT_NONE, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, main
from translate.cli import main as cli_main
from translate.inference import Translator, smooth_flat_areas


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.safetensors"
    make_model(path)
    return path


def _rgb(h: int, w: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def _digest(folder) -> dict:
    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def photos(tmp_path):
    """Nested folders of odd-sized RGB, grayscale, RGBA and 2x2 images, one truncated file and a text file."""
    root = tmp_path / "in"
    (root / "sub" / "deeper").mkdir(parents=True)
    _rgb(53, 37).save(root / "top.png")
    _rgb(37, 53, 1).save(root / "sub" / "odd.jpg")
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (20, 30), dtype=np.uint8), "L").save(
        root / "sub" / "deeper" / "gray.png")
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (41, 41, 4), dtype=np.uint8), "RGBA").save(
        root / "sub" / "rgba.png")
    _rgb(2, 2).save(root / "sub" / "tiny.png")
    make_broken(tmp_path / "broken")
    shutil.copy(tmp_path / "broken" / "truncated.png", root / "sub" / "broken.png")
    (root / "notes.txt").write_text("not an image\n")
    return root


def test_folder_is_mirrored_with_sizes_kept_and_bad_files_reported(model, photos, tmp_path, capsys):
    before = _digest(photos)
    out = tmp_path / "out"
    code = cli_main(["apply", str(model), str(photos), "--out", str(out), "--batch-size", "3", "--html"])
    captured = capsys.readouterr()
    assert code == EXIT_PARTIAL
    expected = {"top.png": (37, 53), "sub/odd.png": (53, 37), "sub/deeper/gray.png": (30, 20),
                "sub/rgba.png": (41, 41), "sub/tiny.png": (2, 2)}
    for rel, size in expected.items():
        with Image.open(out / rel) as image:
            assert image.size == size and image.mode == "RGB"
    assert not (out / "sub" / "broken.png").exists()
    assert "translated 5 of 6 images" in captured.out
    assert "broken.png: unreadable or truncated image" in captured.err
    page = (out / "index.html").read_text()
    assert page.count("<figure>") == 5 and "sub/deeper/gray.png" in page and "broken.png" in page
    assert _digest(photos) == before  # inputs untouched


def test_an_image_that_fails_in_the_net_does_not_stop_its_batch(model, photos, tmp_path, monkeypatch, capsys):
    real = Translator.translate_tensor

    def out_of_memory_on_wide_images(self, x, direction="a2b"):
        if x.shape[-1] > 50:
            raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real(self, x, direction)

    monkeypatch.setattr(Translator, "translate_tensor", out_of_memory_on_wide_images)
    out = tmp_path / "out"
    assert main([str(model), str(photos / "sub"), "--out", str(out), "--batch-size", "8"]) == EXIT_PARTIAL
    assert "odd.jpg: translation failed (CUDA out of memory" in capsys.readouterr().err
    assert {p.name for p in out.rglob("*.png")} == {"gray.png", "rgba.png", "tiny.png"}


def test_an_output_that_cannot_be_written_does_not_stop_the_rest(model, photos, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "sub").write_text("a file where the sub folder should go")
    assert main([str(model), str(photos), "--out", str(out)]) == EXIT_PARTIAL
    assert "odd.jpg: could not write" in capsys.readouterr().err
    assert (out / "top.png").is_file()


def test_never_overwrites_inputs(model, photos, capsys):
    before = _digest(photos)
    code = main([str(model), str(photos / "top.png"), "--out", str(photos)])
    assert code == EXIT_NONE
    assert "would overwrite an input" in capsys.readouterr().err
    assert _digest(photos) == before
    assert main([str(model), str(photos / "top.png"), "--out", str(photos), "--suffix", "_b"]) == EXIT_OK
    assert (photos / "top_b.png").is_file() and _digest(photos).items() >= before.items()


def test_resize_jpg_side_by_side_and_glob(model, photos, tmp_path):
    out = tmp_path / "out"
    code = main([str(model), str(photos / "**" / "*.png"), "--out", str(out), "--size", "16", "--format", "jpg",
                 "--side-by-side", "--direction", "b2a", "--suffix", "_x"])
    assert code == EXIT_PARTIAL  # the truncated png
    with Image.open(out / "top_x.jpg") as pair:  # 37x53 -> shorter side 16 -> 16x23, twice as wide
        assert pair.size == (32, 23) and pair.format == "JPEG"
    assert (out / "sub" / "deeper" / "gray_x.jpg").is_file() and (out / "sub" / "rgba_x.jpg").is_file()
    assert not (out / "sub" / "odd_x.jpg").exists()  # not matched by *.png


def test_tiled_apply_keeps_size(model, tmp_path):
    _rgb(70, 90).save(tmp_path / "big.png")
    out = tmp_path / "out"
    assert main([str(model), str(tmp_path / "big.png"), "--out", str(out), "--tile", "32", "--overlap", "8"]) == 0
    with Image.open(out / "big.png") as image:
        assert image.size == (90, 70)


def test_smooth_writes_the_smoothed_translation(model, tmp_path):
    _rgb(40, 48, 5).save(tmp_path / "in.png")
    outputs = {}
    for flags in ([], ["--smooth"]):
        out = tmp_path / f"out{len(flags)}"
        assert main([str(model), str(tmp_path / "in.png"), "--out", str(out), *flags]) == 0
        with Image.open(out / "in.png") as image:
            outputs[len(flags)] = torch.from_numpy(np.asarray(image, dtype=np.float64)).permute(2, 0, 1)[None]
    want = (smooth_flat_areas(outputs[0] / 127.5 - 1) + 1) * 127.5
    assert (outputs[1] - outputs[0]).abs().max() > 2
    assert (outputs[1] - want).abs().max() < 2.5  # the filter on the translation, uint8 rounding apart


def test_clashing_names_are_kept_apart(model, tmp_path):
    (tmp_path / "in").mkdir()
    _rgb(16, 16).save(tmp_path / "in" / "a.png")
    _rgb(16, 16, 1).save(tmp_path / "in" / "a.jpg")
    assert main([str(model), str(tmp_path / "in"), "--out", str(tmp_path / "out")]) == EXIT_OK
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["a.png", "a_png.png"]


@pytest.mark.parametrize("args,message", [
    (["missing.safetensors", "{photos}"], "missing.safetensors: no such model file"),
    (["{model}", "{photos}/nothing-here"], "nothing-here: no such file or folder"),
    (["{model}", "{photos}/*.gif"], "*.gif: no images found"),
    (["{model}", "{photos}", "--tile", "32", "--overlap", "30"], "--tile 32 must exceed --overlap 30"),
])
def test_usage_errors_exit_2_with_a_clear_message(model, photos, tmp_path, capsys, args, message):
    argv = [a.format(model=model, photos=photos) for a in args] + ["--out", str(tmp_path / "out")]
    assert main(argv) == EXIT_USAGE
    assert message in capsys.readouterr().err


def test_onnxruntime_backend_gives_the_torch_backend_output(model, tmp_path, monkeypatch):
    import translate.export as export
    exported = []
    real = export.export_onnx
    monkeypatch.setattr(export, "export_onnx", lambda *a: exported.append(a[1]) or real(*a))
    for i, size in enumerate(((37, 53), (64, 48))):
        _rgb(*size, seed=i).save(tmp_path / f"in{i}.png")
    for backend in ("torch", "onnxruntime"):
        assert main([str(model), str(tmp_path / "in0.png"), str(tmp_path / "in1.png"), "--out",
                     str(tmp_path / backend), "--precision", "fp32", "--backend", backend]) == EXIT_OK
    for name in ("in0.png", "in1.png"):
        a = np.asarray(Image.open(tmp_path / "torch" / name), dtype=int)
        b = np.asarray(Image.open(tmp_path / "onnxruntime" / name), dtype=int)
        assert a.shape == b.shape and np.abs(a - b).max() <= 1  # equal up to rounding
    assert exported == ["a2b"]  # the onnxruntime run exported its one direction once and used it
