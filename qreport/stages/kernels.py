"""Stage: each int8 kernel without weights to fold, checked alone on synthetic input inside its calibrated range."""

from __future__ import annotations

import pandas as pd


def run(ctx) -> pd.DataFrame:
    """Rows of ``flow.kernel_checks``: a kernel defect shows as many output steps of error where rounding gives 0.29."""
    return pd.DataFrame(ctx.flow.kernel_checks(ctx.reference, ctx.quantized, ctx.data.example()))
