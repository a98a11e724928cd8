"""Fewer multiplications for CPU inference, same function: Winograd F(6x6, 3x3) convolution and sub-pixel
nearest-upsample convolution, swapped into a trained generator in place of its modules.

A 3x3 stride-1 convolution computed by Winograd's minimal filtering needs 64 multiplications per 6x6 output
tile instead of 324 (Lavin & Gray 2016); the tile transforms are small matrix products and the 64 channel mixes
one batched GEMM. Nearest 2x upsampling followed by a 3x3 convolution equals, phase by phase, a 2x2
convolution of the input at its own resolution: 16 multiplications per input pixel instead of 36. Both are exact
in real arithmetic; in fp32 they differ from direct convolution by about 1e-4 of the activations' scale.
Tensors stay channels-last throughout, so every tile gather reads contiguous channels.
"""
from __future__ import annotations

import torch
from torch import nn

M, R = 6, 3  # output tile, kernel: F(6x6, 3x3)
A = M + R - 1  # input tile
POINTS = (0, 1, -1, 2, -2, 1 / 2, -1 / 2)  # and infinity: the usual points for F(6, 3), small errors in fp32
TILES_PER_BAND = 144  # tiles transformed at once: about 9 MB of buffers at 256 channels


def _toom_cook(m: int, r: int, points: tuple) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """B^T, G, A^T of the 1-D minimal filtering F(m, r) at `points` and infinity (Lavin & Gray 2016, section 4):
    A^T evaluates at the points, G interpolates the filter there; B^T is then the one matrix that makes
    A^T [(G g) * (B^T d)] the correlation of d with g, solved for in float64."""
    n = m + r - 1
    at, g = torch.zeros(m, n, dtype=torch.float64), torch.zeros(n, r, dtype=torch.float64)
    for j, a in enumerate(points):
        scale = torch.tensor([a - b for b in points if b != a], dtype=torch.float64).prod()
        at[:, j] = torch.tensor([float(a) ** i for i in range(m)], dtype=torch.float64)
        g[j] = torch.tensor([float(a) ** k for k in range(r)], dtype=torch.float64) / scale
    at[m - 1, n - 1] = g[n - 1, r - 1] = 1
    system = torch.einsum("it,tk->ikt", at, g).reshape(m * r, n)  # row (i, k): output i's weight on tap k
    target = torch.zeros(m, r, n, dtype=torch.float64)
    for i in range(m):
        for k in range(r):
            target[i, k, i + k] = 1  # output i reads input i + k with tap k
    bt = torch.linalg.lstsq(system, target.reshape(m * r, n)).solution
    return bt, g, at


_BT, _G, _AT = _toom_cook(M, R, POINTS)


class WinogradConv(nn.Module):
    """1 px padding (reflect or replicate) then a 3x3 stride-1 convolution, by Winograd F(4x4, 3x3), on
    channels-last NCHW tensors. With `shuffle`, the weight's 4K output channels are the (row, column) phases
    of a 2x upsampled K-channel output, interleaved into it (pixel shuffle)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, pad: str, shuffle: bool = False):
        super().__init__()
        u = torch.einsum("ai,kcij,bj->abck", _G, weight.detach().double(), _G)
        self.register_buffer("u", u.reshape(A * A, weight.shape[1], weight.shape[0]).float().contiguous())
        self.register_buffer("bt", _BT.float())
        self.register_buffer("at", _AT.float())
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())
        self.pad, self.shuffle = pad, shuffle

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, pad: str) -> "WinogradConv":
        return cls(conv.weight, conv.bias, pad)

    @classmethod
    def upsampling(cls, conv: nn.Conv2d) -> "WinogradConv":
        """Nearest 2x upsampling, 1 px reflect padding and `conv` (3x3) in one: reflect padding of the upsampled
        image is replicate padding before it, and output phase (p, q) is a 2x2 convolution of the padded input
        at window offset (p, q), here one 3x3 kernel with zero taps per phase."""
        w = conv.weight.detach()
        taps = (((0,), (1, 2)), ((0, 1), (2,)))  # 3x3 rows summed onto input rows (i-1, i) / (i, i+1)
        phases = []
        for p in range(2):
            for q in range(2):
                k = torch.zeros_like(w)
                for i, rows in enumerate(taps[p]):
                    for j, cols in enumerate(taps[q]):
                        k[:, :, p + i, q + j] = w[:, :, list(rows)][:, :, :, list(cols)].sum((2, 3))
                phases.append(k)
        bias = None if conv.bias is None else conv.bias.detach().repeat(4)
        return cls(torch.cat(phases), bias, "replicate", shuffle=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        th, tw = -(-h // M), -(-w // M)
        x = _pad_to_tiles(x.permute(0, 2, 3, 1), self.pad, th * M + 2, tw * M + 2)  # NHWC
        k = self.u.shape[-1]
        y = x.new_empty(n, th * M, tw * M, k)
        band = max(1, TILES_PER_BAND // (n * tw))  # tile rows per pass: the transforms' buffers stay in cache
        for r in range(0, th, band):
            rows = min(band, th - r)
            tiles = x[:, r * M:(r + rows) * M + 2].unfold(1, A, M).unfold(2, A, M)  # N, rows, tw, C, A, A
            p = n * rows * tw
            d = tiles.permute(4, 5, 0, 1, 2, 3).reshape(A, A * p * c)
            v = torch.matmul(self.bt, (self.bt @ d).view(A, A, p * c))  # B^T d B: A, A, P*C
            m = torch.bmm(v.view(A * A, p, c), self.u)  # A*A, P, K
            out = torch.matmul(self.at, (self.at @ m.view(A, A * p * k)).view(M, A, p * k))  # A^T m A: M, M, P*K
            band_y = y[:, r * M:(r + rows) * M]
            band_y.copy_(out.view(M, M, n, rows, tw, k).permute(2, 3, 0, 4, 1, 5).reshape(n, rows * M, tw * M, k))
            if self.bias is not None:  # while the band is in cache: a pass over the whole output is slow
                band_y.add_(self.bias)
        y = y[:, :h, :w]
        if self.shuffle:
            y = y.reshape(n, h, w, 2, 2, k // 4).permute(0, 1, 3, 2, 4, 5).reshape(n, 2 * h, 2 * w, k // 4)
        return y.permute(0, 3, 1, 2)


def _pad_to_tiles(x: torch.Tensor, mode: str, height: int, width: int) -> torch.Tensor:
    """NHWC `x` padded by 1 px (reflect or replicate), then with zeros up to `height` x `width`, written in one
    new tensor: each extra pass over a large feature map costs as much as a band of the convolution."""
    n, h, w, c = x.shape
    out = x.new_empty(n, height, width, c)
    out[:, 1:h + 1, 1:w + 1] = x
    r = 1 if mode == "reflect" else 0  # reflect copies the second row / column, replicate the first
    out[:, 0, 1:w + 1] = out[:, 1 + r, 1:w + 1]
    out[:, h + 1, 1:w + 1] = out[:, h - r, 1:w + 1]
    out[:, :h + 2, 0] = out[:, :h + 2, 1 + r]
    out[:, :h + 2, w + 1] = out[:, :h + 2, w - r]
    out[:, h + 2:] = 0  # the tile grid's overhang: garbage there would reach valid outputs as 0 x NaN
    out[:, :h + 2, w + 2:] = 0
    return out


def fast_generator(net: nn.Module, min_channels: int = 32) -> nn.Module:
    """A copy of `net` for inference with its (reflect pad, 3x3 stride-1 conv) pairs of at least `min_channels`
    channels in Winograd form and its (nearest 2x upsample, reflect pad, 3x3 conv) triples in sub-pixel form;
    other layers unchanged. Run it on channels-last input."""
    import copy
    net = copy.deepcopy(net).eval()
    for module in list(net.modules()):
        if isinstance(module, nn.Sequential):
            _rewrite(module, min_channels)
    return net.to(memory_format=torch.channels_last)


def _rewrite(seq: nn.Sequential, min_channels: int) -> None:
    layers, out, i = list(seq), [], 0
    while i < len(layers):
        a, b, c = (layers[i:i + 3] + [None, None])[:3]
        if (isinstance(a, nn.Upsample) and a.mode == "nearest" and a.scale_factor in (2, 2.0)
                and _is_pad1(b, nn.ReflectionPad2d) and _is_conv3(c)):
            out.append(WinogradConv.upsampling(c))
            i += 3
        elif _is_pad1(a, (nn.ReflectionPad2d, nn.ReplicationPad2d)) and _is_conv3(b) and \
                b.in_channels >= min_channels:
            out.append(WinogradConv.from_conv(b, "reflect" if isinstance(a, nn.ReflectionPad2d) else "replicate"))
            i += 2
        elif isinstance(a, nn.InstanceNorm2d) and not a.affine and not a.track_running_stats:
            # the same function; PyTorch's CPU group norm keeps channels-last tensors channels-last
            # (instance_norm reorders them) and was 4-25x faster here
            out.append(nn.GroupNorm(a.num_features, a.num_features, eps=a.eps, affine=False))
            i += 1
        else:
            out.append(a)
            i += 1
    for name in list(seq._modules):
        del seq._modules[name]
    for j, layer in enumerate(out):
        seq.add_module(str(j), layer)


def _is_pad1(m, kinds) -> bool:
    return isinstance(m, kinds) and tuple(m.padding) == (1, 1, 1, 1)


def _is_conv3(m) -> bool:
    return (isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3) and m.stride == (1, 1) and m.padding == (0, 0)
            and m.dilation == (1, 1) and m.groups == 1 and m.padding_mode == "zeros")
