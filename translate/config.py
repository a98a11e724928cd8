"""Run configuration as plain dataclasses: JSON round trip, and one CLI flag per field."""
from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from .losses import ADVERSARIAL, RECON_LOSSES
from .nets import DISCRIMINATORS, GENERATORS
from .nets.layers import NORMS, UPSAMPLINGS
from .optimizers import OPTIMIZERS


def opt(default, help: str, choices: tuple | None = None, hidden: bool = False):
    """A dataclass field that also describes its CLI flag (`hidden`: accepted but left out of --help, for fields
    with one valid value today)."""
    return field(default=default, metadata={"help": help, "choices": choices, "hidden": hidden})


GENERATOR_FIELDS = ("generator", "ngf", "n_blocks", "unet_depth", "g_norm", "dropout", "upsample", "residual", "mask",
                    "channels")  # what a generator's weights fix: --init takes these from the model it starts from


@dataclass
class ModelConfig:
    generator: str = opt("resnet", "generator net", tuple(GENERATORS))
    ngf: int = opt(64, "generator width (filters in the first layer)")
    n_blocks: int = opt(9, "residual blocks in the ResNet generator")
    unet_depth: int = opt(6, "U-Net / encoder-decoder downsamplings (image sides divisible by 2**depth)")
    g_norm: str = opt("instance", "generator normalisation", NORMS)
    dropout: float = opt(0.0, "generator dropout")
    upsample: str = opt("resize-conv", "generator upsampling", UPSAMPLINGS)
    residual: bool = opt(False, "generator learns a change to its input (output = input + change, clamped to "
                         "[-1, 1]; the change starts at zero, so training starts from the identity)")
    mask: bool = opt(False, "with --residual, a learned per-pixel mask gates the change (output = input + "
                     "sigmoid(mask) * change; attention-guided translation, Mejjati et al. 2018, arXiv:1806.02311)")
    discriminator: str = opt("patchgan", "discriminator net: patchgan (a logit per patch) | multiscale (PatchGANs "
                             "on the image and a half-size copy, pix2pixHD's) | dcgan (one logit an image, "
                             "DiscoGAN's)", tuple(DISCRIMINATORS))
    ndf: int = opt(64, "discriminator width")
    n_layers: int = opt(3, "PatchGAN stride-2 layers (3 = 70x70 patches)")
    d_norm: str = opt("instance", "discriminator normalisation", NORMS)
    spectral_norm: bool = opt(False, "spectral norm on every discriminator conv")
    channels: int = opt(3, "image channels (training loads RGB: 3)", hidden=True)
    init_gain: float = opt(0.02, "std of the normal weight init")


@dataclass
class DataConfig:
    data: str | None = opt(None, "dataset root holding trainA/ trainB/ (and testA/ testB/ for samples)")
    data_a: str | None = opt(None, "folder of domain A images (recursive)")
    data_b: str | None = opt(None, "folder of domain B images (recursive)")
    load_size: int = opt(286, "resize the shorter side to this before cropping (0 = to --crop-size: no zoom)")
    crop_size: int = opt(256, "square crop fed to the nets (divisible by 4)")
    resize: bool = opt(True, "resize to --load-size")
    crop: bool = opt(True, "random crop (centre crop when off)")
    flip: bool = opt(True, "random horizontal flip")
    workers: int = opt(2, "data loader processes (0 = load in the main process)")


@dataclass
class TrainConfig:
    recipe: str = opt("cyclegan", "recipe: residual-cyclegan (the default) | cyclegan | discogan | dualgan | cut | "
                      "fastcut; sets the defaults below (`translate recipes` compares them)")
    adversarial: str = opt("lsgan", "adversarial objective", ADVERSARIAL)
    label_smoothing: float = opt(0.0, "one-sided label smoothing: real target is 1 - this")
    gp_weight: float = opt(10.0, "gradient penalty weight (wgan-gp)")
    clip_value: float = opt(0.01, "critic weight clipping bound (wgan-clip)")
    r1_weight: float = opt(0.0, "R1 penalty weight on real images (0 = off)")
    diffaugment: str = opt("", "DiffAugment policies applied to real and fake images before D, comma-separated: "
                           "translation, cutout (empty = off; helps small data sets)")
    recon_loss: str = opt("l1", "reconstruction (cycle) distance", RECON_LOSSES)
    lambda_cycle: float = opt(10.0, "cycle loss weight, per direction")
    lambda_identity: float = opt(0.5, "identity loss weight, relative to --lambda-cycle (0 = off)")
    lambda_smooth: float = opt(0.0, "edge-aware smoothness of each generator's change (output - input): its "
                               "gradients count where the input is flat, not across the input's edges, so "
                               "changes come as flat regions bounded by the input's outlines (0 = off)")
    lambda_adv: float = opt(1.0, "adversarial loss weight in the generator loss")
    lambda_nce: float = opt(0.0, "PatchNCE loss weight, per direction (CUT's content loss; 0 = off; ResNet "
                            "generator only)")
    nce_identity: bool = opt(False, "PatchNCE also on target-domain images through the generator (CUT's "
                             "identity term; FastCUT leaves it out)")
    feature_matching: float = opt(0.0, "discriminator feature-matching loss weight (0 = off)")
    recon_rate: float = opt(0.0, "DiscoGAN's weighting: generator loss = (1 - r) x (adversarial + feature "
                            "matching) + r x reconstruction, r = this after --recon-rate-steps (0 = off)")
    recon_rate_start: float = opt(0.01, "r for the first --recon-rate-steps steps (with --recon-rate)")
    recon_rate_steps: int = opt(10000, "steps at --recon-rate-start before --recon-rate (DiscoGAN's curriculum)")
    optimizer: str = opt("adam", "optimizer", tuple(OPTIMIZERS))
    lr_g: float = opt(2e-4, "generator learning rate")
    lr_d: float = opt(2e-4, "discriminator learning rate (TTUR: set it apart from --lr-g)")
    beta1: float = opt(0.5, "Adam beta1")
    beta2: float = opt(0.999, "Adam beta2")
    weight_decay: float = opt(0.0, "optimizer weight decay")
    d_steps: int = opt(1, "discriminator updates per step (n_critic), each on a batch of its own")
    g_steps: int = opt(1, "generator updates per step, on the step's first batch")
    update_interval: int = opt(1, "DiscoGAN's alternation: with N > 1, every N-th step updates only the "
                               "discriminators and the others only the generators (1 = both every step)")
    pool_size: int = opt(50, "image pool of past fakes shown to the discriminator (0 = off)")
    ema: float = opt(0.0, "EMA decay of generator weights for samples and export (0 = off, e.g. 0.999)")
    lr_decay_start: float = opt(0.5, "fraction of the run at constant LR before linear decay to zero (1 = never)")
    batch_size: int = opt(1, "images per domain per step")
    epochs: int = opt(200, "epochs (an epoch is one pass over the larger domain)")
    max_steps: int | None = opt(None, "total steps (overrides --epochs)")
    seed: int = opt(0, "random seed (a CPU run is bit-reproducible)")
    init: str | None = opt(None, "start both generators from this exported model (a .safetensors file or a run "
                           "folder) instead of random weights, and take its generator settings (--ngf, "
                           "--n-blocks...): fine-tune it on other images")
    device: str = opt("auto", "cuda | cpu | auto")
    amp: str = opt("auto", "mixed precision: bf16 autocast (auto = on CUDA, and on CPUs with native bf16)",
                   ("auto", "bf16", "off"))
    channels_last: str = opt("auto", "channels-last memory format (auto = with bf16 on a CPU)", ("auto", "on", "off"))
    winograd: str = opt("auto", "3x3 and resize-conv convolutions of 128+ channels by Winograd F(4x4, 3x3): fewer "
                        "multiplications, the same function within 1e-5 (auto = on a CPU in fp32)",
                        ("auto", "on", "off"))
    compile: str = opt("auto", "torch.compile the nets (auto = on CUDA, except with gradient penalties)",
                       ("auto", "on", "off"))
    save_retries: int = opt(0, "retries of a failed checkpoint write (disk full...), 10 s apart, before stopping")
    on_nan: str = opt("rollback", "on a non-finite loss or weight: reload the last good state at half the LR, "
                      "or stop", ("rollback", "stop"))
    name: str | None = opt(None, "run name: the run folder is RUNS_DIR/NAME; default: the data folder's name "
                           "and the recipe, e.g. emoji-style-cyclegan")
    runs_dir: str = opt("runs", "where run folders go")
    log_every: int = opt(50, "steps between metric logs")
    sample_every: int = opt(500, "steps between sample grids")
    save_every: int = opt(1000, "steps between resume checkpoints and model exports")
    keep_every: int = opt(0, "also keep the exported model every N steps as models/step_NNNNNNN.safetensors "
                          "(0 = off); `apply`/`eval` pick one with --step")
    n_samples: int = opt(4, "fixed test images per domain in sample grids")


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        sections = {}
        for f in dataclasses.fields(cls):
            section_cls = f.default_factory
            values = d.get(f.name, {})
            unknown = set(values) - {x.name for x in dataclasses.fields(section_cls)}
            if unknown:
                raise ValueError(f"unknown {f.name} config keys: {', '.join(sorted(unknown))}")
            sections[f.name] = section_cls(**values)
        return cls(**sections)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "Config":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (ValueError, TypeError, AttributeError) as exc:  # JSONDecodeError is a ValueError
            raise ValueError(f"{path}: not a valid run config ({exc})") from None

    def update(self, overrides: dict) -> "Config":
        """Set fields by their flat names (as the CLI gives them); an unknown name is an error."""
        for key, value in overrides.items():
            section = next((s for s in (self.model, self.data, self.train) if hasattr(s, key)), None)
            if section is None:
                raise ValueError(f"unknown config field {key!r}")
            setattr(section, key, value)
        return self


def add_config_flags(parser: argparse.ArgumentParser, defaults: "Config | None" = None) -> None:
    """One flag per config field (`lr_g` -> `--lr-g`); unset flags stay out of the parsed namespace so
    recipe defaults apply; --help shows the values of `defaults` (a recipe's config). Booleans: `--flip` /
    `--no-flip`."""
    defaults = defaults or Config()
    for section in (ModelConfig, DataConfig, TrainConfig):
        name = section.__name__.replace("Config", "").lower()
        group = parser.add_argument_group(name)
        for f in dataclasses.fields(section):
            flag = "--" + f.name.replace("_", "-")
            default = f.default
            help_text = (argparse.SUPPRESS if f.metadata["hidden"] else
                         f"{f.metadata['help']} (default: {getattr(getattr(defaults, name), f.name)})")
            if isinstance(default, bool):
                group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                                   default=argparse.SUPPRESS, help=help_text)
                continue
            kind = int if f.name == "max_steps" else {int: int, float: float}.get(type(default), str)
            flags = ("--model", flag) if f.name == "recipe" else (flag,)
            group.add_argument(*flags, dest=f.name, type=kind, choices=f.metadata["choices"],
                               default=argparse.SUPPRESS, help=help_text)
