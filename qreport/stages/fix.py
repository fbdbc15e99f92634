"""Stage 7: measure the guidance: re-quantize with its changes applied and compare before with after.

A change the flow cannot build (conversion or the int8 model fails) is dropped with the reason, so the
``fix.toml`` the run writes always builds. The change set is recommended only when its measured effect
beats the noise of the measurement.
"""

from __future__ import annotations

import math

import pandas as pd
import torch
from torch import nn

from qreport.config import ModuleOverride, render_qconfig_toml
from qreport.errors import first_line
from qreport.overrides import kept_float_by
from qreport.scoring import EMPTY_LABELLED, evaluate
from qreport.stages.coverage import quant_status

APPLIED_SEVERITIES = ("high", "medium")
MIN_GAIN_DB = 0.5  # an output SQNR change smaller than this is within the noise of a few evaluation batches


def suggested_overrides(guidance: pd.DataFrame | None, existing=()) -> list[ModuleOverride]:
    """One override per module from the high and medium findings, most severe first; none for modules the
    user already keeps float."""
    if guidance is None or not len(guidance):
        return []
    chosen: dict[str, str] = {}
    for row in guidance.sort_values("rank").to_dict("records"):
        module = row["layer_fqn"]
        if row["severity"] not in APPLIED_SEVERITIES or not row["change_preset"] or not module:
            continue
        if kept_float_by(module, existing):
            continue
        chosen.setdefault(module, row["change_preset"])
    return [ModuleOverride(module=m, preset=p) for m, p in chosen.items()]


def cost(float_model: nn.Module, quantized: nn.Module, macs: dict[str, int]) -> dict:
    """Share of parameters and MACs left in float, and the quantize/dequantize boundaries in the graph."""
    q_modules = dict(quantized.named_modules())
    params = float_params = 0
    for name, module in float_model.named_modules():
        if not name or list(module.children()):
            continue
        n = sum(p.numel() for p in module.parameters(recurse=False))
        if not n:
            continue
        status = quant_status(q_modules.get(name))
        if status == "fused":
            continue
        params += n
        float_params += n if status == "float" else 0
    total_macs = sum(macs.values())
    float_macs = sum(v for k, v in macs.items() if quant_status(q_modules.get(k)) == "float")
    boundaries = sum(1 for n in quantized.graph.nodes
                     if n.target in (torch.quantize_per_tensor, "dequantize", torch.quantize_per_tensor_dynamic))
    return {
        "float_param_share": float_params / params if params else math.nan,
        "float_mac_share": float_macs / total_macs if total_macs else math.nan,
        "qdq_boundaries": boundaries,
    }


def _requantize(ctx, extra: list[ModuleOverride]) -> nn.Module:
    """A real int8 model with ``extra`` applied on top of the user's overrides, calibrated on the same data; it
    must run on one batch."""
    flow = ctx.flow.with_overrides(merged_overrides(ctx.config.overrides, extra))
    prepared = flow.prepare(ctx.loaded.module, ctx.data.example())
    with torch.no_grad():
        for x in ctx.batches(ctx.data.calibration, "fix: calibrate"):
            prepared(x)
        quantized = flow.convert(prepared)
        quantized(ctx.data.example())
    return quantized


def buildable(ctx, extra: list[ModuleOverride]) -> tuple[nn.Module | None, list[ModuleOverride], list[tuple]]:
    """The int8 model with as many of ``extra`` as the flow can build: (model, kept changes, [(dropped, reason)])."""
    try:
        return _requantize(ctx, extra), extra, []
    except Exception as whole:  # conversion or the int8 kernels fail on this change set
        failing = []
        for change in extra:
            try:
                _requantize(ctx, [change])
            except Exception as exc:
                failing.append((change, f"{exc.__class__.__name__}: {first_line(exc)[:160]}"))
        if not failing:  # only the combination fails: keep none rather than guess
            reason = f"{whole.__class__.__name__}: {first_line(whole)[:160]}"
            return None, [], [(c, f"the changes together fail to build ({reason})") for c in extra]
        kept = [c for c in extra if c not in {f for f, _ in failing}]
        if not kept:
            return None, [], failing
        try:
            return _requantize(ctx, kept), kept, failing
        except Exception as exc:
            reason = f"{exc.__class__.__name__}: {first_line(exc)[:160]}"
            return None, [], failing + [(c, f"the remaining changes fail to build ({reason})") for c in kept]


def is_worth_it(before: dict, after: dict) -> bool:
    """Whether the measured change beats the noise: with labels, int8 accuracy must rise (or hold while output
    SQNR rises by ``MIN_GAIN_DB``); without, output SQNR must rise by ``MIN_GAIN_DB``."""
    gain = after["output_sqnr_db"] - before["output_sqnr_db"]
    if before.get("labelled_samples"):
        if after["int8_accuracy"] != before["int8_accuracy"]:
            return after["int8_accuracy"] > before["int8_accuracy"]
    return bool(gain >= MIN_GAIN_DB)


def _row(step: str, changes: str, scores: dict, costs: dict, note: str = "", recommended: bool = False) -> dict:
    labelled = {k: scores.get(k, v) for k, v in EMPTY_LABELLED.items()}
    return {"step": step, "changes": changes, "output_sqnr_db": scores.get("output_sqnr_db", math.nan),
            "top1_agreement": scores.get("top1_agreement", math.nan), "samples": int(scores.get("samples", 0) or 0),
            **labelled, **costs, "note": note, "recommended": recommended}


def run(ctx) -> pd.DataFrame:
    """Rows: before, after (the applied changes, from a real int8 model) and any change dropped because it
    cannot be built."""
    extra = suggested_overrides(ctx.tables.get("guidance"), ctx.config.overrides)
    base = ctx.tables["model"].iloc[0].to_dict() if "model" in ctx.tables else {}
    before = _row("before", "", base, cost(ctx.loaded.module, ctx.quantized, ctx.macs))
    rows = [before]
    applied: list[ModuleOverride] = []
    if extra:
        quantized, applied, dropped = buildable(ctx, extra)
        if quantized is not None:
            result = evaluate(ctx.reference, quantized, ctx.batches(ctx.data.evaluation.labelled(), "fix: evaluate",
                                                                    total=len(ctx.data.evaluation)),
                              metric=ctx.metric, metric_name=ctx.config.metric or "")
            after = _row("after", render_qconfig_toml(applied), result.summary,
                         cost(ctx.loaded.module, quantized, ctx.macs))
            after["recommended"] = is_worth_it(before, after)
            rows.append(after)
        for change, reason in dropped:
            rows.append(_row("dropped", render_qconfig_toml([change]), {}, {"float_param_share": math.nan,
                             "float_mac_share": math.nan, "qdq_boundaries": 0}, note=reason))
    return pd.DataFrame(rows)


def fix_overrides(config_overrides, fix_table: pd.DataFrame | None) -> tuple[ModuleOverride, ...] | None:
    """The ``--qconfig`` overrides ``fix.toml`` should hold: the user's plus the applied changes, when the fix
    stage recommends them; None otherwise."""
    from qreport.config import parse_qconfig_text

    if fix_table is None:
        return None
    after = fix_table[fix_table.step == "after"]
    if not len(after) or not bool(after.iloc[0]["recommended"]):
        return None
    return merged_overrides(config_overrides, parse_qconfig_text(after.iloc[0]["changes"], "fix"))


def merged_overrides(base, extra) -> tuple[ModuleOverride, ...]:
    """``base`` with ``extra`` applied: a module named in both takes the ``extra`` setting, once."""
    merged = {o.module: o for o in base}
    merged.update({o.module: o for o in extra})
    return tuple(merged.values())
