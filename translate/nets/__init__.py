"""Nets by name: a recipe or the CLI picks `--generator` and `--discriminator` from GENERATORS and DISCRIMINATORS."""
from __future__ import annotations

from torch import nn

from .discriminators import DCGANDiscriminator, PatchDiscriminator
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


def _dcgan(cfg) -> nn.Module:
    return DCGANDiscriminator(cfg.channels, cfg.ndf, cfg.n_layers, cfg.d_norm, cfg.spectral_norm)


GENERATORS = {"resnet": _resnet, "unet": _unet, "encoder-decoder": _encoder_decoder}
DISCRIMINATORS = {"patchgan": _patchgan, "dcgan": _dcgan}


def _pick(registry: dict, name: str, kind: str):
    if name not in registry:
        raise ValueError(f"unknown {kind} {name!r}; choose from {', '.join(registry)}")
    return registry[name]


def build_generator(cfg) -> nn.Module:
    """A generator from a ModelConfig, initialised N(0, cfg.init_gain); with cfg.residual, wrapped to learn a
    change to its input that starts at zero."""
    net = init_weights(_pick(GENERATORS, cfg.generator, "generator")(cfg), cfg.init_gain)
    return ResidualGenerator(net) if cfg.residual else net


def build_discriminator(cfg) -> nn.Module:
    return init_weights(_pick(DISCRIMINATORS, cfg.discriminator, "discriminator")(cfg), cfg.init_gain)
