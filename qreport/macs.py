"""Multiply-accumulate counts per module, for the cost of keeping layers in float."""

from __future__ import annotations

import torch
from torch import nn

from qreport.data import call, take
from qreport.qtypes import WEIGHTED_LAYERS


def macs_per_module(model: nn.Module, example: torch.Tensor) -> dict[str, int]:
    """MACs per sample of every Conv/Linear module, from one forward with hooks."""
    macs: dict[str, int] = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, WEIGHTED_LAYERS):
            def hook(mod, args, out, name=name):
                per_output = mod.in_features if isinstance(mod, nn.Linear) else mod.weight[0].numel()
                macs[name] = macs.get(name, 0) + int(out[0].numel()) * int(per_output)
            hooks.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            call(model, take(example, slice(0, 1)))
    finally:
        for h in hooks:
            h.remove()
    return macs
