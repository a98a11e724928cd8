import copy
import dataclasses

import pytest
import torch
from torch import nn

from translate.config import ModelConfig
from translate.nets import build_discriminator, build_generator, size_rule
from translate.nets.layers import BlurPool


@pytest.mark.parametrize("upsample", ["resize-conv", "transpose", "antialiased"])
@pytest.mark.parametrize("size", [(32, 32), (36, 52), (64, 20)])
def test_resnet_generator_keeps_any_size_divisible_by_4(upsample, size):
    g = build_generator(ModelConfig(ngf=8, n_blocks=2, upsample=upsample, init_gain=0.5))
    out = g(torch.randn(2, 3, *size))
    assert out.shape == (2, 3, *size)
    assert 0.99 < out.abs().max() <= 1.0  # large weights saturate the Tanh: images stay in [-1, 1]


def test_upsampling_choice_changes_the_layers():
    kinds = {}
    for upsample in ("resize-conv", "transpose", "antialiased"):
        g = build_generator(ModelConfig(ngf=8, n_blocks=1, upsample=upsample))
        kinds[upsample] = {type(m) for m in g.modules()}
    assert nn.Upsample in kinds["resize-conv"] and nn.ConvTranspose2d not in kinds["resize-conv"]
    assert nn.ConvTranspose2d in kinds["transpose"] and BlurPool not in kinds["transpose"]
    assert BlurPool in kinds["antialiased"]


@pytest.mark.parametrize("generator", ["unet", "encoder-decoder"])
def test_unet_shapes(generator):
    g = build_generator(ModelConfig(generator=generator, ngf=8, unet_depth=4, g_norm="batch"))
    assert g(torch.randn(2, 3, 32, 48)).shape == (2, 3, 32, 48)


def test_unet_skips_make_the_difference():
    unet = build_generator(ModelConfig(generator="unet", ngf=8, unet_depth=3))
    plain = build_generator(ModelConfig(generator="encoder-decoder", ngf=8, unet_depth=3))
    assert sum(p.numel() for p in unet.parameters()) > sum(p.numel() for p in plain.parameters())


@pytest.mark.parametrize("n_layers,size,patches", [(3, 256, 30), (2, 64, 14), (3, 64, 6)])
def test_patchgan_output_grid(n_layers, size, patches):
    d = build_discriminator(ModelConfig(ndf=8, n_layers=n_layers))
    assert d(torch.randn(1, 3, size, size)).shape == (1, 1, patches, patches)


def test_multiscale_critic_judges_the_half_size_copy_with_equal_weight():
    d = build_discriminator(ModelConfig(discriminator="multiscale", ndf=8, n_layers=3, d_norm="none"))
    x = torch.randn(2, 3, 64, 64)
    logits = d(x)
    assert logits.shape == (2, 2, 6, 6)  # the full-size critic's 6x6 grid; the half-size one's 2x2, each 3x3 times
    full, half = d.scales
    assert torch.equal(logits[:, :1], full(x))
    coarse = half(torch.nn.functional.avg_pool2d(x, 3, 2, 1, count_include_pad=False))
    assert coarse.shape == (2, 1, 2, 2)
    assert torch.equal(logits[:, 1:], coarse.repeat_interleave(3, 2).repeat_interleave(3, 3))
    assert torch.equal(d.features(x)[-1], logits) and len(d.features(x)) == 2 * 4 + 1


def test_spectral_norm_present_only_when_asked():
    with_sn = build_discriminator(ModelConfig(ndf=8, spectral_norm=True))
    without = build_discriminator(ModelConfig(ndf=8))
    convs = [m for m in with_sn.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(hasattr(m, "weight_orig") for m in convs)
    assert not any(hasattr(m, "weight_orig") for m in without.modules())


def test_norm_options_and_init():
    g = build_generator(ModelConfig(ngf=8, n_blocks=1, g_norm="batch"))
    assert any(isinstance(m, nn.BatchNorm2d) for m in g.modules())
    g = build_generator(ModelConfig(ngf=8, n_blocks=1, g_norm="none"))
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) for m in g.modules())
    big = build_generator(ModelConfig(ngf=32, n_blocks=4))
    weights = torch.cat([m.weight.flatten() for m in big.modules() if isinstance(m, nn.Conv2d)])
    assert abs(weights.std().item() - 0.02) < 0.002


def test_unknown_names_are_clear_errors():
    with pytest.raises(ValueError, match="unknown generator 'vit'"):
        build_generator(ModelConfig(generator="vit"))
    with pytest.raises(ValueError, match="unknown upsampling"):
        build_generator(ModelConfig(upsample="pixelshuffle"))


@pytest.mark.parametrize("generator", ["resnet", "unet", "encoder-decoder"])
def test_residual_generator_starts_as_the_identity_and_learns_a_clamped_change(generator):
    g = build_generator(ModelConfig(generator=generator, ngf=8, n_blocks=1, unet_depth=3, residual=True))
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.equal(g(x), x)  # the change's last conv is zero: exactly the input
    assert not any(isinstance(m, nn.Tanh) for m in g.modules())
    x.requires_grad_(True)
    g(x).sum().backward()
    last = [m for m in g.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))][-1]
    assert last.weight.grad.abs().sum() > 0  # ...and it gets a gradient from the first step
    with torch.no_grad():
        last.weight.fill_(1.0)  # a change far beyond the image range is clamped into it
        out = g(x)
    assert out.abs().max() == 1.0 and not torch.equal(out, x)


@pytest.mark.parametrize("generator", ["resnet", "unet"])
def test_masked_residual_generator_leaves_gated_off_pixels_exactly_alone(generator, tmp_path):
    """--mask: one more output channel gates the change; where the gate is shut the output is the input bit for bit,
    however large the change, and the model file round-trips through the Translator."""
    from translate.checkpoint import export_model
    from translate.inference import Translator
    torch.manual_seed(0)  # the gate's bounds below hold for most draws, not all: the same draw on every run
    cfg = ModelConfig(generator=generator, ngf=8, n_blocks=1, unet_depth=3, residual=True, mask=True)
    g = build_generator(cfg)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.equal(g(x), x)
    last = [m for m in g.modules() if isinstance(m, nn.Conv2d)][-1]
    assert last.out_channels == 4
    with torch.no_grad():
        last.weight.normal_(0, 0.05)  # a real change on the three colour channels, and a varying gate
        last.bias.copy_(torch.tensor([0.0, 0.0, 0.0, -40.0]))  # ...shut everywhere
        assert torch.equal(g(x), x)
        last.bias[3] = 0.0
        out = g(x)
    gate = torch.sigmoid(g.body(x)[:, 3:]).detach()
    assert 0.05 < float(gate.min()) and float(gate.max()) < 0.95 and not torch.equal(out, x)
    export_model(tmp_path / "m.safetensors", {"g_ab": g.eval(), "g_ba": copy.deepcopy(g)},
                 {"model": dataclasses.asdict(cfg), "image_size": 32})
    t = Translator.from_file(tmp_path / "m.safetensors", device="cpu", precision="fp32", backend="torch")
    torch.testing.assert_close(t.translate_tensor(x, "a2b"), out)
    with pytest.raises(ValueError, match="--mask"):
        build_generator(ModelConfig(ngf=8, n_blocks=1, upsample="transpose", generator="unet", unet_depth=3,
                                    residual=True, mask=True))


@pytest.mark.parametrize("generator,depths", [("resnet", [6]), ("unet", [2, 3, 4]), ("encoder-decoder", [2, 3, 4])])
def test_size_rule_is_exactly_the_sizes_each_generator_takes(generator, depths):
    """size_rule is the one place training (validate) and inference (padding) learn which sizes fit: it must
    accept exactly the sizes a generator maps to an image of the same size."""
    for depth in depths:
        cfg = ModelConfig(generator=generator, unet_depth=depth, ngf=1, n_blocks=1)
        multiple, minimum = size_rule(cfg)
        net = build_generator(cfg).eval()
        for size in range(2, 40):
            x = torch.zeros(1, 3, size, size)
            try:
                with torch.no_grad():
                    fits = net(x).shape == x.shape
            except (RuntimeError, ValueError):
                fits = False
            assert fits == (size % multiple == 0 and size >= minimum), (generator, depth, size)
