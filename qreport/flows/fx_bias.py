"""Empirical bias correction: the mean error an int8 Conv/Linear adds per output channel, measured on the
calibration data and folded into its bias, so the int8 output is unbiased where the float one is."""

from __future__ import annotations

import torch
from torch import nn

from qreport.data import call


def _channel_mean(t: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """Per-channel mean of a Conv output [N, C, ...] or a Linear one [..., C]."""
    t = t.float()
    if channels_last or t.dim() == 2:
        return t.reshape(-1, t.shape[-1]).mean(dim=0)
    return t.transpose(0, 1).reshape(t.shape[1], -1).mean(dim=1)


def bias_corrections(prepared: nn.Module, quantized: nn.Module, layers, batches) -> dict[str, torch.Tensor]:
    """Module path -> the per-channel mean of (float output − int8 output) over ``batches``, for the ``layers``
    that are int8 Conv/Linear modules with a bias (the float output is the prepared model's, BatchNorm folded)."""
    f_modules, q_modules = dict(prepared.named_modules()), dict(quantized.named_modules())
    chosen = [n for n in layers if hasattr(q_modules.get(n), "set_weight_bias") and n in f_modules]
    sums: dict[str, list] = {n: [None, None, 0] for n in chosen}

    def hook(name: str, side: int):
        linear = "Linear" in type(q_modules[name]).__name__

        def record(_module, _args, out):
            value = out.dequantize() if out.is_quantized else out
            mean = _channel_mean(value.detach(), linear)
            sums[name][side] = mean if sums[name][side] is None else sums[name][side] + mean
            if side == 1:
                sums[name][2] += 1
        return record

    handles = [f_modules[n].register_forward_hook(hook(n, 0)) for n in chosen]
    handles += [q_modules[n].register_forward_hook(hook(n, 1)) for n in chosen]
    try:
        with torch.no_grad():
            for x in batches:
                call(prepared, x)
                call(quantized, x)
    finally:
        for h in handles:
            h.remove()
    return {n: (f - q) / count for n, (f, q, count) in sums.items() if count and f is not None and q is not None
            and f.shape == q.shape}


def apply_corrections(quantized: nn.Module, corrections: dict[str, torch.Tensor]) -> None:
    """Add each correction to its module's int8 bias (kept in float by the int8 modules)."""
    modules = dict(quantized.named_modules())
    for name, delta in corrections.items():
        module = modules[name]
        bias = module.bias()
        module.set_weight_bias(module.weight(), (bias if bias is not None else torch.zeros_like(delta)) + delta)
