"""Guidance rules: stage tables in, typed findings out (pure data; no torch)."""

from __future__ import annotations

import dataclasses
import json
import math

import pandas as pd


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """Where a number becomes a finding; shown in the report, overridable in the qconfig file's [thresholds]."""

    gap_medium_db: float = 6.0  # this far below the median SQNR of its view: worth a look
    gap_high_db: float = 10.0  # this far below: likely a real accuracy cost
    per_tensor_gap_db: float = 3.0  # a per-tensor layer this far below the per-channel layers: per-channel unused
    clipped_fraction: float = 0.01  # more than 1 % of float values outside the int8 range
    rmse_over_step: float = 0.7  # well above 1/sqrt(12) ≈ 0.289: the error is not just rounding
    outlier_channel_ratio: float = 3.5  # 100th / 97.5th percentile of per-input-channel |max|
    range_instability: float = 0.5  # std / mean of the per-batch activation range
    worst_layers: int = 3  # isolated-view layers always listed, even below the thresholds
    kernel_rmse_over_step: float = 2.0  # an int8 kernel this many output steps off on clean input is defective

    @classmethod
    def from_pairs(cls, pairs) -> "Thresholds":
        """From the ``(name, value)`` pairs a qconfig file gives (unknown names were rejected when parsing)."""
        return cls(**{k: type(getattr(cls(), k))(v) for k, v in (pairs or ())})


# Every code has one explanation partial: templates/partials/finding_<code>.html.j2
CODES = ("random_weights", "kernel_defect", "weight_outlier", "per_tensor_weights", "sensitive_layer", "outlier_input_channels",
         "activation_clipping", "high_rmse", "unstable_range", "error_origin", "inherited_error")


@dataclasses.dataclass(frozen=True)
class Finding:
    """One piece of guidance: what, where, the evidence, and the change to try."""

    code: str
    severity: str
    layer: str
    layer_fqn: str
    view: str
    value_db: float
    median_db: float
    threshold: float
    origin: str
    evidence: str
    change_preset: str
    change_toml: str
    change_python: str


def _severity(gap: float, t: Thresholds) -> str:
    return "high" if gap >= t.gap_high_db else "medium" if gap >= t.gap_medium_db else "info"


def _median(series: pd.Series) -> float:
    finite = series[series.map(math.isfinite)]
    return float(finite.median()) if len(finite) else math.nan


def _db(v: float) -> str:
    return "exact" if v == math.inf else f"{v:.1f} dB"


def change(fqn: str, preset: str, backend: str = "x86") -> tuple[str, str, str]:
    """The preset, its qconfig-file entry and the ``QConfigMapping`` call, for giving module ``fqn`` a preset.

    Ops that are not modules (``block:add``) get no change: a module-level override would cover the whole block.
    """
    if ":" in fqn or not fqn:
        return "", "", ""
    toml = f"{json.dumps(fqn)} = {json.dumps(preset)}"
    reduce_range = backend == "x86"
    python = {
        "float": f"qconfig_mapping.set_module_name({fqn!r}, None)",
        "per_channel": (
            f"qconfig_mapping.set_module_name({fqn!r}, QConfig(activation=get_default_qconfig({backend!r}).activation, "
            "weight=default_per_channel_weight_observer))"
        ),
        "histogram": (
            f"qconfig_mapping.set_module_name({fqn!r}, QConfig(activation=HistogramObserver.with_args("
            f"reduce_range={reduce_range}), weight=default_per_channel_weight_observer))"
        ),
    }[preset]
    return preset, toml, python


def _by_layer(df: pd.DataFrame | None) -> dict[str, dict]:
    if df is None or not len(df):
        return {}
    return {r["layer"]: r for r in df.to_dict("records")}


def _weight_findings(weights: pd.DataFrame, backend: str, t: Thresholds) -> list[Finding]:
    """Weight outliers, and per-tensor layers that per-channel scales (which the backend supports) would help."""
    out = []
    median = _median(weights["sqnr_db"])
    per_channel = weights[~weights["qscheme"].str.startswith("per_tensor")]
    median_pc = _median(per_channel["sqnr_db"]) if len(per_channel) else math.nan
    median_pc_channel = _median(per_channel["worst_channel_sqnr_db"]) if len(per_channel) else math.nan
    for r in weights.sort_values(["sqnr_db", "order"]).to_dict("records"):
        per_tensor = r["qscheme"].startswith("per_tensor")
        gap = median - r["sqnr_db"]
        # one wide channel barely moves the layer's SQNR but crushes the others: look at the worst channel too
        gap_pc = max(median_pc - r["sqnr_db"], median_pc_channel - r["worst_channel_sqnr_db"])
        channel = f"worst output channel {r['worst_channel']} at {_db(r['worst_channel_sqnr_db'])}"
        if per_tensor and gap_pc >= t.per_tensor_gap_db:
            chg = change(r["layer_fqn"], "per_channel", backend)
            out.append(Finding(
                "per_tensor_weights", "high" if gap_pc >= t.gap_high_db else "medium", r["layer"], r["layer_fqn"],
                "weights", r["sqnr_db"], median_pc, t.per_tensor_gap_db, "originates",
                f"weights quantized per tensor: SQNR {_db(r['sqnr_db'])} and {channel}, against medians of "
                f"{_db(median_pc)} and {_db(median_pc_channel)} (worst channel) in the per-channel layers.",
                *chg))
        elif gap >= t.gap_medium_db:
            chg = change(r["layer_fqn"], "per_channel" if per_tensor else "float", backend)
            why = "per-channel scales fit each output channel" if per_tensor else \
                "the weights are already per-channel, so keep the layer in float"
            out.append(Finding(
                "weight_outlier", _severity(gap, t), r["layer"], r["layer_fqn"], "weights", r["sqnr_db"], median,
                t.gap_medium_db, "originates",
                f"weight SQNR {_db(r['sqnr_db'])}, {gap:.1f} dB below the median {_db(median)}; {channel}; {why}.",
                *chg))
    return out


def _sensitivity_findings(sens: pd.DataFrame | None, backend: str) -> list[Finding]:
    """The greedy float set: layers that, kept float together, reach the target output SQNR (simulated)."""
    if sens is None or not len(sens):
        return []
    model = {r["layer"]: r for r in sens[sens.kind == "model"].to_dict("records")}
    base = model.get("all quantized (simulated)", {}).get("quant_alone_sqnr_db", math.nan)
    layers = sens[sens.kind == "layer"]
    ends = {layers.order.min(): "the model's first quantized op", layers.order.max(): "the model's last quantized op"}
    chosen = layers[layers.greedy_step >= 0].sort_values("greedy_step").to_dict("records")
    out = []
    for r in chosen:
        chg = change(r["layer_fqn"], "float", backend)
        how = "" if chg[0] else " It is not a module, so no per-module override can keep it float: keep its neighbours float."
        if r["order"] in ends:
            how += f" It is {ends[r['order']]}; first and last layers are often the most sensitive."
        out.append(Finding(
            "sensitive_layer", "high" if chg[0] else "info", r["layer"], r["layer_fqn"], "sensitivity",
            r["quant_alone_sqnr_db"], base, r["target_sqnr_db"], "originates",
            f"step {r['greedy_step'] + 1} of the float set aiming at {r['target_sqnr_db']:g} dB: output SQNR "
            f"{_db(r['greedy_sqnr_db'])} once this and the earlier steps are float (all quantized: {_db(base)}); "
            f"quantized alone it gives {_db(r['quant_alone_sqnr_db'])}, kept float alone "
            f"{_db(r['float_alone_sqnr_db'])} (simulated on {r['images']} images).{how}",
            *chg))
    return out


def _channel_findings(channels: pd.DataFrame | None, t: Thresholds) -> list[Finding]:
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
            "outlier_input_channels", "medium", r["layer_fqn"], r["layer_fqn"], "inputs", math.nan, math.nan,
            t.outlier_channel_ratio, "originates",
            f"input channel {r['worst_channel']} reaches {r['input_absmax']:.3g}, {r['outlier_ratio']:.1f}× the "
            f"97.5th percentile of the {r['in_channels']} channels' maxima; {hint}.", "", "", ""))
    return out


def _kernel_findings(kernels: pd.DataFrame | None, t: Thresholds, backend: str) -> list[Finding]:
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
            f"{r['rmse_over_step']:.1f} output steps RMS off the float {r['op_type']} (rounding alone gives 0.29), "
            f"SQNR {_db(r['sqnr_db'])}. This is the {backend} backend's kernel, not your data or ranges: keep it float.",
            *change(r["layer_fqn"], "float", backend)))
    return out


def _range_findings(acts: pd.DataFrame | None, t: Thresholds, backend: str = "x86") -> list[Finding]:
    """Activation ranges that fit badly: values clipped, error far above rounding, ranges moving between batches."""
    out = []
    if acts is None or not len(acts):
        return out
    for r in acts.sort_values(["order"]).to_dict("records"):
        if r["clipped_fraction"] > t.clipped_fraction:
            out.append(Finding(
                "activation_clipping", "medium", r["layer"], r["layer_fqn"], "isolated", r["sqnr_db"], math.nan,
                t.clipped_fraction, "originates",
                f"{r['clipped_fraction']:.1%} of float values fall outside the int8 range "
                f"[{r['qrange_lo']:.3g}, {r['qrange_hi']:.3g}] (float range [{r['float_min']:.3g}, {r['float_max']:.3g}]); "
                "calibration saw a narrower range than evaluation, or the observer cut the tails.",
                *change(r["layer_fqn"], "histogram", backend)))
        elif r["rmse_over_step"] > t.rmse_over_step:
            out.append(Finding(
                "high_rmse", "info", r["layer"], r["layer_fqn"], "isolated", r["sqnr_db"], math.nan, t.rmse_over_step,
                "originates",
                f"the error is {r['rmse_over_step']:.2f} quantization steps RMS; rounding alone gives 0.29, so the "
                "range, the scale or upstream error adds the rest.", "", "", ""))
    for r in acts.sort_values(["range_cv", "order"], ascending=[False, True]).to_dict("records"):
        if not (r["batches"] >= 2 and r["range_cv"] > t.range_instability):
            continue
        linear = r["op_type"].endswith("Linear")
        hint = "dynamic quantization (a range per batch) may suit this Linear" if linear else \
            "calibrate on more, and more representative, data"
        out.append(Finding(
            "unstable_range", "medium" if linear else "info", r["layer"], r["layer_fqn"], "isolated", r["sqnr_db"],
            math.nan, t.range_instability, "originates",
            f"the activation range varies by {r['range_cv']:.0%} (std/mean) across {r['batches']} batches; {hint}.",
            "", "", ""))
    return out


def findings(tables: dict[str, pd.DataFrame], weights_trained: bool = True, backend: str = "x86",
             t: Thresholds = Thresholds()) -> list[Finding]:
    """All findings, most severe and lowest SQNR first."""
    out: list[Finding] = []
    weights = tables.get("weights")
    prop = _by_layer(tables.get("activations"))
    iso_df = tables.get("shadow")
    iso = _by_layer(iso_df)
    if not weights_trained:
        out.append(Finding("random_weights", "high", "", "", "model", math.nan, math.nan, math.nan, "n/a",
                           "Weights: random initialisation.", "", "", ""))
    out.extend(_kernel_findings(tables.get("kernels"), t, backend))
    if weights is not None and len(weights):
        out.extend(_weight_findings(weights, backend, t))
    out.extend(_sensitivity_findings(tables.get("sensitivity"), backend))
    out.extend(_channel_findings(tables.get("channels"), t))
    out.extend(_range_findings(tables.get("shadow") if tables.get("shadow") is not None else tables.get("activations"),
                               t, backend))
    if iso:
        median = _median(iso_df["sqnr_db"])
        ranked = iso_df.sort_values(["sqnr_db", "order"]).to_dict("records")
        for i, r in enumerate(ranked):
            gap = median - r["sqnr_db"]
            if not (gap >= t.gap_medium_db or i < t.worst_layers) or not math.isfinite(r["sqnr_db"]):
                continue
            p = prop.get(r["layer"])
            clipped = r["clipped_fraction"]
            preset = "histogram" if clipped > t.clipped_fraction else "float"
            chg = change(r["layer_fqn"], preset, backend)
            relation = f"{gap:.1f} dB below" if gap >= 0 else f"{-gap:.1f} dB above"
            evidence = [f"isolated SQNR {_db(r['sqnr_db'])}, {relation} the median {_db(median)}"]
            if p is not None:
                evidence.append(f"propagated SQNR {_db(p['sqnr_db'])}")
            if r["rmse_over_step"] > t.rmse_over_step:
                evidence.append(f"RMSE is {r['rmse_over_step']:.2f} quantization steps (ideal 0.29)")
            if clipped > t.clipped_fraction:
                evidence.append(f"{clipped:.1%} of float values clipped by the int8 range")
            if r["compared_after"]:
                evidence.append(f"compared after its {r['compared_after']}")
            out.append(Finding(
                "error_origin", _severity(gap, t), r["layer"], r["layer_fqn"], "isolated", r["sqnr_db"], median,
                t.gap_medium_db, "originates", "; ".join(evidence) + ".", *chg))
    if prop:
        prop_df = tables["activations"]
        median = _median(prop_df["sqnr_db"])
        origins = {f.layer for f in out if f.code == "error_origin"}
        for r in prop_df.sort_values(["sqnr_db", "order"]).to_dict("records"):
            gap = median - r["sqnr_db"]
            if not gap >= t.gap_medium_db or r["layer"] in origins:
                continue
            i = iso.get(r["layer"])
            upstream = [f.layer_fqn for f in out if f.code == "error_origin" and f.severity != "info"
                        and f.layer in prop and prop[f.layer]["order"] < r["order"]]
            iso_text = f"isolated {_db(i['sqnr_db'])}, so this op adds little itself" if i is not None else \
                "no isolated view for this op"
            where = f"start with {upstream[0]}, where error originates" if upstream else \
                "no single upstream op stands out in the isolated view: error builds up over many layers"
            out.append(Finding(
                "inherited_error", "info", r["layer"], r["layer_fqn"], "propagated", r["sqnr_db"], median,
                t.gap_medium_db, "inherited",
                f"propagated SQNR {_db(r['sqnr_db'])}, {gap:.1f} dB below the median; {iso_text}; {where}.",
                "", "", ""))
            break  # the worst one explains the pattern; the chart shows the rest
    rank = {"high": 0, "medium": 1, "info": 2}
    return sorted(out, key=lambda f: (rank[f.severity], f.code != "kernel_defect", f.code == "inherited_error",
                                      f.code == "sensitive_layer",
                                      f.value_db if math.isfinite(f.value_db) else -math.inf))


def findings_table(found: list[Finding]) -> pd.DataFrame:
    """Findings as the guidance stage's table, ranked from 1."""
    rows = [{"rank": i + 1, **dataclasses.asdict(f)} for i, f in enumerate(found)]
    return pd.DataFrame(rows, columns=["rank"] + [f.name for f in dataclasses.fields(Finding)])
