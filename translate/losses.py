"""Adversarial objectives, penalties and the reconstruction terms.

Every adversarial objective maps discriminator outputs to (d_loss, g_loss) terms:
  lsgan      least squares to targets 1 (real, minus smoothing) and 0 (fake)      (Mao et al. 2017)
  vanilla    binary cross-entropy on logits, one-sided label smoothing            (Goodfellow et al. 2014)
  wgan-gp    critic difference + gradient penalty on interpolates                  (Gulrajani et al. 2017)
  wgan-clip  critic difference; the trainer clips critic weights                   (Arjovsky et al. 2017)
  hinge      hinge on the critic, linear for the generator                         (Lim & Ye 2017)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

ADVERSARIAL = ("lsgan", "vanilla", "wgan-gp", "wgan-clip", "hinge")
WASSERSTEIN = ("wgan-gp", "wgan-clip")
RECON_LOSSES = ("l1", "l2", "l2-ssim")


def d_loss(kind: str, real: torch.Tensor, fake: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """Discriminator loss from its outputs on real and (detached) fake images."""
    target = 1.0 - smoothing
    if kind == "lsgan":
        return 0.5 * (F.mse_loss(real, torch.full_like(real, target)) + F.mse_loss(fake, torch.zeros_like(fake)))
    if kind == "vanilla":
        return 0.5 * (F.binary_cross_entropy_with_logits(real, torch.full_like(real, target))
                      + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))
    if kind in WASSERSTEIN:
        return fake.mean() - real.mean()
    if kind == "hinge":
        return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()
    raise ValueError(f"unknown adversarial loss {kind!r}; choose from {', '.join(ADVERSARIAL)}")


def g_loss(kind: str, fake: torch.Tensor) -> torch.Tensor:
    """Generator loss from the discriminator's output on fake images."""
    if kind == "lsgan":
        return F.mse_loss(fake, torch.ones_like(fake))
    if kind == "vanilla":
        return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))
    if kind in WASSERSTEIN or kind == "hinge":
        return -fake.mean()
    raise ValueError(f"unknown adversarial loss {kind!r}; choose from {', '.join(ADVERSARIAL)}")


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """E[(||grad critic(x_hat)||_2 - 1)^2] on random interpolates x_hat of real and fake (WGAN-GP)."""
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


def r1_penalty(critic, real: torch.Tensor) -> torch.Tensor:
    """E[||grad D(x)||^2] on real images (Mescheder et al. 2018); the trainer weights it by r1_weight / 2."""
    real = real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(real).sum(), real, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


def recon_loss(kind: str, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cycle / identity distance: mean absolute (l1) or squared (l2) error, or l2 plus 1 - SSIM on images in
    [-1, 1] (l2-ssim: the structure term of Zhao et al. 2017's mixed loss, arXiv:1511.08861)."""
    if kind == "l1":
        return F.l1_loss(output, target)
    if kind == "l2":
        return F.mse_loss(output, target)
    if kind == "l2-ssim":
        from torchmetrics.functional.image import structural_similarity_index_measure as ssim
        return F.mse_loss(output, target) + 1 - ssim(output.add(1).div(2), target.add(1).div(2), data_range=1.0)
    raise ValueError(f"unknown reconstruction loss {kind!r}; choose from {', '.join(RECON_LOSSES)}")


def feature_matching_loss(real_features: list[torch.Tensor], fake_features: list[torch.Tensor]) -> torch.Tensor:
    """Distance between the mean intermediate discriminator features of real and fake batches
    (Salimans et al. 2016), summed over layers, the last (the logits) excluded."""
    return sum(F.mse_loss(f.mean(0), r.detach().mean(0)) for r, f in zip(real_features[:-1], fake_features[:-1]))


def edge_aware_smoothness(output: torch.Tensor, image: torch.Tensor, sharpness: float = 10.0) -> torch.Tensor:
    """Mean absolute gradient of the change output - image, each weighted by exp(-sharpness x the image's own
    gradient there): the change must be flat where the image is flat and may jump at its edges (the edge-aware
    smoothness term of Godard et al. 2017, arXiv:1609.03677, on a generator's change instead of a depth map)."""
    def gradients(x):
        return (x[..., :, 1:] - x[..., :, :-1]).abs().mean(1), (x[..., 1:, :] - x[..., :-1, :]).abs().mean(1)
    change_x, change_y = gradients(output - image)
    image_x, image_y = gradients(image)
    return (change_x * torch.exp(-sharpness * image_x)).mean() + (change_y * torch.exp(-sharpness * image_y)).mean()
