"""Shared building blocks: normalisation by name, upsampling by name, weight init."""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

NORMS = ("instance", "instance-affine", "batch", "none")
UPSAMPLINGS = ("resize-conv", "transpose", "antialiased")


def norm_layer(name: str, channels: int) -> nn.Module:
    """instance (no affine, no running stats, as the reference CycleGAN) | instance-affine (with a learned scale
    and shift: DualGAN's per-image "batch_norm") | batch | none."""
    if name in ("instance", "instance-affine"):
        return nn.InstanceNorm2d(channels, affine=name == "instance-affine", track_running_stats=False)
    if name == "batch":
        return nn.BatchNorm2d(channels)
    if name == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {name!r}; choose from {', '.join(NORMS)}")


class BlurPool(nn.Module):
    """A fixed [1, 2, 1] x [1, 2, 1] low-pass filter (Zhang 2019, "Making CNNs shift-invariant again")."""

    def __init__(self, channels: int):
        super().__init__()
        k = torch.tensor([1.0, 2.0, 1.0])
        self.register_buffer("kernel", (k[:, None] * k[None, :] / 16).expand(channels, 1, 3, 3).contiguous(),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), self.kernel, groups=x.shape[1])


def upsample_block(kind: str, c_in: int, c_out: int, bias: bool, kernel: int = 3) -> list[nn.Module]:
    """Double the resolution: resize + conv (default, no checkerboards), transposed conv with a `kernel`-wide
    filter (3: the reference CycleGAN; 4: pix2pix's U-Net and DiscoGAN), or a 4x4 transposed conv followed by a
    blur (anti-aliased)."""
    if kind == "resize-conv":
        return [nn.Upsample(scale_factor=2, mode="nearest"), nn.ReflectionPad2d(1),
                nn.Conv2d(c_in, c_out, 3, bias=bias)]
    if kind == "transpose":
        return [nn.ConvTranspose2d(c_in, c_out, kernel, stride=2, padding=1, output_padding=kernel % 2, bias=bias)]
    if kind == "antialiased":
        return [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=bias), BlurPool(c_out)]
    raise ValueError(f"unknown upsampling {kind!r}; choose from {', '.join(UPSAMPLINGS)}")


def init_weights(net: nn.Module, gain: float = 0.02) -> nn.Module:
    """Conv weights ~ N(0, gain), norm scales ~ N(1, gain), biases 0 (the reference CycleGAN init). Nets built on the
    meta device (shapes only) are left as they are: initialising there costs seconds of one-time set-up."""
    if any(p.is_meta for p in net.parameters()):
        return net
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            weight = getattr(m, "weight_orig", m.weight)  # spectral norm keeps the raw weight here
            nn.init.normal_(weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and m.affine:
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)
    return net
