"""Nets by name: a recipe or the CLI picks `--generator` and `--discriminator` from GENERATORS and DISCRIMINATORS."""
from __future__ import annotations

from torch import nn

from .discriminators import DCGANDiscriminator, MultiScaleDiscriminator, PatchDiscriminator
from .generators import EncoderDecoderGenerator, ResidualGenerator, ResnetGenerator, UnetGenerator
from .layers import init_weights


def _resnet(cfg) -> nn.Module:
    return ResnetGenerator(cfg.channels, cfg.channels, cfg.ngf, cfg.n_blocks, cfg.g_norm, cfg.dropout, cfg.upsample)


def _unet(cfg) -> nn.Module:
    return UnetGenerator(cfg.channels, cfg.channels, cfg.ngf, cfg.unet_depth, cfg.g_norm, cfg.dropout, cfg.upsample)


def _encoder_decoder(cfg) -> nn.Module:
    return EncoderDecoderGenerator(cfg.channels, cfg.channels, cfg.ngf, cfg.unet_depth, cfg.g_norm, cfg.upsample)


def _patchgan(cfg) -> nn.Module:
    return PatchDiscriminator(cfg.channels, cfg.ndf, cfg.n_layers, cfg.d_norm, cfg.spectral_norm)


def _multiscale(cfg) -> nn.Module:
    return MultiScaleDiscriminator(cfg.channels, cfg.ndf, cfg.n_layers, cfg.d_norm, cfg.spectral_norm)


def _dcgan(cfg) -> nn.Module:
    return DCGANDiscriminator(cfg.channels, cfg.ndf, cfg.n_layers, cfg.d_norm, cfg.spectral_norm)


GENERATORS = {"resnet": _resnet, "unet": _unet, "encoder-decoder": _encoder_decoder}
DISCRIMINATORS = {"patchgan": _patchgan, "multiscale": _multiscale, "dcgan": _dcgan}


def _pick(registry: dict, name: str, kind: str):
    if name not in registry:
        raise ValueError(f"unknown {kind} {name!r}; choose from {', '.join(registry)}")
    return registry[name]


def build_generator(cfg) -> nn.Module:
    """A generator from a ModelConfig, initialised N(0, cfg.init_gain); with cfg.residual, wrapped to learn a
    change to its input that starts at zero."""
    net = init_weights(_pick(GENERATORS, cfg.generator, "generator")(cfg), cfg.init_gain)
    return ResidualGenerator(net, cfg.mask) if cfg.residual else net


def size_rule(cfg) -> tuple[int, int]:
    """(multiple, minimum) that a generator's input H and W must be: the ResNet's residual blocks see 1/4 of the
    image and reflect-pad it by 1, so it needs at least 8 px; a U-Net or encoder-decoder halves it unet_depth times,
    and the encoder-decoder's instance norm at the bottleneck needs more than 1x1 there. Training (validate.py) and
    inference (which pads to it) both ask here."""
    if cfg.generator == "resnet":
        return 4, 8
    multiple = 2 ** cfg.unet_depth
    normed_bottleneck = cfg.generator == "encoder-decoder" and cfg.g_norm == "instance" and cfg.unet_depth > 1
    return multiple, multiple * 2 if normed_bottleneck else multiple


def build_discriminator(cfg) -> nn.Module:
    return init_weights(_pick(DISCRIMINATORS, cfg.discriminator, "discriminator")(cfg), cfg.init_gain)
