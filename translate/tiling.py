"""Tile-by-tile translation of large images with bounded memory, matching the untiled result.

Two things make tiles differ from the whole image, and both are handled:
- Each output pixel depends on the input within the generator's receptive field. Tiles overlap by at least that
  field and are blended with ramps that give weight only to pixels at least `radius` inside a tile, so every
  pixel comes from tiles that saw all of its field.
- Instance norm normalises with statistics of the whole image. They are measured tile by tile, each position
  counted once (in the core of the tile nearest it), one norm after another: pass k runs the tiles up to norm k
  with the exact statistics of norms 1..k-1 and measures norm k's. With all passes (the default) the result
  equals the untiled one up to rounding, at the cost of about (number of norms) / 2 extra forward passes; with
  fewer, the deeper norms keep statistics measured under each tile's own upstream statistics (measured error:
  docs/benchmarks.md).
"""
from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

Box = tuple[int, int, int, int]  # y0, x0, y1, x1


def receptive_radius(net: nn.Module) -> int:
    """Input pixels on each side of an output pixel that can affect it (instance norm aside), from the kernel
    sizes and strides of the net's layers in order; an upper bound for nets with skip connections."""
    radius, jump = 0.0, 1.0
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            radius += (m.kernel_size[0] - 1) / 2 * m.dilation[0] * jump
            jump *= m.stride[0]
        elif isinstance(m, nn.ConvTranspose2d):
            jump /= m.stride[0]
            radius += math.ceil((m.kernel_size[0] - 1) / 2) * jump  # even kernels reach one pixel further one way
        elif isinstance(m, nn.Upsample):
            radius += jump / 2  # nearest: a pixel takes its value from the one it lies in
            jump /= m.scale_factor
        elif hasattr(m, "kernel") and isinstance(m.kernel, torch.Tensor):  # a fixed blur
            radius += (m.kernel.shape[-1] - 1) / 2 * jump
    return math.ceil(radius)


def default_overlap(radius: int, tile: int, multiple: int) -> int:
    """The receptive field plus an 8-pixel blend, on the net's grid, capped so that tiles advance by at least a
    quarter of a tile."""
    cap = (tile - max(tile // 4, multiple)) // multiple * multiple
    return min(-(-(2 * radius + 8) // multiple) * multiple, cap)


def tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Tile offsets along one axis: every `stride` pixels; the last tile ends at the image edge."""
    return list(range(0, max(length - (tile - stride), 1), stride))


def tile_cores(starts: list[int], tile: int, length: int, multiple: int) -> list[tuple[int, int]]:
    """The part of the axis each tile counts for statistics: split at the middle of each overlap (on the net's
    grid), so the cores cover the axis once."""
    cuts = [s + (min(prev + tile, length) - s) // 2 // multiple * multiple for prev, s in zip(starts, starts[1:])]
    return list(zip([0, *cuts], [*cuts, length]))


def ramp_window(length: int, overlap: int, radius: int, ramp_start: bool, ramp_end: bool) -> torch.Tensor:
    """1-D blending weights of a tile: at an interior edge, zero for the `radius` pixels whose receptive field
    leaves the tile, then a linear ramp to one over the rest of the overlap (all of it if the overlap is narrower
    than the receptive field); one at image edges."""
    ramp = overlap - 2 * radius if overlap > 2 * radius else overlap
    margin = (overlap - ramp) // 2
    edge = torch.cat([torch.zeros(margin), (torch.arange(ramp) + 0.5) / ramp])[:length]
    w = torch.ones(length, dtype=torch.float64)
    if ramp_start:
        w[: len(edge)] = torch.minimum(w[: len(edge)], edge)
    if ramp_end:
        w[length - len(edge):] = torch.minimum(w[length - len(edge):], edge.flip(0))
    return w


def tile_batches(image: torch.Tensor, boxes: list[Box], batch_size: int):
    """(indices, CHW crops stacked) for up to batch_size tiles at a time; tiles of different sizes never share one."""
    for i in range(0, len(boxes), batch_size):
        by_size: dict[tuple[int, int], list[int]] = {}
        for j in range(i, min(i + batch_size, len(boxes))):
            y0, x0, y1, x1 = boxes[j]
            by_size.setdefault((y1 - y0, x1 - x0), []).append(j)
        for same in by_size.values():
            yield same, torch.stack([image[:, boxes[j][0]:boxes[j][2], boxes[j][1]:boxes[j][3]] for j in same])


def padded(length: int, multiple: int, min_size: int) -> int:
    """The length PadToMultiple pads an axis to."""
    return max(length + (-length % multiple), min_size)


class _Measured(Exception):
    """Raised by the hook once the one norm asked for is measured: the rest of the net need not run."""


def tile_statistics(net: nn.Module, image: torch.Tensor, boxes: list[Box], cores: list[Box], batch_size: int,
                    device: torch.device, multiple: int, min_size: int, only: nn.Module | None = None) -> dict:
    """For each InstanceNorm2d in `net` (or just `only`), the (mean, variance) of its input over the whole image,
    each position counted once: from the tile whose core holds it (the bottom and right padding of the image
    included, as the untiled pass pads it)."""
    norms = [only] if only is not None else [m for m in net.modules() if isinstance(m, nn.InstanceNorm2d)]
    sums: dict[nn.Module, list] = {m: [0.0, 0.0, 0] for m in norms}
    current: list[tuple[Box, tuple[int, int]]] = []  # core relative to its tile, padded tile size

    def record(module: nn.Module, inputs: tuple, _) -> None:
        acc = sums[module]
        for x, ((cy0, cx0, cy1, cx1), (ph, pw)) in zip(inputs[0].double(), current):
            fy, fx = ph / x.shape[-2], pw / x.shape[-1]
            part = x[:, round(cy0 / fy):round(cy1 / fy), round(cx0 / fx):round(cx1 / fx)]
            acc[0] = acc[0] + part.sum((1, 2))
            acc[1] = acc[1] + part.square().sum((1, 2))
            acc[2] += part[0].numel()
        if only is not None:
            raise _Measured

    h, w = image.shape[-2:]
    hooks = [m.register_forward_hook(record) for m in sums]
    try:
        for same, batch in tile_batches(image, boxes, batch_size):
            current[:] = []
            for j in same:
                (y0, x0, y1, x1), (cy0, cx0, cy1, cx1) = boxes[j], cores[j]
                ph, pw = padded(y1 - y0, multiple, min_size), padded(x1 - x0, multiple, min_size)
                current.append(((cy0 - y0, cx0 - x0, ph if cy1 == h else cy1 - y0, pw if cx1 == w else cx1 - x0),
                                (ph, pw)))
            with contextlib.suppress(_Measured):
                net(batch.to(device))
    finally:
        for hook in hooks:
            hook.remove()
    return {m: (s / n, (sq / n - (s / n) ** 2).clamp(min=0)) for m, (s, sq, n) in sums.items()}


@contextlib.contextmanager
def instance_norm_statistics(stats: dict):
    """Inside the block, each InstanceNorm2d in `stats` normalises with the given (mean, variance) per channel
    instead of each input's own (then applies its affine scale and shift, if it has them)."""
    def forward(x, m, mean, var):
        y = (x - mean.to(x.dtype).view(1, -1, 1, 1)) * torch.rsqrt(var + m.eps).to(x.dtype).view(1, -1, 1, 1)
        return y * m.weight.view(1, -1, 1, 1) + m.bias.view(1, -1, 1, 1) if m.affine else y

    for m, (mean, var) in stats.items():
        m.forward = lambda x, m=m, mean=mean, var=var: forward(x, m, mean, var)
    try:
        yield
    finally:
        for m in stats:
            del m.forward


def translate_tiled(net: nn.Module, image: torch.Tensor, tile: int, overlap: int, batch_size: int,
                    device: torch.device, multiple: int, min_size: int, passes: int | None = None) -> torch.Tensor:
    """One CHW image through `net` (a PadToMultiple-wrapped generator) tile by tile; result on the CPU, in the
    image's dtype. `passes`: norms whose statistics are made exact (None: all; 0: each tile its own)."""
    h, w = image.shape[-2:]
    stride = (tile - overlap) // multiple * multiple
    ys, xs = tile_starts(h, tile, stride), tile_starts(w, tile, stride)
    boxes = [(y, x, min(y + tile, h), min(x + tile, w)) for y in ys for x in xs]
    cores = [(cy0, cx0, cy1, cx1) for cy0, cy1 in tile_cores(ys, tile, h, multiple)
             for cx0, cx1 in tile_cores(xs, tile, w, multiple)]
    args = (net, image, boxes, cores, batch_size, device, multiple, min_size)
    stats = tile_statistics(*args) if passes != 0 else {}  # the first norm's exact, the rest approximate
    for m in list(stats)[1:passes]:  # the norms in the order they run
        with instance_norm_statistics(stats):
            stats.update(tile_statistics(*args, only=m))
    radius = receptive_radius(net)
    acc = torch.zeros(image.shape, dtype=image.dtype)
    weight = torch.zeros(1, h, w, dtype=image.dtype)
    with instance_norm_statistics(stats):
        for same, batch in tile_batches(image, boxes, batch_size):
            for j, out in zip(same, net(batch.to(device)).to(image.dtype).cpu()):
                y0, x0, y1, x1 = boxes[j]
                window = (ramp_window(y1 - y0, tile - stride, radius, y0 > 0, y1 < h)[:, None]
                          * ramp_window(x1 - x0, tile - stride, radius, x0 > 0, x1 < w)[None, :]).to(image.dtype)
                acc[:, y0:y1, x0:x1] += out * window
                weight[:, y0:y1, x0:x1] += window
    return acc / weight
