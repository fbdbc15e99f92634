"""A stage's rows as a table: no rows still gives the stage's declared columns (no torch here)."""

from __future__ import annotations

import pandas as pd

from qreport.schema import arrow_schema


def stage_frame(stage: str, rows: list[dict]) -> pd.DataFrame:
    """``rows`` as a DataFrame; an empty list gives an empty table with ``stage``'s declared, typed columns."""
    if rows:
        return pd.DataFrame(rows)
    return arrow_schema(stage).empty_table().to_pandas()
