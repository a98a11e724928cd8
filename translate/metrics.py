"""Evaluation metrics and the feature spaces they are measured in.

Images are NCHW tensors in [-1, 1]; features are (N, D) tensors. Distances between features are RMS (the L2
distance divided by sqrt(D)), so thresholds do not depend on the feature size.

  pixel_features           downsampled pixels: cheap, used for diversity and by the training monitor
  DomainEncoder            a small CNN the tool trains on real A vs real B (needs no download): its embedding
                           is the feature space for precision/recall, FID and KID; its head gives the domain score
  InceptionFeatures        torchvision's Inception-v3 from a local weights file (find_inception), never downloaded
  hue_histogram_distance   colour fidelity: how far two image sets' hues are apart, in degrees
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F
from torch import nn

INCEPTION_FILE = "inception_v3_google-0cc3c7bd.pth"  # torchvision's IMAGENET1K_V1 weights file


# --- feature spaces ---------------------------------------------------------------------------------------------
def pixel_features(x: torch.Tensor, size: int = 8) -> torch.Tensor:
    """Area-downsampled pixels, flattened: (N, C * size * size)."""
    return F.adaptive_avg_pool2d(x.float(), size).flatten(1)


def distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """RMS distance between every row of x and every row of y."""
    return torch.cdist(x.double(), y.double()) / math.sqrt(x.shape[1])


class DomainEncoder(nn.Module):
    """Stride-2 convs (batch norm after the first) down to 4x4 from 32 px, or 64 px for images that large, then a
    `dim`-d embedding, with a domain head (A = 0, B = 1) and a linear decoder to 16 px: trained on both, the
    embedding keeps the content of an image, not only its domain."""

    def __init__(self, resolution: int = 32, dim: int = 64, channels: int = 3):
        super().__init__()
        self.resolution = resolution
        layers, c_in = [], channels
        for i in range(int(math.log2(resolution // 4))):
            c_out = min(32 * 2 ** i, 128)
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1), *([nn.BatchNorm2d(c_out)] if i else []), nn.LeakyReLU(0.2)]
            c_in = c_out
        self.body = nn.Sequential(*layers, nn.Flatten(), nn.Linear(c_in * 16, dim))
        self.head = nn.Linear(dim, 2)
        self.decoder = nn.Linear(dim, channels * 16 * 16)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x.float(), size=(self.resolution, self.resolution), mode="area")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.prepare(x))

    @torch.no_grad()
    def embed(self, x: torch.Tensor, batch: int = 256) -> torch.Tensor:
        return torch.cat([self(x[i:i + batch]) for i in range(0, len(x), batch)])

    @torch.no_grad()
    def prob_b(self, x: torch.Tensor, batch: int = 256) -> torch.Tensor:
        """The probability that each image belongs to domain B."""
        return torch.cat([self.head(self(x[i:i + batch])).softmax(1)[:, 1] for i in range(0, len(x), batch)])


def train_encoder(images_a: torch.Tensor, images_b: torch.Tensor, steps: int = 300, batch: int = 32,
                  seed: int = 0) -> DomainEncoder:
    """Train a DomainEncoder on real images of both domains (with random flips); deterministic for a seed, and
    leaves the global RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        resolution = 64 if min(images_a.shape[-1], images_b.shape[-1]) >= 64 else 32
        net = DomainEncoder(resolution, channels=images_a.shape[1])
        data = torch.cat([net.prepare(images_a), net.prepare(images_b)])
        labels = torch.cat([torch.zeros(len(images_a)), torch.ones(len(images_b))]).long()
        # Sample each domain equally often, whatever the folder sizes.
        weights = torch.cat([torch.full((len(images_a),), 1 / len(images_a)),
                             torch.full((len(images_b),), 1 / len(images_b))])
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        for _ in range(steps):
            idx = torch.multinomial(weights, batch, replacement=True)
            x = data[idx]
            x = torch.where((torch.rand(batch) < 0.5)[:, None, None, None], x.flip(3), x)
            z = net.body(x)
            loss = (F.cross_entropy(net.head(z), labels[idx])
                    + F.mse_loss(net.decoder(z), F.adaptive_avg_pool2d(x, 16).flatten(1)))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return net.eval()


def find_inception(path: str | Path | None = None) -> Path | None:
    """The Inception-v3 weights file: `path` if given, else torchvision's file in the torch hub cache, if there."""
    candidate = Path(path) if path else Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
    return candidate if candidate.is_file() else None


class InceptionFeatures(nn.Module):
    """torchvision's Inception-v3 (ImageNet weights from a local file) up to its 2048-d pooled features.

    Inputs in [-1, 1] are resized to 299 px, the scaling the original Google weights expect. The numbers are
    comparable between runs measured here, not with FIDs published from the TensorFlow Inception graph."""

    def __init__(self, weights: str | Path):
        super().__init__()
        from torchvision.models import inception_v3
        net = inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=False)
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        net.fc = nn.Identity()
        self.net = net.eval()

    @torch.no_grad()
    def forward(self, x: torch.Tensor, batch: int = 32) -> torch.Tensor:
        out = []
        for i in range(0, len(x), batch):
            chunk = F.interpolate(x[i:i + batch].float(), size=(299, 299), mode="bilinear", align_corners=False)
            out.append(self.net(chunk))
        return torch.cat(out)


# --- diversity and coverage --------------------------------------------------------------------------------------
def mean_pairwise_distance(features: torch.Tensor) -> float:
    """Mean RMS distance over all pairs (0 for fewer than two)."""
    if len(features) < 2:
        return 0.0
    return float(torch.pdist(features.double()).mean() / math.sqrt(features.shape[1]))


def near_duplicate_rate(features: torch.Tensor, threshold: float) -> float:
    """Share of items whose nearest other item is closer than `threshold` (RMS)."""
    if len(features) < 2:
        return 0.0
    d = distances(features, features).fill_diagonal_(math.inf)
    return float((d.min(1).values < threshold).double().mean())


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019): each set's manifold is the union of balls
    reaching each of its points' k-th nearest neighbour. Precision: share of fakes inside the real manifold
    (realism); recall: share of reals inside the fake manifold (coverage)."""
    def radii(x: torch.Tensor) -> torch.Tensor:
        kth = min(k, len(x) - 1)
        return distances(x, x).kthvalue(kth + 1, dim=1).values  # +1: the point itself is at distance 0

    cross = distances(fake, real)
    precision = (cross <= radii(real)[None, :]).any(1).double().mean()
    recall = (cross.T <= radii(fake)[None, :]).any(1).double().mean()
    return float(precision), float(recall)


# --- distribution distances ----------------------------------------------------------------------------------------
def fid(real: torch.Tensor, fake: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (Heusel et al. 2017). With no more
    samples than dimensions the covariances are singular and the estimate is biased: prefer KID then."""
    x, y = real.double().numpy(), fake.double().numpy()
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.atleast_2d(np.cov(x, rowvar=False)), np.atleast_2d(np.cov(y, rowvar=False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        covmean = scipy.linalg.sqrtm(s1 @ s2)
        if not np.isfinite(covmean).all():  # regularise, as the reference implementation does
            eps = np.eye(len(s1)) * 1e-6
            covmean = scipy.linalg.sqrtm((s1 + eps) @ (s2 + eps))
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean.real))


def kid(real: torch.Tensor, fake: torch.Tensor, subset_size: int = 1000, subsets: int = 100,
        seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance (Bińkowski et al. 2018): unbiased MMD^2 with the kernel (x.y / d + 1)^3,
    mean and std over random subsets (one subset of everything when both sets are small)."""
    x, y = real.double(), fake.double()
    d = x.shape[1]

    def mmd2(a: torch.Tensor, b: torch.Tensor) -> float:
        kaa, kbb, kab = ((a @ a.T / d + 1) ** 3, (b @ b.T / d + 1) ** 3, (a @ b.T / d + 1) ** 3)
        m, n = len(a), len(b)
        return float((kaa.sum() - kaa.diagonal().sum()) / (m * (m - 1))
                     + (kbb.sum() - kbb.diagonal().sum()) / (n * (n - 1)) - 2 * kab.mean())

    if len(x) <= subset_size and len(y) <= subset_size:
        return mmd2(x, y), 0.0
    g = torch.Generator().manual_seed(seed)
    m = min(subset_size, len(x), len(y))
    values = [mmd2(x[torch.randperm(len(x), generator=g)[:m]], y[torch.randperm(len(y), generator=g)[:m]])
              for _ in range(subsets)]
    return float(np.mean(values)), float(np.std(values))


# --- colour ---------------------------------------------------------------------------------------------------------
def hue_histogram(images: torch.Tensor, bins: int = 36) -> torch.Tensor:
    """Chroma-weighted hue histogram of RGB images in [-1, 1], summed over the batch: (bins,), bin 0 centred on
    red, then yellow at 60 degrees, green at 120, blue at 240. Hue and chroma are the polar form of the opponent
    plane (r - (g + b) / 2, sqrt(3) / 2 * (g - b)) on the [0, 1] scale; each pixel adds its chroma (0 for grey,
    white and black, 1 for a pure primary or secondary colour) to its two nearest bins, split linearly, and
    each image weighs 1 / its pixel count, so histograms of batches add up."""
    x = images.double().add(1).div(2).clamp(0, 1)
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    alpha, beta = r - (g + b) / 2, math.sqrt(3) / 2 * (g - b)
    chroma = torch.hypot(alpha, beta).flatten() / (x.shape[2] * x.shape[3])
    position = torch.atan2(beta, alpha).flatten().remainder(2 * math.pi) * bins / (2 * math.pi)
    low = position.floor()
    upper = position - low
    return (torch.zeros(bins, dtype=torch.float64).index_add_(0, low.long() % bins, chroma * (1 - upper))
            .index_add_(0, (low.long() + 1) % bins, chroma * upper))


def hue_distances(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Earth mover's distance between hue histograms (..., bins), each normalised to unit mass, in degrees: the
    mean angle by which the colour mass of one must turn to become the other (40 when every colour turns by 40
    degrees, 20 when half of them do). NaN where either holds (practically) no colour."""
    p, q = p.double(), q.double()
    mass_p, mass_q = p.sum(-1, keepdim=True), q.sum(-1, keepdim=True)
    cdf = torch.cumsum(p / mass_p.clamp_min(1e-12) - q / mass_q.clamp_min(1e-12), -1)
    distance = (cdf - cdf.median(-1, keepdim=True).values).abs().sum(-1) * 360 / p.shape[-1]  # minimised over
    return distance.masked_fill(((mass_p < 1e-9) | (mass_q < 1e-9)).squeeze(-1), math.nan)  # the circle's cut


def hue_distance(p: torch.Tensor, q: torch.Tensor) -> float:
    """`hue_distances` of two histograms (bins,), as a float."""
    return float(hue_distances(p, q))


def hue_histogram_distance(images_a: torch.Tensor, images_b: torch.Tensor, bins: int = 36) -> float:
    """How far apart the hues of two image sets are (N x 3 x H x W, [-1, 1]; sizes may differ), in degrees of
    hue: `hue_distance` of their `hue_histogram`s. Greys weigh nothing, so it measures hue, not saturation;
    NaN when either set is all grey."""
    return hue_distance(hue_histogram(images_a, bins), hue_histogram(images_b, bins))


# --- paired and classifier metrics ---------------------------------------------------------------------------------
def paired_metrics(output: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """Mean L1, PSNR (dB; identical images count as 100 dB, so JSON stays finite) and SSIM per image pair,
    on the [0, 1] scale."""
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure
    x, y = output.float().add(1).div(2).clamp(0, 1), target.float().add(1).div(2).clamp(0, 1)
    return {"l1": float((x - y).abs().mean()),
            "psnr": float(peak_signal_noise_ratio(x, y, data_range=1.0, dim=(1, 2, 3), reduction="none")
                          .clamp(max=100.0).mean()),
            "ssim": float(structural_similarity_index_measure(x, y, data_range=1.0))}


def domain_score(prob_target: torch.Tensor) -> float:
    """Share of images a domain classifier assigns to the target domain (probability above one half)."""
    return float((prob_target > 0.5).double().mean())
