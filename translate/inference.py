"""Translator: load an exported model and translate PIL images or tensors, keeping each image's size."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .checkpoint import ArtifactError, read_model
from .config import ModelConfig
from .data import to_rgb, to_tensor, to_uint8
from .engine import resolve_device
from .nets import build_generator

DIRECTIONS = ("a2b", "b2a")


class Translator:
    """Both generators of an exported model, in eval mode, with the model's metadata.

    >>> t = Translator.from_file("runs/my-run/model.safetensors")
    >>> out = t(Image.open("cat.jpg"), direction="a2b")
    """

    def __init__(self, generators: dict[str, torch.nn.Module], meta: dict, device: torch.device):
        self.nets = {"a2b": generators["g_ab"], "b2a": generators["g_ba"]}
        self.meta, self.device = meta, device
        model = ModelConfig(**meta["model"])
        self.multiple = 4 if model.generator == "resnet" else 2 ** model.unet_depth

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

    def net(self, direction: str) -> torch.nn.Module:
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, not {direction!r}")
        return self.nets[direction]

    @torch.inference_mode()
    def translate_tensor(self, x: torch.Tensor, direction: str = "a2b") -> torch.Tensor:
        """A batch NCHW in [-1, 1] of any H, W: reflect-padded to the net's multiple, translated, cropped back."""
        net = self.net(direction)
        h, w = x.shape[-2:]
        pad_h, pad_w = -h % self.multiple, -w % self.multiple
        x = x.to(self.device, torch.float32)
        if pad_h or pad_w:
            mode = "reflect" if pad_h < h and pad_w < w else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        return net(x)[..., :h, :w]

    def __call__(self, image: Image.Image | np.ndarray, direction: str = "a2b") -> Image.Image:
        """One image (PIL in any mode, or uint8 HWC RGB) to a translated PIL RGB image of the same size."""
        array = np.asarray(to_rgb(image)) if isinstance(image, Image.Image) else image
        out = self.translate_tensor(to_tensor(array)[None], direction)[0]
        return Image.fromarray(to_uint8(out))
