"""Stage tables -> plain view-model data for the template; every number arrives formatted."""

from __future__ import annotations

import dataclasses
import math

import pandas as pd

from qreport import guidance as rules
from qreport.config import parse_qconfig_text
from qreport.locations import SIM_ACTIVATIONS, SIM_ALL, SIM_REAL, SIM_WEIGHTS
from qreport.render import charts
from qreport.render.cards import layer_cards
from qreport.render.diagnosis import diagnosis
from qreport.render.graph import graph_view
from qreport.render.fmt import dom_id, fmt_db, fmt_num, fmt_pct, sort_key
from qreport.schema import STAGES
from qreport.store import RunReader

SIM_LABELS = {SIM_REAL: "int8 model (real)", SIM_ALL: "all quantized (simulated)",
              SIM_WEIGHTS: "weights only quantized", SIM_ACTIVATIONS: "activations only quantized"}


# What a failed stage means for the numbers, and what to do.
SIMULATION_FAITHFUL_DB = 20.0  # below this the simulated int8 output does not stand for the real one

STAGE_MEANING = {
    "graph": "Without the graph, pass-through ops cannot be told apart and the guidance cannot link causes to places.",
    "weights": "There is no weights view: weight outliers and per-tensor weights are not checked.",
    "activations": "There is no propagated view: where error accumulates is unknown, and the verdict cannot be GOOD.",
    "shadow": "There is no isolated view, so where error originates cannot be told from where it is only carried; "
              "the propagated view, weights, model and sensitivity still hold. Keeping the op that blocks it float "
              "(--non-traceable) or comparing without it are the ways round.",
    "kernels": "The int8 kernels were not checked on their own.",
    "model": "There are no model-level numbers (output SQNR, agreement, accuracy).",
    "channels": "Input channel outliers were not measured.",
    "ranges": "Calibrated ranges were not checked against the data, so calibration faults cannot be named.",
    "sensitivity": "There is no simulated sensitivity, so no float set is suggested.",
    "coverage": "Coverage is missing: which layers were compared is not listed.",
    "guidance": "There is no guidance and no verdict.",
    "fix": "The remedies were not measured, so none is recommended.",
}


def _records(df: pd.DataFrame | None) -> list[dict]:
    return [] if df is None else df.to_dict("records")


def _median(values) -> float:
    finite = sorted(v for v in values if v is not None and math.isfinite(v))
    if not finite:
        return math.nan
    mid = len(finite) // 2
    return finite[mid] if len(finite) % 2 else (finite[mid - 1] + finite[mid]) / 2


def _bad(values, median, gap: float) -> list[bool]:
    return [math.isfinite(median) and v is not None and math.isfinite(v) and median - v >= gap for v in values]


def _cell(value, text, cls: str = "") -> dict:
    return {"text": text, "sort": sort_key(value), "cls": cls}


def _joined(weights, prop, iso):
    """(layer, weights row, propagated row, isolated row) per layer, in execution order, matched by layer name.

    Missing rows are ``{}``. Order: the propagated view's, then layers only the other views have.
    """
    w = {r["layer"]: r for r in weights}
    p = {r["layer"]: r for r in prop}
    i = {r["layer"]: r for r in iso}
    order = [r["layer"] for r in prop] or [r["layer"] for r in iso] or [r["layer"] for r in weights]
    order += [k for k in list(i) + list(w) if k not in order]
    return [(layer, w.get(layer, {}), p.get(layer, {}), i.get(layer, {})) for layer in dict.fromkeys(order)]


def layer_rows(weights, prop, iso, t: rules.Thresholds, flagged_weights=frozenset()) -> list[dict]:
    """One table row per layer in execution order, joining the three views by Numeric Suite layer name."""
    medians = {k: _median(r["sqnr_db"] for r in rows) for k, rows in (("w", weights), ("p", prop), ("i", iso))}
    rows = []
    for n, (layer, w_row, p_row, i_row) in enumerate(_joined(weights, prop, iso)):
        base = p_row or i_row or w_row
        act = i_row or p_row

        def db(row, key):
            v = row.get("sqnr_db", math.nan)
            flagged = (key == "w" and layer in flagged_weights) or _bad([v], medians[key], t.gap_medium_db)[0]
            return _cell(v, fmt_db(v), "bad" if flagged else "")

        rmse = act.get("rmse_over_step", math.nan)
        isolated = bool(i_row)  # the rest come from the propagated view: shown, marked, never flagged as the op's own
        clipped = act.get("clipped_fraction", math.nan)
        rows.append({
            "id": dom_id(f"layer-{n}", base["layer_fqn"]),
            "fqn": _cell(base["layer_fqn"], base["layer_fqn"]),
            "op": _cell(base["op_type"], base["op_type"]),
            "order": _cell(n, str(n)),
            "weights": db(w_row, "w"),
            "propagated": db(p_row, "p"),
            "isolated": db(i_row, "i"),
            "cosine": _cell(act.get("cosine", math.nan), fmt_num(act.get("cosine", math.nan), 5)),
            "rmse": _cell(rmse, fmt_num(rmse, 2) + ("" if isolated or not p_row else " †"),
                          "bad" if isolated and rmse > t.rmse_over_step else ""),
            "clipped": _cell(clipped, fmt_pct(clipped, 2) + ("" if isolated or not p_row else " †"),
                             "bad" if isolated and clipped > t.clipped_fraction else ""),
            "range": _cell(act.get("float_max", math.nan),
                           f"{fmt_num(act.get('float_min', math.nan))} … {fmt_num(act.get('float_max', math.nan))}"),
            "after": act.get("compared_after", ""),
            "nonfinite": int(act.get("nonfinite_count", 0) or 0),
        })
    return rows


def raw_layers(weights, prop, iso) -> list[dict]:
    """Per-layer SQNR of the three views, unformatted, in execution order."""
    out = []
    for n, (_, w_row, p_row, i_row) in enumerate(_joined(weights, prop, iso)):
        base = p_row or i_row or w_row
        out.append({"layer_fqn": base["layer_fqn"], "op_type": base["op_type"], "order": n,
                    "weights_db": w_row.get("sqnr_db", math.nan),
                    "propagated_db": p_row.get("sqnr_db", math.nan),
                    "isolated_db": i_row.get("sqnr_db", math.nan)})
    return out


def _threshold_text(f: dict) -> str:
    if math.isnan(f["threshold"]):
        return ""
    if f["code"] == "sensitive_layer":
        return f"target output SQNR {f['threshold']:g} dB (--target-sqnr)"
    if f["code"] == "per_tensor_weights":
        return f"{f['threshold']:g} dB below the per-channel layers' median"
    return f"{f['threshold']:g} dB below the median"


def _cause_text(likely: str) -> str:
    """``outlier_input_channels fc`` -> ``outlier input channels at fc``."""
    code, _, layer = likely.partition(" ")
    return f"{code.replace('_', ' ')} at {layer}" if layer else code.replace("_", " ")


def _findings(guidance: list[dict]) -> list[dict]:
    out = []
    for f in guidance:
        out.append({
            "rank": int(f["rank"]),
            "code": f["code"],
            "severity": f["severity"],
            "layer_fqn": f["layer_fqn"],
            "view": f["view"],
            "value": fmt_db(f["value_db"]),
            "median": fmt_db(f["median_db"]),
            "threshold": _threshold_text(f),
            "origin": f["origin"],
            "evidence": f["evidence"],
            "change_toml": f["change_toml"],
            "change_python": f["change_python"],
            "kind": f.get("kind", ""),
            "subject": f.get("subject", ""),
            "layer": f["layer"],
            "likely_cause": _cause_text(f.get("likely_cause", "")),
            "impact": fmt_db(f["impact_db"]) if f.get("impact_db") is not None and math.isfinite(f["impact_db"])
            and f["impact_db"] > 0 else "",
        })
    return out


def fmt_interval(lo, hi, fmt=fmt_pct) -> str:
    """``[91.2 %, 97.0 %]``, or ``""`` when the interval is missing."""
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return ""
    return f"[{fmt(lo)}, {fmt(hi)}]"


def fmt_points(v) -> str:
    """A difference of two fractions in percentage points, signed: ``+3.5 pt``."""
    if v is None or not math.isfinite(v):
        return "—"
    return f"{100 * v:+.1f} pt"


def accuracy_view(row: dict) -> dict | None:
    """Float and int8 accuracy, their drop and the user's metric, formatted with intervals; None without labels."""
    n = int(row.get("labelled_samples", 0) or 0)
    if not n:
        return None
    has_accuracy = math.isfinite(row.get("float_accuracy", math.nan))
    metric = row.get("metric_name") or ""
    return {
        "images": n,
        "has_accuracy": has_accuracy,
        "float": fmt_pct(row["float_accuracy"]), "float_ci": fmt_interval(row["float_accuracy_lo"], row["float_accuracy_hi"]),
        "int8": fmt_pct(row["int8_accuracy"]), "int8_ci": fmt_interval(row["int8_accuracy_lo"], row["int8_accuracy_hi"]),
        "drop": fmt_points(row["accuracy_drop"]),
        "drop_ci": fmt_interval(row["accuracy_drop_lo"], row["accuracy_drop_hi"], fmt_points),
        "lost": int(row.get("images_lost", 0) or 0), "gained": int(row.get("images_gained", 0) or 0),
        "p": fmt_num(row.get("mcnemar_p", math.nan), 2),
        "metric": metric,
        "float_metric": fmt_num(row.get("float_metric", math.nan), 4),
        "int8_metric": fmt_num(row.get("int8_metric", math.nan), 4),
        "metric_drop": fmt_num(row.get("metric_drop", math.nan), 3),
        "metric_drop_ci": fmt_interval(row.get("metric_drop_lo"), row.get("metric_drop_hi"), lambda v: fmt_num(v, 3)),
    }


def _modules(changes: str) -> list[str]:
    """The module paths a rung's qconfig TOML names ([] for a data change)."""
    if not changes.startswith("[modules]"):
        return []
    return [o.module for o in parse_qconfig_text(changes, "fix")]


def _change_text(changes: str) -> str:
    """A rung's change as the lines to copy: the TOML entries, or the data change in words."""
    return changes.removeprefix("[modules]\n").strip()


def _ladder(rows: list[dict], before: dict, labelled: bool) -> dict | None:
    """The measured rungs, formatted, and the quality-against-cost chart (the first point is the plain int8 model)."""
    rungs = sorted((r for r in rows if r["step"] == "rung"), key=lambda r: r["rung"])
    if not rungs:
        return None
    key, unit = ("int8_accuracy", "%") if labelled else ("output_sqnr_db", "dB")
    scale = 100.0 if unit == "%" else 1.0
    points = [before] + rungs
    return {
        "rows": [{"number": r["rung"] + 1, "kind": r["kind"], "change": _change_text(r["changes"]),
                  "modules": _modules(r["changes"]), "because": r["note"],
                  "accuracy": fmt_pct(r["int8_accuracy"]) if labelled else "", "sqnr": fmt_db(r["output_sqnr_db"]),
                  "macs": fmt_pct(r["float_mac_share"]), "kept": bool(r["kept"])} for r in rungs],
        "quality": "int8 accuracy" if labelled else "output SQNR",
        "chart": charts.ladder_chart([p["float_mac_share"] for p in points], [scale * p[key] for p in points],
                                     [True] + [bool(r["kept"]) for r in rungs],
                                     ["int8"] + [str(r["rung"] + 1) for r in rungs], unit),
    }


def _fix(fix: list[dict]) -> dict | None:
    """The measured ladder and its result (before → after), formatted, and the changes dropped because they cannot
    be built; None when the guidance had no change to try."""
    rows = {r["step"]: r for r in fix if r["step"] in ("before", "after")}
    dropped = [{"changes": r["changes"].removeprefix("[modules]\n").strip(), "note": r["note"]}
               for r in fix if r["step"] == "dropped"]
    before = rows.get("before")
    if before is None or (len(fix) == 1 and not dropped):
        return None
    after = rows.get("after")
    labelled = accuracy_view(before)
    has_accuracy = bool(labelled and labelled["has_accuracy"])

    def pair(key, fmt):
        return {"before": fmt(before[key]), "after": fmt(after[key]) if after else "—"}

    return {
        "ladder": _ladder(fix, before, has_accuracy),
        "changes": after["changes"] if after else "",
        "data_change": after["note"] if after else "",
        "count": len(_modules(after["changes"])) if after else 0,
        "recommended": bool(after["recommended"]) if after else False,
        "measured": after is not None,
        "dropped": dropped,
        "output_sqnr": pair("output_sqnr_db", fmt_db),
        "top1": pair("top1_agreement", fmt_pct),
        "accuracy": {"before": fmt_pct(before["int8_accuracy"]), "after": fmt_pct(after["int8_accuracy"]),
                     "before_ci": fmt_interval(before["int8_accuracy_lo"], before["int8_accuracy_hi"]),
                     "after_ci": fmt_interval(after["int8_accuracy_lo"], after["int8_accuracy_hi"]),
                     "float": fmt_pct(before["float_accuracy"]),
                     "gained": (after["int8_accuracy"] or 0) - (before["int8_accuracy"] or 0)}
        if after and has_accuracy else None,
        "metric": {"name": before["metric_name"], "before": fmt_num(before["int8_metric"], 4),
                   "after": fmt_num(after["int8_metric"], 4)} if after and labelled and labelled["metric"] else None,
        "samples": int(before.get("samples", 0) or 0),
        "params": pair("float_param_share", fmt_pct),
        "macs": pair("float_mac_share", fmt_pct),
        "boundaries": pair("qdq_boundaries", str),
        "gain_db": after["output_sqnr_db"] - before["output_sqnr_db"] if after else math.nan,
    }


def _sensitivity(sens: list[dict]) -> dict | None:
    """The simulated whole-model split and the per-layer sensitivity chart."""
    if not sens:
        return None
    model = [r for r in sens if r["kind"] == "model"]
    layers = sorted((r for r in sens if r["kind"] == "layer"), key=lambda r: r["order"])
    by_name = {r["layer"]: r for r in model}
    base = by_name.get(SIM_ALL, {}).get("quant_alone_sqnr_db", math.nan)
    agreement = by_name.get(SIM_ALL, {}).get("sim_vs_real_db", math.nan)
    chosen = sorted((r for r in layers if r["greedy_step"] >= 0), key=lambda r: r["greedy_step"])
    target = layers[0]["target_sqnr_db"] if layers else math.nan
    reached = bool(chosen) and chosen[-1]["greedy_sqnr_db"] >= target
    return {
        "split": [{"name": SIM_LABELS.get(r["layer"], r["layer"]), "sqnr": fmt_db(r["quant_alone_sqnr_db"]), "top1": fmt_pct(r["quant_alone_top1"])}
                  for r in model],
        "agreement": fmt_db(agreement),
        "unfaithful": math.isfinite(agreement) and agreement < SIMULATION_FAITHFUL_DB,
        "images": layers[0]["images"] if layers else 0,
        "target": fmt_db(target),
        "chosen": [{"fqn": r["layer_fqn"], "sqnr": fmt_db(r["greedy_sqnr_db"])} for r in chosen],
        "reached": reached,
        "base": fmt_db(base),
        "chart": charts.sensitivity_chart([r["layer_fqn"] for r in layers], [r["quant_alone_sqnr_db"] for r in layers],
                                          [r["float_alone_sqnr_db"] for r in layers],
                                          [r["greedy_step"] >= 0 for r in layers], base, target) if layers else "",
    }


def _verdict(stored: list[dict], model: list[dict], findings: list[dict], iso, prop) -> dict:
    """The stored verdict with the numbers it rests on, formatted (runs without a verdict table: "unknown")."""
    m = model[0] if model else {}
    v = stored[0] if stored else {"level": "unknown", "rule": "this run stored no verdict", "flagged": [],
                                  "not_compared": []}
    return {
        "level": v["level"],
        "rule": v["rule"],
        "not_compared": list(v["not_compared"]),
        "output_sqnr": fmt_db(m.get("output_sqnr_db", math.nan)),
        "top1": fmt_pct(m.get("top1_agreement", math.nan)),
        "top1_ci": fmt_interval(m.get("agreement_lo"), m.get("agreement_hi")),
        "samples": int(m.get("samples", 0) or 0),
        "accuracy": accuracy_view(m) if m else None,
        "bad_count": len(v["flagged"]),
        "layer_count": len(iso) or len(prop),
        "worst": next((f for f in findings if f["layer_fqn"]), None),
    }


def _classes(rows: list[dict], limit: int = 20) -> dict | None:
    """Per-class accuracy, largest drop first (at most ``limit`` rows, and how many more)."""
    if not rows:
        return None
    ranked = sorted(rows, key=lambda r: (-r["accuracy_drop"], r["class_index"]))
    return {"rows": [{"name": r["class_name"], "index": r["class_index"], "images": r["images"],
                      "float": fmt_pct(r["float_accuracy"]), "int8": fmt_pct(r["int8_accuracy"]),
                      "drop": fmt_points(r["accuracy_drop"])} for r in ranked[:limit]],
            "more": max(0, len(ranked) - limit), "total": len(ranked)}


def _flips(rows: list[dict], class_names: dict, limit: int = 30) -> dict | None:
    """Images whose prediction flips, the ones int8 gets wrong first."""
    if not rows:
        return None
    ranked = sorted(rows, key=lambda r: (r["int8_correct"], not r["float_correct"], r["image"]))

    def name(c):
        return class_names.get(c, str(c))

    return {"rows": [{"image": r["image"], "label": name(r["label"]), "float": name(r["float_pred"]),
                      "int8": name(r["int8_pred"]),
                      "effect": "lost" if r["float_correct"] and not r["int8_correct"] else
                      "gained" if r["int8_correct"] and not r["float_correct"] else "both wrong"}
                     for r in ranked[:limit]],
            "more": max(0, len(ranked) - limit), "total": len(ranked)}


def _lowered(rows: list[dict]) -> list[dict]:
    """The lowered-kernel table's rows, formatted."""
    return [{"order": r["order"] + 1, "sort": sort_key(r["order"]), "layer_fqn": r["layer_fqn"], "op_type": r["op_type"],
             "sqnr": fmt_db(r["sqnr_db"]), "sqnr_sort": sort_key(r["sqnr_db"]), "rmse": fmt_num(r["rmse_over_step"], 2),
             "max_abs": fmt_num(r["max_abs_err"])} for r in rows]


def build_view(reader: RunReader) -> dict:
    """Everything the report template needs, from a validated run folder."""
    man = reader.manifest
    t = rules.Thresholds(**man["thresholds"]) if "thresholds" in man else \
        rules.Thresholds.from_pairs((man["config"].get("thresholds") or {}).items())
    weights = _records(reader.table("weights"))
    prop = _records(reader.table("activations"))
    iso = _records(reader.table("shadow"))
    model = _records(reader.table("model"))
    classes = _records(reader.table("classes"))
    flips = _records(reader.table("flips"))
    coverage = _records(reader.table("coverage"))
    guidance = _records(reader.table("guidance"))
    fix = _fix(_records(reader.table("fix")))
    sensitivity = _sensitivity(_records(reader.table("sensitivity")))
    findings = _findings(guidance)
    flagged_weights = {f["layer"] for f in guidance if f["view"] == "weights" and f["severity"] in ("high", "medium")}

    rows = layer_rows(weights, prop, iso, t, flagged_weights)
    graph_rows = _records(reader.table("graph"))
    cards = layer_cards(guidance, iso, prop, weights, _records(reader.table("channels")),
                        _records(reader.table("ranges")), graph_rows, t)
    graph = graph_view(graph_rows, {r["layer"]: r["sqnr_db"] for r in iso}, {r["layer"]: r["sqnr_db"] for r in prop},
                       {c["layer"] for c in cards if c["severity"] in ("high", "medium")},
                       {c["layer"]: c["id"] for c in cards})
    card_of = {c["fqn"]: c["id"] for c in cards}
    for f in findings:
        f["card"] = card_of.get(f["layer_fqn"], "")
    charts_view = {}
    if weights:
        charts_view["weights"] = charts.weights_chart([r["layer_fqn"] for r in weights], [r["sqnr_db"] for r in weights],
                                                      [r["layer"] in flagged_weights for r in weights])
    if prop or iso:
        by_iso = {r["layer"]: r["sqnr_db"] for r in iso}
        by_prop = {r["layer"]: r["sqnr_db"] for r in prop}
        order = [r["layer"] for r in (prop or iso)]
        labels = [(r["layer_fqn"]) for r in (prop or iso)]
        iso_values = [by_iso.get(k, math.nan) for k in order]
        charts_view["activations"] = charts.activations_chart(
            labels, [by_prop.get(k, math.nan) for k in order], iso_values,
            _bad(iso_values, _median(iso_values), t.gap_medium_db))

    stages = [{"name": name, **reader.stage_status(name), "meaning": STAGE_MEANING.get(name, "")} for name in STAGES]
    cov_counts = {}
    for r in coverage:
        cov_counts[r["status"]] = cov_counts.get(r["status"], 0) + 1
    verdict = _verdict(_records(reader.table("verdict")), model, findings, iso, prop)
    verdict["layer_count"] = len(rows)  # the same count as the layers table
    return {
        "title": f"qreport · {man['model']['name']}",
        "manifest": man,
        "overrides": man["config"].get("overrides", []),
        "verdict": verdict,
        "graph": graph,
        "layer_cards": cards,
        "diagnosis": diagnosis(verdict, model[0] if model else None, findings, fix,
                               {r["node"]: r["order"] for r in graph_rows}),
        "model": model[0] if model else None,
        "classes": _classes(classes),
        "flips": _flips(flips, {r["class_index"]: r["class_name"] for r in classes}),
        "findings": findings,
        "fix": fix,
        "sensitivity": sensitivity,
        "thresholds": {"gap_medium": t.gap_medium_db, "gap_high": t.gap_high_db, "impact_high": t.impact_high_db,
                       "clipped": fmt_pct(t.clipped_fraction, 0), "rmse": t.rmse_over_step,
                       "all": sorted(dataclasses.asdict(t).items()),
                       "overridden": sorted(dict(man["config"].get("thresholds") or {}))},
        "charts": charts_view,
        "rows": rows,
        "lowered": _lowered(_records(reader.table("lowered"))),
        "coverage": coverage,
        "coverage_counts": sorted(cov_counts.items()),
        "stages": stages,
        "failed_stages": [s for s in stages if s.get("status") != "ok"],
        "raw": {
            "layers": raw_layers(weights, prop, iso),
            "output_sqnr_db": model[0]["output_sqnr_db"] if model else math.nan,
            "top1_agreement": model[0]["top1_agreement"] if model else math.nan,
            "model": model[0] if model and model[0].get("labelled_samples") else None,
            "classes": [{k: (int(v) if k in ("class_index", "images") else v) for k, v in r.items()} for r in classes],
            "flips": [{k: (bool(v) if k.endswith("_correct") else int(v) if k != "image" else v) for k, v in r.items()}
                      for r in flips],
        },
    }
