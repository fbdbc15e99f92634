"""Stage: calibration against the data: per observed activation, the calibrated range, the calibration image that
sets it and the share of evaluation values the int8 range cannot hold."""

from __future__ import annotations

import pandas as pd


def run(ctx) -> pd.DataFrame:
    """One row per observed activation (``input`` is the model's input), in graph order."""
    calibration = ctx.calibration_record or ctx.batches(ctx.data.calibration.labelled(), "ranges: calibration",
                                                        total=len(ctx.data.calibration))  # noted while calibrating
    rows = ctx.flow.activation_ranges(ctx.prepared, calibration, ctx.batches(ctx.data.evaluation.labelled(),
                                                                             "ranges: evaluation",
                                                                             total=len(ctx.data.evaluation)))
    for order, row in enumerate(rows):
        row["layer_fqn"] = "input" if row["layer"] == "input" else ctx.layer_fqn(row["layer"])
        row["order"] = order
    return pd.DataFrame(rows)
