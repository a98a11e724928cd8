"""Translator: load an exported model and translate PIL images or tensors, keeping each image's size.

Images of any size are reflect-padded to the net's multiple and cropped back. Several images go through the net
in batches of equal-sized images. Large images can be translated tile by tile (memory bounded; see tiling.py):
tiles overlap by the generator's receptive field and share instance-norm statistics measured over all of them.
"""
from __future__ import annotations

import dataclasses
import tempfile
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
from .nets import build_generator, size_rule
from .runtime import BACKENDS, PRECISIONS, autocast, native_bf16, pick_backend, resolve_device
from .tiling import default_overlap, receptive_radius, translate_tiled
from .winograd import fast_generator

DIRECTIONS = ("a2b", "b2a")
SMOOTH_RADIUS, SMOOTH_EPS = 2, 0.003  # measured on the quality benchmark: docs/quality.md


def smooth_flat_areas(x: torch.Tensor) -> torch.Tensor:
    """Edge-preserving smoothing of translations NCHW in [-1, 1]: a guided filter (He et al. 2010) guided by each
    image's own grey level, 5x5 windows, eps 0.003 on the 0-1 scale. It flattens texture of less than about 14 grey
    levels (a GAN's blotches in flat fills) and keeps outlines. For flat art (emoji, icons, line art), not photos."""
    from kornia.filters import guided_blur
    x01 = x.add(1).div(2)
    out = guided_blur(x01.mean(1, keepdim=True), x01, 2 * SMOOTH_RADIUS + 1, SMOOTH_EPS, border_type="replicate")
    return out.mul(2).sub(1).clamp(-1, 1)


class PadToMultiple(nn.Module):
    """Wraps a generator: pads H, W (bottom, right) up to a multiple of `multiple` and at least `min_size`, runs
    it, crops back. Also used for export."""

    def __init__(self, net: nn.Module, multiple: int, min_size: int):
        super().__init__()
        self.net, self.multiple, self.min_size = net, multiple, min_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        pad_h, pad_w = max(-h % self.multiple, self.min_size - h), max(-w % self.multiple, self.min_size - w)
        mode = "reflect" if pad_h < h and pad_w < w else "replicate"
        return self.net(F.pad(x, (0, pad_w, 0, pad_h), mode=mode))[..., :h, :w]


def first_problem(exc: Exception) -> str:
    """The first specific line of a load_state_dict error (its full text lists every mismatched tensor)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[1] if len(lines) > 1 else str(exc)


def check_weights(path: str | Path, name: str, state: dict[str, torch.Tensor],
                  expected: dict[str, torch.Tensor]) -> None:
    """ArtifactError naming `path` unless `state` has exactly the tensors of `expected` (same names and shapes,
    floating point where the net's are) and all of them finite."""
    if state.keys() != expected.keys():
        odd = sorted(state.keys() ^ expected.keys())
        raise ArtifactError(f"{path}: weights do not fit the model in its metadata ({len(odd)} tensor names differ "
                            f"in {name}, e.g. {odd[0]})")
    for key, want in expected.items():
        got = state[key]
        if got.shape != want.shape:
            raise ArtifactError(f"{path}: weights do not fit the model in its metadata (size mismatch for "
                                f"{name}.{key}: {tuple(got.shape)} in the file, {tuple(want.shape)} in the config)")
        if want.is_floating_point() and not got.is_floating_point():
            raise ArtifactError(f"{path}: {name}.{key} holds {got.dtype} values; model weights are floating point")
        if got.is_floating_point() and not bool(torch.isfinite(got).all()):
            raise ArtifactError(f"{path}: {name}.{key} holds NaN or infinite values; the model is unusable")


class Translator:
    """Both generators of an exported model, in eval mode, with the model's metadata. Thread-safe. With precision
    "bf16" the nets run under bf16 autocast (about 1.8x faster on CPUs with native bf16, within a few grey levels).

    >>> t = Translator.from_file("runs/my-run/model.safetensors")
    >>> out = t(Image.open("cat.jpg"), direction="a2b")          # one image, same size out
    >>> outs = t([img1, img2, img3], direction="b2a")             # batched
    >>> big = t(Image.open("pano.jpg"), tile=512)                 # tile by tile
    """

    def __init__(self, generators: dict[str, torch.nn.Module], meta: dict, device: torch.device,
                 precision: str = "fp32", backend: str = "torch"):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
        backend = pick_backend(backend, device, precision)
        self.meta, self.device, self.precision, self.backend = meta, device, precision, backend
        self._sessions: dict = {}
        self.multiple, self.min_size = size_rule(ModelConfig(**meta["model"]))
        self.nets = {"a2b": PadToMultiple(generators["g_ab"], self.multiple, self.min_size),
                     "b2a": PadToMultiple(generators["g_ba"], self.multiple, self.min_size)}
        if backend == "winograd":  # untiled translation only; tiles run the plain nets (tiling hooks their norms)
            self._fast = {d: PadToMultiple(fast_generator(net.net), self.multiple, self.min_size)
                          for d, net in self.nets.items()}
        self._lock = threading.RLock()

    @classmethod
    def from_file(cls, path: str | Path, device: str = "auto", precision: str = "fp32",
                  backend: str = "torch") -> "Translator":
        """Load an artifact; precision "auto" is bf16 on CUDA and on CPUs with native bf16, else fp32. Backend
        "winograd" runs fp32 PyTorch with Winograd convolutions on the CPU (within 3e-4 of "torch"; "auto" picks
        it on CPUs without native bf16); "onnxruntime" runs fp32 ONNX Runtime on the CPU (each direction
        exported on first use, ~10 s). Measured speeds: docs/benchmarks.md."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
        nets_state, meta = read_model(path)
        if set(nets_state) != {"g_ab", "g_ba"} or not isinstance(meta.get("model"), dict):
            raise ArtifactError(f"{path}: expected generators g_ab and g_ba with a model config")
        domains = meta.get("domains", ["A", "B"])
        if not (isinstance(domains, list) and len(domains) == 2 and all(isinstance(d, str) for d in domains)):
            raise ArtifactError(f"{path}: its metadata names {domains!r} as domains; a model has two, by name")
        dev = resolve_device(device)
        backend = pick_backend(backend, dev, precision)
        if backend in ("onnxruntime", "winograd") and dev.type != "cpu":
            raise ValueError(f"the {backend} backend runs on the CPU: use --device cpu, or the torch backend")
        try:
            with torch.device("meta"):  # shapes only: a config that claims a huge net costs no memory here
                expected = build_generator(ModelConfig(**meta["model"])).state_dict()
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ArtifactError(f"{path}: the model config in its metadata is invalid ({exc})") from None
        for name, state in nets_state.items():
            check_weights(path, name, state, expected)
        meta = {**meta, "model": dataclasses.asdict(ModelConfig(**meta["model"]))}  # a partial config completed
        generators = {name: build_generator(ModelConfig(**meta["model"])) for name in nets_state}
        for name, net in generators.items():
            try:
                net.load_state_dict({k: v.float() for k, v in nets_state[name].items()})
            except RuntimeError as exc:
                raise ArtifactError(f"{path}: weights do not fit the model in its metadata "
                                    f"({first_problem(exc)})") from None
            net.to(dev).eval()
        if precision == "auto":
            precision = "bf16" if native_bf16(dev) else "fp32"
        return cls(generators, meta, dev, precision if backend == "torch" else "fp32", backend)

    @property
    def domains(self) -> tuple[str, str]:
        return tuple(self.meta.get("domains", ("A", "B")))

    def require_rgb(self, source: str | Path) -> None:
        """ArtifactError naming `source` unless the model takes RGB: pictures are always translated as RGB."""
        channels = self.meta["model"].get("channels", 3)
        if channels != 3:
            raise ArtifactError(f"{source}: a {channels}-channel model; only RGB (3-channel) models translate "
                                "images")

    def net(self, direction: str) -> nn.Module:
        """The padded generator of a direction (a2b or b2a)."""
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, not {direction!r}")
        return self.nets[direction]

    @torch.inference_mode()
    def translate_tensor(self, x: torch.Tensor, direction: str = "a2b") -> torch.Tensor:
        """A batch NCHW in [-1, 1] of any H, W: reflect-padded to the net's multiple, translated, cropped back."""
        net = self.net(direction)
        if self.backend == "onnxruntime":
            with self._lock:
                return torch.from_numpy(self._session(direction).run(None, {"image": x.float().cpu().numpy()})[0])
        if self.backend == "winograd":
            with self._lock:
                return self._fast[direction](x.float().contiguous(memory_format=torch.channels_last)).contiguous()
        with self._lock, self._autocast():
            return net(x.to(self.device, torch.float32)).float()

    def _session(self, direction: str):
        """The ONNX Runtime session of a direction, from `translate export --onnx`'s graph, made on first use."""
        if direction not in self._sessions:
            import onnxruntime as ort
            from .export import export_onnx
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / f"{direction}.onnx"
                export_onnx(self, direction, path)
                self._sessions[direction] = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return self._sessions[direction]

    @torch.inference_mode()
    def translate_tiled(self, x: torch.Tensor, direction: str = "a2b", tile: int = 512, overlap: int | None = None,
                        batch_size: int = 1, passes: int | None = None) -> torch.Tensor:
        """Like translate_tensor, one tile x tile window at a time (`batch_size` windows per pass), neighbouring
        windows overlapping by `overlap` pixels (default: the generator's receptive field plus an 8-pixel blend,
        capped so that tiles advance by at least a quarter tile), instance norm with statistics of the whole image, measured over the tiles (exact
        for all norms, or for the first `passes`; see tiling.py). Float64 input runs in float64 if the nets are.
        Result on the CPU."""
        net = self.net(direction)
        if overlap is None:
            overlap = default_overlap(receptive_radius(net), tile, self.multiple)
        if overlap < 0 or (tile - overlap) // self.multiple < 1:
            raise ValueError(f"tile {tile} must exceed overlap {overlap} by at least {self.multiple} pixels")
        if x.shape[-2] <= tile and x.shape[-1] <= tile:
            return self.translate_tensor(x, direction).cpu()
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        with self._lock, self._autocast():
            return torch.stack([translate_tiled(net, image, tile, overlap, batch_size, self.device, self.multiple,
                                                self.min_size, passes) for image in x.to(dtype)])

    def _autocast(self):
        return autocast(self.device, self.precision == "bf16")

    def translate_images(self, images: list, direction: str = "a2b", batch_size: int = 8,
                         tile: int | None = None, overlap: int | None = None,
                         smooth: bool = False) -> list[Image.Image]:
        """Many images (PIL in any mode, or uint8 HWC RGB), each keeping its size. Equal-sized images share a
        batch of up to `batch_size`; with `tile`, images larger than the tile are translated tile by tile; with
        `smooth`, the translations are smoothed where flat (see `smooth_flat_areas`)."""
        arrays = [np.array(to_rgb(im)) if isinstance(im, Image.Image) else im for im in images]
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
                if smooth:
                    y = smooth_flat_areas(y.float())
                for i, image in zip(chunk, y):
                    out[i] = Image.fromarray(to_uint8(image))
        return out

    def __call__(self, image, direction: str = "a2b", **kwargs):
        """One image (PIL in any mode, or uint8 HWC RGB) to a translated PIL RGB image of the same size; a list of
        images to a list (see translate_images for the keyword arguments)."""
        if isinstance(image, (list, tuple)):
            return self.translate_images(list(image), direction, **kwargs)
        return self.translate_images([image], direction, **kwargs)[0]
