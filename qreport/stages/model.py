"""Stage 4: model level: output SQNR and top-1 agreement, and with labels both models' accuracy, the
per-class drop and the images whose prediction flips (tables ``model``, ``classes``, ``flips``)."""

from __future__ import annotations

import contextlib

import pandas as pd

from qreport.scoring import evaluate
from qreport.stages.channels import ChannelRecord


def run(ctx) -> dict[str, pd.DataFrame]:
    """Run the plain reference and int8 models on the evaluation batches, with their labels; the float pass also
    records the channels stage's input ranges (``ctx.channel_record``)."""
    record = ChannelRecord(ctx.reference)
    if record.runs_in(ctx.quantized):
        record = None
    with record or contextlib.nullcontext():
        result = evaluate(ctx.reference, ctx.quantized, ctx.batches(ctx.data.evaluation.labelled(), "model",
                                                                    total=len(ctx.data.evaluation)),
                          metric=ctx.metric, metric_name=ctx.config.metric or "", class_names=ctx.data.class_names)
    ctx.channel_record = record
    return {"model": pd.DataFrame([result.summary]), "classes": pd.DataFrame(result.classes),
            "flips": pd.DataFrame(result.flips)}
