"""Optimizers by name: `--optimizer` picks one from OPTIMIZERS (the CLI's choices come from here too)."""
from __future__ import annotations

import torch


def _adam(params: list, lr: float, t, fused: bool) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=lr, betas=(t.beta1, t.beta2), weight_decay=t.weight_decay,
                            **({"fused": True} if fused else {}))


def _rmsprop(params: list, lr: float, t, fused: bool) -> torch.optim.Optimizer:
    return torch.optim.RMSprop(params, lr=lr, weight_decay=t.weight_decay)


OPTIMIZERS = {"adam": _adam, "rmsprop": _rmsprop}
