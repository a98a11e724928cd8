"""Translator: load an exported model and translate PIL images or tensors, keeping each image's size.

Images of any size are reflect-padded to the net's multiple and cropped back. Several images go through the net
in batches of equal-sized images. Large images can be translated tile by tile (memory bounded): tiles overlap and
are blended with linear ramps, and instance norm uses statistics of the whole (downscaled) image, so tiles agree
with each other and with the untiled result away from the seams.
"""
from __future__ import annotations

import contextlib
import threading
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from .checkpoint import ArtifactError, read_model
from .config import ModelConfig
from .data import to_rgb, to_tensor, to_uint8
from .engine import resolve_device
from .nets import build_generator

DIRECTIONS = ("a2b", "b2a")


class PadToMultiple(nn.Module):
    """Wraps a generator: pads H, W (bottom, right) up to `multiple`, runs it, crops back. Also used for export."""

    def __init__(self, net: nn.Module, multiple: int):
        super().__init__()
        self.net, self.multiple = net, multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        pad_h, pad_w = -h % self.multiple, -w % self.multiple
        if pad_h or pad_w:
            mode = "reflect" if pad_h < h and pad_w < w else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        return self.net(x)[..., :h, :w]


def model_multiple(model: ModelConfig) -> int:
    """The factor a generator needs H and W to be divisible by."""
    return 4 if model.generator == "resnet" else 2 ** model.unet_depth


def tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Tile offsets along one axis: every `stride` pixels; the last tile ends at the image edge."""
    return list(range(0, max(length - (tile - stride), 1), stride))


def _ramp_window(length: int, overlap: int, ramp_start: bool, ramp_end: bool) -> torch.Tensor:
    """1-D blending weights of a tile: linear ramps over the overlap at interior edges, 1 at image edges."""
    w = torch.ones(length)
    ramp = (torch.arange(min(overlap, length)) + 0.5) / overlap
    if ramp_start:
        w[: len(ramp)] = torch.minimum(w[: len(ramp)], ramp)
    if ramp_end:
        w[length - len(ramp):] = torch.minimum(w[length - len(ramp):], ramp.flip(0))
    return w


@contextlib.contextmanager
def global_instance_norm(net: nn.Module, image: torch.Tensor):
    """Inside the block, every InstanceNorm2d of `net` normalises with the statistics it saw on `image` (1CHW)
    instead of each input's own: the tiles of an image then share one normalisation."""
    norms = [m for m in net.modules() if isinstance(m, nn.InstanceNorm2d)]
    stats: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}

    def record(module: nn.Module, inputs: tuple, _) -> None:
        stats[module] = torch.var_mean(inputs[0], dim=(2, 3), keepdim=True, correction=0)

    hooks = [m.register_forward_hook(record) for m in norms]
    try:
        net(image)
    finally:
        for hook in hooks:
            hook.remove()
    for m in norms:
        var, mean = stats[m]
        m.forward = lambda x, mean=mean, scale=torch.rsqrt(var + m.eps): (x - mean) * scale
    try:
        yield
    finally:
        for m in norms:
            del m.forward


class Translator:
    """Both generators of an exported model, in eval mode, with the model's metadata. Thread-safe.

    >>> t = Translator.from_file("runs/my-run/model.safetensors")
    >>> out = t(Image.open("cat.jpg"), direction="a2b")          # one image, same size out
    >>> outs = t([img1, img2, img3], direction="b2a")             # batched
    >>> big = t(Image.open("pano.jpg"), tile=512, overlap=64)     # tile by tile
    """

    def __init__(self, generators: dict[str, torch.nn.Module], meta: dict, device: torch.device):
        self.meta, self.device = meta, device
        self.multiple = model_multiple(ModelConfig(**meta["model"]))
        self.nets = {"a2b": PadToMultiple(generators["g_ab"], self.multiple),
                     "b2a": PadToMultiple(generators["g_ba"], self.multiple)}
        self._lock = threading.RLock()

    @classmethod
    def from_file(cls, path: str | Path, device: str = "auto") -> "Translator":
        nets_state, meta = read_model(path)
        if set(nets_state) != {"g_ab", "g_ba"} or "model" not in meta:
            raise ArtifactError(f"{path}: expected generators g_ab and g_ba with a model config")
        dev = resolve_device(device)
        model = ModelConfig(**meta["model"])
        generators = {}
        for name, state in nets_state.items():
            net = build_generator(model)
            try:
                net.load_state_dict({k: v.float() for k, v in state.items()})
            except RuntimeError as exc:
                raise ArtifactError(f"{path}: weights do not fit the model in its metadata ({exc})") from None
            generators[name] = net.to(dev).eval()
        return cls(generators, meta, dev)

    @property
    def domains(self) -> tuple[str, str]:
        return tuple(self.meta.get("domains", ("A", "B")))

    def net(self, direction: str) -> nn.Module:
        """The padded generator of a direction (a2b or b2a)."""
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, not {direction!r}")
        return self.nets[direction]

    @torch.inference_mode()
    def translate_tensor(self, x: torch.Tensor, direction: str = "a2b") -> torch.Tensor:
        """A batch NCHW in [-1, 1] of any H, W: reflect-padded to the net's multiple, translated, cropped back."""
        net = self.net(direction)
        with self._lock:
            return net(x.to(self.device, torch.float32))

    @torch.inference_mode()
    def translate_tiled(self, x: torch.Tensor, direction: str = "a2b", tile: int = 512, overlap: int = 64,
                        batch_size: int = 1, stats_pixels: int | None = None) -> torch.Tensor:
        """Like translate_tensor, one tile x tile window at a time (`batch_size` windows per pass), windows
        `overlap` pixels apart blended with linear ramps. Instance-norm statistics come from the whole image
        downscaled to at most `stats_pixels` pixels (default tile * tile). Result on the CPU."""
        net = self.net(direction)
        stride = (tile - overlap) // self.multiple * self.multiple
        if overlap < 0 or stride < self.multiple:
            raise ValueError(f"tile {tile} must exceed overlap {overlap} by at least {self.multiple} pixels")
        overlap = tile - stride
        h, w = x.shape[-2:]
        if h <= tile and w <= tile:
            return self.translate_tensor(x, direction).cpu()
        out = []
        with self._lock:
            for image in x.to(torch.float32):
                stats_image = self._stats_image(image[None], stats_pixels or tile * tile)
                with global_instance_norm(net, stats_image.to(self.device)):
                    out.append(self._blend_tiles(net, image, tile, stride, overlap, batch_size))
        return torch.stack(out)

    @staticmethod
    def _stats_image(image: torch.Tensor, max_pixels: int) -> torch.Tensor:
        """The image (1CHW) downscaled to at most max_pixels, aspect kept."""
        h, w = image.shape[-2:]
        scale = (max_pixels / (h * w)) ** 0.5
        if scale >= 1:
            return image
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        return F.interpolate(image, size=size, mode="bilinear", antialias=True, align_corners=False)

    def _blend_tiles(self, net: nn.Module, image: torch.Tensor, tile: int, stride: int, overlap: int,
                     batch_size: int) -> torch.Tensor:
        h, w = image.shape[-2:]
        acc = torch.zeros(image.shape[0], h, w)
        weight = torch.zeros(1, h, w)
        ys, xs = tile_starts(h, tile, stride), tile_starts(w, tile, stride)
        boxes = [(y, x, min(y + tile, h), min(x + tile, w)) for y in ys for x in xs]
        for i in range(0, len(boxes), batch_size):
            group = boxes[i:i + batch_size]
            by_size: dict[tuple[int, int], list] = {}
            for box in group:
                by_size.setdefault((box[2] - box[0], box[3] - box[1]), []).append(box)
            for boxes_same in by_size.values():
                batch = torch.stack([image[:, y0:y1, x0:x1] for y0, x0, y1, x1 in boxes_same])
                result = net(batch.to(self.device)).float().cpu()
                for (y0, x0, y1, x1), tile_out in zip(boxes_same, result):
                    wy = _ramp_window(y1 - y0, overlap, y0 > 0, y1 < h)
                    wx = _ramp_window(x1 - x0, overlap, x0 > 0, x1 < w)
                    window = wy[:, None] * wx[None, :]
                    acc[:, y0:y1, x0:x1] += tile_out * window
                    weight[:, y0:y1, x0:x1] += window
        return acc / weight

    def translate_images(self, images: list, direction: str = "a2b", batch_size: int = 8,
                         tile: int | None = None, overlap: int = 64) -> list[Image.Image]:
        """Many images (PIL in any mode, or uint8 HWC RGB), each keeping its size. Equal-sized images share a
        batch of up to `batch_size`; with `tile`, images larger than the tile are translated tile by tile."""
        arrays = [np.asarray(to_rgb(im)) if isinstance(im, Image.Image) else im for im in images]
        out: list[Image.Image | None] = [None] * len(arrays)
        by_size: dict[tuple[int, ...], list[int]] = {}
        for i, array in enumerate(arrays):
            by_size.setdefault(array.shape, []).append(i)
        for shape, indices in by_size.items():
            for start in range(0, len(indices), batch_size):
                chunk = indices[start:start + batch_size]
                x = torch.stack([to_tensor(arrays[i]) for i in chunk])
                if tile and max(shape[:2]) > tile:
                    y = self.translate_tiled(x, direction, tile, overlap, batch_size)
                else:
                    y = self.translate_tensor(x, direction)
                for i, image in zip(chunk, y):
                    out[i] = Image.fromarray(to_uint8(image))
        return out

    def __call__(self, image, direction: str = "a2b", **kwargs):
        """One image (PIL in any mode, or uint8 HWC RGB) to a translated PIL RGB image of the same size; a list of
        images to a list (see translate_images for the keyword arguments)."""
        if isinstance(image, (list, tuple)):
            return self.translate_images(list(image), direction, **kwargs)
        return self.translate_images([image], direction, **kwargs)[0]
