"""PatchNCE (CUT's content loss): an output patch must be told apart from the input's other patches."""
import pytest
import torch

from translate.config import ModelConfig
from translate.nets import build_generator
from translate.patchnce import PatchNCE, encoder_features, nce_layers


def test_layers_are_cuts_for_nine_blocks_and_inside_the_encoder_for_fewer():
    assert nce_layers(9) == (0, 4, 8, 12, 16)
    for n in range(2, 10):
        layers = nce_layers(n)
        assert len(set(layers)) == 5 and max(layers) < 10 + n  # five distinct layers, none past the blocks


@pytest.mark.parametrize("residual", [False, True])
def test_loss_is_low_when_patches_stay_in_place_and_high_when_they_move(residual):
    torch.manual_seed(0)
    g = build_generator(ModelConfig(ngf=8, n_blocks=3, residual=residual))
    nce = PatchNCE(g, n_blocks=3, patches=64)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    in_place = nce(g, x, x).item()
    moved = nce(g, x, torch.roll(x, shifts=(7, 11), dims=(2, 3))).item()
    chance = torch.log(torch.tensor(64.0)).item()  # uniform over 64 candidate patches
    assert in_place < 0.5 * chance < moved


def test_heads_learn_and_keys_carry_no_gradient():
    torch.manual_seed(0)
    g = build_generator(ModelConfig(ngf=8, n_blocks=3))
    nce = PatchNCE(g, n_blocks=3, patches=32)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    source = x.clone().requires_grad_()
    output = g(x)
    nce(g, source, output).backward()
    assert source.grad is None  # the input's features are targets, not pulled towards the output
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in nce.parameters())


def test_encoder_features_refuse_other_generators():
    with pytest.raises(ValueError, match="ResNet generator"):
        encoder_features(build_generator(ModelConfig(generator="unet", unet_depth=3, ngf=4)), torch.zeros(1, 3, 32, 32),
                         (0, 4))
