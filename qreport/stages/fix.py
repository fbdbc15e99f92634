"""Stage 7: measure the guidance: re-quantize with its changes applied and compare before with after."""

from __future__ import annotations

import math

import pandas as pd
import torch
from torch import nn

from qreport.config import ModuleOverride, render_qconfig_toml
from qreport.stages.coverage import quant_status
from qreport.stages.model import agreement

APPLIED_SEVERITIES = ("high", "medium")


def suggested_overrides(guidance: pd.DataFrame | None, existing=()) -> list[ModuleOverride]:
    """One override per module from the high and medium findings, most severe first; none for modules the
    user already keeps float."""
    if guidance is None or not len(guidance):
        return []
    kept_float = [o.module for o in existing if o.preset == "float"]
    chosen: dict[str, str] = {}
    for row in guidance.sort_values("rank").to_dict("records"):
        module = row["layer_fqn"]
        if row["severity"] not in APPLIED_SEVERITIES or not row["change_preset"] or not module:
            continue
        if any(module == k or module.startswith(k + ".") for k in kept_float):
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


def run(ctx) -> pd.DataFrame:
    """Two rows, before and after: output SQNR, top-1 agreement and cost, each from a real int8 model."""
    extra = suggested_overrides(ctx.tables.get("guidance"), ctx.config.overrides)
    macs = ctx.macs
    base = ctx.tables["model"].iloc[0] if "model" in ctx.tables else None
    before = {
        "step": "before", "changes": "",
        "output_sqnr_db": float(base["output_sqnr_db"]) if base is not None else math.nan,
        "top1_agreement": float(base["top1_agreement"]) if base is not None else math.nan,
        **cost(ctx.loaded.module, ctx.quantized, macs),
    }
    rows = [before]
    if extra:
        flow = ctx.flow.with_overrides(merged_overrides(ctx.config.overrides, extra))
        prepared = flow.prepare(ctx.loaded.module, ctx.data.example())
        with torch.no_grad():
            for x in ctx.batches(ctx.data.calibration, "fix: calibrate"):
                prepared(x)
        quantized = flow.convert(prepared)
        after = agreement(ctx.reference, quantized, ctx.batches(ctx.data.evaluation, "fix: evaluate"))
        rows.append({
            "step": "after", "changes": render_qconfig_toml(extra),
            "output_sqnr_db": after["output_sqnr_db"], "top1_agreement": after["top1_agreement"],
            **cost(ctx.loaded.module, quantized, macs),
        })
    ctx.fix_overrides = merged_overrides(ctx.config.overrides, extra)
    return pd.DataFrame(rows)


def merged_overrides(base, extra) -> tuple[ModuleOverride, ...]:
    """``base`` with ``extra`` applied: a module named in both takes the ``extra`` setting, once."""
    merged = {o.module: o for o in base}
    merged.update({o.module: o for o in extra})
    return tuple(merged.values())
