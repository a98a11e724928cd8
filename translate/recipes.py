"""The three recipes of the family: defaults over the shared engine, with the paper each comes from.

A recipe is a dict of config overrides ("train" and "model" fields by flat name). `paper_nets` holds the nets the
paper used; `--paper-nets` switches to them. A new recipe is one entry here.
"""
from __future__ import annotations

from .config import Config

RECIPES: dict[str, dict] = {
    "cyclegan": {
        "paper": "Zhu et al. 2017, Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial "
                 "Networks (arXiv:1703.10593)",
        "overrides": dict(adversarial="lsgan", recon_loss="l1", lambda_cycle=10.0, lambda_identity=0.5,
                          optimizer="adam", lr_g=2e-4, lr_d=2e-4, beta1=0.5, beta2=0.999, weight_decay=0.0,
                          d_steps=1, pool_size=50, lr_decay_start=0.5),
        "paper_nets": dict(generator="resnet", n_blocks=9, upsample="transpose", discriminator="patchgan",
                           n_layers=3, g_norm="instance", d_norm="instance"),
    },
    "discogan": {
        "paper": "Kim et al. 2017, Learning to Discover Cross-Domain Relations with Generative Adversarial "
                 "Networks (arXiv:1703.05192)",
        "overrides": dict(adversarial="vanilla", recon_loss="l2", lambda_cycle=1.0, lambda_identity=0.0,
                          optimizer="adam", lr_g=2e-4, lr_d=2e-4, beta1=0.5, beta2=0.999, weight_decay=1e-5,
                          d_steps=1, pool_size=0, lr_decay_start=1.0),
        "paper_nets": dict(generator="encoder-decoder", unet_depth=4, g_norm="batch", discriminator="patchgan",
                           n_layers=4, d_norm="batch"),
    },
    "dualgan": {
        "paper": "Yi et al. 2017, DualGAN: Unsupervised Dual Learning for Image-to-Image Translation "
                 "(arXiv:1704.02510)",
        "overrides": dict(adversarial="wgan-gp", gp_weight=10.0, recon_loss="l1", lambda_cycle=100.0,
                          lambda_identity=0.0, optimizer="rmsprop", lr_g=5e-5, lr_d=5e-5, weight_decay=0.0,
                          d_steps=2, pool_size=0, lr_decay_start=1.0, d_norm="none"),
        "paper_nets": dict(generator="unet", unet_depth=8, g_norm="batch", dropout=0.5, discriminator="patchgan",
                           n_layers=3, d_norm="none"),
    },
}


def recipe_config(name: str, paper_nets: bool = False) -> Config:
    """The default Config of a recipe (optionally with the paper's own nets)."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose from {', '.join(RECIPES)}")
    recipe = RECIPES[name]
    cfg = Config().update({"recipe": name, **recipe["overrides"]})
    return cfg.update(recipe["paper_nets"]) if paper_nets else cfg
