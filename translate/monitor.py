"""Training health: the known GAN failure signatures, detected while training, each with what was seen, since
which step and what to try.

The trainer calls `Monitor.update(step, metrics, batch)` at every log interval with the logged losses and the
latest batch (real_a, real_b, fake_a, fake_b in [-1, 1]). Every statistic is cheap: 8x8 thumbnails, batch means
and one small FFT. Each is smoothed over intervals (EMA); a signature is raised only when it has held for
`patience` intervals and is no better than `patience` intervals before (so a run that is still improving stays
quiet), and cleared when it has been absent for `patience` intervals. Non-finite values are raised at once.
"""
from __future__ import annotations

import contextlib
import math
from collections import deque
from dataclasses import asdict, dataclass

import torch

from .losses import WASSERSTEIN
from .metrics import (hue_distance, hue_distances, hue_histogram, mean_pairwise_distance, pixel_features,
                      precision_recall)

SIGNATURES = {
    "non-finite": "a loss or a generated image holds NaN or infinity",
    "mode-collapse": "outputs are nearly identical whatever the input",
    "mode-dropping": "outputs look real, but part of the target domain never appears among them",
    "d-wins": "the discriminator tells real from fake with ease; the generator gets little useful gradient",
    "g-wins": "the discriminator rates fakes above real images: it has stopped doing its job",
    "g-loss-collapsed": "the generator's adversarial loss fell from high to near zero while the discriminator's "
                        "loss stayed flat",
    "checkerboard": "outputs carry a 2-pixel periodic pattern (uneven overlap of transposed convolutions)",
    "colour-drift": "outputs' colours are off from the target domain's: their average, or their hues",
    "identity-mapping": "the generator returns its input almost unchanged although the domains differ",
}
# Names of the 30-degree hue sectors of `hue_histogram`'s circle (red at 0, yellow at 60, green at 120, ...).
HUES = ("red", "orange", "yellow", "yellow-green", "green", "teal", "cyan", "azure", "blue", "violet", "magenta",
        "pink")
DIRECTIONS = {"A->B": ("real_a", "fake_b", "real_b"), "B->A": ("real_b", "fake_a", "real_a")}
# Chance-level (balanced) loss per discriminator and per generator, and how D's mean outputs read, per objective.
BALANCE = {"lsgan": (0.25, 0.25), "vanilla": (math.log(2), math.log(2)), "hinge": (2.0, 0.0)}


@dataclass
class Finding:
    name: str
    since_step: int
    evidence: str
    remedies: list[str]

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.name} since step {self.since_step}: {self.evidence}"


def nyquist_peak(x: torch.Tensor) -> tuple[float, float]:
    """(peak, amplitude) of the 2-pixel period in a batch's grey levels: peak = mean power on the Nyquist lines
    (period 2 along y or x) over mean power in the band just below them (a smooth spectrum gives about 1 or
    less, a checkerboard a spike); amplitude = RMS of that component, in [-1, 1] units."""
    g = x.mean(1)
    g = g - g.mean((1, 2), keepdim=True)
    power = torch.fft.fft2(g).abs().square().mean(0)
    fy = torch.fft.fftfreq(g.shape[1], device=g.device).abs()[:, None].expand_as(power)
    fx = torch.fft.fftfreq(g.shape[2], device=g.device).abs()[None, :].expand_as(power)
    nyquist = (fy == 0.5) | (fx == 0.5)
    band = ((fy >= 0.3) | (fx >= 0.3)) & ~nyquist
    amplitude = float(power[nyquist].sum().sqrt()) / power.numel()  # Parseval
    return float(power[nyquist].mean() / power[band].mean().clamp_min(1e-12)), amplitude


def uncovered(real: torch.Tensor, fake: torch.Tensor, clusters: int = 8, seeds: int = 4) -> float:
    """Share of real images in k-means clusters (of the real images) that receive under a quarter of their share
    of fakes, each fake assigned to its nearest cluster centre; averaged over a few clusterings."""
    from scipy.cluster.vq import kmeans2
    shares = []
    for seed in range(seeds):
        centres, labels = kmeans2(real.double().numpy(), clusters, seed=seed, minit="++")
        real_share = torch.bincount(torch.from_numpy(labels).long(), minlength=clusters).double() / len(real)
        nearest = torch.cdist(fake.double(), torch.from_numpy(centres)).argmin(1)
        fake_share = torch.bincount(nearest, minlength=clusters).double() / len(fake)
        shares.append(float(real_share[fake_share < real_share / 4].sum()))
    return sum(shares) / seeds


@contextlib.contextmanager
def _one_thread():
    """Small CPU ops run far slower split over busy cores than on one; the monitor's are all small."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class Monitor:
    """Watches a run; `update()` returns the findings newly raised, `active` holds the current ones by name."""

    smoothing = 0.5      # EMA weight of the newest interval
    patience = 3         # intervals a signature must hold to be raised (and be gone to be cleared)
    keep = 64            # thumbnails kept per image role, for diversity and coverage
    # Thresholds, each between what healthy and broken tiny runs showed (tests/test_monitor.py): healthy runs keep
    # diversity >= 0.3, confidence <= 0.2, Nyquist peak <= 0.9, identity ratio >= 1.4, empty-cluster share <= 0.31
    # (and falling); the broken ones reach 0.0, 0.93, 4-7, 0.0 and 0.45-0.78.
    collapse_ratio = 0.2         # output diversity / real target diversity
    dropping_share = 0.35        # share of real images in clusters the outputs leave (nearly) empty ...
    dropping_precision = 0.7     # ... while this share of outputs looks real (k-NN precision)
    d_wins_confidence = 0.6      # D's normalised real-vs-fake separation (0 = balance, 1 = certain)
    g_wins_confidence = -0.1     # D rates fakes above reals by this much ...
    g_wins_d_loss = 1.2          # ... while its loss is above this multiple of chance level
    g_collapsed = 0.2            # G adversarial loss below this fraction of chance level (after >= chance)
    flat = 0.1                   # D loss change under this fraction of chance level over the patience window
    checker_peak = 2.5           # Nyquist peak of fakes over that of reals (or 1, whichever is larger) ...
    checker_levels = 0.015       # ... with an amplitude above the reals' by this ([-1, 1] units: 2 grey levels)
    colour_levels = 0.2          # mean-colour offset, [-1, 1] units (0.2 = 25 levels of 255) ...
    colour_spread = 1.0          # ... and the spread of real images' mean colours (a batch mean varies far less)
    trend_intervals = 30         # a Wasserstein estimate is judged once this many intervals are in: over the
    trend_tau = 0.5              # latter half of the run, rising with Kendall's tau above this ...
    trend_rise = 0.2             # ... by this fraction of its mean size, first third to last third (measured:
    # noisy curves that level off or fall reach tau <= 0.37; steadily rising ones 0.58-0.81, a tiny DualGAN 0.56-0.68)
    hue_images = 32              # outputs whose hues are pooled before they are compared with the target's ...
    hue_degrees = 15.0           # ... raised above this distance (earth mover's, degrees of hue) and above ...
    hue_chance = 0.99            # ... this quantile of the distances of as many real target images (resampled)
    hue_keep = 256               # real images' hue histograms kept per domain for that resampling
    identity_ratio = 0.25        # input-to-output change over the change the domains' means require ...
    identity_toward = 0.025      # ... and the share of the way towards the target domain's mean that it goes
    # (emoji-style, 9 intervals at batch 8: outputs a tenth of the way from input to truth change 0.18-0.21x the
    # domain gap and go 0.04-0.06 of the way; input plus 2% noise goes 0.016-0.019 of the way)
    min_domain_gap = 0.05        # domains whose mean thumbnails differ less than this may map to themselves

    def __init__(self, cfg):
        self.cfg = cfg
        self.kind = cfg.train.adversarial
        self.ema: dict[str, float] = {}
        self.trail: dict[str, deque] = {}
        self.real: dict[str, tuple] = {}        # (sum, count) of statistics of real images
        self.thumbs: dict[str, deque] = {role: deque(maxlen=self.keep) for role in
                                         ("real_a", "real_b", "fake_a", "fake_b")}
        self.hues: dict[str, deque] = {role: deque(maxlen=self.hue_keep if role.startswith("real") else
                                                   self.hue_images) for role in self.thumbs}
        self.hue_seen: dict[str, tuple] = {}    # per direction: (distance, chance-level distance) this interval
        self.runs: dict[str, dict] = {}
        self.active: dict[str, Finding] = {}
        self.g_peak = 0.0
        self.estimates: list[tuple[int, float]] = []  # (step, the critic's estimate) per interval, Wasserstein only

    # --- statistics -----------------------------------------------------------------------------------------------
    def _smooth(self, key: str, value: float) -> None:
        old = self.ema.get(key)
        self.ema[key] = value if old is None else (1 - self.smoothing) * old + self.smoothing * value
        self.trail.setdefault(key, deque(maxlen=self.patience + 1)).append(self.ema[key])

    def _running(self, key: str, value: torch.Tensor, n: int = 1) -> None:
        """Accumulate a statistic of real images over the whole run (their distribution does not move)."""
        total, count = self.real.get(key, (0.0, 0))
        self.real[key] = (total + value.double() * n, count + n)

    def _real(self, key: str) -> torch.Tensor:
        total, count = self.real[key]
        return total / count

    def _improving(self, key: str, better: str) -> bool:
        """True while the trail is too short to judge, or the EMA moved towards healthy by over 10% in the
        last `patience` intervals."""
        trail = self.trail.get(key, ())
        if len(trail) <= self.patience:
            return True
        now, then = trail[-1], trail[0]
        margin = 0.1 * abs(then) + 1e-3
        return now < then - margin if better == "down" else now > then + margin

    def _observe_losses(self, m: dict) -> None:
        d_real, d_fake = m["d_real"], m["d_fake"]
        if self.kind == "lsgan":
            conf = (d_real - d_fake) / max(1e-6, 1 - self.cfg.train.label_smoothing)
        elif self.kind == "vanilla":
            conf = (math.tanh(d_real / 2) - math.tanh(d_fake / 2)) / 2  # difference of sigmoids, overflow-free
        elif self.kind == "hinge":  # D's loss reaches 0 at a real-fake gap of 2
            conf = (d_real - d_fake) / 2
        else:  # Wasserstein: the critic's estimate of the distance
            conf = d_real - d_fake
        for key, value in (("conf", conf), ("d", (m["d_a"] + m["d_b"]) / 2), ("g", m["g_adv"] / 2),
                           ("d_real", d_real), ("d_fake", d_fake)):
            self._smooth(key, value)
        if self.kind in BALANCE and BALANCE[self.kind][1] > 0:
            self.g_peak = max(self.g_peak, self.ema["g"] / BALANCE[self.kind][1])

    def _observe_batch(self, batch: dict[str, torch.Tensor]) -> None:
        thumbs = {role: pixel_features(images) for role, images in batch.items()}
        for role, t in thumbs.items():
            self.thumbs[role].extend(t)
        colourful = self.cfg.model.channels == 3
        hues = {role: torch.stack([hue_histogram(image[None]) for image in images]) for role, images in batch.items()
                if colourful}
        for role, h in hues.items():
            self.hues[role].extend(h)
        n = max(8, len(batch["fake_b"]))  # small batches: diversity over the last few intervals' images
        recent = {role: torch.stack(list(q)[-n:]) for role, q in self.thumbs.items()}
        for role in ("real_a", "real_b"):
            colours = batch[role].mean((2, 3))
            self._running(f"colour/{role}", colours.mean(0), len(colours))
            self._running(f"colour2/{role}", colours.square().mean(0), len(colours))
            self._running(f"thumb/{role}", thumbs[role].mean(0), len(colours))
            if colourful:
                self._running(f"hue/{role}", hues[role].mean(0), len(colours))
            self._running(f"div/{role}", torch.tensor(mean_pairwise_distance(recent[role])))
            self._running(f"nyquist/{role}", torch.tensor(nyquist_peak(batch[role])))
        for name, (src, fake, tgt) in DIRECTIONS.items():
            self._smooth(f"div/{name}", mean_pairwise_distance(recent[fake]) / max(float(self._real(f"div/{tgt}")),
                                                                                   1e-6))
            peak, amp = nyquist_peak(batch[fake])
            self._smooth(f"peak/{name}", peak / max(float(self._real(f"nyquist/{tgt}")[0]), 1.0))
            self._smooth(f"amp/{name}", amp)
            for c, value in enumerate(batch[fake].mean((0, 2, 3)).tolist()):
                self._smooth(f"colour/{name}/{c}", value)
            change = thumbs[fake] - thumbs[src]
            self._smooth(f"change/{name}", float(change.square().mean(1).sqrt().mean()) / max(self._gap(name), 1e-6))
            gap = (self._real(f"thumb/{tgt}") - self._real(f"thumb/{src}")).float()
            self._smooth(f"toward/{name}", float((change @ gap).mean() / gap.square().sum().clamp_min(1e-12)))
            self._observe_hues(name)
            if len(self.thumbs[fake]) >= self.keep // 2:
                reals, fakes = torch.stack(list(self.thumbs[tgt])), torch.stack(list(self.thumbs[fake]))
                self._smooth(f"uncovered/{name}", uncovered(reals, fakes))
                self._smooth(f"precision/{name}", precision_recall(reals, fakes)[0])

    def _observe_hues(self, name: str) -> None:
        """Hue distance of the last `hue_images` outputs from the real target domain, over the distance that
        as many real target images reach by chance (a quantile over resamples of the ones kept)."""
        _, fake, tgt = DIRECTIONS[name]
        self.hue_seen.pop(name, None)
        if len(self.hues[fake]) < self.hue_images:
            return
        real = self._real(f"hue/{tgt}")
        distance = hue_distance(torch.stack(list(self.hues[fake])).sum(0), real)
        kept = torch.stack(list(self.hues[tgt]))
        draws = torch.randint(len(kept), (200, self.hue_images), generator=torch.Generator().manual_seed(0))
        chance = hue_distances(kept[draws].sum(1), real).nanquantile(self.hue_chance)
        if math.isfinite(distance) and math.isfinite(chance):  # NaN: no colour in the outputs or the domain
            self.hue_seen[name] = (distance, float(chance))
            self._smooth(f"hue/{name}", distance / max(self.hue_degrees, float(chance)))

    def _gap(self, name: str) -> float:
        """RMS difference of the two domains' mean thumbnails: by Jensen's inequality, the least average change
        a translation into the target domain must make."""
        src, _, tgt = DIRECTIONS[name]
        return float((self._real(f"thumb/{src}") - self._real(f"thumb/{tgt}")).square().mean().sqrt())

    # --- signatures: each returns (bad now, no better than `patience` intervals ago, evidence) ----------------------
    def _collapse(self):
        name = min(DIRECTIONS, key=lambda k: self.ema[f"div/{k}"])
        ratio = self.ema[f"div/{name}"]
        return (ratio < self.collapse_ratio, not self._improving(f"div/{name}", "up"),
                f"{name} outputs are {ratio:.2f}x as diverse as real target images (mean pairwise distance of "
                f"8x8 thumbnails; 1 = as varied as the real domain)")

    def _dropping(self):
        if "uncovered/A->B" not in self.ema:
            return False, False, ""
        name = max(DIRECTIONS, key=lambda k: self.ema[f"uncovered/{k}"])
        share, precision = self.ema[f"uncovered/{name}"], self.ema[f"precision/{name}"]
        collapsed = self.ema[f"div/{name}"] < self.collapse_ratio  # collapse is the stronger statement
        return (share > self.dropping_share and precision >= self.dropping_precision and not collapsed,
                not self._improving(f"uncovered/{name}", "down"),
                f"{name}: {precision:.0%} of outputs fall among real target images (k-NN precision of 8x8 "
                f"thumbnails), yet {share:.0%} of real target images lie in regions (k-means clusters) that receive "
                "under a quarter of their share of outputs: part of the target domain is not produced")

    def _balance_text(self) -> str:
        d_eq, g_eq = BALANCE[self.kind]
        return (f"mean D output {self.ema['d_real']:.3g} on real vs {self.ema['d_fake']:.3g} on fake; D loss "
                f"{self.ema['d']:.3g} (chance level {d_eq:.3g}), G adversarial loss {self.ema['g']:.3g} per "
                f"generator (chance level {g_eq:.3g})")

    def _d_wins(self):
        if self.kind in WASSERSTEIN:  # a critic trained to optimality is the point; one ever further ahead is not
            return self._rising()
        conf = self.ema["conf"]
        return (conf > self.d_wins_confidence, not self._improving("conf", "down"),
                f"D separates real from fake with confidence {conf:.2f} (0 = balance, 1 = certain): "
                + self._balance_text())

    def _rising(self):
        """The critic's Wasserstein estimate rising over the latter half of the run: a healthy run's rises while the
        critic learns, then falls as the generator catches up."""
        if len(self.estimates) < self.trend_intervals:
            return False, False, ""
        from scipy.stats import kendalltau
        steps, values = zip(*self.estimates[len(self.estimates) // 2:])
        third = max(1, len(values) // 3)
        first, last = sum(values[:third]) / third, sum(values[-third:]) / third
        rise = (last - first) / max(sum(abs(v) for v in values) / len(values), 1e-12)
        tau = float(kendalltau(range(len(values)), values).statistic)
        return (tau > self.trend_tau and rise > self.trend_rise, True,
                f"the critic's Wasserstein estimate rose from {first:.3g} to {last:.3g} between steps {steps[0]} and "
                f"{steps[-1]} (Kendall's tau {tau:.2f}, +{rise:.0%} of its size): the critic wins ever more clearly, "
                "where a healthy run's estimate falls as the generator improves")

    def _g_wins(self):
        conf = self.ema["conf"]
        if self.kind in WASSERSTEIN:
            return (conf < 0, not self._improving("conf", "up"),
                    f"the critic scores fakes above real images (estimate {conf:.3g}, should be positive)")
        d_eq = BALANCE[self.kind][0]
        return (conf < self.g_wins_confidence and self.ema["d"] > self.g_wins_d_loss * d_eq,
                not self._improving("conf", "up"),
                f"D rates fakes above real images (confidence {conf:.2f}): " + self._balance_text())

    def _g_collapsed(self):
        if self.kind not in BALANCE or BALANCE[self.kind][1] == 0:
            return False, False, ""
        d_eq, g_eq = BALANCE[self.kind]
        g = self.ema["g"] / g_eq
        d_trail = self.trail["d"]
        flat = len(d_trail) > self.patience and abs(d_trail[-1] - d_trail[0]) < self.flat * d_eq
        return (g < self.g_collapsed and self.g_peak >= 1.0, flat,
                f"G adversarial loss fell to {g:.2f}x chance level (peak {self.g_peak:.2f}x) while the D loss "
                f"stayed at {self.ema['d']:.3g} (moved {abs(d_trail[-1] - d_trail[0]):.2g} over the last "
                f"{self.patience} intervals)")

    def _checkerboard(self):
        name = max(DIRECTIONS, key=lambda k: self.ema[f"peak/{k}"])
        peak, amp = self.ema[f"peak/{name}"], self.ema[f"amp/{name}"]
        peak_real, amp_real = self._real(f"nyquist/{DIRECTIONS[name][2]}").tolist()
        return (peak > self.checker_peak and amp - amp_real > self.checker_levels,
                not self._improving(f"peak/{name}", "down"),
                f"{name} outputs: power at the 2-pixel period is {peak * max(peak_real, 1):.1f}x that of the "
                f"neighbouring frequencies (real images: {peak_real:.1f}x); its amplitude is {amp * 127.5:.1f} "
                f"grey levels (real images: {amp_real * 127.5:.1f})")

    def _colour(self):
        candidates = []  # (score: over 1 is bad, the EMA key, which way is better, evidence)
        for name, (_, _, tgt) in DIRECTIONS.items():
            mean = self._real(f"colour/{tgt}")
            spread = (self._real(f"colour2/{tgt}") - mean.square()).clamp_min(0).sqrt().tolist()
            for c, real in enumerate(mean.tolist()):
                offset = self.ema[f"colour/{name}/{c}"] - real
                bar = max(self.colour_levels, self.colour_spread * spread[c])
                channel = "RGB"[c] if self.cfg.model.channels == 3 else f"channel {c}"
                candidates.append((abs(offset) / bar, f"colour/{name}/{c}", "down" if offset > 0 else "up",
                                   f"{name} outputs' mean {channel} is {offset * 127.5:+.0f} levels (of 255) off "
                                   f"the real target domain's, whose images' means vary by {spread[c] * 127.5:.0f} "
                                   "levels"))
            if name in self.hue_seen:
                candidates.append((self.ema[f"hue/{name}"], f"hue/{name}", "down", self._hue_evidence(name)))
        score, key, better, evidence = max(candidates, key=lambda c: c[0])
        return score > 1, not self._improving(key, better), evidence

    def _hue_evidence(self, name: str) -> str:
        _, fake, tgt = DIRECTIONS[name]
        distance, chance = self.hue_seen[name]

        def sectors(h: torch.Tensor) -> torch.Tensor:  # share of the colour in each named 30-degree sector
            return (h / h.sum()).roll(len(h) // 24).view(len(HUES), -1).sum(1)

        fakes, reals = sectors(torch.stack(list(self.hues[fake])).sum(0)), sectors(self._real(f"hue/{tgt}"))
        lost, gained = int((fakes - reals).argmin()), int((fakes - reals).argmax())
        return (f"{name} outputs' hues are {distance:.0f} degrees from the real target domain's (earth mover's "
                f"distance of chroma-weighted hue histograms, last {len(self.hues[fake])} outputs; as many real "
                f"images stray up to {chance:.0f}): {HUES[lost]} is {reals[lost]:.0%} of the real images' colour but "
                f"{fakes[lost]:.0%} of the outputs', {HUES[gained]} {reals[gained]:.0%} but {fakes[gained]:.0%}")

    def _identity(self):
        """Outputs near their inputs are by design for a generator that starts as the identity; it is a finding
        only when they do not move towards the target domain either."""
        name = min(DIRECTIONS, key=lambda k: (self.ema[f"toward/{k}"] >= self.identity_toward, self.ema[f"change/{k}"]))
        ratio, toward, gap = self.ema[f"change/{name}"], self.ema[f"toward/{name}"], self._gap(name)
        return (ratio < self.identity_ratio and toward < self.identity_toward and gap > self.min_domain_gap,
                not self._improving(f"change/{name}", "up"),
                f"{name} changes its input by {ratio:.2f}x what the domains' mean images require (their 8x8 "
                f"thumbnails differ by {gap:.2f} RMS), and {toward:.0%} of the way from the source domain's mean "
                "image towards the target's")

    # --- remedies -------------------------------------------------------------------------------------------------
    def remedies(self, name: str) -> list[str]:
        t, m = self.cfg.train, self.cfg.model
        capacity = f"--ngf {m.ngf * 2}" + (f" or --n-blocks {m.n_blocks + 3}" if m.generator == "resnet" else "") \
            + " (a stronger generator)"
        wgan = [] if t.adversarial in WASSERSTEIN else ["--adversarial wgan-gp (gradients stay useful when the "
                                                        "critic wins; its estimate tracks progress)"]
        pool = [] if t.pool_size else ["--pool-size 50 (show D a history of fakes)"]
        if name == "non-finite":
            return [f"--lr-g {t.lr_g / 2:.2g} --lr-d {t.lr_d / 2:.2g} (half the learning rates)",
                    *([] if m.spectral_norm else ["--spectral-norm"]), "--adversarial lsgan (bounded targets)",
                    "--amp off (if it happens under bf16)"]
        if name in ("mode-collapse", "mode-dropping"):
            return [f"--lambda-cycle {t.lambda_cycle * 2:g} (the cycle loss ties each output to its input)",
                    *pool, "--feature-matching 1 (match real feature statistics, Salimans et al. 2016)", *wgan,
                    f"--lr-g {t.lr_g / 2:.2g} --ema 0.999"]
        if name == "d-wins":
            return [f"--lr-d {t.lr_d / 4:.2g} (TTUR: a slower discriminator; G has {t.lr_g:.2g})",
                    f"--d-steps 1 --g-steps {t.g_steps + 1}",
                    *([] if m.spectral_norm else ["--spectral-norm"]),
                    *(["--label-smoothing 0.1"] if t.adversarial in ("lsgan", "vanilla") and not t.label_smoothing
                      else []),
                    *(["--r1-weight 1 (R1 penalty keeps D smooth)"] if t.adversarial not in WASSERSTEIN else []),
                    *wgan, capacity + " if its outputs barely change"]
        if name == "g-wins":
            return [f"--d-steps {t.d_steps + 1}", f"--lr-d {t.lr_d * 2:.2g} (TTUR: a faster discriminator)",
                    f"--ndf {m.ndf * 2} or --n-layers {m.n_layers + 1} (a stronger discriminator)",
                    *(["--label-smoothing 0"] if t.label_smoothing else []), *pool]
        if name == "g-loss-collapsed":
            looser = [flag for flag, on in (("--no-spectral-norm", m.spectral_norm),
                                            (f"--r1-weight {t.r1_weight / 4:g}", t.r1_weight),
                                            (f"--gp-weight {t.gp_weight / 4:g}", t.adversarial == "wgan-gp")) if on]
            return [f"--lr-d {t.lr_d * 2:.2g} --d-steps {t.d_steps + 1} (the discriminator may have stopped "
                    "learning)", *([" ".join(looser) + " (a less regularised discriminator)"] if looser else []),
                    capacity + " (the generator may be too weak)"]
        if name == "checkerboard":
            return ["--upsample resize-conv (nearest resize + conv: no uneven overlap, Odena et al. 2016)",
                    "--upsample antialiased (keeps transposed convs, blurs after them)"]
        if name == "colour-drift":
            return [f"--lambda-identity {max(0.5, t.lambda_identity * 2):g} (the identity loss keeps colour "
                    "composition, Zhu et al. 2017)", f"--lambda-cycle {t.lambda_cycle * 2:g}"]
        if name == "identity-mapping":
            return [*([f"--r1-weight {t.r1_weight / 10:g} (an R1 penalty this strong can leave the critic unable "
                        "to tell outputs from real images)"] if t.r1_weight and t.adversarial not in WASSERSTEIN
                      else []),
                    *([f"--lambda-identity {t.lambda_identity / 4:g}"] if t.lambda_identity else []),
                    f"--lambda-cycle {t.lambda_cycle / 2:g} (a weaker pull back to the input)",
                    f"--lr-g {t.lr_g * 2:.2g}", capacity]
        raise KeyError(name)

    # --- the update -----------------------------------------------------------------------------------------------
    def update(self, step: int, metrics: dict, batch: dict[str, torch.Tensor]) -> list[Finding]:
        """Observe one log interval; returns the findings raised at this step."""
        batch = {k: batch[k].detach().float().cpu() for k in ("real_a", "real_b", "fake_a", "fake_b")}
        with _one_thread():
            return self._update(step, metrics, batch)

    def _update(self, step: int, metrics: dict, batch: dict[str, torch.Tensor]) -> list[Finding]:
        bad_values = [k for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v)]
        bad_values += [k for k in ("fake_a", "fake_b") if not bool(torch.isfinite(batch[k]).all())]
        observed = {"non-finite": (bool(bad_values), True, "non-finite values in " + ", ".join(bad_values))}
        if not bad_values:
            self._observe_losses(metrics)
            if self.kind in WASSERSTEIN:
                self.estimates.append((step, metrics["d_real"] - metrics["d_fake"]))
            self._observe_batch(batch)
            for name, check in (("mode-collapse", self._collapse), ("mode-dropping", self._dropping),
                                ("d-wins", self._d_wins), ("g-wins", self._g_wins),
                                ("g-loss-collapsed", self._g_collapsed), ("checkerboard", self._checkerboard),
                                ("colour-drift", self._colour), ("identity-mapping", self._identity)):
                observed[name] = check()
        raised = []
        for name, (bad, stuck, evidence) in observed.items():
            run = self.runs.setdefault(name, {"bad": 0, "good": 0, "since": step})
            if bad:
                run.update(bad=run["bad"] + 1, good=0, since=step if run["bad"] == 0 else run["since"])
            else:
                run.update(bad=0, good=run["good"] + 1)
            patience = 1 if name == "non-finite" else self.patience
            if name in self.active:
                if bad:
                    self.active[name].evidence = evidence
                elif run["good"] >= patience:
                    del self.active[name]
            elif bad and stuck and run["bad"] >= patience:
                self.active[name] = Finding(name, run["since"], evidence, self.remedies(name))
                raised.append(self.active[name])
        return raised

    # --- resume ---------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"ema": dict(self.ema), "trail": {k: list(v) for k, v in self.trail.items()},
                "real": {k: [v[0], v[1]] for k, v in self.real.items()},
                "thumbs": {k: torch.stack(list(v)) if v else torch.empty(0) for k, v in self.thumbs.items()},
                "hues": {k: torch.stack(list(v)) if v else torch.empty(0) for k, v in self.hues.items()},
                "runs": {k: dict(v) for k, v in self.runs.items()},
                "active": {k: f.to_dict() for k, f in self.active.items()}, "g_peak": self.g_peak,
                "estimates": [list(e) for e in self.estimates]}

    def load_state_dict(self, state: dict) -> None:
        self.ema = dict(state["ema"])
        self.trail = {k: deque(v, maxlen=self.patience + 1) for k, v in state["trail"].items()}
        self.real = {k: (v[0], v[1]) for k, v in state["real"].items()}
        self.thumbs = {k: deque(list(v), maxlen=self.keep) for k, v in state["thumbs"].items()}
        hues = state.get("hues", {})  # (absent from runs saved before hues were watched)
        self.hues = {k: deque(list(hues.get(k, [])), maxlen=v.maxlen) for k, v in self.hues.items()}
        self.runs = {k: dict(v) for k, v in state["runs"].items()}
        self.active = {k: Finding(**v) for k, v in state["active"].items()}
        self.g_peak = state["g_peak"]
        self.estimates = [(int(s), float(v)) for s, v in state.get("estimates", [])]
