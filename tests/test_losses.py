import math

import pytest
import torch
from torch import nn

from translate import losses


def test_lsgan_known_values():
    real, fake = torch.tensor([1.0, 0.5]), torch.tensor([0.0, 1.0])
    # D: 0.5 * (mean((r-1)^2) + mean(f^2)) = 0.5 * (0.125 + 0.5)
    assert losses.d_loss("lsgan", real, fake).item() == pytest.approx(0.3125)
    assert losses.g_loss("lsgan", fake).item() == pytest.approx(0.5)
    # one-sided smoothing moves only the real target: 0.5 * (mean((r-0.9)^2) + 0.5)
    assert losses.d_loss("lsgan", real, fake, smoothing=0.1).item() == pytest.approx(0.5 * ((0.01 + 0.16) / 2 + 0.5))


def test_vanilla_known_values():
    zero = torch.zeros(3)
    assert losses.d_loss("vanilla", zero, zero).item() == pytest.approx(math.log(2))
    assert losses.g_loss("vanilla", zero).item() == pytest.approx(math.log(2))
    smoothed = losses.d_loss("vanilla", torch.tensor([10.0]), torch.tensor([-10.0]), smoothing=0.1).item()
    assert smoothed == pytest.approx(0.5 * (0.1 * 10 + math.log1p(math.exp(-10)) + math.log1p(math.exp(-10))),
                                     rel=1e-4)


def test_wasserstein_and_hinge_known_values():
    real, fake = torch.tensor([2.0, 0.0]), torch.tensor([-1.0, 0.5])
    assert losses.d_loss("wgan-gp", real, fake).item() == pytest.approx(-0.25 - 1.0)
    assert losses.g_loss("wgan-clip", fake).item() == pytest.approx(0.25)
    # hinge: mean(relu(1 - r)) + mean(relu(1 + f)) = (0 + 1)/2 + (0 + 1.5)/2
    assert losses.d_loss("hinge", real, fake).item() == pytest.approx(1.25)
    assert losses.g_loss("hinge", fake).item() == pytest.approx(0.25)


class TanhCritic(nn.Module):
    """f(x) = v . tanh(W x) on the flattened image: non-linear, so its gradient differs at every interpolate."""

    def __init__(self, d_in: int, hidden: int = 5):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w = nn.Parameter(torch.randn(hidden, d_in, generator=g, dtype=torch.float64) / d_in ** 0.5)
        self.v = nn.Parameter(torch.randn(hidden, generator=g, dtype=torch.float64))

    def forward(self, x):
        return torch.tanh(x.flatten(1) @ self.w.T) @ self.v


def test_gradient_penalty_equals_hand_computation():
    """Against the analytic gradient W^T (v * (1 - tanh^2(W x))) at the same interpolates, in float64."""
    critic = TanhCritic(12)
    g = torch.Generator().manual_seed(1)
    real, fake = (torch.randn(4, 3, 2, 2, generator=g, dtype=torch.float64) for _ in range(2))
    torch.manual_seed(2)
    gp = losses.gradient_penalty(critic, real, fake)
    torch.manual_seed(2)
    alpha = torch.rand(4, 1, 1, 1, dtype=torch.float64)  # what gradient_penalty draws
    x_hat = (alpha * real + (1 - alpha) * fake).flatten(1)
    with torch.no_grad():
        grad = (critic.v * (1 - torch.tanh(x_hat @ critic.w.T) ** 2)) @ critic.w
        expected = ((grad.norm(dim=1) - 1) ** 2).mean()
    assert grad.norm(dim=1).std() > 0.05  # the gradient norm really varies between interpolates
    assert gp.item() == pytest.approx(expected.item(), rel=1e-12)


def test_r1_penalty_hand_computation():
    critic = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        critic.weight.copy_(torch.tensor([[1.0, 2.0, 0.0, -2.0]]))
    assert losses.r1_penalty(critic, torch.randn(5, 4)).item() == pytest.approx(9.0)


def test_recon_and_feature_matching():
    a, b = torch.zeros(2, 3), torch.full((2, 3), 0.5)
    assert losses.recon_loss("l1", a, b).item() == pytest.approx(0.5)
    assert losses.recon_loss("l2", a, b).item() == pytest.approx(0.25)
    real = [torch.ones(2, 3), torch.zeros(2, 1)]
    fake = [torch.zeros(2, 3), torch.ones(2, 1)]  # the last entry (logits) is excluded
    assert losses.feature_matching_loss(real, fake).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="unknown adversarial"):
        losses.d_loss("wgan", a, b)


def test_l2_ssim_reconstruction_costs_lost_structure_more_than_an_equal_squared_error():
    torch.manual_seed(0)
    target = torch.rand(2, 3, 32, 32, dtype=torch.float64) * 2 - 1
    blurred = torch.nn.functional.avg_pool2d(target, 3, 1, 1, count_include_pad=False)
    shifted = target + (blurred - target).pow(2).mean().sqrt()  # the same squared error, structure kept
    l2 = losses.recon_loss("l2", blurred, target).item()
    assert losses.recon_loss("l2", shifted, target).item() == pytest.approx(l2)
    assert losses.recon_loss("l2-ssim", target, target).item() == pytest.approx(0.0, abs=1e-12)
    assert losses.recon_loss("l2-ssim", blurred, target) > losses.recon_loss("l2-ssim", shifted, target) + 0.3


def test_edge_aware_smoothness_lets_a_change_jump_only_at_the_input_edges():
    """A square outline on white: colour filling its inside, stopping at the outline, costs far less than the same
    fill spilling 3 px past it (a halo); no change and a uniform change cost nothing. Exact values in float64."""
    image = torch.ones(1, 3, 16, 16, dtype=torch.float64)
    image[..., 4, 4:12] = image[..., 11, 4:12] = image[..., 4:12, 4] = image[..., 4:12, 11] = -1.0  # outline
    assert losses.edge_aware_smoothness(image, image) == 0
    assert losses.edge_aware_smoothness(image - 0.5, image) == 0
    inside, spill = image.clone(), image.clone()
    inside[:, 2, 5:11, 5:11] -= 1.0  # fill the inside, blue channel down: yellow
    spill[:, 2, 2:14, 2:14] -= 1.0  # the same fill 3 px past the outline, on the white background
    # inside: the fill's edge lies next to the outline, where the image's own gradient is 2 (weight exp(-20));
    # spill: its edge lies on flat white (weight 1): per direction 2 edges x 12 pixels of 1/3 (channel mean)
    # among 16 x 15 gradients
    flat = 2 * 12 * (1 / 3) / (16 * 15)
    assert losses.edge_aware_smoothness(spill, image).item() == pytest.approx(2 * flat, rel=1e-12)
    assert losses.edge_aware_smoothness(inside, image) < 2 * flat * 1e-6
