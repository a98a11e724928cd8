"""Fewer multiplications on CPUs, same function: Winograd convolution and sub-pixel nearest-upsample
convolution, swapped into a generator in place of its modules. For inference F(6x6, 3x3) in banded, cache-sized
passes (`fast_generator`); for training F(4x4, 3x3) in differentiable tensor ops, the weights staying the nets'
parameters (`for_training`).

A 3x3 stride-1 convolution computed by Winograd's minimal filtering needs 64 multiplications per 6x6 output
tile instead of 324 (Lavin & Gray 2016); the tile transforms are small matrix products and the 64 channel mixes
one batched GEMM. Nearest 2x upsampling followed by a 3x3 convolution equals, phase by phase, a 2x2
convolution of the input at its own resolution: 16 multiplications per input pixel instead of 36. Both are exact
in real arithmetic; in fp32 they differ from direct convolution by about 1e-4 of the activations' scale.
Tensors stay channels-last throughout, so every tile gather reads contiguous channels.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
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
# Training: F(4x4, 3x3), each 2-D transform one matrix (a Kronecker product) so that it is one GEMM. Its smaller
# tiles fit the 16 x 16 and 32 x 32 maps of 64-128 px training exactly and keep fp32 gradients within ~1e-5.
_KB, _KG, _KA = (torch.kron(m, m) for m in _toom_cook(4, R, POINTS[:5]))  # float64, cast per call


def _phase_kernels(w: torch.Tensor) -> torch.Tensor:
    """The 3x3 kernels (4K, C, 3, 3) whose output phase (p, q) = nearest 2x upsampling, then `w` (K, C, 3, 3),
    read from a 1 px replicate-padded input at its own resolution: a 2x2 kernel a phase, at window offset (p, q).
    Reflect padding of the upsampled image is replicate padding before it. Differentiable in `w`."""
    taps = (((0,), (1, 2)), ((0, 1), (2,)))  # 3x3 rows summed onto input rows (i-1, i) / (i, i+1)
    phases = []
    for p in range(2):
        for q in range(2):
            k = w.new_zeros(w.shape)
            for i, rows in enumerate(taps[p]):
                for j, cols in enumerate(taps[q]):
                    k[:, :, p + i, q + j] = w[:, :, list(rows)][:, :, :, list(cols)].sum((2, 3))
            phases.append(k)
    return torch.cat(phases)


class WinogradConv(nn.Module):
    """1 px padding (reflect or replicate) then a 3x3 stride-1 convolution, by Winograd F(6x6, 3x3), on
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
        bias = None if conv.bias is None else conv.bias.detach().repeat(4)
        return cls(_phase_kernels(conv.weight.detach()), bias, "replicate", shuffle=True)

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


class _Tiles(torch.autograd.Function):
    """The 6x6 tiles at stride 4 of an NHWC map (height and width 4t + 2) as a (36, tiles x channels) matrix;
    backward sums the overlapping rows and columns back with four strided adds (autograd's unfold backward was
    several times slower here)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.shape = x.shape
        return x.unfold(1, 6, 4).unfold(2, 6, 4).permute(4, 5, 0, 1, 2, 3).reshape(36, -1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        n, height, width, c = ctx.shape
        th, tw = (height - 2) // 4, (width - 2) // 4
        grad = grad.view(6, 6, n, th, tw, c)
        out = grad.new_zeros(n, th + 1, 4, tw + 1, 4, c)  # (tile, row in tile): row 4i + 4, 5 is 4(i+1) + 0, 1
        for rows, row_tiles, row_offsets in _tile_parts(th):
            for cols, col_tiles, col_offsets in _tile_parts(tw):
                out[:, row_tiles, row_offsets, col_tiles, col_offsets] += grad[rows, cols].permute(2, 3, 0, 4, 1, 5)
        return out.view(n, 4 * th + 4, 4 * tw + 4, c)[:, :height, :width]


def _tile_parts(tiles: int) -> tuple:
    """(rows of a tile, the tiles they land in, their offsets there): a tile's first 4 rows land in its own block
    of 4, its last 2 in the first 2 rows of the next block."""
    return (slice(0, 4), slice(0, tiles), slice(0, 4)), (slice(4, 6), slice(1, tiles + 1), slice(0, 2))


class WinogradTrainingConv(nn.Conv2d):
    """`conv` (3x3, stride 1) after its 1 px padding, and with `upsample` after a nearest 2x upsampling too, by
    Winograd F(4x4, 3x3) in differentiable tensor ops, for training. It holds `conv`'s own parameters: state-dict
    keys, optimizers and checkpoints are those of the plain net."""

    def __init__(self, conv: nn.Conv2d, pad: str, upsample: bool):
        super().__init__(conv.in_channels, conv.out_channels, 3, bias=conv.bias is not None, device="meta")
        self.weight, self.bias = conv.weight, conv.bias
        self.pad, self.upsample = pad, upsample
        self._u, self._u_key = None, None

    def transformed_weight(self, like: torch.Tensor) -> torch.Tensor:
        """G g G^T for the 36 tile positions, (36, C, K). A training step runs each generator two or three times
        on the same weights, so with gradients on it is kept until the weights change in place (an optimizer
        step, a reload) or a backward pass has gone through it (which frees its graph)."""
        key = (self.weight._version, like.dtype, like.device)
        if self._u is not None and self._u_key == key and torch.is_grad_enabled():
            return self._u
        w = _phase_kernels(self.weight) if self.upsample else self.weight
        k, c = w.shape[:2]
        u = (_KG.to(like) @ w.permute(2, 3, 1, 0).reshape(9, c * k)).view(36, c, k)
        if u.requires_grad:
            self._u, self._u_key = u, key
            u.register_hook(self._forget)
        return u

    def _forget(self, grad: torch.Tensor) -> None:
        self._u = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.transformed_weight(x)
        n, c, h, width = x.shape
        k = u.shape[-1]
        th, tw = -(-h // 4), -(-width // 4)
        x = F.pad(x, (1, 1, 1, 1), mode=self.pad)
        if (th * 4, tw * 4) != (h, width):
            x = F.pad(x, (0, tw * 4 - width, 0, th * 4 - h))
        p = n * th * tw
        d = _Tiles.apply(x.permute(0, 2, 3, 1))
        m = torch.bmm((_KB.to(x) @ d).view(36, p, c), u)
        y = (_KA.to(x) @ m.view(36, p * k)).view(4, 4, n, th, tw, k).permute(2, 3, 0, 4, 1, 5)
        y = y.reshape(n, th * 4, tw * 4, k)[:, :h, :width]
        if self.upsample:  # phase-major channels interleaved into the 2x output (pixel shuffle)
            y = y.reshape(n, h, width, 2, 2, k // 4).permute(0, 1, 3, 2, 4, 5).reshape(n, 2 * h, 2 * width, k // 4)
        y = y.permute(0, 3, 1, 2)
        return y if self.bias is None else y + self.bias.view(1, -1, 1, 1)


def fast_generator(net: nn.Module, min_channels: int = 32) -> nn.Module:
    """A copy of `net` for inference with its (reflect pad, 3x3 stride-1 conv) pairs of at least `min_channels`
    input channels in Winograd form and its (nearest 2x upsample, reflect pad, 3x3 conv) triples in sub-pixel
    form; parameter-free instance norms as the same function by nn.GroupNorm (PyTorch's CPU group norm keeps
    channels-last tensors channels-last; instance_norm reorders them and was 4-25x slower there); other layers
    unchanged. Run it on channels-last input."""
    import copy

    def conv_of(conv: nn.Conv2d, pad: str, upsample: bool) -> nn.Module | None:
        if upsample:
            return WinogradConv.upsampling(conv)
        return WinogradConv.from_conv(conv, pad) if conv.in_channels >= min_channels else None
    net = _swap(copy.deepcopy(net).eval(), conv_of)
    for seq in [m for m in net.modules() if isinstance(m, nn.Sequential)]:
        for i, layer in enumerate(seq):
            if isinstance(layer, nn.InstanceNorm2d) and not layer.affine and not layer.track_running_stats:
                seq[i] = nn.GroupNorm(layer.num_features, layer.num_features, eps=layer.eps, affine=False)
    return net.to(memory_format=torch.channels_last)


def for_training(net: nn.Module, min_channels: int = 128) -> nn.Module:
    """`net`, in place, with the pairs and triples of fast_generator() whose conv has at least `min_channels`
    input channels computed by WinogradTrainingConv (below 128 channels direct convolution was as fast or
    faster: 31 against 41 ms a forward + backward at 64 x 64 x 64, batch 4)."""
    return _swap(net, lambda conv, pad, upsample: WinogradTrainingConv(conv, pad, upsample)
                 if conv.in_channels >= min_channels else None)


def _swap(net: nn.Module, conv_of) -> nn.Module:
    """Replace, in every nn.Sequential of `net`, each (pad, conv) pair and (upsample, pad, conv) triple for which
    conv_of(conv, pad mode, upsample) gives a module by that module at the conv's index and nn.Identity at the
    others, so that indices and parameter names stay."""
    for seq in [m for m in net.modules() if isinstance(m, nn.Sequential)]:
        i = 0
        while i < len(seq):
            a, b, c = ([seq[j] for j in range(i, min(i + 3, len(seq)))] + [None, None])[:3]
            if (isinstance(a, nn.Upsample) and a.mode == "nearest" and a.scale_factor in (2, 2.0)
                    and _is_pad1(b, nn.ReflectionPad2d) and _is_conv3(c)
                    and (fast := conv_of(c, "replicate", True)) is not None):
                seq[i], seq[i + 1], seq[i + 2] = nn.Identity(), nn.Identity(), fast
                i += 3
            elif (_is_pad1(a, (nn.ReflectionPad2d, nn.ReplicationPad2d)) and _is_conv3(b)
                  and (fast := conv_of(b, "reflect" if isinstance(a, nn.ReflectionPad2d) else "replicate",
                                       False)) is not None):
                seq[i], seq[i + 1] = nn.Identity(), fast
                i += 2
            else:
                i += 1
    return net


def _is_pad1(m, kinds) -> bool:
    return isinstance(m, kinds) and tuple(m.padding) == (1, 1, 1, 1)


def _is_conv3(m) -> bool:
    return (isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3) and m.stride == (1, 1) and m.padding == (0, 0)
            and m.dilation == (1, 1) and m.groups == 1 and m.padding_mode == "zeros")
