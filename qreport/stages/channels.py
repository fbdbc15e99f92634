"""Stage: per-input-channel ranges of every Conv/Linear input in the float model (outlier channels)."""

from __future__ import annotations

import math

import pandas as pd
import torch
from torch import nn

from qreport.data import call
from qreport.qtypes import WEIGHTED_LAYERS


def _ratio(values: torch.Tensor) -> float:
    """100th over 97.5th percentile: how far the largest channel sits above nearly all the others."""
    if values.numel() < 2:
        return math.nan
    p975 = float(torch.quantile(values.double(), 0.975))
    return float(values.max()) / p975 if p975 > 0 else math.nan


def run(ctx) -> pd.DataFrame:
    """Fold each batch's per-channel |max| of every Conv/Linear input; one row per module, in model order."""
    absmax: dict[str, torch.Tensor] = {}
    hooks = []
    modules = [(name, m) for name, m in ctx.reference.named_modules() if isinstance(m, WEIGHTED_LAYERS)]
    for name, module in modules:
        def pre_hook(mod, args, name=name):
            x = args[0].detach()
            dim = x.dim() - 1 if isinstance(mod, nn.Linear) else 1
            reduce = [d for d in range(x.dim()) if d != dim]
            current = x.abs().amax(dim=reduce).float()
            absmax[name] = current if name not in absmax else torch.maximum(absmax[name], current)
        hooks.append(module.register_forward_pre_hook(pre_hook))
    try:
        with torch.no_grad():
            for x in ctx.batches(ctx.data.evaluation, "channels"):
                call(ctx.reference, x)
    finally:
        for h in hooks:
            h.remove()
    rows = []
    for order, (name, module) in enumerate(modules):
        if name not in absmax:
            continue
        values = absmax[name]
        weight = module.weight.detach()
        w_in = weight.abs().transpose(0, 1).reshape(weight.shape[1], -1).amax(dim=1)
        rows.append({
            "layer_fqn": name, "order": order, "in_channels": int(values.numel()),
            "input_absmax": float(values.max()), "worst_channel": int(values.argmax()),
            "outlier_ratio": _ratio(values), "weight_channel_spread": _ratio(w_in),
        })
    return pd.DataFrame(rows, columns=["layer_fqn", "order", "in_channels", "input_absmax", "worst_channel",
                                       "outlier_ratio", "weight_channel_spread"])
