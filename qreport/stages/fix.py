"""Stage: the measured remedy ladder: each rung (``remedies.plan``) re-quantized for real, evaluated, and kept
only when it helps beyond the noise; the climb stops once the target holds.

A change the flow cannot build (conversion or the int8 model fails) is dropped with the reason, so the
``fix.toml`` the run writes always builds. The kept set is recommended only when its measured effect
beats the noise of the measurement.
"""

from __future__ import annotations

import gc
import math

import pandas as pd
import torch
from torch import nn

from qreport.allocator import release_freed_blocks
from qreport.config import ModuleOverride, render_qconfig_toml
from qreport.data import call, take
from qreport.errors import first_line
from qreport.overrides import kept_float_by
from qreport.remedies import Rung, plan
from qreport.scoring import EMPTY_LABELLED, evaluate

APPLIED_SEVERITIES = ("high", "medium")
MIN_GAIN_DB = 0.5  # an output SQNR change smaller than this is within the noise of a few evaluation batches


def cost(flow, float_model: nn.Module, quantized: nn.Module, macs: dict[str, int]) -> dict:
    """Share of parameters and MACs left in float, and the quantize/dequantize boundaries in the graph."""
    statuses = flow.module_statuses(quantized)
    params = float_params = 0
    for name, module in float_model.named_modules():
        if not name or list(module.children()):
            continue
        n = sum(p.numel() for p in module.parameters(recurse=False))
        if not n:
            continue
        status = statuses.get(name, "fused")
        if status == "fused":
            continue
        params += n
        float_params += n if status == "float" else 0
    total_macs = sum(macs.values())
    float_macs = sum(v for k, v in macs.items() if statuses.get(k, "fused") == "float")
    boundaries = flow.qdq_boundaries(quantized)
    return {
        "float_param_share": float_params / params if params else math.nan,
        "float_mac_share": float_macs / total_macs if total_macs else math.nan,
        "qdq_boundaries": boundaries,
    }


def _calibration(ctx, data: str):
    """Calibration inputs for a rung: the run's own, without one input (``drop:<name>``), or the evaluation inputs."""
    if data == "evaluation":
        return [b for i, b in enumerate(ctx.data.evaluation) if i < max(1, len(ctx.data.calibration))]
    if data.startswith("drop:"):
        name = data[5:]
        kept = []
        for batch in ctx.data.calibration.labelled():
            rows = [i for i, n in enumerate(batch.names) if n != name]
            if rows:
                kept.append(take(batch.inputs, rows) if len(rows) < len(batch.names) else batch.inputs)
        return kept
    return ctx.data.calibration


def _requantize(ctx, extra: list[ModuleOverride], data: str = "") -> nn.Module:
    """A real int8 model with ``extra`` applied on top of the user's overrides, calibrated on the run's data (or a
    rung's); it must run on one batch."""
    flow = ctx.flow.with_overrides(merged_overrides(ctx.config.overrides, extra))
    # calibrated once: on the run's own calibration data, the observers of the run's prepared model are reused
    prepared = flow.calibrated(ctx.loaded.module, ctx.data.example(), ctx.batches(_calibration(ctx, data), "fix: calibrate"),
                               observed=None if data else ctx.prepared)
    quantized = flow.convert(prepared)
    with torch.no_grad():
        call(quantized, ctx.data.example())
    return quantized


def buildable(ctx, extra: list[ModuleOverride], data: str = "") -> tuple[nn.Module | None, list[ModuleOverride],
                                                                         list[tuple]]:
    """The int8 model with as many of ``extra`` as the flow can build: (model, kept changes, [(dropped, reason)])."""
    try:
        return _requantize(ctx, extra, data), extra, []
    except Exception as whole:  # conversion or the int8 kernels fail on this change set
        failing = []
        for change in extra:
            try:
                _requantize(ctx, [change], data)
            except Exception as exc:
                failing.append((change, f"{exc.__class__.__name__}: {first_line(exc)[:160]}"))
            gc.collect()
        if not failing:  # only the combination fails: keep none rather than guess
            reason = f"{whole.__class__.__name__}: {first_line(whole)[:160]}"
            return None, [], [(c, f"the changes together fail to build ({reason})") for c in extra]
        kept = [c for c in extra if c not in {f for f, _ in failing}]
        if not kept:
            return None, [], failing
        try:
            return _requantize(ctx, kept, data), kept, failing
        except Exception as exc:
            reason = f"{exc.__class__.__name__}: {first_line(exc)[:160]}"
            return None, [], failing + [(c, f"the remaining changes fail to build ({reason})") for c in kept]


def is_worth_it(before: dict, after: dict) -> bool:
    """Whether the measured change beats the noise: with labels, int8 accuracy must rise (or hold while output
    SQNR rises by ``MIN_GAIN_DB``); without, output SQNR must rise by ``MIN_GAIN_DB``."""
    gain = after["output_sqnr_db"] - before["output_sqnr_db"]
    if before.get("labelled_samples") and math.isfinite(before.get("int8_accuracy", math.nan)):
        if after["int8_accuracy"] != before["int8_accuracy"]:
            return after["int8_accuracy"] > before["int8_accuracy"]
    return bool(gain >= MIN_GAIN_DB)


def target_met(ctx, scores: dict) -> bool:
    """The ladder's goal: the accuracy drop within ``--target-accuracy-drop`` points when given (labels needed),
    else the output SQNR at ``--target-sqnr``."""
    if ctx.config.target_accuracy_drop is not None and scores.get("labelled_samples"):
        return 100 * (scores["float_accuracy"] - scores["int8_accuracy"]) <= ctx.config.target_accuracy_drop
    return scores.get("output_sqnr_db", -math.inf) >= ctx.config.target_sqnr


def _row(step: str, changes: str, scores: dict, costs: dict, note: str = "", recommended: bool = False,
         rung: int = -1, kind: str = "", kept: bool = False) -> dict:
    labelled = {k: scores.get(k, v) for k, v in EMPTY_LABELLED.items()}
    return {"step": step, "rung": rung, "kind": kind, "changes": changes,
            "output_sqnr_db": scores.get("output_sqnr_db", math.nan),
            "top1_agreement": scores.get("top1_agreement", math.nan), "samples": int(scores.get("samples", 0) or 0),
            **labelled, **costs, "note": note, "recommended": recommended, "kept": kept}


_NO_COST = {"float_param_share": math.nan, "float_mac_share": math.nan, "qdq_boundaries": 0}


def _measure(ctx, quantized) -> tuple[dict, dict]:
    result = evaluate(ctx.reference, quantized, ctx.batches(ctx.data.evaluation.labelled(), "fix: evaluate",
                                                            total=len(ctx.data.evaluation)),
                      metric=ctx.metric, metric_name=ctx.config.metric or "")
    return result.summary, cost(ctx.flow, ctx.loaded.module, quantized, ctx.macs)


def run(ctx) -> pd.DataFrame:
    """Rows: before; one per rung tried (kept or not); after (the kept rungs together, if any); and any change
    dropped because it cannot be built."""
    base = ctx.tables["model"].iloc[0].to_dict() if "model" in ctx.tables else {}
    before = _row("before", "", base, cost(ctx.flow, ctx.loaded.module, ctx.quantized, ctx.macs))
    rows, dropped_rows = [before], []
    applied: list[ModuleOverride] = []
    data, current, current_cost = "", base, before
    kept_any = False
    for number, rung in enumerate(ctx.progress(plan(ctx.tables.get("guidance"), ctx.config.overrides, ctx.flow.presets), "fix: ladder",
                                               unit="rung")):
        if base and target_met(ctx, current):
            break
        trial = merged_overrides(applied, rung.changes)
        quantized, built_all, dropped = buildable(ctx, list(trial), rung.data or data)
        built = [c for c in built_all if c in rung.changes]
        dropped_rows += [_row("dropped", render_qconfig_toml([c]), {}, _NO_COST, note=reason, kind=rung.kind)
                         for c, reason in dropped]
        if quantized is None:
            continue
        scores, costs = _measure(ctx, quantized)
        keep = bool(base) and is_worth_it(current, scores)
        changes = render_qconfig_toml(built) if rung.changes else rung.describe()
        rows.append(_row("rung", changes, scores, costs, note=rung.because, rung=number, kind=rung.kind, kept=keep))
        if keep:
            applied, data, current, current_cost, kept_any = list(built_all), rung.data or data, scores, costs, True
        del quantized
        gc.collect()  # a rung's graph modules hold reference cycles: free its models before the next rung builds
        release_freed_blocks()
    if kept_any:
        note = Rung("recalibrate", data=data).describe() if data else ""
        after = _row("after", render_qconfig_toml(applied) if applied else "", current,
                     {k: current_cost[k] for k in _NO_COST}, note=note)
        after["recommended"] = is_worth_it(before, after)
        rows.append(after)
    return pd.DataFrame(rows + dropped_rows)


def fix_overrides(config_overrides, fix_table: pd.DataFrame | None) -> tuple[ModuleOverride, ...] | None:
    """The ``--qconfig`` overrides ``fix.toml`` should hold: the user's plus the kept qconfig changes, when the
    fix stage recommends them; None otherwise (no change, or only a change of the calibration data)."""
    from qreport.config import parse_qconfig_text

    if fix_table is None:
        return None
    after = fix_table[fix_table.step == "after"]
    if not len(after) or not bool(after.iloc[0]["recommended"]) or not after.iloc[0]["changes"]:
        return None
    return merged_overrides(config_overrides, parse_qconfig_text(after.iloc[0]["changes"], "fix"))


def merged_overrides(base, extra) -> tuple[ModuleOverride, ...]:
    """``base`` with ``extra`` applied: a module named in both takes the ``extra`` setting, once."""
    merged = {o.module: o for o in base}
    merged.update({o.module: o for o in extra})
    return tuple(merged.values())
