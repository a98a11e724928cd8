"""PatchNCE (Park et al. 2020, Contrastive Unpaired Translation, arXiv:2007.15651): a patch of the output should
match the input patch at the same place better than any other patch of that input, compared in the generator's
own encoder features through a small MLP head per layer. It keeps content without a second generator's cycle.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .nets import ResidualGenerator, ResnetGenerator


def nce_layers(n_blocks: int) -> tuple[int, ...]:
    """The ResNet generator's layers whose outputs are compared: the (padded) pixels, the first downsampling conv,
    the second downsampling's norm, and two residual blocks a third and two thirds in (CUT's 0, 4, 8, 12, 16 for
    nine blocks)."""
    return 0, 4, 8, 10 + (n_blocks - 1) // 3, 10 + (2 * n_blocks) // 3


def encoder_features(generator: nn.Module, x: torch.Tensor, layers: tuple[int, ...]) -> list[torch.Tensor]:
    """Outputs of the generator's `layers` (indices into the ResNet generator's sequence) for input x."""
    net = generator.body if isinstance(generator, ResidualGenerator) else generator
    if not isinstance(net, ResnetGenerator):
        raise ValueError("PatchNCE (--lambda-nce) needs the ResNet generator (--generator resnet)")
    features = []
    for i, layer in enumerate(net):
        x = layer(x)
        if i in layers:
            features.append(x)
            if len(features) == len(layers):
                break
    return features


class PatchNCE(nn.Module):
    """The MLP heads of one generator (CUT's PatchSampleF) and its PatchNCE loss."""

    def __init__(self, generator: nn.Module, n_blocks: int, patches: int = 256, tau: float = 0.07,
                 dim: int = 256):
        super().__init__()
        self.layers, self.patches, self.tau = nce_layers(n_blocks), patches, tau
        device = next(generator.parameters()).device
        with torch.no_grad():
            channels = [f.shape[1] for f in encoder_features(generator, torch.zeros(1, 3, 32, 32, device=device),
                                                              self.layers)]
        self.heads = nn.ModuleList(nn.Sequential(nn.Linear(c, dim), nn.ReLU(), nn.Linear(dim, dim))
                                   for c in channels)
        for head in self.heads:
            for layer in head[::2]:
                nn.init.normal_(layer.weight, 0.0, 0.02)
                nn.init.zeros_(layer.bias)
        self.to(device)

    def forward(self, generator: nn.Module, source: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        """The loss of `output` = generator(source): mean over layers of the cross-entropy of picking, for each
        sampled output patch, the input patch at its place among `patches` patches of the same input image."""
        queries = encoder_features(generator, output, self.layers)
        with torch.no_grad():  # the keys are targets (CUT detaches them)
            keys = encoder_features(generator, source, self.layers)
        total = output.new_zeros((), dtype=torch.float32)
        for head, q, k in zip(self.heads, queries, keys):
            n, _, h, w = k.shape
            ids = torch.randperm(h * w, device=k.device)[:self.patches]
            with torch.no_grad():
                k = F.normalize(head(k.flatten(2)[:, :, ids].transpose(1, 2)).float(), dim=-1)
            q = F.normalize(head(q.flatten(2)[:, :, ids].transpose(1, 2)).float(), dim=-1)
            logits = q @ k.transpose(1, 2) / self.tau  # (n, p, p): the diagonal holds the positives
            target = torch.arange(len(ids), device=k.device).expand(n, -1)
            total = total + F.cross_entropy(logits.flatten(0, 1), target.flatten())
        return total / len(self.heads)
