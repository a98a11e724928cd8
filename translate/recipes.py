"""The recipes of the family: defaults over the shared engine, with the paper each comes from.

A recipe is a dict of config overrides ("train" and "model" fields by flat name). `paper_nets` holds the nets the
paper used; `--paper-nets` switches to them. `deviations` lists where the recipe knowingly differs from the
paper and its official code, and why (the README's recipe table shows them). A new recipe is one entry here.
"""
from __future__ import annotations

from .config import Config

RECIPES: dict[str, dict] = {
    "residual-cyclegan": {
        "paper": "CycleGAN's losses (Zhu et al. 2017, arXiv:1703.10593) with generators that learn a change to "
                 "their input, its last conv zero-initialised so training starts from the identity (as zero-init "
                 "residual branches, Goyal et al. 2017, arXiv:1706.02677); chosen on benchmarks/quality.py",
        "overrides": dict(adversarial="lsgan", recon_loss="l2", lambda_cycle=10.0, lambda_identity=0.1,
                          optimizer="adam", lr_g=2e-4, lr_d=2e-4, beta1=0.5, beta2=0.999, weight_decay=0.0,
                          d_steps=1, pool_size=50, lr_decay_start=0.5, residual=True, batch_size=4, ema=0.999,
                          d_norm="none", r1_weight=0.3, lambda_smooth=1.0, load_size=0),
        "paper_nets": {},
        "deviations": [
            ("generator output = input + a learned change (--residual)", "starts at 'input unchanged' instead of "
             "noise, so shapes and colours the domains share are kept from the first step (docs/quality.md)"),
            ("squared (L2) cycle loss, identity loss 0.1 (not 0.5)", "an L1 pull on a change that starts at zero "
             "pins it there (a lasso), and while both generators are near the identity the L1 cycle loss is such "
             "a pull: with CycleGAN's weights the residual generators learned almost no change; with no identity "
             "loss at all they left faint noise on backgrounds (docs/quality.md)"),
            ("batch 4, EMA 0.999 of the generators", "more images per wall-clock minute; the average is smoother "
             "than the last step's weights"),
            ("critics without instance norm, R1 penalty 0.3 on them (Mescheder et al. 2018, arXiv:1801.04406)",
             "instance norm hides an image's overall colour from the critic, and the generators drifted to ochre "
             "and brown: without it the hue distance to the truth fell from 38 to 17 degrees on line art -> colour "
             "and from 11 to 8 on Noto -> Twemoji. R1 keeps the unnormalised critic smooth; at 1 (the default "
             "until 2026-12-02) it left the critic unable to tell outputs from real images where the domains are "
             "close (critic loss at chance), so the generators changed almost nothing there (docs/quality.md)"),
            ("edge-aware smoothness 1 on each generator's change (--lambda-smooth; the edge-aware smoothness term "
             "of Godard et al. 2017, arXiv:1609.03677)", "the change is asked to be flat where the input is flat, "
             "free to jump at the input's edges: fills stop at outlines instead of spilling past them, and come "
             "out flat instead of blotchy. With R1 0.3 it beat the R1-1 default on all three sets of "
             "docs/quality.md"),
            ("images resized to the crop size, not zoomed past it first (--load-size 0; the reference resizes to "
             "286 and crops 256)", "the nets learn at the scale `eval` and the app translate at: zoomed by 9/8, "
             "every outline, serif and fill was learned larger than it is drawn at test time. Without the zoom "
             "the default beat its zoomed self on L1, PSNR and SSIM on glyphs and Noto -> Twemoji in "
             "docs/quality.md, and won twice and tied once in three pairs of runs on line art -> colour"),
        ],
    },
    "cyclegan": {
        "paper": "Zhu et al. 2017, Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial "
                 "Networks (arXiv:1703.10593)",
        "overrides": dict(adversarial="lsgan", recon_loss="l1", lambda_cycle=10.0, lambda_identity=0.5,
                          optimizer="adam", lr_g=2e-4, lr_d=2e-4, beta1=0.5, beta2=0.999, weight_decay=0.0,
                          d_steps=1, pool_size=50, lr_decay_start=0.5),
        "paper_nets": dict(generator="resnet", n_blocks=9, upsample="transpose", discriminator="patchgan",
                           n_layers=3, g_norm="instance", d_norm="instance"),
        "deviations": [
            ("default nets upsample by resize + conv", "no checkerboard artifacts; --paper-nets has the paper's "
             "3x3 transposed convs"),
        ],
    },
    "discogan": {
        "paper": "Kim et al. 2017, Learning to Discover Cross-Domain Relations with Generative Adversarial "
                 "Networks (arXiv:1703.05192)",
        # Official code (SKTBrain/DiscoGAN): G loss (0.1 GAN + 0.9 feature matching) x (1 - r) + r x MSE
        # reconstruction, r = 0.01 for 10,000 iterations then 0.5; D updated every 3rd iteration, G on the others.
        "overrides": dict(adversarial="vanilla", recon_loss="l2", lambda_cycle=1.0, lambda_identity=0.0,
                          lambda_adv=0.1, feature_matching=0.9, recon_rate=0.5, recon_rate_start=0.01,
                          recon_rate_steps=10000, update_interval=3, optimizer="adam", lr_g=2e-4, lr_d=2e-4,
                          beta1=0.5, beta2=0.999, weight_decay=1e-5, d_steps=1, g_steps=1, pool_size=0,
                          lr_decay_start=1.0, batch_size=64, load_size=64, crop_size=64, flip=False),
        "paper_nets": dict(generator="encoder-decoder", unet_depth=4, ngf=64, g_norm="batch", upsample="transpose",
                           discriminator="dcgan", n_layers=4, ndf=64, d_norm="batch"),
        "deviations": [
            ("default nets are the ResNet generator and a PatchGAN", "every recipe shares them, so recipes differ in "
             "their training only; --paper-nets has the paper's encoder-decoder and 5-conv discriminator"),
            ("Tanh output, images in [-1, 1]", "one convention for every net; the official generator ends in a "
             "Sigmoid on [0, 1] images"),
            ("nets initialised N(0, 0.02)", "the family's init; the official code keeps PyTorch's default init"),
        ],
    },
    "dualgan": {
        "paper": "Yi et al. 2017, DualGAN: Unsupervised Dual Learning for Image-to-Image Translation "
                 "(arXiv:1704.02510)",
        # Paper (Sec. 3-4): WGAN loss with weight clipping c in [0.01, 0.1], n_critic 2-4, RMSProp lr 5e-5,
        # batch 1-4, L1 reconstruction weights lambda_U, lambda_V in [100, 1000]; U-Net G, 70x70 PatchGAN critic.
        "overrides": dict(adversarial="wgan-clip", clip_value=0.01, gp_weight=10.0, recon_loss="l1",
                          lambda_cycle=100.0, lambda_identity=0.0, optimizer="rmsprop", lr_g=5e-5, lr_d=5e-5,
                          weight_decay=0.0, d_steps=2, g_steps=1, pool_size=0, lr_decay_start=1.0, batch_size=1),
        "paper_nets": dict(generator="unet", unet_depth=8, ngf=64, g_norm="instance-affine", dropout=0.5,
                           upsample="transpose", discriminator="patchgan", n_layers=3, ndf=64,
                           d_norm="instance-affine"),
        "deviations": [
            ("default nets are the ResNet generator and a PatchGAN with instance norm", "--paper-nets has the "
             "U-Net (depth 8, dropout 0.5) and the critic with per-image affine norm of the official code"),
            ("4x4 convs", "pix2pix's PyTorch U-Net and PatchGAN; the official TensorFlow code uses 5x5 'SAME' convs"),
            ("U-Net bottleneck not normalised", "as pix2pix: the official per-image norm on the 1x1 bottleneck "
             "sets it to a constant"),
            ("RMSProp smoothing 0.99", "PyTorch's default; TensorFlow's RMSProp in the official code uses 0.9"),
            ("--adversarial wgan-gp is an option, not the default", "the paper clips weights; WGAN-GP (with "
             "--gp-weight 10) is usually steadier"),
        ],
    },
    "cut": {
        "paper": "Park et al. 2020, Contrastive Learning for Unpaired Image-to-Image Translation (CUT, "
                 "arXiv:2007.15651)",
        # Official code (taesungp/contrastive-unpaired-translation), --CUT_mode CUT: LSGAN, lambda_GAN 1,
        # lambda_NCE 1 with the identity term (NCE on target images), tau 0.07, 256 patches, layers 0,4,8,12,16,
        # 2-layer MLP heads of 256, Adam 2e-4 (0.5, 0.999), batch 1, no image pool, no cycle.
        "overrides": dict(adversarial="lsgan", lambda_adv=1.0, lambda_nce=1.0, nce_identity=True, lambda_cycle=0.0,
                          lambda_identity=0.0, optimizer="adam", lr_g=2e-4, lr_d=2e-4, beta1=0.5, beta2=0.999,
                          weight_decay=0.0, d_steps=1, pool_size=0, lr_decay_start=0.5, batch_size=1),
        "paper_nets": dict(generator="resnet", n_blocks=9, discriminator="patchgan", n_layers=3, g_norm="instance",
                           d_norm="instance"),
        "deviations": [
            ("both directions are trained, each as its own CUT (no cycle between them)", "a model file holds "
             "A -> B and B -> A for every recipe, so apply, the app and eval work alike; CUT trains one "
             "direction, at about half the cost of a step"),
            ("stride-2 convs and resize + conv, not anti-aliased down- and upsampling", "the family's nets; "
             "resize + conv already avoids checkerboards"),
            ("the MLP heads share the generators' Adam", "the official code gives them their own Adam with the "
             "same settings, which updates them identically"),
        ],
    },
    "fastcut": {
        "paper": "Park et al. 2020 (arXiv:2007.15651), FastCUT: CUT without the identity term, NCE weight 10",
        "overrides": dict(adversarial="lsgan", lambda_adv=1.0, lambda_nce=10.0, nce_identity=False,
                          lambda_cycle=0.0, lambda_identity=0.0, optimizer="adam", lr_g=2e-4, lr_d=2e-4, beta1=0.5,
                          beta2=0.999, weight_decay=0.0, d_steps=1, pool_size=0, lr_decay_start=0.5,
                          batch_size=1),
        "paper_nets": dict(generator="resnet", n_blocks=9, discriminator="patchgan", n_layers=3, g_norm="instance",
                           d_norm="instance"),
        "deviations": [
            ("both directions are trained, no flip-equivariance augmentation", "as cut's first deviation; the "
             "official FastCUT also trains on flipped copies and asks the output to flip with the input"),
            ("stride-2 convs and resize + conv, not anti-aliased down- and upsampling", "as cut"),
        ],
    },
}


DEFAULT_RECIPE = "residual-cyclegan"  # what `translate train` uses without --model


def recipe_config(name: str, paper_nets: bool = False) -> Config:
    """The default Config of a recipe (optionally with the paper's own nets)."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose from {', '.join(RECIPES)}")
    recipe = RECIPES[name]
    cfg = Config().update({"recipe": name, **recipe["overrides"]})
    return cfg.update(recipe["paper_nets"]) if paper_nets else cfg


def recipe_table() -> str:
    """What each recipe sets: every config value that is not the same in all of them, then their papers."""
    configs = {name: recipe_config(name).to_dict() for name in RECIPES}
    paper = {name: recipe_config(name, paper_nets=True).to_dict() for name in RECIPES}
    rows = [["flag", *RECIPES]]
    for section, fields in configs["cyclegan"].items():
        for key in fields:
            values = [configs[name][section][key] for name in RECIPES]
            if key != "recipe" and len({repr(v) for v in values}) > 1:
                rows.append([f"--{key.replace('_', '-')}", *map(str, values)])
    for section, fields in paper["cyclegan"].items():
        for key in fields:
            values = [paper[name][section][key] for name in RECIPES]
            if any(v != configs[name][section][key] for name, v in zip(RECIPES, values)):
                rows.append([f"--paper-nets: --{key.replace('_', '-')}", *map(str, values)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines += ["", "Every other flag has the same default in all recipes (`translate train --help`); any value can",
              "be overridden. `translate train --model NAME --help` lists every default of one recipe.", ""]
    lines += [f"{name}: {recipe['paper']}" for name, recipe in RECIPES.items()]
    return "\n".join(lines)


def add_parser(sub) -> None:
    """`translate recipes`: the table of what each recipe sets."""
    p = sub.add_parser("recipes", help="compare the recipes: what each --model sets",
                       description=recipe_table.__doc__)
    p.set_defaults(func=lambda args: print(recipe_table()) or 0)
