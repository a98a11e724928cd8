"""Metrics on hand-made sets whose answers are known."""
import math

import pytest
import torch

from translate import metrics


def gaussian(n: int, dim: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed)) + shift


def test_precision_recall_identical_disjoint_and_missing_mode():
    real = gaussian(200, 8, 0)
    assert metrics.precision_recall(real, real.clone()) == (1.0, 1.0)
    assert metrics.precision_recall(real, real + 100) == (0.0, 0.0)
    two_modes = torch.cat([gaussian(100, 8, 1), gaussian(100, 8, 2, shift=20.0)])
    one_mode = gaussian(100, 8, 3)  # realistic, but only the first mode
    precision, recall = metrics.precision_recall(two_modes, one_mode)
    assert precision > 0.85  # the fakes lie on the real manifold ...
    assert 0.4 <= recall <= 0.55  # ... but half of the real images have no fake near them
    both = torch.cat([gaussian(100, 8, 4), gaussian(100, 8, 5, shift=20.0)])
    assert metrics.precision_recall(two_modes, both)[1] >= 0.8


def test_fid_matches_the_closed_form_for_gaussians():
    x = gaussian(4000, 4, 0)
    assert abs(metrics.fid(x, x.clone())) < 1e-6
    shift = torch.tensor([1.0, 2.0, 0.0, 0.0])  # same covariance: FID = |mean difference|^2 = 5
    assert metrics.fid(x, gaussian(4000, 4, 1) + shift) == pytest.approx(5.0, rel=0.05)
    scaled = gaussian(4000, 4, 2) * 2  # covariance 4I vs I: FID = 4 * (1 + 4 - 2 * 2) = 4
    assert metrics.fid(x, scaled) == pytest.approx(4.0, rel=0.1)


def test_kid_is_unbiased_near_zero_for_the_same_distribution():
    x, y = gaussian(600, 16, 0), gaussian(600, 16, 1)
    same, same_std = metrics.kid(x, y, subset_size=200, subsets=20)
    shifted, _ = metrics.kid(x, y + 1.0, subset_size=200, subsets=20)
    assert abs(same) < 3 * same_std + 1e-3
    assert shifted > 50 * abs(same) and shifted > 0.1


def test_diversity_and_near_duplicates():
    distinct = gaussian(10, 32, 0)
    assert metrics.mean_pairwise_distance(distinct[:1].repeat(10, 1)) == 0.0
    assert metrics.mean_pairwise_distance(distinct) == pytest.approx(math.sqrt(2), rel=0.15)  # RMS of N(0, 2)
    assert metrics.near_duplicate_rate(distinct, 0.1) == 0.0
    with_copies = torch.cat([distinct[:8], distinct[:2] + 1e-4])  # two items duplicated: four have a twin
    assert metrics.near_duplicate_rate(with_copies, 0.1) == pytest.approx(0.4)
    assert metrics.near_duplicate_rate(distinct[:1].repeat(5, 1), 0.1) == 1.0


def test_paired_metrics_known_values():
    target = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 1.2 - 0.8  # [-0.8, 0.4]
    same = metrics.paired_metrics(target, target)
    assert same["l1"] == 0.0 and same["ssim"] == pytest.approx(1.0, abs=1e-4) and same["psnr"] == 100.0  # capped: JSON has no infinity
    off = metrics.paired_metrics(target + 0.2, target)  # +0.1 on the [0, 1] scale: L1 0.1, MSE 0.01 -> 20 dB
    assert off["l1"] == pytest.approx(0.1, abs=1e-6)
    assert off["psnr"] == pytest.approx(20.0, abs=1e-3)
    assert off["ssim"] < 1.0
    # Flat images have no contrast or structure: SSIM is the luminance term (2xy + C1) / (x^2 + y^2 + C1),
    # C1 = 0.01^2; grey 0.5 against 0.25 -> 0.2501 / 0.3126.
    flat = metrics.paired_metrics(torch.zeros(1, 3, 32, 32), torch.full((1, 3, 32, 32), -0.5))
    assert flat["ssim"] == pytest.approx((2 * 0.5 * 0.25 + 1e-4) / (0.5 ** 2 + 0.25 ** 2 + 1e-4), abs=1e-5)


def test_domain_score_counts_confident_target_assignments():
    assert metrics.domain_score(torch.tensor([0.9, 0.2, 0.7, 0.4])) == 0.5


def coloured(n: int, channel: int, seed: int, size: int = 32) -> torch.Tensor:
    """n images of random blobs of one dominant colour on white, in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    x = torch.ones(n, 3, size, size)
    for img in x:
        y0, x0 = torch.randint(0, size - 12, (2,), generator=g).tolist()
        other = [c for c in range(3) if c != channel]
        img[other, y0:y0 + 12, x0:x0 + 12] = torch.rand(1, generator=g) - 1
    return x


def test_encoder_classifies_domains_deterministically_and_leaves_the_global_rng_alone():
    red, blue = coloured(40, 0, 0), coloured(40, 2, 1)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    enc = metrics.train_encoder(red, blue, steps=40)
    assert torch.rand(1) == before
    again = metrics.train_encoder(red, blue, steps=40)
    assert all(torch.equal(p, q) for p, q in zip(enc.parameters(), again.parameters()))
    held_out_red, held_out_blue = coloured(20, 0, 2), coloured(20, 2, 3)
    assert metrics.domain_score(enc.prob_b(held_out_blue)) == 1.0
    assert metrics.domain_score(enc.prob_b(held_out_red)) == 0.0
    assert enc.embed(held_out_red).shape == (20, 64)


def test_inception_is_only_read_from_disk(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    assert metrics.find_inception() is None
    assert metrics.find_inception(tmp_path / "missing.pth") is None
    from torchvision.models import inception_v3
    weights = tmp_path / "hub" / "checkpoints" / metrics.INCEPTION_FILE
    weights.parent.mkdir(parents=True)
    torch.save(inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict(), weights)
    assert metrics.find_inception() == weights
    features = metrics.InceptionFeatures(weights)(torch.zeros(1, 3, 32, 32))
    assert features.shape == (1, 2048) and torch.isfinite(features).all()


@pytest.mark.parametrize("rgb", [(0.9, 0.2, 0.1), (0.2, 0.7, 0.3), (0.3, 0.3, 0.9), (0.5, 0.45, 0.4)])
def test_hue_histogram_distance_reads_a_hue_rotation_in_degrees(rgb):
    from torchvision.transforms.functional import adjust_hue  # an HSV rotation, independent of ours
    x = torch.tensor(rgb).view(1, 3, 1, 1).expand(2, 3, 8, 8)
    for degrees in (20, 50, -90):
        turned = adjust_hue(x, degrees / 360) * 2 - 1
        assert metrics.hue_histogram_distance(x * 2 - 1, turned) == pytest.approx(abs(degrees), abs=3)
    greys = torch.linspace(-1, 1, 5).view(5, 1, 1, 1).expand(5, 3, 8, 8)  # black, greys, white weigh nothing
    assert metrics.hue_histogram_distance(torch.cat([x * 2 - 1, greys]), turned) == pytest.approx(90, abs=3)
    assert math.isnan(metrics.hue_histogram_distance(greys, turned))


def test_hue_histograms_of_batches_add_up_and_half_the_mass_moved_is_half_the_distance():
    x, y = torch.rand(4, 3, 16, 16) * 2 - 1, torch.rand(3, 3, 8, 8) * 2 - 1
    joint = metrics.hue_histogram(torch.cat([x[..., :8, :8], y]))
    assert torch.allclose(joint, metrics.hue_histogram(x[..., :8, :8]) + metrics.hue_histogram(y))
    red, green = torch.tensor([1.0, -1, -1]).view(1, 3, 1, 1), torch.tensor([-1.0, 1, -1]).view(1, 3, 1, 1)
    both = torch.cat([red, green])
    assert metrics.hue_histogram_distance(both, torch.cat([red, red])) == pytest.approx(60)  # half moves 120
    assert metrics.hue_histogram_distance(both, both.flip(0)) == 0
