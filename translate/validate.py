"""Checks of a training config, run once before any folder is created: each problem is one ValueError line naming
the flag, never a traceback from deep inside the nets or the loop."""
from __future__ import annotations

import dataclasses

import torch

from .config import Config
from .runtime import resolve_device

AT_LEAST_1 = ("batch_size", "log_every", "save_every", "sample_every", "n_samples", "g_steps", "d_steps", "ngf", "ndf",
              "n_layers", "unet_depth", "epochs", "max_steps", "crop_size")
AT_LEAST_0 = ("load_size", "pool_size", "n_blocks", "workers", "save_retries", "dropout", "lambda_cycle",
              "lambda_identity", "label_smoothing", "gp_weight", "r1_weight", "feature_matching", "weight_decay", "ema",
              "lambda_nce", "lambda_smooth")
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
    if cfg.train.lambda_nce and cfg.model.generator != "resnet":
        raise ValueError(f"--lambda-nce (PatchNCE, the cut and fastcut recipes) compares the ResNet generator's "
                         f"encoder features; --generator {cfg.model.generator} has none of its kind")
    if cfg.train.lambda_nce and cfg.model.n_blocks < 2:
        raise ValueError(f"--lambda-nce compares two residual blocks' features; --n-blocks {cfg.model.n_blocks} "
                         "has fewer (use 2 or more)")
    if cfg.model.mask and not cfg.model.residual:
        raise ValueError("--mask gates a residual generator's change: it needs --residual")
    if cfg.train.nce_identity and not cfg.train.lambda_nce:
        raise ValueError("--nce-identity weighs a PatchNCE term: it needs --lambda-nce above 0")
    check_nets_fit(cfg)
    resolve_device(cfg.train.device)


def check_nets_fit(cfg: Config) -> None:
    """ValueError unless both nets take a --crop-size square batch: the generators' size rule, then a forward pass
    through copies one channel wide (same spatial path, negligible cost; a meta-device pass would import
    torch._dynamo, seconds)."""
    from .nets import build_discriminator, build_generator, size_rule
    m, size = cfg.model, cfg.data.crop_size
    thin = dataclasses.replace(m, ngf=1, ndf=1, spectral_norm=False)
    x = torch.zeros(cfg.train.batch_size, m.channels, size, size)
    multiple, minimum = size_rule(m)
    if size % multiple or size < minimum:
        what = ("the ResNet generator" if m.generator == "resnet" else
                f"a{'n encoder-decoder' if m.generator == 'encoder-decoder' else ' U-Net'} of depth {m.unet_depth}")
        raise ValueError(f"--crop-size {size} does not fit {what}: image sides must be multiples of {multiple}, "
                         f"at least {minimum}; choose another --crop-size or --unet-depth")
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        generator = build_generator(thin)  # its own errors are about the flags, not the size
        try:  # in training mode, at the batch size: batch norm at a 1x1 bottleneck needs a batch of 2 or more
            generator(x)
        except (RuntimeError, ValueError) as exc:
            raise ValueError(f"--crop-size {size} with --batch-size {cfg.train.batch_size} does not fit the "
                             f"{m.generator} generator: {str(exc).splitlines()[0]}") from None
        try:
            build_discriminator(thin)(x)
        except (RuntimeError, ValueError) as exc:
            what = ("a multi-scale PatchGAN (its second critic sees half the size)" if m.discriminator == "multiscale"
                    else "a PatchGAN")
            raise ValueError(f"--crop-size {size} is too small for {what} with --n-layers {m.n_layers} "
                             f"({str(exc).splitlines()[0]}); use fewer --n-layers or a larger --crop-size") from None
