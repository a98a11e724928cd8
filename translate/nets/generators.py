"""Generators: the ResNet generator (CycleGAN), the U-Net (DualGAN) and the encoder-decoder (DiscoGAN)."""
from __future__ import annotations

import torch
from torch import nn

from .layers import norm_layer, upsample_block


class ResnetBlock(nn.Module):
    def __init__(self, channels: int, norm: str, dropout: float):
        super().__init__()
        bias = norm != "batch"
        layers = [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias), norm_layer(norm, channels),
                  nn.ReLU(True)]
        if dropout:
            layers.append(nn.Dropout(dropout))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias), norm_layer(norm, channels)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Sequential):
    """7x7 stem, two stride-2 downsamplings, n_blocks residual blocks, two upsamplings, 7x7 to Tanh.

    Any H, W divisible by 4. The layer order matches the reference CycleGAN so its weights import directly.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3, ngf: int = 64, n_blocks: int = 9,
                 norm: str = "instance", dropout: float = 0.0, upsample: str = "resize-conv"):
        bias = norm != "batch"
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, ngf, 7, bias=bias), norm_layer(norm, ngf),
                  nn.ReLU(True)]
        for i in range(2):
            c = ngf * 2 ** i
            layers += [nn.Conv2d(c, c * 2, 3, stride=2, padding=1, bias=bias), norm_layer(norm, c * 2),
                       nn.ReLU(True)]
        layers += [ResnetBlock(ngf * 4, norm, dropout) for _ in range(n_blocks)]
        for i in range(2):
            c = ngf * 2 ** (2 - i)
            layers += [*upsample_block(upsample, c, c // 2, bias), norm_layer(norm, c // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7), nn.Tanh()]
        super().__init__(*layers)


class UnetGenerator(nn.Module):
    """U-Net: `depth` stride-2 4x4 conv downsamplings mirrored by upsamplings, with skip connections (pix2pix's,
    used by DualGAN); dropout on the three innermost upsamplings. H and W must be divisible by 2**depth."""

    def __init__(self, in_channels: int = 3, out_channels: int = 3, ngf: int = 64, depth: int = 6,
                 norm: str = "batch", dropout: float = 0.0, upsample: str = "resize-conv"):
        super().__init__()
        bias = norm != "batch"
        widths = [min(ngf * 2 ** i, ngf * 8) for i in range(depth)]
        self.down = nn.ModuleList()
        c_prev = in_channels
        for i, c in enumerate(widths):
            layers = [] if i == 0 else [nn.LeakyReLU(0.2, True)]
            layers.append(nn.Conv2d(c_prev, c, 4, stride=2, padding=1, bias=bias))
            if 0 < i < depth - 1:
                layers.append(norm_layer(norm, c))
            self.down.append(nn.Sequential(*layers))
            c_prev = c
        self.up = nn.ModuleList()
        for i in reversed(range(depth)):
            c_in = widths[i] * (2 if i < depth - 1 else 1)
            last = i == 0
            c_out = out_channels if last else widths[i - 1]
            layers = [nn.ReLU(True), *upsample_block(upsample, c_in, c_out, bias or last, kernel=4)]
            if last:
                layers.append(nn.Tanh())
            else:
                layers.append(norm_layer(norm, c_out))
                if dropout and i >= depth - 3:
                    layers.append(nn.Dropout(dropout))
            self.up.append(nn.Sequential(*layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = []
        for layer in self.down:
            x = layer(x)
            features.append(x)
        x = features.pop()
        for i, layer in enumerate(self.up):
            if i:
                x = torch.cat([x, features.pop()], dim=1)
            x = layer(x)
        return x


class EncoderDecoderGenerator(nn.Sequential):
    """DiscoGAN's generator (Kim et al. 2017, official code): `depth` 4x4 stride-2 convs, each followed by a norm
    (except the first) and LeakyReLU 0.2, mirrored by 4x4 stride-2 transposed convs with norm and ReLU, Tanh out;
    no skip connections, no biases under batch norm. H and W must be divisible by 2**depth."""

    def __init__(self, in_channels: int = 3, out_channels: int = 3, ngf: int = 64, depth: int = 4,
                 norm: str = "batch", upsample: str = "transpose"):
        bias = norm != "batch"
        widths = [min(ngf * 2 ** i, ngf * 8) for i in range(depth)]
        layers, c_prev = [], in_channels
        for i, c in enumerate(widths):
            layers += [nn.Conv2d(c_prev, c, 4, stride=2, padding=1, bias=bias),
                       *([norm_layer(norm, c)] if i else []), nn.LeakyReLU(0.2, True)]
            c_prev = c
        for i in reversed(range(depth)):
            c_out = out_channels if i == 0 else widths[i - 1]
            layers += upsample_block(upsample, c_prev, c_out, bias, kernel=4)
            layers += [nn.Tanh()] if i == 0 else [norm_layer(norm, c_out), nn.ReLU(True)]
            c_prev = c_out
        super().__init__(*layers)


class ResidualGenerator(nn.Module):
    """output = clamp(input + change, -1, 1), the change being the wrapped generator's last conv without its Tanh.

    That conv starts at zero, so the untrained net is the identity: training starts from "input unchanged" and
    only learns what differs between the domains, which keeps shapes and colours the domains share. A clamp, not
    a Tanh: near-white and near-black pixels keep their full gradient (tanh(atanh(x) + r) saturates there).
    With `mask` the last conv has one more output, a per-pixel gate: output = clamp(input + sigmoid(gate) *
    change), so a region the net leaves alone can stay exactly as it was (the gate saturates at 0)."""

    def __init__(self, net: nn.Module, mask: bool = False):
        super().__init__()
        convs = [name for name, m in net.named_modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
        tanhs = [name for name, m in net.named_modules() if isinstance(m, nn.Tanh)]
        if not tanhs:
            raise ValueError("a residual generator wraps a net that ends in Tanh")
        net.get_submodule(tanhs[-1].rpartition(".")[0]).register_module(tanhs[-1].rpartition(".")[2], nn.Identity())
        last = net.get_submodule(convs[-1])
        if mask:
            if type(last) is not nn.Conv2d:
                raise ValueError("--mask needs a generator that ends in a convolution, not a transposed one "
                                 "(use --upsample resize-conv)")
            parent, _, name = convs[-1].rpartition(".")
            last = nn.Conv2d(last.in_channels, last.out_channels + 1, last.kernel_size, last.stride, last.padding,
                             last.dilation, bias=last.bias is not None, padding_mode=last.padding_mode)
            net.get_submodule(parent).register_module(name, last)
        nn.init.zeros_(last.weight)
        if last.bias is not None:
            nn.init.zeros_(last.bias)
        self.body, self.mask = net, mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        change = self.body(x)
        if self.mask:
            change = torch.sigmoid(change[:, -1:]) * change[:, :-1]
        # Both cut to the smaller size: the same size whenever the net fits, but torch.export (ONNX with dynamic
        # height and width) cannot prove that and refused to trace a plain `x + change`.
        h, w = min(x.shape[-2], change.shape[-2]), min(x.shape[-1], change.shape[-1])
        return (x[..., :h, :w] + change[..., :h, :w]).clamp(-1, 1)
