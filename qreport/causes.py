"""Cause findings: why a layer (or the whole model) loses precision, with the evidence and a remedy (no torch)."""

from __future__ import annotations

import math
from collections import Counter

import pandas as pd

from qreport.findings import Finding, Thresholds, change, gap_severity, median
from qreport.metrics import IDEAL_RMSE_OVER_STEP
from qreport.render.fmt import fmt_db


def weight_findings(weights: pd.DataFrame | None, backend: str, t: Thresholds) -> list[Finding]:
    """Weight outliers, and per-tensor layers that per-channel scales (which the backend supports) would help."""
    out = []
    if weights is None or not len(weights):
        return out
    med = median(weights["sqnr_db"])
    per_channel = weights[~weights["qscheme"].str.startswith("per_tensor")]
    median_pc = median(per_channel["sqnr_db"]) if len(per_channel) else math.nan
    median_pc_channel = median(per_channel["worst_channel_sqnr_db"]) if len(per_channel) else math.nan
    for r in weights.sort_values(["sqnr_db", "order"]).to_dict("records"):
        per_tensor = r["qscheme"].startswith("per_tensor")
        gap = med - r["sqnr_db"]
        # one wide channel barely moves the layer's SQNR but crushes the others: look at the worst channel too
        gap_pc = max(median_pc - r["sqnr_db"], median_pc_channel - r["worst_channel_sqnr_db"])
        channel = f"worst output channel {r['worst_channel']} at {fmt_db(r['worst_channel_sqnr_db'])}"
        if per_tensor and gap_pc >= t.per_tensor_gap_db:
            out.append(Finding(
                "per_tensor_weights", "high" if gap_pc >= t.gap_high_db else "medium", r["layer"], r["layer_fqn"],
                "weights", r["sqnr_db"], median_pc, t.per_tensor_gap_db, "originates",
                f"weights quantized per tensor: SQNR {fmt_db(r['sqnr_db'])} and {channel}, against medians of "
                f"{fmt_db(median_pc)} and {fmt_db(median_pc_channel)} (worst channel) in the per-channel layers; "
                "per-channel scales fit each output channel.",
                *change(r["layer_fqn"], "per_channel", backend)))
        elif gap >= t.gap_medium_db:
            why = "per-channel scales fit each output channel" if per_tensor else \
                "the weights are already per-channel, so keep the layer in float"
            out.append(Finding(
                "weight_outlier", gap_severity(gap, t), r["layer"], r["layer_fqn"], "weights", r["sqnr_db"], med,
                t.gap_medium_db, "originates",
                f"weight SQNR {fmt_db(r['sqnr_db'])}, {gap:.1f} dB below the median {fmt_db(med)}; {channel}; {why}.",
                *change(r["layer_fqn"], "per_channel" if per_tensor else "float", backend)))
    return out


def channel_findings(channels: pd.DataFrame | None, t: Thresholds, backend: str = "x86") -> list[Finding]:
    """Layers whose input has a few channels far larger than the rest (one per-tensor scale serves them all)."""
    out = []
    if channels is None or not len(channels):
        return out
    for r in channels.sort_values(["outlier_ratio", "order"], ascending=[False, True]).to_dict("records"):
        if not r["outlier_ratio"] > t.outlier_channel_ratio:
            continue
        balanced = r["weight_channel_spread"] < r["outlier_ratio"]
        hint = ("the weights' input channels are more even, so input-weight equalization (prepare_fx's "
                "_equalization_config) can move the range into the weights") if balanced else \
            "keeping the producer of this input float, or a histogram observer on it, limits the damage"
        out.append(Finding(
            "outlier_input_channels", "high" if r["outlier_ratio"] >= 2 * t.outlier_channel_ratio else "medium",
            r["layer_fqn"], r["layer_fqn"], "inputs", math.nan, math.nan, t.outlier_channel_ratio, "originates",
            f"input channel {r['worst_channel']} reaches {r['input_absmax']:.3g}, {r['outlier_ratio']:.1f}× the "
            f"97.5th percentile of the {r['in_channels']} channels' maxima, and one per-tensor activation scale "
            f"serves them all, so the other channels get a fraction of the 256 steps; {hint}.",
            *(change(r["layer_fqn"], "equalize", backend) if balanced else ("", "", ""))))
    return out


def kernel_findings(kernels: pd.DataFrame | None, t: Thresholds, backend: str) -> list[Finding]:
    """int8 kernels that are wrong on clean input inside their calibrated range: a backend defect."""
    out = []
    if kernels is None or not len(kernels):
        return out
    for r in kernels.sort_values(["rmse_over_step", "layer_fqn"], ascending=[False, True]).to_dict("records"):
        if not r["rmse_over_step"] > t.kernel_rmse_over_step:
            continue
        out.append(Finding(
            "kernel_defect", "high", r["layer_fqn"], r["layer_fqn"], "kernel", r["sqnr_db"], math.nan,
            t.kernel_rmse_over_step, "originates",
            f"the int8 {r['op_type']} kernel is wrong on clean input: fed {r['values']} synthetic values spread over the "
            f"integer range its real input spans (codes {r['input_codes_lo']}–{r['input_codes_hi']}), it is "
            f"{r['rmse_over_step']:.1f} output steps RMS off the float {r['op_type']} (rounding alone gives "
            f"{IDEAL_RMSE_OVER_STEP:.2f}), SQNR {fmt_db(r['sqnr_db'])}. This is the {backend} backend's kernel, not your "
            "data or ranges: keep it float.",
            *change(r["layer_fqn"], "float", backend)))
    return out


def _clipping(fqn: str, layer: str, fraction: float, lo: float, hi: float, eval_lo: float, eval_hi: float,
              value_db: float, t: Thresholds, backend: str) -> Finding:
    return Finding(
        "activation_clipping", "high" if fraction >= 10 * t.clipped_fraction else "medium", layer, fqn, "ranges",
        value_db, math.nan, t.clipped_fraction, "originates",
        f"{fraction:.1%} of evaluation values fall outside the range its int8 scale can hold [{lo:.3g}, {hi:.3g}] "
        f"(evaluation reaches [{eval_lo:.3g}, {eval_hi:.3g}]): calibration saw a narrower range than evaluation, "
        "or the observer cut the tails.", *change(fqn, "histogram", backend))


def range_findings(acts: pd.DataFrame | None, ranges: pd.DataFrame | None, t: Thresholds, backend: str,
                   whole_model_mismatch: bool, view: str = "isolated") -> list[Finding]:
    """Activation ranges that fit badly: values clipped, error far above rounding, ranges moving between batches.

    Clipping is measured against the calibrated int8 range (the ``ranges`` stage); where the calibration misses
    the evaluation data everywhere, one data finding says so instead of one per layer.
    """
    out = []
    iso = {r["layer"]: r for r in acts.to_dict("records")} if acts is not None and len(acts) else {}
    clipped = set()
    if ranges is not None and len(ranges) and not whole_model_mismatch:
        for r in ranges.sort_values("order").to_dict("records"):
            if r["layer"] != "input" and r["eval_outside_fraction"] > t.clipped_fraction:
                clipped.add(r["layer"])
                out.append(_clipping(r["layer_fqn"], r["layer"], r["eval_outside_fraction"], r["qrange_lo"],
                                     r["qrange_hi"], r["eval_min"], r["eval_max"],
                                     iso.get(r["layer"], {}).get("sqnr_db", math.nan), t, backend))
    for r in sorted(iso.values(), key=lambda r: r["order"]):
        if ranges is None and r["clipped_fraction"] > t.clipped_fraction:
            out.append(_clipping(r["layer_fqn"], r["layer"], r["clipped_fraction"], r["qrange_lo"], r["qrange_hi"],
                                 r["float_min"], r["float_max"], r["sqnr_db"], t, backend))
        elif r["rmse_over_step"] > t.rmse_over_step and r["layer"] not in clipped:
            out.append(Finding(
                "high_rmse", "info", r["layer"], r["layer_fqn"], view, r["sqnr_db"], math.nan, t.rmse_over_step,
                "originates",
                f"the error is {r['rmse_over_step']:.2f} quantization steps RMS; rounding alone gives "
                f"{IDEAL_RMSE_OVER_STEP:.2f}, so the range, the scale or upstream error adds the rest.", "", "", ""))
    for r in sorted(iso.values(), key=lambda r: (-r["range_cv"], r["order"])):
        if not (r["batches"] >= 2 and r["range_cv"] > t.range_instability):
            continue
        linear = r["op_type"].endswith("Linear")
        hint = "dynamic quantization (a range per batch) may suit this Linear" if linear else \
            "calibrate on more, and more representative, data"
        out.append(Finding(
            "unstable_range", "medium" if linear else "info", r["layer"], r["layer_fqn"], view, r["sqnr_db"],
            math.nan, t.range_instability, "originates",
            f"the activation range varies by {r['range_cv']:.0%} (std/mean) across {r['batches']} batches; {hint}.",
            "", "", ""))
    return out


def unset_range_findings(ranges: pd.DataFrame | None) -> list[Finding]:
    """Activations whose int8 range was never set: fake quantization switched off during QAT, or an observer that
    saw no data, so conversion falls back to scale 1 and zero point 0."""
    out = []
    if ranges is None or not len(ranges):
        return out
    for r in ranges[ranges.never_observed | ranges.fake_quant_off].sort_values("order").to_dict("records"):
        why = ("fake quantization after it was switched off during QAT" if r["fake_quant_off"] else "")
        why += (" and " if why else "") + "its observer never saw data" if r["never_observed"] else ""
        out.append(Finding(
            "qat_range_unset", "high", r["layer"], r["layer_fqn"], "ranges", math.nan, math.nan, math.nan,
            "originates",
            f"{why}, so its int8 qparams are the defaults: steps of {r['scale']:.3g} up to {r['qrange_hi']:.3g}, "
            f"while its values span [{r['eval_min']:.3g}, "
            f"{r['eval_max']:.3g}]. Train (or calibrate) with its fake quantization and observer on.", "", "", ""))
    return out


def outlier_image(ranges: pd.DataFrame | None, t: Thresholds) -> tuple[str, int, int] | None:
    """(image, layers it dominates, layers observed) when one calibration input sets at least half the ranges at
    ``calibration_image_ratio`` × the median input or more."""
    if ranges is None or not len(ranges):
        return None
    dominant = ranges[ranges.top_image_ratio >= t.calibration_image_ratio]
    if not len(dominant):
        return None
    image, count = Counter(dominant.top_image).most_common(1)[0]
    return (image, count, len(ranges)) if 2 * count >= len(ranges) else None


def range_mismatch(ranges: pd.DataFrame | None, t: Thresholds) -> dict | None:
    """The model input's (or most layers') evaluation values outside the calibrated range, when they are."""
    if ranges is None or not len(ranges):
        return None
    outside = ranges[ranges.eval_outside_fraction > t.clipped_fraction]
    inputs = ranges[ranges.layer == "input"]
    at_input = len(inputs) and inputs.iloc[0].eval_outside_fraction > t.clipped_fraction
    if not (at_input or 2 * len(outside) >= len(ranges)):
        return None
    row = inputs.iloc[0] if at_input else outside.sort_values("eval_outside_fraction").iloc[-1]
    return {"row": row.to_dict(), "layers": len(outside), "of": len(ranges)}


def data_findings(ranges: pd.DataFrame | None, t: Thresholds, synthetic: bool, evaluation_real: bool) -> list[Finding]:
    """Faults of the calibration data, which hit every layer at once (relative thresholds cannot see them)."""
    out = []
    if synthetic:
        out.append(Finding(
            "synthetic_calibration", "high" if evaluation_real else "medium", "", "", "data", math.nan, math.nan,
            math.nan, "n/a",
            "calibration used generated N(0, 1) noise, not inputs like the model's: every activation range comes "
            "from noise" + (", while evaluation uses real data" if evaluation_real else "") +
            ". Calibrate on a few hundred real inputs (--data).", "", "", ""))
    found = outlier_image(ranges, t)
    if found:
        image, count, total = found
        rows = ranges[ranges.top_image == image]
        lo, hi = rows.top_image_ratio.min(), rows.top_image_ratio.max()
        out.append(Finding(
            "calibration_outlier_image", "high", "", "", "data", math.nan, math.nan, t.calibration_image_ratio, "n/a",
            f"calibration input {image} holds the largest value of {count} of the {total} observed activations, "
            f"{lo:.0f}–{hi:.0f}× the median calibration input's: every range is stretched to fit this one input, "
            "so the others get a few int8 steps. Check it (scale, normalisation) and drop or fix it before "
            "calibrating.", "", "", "", subject=image))
    mismatch = None if found else range_mismatch(ranges, t)
    if mismatch:
        r = mismatch["row"]
        where = "of the model's input values" if r["layer"] == "input" else f"of the values at {r['layer_fqn']}"
        out.append(Finding(
            "calibration_range_mismatch", "high", "", "", "data", math.nan, math.nan, t.clipped_fraction, "n/a",
            f"{r['eval_outside_fraction']:.1%} {where} fall outside the calibrated range [{r['qrange_lo']:.3g}, "
            f"{r['qrange_hi']:.3g}] (evaluation reaches [{r['eval_min']:.3g}, {r['eval_max']:.3g}]); "
            f"{mismatch['layers']} of {mismatch['of']} observed activations clip more than "
            f"{t.clipped_fraction:.0%}. The calibration data does not look like the evaluation data (scale, "
            "normalisation, brightness): calibrate on inputs like those the model will see.", "", "", ""))
    return out
