import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from translate.checkpoint import export_model
from translate.config import ModelConfig
from translate.inference import Translator, tile_starts
from translate.nets import build_generator


def make_model(path, seed: int = 0, half: bool = False, meta: dict | None = None, **model_fields) -> Translator:
    """A tiny untrained model artifact at `path` (ResNet, ngf 8, one block unless overridden, metadata as a
    trained model's plus `meta`); its Translator."""
    model = ModelConfig(**{"ngf": 8, "n_blocks": 1, **model_fields})
    torch.manual_seed(seed)
    nets = {name: build_generator(model).eval() for name in ("g_ab", "g_ba")}
    if half:
        nets = {name: net.half() for name, net in nets.items()}
    export_model(path, nets, {"model": dataclasses.asdict(model), "image_size": 32, "domains": ["cats", "dogs"],
                              "recipe": "cyclegan", "steps": 4, **(meta or {})})
    return Translator.from_file(path, device="cpu")


@pytest.fixture(scope="module")
def translator(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("model") / "model.safetensors")


def smooth_image(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """A 1x3xHxW test picture in [-1, 1] with structure at several scales."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 3, h // 8 + 1, w // 8 + 1, generator=g)
    x = torch.nn.functional.interpolate(x, size=(h, w), mode="bilinear") + 0.2 * torch.rand(1, 3, h, w, generator=g)
    return (x / x.max() * 2 - 1).clamp(-1, 1)


def test_any_size_and_mode_keeps_size_and_returns_rgb(translator):
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (53, 37, 3), dtype=np.uint8)),
              Image.fromarray(rng.integers(0, 256, (20, 30), dtype=np.uint8), "L"),
              Image.fromarray(rng.integers(0, 256, (41, 41, 4), dtype=np.uint8), "RGBA")]
    for image in images:
        out = translator(image, direction="b2a")
        assert out.size == image.size and out.mode == "RGB"


def test_batched_call_matches_one_by_one(translator):
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in ((32, 48, 3), (37, 53, 3), (32, 48, 3))]
    batched = translator(images, direction="a2b", batch_size=8)
    single = [translator(image, direction="a2b") for image in images]
    assert [im.size for im in batched] == [(48, 32), (53, 37), (48, 32)]
    for a, b in zip(batched, single):
        assert np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).max() <= 1  # float rounding only
    assert np.abs(np.asarray(batched[0], np.int16) - np.asarray(batched[2], np.int16)).max() > 0


def test_fp16_artifact_loads_as_float32(tmp_path):
    t = make_model(tmp_path / "half.safetensors", half=True)
    assert all(p.dtype == torch.float32 for p in t.net("a2b").parameters())
    assert t(Image.new("RGB", (36, 28), "red")).size == (36, 28)


def test_bf16_precision_stays_close_to_fp32(translator, tmp_path):
    nets = {"g_ab": translator.net("a2b").net, "g_ba": translator.net("b2a").net}
    fast = Translator(nets, translator.meta, translator.device, precision="bf16")
    x = smooth_image(40, 56)
    exact, approx = translator.translate_tensor(x), fast.translate_tensor(x)
    assert approx.dtype == torch.float32 and 0 < (approx - exact).abs().mean() < 0.02
    tiled_exact, tiled_approx = (t.translate_tiled(x, tile=32, overlap=8) for t in (translator, fast))
    assert (tiled_approx - tiled_exact).abs().mean() < 0.02
    with pytest.raises(ValueError, match="precision must be one of"):
        Translator.from_file(tmp_path / "any.safetensors", precision="fp8")


def test_tiled_matches_untiled_away_from_seams(tmp_path):
    """For a net without instance norm (every op local), tiles reproduce the untiled result exactly outside the
    blended overlaps, whose width exceeds the net's receptive field."""
    t = make_model(tmp_path / "local.safetensors", g_norm="none", init_gain=0.12)
    x = smooth_image(150, 190)
    full = t.translate_tensor(x)
    assert full.std() > 0.3  # a net that does something
    tiled = t.translate_tiled(x, tile=96, overlap=32, batch_size=3)
    diff = (full - tiled).abs()[0].amax(0)
    seams = torch.zeros_like(diff, dtype=torch.bool)
    seams[64:96] = True  # tiles start at 0, 64, 128: overlaps 64-96 and 128-160
    seams[:, 64:96] = seams[:, 128:160] = True
    assert diff[~seams].max() < 1e-5


def test_tiles_share_instance_norm_statistics_and_bound_memory(translator):
    """Every forward pass sees at most one tile; tiles normalised with statistics shared over the whole image
    come out closer to the untiled result than tiles each normalised on their own."""
    x = smooth_image(200, 260, seed=3)
    net = translator.net("a2b")
    shapes = []
    hook = net.register_forward_pre_hook(lambda m, inputs: shapes.append(inputs[0].shape))
    try:
        tiled = translator.translate_tiled(x, tile=64, overlap=16, batch_size=4)
    finally:
        hook.remove()
    assert len(shapes) > 10 and all(s[-2] <= 64 and s[-1] <= 64 for s in shapes)
    full = translator.translate_tensor(x)
    boxes = [(y, x0, min(y + 64, 200), min(x0 + 64, 260)) for y in tile_starts(200, 64, 48)
             for x0 in tile_starts(260, 64, 48)]
    with torch.inference_mode():
        each_own = translator._blend_tiles(net, x[0], boxes, 16, 4)[None]
    shared_error, own_error = (tiled - full).abs().mean(), (each_own - full).abs().mean()
    assert shared_error < 0.6 * own_error and shared_error < 0.05


def test_bad_arguments_are_clear(translator):
    with pytest.raises(ValueError, match="direction"):
        translator(Image.new("RGB", (8, 8)), direction="sideways")
    with pytest.raises(ValueError, match="must exceed overlap"):
        translator.translate_tiled(torch.zeros(1, 3, 100, 100), tile=64, overlap=62)
