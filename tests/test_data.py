import numpy as np
import pytest
import torch

from broken import make_broken, make_unusual_but_valid
from translate.data import (DataError, UnpairedBatches, UnpairedDataset, build_transform, collate, list_images,
                            load_rgb)


def test_unusual_images_become_correct_rgb(tmp_path):
    make_unusual_but_valid(tmp_path)
    rgba = load_rgb(tmp_path / "rgba.png")
    assert rgba.shape == (40, 40, 3) and rgba.dtype == np.uint8
    assert (rgba[0, 0] == [255, 0, 0]).all() and (rgba[-1, -1] == [255, 255, 255]).all()  # alpha on white
    pal = load_rgb(tmp_path / "palette.png")
    assert (pal[0, 0] == [255, 255, 255]).all() and (pal[-1, -1] == [0, 0, 255]).all()
    assert (load_rgb(tmp_path / "deep16.png")[-1, -1] == round(1599 * 40 / 257)).all()  # 16-bit scaled, not clipped
    gray = load_rgb(tmp_path / "gray.png")
    assert (gray[..., 0] == gray[..., 1]).all()
    assert (np.abs(load_rgb(tmp_path / "cmyk.jpg")[20, 20].astype(int) - [255, 0, 0]) < 8).all()
    assert load_rgb(tmp_path / "exif.jpg").shape == (40, 20, 3)  # stored 40x20 landscape, shown portrait
    assert (load_rgb(tmp_path / "anim.gif")[0, 0] == [0, 0, 255]).all()  # first frame


def test_broken_files_rejected_with_file_and_reason(tmp_path):
    for name, word in make_broken(tmp_path).items():
        with pytest.raises(DataError) as info:
            load_rgb(tmp_path / name)
        assert name in str(info.value) and word in str(info.value)


def test_missing_and_empty_folders_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="not a folder"):
        list_images(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match="no images found"):
        list_images(tmp_path / "empty")


def test_listing_is_recursive_and_sorted(toy_root, tmp_path):
    (tmp_path / "x" / "deep").mkdir(parents=True)
    for name in ("b.png", "a.jpg", "deep/c.PNG"):
        (tmp_path / "x" / name).write_bytes(b"")
    assert [p.name for p in list_images(tmp_path / "x")] == ["a.jpg", "b.png", "c.PNG"]


def test_batches_shuffle_domains_independently_and_resume_mid_run():
    run = list(UnpairedBatches(10, 4, batch_size=2, seed=3, stop=10))  # 5 steps an epoch, 2 epochs
    epoch = [key for batch in run[:5] for key in batch]
    a, b, seeds = zip(*epoch)
    assert sorted(a) == list(range(10)) and a != tuple(range(10))
    assert {b.count(i) for i in range(4)} <= {2, 3}  # the short domain is drawn from repeated permutations
    assert len({key[2] for batch in run for key in batch}) == 20  # a fresh augmentation seed per sample
    assert [k[0] for k in run[5] + run[6]] != [k[0] for k in run[0] + run[1]]  # a new order each epoch
    assert list(UnpairedBatches(10, 4, batch_size=2, seed=3, start=7, stop=10)) == run[7:]
    assert list(UnpairedBatches(10, 4, batch_size=2, seed=4, stop=10)) != run


def test_batches_split_the_global_batch_across_processes():
    single = list(UnpairedBatches(12, 12, batch_size=4, seed=0, stop=6))
    ranks = [list(UnpairedBatches(12, 12, batch_size=2, seed=0, stop=6, rank=r, world_size=2)) for r in range(2)]
    for step, batch in enumerate(single):
        assert sorted(batch) == sorted(ranks[0][step] + ranks[1][step])
    with pytest.raises(DataError, match="global batch of 16"):
        list(UnpairedBatches(12, 3, batch_size=8, seed=0, stop=1, world_size=2))


def test_pipeline_is_in_range_and_identical_across_worker_counts(toy_root):
    files_a, files_b = list_images(toy_root / "trainA"), list_images(toy_root / "trainB")[:20]
    dataset = UnpairedDataset(files_a, files_b, build_transform(40, 32))
    batches = []
    for workers in (0, 2):
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=UnpairedBatches(48, 20, 4, seed=1, stop=14),
                                             collate_fn=collate, num_workers=workers)
        batches.append([b["a"] for b in loader])
    assert len(batches[0]) == 14
    assert batches[0][0].shape == (4, 3, 32, 32)
    assert -1.0 <= batches[0][0].min() and batches[0][0].max() <= 1.0
    assert all(torch.equal(x, y) for x, y in zip(*batches))
    # crops really are random: the same file under two seeds gives two crops
    x = dataset[(0, 0, 1)]["a"]
    assert any(not torch.equal(x, dataset[(0, 0, s)]["a"]) for s in range(2, 6))


def test_non_square_images_and_images_smaller_than_the_crop(tmp_path):
    from PIL import Image
    Image.new("RGB", (90, 30), "red").save(tmp_path / "wide.png")
    Image.new("RGB", (10, 12), "blue").save(tmp_path / "tiny.png")
    for resize in (True, False):
        t = build_transform(36, 32, resize=resize)
        for name in ("wide.png", "tiny.png"):
            assert t(image=load_rgb(tmp_path / name))["image"].shape == (32, 32, 3)


def test_load_size_0_trains_at_the_crop_scale():
    """The default recipe's --load-size 0: an image already at the crop size comes through untouched (flip off),
    and a larger one is shrunk to the crop size, not zoomed past it, so a random crop keeps all of its short side."""
    from translate.recipes import recipe_config
    assert recipe_config("residual-cyclegan").data.load_size == 0
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert np.array_equal(build_transform(0, 32, flip=False)(image=image)["image"], image)
    zoomed = build_transform(36, 32, flip=False)(image=image)["image"]
    assert not np.array_equal(zoomed, image)
    wide = np.zeros((64, 128, 3), np.uint8)
    wide[:, :, 0] = np.arange(64, dtype=np.uint8)[:, None] * 4  # a vertical ramp, 0 at the top to 252 at the bottom
    for load_size, kept in ((0, 1.0), (36, 32 / 36)):
        out = build_transform(load_size, 32, flip=False)(image=wide)["image"]
        assert out.shape == (32, 32, 3) and abs(np.ptp(out[..., 0].astype(int)) - 252 * kept) < 12


def test_an_extreme_strip_is_cropped_before_resizing():
    strip = np.zeros((1, 20000, 3), np.uint8)
    t = build_transform(286, 256)
    assert t(image=strip)["image"].shape == (256, 256, 3)  # without the guard: a 286 x 5.7 M pixel resize
    assert build_transform(64, 64, train=False)(image=np.zeros((5000, 10, 3), np.uint8))["image"].shape == (64, 64, 3)


def test_dataset_substitutes_a_file_that_fails_to_decode(tmp_path):
    make_broken(tmp_path / "bad")
    make_unusual_but_valid(tmp_path / "good")
    files = [tmp_path / "bad" / "truncated.jpg", tmp_path / "good" / "gray.png"]
    item = UnpairedDataset(files, files, build_transform(32, 32))[(0, 1, 0)]
    assert item["a"].shape == (3, 32, 32)
    assert len(item["bad"]) == 1 and "truncated.jpg" in item["bad"][0]
