"""What a stage returns to the pipeline, which owns writing, order, notes and the uncompared lists."""

from __future__ import annotations

import dataclasses

import pandas as pd


@dataclasses.dataclass
class StageResult:
    """A stage's tables (its own first; ``schema.EXTRA_TABLES`` names the others), lines for the report's notes,
    and the layers it saw but could not compare (``{layer, layer_fqn, op_type?, reason}``)."""

    tables: dict[str, pd.DataFrame]
    notes: list[str] = dataclasses.field(default_factory=list)
    uncompared: list[dict] = dataclasses.field(default_factory=list)


def as_result(name: str, returned) -> StageResult:
    """A stage's return value (a table, a dict of tables, or a StageResult) as a StageResult."""
    if isinstance(returned, StageResult):
        return returned
    if isinstance(returned, dict):
        return StageResult(returned)
    return StageResult({name: returned})
