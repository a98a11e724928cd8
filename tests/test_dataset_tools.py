"""`translate data prepare|inspect` on folders with broken, odd and duplicate files made here."""
import io
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from translate.data import DataError
from translate.cli import main as cli_main
from translate.dataset_tools import inspect, prepare


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _picture(seed: int, size=(40, 30), mode="RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).convert(mode)


@pytest.fixture
def sources(tmp_path):
    """A: 10 good RGB pictures (one in a subfolder), a grayscale, an RGBA, a duplicate and 3 broken files;
    B: 6 good JPEGs. Broken: a zero-byte .png, a truncated PNG, a text file named .jpg."""
    a, b = tmp_path / "a", tmp_path / "b"
    (a / "sub").mkdir(parents=True)
    b.mkdir()
    for i in range(9):
        (a / f"pic{i}.png").write_bytes(_png(_picture(i)))
    (a / "sub" / "pic9.png").write_bytes(_png(_picture(9)))
    (a / "gray.png").write_bytes(_png(_picture(20, mode="L")))
    rgba = _picture(21, mode="RGBA")
    rgba.putalpha(0)  # fully transparent: must come out white
    (a / "clear.png").write_bytes(_png(rgba))
    shutil.copyfile(a / "pic3.png", a / "pic3-copy.png")
    (a / "empty.png").write_bytes(b"")
    (a / "truncated.png").write_bytes(_png(_picture(30, size=(64, 64)))[:200])
    (a / "notes.jpg").write_text("not a picture\n")
    for i in range(6):
        _picture(100 + i, size=(50, 80)).save(b / f"photo{i}.jpg", quality=90)
    return a, b


def _files(root, split):
    return sorted(p.name for p in (root / split).iterdir()) if (root / split).is_dir() else []


def test_prepare_lists_broken_files_drops_duplicates_and_copies_as_is(sources, tmp_path):
    a, b = sources
    out = tmp_path / "out"
    report = prepare(a, b, out, test_fraction=0.25, seed=0)
    info = report["domains"]["A"]
    assert (info["found"], info["copied"], info["train"], info["test"]) == (16, 12, 9, 3)
    assert sorted(u["file"].rsplit("/", 1)[1] for u in info["unreadable"]) == ["empty.png", "notes.jpg",
                                                                               "truncated.png"]
    assert all(u["reason"] for u in info["unreadable"])
    assert info["duplicates"] == [{"file": str(a / "pic3.png"), "same_as": str(a / "pic3-copy.png")}]
    copied = _files(out, "trainA") + _files(out, "testA")
    assert len(copied) == 12 and not {"empty.png", "notes.jpg", "truncated.png", "pic3.png"} & set(copied)
    assert "sub-pic9.png" in copied
    for name in copied:
        split = "trainA" if name in _files(out, "trainA") else "testA"
        assert (out / split / name).read_bytes() == (a / name.replace("sub-", "sub/")).read_bytes()
    assert (len(_files(out, "trainB")), len(_files(out, "testB"))) == (4, 2)
    assert json.loads((out / "prepare_report.json").read_text()) == report


def test_prepare_split_is_deterministic_and_seeded(sources, tmp_path):
    a, b = sources
    splits = {}
    for run, seed in (("one", 0), ("two", 0), ("three", 1)):
        prepare(a, b, tmp_path / run, test_fraction=0.25, seed=seed)
        splits[run] = _files(tmp_path / run, "testA")
    assert splits["one"] == splits["two"]
    assert splits["one"] != splits["three"]


def test_prepare_resize_writes_rgb_png_shorter_side(sources, tmp_path):
    a, b = sources
    out = tmp_path / "out"
    prepare(a, b, out, test_fraction=0.0, size=20)
    assert not (out / "testA").exists()  # no empty split folder is made
    for name in _files(out, "trainA"):
        with Image.open(out / "trainA" / name) as img:
            assert (img.format, img.mode, img.size) == ("PNG", "RGB", (27, 20))
    assert (np.asarray(Image.open(out / "trainA" / "clear.png")) == 255).all()
    assert Image.open(out / "trainB" / "photo0.png").size == (20, 32)


def test_prepare_refuses_unusable_input_and_keeps_existing_output(sources, tmp_path):
    a, b = sources
    out = tmp_path / "out"
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "x.png").write_bytes(b"")
    with pytest.raises(DataError, match="none of its 1 images is readable"):
        prepare(a, broken, out)
    with pytest.raises(DataError, match="not a folder"):
        prepare(a, tmp_path / "sub-missing", out)
    prepare(a, b, out)
    with pytest.raises(DataError, match="not empty"):
        prepare(a, b, out)
    with pytest.raises(DataError, match="readable"):
        prepare(a, broken, out, overwrite=True)
    assert len(_files(out, "trainA")) + len(_files(out, "testA")) == 12  # still there
    prepare(b, a, out, overwrite=True)
    assert len(_files(out, "trainA")) + len(_files(out, "testA")) == 6


def test_inspect_reports_counts_sizes_modes_and_corrupt_files(sources, tmp_path):
    a, b = sources
    root = tmp_path / "data"
    root.mkdir()
    shutil.copytree(a, root / "trainA")
    shutil.copytree(b, root / "trainB")
    result = inspect(root)
    train_a = result["splits"]["trainA"]
    assert (train_a["files"], train_a["readable"]) == (16, 13)
    assert train_a["sizes"] == {"40x30": 13}
    assert train_a["modes"] == {"RGB": 11, "L": 1, "RGBA": 1}
    assert sorted(c["file"].rsplit("/", 1)[1] for c in train_a["corrupt"]) == ["empty.png", "notes.jpg",
                                                                               "truncated.png"]
    assert result["splits"]["trainB"]["modes"] == {"RGB": 6}
    assert set(result["splits"]) == {"trainA", "trainB"} and result["problems"] == []
    assert cli_main(["data", "inspect", str(root)]) == 0


def test_inspect_exits_non_zero_on_missing_or_empty_domain(sources, tmp_path, capsys):
    a, _ = sources
    root = tmp_path / "data"
    shutil.copytree(a, root / "trainA")
    assert cli_main(["data", "inspect", str(root)]) == 1
    assert "trainB: missing" in capsys.readouterr().out
    (root / "trainB").mkdir()
    (root / "trainB" / "x.png").write_bytes(b"")
    assert cli_main(["data", "inspect", str(root), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["problems"] == [f"{root / 'trainB'}: no readable image"]


def test_cli_prepare_prints_the_report(sources, tmp_path, capsys):
    a, b = sources
    assert cli_main(["data", "prepare", str(a), str(b), "--out", str(tmp_path / "out"), "--size", "16"]) == 0
    printed = capsys.readouterr().out
    assert "domain A: 16 found, 12 copied" in printed and "empty.png: empty file (0 bytes)" in printed
    assert cli_main(["data", "prepare", str(a), str(b), "--out", str(tmp_path / "out")]) == 2
    assert cli_main(["data", "inspect", str(tmp_path / "out")]) == 0
