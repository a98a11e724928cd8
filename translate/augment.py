"""DiffAugment (Zhao et al. 2020, arXiv:2006.10738): the same random, differentiable transforms applied to real
and generated images before the discriminator sees them, so that a small data set does not let it memorise the
reals. Only geometry-and-occlusion policies: colour jitter would teach the discriminator to ignore colour, which
is what a translation must get right.

  translation   shift by up to 1/8 of the side (edge pixels repeated)
  cutout        blank a random square of half the side
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

POLICIES = ("translation", "cutout")


def parse_policy(text: str) -> tuple[str, ...]:
    """'translation,cutout' -> ('translation', 'cutout'); '' -> (); an unknown name is a ValueError."""
    names = tuple(p.strip() for p in text.split(",") if p.strip())
    unknown = [p for p in names if p not in POLICIES]
    if unknown:
        raise ValueError(f"--diffaugment {text!r}: unknown policy {unknown[0]!r}; choose from {', '.join(POLICIES)}")
    return names


def translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    n, _, h, w = x.shape
    ph, pw = max(1, int(h * ratio)), max(1, int(w * ratio))
    padded = F.pad(x, (pw, pw, ph, ph), mode="replicate")
    dy = torch.randint(0, 2 * ph + 1, (n,), device=x.device)
    dx = torch.randint(0, 2 * pw + 1, (n,), device=x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device)[None])[:, None, :, None].expand(n, x.shape[1], h, w + 2 * pw)
    out = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(w, device=x.device)[None])[:, None, None, :].expand(n, x.shape[1], h, w)
    return out.gather(3, cols)


def cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    n, _, h, w = x.shape
    ch, cw = int(h * ratio), int(w * ratio)
    cy = torch.randint(0, h - ch + 1, (n, 1, 1), device=x.device)
    cx = torch.randint(0, w - cw + 1, (n, 1, 1), device=x.device)
    ys, xs = torch.arange(h, device=x.device)[None, :, None], torch.arange(w, device=x.device)[None, None, :]
    inside = (ys >= cy) & (ys < cy + ch) & (xs >= cx) & (xs < cx + cw)
    return x * (~inside)[:, None].to(x.dtype)


def diff_augment(x: torch.Tensor, policy: tuple[str, ...]) -> torch.Tensor:
    for name in policy:
        x = {"translation": translation, "cutout": cutout}[name](x)
    return x
