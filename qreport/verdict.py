"""The run's verdict, GOOD / WARN / BAD, and the rule that decided it: computed once from the stage tables and
stored (``verdict.parquet``); the report and the summaries only show it (no torch)."""

from __future__ import annotations

import math

import pandas as pd

ACCURACY_BAD_POINTS = 1.0  # int8 loses more than this many points of accuracy, beyond the interval: BAD
SQNR_BAD_DB = 15.0  # without labels: an output SQNR below this is BAD
AGREEMENT_BAD = 0.9  # without labels: top-1 agreement below this is BAD
VIEWS = ("activations", "shadow")


def _not_compared(coverage: pd.DataFrame | None, statuses: dict[str, str]) -> list[str]:
    """Quantized layers with weights that neither activation view compared (a failed view compares none)."""
    if coverage is None or not len(coverage):
        return []
    quantized = coverage[coverage.status == "quantized"]
    seen = pd.Series(False, index=quantized.index)
    for view in VIEWS:
        if statuses.get(view) == "ok":
            seen |= quantized[f"in_{view}"]
    return sorted(quantized.loc[~seen, "layer_fqn"])


def decide(model: pd.DataFrame | None, guidance: pd.DataFrame | None, coverage: pd.DataFrame | None,
           statuses: dict[str, str]) -> dict:
    """One row: ``level``, ``rule`` (in words, with its numbers), ``flagged`` (layers with a high or medium finding)
    and ``not_compared`` (quantized layers no activation view compared: such a run cannot be GOOD)."""
    m = model.iloc[0].to_dict() if model is not None and len(model) else {}
    flagged = sorted({f for f in guidance.loc[guidance.severity.isin(("high", "medium")), "layer_fqn"] if f}) \
        if guidance is not None and len(guidance) else []
    missing = _not_compared(coverage, statuses)
    if m.get("labelled_samples") and math.isfinite(m.get("float_accuracy", math.nan)):
        drop, low = 100 * m["accuracy_drop"], 100 * m["accuracy_drop_lo"]
        level = "bad" if low > ACCURACY_BAD_POINTS else "warn" if drop > ACCURACY_BAD_POINTS or flagged else "good"
        rule = (f"BAD when int8 loses more than {ACCURACY_BAD_POINTS:g} point of accuracy even at the low end of the "
                f"95 % interval; WARN when the measured drop exceeds {ACCURACY_BAD_POINTS:g} point or a layer is flagged")
    else:
        sqnr, agreement = m.get("output_sqnr_db", math.nan), m.get("top1_agreement", math.nan)
        level = "bad" if (math.isfinite(sqnr) and sqnr < SQNR_BAD_DB) or agreement < AGREEMENT_BAD else \
            "warn" if flagged else "good"
        rule = (f"no labels: BAD when the output SQNR is below {SQNR_BAD_DB:g} dB or top-1 agreement below "
                f"{AGREEMENT_BAD:.0%}; WARN when a layer is flagged")
    if missing and level == "good":
        level = "warn"
    rule += "; never GOOD while a quantized layer was not compared"
    return {"level": level, "rule": rule, "flagged": flagged, "not_compared": missing}
