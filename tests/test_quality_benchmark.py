"""benchmarks/quality.py's command line: bad sizes get one line, and a page or picture it did not write is never
overwritten."""
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quality():
    spec = importlib.util.spec_from_file_location("quality_benchmark", ROOT / "benchmarks" / "quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_size_must_be_a_multiple_of_16(quality, capsys):
    with pytest.raises(SystemExit) as exit_:
        quality.main(["--size", "100", "--candidates"])
    assert exit_.value.code == 2
    assert "--size 100: give a multiple of 16" in capsys.readouterr().err


def test_a_page_it_did_not_write_is_left_alone(quality, tmp_path, capsys):
    page = tmp_path / "notes.md"
    page.write_text("my own notes\n")
    with pytest.raises(SystemExit):
        quality.main(["--candidates", "--doc", str(page)])
    assert page.read_text() == "my own notes\n"
    assert "has no section written by this script" in capsys.readouterr().err


def test_a_new_page_never_overwrites_a_picture_with_its_sheets_name(quality, tmp_path, capsys):
    picture = tmp_path / "img" / "notes_glyphs.png"
    picture.parent.mkdir()
    picture.write_bytes(b"my picture")
    with pytest.raises(SystemExit):
        quality.main(["--sets", "glyphs", "--candidates", "--doc", str(tmp_path / "notes.md")])
    assert picture.read_bytes() == b"my picture" and not (tmp_path / "notes.md").exists()
    assert "notes_glyphs.png exists and was not written for" in capsys.readouterr().err


def test_page_at_another_size_names_its_command_nets_and_sheets(quality, tmp_path):
    page = tmp_path / "quality_128px.md"
    page.write_text(f"# kept\n{quality.START}\nold\n{quality.END}\nkept too\n")
    row = dict(l1=0.1, psnr=15.0, ssim=0.8, hue=10.0, chroma=0.5, psnr_to_change=14.0, ssim_background=0.9)
    results = {"openmoji": {"input unchanged": {**row, "n": 3}, "default": {**row, "images": 3000, "minutes": 1.0}}}
    quality.write_doc(results, "quick", 128, page)
    text = page.read_text()
    assert text.startswith("# kept\n") and text.endswith("kept too\n") and "\nold\n" not in text
    assert "quality.py --quick --size 128`" in text and "crop_size 128" in text and "load_size 144" in text
    assert "img/quality_128px_openmoji.png" in text  # the page's own sheets


def test_ceilings_trained_on_the_pairs_are_shown_but_never_the_best(quality, tmp_path):
    page = tmp_path / "quality.md"
    row = dict(l1=0.1, psnr=15.0, ssim=0.8, hue=10.0, chroma=0.5, psnr_to_change=14.0, ssim_background=0.9)
    ceiling = dict(row, l1=0.05, psnr=20.0, ssim=0.9)
    results = {"glyphs": {"input unchanged": {**row, "n": 3}, "default": {**row, "images": 3000, "minutes": 1.0},
                          "paired-l1": {**ceiling, "images": 3000, "minutes": 0.5}}}
    quality.write_doc(results, "quick", 64, page)
    text = page.read_text()
    assert "| default | **0.1000** | **15.00** | **0.800** |" in text
    assert "| paired-l1 | 0.0500 | 20.00 | 0.900 |" in text and "| 3000 | 0.5 |" in text
