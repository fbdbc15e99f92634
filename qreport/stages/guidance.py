"""Stage: guidance: why the int8 model loses precision, where, and the change to try."""

from __future__ import annotations

import pandas as pd

from qreport.guidance import Thresholds, findings, findings_table
from qreport.verdict import decide


def run(ctx) -> dict[str, pd.DataFrame]:
    """Apply the guidance rules to the tables the earlier stages produced, and decide the verdict."""
    cfg = ctx.config
    table = findings_table(findings(ctx.tables, weights_trained=ctx.loaded.weights_trained, backend=cfg.backend,
                                    t=Thresholds.from_pairs(cfg.thresholds), synthetic=ctx.data.synthetic,
                                    evaluation_real=cfg.eval_data not in (None, "synthetic")))
    verdict = decide(ctx.tables.get("model"), table, ctx.tables.get("coverage"), ctx.stage_status)
    return {"guidance": table, "verdict": pd.DataFrame([verdict])}
