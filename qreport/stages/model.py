"""Stage 4: model level: output SQNR and top-1 agreement, and with labels both models' accuracy, the
per-class drop and the images whose prediction flips (tables ``model``, ``classes``, ``flips``)."""

from __future__ import annotations

import pandas as pd

from qreport.scoring import evaluate


def run(ctx) -> dict[str, pd.DataFrame]:
    """Run the plain reference and int8 models on the evaluation batches, with their labels."""
    result = evaluate(ctx.reference, ctx.quantized, ctx.batches(ctx.data.evaluation.labelled(), "model",
                                                                total=len(ctx.data.evaluation)),
                      metric=ctx.metric, metric_name=ctx.config.metric or "", class_names=ctx.data.class_names)
    return {"model": pd.DataFrame([result.summary]), "classes": pd.DataFrame(result.classes),
            "flips": pd.DataFrame(result.flips)}
