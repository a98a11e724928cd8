"""Discriminators: PatchGAN (scores overlapping patches, 70x70 for n_layers=3), a multi-scale PatchGAN (the same on
the image and on a half-size copy) and DCGAN (one logit an image)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import norm_layer


class PatchDiscriminator(nn.Module):
    """4x4 convs: stride 2 n_layers times, then two stride-1 convs to one logit per patch.

    `features(x)` returns the intermediate activations too (for feature matching)."""

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3, norm: str = "instance",
                 spectral_norm: bool = False):
        super().__init__()
        sn = nn.utils.spectral_norm if spectral_norm else (lambda m: m)
        bias = norm != "batch"
        blocks = [nn.Sequential(sn(nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1)), nn.LeakyReLU(0.2, True))]
        c = ndf
        for i in range(1, n_layers + 1):
            c_next = ndf * min(2 ** i, 8)
            stride = 2 if i < n_layers else 1
            blocks.append(nn.Sequential(sn(nn.Conv2d(c, c_next, 4, stride=stride, padding=1, bias=bias)),
                                        norm_layer(norm, c_next), nn.LeakyReLU(0.2, True)))
            c = c_next
        blocks.append(sn(nn.Conv2d(c, 1, 4, stride=1, padding=1)))
        self.blocks = nn.Sequential(*blocks)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for block in self.blocks:
            x = block(x)
            out.append(x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class MultiScaleDiscriminator(nn.Module):
    """PatchGANs on the image and on its 2x, 4x... average-pooled copies (pix2pixHD, Wang et al. 2018): the coarse
    ones judge layout and colour over the whole image, the full-size one detail. Each scale's logit map is resized
    (nearest) to the full-size one's and stacked as a channel, so every scale weighs the same in a loss's mean.

    `features(x)` returns every scale's intermediate activations, then the stacked logits."""

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3, norm: str = "instance",
                 spectral_norm: bool = False, scales: int = 2):
        super().__init__()
        self.scales = nn.ModuleList(PatchDiscriminator(in_channels, ndf, n_layers, norm, spectral_norm)
                                    for _ in range(scales))

    def _stack(self, logits: list[torch.Tensor]) -> torch.Tensor:
        size = logits[0].shape[-2:]
        return torch.cat([logits[0], *(F.interpolate(x, size=size, mode="nearest") for x in logits[1:])], dim=1)

    def _pyramid(self, x: torch.Tensor):
        for i, critic in enumerate(self.scales):
            yield critic, x
            if i + 1 < len(self.scales):
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        per_scale = [critic.features(image) for critic, image in self._pyramid(x)]
        return [f for features in per_scale for f in features[:-1]] + [self._stack([f[-1] for f in per_scale])]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._stack([critic(image) for critic, image in self._pyramid(x)])


class DCGANDiscriminator(nn.Module):
    """DiscoGAN's discriminator (Kim et al. 2017, official code): n_layers 4x4 stride-2 convs, each followed by a
    norm (except the first) and LeakyReLU 0.2, then a 4x4 conv without padding: five convs and one logit for a
    64 px image at n_layers=4 (larger images give a few logits). No biases under batch norm.

    `features(x)` returns the normalised blocks' outputs and the logit: DiscoGAN matches those blocks' features."""

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 4, norm: str = "batch",
                 spectral_norm: bool = False):
        super().__init__()
        sn = nn.utils.spectral_norm if spectral_norm else (lambda m: m)
        bias = norm != "batch"
        blocks = [nn.Sequential(sn(nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1, bias=bias)),
                                nn.LeakyReLU(0.2, True))]
        c = ndf
        for i in range(1, n_layers):
            c_next = ndf * min(2 ** i, 8)
            blocks.append(nn.Sequential(sn(nn.Conv2d(c, c_next, 4, stride=2, padding=1, bias=bias)),
                                        norm_layer(norm, c_next), nn.LeakyReLU(0.2, True)))
            c = c_next
        blocks.append(sn(nn.Conv2d(c, 1, 4, stride=1, padding=0, bias=bias)))
        self.blocks = nn.Sequential(*blocks)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i:
                out.append(x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)
