"""Shared fixtures: a synthetic toy pair of domains with a known true mapping, and tiny-net configs."""
from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image, ImageDraw

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # progress bars flood captured test output

import torch  # noqa: E402

from translate.config import Config  # noqa: E402
from translate.recipes import recipe_config  # noqa: E402

torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", 2)))  # OMP_NUM_THREADS=1 reproduces a 1-core laptop


def toy_truth(image: np.ndarray) -> np.ndarray:
    """The true A -> B mapping of the toy domains: roll the colour channels (R -> G -> B -> R)."""
    return np.roll(image, 1, axis=2)


def toy_image(rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """Two or three saturated red/orange/magenta shapes on white."""
    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    for _ in range(rng.integers(2, 4)):
        x0, y0 = rng.integers(0, size - 10, 2)
        w, h = rng.integers(8, 16, 2)
        colour = (int(rng.integers(180, 256)), int(rng.integers(0, 90)), int(rng.integers(0, 140)))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape([int(x0), int(y0), int(x0 + w), int(y0 + h)], fill=colour)
    return np.asarray(img)


def make_toy_dataset(root, n_train: int = 48, n_test: int = 8, size: int = 32, seed: int = 0):
    """trainA/testA: red shapes; trainB/testB: channel-rolled shapes from *other* draws (unpaired);
    testB holds the true translations of testA under the same names, for paired evaluation."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        (root / f"{split}A").mkdir(parents=True)
        (root / f"{split}B").mkdir(parents=True)
        for i in range(n):
            a = toy_image(rng, size)
            Image.fromarray(a).save(root / f"{split}A" / f"{i:03d}.png")
            b = toy_truth(a) if split == "test" else toy_truth(toy_image(rng, size))
            Image.fromarray(b).save(root / f"{split}B" / f"{i:03d}.png")
    return root


@pytest.fixture(scope="session")
def toy_root(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("toy"))


def tiny_config(recipe: str = "cyclegan", **overrides) -> Config:
    """A recipe's config shrunk to tiny nets and 32 px images, for fast CPU tests."""
    cfg = recipe_config(recipe).update(dict(
        ngf=8, n_blocks=2, ndf=8, n_layers=2, load_size=32, crop_size=32, crop=False, flip=False, workers=0,
        batch_size=4, max_steps=4, log_every=2, sample_every=1000, save_every=1000, n_samples=2, device="cpu",
        amp="off"))
    return cfg.update(overrides)
