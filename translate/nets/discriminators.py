"""PatchGAN discriminator: a fully convolutional net scoring overlapping patches (70x70 for n_layers=3)."""
from __future__ import annotations

import torch
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
