"""Location findings: where error starts (isolated view, simulated float set) and where it is only carried
(propagated view). A location says where, not why: the guidance puts its likely cause beside it (no torch)."""

from __future__ import annotations

import math

import pandas as pd

from qreport.findings import Finding, Thresholds, change, enclosing_module, gap_severity, median
from qreport.metrics import IDEAL_RMSE_OVER_STEP
from qreport.render.fmt import fmt_db

# Simulated whole-model configurations in the sensitivity table (its ``layer`` column for ``kind == "model"``).
SIM_REAL, SIM_ALL, SIM_WEIGHTS, SIM_ACTIVATIONS = "int8_real", "all_quantized", "weights_only", "activations_only"


def float_change(fqn: str, backend: str) -> tuple[tuple[str, str, str], str]:
    """The change that keeps ``fqn`` float, and a note: a functional op (``block:add``) is kept float through the
    module it runs in; a top-level one cannot be."""
    if ":" not in fqn:
        return change(fqn, "float", backend), ""
    scope = enclosing_module(fqn)
    if scope:
        return change(scope, "float", backend), f" It is not a module: the change keeps {scope}, which runs it, float."
    return ("", "", ""), " It is not a module and runs at the top level: no per-module override can keep it float."


def sensitivity_findings(sens: pd.DataFrame | None, backend: str) -> list[Finding]:
    """The greedy float set: layers that, kept float together, reach the target output SQNR (simulated)."""
    if sens is None or not len(sens):
        return []
    model = {r["layer"]: r for r in sens[sens.kind == "model"].to_dict("records")}
    base = model.get(SIM_ALL, {}).get("quant_alone_sqnr_db", math.nan)
    layers = sens[sens.kind == "layer"]
    ends = {layers.order.min(): "the model's first quantized op", layers.order.max(): "the model's last quantized op"}
    chosen = layers[layers.greedy_step >= 0].sort_values("greedy_step").to_dict("records")
    out = []
    for r in chosen:
        chg, how = float_change(r["layer_fqn"], backend)
        if r["order"] in ends:
            how += f" It is {ends[r['order']]}; first and last layers are often the most sensitive."
        out.append(Finding(
            "sensitive_layer", "high" if chg[0] else "info", r["layer"], r["layer_fqn"], "sensitivity",
            r["quant_alone_sqnr_db"], base, r["target_sqnr_db"], "originates",
            f"step {r['greedy_step'] + 1} of the float set aiming at {r['target_sqnr_db']:g} dB: output SQNR "
            f"{fmt_db(r['greedy_sqnr_db'])} once this and the earlier steps are float (all quantized: {fmt_db(base)}); "
            f"quantized alone it gives {fmt_db(r['quant_alone_sqnr_db'])}, kept float alone "
            f"{fmt_db(r['float_alone_sqnr_db'])} (simulated on {r['images']} images).{how}",
            *chg, impact_db=r["gain_db"]))
    return out


def origin_findings(iso_df: pd.DataFrame | None, prop: dict, passes: set[str], backend: str,
                    t: Thresholds) -> list[Finding]:
    """Ops whose isolated SQNR stands out below the rest: the error starts there. An op that runs on its input's
    int8 scale (pooling, flatten, ...) is a location but never a change: its input's range is the thing to fix."""
    out = []
    if iso_df is None or not len(iso_df):
        return out
    med = median(iso_df["sqnr_db"])
    for i, r in enumerate(iso_df.sort_values(["sqnr_db", "order"]).to_dict("records")):
        gap = med - r["sqnr_db"]
        if not (gap >= t.gap_medium_db or i < t.worst_layers) or not math.isfinite(r["sqnr_db"]):
            continue
        p = prop.get(r["layer"])
        clipped = r["clipped_fraction"]
        relation = f"{gap:.1f} dB below" if gap >= 0 else f"{-gap:.1f} dB above"
        evidence = [f"isolated SQNR {fmt_db(r['sqnr_db'])}, {relation} the median {fmt_db(med)}"]
        if p is not None:
            evidence.append(f"propagated SQNR {fmt_db(p['sqnr_db'])}")
        if r["rmse_over_step"] > t.rmse_over_step:
            evidence.append(f"RMSE is {r['rmse_over_step']:.2f} quantization steps (ideal {IDEAL_RMSE_OVER_STEP:.2f})")
        if clipped > t.clipped_fraction:
            evidence.append(f"{clipped:.1%} of float values clipped by the int8 range")
        if r["compared_after"]:
            evidence.append(f"compared after its {r['compared_after']}")
        note = ""
        if r["layer"] in passes:
            chg, note = ("", "", ""), (" It runs on its input's int8 scale (no qparams of its own), so keeping it "
                                        "float is no fix: look at the range of its input.")
        elif clipped > t.clipped_fraction:
            chg = change(r["layer_fqn"], "histogram", backend)
        else:
            chg, note = float_change(r["layer_fqn"], backend)
        out.append(Finding(
            "error_origin", gap_severity(gap, t), r["layer"], r["layer_fqn"], "isolated", r["sqnr_db"], med,
            t.gap_medium_db, "originates", "; ".join(evidence) + "." + note, *chg))
    return out


def inherited_finding(prop_df: pd.DataFrame | None, iso: dict, origins: list[Finding], t: Thresholds) -> list[Finding]:
    """The worst propagated op that adds little itself: its error comes from upstream (one finding explains the
    pattern; the chart shows the rest)."""
    if prop_df is None or not len(prop_df):
        return []
    prop = {r["layer"]: r for r in prop_df.to_dict("records")}
    med = median(prop_df["sqnr_db"])
    started = {f.layer for f in origins}
    for r in prop_df.sort_values(["sqnr_db", "order"]).to_dict("records"):
        gap = med - r["sqnr_db"]
        if not gap >= t.gap_medium_db or r["layer"] in started:
            continue
        i = iso.get(r["layer"])
        upstream = [f.layer_fqn for f in origins if f.severity != "info" and f.layer in prop
                    and prop[f.layer]["order"] < r["order"]]
        iso_text = f"isolated {fmt_db(i['sqnr_db'])}, so this op adds little itself" if i is not None else \
            "no isolated view for this op"
        where = f"start with {upstream[0]}, where error originates" if upstream else \
            "no single upstream op stands out in the isolated view: error builds up over many layers"
        return [Finding(
            "inherited_error", "info", r["layer"], r["layer_fqn"], "propagated", r["sqnr_db"], med, t.gap_medium_db,
            "inherited", f"propagated SQNR {fmt_db(r['sqnr_db'])}, {gap:.1f} dB below the median; {iso_text}; {where}.",
            "", "", "")]
    return []
