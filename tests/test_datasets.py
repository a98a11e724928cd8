"""The shipped emoji datasets and their builders: loadable, consistent with ATTRIBUTION.md, reproducible."""
import csv
import importlib.util
import re
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from translate.data import UnpairedBatches, UnpairedDataset, build_transform, collate, list_images

DATASETS = Path(__file__).resolve().parents[1] / "datasets"
SPLITS = ("trainA", "trainB", "testA", "testB")
SHIPPED = ("emoji-style", "emoji-expression")
KEY = r"[0-9a-f]{4,5}(?:-[0-9a-f]{4,5})*"


def _load(name):
    """datasets/ is a folder of scripts, not a package."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, DATASETS / f"{name}.py")
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


build_emoji, build_glyphs = _load("build_emoji"), _load("build_glyphs")
ATTRIBUTION = (DATASETS / "ATTRIBUTION.md").read_text()


def _names(root: Path, split: str) -> set[str]:
    return {p.name for p in (root / split).iterdir()}


def _chunks(data: bytes) -> list[bytes]:
    """PNG chunk types, in order."""
    types, pos = [], 8
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        types.append(kind)
        pos += 12 + length
    return types


@pytest.mark.parametrize("name", SHIPPED)
def test_counts_match_attribution(name):
    row = re.search(rf"^\| {name} \| (\d+) \| (\d+) \| (\d+) \| (\d+) \|$", ATTRIBUTION, re.M)
    assert row, f"ATTRIBUTION.md has no count row for {name}"
    root = DATASETS / name
    assert {s: len(_names(root, s)) for s in SPLITS} == dict(zip(SPLITS, map(int, row.groups())))


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_images_are_64px_rgb_png_on_white_without_metadata(name):
    files = sorted((DATASETS / name).glob("*/*.png"))
    white_corners = 0
    for path in files:
        data = path.read_bytes()
        assert _chunks(data) == [b"IHDR"] + [b"IDAT"] * (len(_chunks(data)) - 2) + [b"IEND"], path
        with Image.open(path) as img:
            assert (img.format, img.mode, img.size) == ("PNG", "RGB", (64, 64)), path
            white_corners += (np.asarray(img)[[0, 0, -1, -1], [0, -1, 0, -1]] == 255).all()
    assert white_corners >= 0.95 * len(files)  # a few Twemoji touch the edge; the background is white


def test_style_is_paired_by_code_point_and_split_by_emoji():
    root = DATASETS / "emoji-style"
    train, test = _names(root, "trainA"), _names(root, "testA")
    assert train == _names(root, "trainB") and test == _names(root, "testB")
    assert not train & test
    assert all(re.fullmatch(KEY + r"\.png", n) and "fe0f" not in n for n in train | test)
    assert 0.05 < len(test) / len(train | test) < 0.15
    assert len(train | test) >= 400


def test_expression_domains_designs_and_pairs():
    root = DATASETS / "emoji-expression"
    designs = set(build_emoji.EXPRESSION_DESIGNS)
    for split in SPLITS:
        for name in _names(root, split):
            design, key = re.fullmatch(rf"([a-z]+)_({KEY})\.png", name).groups()
            assert design in designs
            assert key in (build_emoji.NOT_SMILING if split.endswith("A") else build_emoji.SMILING), name
    for domain in "AB":
        assert not _names(root, f"train{domain}") & _names(root, f"test{domain}")
        assert {n.split("_")[0] for n in _names(root, f"train{domain}")} == designs
    for design in designs:
        assert f"{design} {len(list(root.glob(f'*/{design}_*.png')))}" in ATTRIBUTION
    with open(root / "pairs.csv", newline="") as handle:
        pairs = list(csv.DictReader(handle))
    assert pairs and {p["split"] for p in pairs} == {"train", "test"}
    for p in pairs:
        assert (root / p["a_file"]).is_file() and (root / p["b_file"]).is_file(), p
        assert p["a_file"].startswith(f"{p['split']}A/{p['design']}_"), p
        assert p["b_file"].startswith(f"{p['split']}B/{p['design']}_"), p
    assert f"lists {len(pairs)}" in ATTRIBUTION


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_sets_load_through_the_training_pipeline(name):
    root = DATASETS / name
    for train, split in ((True, "train"), (False, "test")):
        files_a, files_b = list_images(root / f"{split}A"), list_images(root / f"{split}B")
        dataset = UnpairedDataset(files_a, files_b, build_transform(64, 32, train=train))
        batches = UnpairedBatches(len(files_a), len(files_b), batch_size=4, seed=0, stop=1)
        batch = next(iter(torch.utils.data.DataLoader(dataset, batch_sampler=batches, collate_fn=collate)))
        assert batch["a"].shape == batch["b"].shape == (4, 3, 32, 32)
        assert batch["a"].min() >= -1 and batch["a"].max() <= 1 and batch["b"].std() > 0.1
        assert batch["bad"] == []


@pytest.fixture(scope="module")
def npm_cache():
    """The pinned tarballs, from datasets/_cache or fetched once with `npm pack` (a build step, bounded)."""
    try:
        for package in ("noto", "twemoji", "streamline", "openmoji"):
            build_emoji.fetch(package)
    except RuntimeError as exc:
        pytest.skip(f"pinned npm package unavailable, cannot rebuild: {exc}")
    return build_emoji.CACHE


def _versions_note() -> str:
    import PIL
    import resvg_py
    return (f"(ATTRIBUTION.md names the tool versions that reproduce the shipped bytes; "
            f"here resvg-py {resvg_py.__version__}, Pillow {PIL.__version__})")


def test_builder_reproduces_shipped_style_files(npm_cache, tmp_path):
    shipped = DATASETS / "emoji-style"
    keys = [n[:-4] for split in ("trainA", "testA") for n in sorted(_names(shipped, split))[:3]]
    build_emoji.build_style(tmp_path, only=keys, cache=npm_cache)
    built = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.png"))
    assert len(built) == 12
    for rel in built:
        assert (tmp_path / rel).read_bytes() == (shipped / rel).read_bytes(), f"{rel} differs {_versions_note()}"


def test_builder_reproduces_shipped_expression_files(npm_cache, tmp_path):
    shipped = DATASETS / "emoji-expression"
    build_emoji.build_expression(tmp_path, designs=("streamline",), cache=npm_cache)
    built = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.png"))
    assert built == sorted(p.relative_to(shipped) for p in shipped.rglob("streamline_*.png"))
    for rel in built:
        assert (tmp_path / rel).read_bytes() == (shipped / rel).read_bytes(), f"{rel} differs {_versions_note()}"
    shipped_rows = [r for r in (shipped / "pairs.csv").read_text().splitlines() if r.startswith("streamline,")]
    assert (tmp_path / "pairs.csv").read_text().splitlines()[1:] == shipped_rows


def test_openmoji_builds_aligned_line_art_to_colour(npm_cache, tmp_path):
    build_emoji.build_openmoji(tmp_path, size=48, only=["1f600", "1f98a", "2639"], cache=npm_cache)
    for path in sorted(tmp_path.glob("train*/*.png")) + sorted(tmp_path.glob("test*/*.png")):
        assert Image.open(path).size == (48, 48)
    for a in tmp_path.glob("*A/*.png"):
        line = np.asarray(Image.open(a), dtype=int)
        colour = np.asarray(Image.open(a.parent.parent / (a.parent.name[:-1] + "B") / a.name), dtype=int)
        assert np.ptp(line, axis=2).max() < 40, "line art is black on white"
        assert np.ptp(colour, axis=2).max() > 100, "the colour version has colour"
        ink = line.mean(axis=2) < 100
        assert (colour.mean(axis=2)[ink] < 128).mean() > 0.9, "the outline sits on the same pixels"


def test_glyph_pairs_share_a_baseline_and_rebuild_identically(tmp_path):
    characters = "AHgx7Ωé"
    for out in (tmp_path / "one", tmp_path / "two"):
        build_glyphs.build_glyphs(out, size=64, characters=characters)
    one = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*.png"))
    assert len(one) == 2 * len(characters)
    assert all((tmp_path / "one" / r).read_bytes() == (tmp_path / "two" / r).read_bytes() for r in one)
    split = "test" if build_glyphs.in_test("H", 0.1) else "train"
    sans, serif = (np.asarray(Image.open(tmp_path / "one" / f"{split}{d}" / "0048.png").convert("L")) < 128
                   for d in "AB")
    assert (sans != serif).any(), "the two typefaces differ"
    rows = [np.flatnonzero(ink.any(axis=1)) for ink in (sans, serif)]
    assert rows[0][-1] == rows[1][-1], "H sits on the same baseline in both faces"
    cols = [np.flatnonzero(ink.any(axis=0)) for ink in (sans, serif)]
    assert abs((cols[0][0] + cols[0][-1]) - (cols[1][0] + cols[1][-1])) <= 2, "and is centred the same way"
