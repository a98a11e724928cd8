"""Checks of a training config, run once before any folder is created: each problem is one ValueError line naming
the flag, never a traceback from deep inside the nets or the loop."""
from __future__ import annotations

import dataclasses

import torch

from .config import Config
from .runtime import resolve_device

AT_LEAST_1 = ("batch_size", "log_every", "save_every", "sample_every", "n_samples", "g_steps", "d_steps", "ngf", "ndf",
              "n_layers", "unet_depth", "epochs", "max_steps", "load_size", "crop_size")
AT_LEAST_0 = ("pool_size", "n_blocks", "workers", "save_retries", "dropout", "lambda_cycle", "lambda_identity",
              "label_smoothing", "gp_weight", "r1_weight", "feature_matching", "weight_decay", "ema")
POSITIVE = ("lr_g", "lr_d")


def flag(name: str) -> str:
    """A config field's CLI flag: lr_g -> --lr-g."""
    return "--" + name.replace("_", "-")


def check_config(cfg: Config) -> None:
    """ValueError for the first value training cannot use: counts below 1, negative sizes and weights, a crop the
    nets cannot take, an unusable --device."""
    values = {**vars(cfg.model), **vars(cfg.data), **vars(cfg.train)}
    for name in AT_LEAST_1:
        if values[name] is not None and values[name] < 1:
            raise ValueError(f"{flag(name)} {values[name]} must be 1 or more")
    for name in AT_LEAST_0:
        if values[name] < 0:
            raise ValueError(f"{flag(name)} {values[name]} must be 0 or more")
    for name in POSITIVE:
        if not values[name] > 0:
            raise ValueError(f"{flag(name)} {values[name]} must be above 0")
    if not 0 <= cfg.train.lr_decay_start <= 1:
        raise ValueError(f"--lr-decay-start {cfg.train.lr_decay_start} must be between 0 and 1")
    if not 0 <= cfg.train.ema < 1:
        raise ValueError(f"--ema {cfg.train.ema} must be below 1 (0 = off)")
    if cfg.data.crop_size % 4:
        raise ValueError(f"--crop-size {cfg.data.crop_size} must be divisible by 4")
    check_nets_fit(cfg)
    resolve_device(cfg.train.device)


def check_nets_fit(cfg: Config) -> None:
    """ValueError unless both nets take a --crop-size square batch: a forward pass through copies one channel
    wide (same spatial path, negligible cost; a meta-device pass would import torch._dynamo, seconds)."""
    from .nets import build_discriminator, build_generator
    m, size = cfg.model, cfg.data.crop_size
    thin = dataclasses.replace(m, ngf=1, ndf=1, spectral_norm=False)
    x = torch.zeros(cfg.train.batch_size, m.channels, size, size)
    what = {"resnet": "the ResNet generator",
            "unet": f"a U-Net of depth {m.unet_depth} (image sides must be multiples of {2 ** m.unet_depth})",
            "encoder-decoder": f"an encoder-decoder of depth {m.unet_depth} (image sides must be multiples of "
                               f"{2 ** m.unet_depth})"}[m.generator]
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        try:
            if build_generator(thin)(x).shape != x.shape:
                raise RuntimeError("its output size differs from its input size")
        except (RuntimeError, ValueError) as exc:
            raise ValueError(f"--crop-size {size} does not fit {what}: {str(exc).splitlines()[0]}; choose another "
                             "--crop-size or --unet-depth") from None
        try:
            build_discriminator(thin)(x)
        except (RuntimeError, ValueError) as exc:
            raise ValueError(f"--crop-size {size} is too small for a PatchGAN with --n-layers {m.n_layers} "
                             f"({str(exc).splitlines()[0]}); use fewer --n-layers or a larger --crop-size") from None
