"""Stage 4: model-level agreement: output SQNR and top-1 agreement (no labels needed)."""

from __future__ import annotations

import pandas as pd
import torch

from qreport.streaming import LayerStats


def first_tensor(out):
    """The first tensor in a model output (a tensor, or nested tuples/lists/dicts of them)."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out:
        return first_tensor(out[0])
    if isinstance(out, dict) and out:
        return first_tensor(next(iter(out.values())))
    raise TypeError(f"model output is a {type(out).__name__} without tensors")


def score_outputs(pairs) -> dict:
    """Output SQNR and top-1 agreement over (float output, int8 or simulated output) pairs."""
    stats = LayerStats()
    agree = samples = 0
    classes: set[int] = set()
    for ref, out in pairs:
        ref = first_tensor(ref).float()
        out = first_tensor(out)
        out = out.dequantize() if out.is_quantized else out.float()
        stats.update(ref, out)
        if ref.dim() >= 2:
            top_ref, top_out = ref.argmax(dim=1), out.argmax(dim=1)
            agree += int((top_ref == top_out).sum())
            samples += int(top_ref.numel())
            classes.update(int(c) for c in top_ref.unique())
    row = stats.row()
    return {
        "samples": samples,
        "batches": stats.batches,
        "output_sqnr_db": row["sqnr_db"],
        "top1_agreement": agree / samples if samples else float("nan"),
        "cosine": row["cosine"],
        "mse": row["mse"],
        "max_abs_err": row["max_abs_err"],
        "float_top1_classes": len(classes),
        "nonfinite_count": row["nonfinite_count"],
    }


def agreement(float_model, quantized, batches) -> dict:
    """Output SQNR and top-1 agreement of ``quantized`` against ``float_model`` over ``batches``."""
    with torch.no_grad():
        return score_outputs((float_model(x), quantized(x)) for x in batches)


def run(ctx) -> pd.DataFrame:
    """Run the plain float and int8 models on the evaluation batches."""
    return pd.DataFrame([agreement(ctx.reference, ctx.quantized, ctx.batches(ctx.data.evaluation, "model"))])
