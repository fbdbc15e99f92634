"""Stage 1: weight SQNR of the folded float weights vs the dequantized int8 weights."""

from __future__ import annotations

import math

import pandas as pd
import torch

from qreport.metrics import sqnr_db
from qreport.stages.tables import stage_frame


def _per_channel_scales(q: torch.Tensor, channels: int) -> torch.Tensor:
    if q.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
        return q.q_per_channel_scales().double()
    return torch.full((channels,), float(q.q_scale()), dtype=torch.float64)


CHUNK_ELEMENTS = 1 << 22  # rows are folded in blocks of about this many values (float64), bounding memory


def weight_row(layer: str, layer_fqn: str, op_type: str, float_values, quant_values, qscheme: str | None = None,
               steps: torch.Tensor | None = None) -> dict:
    """SQNR, worst output channel and error-per-step of one layer's weight (float64 sums, in blocks of rows).

    The int8 weight is a torch quantized tensor (its scales give the step), or a dequantized tensor with its
    ``qscheme`` named and each element's quantization ``steps`` given."""
    w_float = float_values[0].detach()
    w_quant = quant_values[0]
    if qscheme is None:
        qscheme = str(w_quant.qscheme()).replace("torch.", "") if w_quant.is_quantized else "float"
    channels = w_float.shape[0]
    f_rows = w_float.reshape(channels, -1)
    q_rows = (w_quant.dequantize() if w_quant.is_quantized else w_quant.detach()).reshape(channels, -1)
    scales = _per_channel_scales(w_quant, channels).unsqueeze(1) if w_quant.is_quantized else \
        (steps.reshape(channels, -1).double() if steps is not None else None)
    signal_c = torch.zeros(channels, dtype=torch.float64)
    noise_c = torch.zeros(channels, dtype=torch.float64)
    max_abs_err, f_min, f_max, steps_sq = 0.0, math.inf, -math.inf, 0.0
    block = max(1, CHUNK_ELEMENTS // max(1, f_rows.shape[1]))
    for i in range(0, channels, block):
        f = f_rows[i:i + block].double()
        err = f - q_rows[i:i + block].double()
        signal_c[i:i + block] = (f * f).sum(dim=1)
        noise_c[i:i + block] = (err * err).sum(dim=1)
        max_abs_err = max(max_abs_err, float(err.abs().max()))
        f_min, f_max = min(f_min, float(f.min())), max(f_max, float(f.max()))
        if scales is not None:
            steps_sq += float(((err / scales[i:i + block]) ** 2).sum())
    channel_db = [sqnr_db(float(s), float(n)) for s, n in zip(signal_c, noise_c)]
    worst = min(range(len(channel_db)), key=lambda i: channel_db[i])
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
        "max_abs_err": max_abs_err,
        "float_min": f_min,
        "float_max": f_max,
        "rmse_over_step": math.sqrt(steps_sq / f_rows.numel()) if scales is not None else math.nan,
    }


def run(ctx) -> pd.DataFrame:
    """One row per quantized layer with a weight, in model order (none paired: no rows, same columns)."""
    rows = []
    for order, pair in enumerate(ctx.flow.weight_pairs(ctx.prepared, ctx.quantized)):
        row = weight_row(pair["layer"], pair["layer_fqn"], ctx.flow.op_label(pair["op_type"]), pair["float_values"],
                         pair["quant_values"], pair.get("qscheme"), pair.get("steps"))
        row["order"] = order
        rows.append(row)
    return stage_frame("weights", rows)
