"""Each recipe against its paper and official code: the nets layer by layer, the loss weights, the update
schedule (DiscoGAN's alternation and weight curriculum, DualGAN's n_critic on fresh batches)."""
import pytest
import torch
from torch import nn

from conftest import tiny_config
from translate.nets import build_discriminator, build_generator
from translate.recipes import RECIPES, recipe_config
from translate.trainer import Trainer


def layers(net: nn.Module) -> list[tuple]:
    """(kind, in, out, kernel, stride, padding, bias) of each conv; the class name of every other leaf module."""
    out = []
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            out.append((type(m).__name__, m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0],
                        m.padding[0], m.bias is not None))
        elif not list(m.children()):
            out.append(type(m).__name__)
    return out


def conv(c_in, c_out, stride=2, padding=1, kind="Conv2d", bias=False):
    return (kind, c_in, c_out, 4, stride, padding, bias)


def test_discogan_paper_nets_are_the_official_ones():
    """SKTBrain/DiscoGAN model.py, 64 px: Generator(extra_layers=False) and Discriminator."""
    cfg = recipe_config("discogan", paper_nets=True)
    bn, lrelu, relu = "BatchNorm2d", "LeakyReLU", "ReLU"
    assert layers(build_generator(cfg.model)) == [
        conv(3, 64), lrelu, conv(64, 128), bn, lrelu, conv(128, 256), bn, lrelu, conv(256, 512), bn, lrelu,
        conv(512, 256, kind="ConvTranspose2d"), bn, relu, conv(256, 128, kind="ConvTranspose2d"), bn, relu,
        conv(128, 64, kind="ConvTranspose2d"), bn, relu, conv(64, 3, kind="ConvTranspose2d"), "Tanh"]
    d = build_discriminator(cfg.model)
    assert layers(d) == [conv(3, 64), lrelu, conv(64, 128), bn, lrelu, conv(128, 256), bn, lrelu,
                         conv(256, 512), bn, lrelu, conv(512, 1, stride=1, padding=0)]
    x = torch.randn(2, 3, cfg.data.crop_size, cfg.data.crop_size)
    assert cfg.data.crop_size == 64 and d(x).shape == (2, 1, 1, 1)  # one logit an image
    # feature matching compares relu2, relu3, relu4 (the official discriminator's returned features)
    assert [f.shape[1:] for f in d.features(x)] == [(128, 16, 16), (256, 8, 8), (512, 4, 4), (1, 1, 1)]


def test_dualgan_paper_nets_are_the_official_ones():
    """duxingren14/DualGAN model.py: an 8-level U-Net with per-image affine norm ("batch_norm" there normalises
    over H, W only) and dropout 0.5 on the three innermost decoder levels; a 70x70 PatchGAN critic."""
    cfg = recipe_config("dualgan", paper_nets=True)
    g = build_generator(cfg.model)
    downs = [m for m in g.down.modules() if isinstance(m, nn.Conv2d)]
    ups = [m for m in g.up.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [m.out_channels for m in downs] == [64, 128, 256, 512, 512, 512, 512, 512]
    assert all(m.kernel_size == (4, 4) and m.stride == (2, 2) for m in downs + ups)
    assert [m.out_channels for m in ups] == [512, 512, 512, 512, 256, 128, 64, 3]
    assert [m.in_channels for m in ups] == [512, 1024, 1024, 1024, 1024, 512, 256, 128]  # skips concatenated
    norms = [m for m in g.modules() if isinstance(m, nn.InstanceNorm2d)]
    assert len(norms) == 6 + 7 and all(m.affine for m in norms)
    assert [sum(isinstance(m, nn.Dropout) and m.p == 0.5 for m in up.modules()) for up in g.up] == [1, 1, 1] + [0] * 5
    assert isinstance(g.up[-1][-1], nn.Tanh)
    inorm, lrelu = "InstanceNorm2d", "LeakyReLU"
    d = build_discriminator(cfg.model)
    assert layers(d) == [conv(3, 64, bias=True), lrelu, conv(64, 128, bias=True), inorm, lrelu,
                         conv(128, 256, bias=True), inorm, lrelu, conv(256, 512, stride=1, bias=True), inorm, lrelu,
                         conv(512, 1, stride=1, bias=True)]
    assert build_discriminator(cfg.model)(torch.randn(1, 3, 256, 256)).shape == (1, 1, 30, 30)


def test_loss_weights_and_optimizers_are_the_papers():
    t = recipe_config("cyclegan").train  # Zhu et al. 2017, Sec. 7.1 (Appendix)
    assert (t.adversarial, t.lambda_cycle, t.lambda_identity, t.pool_size, t.batch_size) == ("lsgan", 10, 0.5, 50, 1)
    assert (t.optimizer, t.lr_g, t.lr_d, t.beta1, t.lr_decay_start) == ("adam", 2e-4, 2e-4, 0.5, 0.5)
    t = recipe_config("discogan").train  # official image_translation.py
    assert (t.adversarial, t.recon_loss, t.lambda_adv, t.feature_matching) == ("vanilla", "l2", 0.1, 0.9)
    assert (t.recon_rate_start, t.recon_rate_steps, t.recon_rate, t.update_interval) == (0.01, 10000, 0.5, 3)
    assert (t.optimizer, t.lr_g, t.lr_d, t.beta1, t.beta2, t.weight_decay) == ("adam", 2e-4, 2e-4, 0.5, 0.999, 1e-5)
    assert (t.batch_size, t.pool_size, t.lambda_identity) == (64, 0, 0)
    t = recipe_config("dualgan").train  # Yi et al. 2017, Sec. 3 and 4
    assert (t.adversarial, t.recon_loss, t.optimizer, t.lr_g, t.lr_d) == ("wgan-clip", "l1", "rmsprop", 5e-5, 5e-5)
    assert 0.01 <= t.clip_value <= 0.1 and 2 <= t.d_steps <= 4 and 1 <= t.batch_size <= 4
    assert 100 <= t.lambda_cycle <= 1000 and t.pool_size == 0 and t.lambda_identity == 0
    t = recipe_config("cut").train  # Park et al. 2020, official code's --CUT_mode CUT / FastCUT
    assert (t.adversarial, t.lambda_adv, t.lambda_nce, t.nce_identity) == ("lsgan", 1, 1, True)
    assert (t.lambda_cycle, t.lambda_identity, t.pool_size, t.batch_size) == (0, 0, 0, 1)
    assert (t.optimizer, t.lr_g, t.lr_d, t.beta1, t.beta2) == ("adam", 2e-4, 2e-4, 0.5, 0.999)
    t = recipe_config("fastcut").train
    assert (t.lambda_nce, t.nce_identity, t.lambda_cycle) == (10, False, 0)
    assert all(r["deviations"] for r in RECIPES.values())


@pytest.mark.parametrize("recipe,terms", [("cut", 4), ("fastcut", 2)])
def test_cut_generator_loss_is_gan_plus_patchnce_and_never_runs_a_cycle(toy_root, tmp_path, recipe, terms):
    """G's loss is GAN + lambda_NCE x PatchNCE (CUT averages its identity term in); no reconstruction is computed:
    each generator runs once on its input (and, for CUT, once on the other domain's images), never on a fake."""
    trainer = Trainer(tiny_config(recipe, data=str(toy_root)), tmp_path / "run")
    calls = []
    trainer.g_ab.register_forward_hook(lambda m, args, out: calls.append("ab"))
    trainer.g_ba.register_forward_hook(lambda m, args, out: calls.append("ba"))
    g = torch.Generator().manual_seed(0)
    out = {k: float(v) for k, v in trainer.step(*(torch.rand(1, 3, 32, 32, generator=g) * 2 - 1
                                                   for _ in range(2))).items()}
    assert out["g_cycle"] == out["g_identity"] == 0
    assert out["g_total"] == pytest.approx(out["g_adv"] + out["g_nce"], rel=1e-6)
    assert len(calls) == terms  # CUT: G(a), G(b) twice over; FastCUT: G(a) and G(b) once


def _params(net: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in net.parameters()]


def _changed(before: list[torch.Tensor], net: nn.Module) -> bool:
    return any(not torch.equal(b, p) for b, p in zip(before, net.parameters()))


def test_discogan_alternates_updates_and_follows_its_weight_curriculum(toy_root, tmp_path):
    """Every 3rd step (from step 0) updates only the discriminators, the others only the generators; the
    generator loss is (1 - r)(0.1 GAN + 0.9 FM) + r x reconstruction with r 0.01, then 0.5 after the curriculum."""
    trainer = Trainer(tiny_config("discogan", data=str(toy_root), recon_rate_steps=4, max_steps=8),
                      tmp_path / "run")
    g = torch.Generator().manual_seed(0)
    batch = (torch.rand(4, 3, 32, 32, generator=g) * 2 - 1, torch.rand(4, 3, 32, 32, generator=g) * 2 - 1)
    for step in range(6):
        g_before, d_before = _params(trainer.g_ab), _params(trainer.d_a)
        out = {k: float(v) for k, v in trainer.step(*batch).items()}
        assert (_changed(d_before, trainer.d_a), _changed(g_before, trainer.g_ab)) == (step % 3 == 0, step % 3 != 0)
        r = 0.01 if step < 4 else 0.5
        expected = (1 - r) * (0.1 * out["g_adv"] + 0.9 * out["g_fm"]) + r * out["g_cycle"]
        assert out["g_total"] == pytest.approx(expected, rel=1e-5), step


def test_each_critic_update_gets_a_batch_of_its_own(toy_root, tmp_path):
    """n_critic = 2: the loader gives two batches a step; critic update k sees batch k's real images (and the
    generators train on the first), never the same batch twice."""
    trainer = Trainer(tiny_config("dualgan", data=str(toy_root), batch_size=2), tmp_path / "run")
    assert len(next(iter(trainer.batches(0, 1)))) == 4
    real_a = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    real_b = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    seen = []
    hook = trainer.d_a.register_forward_pre_hook(lambda m, inputs: seen.append(inputs[0].detach().clone()))
    try:
        trainer.step(real_a, real_b)
    finally:
        hook.remove()
    real_seen = [x for x in seen if any(torch.equal(x, c) for c in real_a.chunk(2))]
    assert len(real_seen) == 2 and torch.equal(real_seen[0], real_a[:2]) and torch.equal(real_seen[1], real_a[2:])
    assert max(p.abs().max().item() for p in trainer.d_a.parameters()) <= 0.01  # clipped after each update
