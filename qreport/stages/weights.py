"""Stage 1: weight SQNR of the folded float weights vs the dequantized int8 weights."""

from __future__ import annotations

import math

import pandas as pd
import torch

from qreport.flows.fx import short_type
from qreport.metrics import sqnr_db


def _per_channel_scales(q: torch.Tensor, channels: int) -> torch.Tensor:
    if q.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
        return q.q_per_channel_scales().double()
    return torch.full((channels,), float(q.q_scale()), dtype=torch.float64)


def weight_row(layer: str, layer_fqn: str, op_type: str, float_values, quant_values) -> dict:
    """SQNR, worst output channel and error-per-step of one layer's weight."""
    w_float = float_values[0].detach()
    w_quant = quant_values[0]
    qscheme = str(w_quant.qscheme()).replace("torch.", "") if w_quant.is_quantized else "float"
    deq = w_quant.dequantize() if w_quant.is_quantized else w_quant.detach()
    f = w_float.double().reshape(w_float.shape[0], -1)
    err = f - deq.double().reshape(w_float.shape[0], -1)
    signal_c = (f * f).sum(dim=1)
    noise_c = (err * err).sum(dim=1)
    channel_db = [sqnr_db(float(s), float(n)) for s, n in zip(signal_c, noise_c)]
    worst = min(range(len(channel_db)), key=lambda i: channel_db[i])
    rmse_over_step = math.nan
    if w_quant.is_quantized:
        scales = _per_channel_scales(w_quant, f.shape[0]).unsqueeze(1)
        rmse_over_step = float(((err / scales) ** 2).mean().sqrt())
    return {
        "layer": layer,
        "layer_fqn": layer_fqn,
        "op_type": op_type,
        "weight_shape": "×".join(str(d) for d in w_float.shape),
        "param_count": sum(int(v.numel()) for v in float_values if isinstance(v, torch.Tensor)),
        "qscheme": qscheme,
        "sqnr_db": sqnr_db(float(signal_c.sum()), float(noise_c.sum())),
        "worst_channel": worst,
        "worst_channel_sqnr_db": channel_db[worst],
        "max_abs_err": float(err.abs().max()),
        "float_min": float(f.min()),
        "float_max": float(f.max()),
        "rmse_over_step": rmse_over_step,
    }


def run(ctx) -> pd.DataFrame:
    """One row per quantized layer with a weight, in model order."""
    rows = []
    for order, pair in enumerate(ctx.flow.weight_pairs(ctx.prepared, ctx.quantized)):
        row = weight_row(pair["layer"], pair["layer_fqn"], short_type(pair["op_type"]), pair["float_values"], pair["quant_values"])
        row["order"] = order
        rows.append(row)
    return pd.DataFrame(rows)
