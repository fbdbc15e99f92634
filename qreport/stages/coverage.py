"""Stage 5: coverage: every layer, whether it was quantized, and which stages compared it."""

from __future__ import annotations

import pandas as pd

from qreport.overrides import kept_float_by
from qreport.schema import PASS_THROUGH
from qreport.stages.tables import stage_frame

def _fqns(ctx, stage: str) -> set[str]:
    df = ctx.tables.get(stage)
    return set(df["layer_fqn"]) if df is not None and len(df) else set()


def _reason(ctx, stage: str, fqn: str, op_type: str) -> str:
    for item in ctx.uncompared.get(stage, []):
        if item.get("layer_fqn") == fqn or (not item.get("layer_fqn") and item.get("op_type", "").endswith(op_type.split(".")[-1])):
            return item["reason"]
    return ""


def run(ctx) -> pd.DataFrame:
    """One row per module with parameters and per compared function op; nothing is dropped."""
    statuses = ctx.flow.module_statuses(ctx.quantized)
    in_stage = {stage: _fqns(ctx, stage) for stage in ("weights", "activations", "shadow")}
    rows = []
    seen = set()
    for fqn, module in ctx.loaded.module.named_modules():
        if not fqn or list(module.children()) or not any(True for _ in module.parameters(recurse=False)):
            continue
        status = statuses.get(fqn, "fused")
        rows.append({"layer_fqn": fqn, "op_type": type(module).__name__, "status": status, "weighted": True})
        seen.add(fqn)
    graph = ctx.tables.get("graph")
    runs = dict(zip(graph["layer_fqn"], graph["runs"])) if graph is not None else {}
    for stage in ("activations", "shadow"):
        df = ctx.tables.get(stage)
        if df is None:
            continue
        for fqn, op_type in zip(df["layer_fqn"], df["op_type"]):
            if fqn not in seen:
                seen.add(fqn)
                status = "quantized" if op_type.startswith("quantized.") or runs.get(fqn, "").startswith("int8") \
                    else "float"
                rows.append({"layer_fqn": fqn, "op_type": op_type, "status": status,
                             "passes": runs.get(fqn) == PASS_THROUGH})
    for row in rows:
        fqn = row["layer_fqn"]
        notes = []
        passes = row.pop("passes", False)
        if row["status"] == "fused":
            notes.append("folded into the preceding op by fusion")
        elif passes:
            notes.append("runs on int8 values with its input's scale (no qparams of its own)")
        elif row["status"] == "float":
            by = kept_float_by(fqn, ctx.config.overrides)
            notes.append(f"kept float by qconfig ({by})" if by else "no quantized kernel for this op; runs in float")
        for stage in ("weights", "activations", "shadow"):
            row[f"in_{stage}"] = fqn in in_stage[stage]
        if row.pop("weighted", False) and row["status"] == "quantized" and not row["in_weights"]:
            notes.append("not in weights: the Numeric Suite found no int8 weight to pair with it")
        if row["status"] != "fused":
            for stage in ("activations", "shadow"):
                if not row[f"in_{stage}"]:
                    status = ctx.stage_status.get(stage, "ok")
                    why = _reason(ctx, stage, fqn, row["op_type"]) or (
                        f"{stage} stage failed" if status != "ok" else "not matched between float and int8 graphs"
                    )
                    notes.append(f"not in {stage}: {why}")
        row["note"] = "; ".join(notes)
    return stage_frame("coverage", rows)
