"""Stage 6: guidance: the worst layers, why, and the change to try."""

from __future__ import annotations

import pandas as pd

from qreport.guidance import Thresholds, findings, findings_table


def run(ctx) -> pd.DataFrame:
    """Apply the guidance rules to the tables the earlier stages produced."""
    return findings_table(findings(ctx.tables, weights_trained=ctx.loaded.weights_trained, backend=ctx.config.backend,
                                   t=Thresholds.from_pairs(ctx.config.thresholds)))
