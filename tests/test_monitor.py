"""The training monitor: deliberately broken runs raise their finding, a healthy run raises none.

The runs are driven by `drive`, which feeds the Monitor exactly what the trainer passes at each log interval
(the interval's mean losses and the latest batch), so these tests exercise real training dynamics."""
import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms.functional import adjust_hue

from conftest import tiny_config
from translate.data import load_rgb, to_tensor
from translate.trainer import Trainer
from translate.monitor import Finding, Monitor, nyquist_peak
from translate.recipes import DEFAULT_RECIPE


def load_domain(folder: Path) -> torch.Tensor:
    return torch.stack([to_tensor(load_rgb(p)) for p in sorted(folder.glob("*.png"))])


def drive(trainer: Trainer, steps: int, every: int = 5) -> tuple[Monitor, list[tuple[int, Finding]]]:
    """Train `steps` steps on random batches of the run's data, calling the Monitor as the engine does."""
    root = Path(trainer.cfg.data.data)
    a, b = load_domain(root / "trainA"), load_domain(root / "trainB")
    g, n = torch.Generator().manual_seed(0), trainer.cfg.train.batch_size
    monitor, raised, sums = Monitor(trainer.cfg), [], {}
    for step in range(1, steps + 1):
        out = trainer.step(a[torch.randint(len(a), (n,), generator=g)], b[torch.randint(len(b), (n,), generator=g)])
        for key, value in out.items():
            sums[key] = sums.get(key, 0.0) + float(value)
        if step % every == 0:
            metrics = {"step": step, **{k: v / every for k, v in sums.items()},
                       "lr_g": trainer.opt_g.param_groups[0]["lr"], "lr_d": trainer.opt_d.param_groups[0]["lr"]}
            raised += [(step, f) for f in monitor.update(step, metrics, trainer.last_batch)]
            sums = {}
    return monitor, raised


def names(raised) -> set[str]:
    return {f.name for _, f in raised}


def test_healthy_tiny_run_raises_nothing(toy_root, tmp_path):
    monitor, raised = drive(Trainer(tiny_config(data=str(toy_root), max_steps=60), tmp_path), 60)
    assert raised == [] and monitor.active == {}
    assert monitor.ema["div/A->B"] > 0.5 and monitor.ema["conf"] < 0.3  # varied outputs, balanced D


def _force(generator: torch.nn.Module, forward) -> None:
    """Replace a generator's function, keeping its last conv's bias in the graph (the optimizer holds it)."""
    bias = generator[-2].bias
    generator.forward = lambda x: forward(x, bias)


def test_constant_generator_is_mode_collapse(toy_root, tmp_path):
    trainer = Trainer(tiny_config(data=str(toy_root), max_steps=30), tmp_path)
    for g in (trainer.g_ab, trainer.g_ba):  # one learnable colour, whatever the input
        _force(g, lambda x, bias: torch.tanh(bias).view(1, -1, 1, 1).expand(len(x), -1, *x.shape[2:]))
    monitor, raised = drive(trainer, 30)
    collapse = monitor.active["mode-collapse"]
    assert collapse.since_step == 5 and "0.00x as diverse" in collapse.evidence
    assert any("--lambda-cycle" in r for r in collapse.remedies)


def test_discriminator_100x_faster_than_generator_wins(toy_root, tmp_path):
    trainer = Trainer(tiny_config(data=str(toy_root), max_steps=30, lr_g=2e-5, lr_d=2e-3), tmp_path)
    monitor, raised = drive(trainer, 30)
    assert "d-wins" in names(raised)
    found = monitor.active["d-wins"]
    assert monitor.ema["d"] < 0.1 * 0.25 * 2  # D loss far below its chance level of 0.25
    assert "--lr-d 0.0005 (TTUR" in found.remedies[0] and "--spectral-norm" in found.remedies
    assert any("--g-steps 2" in r for r in found.remedies)


def test_zero_capacity_generator_is_identity_mapping(toy_root, tmp_path):
    trainer = Trainer(tiny_config(data=str(toy_root), max_steps=25), tmp_path)
    for g in (trainer.g_ab, trainer.g_ba):  # returns its input: nothing to learn with
        _force(g, lambda x, bias: x + 0 * bias.sum())
    monitor, raised = drive(trainer, 25)
    assert {"identity-mapping", "colour-drift"} <= names(raised)
    identity = monitor.active["identity-mapping"]
    assert identity.since_step == 5 and "0.00x what the domains' mean images require" in identity.evidence
    assert any("--ngf 16 or --n-blocks 5" in r for r in identity.remedies)


def smooth_gradients(root: Path, n: int = 24, size: int = 32) -> Path:
    """Smooth colour ramps (B: the inverted colours): flat areas, where checkerboards show."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for domain in "AB":
        (root / f"train{domain}").mkdir(parents=True)
        for i in range(n):
            ramp = ((xx * rng.uniform() + yy * rng.uniform()) / 2)[..., None]
            img = rng.uniform(0, 255, 3) * (1 - ramp) + rng.uniform(0, 255, 3) * ramp
            Image.fromarray((255 - img if domain == "B" else img).astype(np.uint8)).save(
                root / f"train{domain}" / f"{i:03d}.png")
    return root


@pytest.mark.parametrize("upsample", ["transpose", "resize-conv"])
def test_transposed_convs_show_checkerboards_resize_conv_does_not(tmp_path, upsample):
    data = smooth_gradients(tmp_path / "ramps")
    trainer = Trainer(tiny_config(data=str(data), max_steps=40, upsample=upsample), tmp_path / "run")
    monitor, raised = drive(trainer, 40)
    if upsample == "transpose":
        found = monitor.active["checkerboard"]
        assert found.remedies[0].startswith("--upsample resize-conv")
        assert monitor.ema["peak/A->B"] > 3
    else:
        assert "checkerboard" not in names(raised) and monitor.ema["peak/A->B"] < 1.5


# --- signatures driven with hand-made intervals ---------------------------------------------------------------------
def blobs(n: int, modes: list, seed: int, size: int = 16) -> torch.Tensor:
    """Images of one square at a random place, in [-1, 1]; each mode is a (background, square) colour pair."""
    g = torch.Generator().manual_seed(seed)
    x = torch.empty(n, 3, size, size)
    for img in x:
        background, square = (torch.tensor(c)[:, None, None] for c in modes[int(torch.randint(len(modes), (1,),
                                                                                             generator=g))])
        y0, x0 = torch.randint(0, size - 8, (2,), generator=g).tolist()
        img[:] = background
        img[:, y0:y0 + 8, x0:x0 + 8] = square
    return x


WHITE, GREY = [1, 1, 1], [-0.5, -0.5, -0.5]
RED, ORANGE, BLUE, CYAN = (WHITE, [1, -1, -1]), (WHITE, [1, 0, -1]), (WHITE, [-1, -1, 1]), (GREY, [-1, 1, 1])
BALANCED = {"g_adv": 0.5, "d_a": 0.25, "d_b": 0.25, "d_real": 0.55, "d_fake": 0.45}


def feed(monitor: Monitor, intervals: int, metrics=None, fake_b_colours=(BLUE, CYAN), first: int = 1):
    """Intervals of 8-image batches: A red/orange squares on white, B blue on white or cyan on grey; fakes are
    real-looking images of their domain."""
    raised = []
    for i in range(first, first + intervals):
        batch = {"real_a": blobs(8, [RED, ORANGE], 4 * i), "real_b": blobs(8, [BLUE, CYAN], 4 * i + 1),
                 "fake_a": blobs(8, [RED, ORANGE], 4 * i + 2), "fake_b": blobs(8, list(fake_b_colours), 4 * i + 3)}
        m = metrics(i) if callable(metrics) else (metrics or BALANCED)
        raised += monitor.update(10 * i, {"step": 10 * i, **m}, batch)
    return raised


def test_realistic_balanced_intervals_raise_nothing():
    monitor = Monitor(tiny_config())
    assert feed(monitor, 20) == [] and monitor.active == {}


def test_outputs_missing_one_mode_are_mode_dropping():
    monitor = Monitor(tiny_config())
    raised = {f.name: f for f in feed(monitor, 12, fake_b_colours=(BLUE,))}  # real-looking B, but never cyan
    assert "mode-dropping" in raised and "mode-collapse" not in raised  # (and their mean colour is off)
    assert "A->B" in raised["mode-dropping"].evidence


def test_g_wins_and_g_loss_collapse_and_clearing():
    monitor = Monitor(tiny_config())
    fooled = {"g_adv": 0.1, "d_a": 0.4, "d_b": 0.4, "d_real": 0.35, "d_fake": 0.65}
    raised = feed(monitor, 6, fooled)
    assert [f.name for f in raised] == ["g-wins"]
    assert "0.35 on real vs 0.65 on fake" in raised[0].evidence
    assert feed(monitor, 4, first=7) == [] and monitor.active == {}  # healthy again: cleared after patience

    monitor = Monitor(tiny_config())  # G loss from high to near zero while D's loss does not move
    raised = feed(monitor, 10, lambda i: {**BALANCED, "g_adv": 1.2 if i < 4 else 0.02, "d_a": 0.25, "d_b": 0.25})
    assert [f.name for f in raised] == ["g-loss-collapsed"]
    assert any("--n-blocks" in r for r in raised[0].remedies)


def test_wasserstein_critic_may_win_but_not_rank_fakes_higher():
    monitor = Monitor(tiny_config("dualgan"))
    assert feed(monitor, 8, {**BALANCED, "d_real": 5.0, "d_fake": -5.0}) == []
    raised = feed(monitor, 6, {**BALANCED, "d_real": -1.0, "d_fake": 1.0}, first=9)
    assert [f.name for f in raised] == ["g-wins"]


def test_non_finite_is_raised_at_once():
    monitor = Monitor(tiny_config())
    feed(monitor, 2)
    raised = feed(monitor, 1, {**BALANCED, "d_a": math.nan}, first=3)
    assert [f.name for f in raised] == ["non-finite"] and raised[0].since_step == 30
    assert "d_a" in raised[0].evidence and any("--lr-g" in r for r in raised[0].remedies)


def test_state_round_trips_through_weights_only_load():
    monitor = Monitor(tiny_config())
    feed(monitor, 5, fake_b_colours=(BLUE,))
    buffer = io.BytesIO()
    torch.save(monitor.state_dict(), buffer)
    resumed = Monitor(tiny_config())
    resumed.load_state_dict(torch.load(io.BytesIO(buffer.getvalue()), weights_only=True))
    rest = feed(monitor, 7, fake_b_colours=(BLUE,), first=6)
    assert [f.to_dict() for f in feed(resumed, 7, fake_b_colours=(BLUE,), first=6)] == [f.to_dict() for f in rest]
    assert {f.name for f in rest} == {"mode-dropping", "colour-drift"}  # never cyan: a hue missing, too


def test_nyquist_peak_sees_a_checkerboard():
    smooth = 0.5 * torch.cos(torch.arange(32) * 2 * math.pi / 32).expand(2, 3, 32, 32)
    checker = smooth + 0.1 * (-1) ** (torch.arange(32)[:, None] + torch.arange(32)[None, :])
    assert nyquist_peak(smooth)[0] < 1 < 5 < nyquist_peak(checker)[0]
    assert nyquist_peak(checker)[1] == pytest.approx(0.1, rel=0.01)  # RMS amplitude of the pattern


# --- signatures on real images: the shipped emoji-style set (Noto -> Twemoji, test pairs share names) ----------------
@pytest.fixture(scope="module")
def emoji() -> dict[str, torch.Tensor]:
    """The emoji-style folders at 32 px (as the tiny test nets see them)."""
    root = Path(__file__).parent.parent / "datasets" / "emoji-style"
    return {d: F.interpolate(load_domain(root / d), size=32, mode="area")
            for d in ("trainA", "trainB", "testA", "testB")}


@pytest.mark.parametrize("seed, degrees", [(0, 40), (1, -50), (2, 60)])
def test_hue_turned_outputs_are_colour_drift_true_translations_are_not(emoji, seed, degrees):
    healthy = Monitor(tiny_config())
    assert "colour-drift" not in names((0, f) for f in feed_emoji(healthy, emoji, seed, 9))
    drifted = Monitor(tiny_config())
    raised = {f.name: f for f in feed_emoji(drifted, emoji, seed, 9, lambda a, truth: hue_turned(truth, degrees))}
    assert "colour-drift" in raised and "hues are" in raised["colour-drift"].evidence
    assert healthy.ema["hue/A->B"] < 1 < drifted.ema["hue/A->B"]  # over 1: raised (the mean-colour check is not)


def test_identity_mapping_is_learning_nothing_not_staying_near_the_input_by_design(emoji):
    def run(fake_b):
        monitor = Monitor(tiny_config())
        return monitor, names((0, f) for f in feed_emoji(monitor, emoji, 0, 9, fake_b))

    nothing, raised = run(lambda a, truth: a)
    assert "identity-mapping" in raised and "0% of the way" in nothing.active["identity-mapping"].evidence
    assert not any("--r1-weight" in r for r in nothing.active["identity-mapping"].remedies)  # cyclegan: no R1
    with_r1 = Monitor(tiny_config(DEFAULT_RECIPE))  # R1 on: the first remedy is a critic that can see again
    feed_emoji(with_r1, emoji, 0, 9, lambda a, truth: a)
    assert with_r1.active["identity-mapping"].remedies[0].startswith("--r1-weight 0.03 ")
    g = torch.Generator().manual_seed(0)
    _, raised = run(lambda a, truth: (a + 0.02 * torch.randn(a.shape, generator=g)).clamp(-1, 1))
    assert "identity-mapping" in raised  # changes, but none towards the target
    residual, raised = run(lambda a, truth: a + 0.1 * (truth - a))  # a tenth of the way to the truth (measured,
    # seeds 0-2: change 0.18-0.21x the gap, 0.04-0.06 of the way; the noise above goes 0.016-0.019 of the way)
    assert residual.ema["change/A->B"] < Monitor.identity_ratio and "identity-mapping" not in raised


def hue_turned(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """An HSV hue rotation (greens turn yellow and brown at +40..60 degrees' worth of -hue, pinks orange)."""
    return adjust_hue(x.add(1).div(2), degrees / 360).mul(2).sub(1)


def feed_emoji(monitor: Monitor, emoji, seed: int, intervals: int, fake_b=lambda real_a, truth: truth,
               metrics=None):
    """Intervals as a trainer at batch 8 logs them. A->B turns held-out Noto emoji into their Twemoji twins (the
    true translation), or into `fake_b(real_a, truth)`; B->A turns training Twemoji into held-out Noto emoji."""
    g, raised = torch.Generator().manual_seed(seed), []
    for i in range(1, intervals + 1):
        pairs, others = (torch.randint(len(emoji["testA"]), (8,), generator=g) for _ in range(2))
        real_a, truth = emoji["testA"][pairs], emoji["testB"][pairs]
        batch = {"real_a": real_a, "fake_b": fake_b(real_a, truth), "fake_a": emoji["testA"][others],
                 "real_b": emoji["trainB"][torch.randint(len(emoji["trainB"]), (8,), generator=g)]}
        raised += monitor.update(10 * i, {"step": 10 * i, **(metrics(i) if metrics else BALANCED)}, batch)
    return raised


# --- the critic's Wasserstein estimate --------------------------------------------------------------------------------
# d_real - d_fake per 5-step interval of a real tiny DualGAN run (tiny_config("dualgan", seed=0) on the toy data,
# batch 4, 200 steps): the critic's estimate rises for the whole run.
RECORDED_RISING = [0.0028, 0.0075, 0.0105, 0.0128, 0.0168, 0.0166, 0.0126, 0.0163, 0.0135, 0.0163, 0.0199, 0.0201,
                   0.0191, 0.0209, 0.0196, 0.0202, 0.0191, 0.0208, 0.0252, 0.0209, 0.0229, 0.0275, 0.0253, 0.0212,
                   0.0270, 0.0223, 0.0255, 0.0276, 0.0241, 0.0300, 0.0296, 0.0301, 0.0359, 0.0356, 0.0340, 0.0267,
                   0.0367, 0.0445, 0.0434, 0.0467]


def critic_curve(shape: str, seed: int, n: int = 60, noise: float = 0.15) -> list[float]:
    """A critic's estimate per interval, with multiplicative noise: healthy runs rise while the critic learns (the
    first 8 intervals) and then fall or level off; broken ones keep rising."""
    t = torch.arange(n, dtype=torch.float64)
    level = {"falls": (t / 8).clamp(max=1) * (0.5 + 0.5 * torch.exp(-(t - 8).clamp(min=0) / 20)),
             "levels off": (t / 8).clamp(max=1) + 0.05,
             "rises": 0.2 + t / n}[shape]
    g = torch.Generator().manual_seed(seed)
    return (level * (1 + noise * torch.randn(n, generator=g, dtype=torch.float64))).tolist()


def rising_at(estimates: list[float]) -> list[int]:
    """The intervals at which the Wasserstein signature reads bad (the statistic alone: no images needed)."""
    monitor = Monitor(tiny_config("dualgan"))
    bad = []
    for i, w in enumerate(estimates, 1):
        monitor.estimates.append((10 * i, w))
        if monitor._rising()[0]:
            bad.append(i)
    return bad


@pytest.mark.parametrize("seed", range(5))
def test_a_critic_estimate_that_keeps_rising_is_flagged_one_that_falls_or_levels_off_is_not(seed):
    for shape in ("falls", "levels off"):
        assert rising_at(critic_curve(shape, seed)) == [], shape
    rising = rising_at(critic_curve("rises", seed))  # bad for `patience` intervals in a row: raised
    assert any(rising[k + 2] == rising[k] + 2 for k in range(len(rising) - 2))


def test_a_recorded_rising_estimate_raises_d_wins_with_its_numbers():
    monitor = Monitor(tiny_config("dualgan"))
    raised = feed(monitor, len(RECORDED_RISING), lambda i: {**BALANCED, "d_real": RECORDED_RISING[i - 1] / 2,
                                                            "d_fake": -RECORDED_RISING[i - 1] / 2})
    assert [f.name for f in raised] == ["d-wins"] and raised[0].since_step <= 10 * (Monitor.trend_intervals + 5)
    assert "Wasserstein estimate rose from" in raised[0].evidence
    assert not any("--r1-weight" in r or "--adversarial wgan-gp" in r for r in raised[0].remedies)
