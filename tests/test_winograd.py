import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from translate import runtime, winograd
from translate.checkpoint import export_model
from translate.config import ModelConfig
from translate.inference import Translator
from translate.nets import build_generator


def lively_generator(seed: int = 0, **fields) -> nn.Module:
    """A tiny generator with He-initialised convs, so its output spans [-1, 1] (the 0.02 init gives ~0 out)."""
    torch.manual_seed(seed)
    net = build_generator(ModelConfig(**{"ngf": 8, "n_blocks": 2, **fields})).eval()
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight)
            if m.bias is not None:
                nn.init.normal_(m.bias, std=0.1)
    return net


def run(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return net(x.contiguous(memory_format=torch.channels_last))


@pytest.mark.parametrize("size", [(32, 32), (36, 52), (8, 12)])  # whole tiles, ragged tiles, smaller than a tile
def test_winograd_generator_computes_the_same_function(size):
    net = lively_generator()
    fast = winograd.fast_generator(net)
    kinds = {type(m) for m in fast.modules()}
    assert winograd.WinogradConv in kinds and nn.Upsample not in kinds and nn.InstanceNorm2d not in kinds
    x = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(1)) * 2 - 1
    want, got = run(net, x), run(fast, x)
    assert want.abs().max() > 0.5  # a live net: errors cannot hide in a near-constant output
    assert (got - want).abs().max() < 1e-4  # fp32 rounding; a wrong tap or transform is off by ~0.1


def test_bands_of_tiles_give_the_whole_map(monkeypatch):
    net = winograd.fast_generator(lively_generator())
    x = torch.rand(1, 3, 64, 48, generator=torch.Generator().manual_seed(2)) * 2 - 1
    whole = run(net, x)
    monkeypatch.setattr(winograd, "TILES_PER_BAND", 2)  # 16 x 12 map: 3 x 2 tiles, one tile row per band
    assert (run(net, x) - whole).abs().max() < 1e-4  # GEMM blocking rounds differently; a lost band is ~1


def test_layers_it_cannot_speed_up_stay_as_they_are():
    net = lively_generator(upsample="transpose", g_norm="batch")
    fast = winograd.fast_generator(net)
    kinds = [type(m) for m in fast.modules()]
    assert kinds.count(nn.ConvTranspose2d) == 2 and nn.BatchNorm2d in kinds
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert (run(fast, x) - run(net, x)).abs().max() < 1e-4


def test_auto_backend_is_winograd_only_on_cpus_without_native_bf16(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: False)
    assert runtime.pick_backend("auto", cpu, "auto") == "winograd"
    assert runtime.pick_backend("auto", cpu, "bf16") == "torch"  # asked for bf16: autocast runs in torch
    assert runtime.pick_backend("onnxruntime", cpu, "auto") == "onnxruntime"
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: True)
    assert runtime.pick_backend("auto", cpu, "auto") == "torch"
    assert runtime.pick_backend("auto", cpu, "fp32") == "winograd"


def test_translator_backends_agree_within_one_grey_level(tmp_path):
    nets = {"g_ab": lively_generator(0), "g_ba": lively_generator(1)}
    path = tmp_path / "model.safetensors"
    export_model(path, nets, {"model": dataclasses.asdict(ModelConfig(ngf=8, n_blocks=2)), "domains": ["a", "b"]})
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 42, 3), dtype=np.uint8))
    plain = Translator.from_file(path, device="cpu", precision="fp32", backend="torch")
    fast = Translator.from_file(path, device="cpu", precision="fp32", backend="winograd")
    assert fast.backend == "winograd" and fast.precision == "fp32"
    for direction in ("a2b", "b2a"):
        want = np.asarray(plain(image, direction), dtype=int)
        got = np.asarray(fast(image, direction), dtype=int)
        assert got.shape == want.shape and np.abs(got - want).max() <= 1
        assert np.abs(want - np.asarray(image, dtype=int)).mean() > 10  # the nets change the picture


def test_training_convolutions_give_the_same_values_and_gradients_in_float64():
    plain = lively_generator(residual=True).double().train()
    fast = winograd.for_training(lively_generator(residual=True).double().train(), min_channels=1)
    kinds = [type(m) for m in fast.modules()]
    assert kinds.count(winograd.WinogradTrainingConv) == 2 * 2 + 2  # two per residual block, two resize-convs
    assert plain.state_dict().keys() == fast.state_dict().keys()  # checkpoints and optimizers see the same net
    x = (torch.rand(2, 3, 20, 28, dtype=torch.float64, generator=torch.Generator().manual_seed(3)) * 2 - 1)
    outs = []
    for net in (plain, fast):
        outs.append([])
        for _ in range(2):  # two calls a step share the transformed weights; a weight update renews them
            xi = x.clone().requires_grad_()
            net.zero_grad()
            y = net(xi) + net(xi.flip(-1))
            (y * torch.linspace(-1, 1, y.numel(), dtype=torch.float64).view_as(y)).sum().backward()
            outs[-1] += [y.detach(), xi.grad, *(p.grad for p in net.parameters())]
            with torch.no_grad():
                for p in net.parameters():
                    p.add_(p.grad, alpha=-0.1)
    assert outs[0][0].abs().max() > 0.5 and (outs[0][0] - outs[0][len(outs[0]) // 2]).abs().max() > 1e-3
    for want, got in zip(*outs):  # exact up to float64 rounding; a wrong tap or transform is off by ~1e-2
        assert (got - want).abs().max() <= 1e-9 * want.abs().max().clamp(min=1)


def test_training_uses_winograd_on_fp32_cpus_only_and_learns_the_same(monkeypatch, toy_root):
    from conftest import tiny_config
    from translate.trainer import Trainer
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: False)
    cpu = torch.device("cpu")
    assert runtime.train_winograd("auto", False, cpu) and not runtime.train_winograd("auto", True, cpu)
    assert not runtime.train_winograd("auto", False, torch.device("cuda")) and runtime.train_winograd("on", True, cpu)
    losses = {}
    for setting in ("auto", "off"):  # ngf 32: the residual blocks have 128 channels, where it starts
        cfg = tiny_config(data=str(toy_root), ngf=32, n_blocks=1, winograd=setting, max_steps=2)
        trainer = Trainer(cfg, toy_root.parent / f"run-{setting}")
        count = sum(isinstance(m, winograd.WinogradTrainingConv) for m in trainer.g_ab.modules())
        assert count == (3 if setting == "auto" else 0)  # the block's two convs and the first resize-conv
        torch.manual_seed(0)
        a, b = torch.rand(2, 4, 3, 32, 32) * 2 - 1
        losses[setting] = [trainer.step(a, b)["g_total"].item() for _ in range(2)]
    assert losses["auto"] == pytest.approx(losses["off"], rel=1e-4)  # same function, fp32 rounding apart
