import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from translate.checkpoint import export_model
from translate.config import ModelConfig
from translate.inference import Translator, smooth_flat_areas
from translate.nets import build_generator
from translate.tiling import receptive_radius


def make_model(path, seed: int = 0, half: bool = False, meta: dict | None = None, **model_fields) -> Translator:
    """A tiny untrained model artifact at `path` (ResNet, ngf 8, one block unless overridden, metadata as a
    trained model's plus `meta`; a residual one's head drawn at random); its Translator."""
    model = ModelConfig(**{"ngf": 8, "n_blocks": 1, **model_fields})
    torch.manual_seed(seed)
    nets = {name: build_generator(model).eval() for name in ("g_ab", "g_ba")}
    for net in nets.values():  # a residual generator starts as the identity: give its zero head a change to make
        head = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)][-1] if model.residual else None
        if head is not None:
            torch.nn.init.normal_(head.weight, 0, 0.02)
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


def test_smoothing_flattens_faint_texture_and_keeps_outlines():
    """In float64: a flat image stays flat, texture of 2 grey levels' spread on a flat fill loses most of its
    spread (the filter's eps is 14 levels), and a black-white outline keeps its full contrast."""
    g = torch.Generator().manual_seed(0)
    flat = torch.full((1, 3, 32, 32), 0.3, dtype=torch.float64)
    assert torch.allclose(smooth_flat_areas(flat), flat, atol=1e-12)
    textured = flat + 0.02 * torch.randn(1, 3, 32, 32, generator=g, dtype=torch.float64)
    assert smooth_flat_areas(textured).std() < textured.std() / 4
    outline = -torch.ones(1, 3, 32, 32, dtype=torch.float64)
    outline[..., :, 16:] = 1
    assert (smooth_flat_areas(outline) - outline).abs().max() < 0.05


def test_smooth_translation_is_the_smoothed_translation(translator):
    image = np.random.default_rng(2).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    plain = np.asarray(translator(image, direction="a2b"), dtype=np.float64)
    smoothed = np.asarray(translator(image, direction="a2b", smooth=True), dtype=np.float64)
    expected = smooth_flat_areas(torch.from_numpy(plain).permute(2, 0, 1)[None] / 127.5 - 1)
    expected = (expected[0].permute(1, 2, 0).numpy() + 1) * 127.5
    assert np.abs(smoothed - plain).max() > 2  # the option does something
    assert np.abs(smoothed - expected).max() < 2.5  # and it is the filter on the translation (uint8 rounding apart)


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


def _double(t: Translator) -> Translator:
    """The same model's nets in float64: exactness checks free of fp32 rounding (which varies with CPU and threads)."""
    for net in t.nets.values():
        net.double()
    return t


@pytest.mark.parametrize("upsample", ["resize-conv", "transpose", "antialiased"])
def test_receptive_radius_bounds_the_true_one(upsample):
    """Against the gradient of one output pixel in a norm-free net: the analytic radius covers every input pixel
    that affects it, and overshoots by at most 2."""
    torch.manual_seed(0)
    g = build_generator(ModelConfig(ngf=4, n_blocks=2, g_norm="none", init_gain=0.1, upsample=upsample)).double()
    x = torch.randn(1, 3, 160, 160, dtype=torch.float64, requires_grad=True)
    g(x)[0, :, 80, 80].sum().backward()
    true_radius = int((x.grad[0].abs().sum(0).nonzero() - 80).abs().max())
    assert true_radius <= receptive_radius(g) <= true_radius + 2


def test_tiled_equals_untiled_for_a_local_net(tmp_path):
    """Without instance norm every op is local: with the default overlap (the receptive field) the tiled result
    equals the untiled one everywhere, seams included, in float64."""
    t = _double(make_model(tmp_path / "local.safetensors", g_norm="none", init_gain=0.12))
    x = smooth_image(150, 190).double()
    full = t.net("a2b")(x)
    assert full.std() > 0.3  # a net that does something
    tiled = t.translate_tiled(x, tile=96, batch_size=3)
    assert tiled.dtype == torch.float64 and (full - tiled).abs().max() < 1e-12


def test_tiles_share_instance_norm_statistics_and_bound_memory(translator, tmp_path):
    """Every forward pass sees at most one tile. With instance norm statistics measured over the tiles norm by norm
    (the default) the result equals the untiled one (float64); tiles normalised each on its own are far off, and
    exact statistics for only the first norm leave an error in between."""
    t = _double(make_model(tmp_path / "in.safetensors"))
    x = smooth_image(120, 150, seed=3).double()
    net = t.net("a2b")
    shapes = []
    hook = net.register_forward_pre_hook(lambda m, inputs: shapes.append(inputs[0].shape))
    try:
        t.translate_tiled(x, tile=80, batch_size=4)
    finally:
        hook.remove()
    assert len(shapes) > 10 and all(s[-2] <= 80 and s[-1] <= 80 for s in shapes)
    full = net(x)
    n_norms = sum(isinstance(m, torch.nn.InstanceNorm2d) for m in net.modules())
    own, first, exact = ((t.translate_tiled(x, tile=80, batch_size=4, passes=p) - full).abs().max().item()
                         for p in (0, 1, None))
    assert n_norms > 3 and own > 0.1 and own > first > 1e-4 and exact < 1e-10


def test_bad_arguments_are_clear(translator):
    with pytest.raises(ValueError, match="direction"):
        translator(Image.new("RGB", (8, 8)), direction="sideways")
    with pytest.raises(ValueError, match="must exceed overlap"):
        translator.translate_tiled(torch.zeros(1, 3, 100, 100), tile=64, overlap=62)
