"""Render ``qreport diff``: the comparison as HTML, Markdown and JSON (no torch)."""

from __future__ import annotations

import math
from pathlib import Path

from qreport.diff import compare
from qreport.errors import OutputError
from qreport.render import charts
from qreport.render.fmt import fmt_db, fmt_pct, sort_key
from qreport.render.html import environment
from qreport.render.markdown import json_number, md_escape, md_table
from qreport.store import RunReader, json_text, write_text_atomic
from qreport.timestamp import build_timestamp

TOP_CHANGES = 5
MEASURE_NAMES = {"int8_accuracy": "int8 accuracy", "top1_agreement": "top-1 agreement"}
SCHEMES = {"per_channel_affine": "per-channel", "per_channel_symmetric": "per-channel (symmetric)",
           "per_tensor_affine": "per-tensor", "per_tensor_symmetric": "per-tensor (symmetric)",
           "int4_per_channel_symmetric": "int4 per-channel (symmetric)",
           "int4_per_group_symmetric": "int4 per-group (symmetric)"}
CONCLUSIONS = {
    "better": "Both moved beyond their noise, in the same direction: head is better.",
    "worse": "Both moved beyond their noise, in the same direction: head is worse.",
    "same": "Neither moved beyond its noise.",
    "mixed": "They moved beyond their noise in opposite directions.",
    "inconclusive": "Only one of them moved beyond its noise, so this diff calls it neither better nor worse; "
                    "more evaluation inputs narrow the intervals.",
    "unknown": "Neither could be measured in both runs.",
}
VERDICT_CLASS = {"better": "good", "same": "good", "worse": "bad", "mixed": "warn", "inconclusive": "warn",
                 "unknown": "warn"}


def _fmt_delta(v: float) -> str:
    if math.isnan(v):
        return "—"
    if math.isinf(v):
        return "from exact" if v < 0 else "to exact"
    return "0.0 dB" if round(v, 1) == 0 else f"{v:+.1f} dB"


def _fmt_points(v: float) -> str:
    if math.isnan(v):
        return "—"
    return "0.0 points" if round(100 * v, 1) == 0 else f"{100 * v:+.1f} points"


def _fmt_side(v: float) -> str:
    """An SQNR of one side; above the charts' ceiling it is float rounding noise, not a measured quality."""
    if v is not None and math.isfinite(v) and v > charts.EXACT_DB:
        return f"> {charts.EXACT_DB:.0f} dB"
    return fmt_db(v)


def _row(d) -> dict:
    cls = "bad" if d.delta_db < 0 else "good" if d.delta_db > 0 else ""
    return {"fqn": d.layer_fqn, "base": fmt_db(d.base_db), "head": fmt_db(d.head_db),
            "delta": _fmt_delta(d.delta_db), "sort": sort_key(d.delta_db), "cls": cls}


def _run_label(side: dict) -> str:
    m = side["manifest"]
    return f"{Path(side['path']).name} ({m['model']['name']}, fingerprint {m['fingerprint']})"


def _override_text(o: dict) -> str:
    return f"{o['module']}={o.get('preset') or 'activation ' + str(o.get('activation')) + ', weight ' + str(o.get('weight'))}"


def _override_value(o: dict | None) -> str:
    """One module's override as a person reads it; no entry means the backend's default qconfig."""
    if o is None:
        return "backend default"
    return o.get("preset") or f"activation {o.get('activation')}, weight {o.get('weight')}"


def _setting(value) -> str:
    """A config value as a person reads it; qconfig overrides as ``module=preset``."""
    if isinstance(value, list) and all(isinstance(v, dict) and "module" in v for v in value):
        return "; ".join(_override_text(v) for v in value) or "none"
    return "—" if value is None else str(value)


def _estimate(e, with_interval: bool = True) -> str:
    text = fmt_pct(e.value)
    if with_interval and e.has_interval:
        text += f" [{fmt_pct(e.lo)}, {fmt_pct(e.hi)}]"
    return text


def _sides(flag: str, result: dict) -> str | None:
    """Which runs a caveat applies to: "both runs", "base", "head" or None."""
    on = [side for side in ("base", "head") if result[side]["caveats"][flag]]
    return None if not on else "both runs" if len(on) == 2 else f"the {on[0]} run"


def caveat_lines(result: dict) -> list[dict]:
    """What limits the comparison, said before the verdict: different models, random weights, synthetic data."""
    out = []
    if not result["same_model"]:
        m = result["models"]
        out.append({"title": "Different models.",
                    "text": f"Base is {m['base']['name']} ({m['base']['source']}), head is {m['head']['name']} "
                            f"({m['head']['source']}); compared only because --allow-different-models was given. "
                            "Layers are matched by module path alone and the verdict compares unrelated outputs."})
    where = _sides("random_weights", result)
    if where:
        out.append({"title": "Random weights",
                    "text": f"in {where}: the model was not loaded with trained weights, so these numbers describe the "
                            "architecture, not a trained model; a better or worse here says little about yours."})
    where = _sides("synthetic_data", result)
    if where:
        out.append({"title": "Synthetic calibration data",
                    "text": f"in {where}: activation ranges were calibrated on seeded noise, not on inputs like the "
                            "model's, so every number may differ from a calibration on real data."})
    return out


def verdict_reason(result: dict) -> dict:
    """The verdict's evidence in words: the output SQNR against --same-within, the measure against its intervals."""
    thr = result["same_within_db"]
    delta = result["output_delta_db"]
    base, head = result["base"]["model"], result["head"]["model"]
    sqnr = (f"Output SQNR {fmt_db(base.get('output_sqnr_db', math.nan))} → {fmt_db(head.get('output_sqnr_db', math.nan))}"
            f" ({_fmt_delta(delta)}, {'within' if result['signals']['sqnr'] == 'same' else 'beyond'} ±{thr:g} dB)")
    if result["signals"]["sqnr"] == "unknown":
        sqnr = "Output SQNR not measured in both runs"
    e = result["estimates"]
    name = MEASURE_NAMES[result["measure"]]
    point = e["head"].value - e["base"].value
    if e["base"].has_interval and e["head"].has_interval:
        overlap = result["signals"]["interval"] == "same"
        noise = f"the two runs' 95 % intervals {'overlap' if overlap else 'do not overlap'}"
    else:
        noise = (f"no stored intervals, so a change under {100 * result['same_within_top1']:g} point counts as "
                 "none")
    measure = f"{name} {_estimate(e['base'])} → {_estimate(e['head'])} ({_fmt_points(point)}; {noise})"
    if result["signals"]["interval"] == "unknown":
        measure = f"{name} not measured in both runs"
    return {"sqnr": sqnr, "measure": measure, "conclusion": CONCLUSIONS[result["verdict"]],
            "rule": f"Better or worse needs both: the output SQNR beyond ±{thr:g} dB and the {name} outside both "
                    "runs' 95 % intervals" + (" (labelled evaluation data in both runs)" if
                                               result["measure"] == "int8_accuracy" else "") + "."}


def _view_values(result: dict, fqn: str) -> dict:
    by_view = {view: next((d for d in deltas if d.layer_fqn == fqn), None) for view, deltas in result["layers"].items()}
    return {view: "—" if d is None else f"{_fmt_side(d.base_db)} → {_fmt_side(d.head_db)}" for view, d in by_view.items()}


def quantization_changes(result: dict) -> dict:
    """Every qconfig override that differs, the layers whose status changed and those whose weight scheme did."""
    overrides = [{"module": o["module"], "base": _override_value(o["base"]), "head": _override_value(o["head"]),
                  "layers": o["layers"]} for o in result["override_changes"]]
    status = [{"fqn": k, "base": a, "head": b, **_view_values(result, k)} for k, a, b in result["status_changes"]]
    schemes = [{"fqn": k, "base": SCHEMES.get(a, a), "head": SCHEMES.get(b, b), **_view_values(result, k)}
               for k, a, b in result["scheme_changes"]]
    return {"overrides": overrides, "status": status, "schemes": schemes}


def diff_view(result: dict) -> dict:
    """View model of a comparison for the diff template."""
    head_order = [d.layer_fqn for d in result["layers"]["propagated"]] or \
        [d.layer_fqn for d in result["layers"]["isolated"]]
    moved = {k for k, _, _ in result["status_changes"]}
    series = {}
    for view, deltas in result["layers"].items():
        # a layer whose quantization status changed is listed apart, not drawn; a layer going to or from
        # > EXACT_DB otherwise is drawn at the chart's edge, not as +100 dB
        by = {d.layer_fqn: (math.nan if d.layer_fqn in moved else
                            math.copysign(math.inf, d.delta_db) if max(d.base_db, d.head_db) > charts.EXACT_DB
                            else d.delta_db) for d in deltas}
        if view == "weights" or any(not math.isnan(v) for v in by.values()):
            series[view] = [by.get(k, math.nan) for k in head_order]
    quant = quantization_changes(result)
    e = result["estimates"]
    return {
        "title": "qreport diff",
        "created": build_timestamp(),
        "base": _run_label(result["base"]),
        "head": _run_label(result["head"]),
        "caveats": caveat_lines(result),
        "verdict": result["verdict"],
        "verdict_class": VERDICT_CLASS[result["verdict"]],
        "reason": verdict_reason(result),
        "same_within": f"{result['same_within_db']:g} dB",
        "same_within_top1": fmt_pct(result["same_within_top1"], 0),
        "output": {"base": fmt_db(result["base"]["model"].get("output_sqnr_db", math.nan)),
                   "head": fmt_db(result["head"]["model"].get("output_sqnr_db", math.nan)),
                   "delta": _fmt_delta(result["output_delta_db"])},
        "measure": {"name": MEASURE_NAMES[result["measure"]], "base": _estimate(e["base"]),
                    "head": _estimate(e["head"]), "delta": _fmt_points(e["head"].value - e["base"].value)},
        "top1": {"base": fmt_pct(result["base"]["model"].get("top1_agreement", math.nan)),
                 "head": fmt_pct(result["head"]["model"].get("top1_agreement", math.nan)),
                 "delta": _fmt_points(result["top1_delta"])},
        "gate": result["gate"],
        "quantization": quant,
        "quantization_count": len(quant["status"]) + len(quant["schemes"]),
        "changed": {view: [_row(d) for d in rows] for view, rows in result["changed"].items()},
        "all_layers": {view: [_row(d) for d in rows] for view, rows in result["layers"].items()},
        "appeared": result["appeared"],
        "disappeared": result["disappeared"],
        "config_changes": [{"key": k, "base": _setting(a), "head": _setting(b)} for k, a, b in result["config_changes"]],
        "version_changes": [{"key": k, "base": _setting(a), "head": _setting(b)} for k, a, b in result["version_changes"]],
        "chart": charts.delta_chart(head_order, series) if head_order else "",
    }


def _cell_list(names: list[str], limit: int = 6) -> str:
    shown = ", ".join(md_escape(n) for n in names[:limit]) or "none compared"
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def diff_markdown(view: dict) -> str:
    """The PR-comment verdict of a diff: what limits it, what got worse, where, by how much."""
    lines = [f"## qreport diff — {view['verdict'].upper()}", ""]
    lines += [f"> **{c['title']}** {md_escape(c['text'])}" for c in view["caveats"]]
    if view["caveats"]:
        lines.append("")
    r = view["reason"]
    lines += [f"Base {md_escape(view['base'])} → head {md_escape(view['head'])}.", "",
              f"**Verdict: {view['verdict']}.** {md_escape(r['sqnr'])}; {md_escape(r['measure'])}. "
              f"{r['conclusion']} {md_escape(r['rule'])}"]
    if view["gate"]:
        g = view["gate"]
        lines += ["", f"Gate `{g['name']}` {'passed' if g['passed'] else '**FAILED**'}: {md_escape(g['detail'])}."]
    q = view["quantization"]
    if q["overrides"] or q["status"] or q["schemes"]:
        lines += ["", "### Quantization changes"]
    if q["overrides"]:
        lines += ["", "Qconfig overrides that differ:", "",
                  md_table(["module", "base", "head", "compared layers it covers"],
                           [[md_escape(o["module"]), md_escape(o["base"]), md_escape(o["head"]), _cell_list(o["layers"])]
                            for o in q["overrides"]])]
    if q["status"]:
        lines += ["", "Layers whose quantization status changed (listed here, not among the SQNR changes below, where "
                      "becoming float would read as a large improvement):", "",
                  md_table(["layer", "base", "head", "weights SQNR", "isolated SQNR", "propagated SQNR"],
                           [[md_escape(s["fqn"]), s["base"], s["head"], s["weights"], s["isolated"], s["propagated"]]
                            for s in q["status"]])]
    if q["schemes"]:
        lines += ["", "Layers whose weight quantization scheme changed:", "",
                  md_table(["layer", "base", "head", "weights SQNR", "isolated SQNR"],
                           [[md_escape(s["fqn"]), s["base"], s["head"], s["weights"], s["isolated"]]
                            for s in q["schemes"]])]
    for name in ("weights", "isolated", "propagated"):
        rows = view["changed"].get(name, [])[:TOP_CHANGES]
        if rows:
            lines += ["", f"### Largest {name} changes", "",
                      md_table(["layer", "base", "head", "change"],
                               [[md_escape(r["fqn"]), r["base"], r["head"], r["delta"]] for r in rows])]
    if view["appeared"] or view["disappeared"]:
        lines += ["", f"Layers appeared: {md_escape(', '.join(view['appeared']) or 'none')}; "
                      f"disappeared: {md_escape(', '.join(view['disappeared']) or 'none')}."]
    if view["config_changes"]:
        lines += ["", "Config changes: " + "; ".join(
            f"{md_escape(c['key'])}: {md_escape(c['base'])} → {md_escape(c['head'])}" for c in view["config_changes"])]
    return "\n".join(lines) + "\n"


def _estimate_data(e) -> dict:
    return {"value": json_number(e.value), "lo": json_number(e.lo), "hi": json_number(e.hi)}


def diff_data(result: dict) -> dict:
    """The comparison as JSON data for machines."""
    return {
        "verdict": result["verdict"],
        "signals": result["signals"],
        "measure": result["measure"],
        "estimates": {side: _estimate_data(e) for side, e in result["estimates"].items()},
        "base": result["base"]["path"],
        "head": result["head"]["path"],
        "same_model": result["same_model"],
        "caveats": {side: result[side]["caveats"] for side in ("base", "head")},
        "output_sqnr_delta_db": json_number(result["output_delta_db"]),
        "top1_agreement_delta": json_number(result["top1_delta"]),
        "int8_accuracy_delta": json_number(result["accuracy_delta"]),
        "same_within_db": result["same_within_db"],
        "gate": result["gate"],
        "override_changes": result["override_changes"],
        "status_changes": [{"layer_fqn": k, "base": a, "head": b} for k, a, b in result["status_changes"]],
        "scheme_changes": [{"layer_fqn": k, "base": a, "head": b} for k, a, b in result["scheme_changes"]],
        "changed": {view: [{"layer_fqn": d.layer_fqn, "base_db": json_number(d.base_db), "head_db": json_number(d.head_db),
                            "delta_db": json_number(d.delta_db)} for d in rows] for view, rows in result["changed"].items()},
        "appeared": result["appeared"],
        "disappeared": result["disappeared"],
    }


def render_diff(base_dir, head_dir, out_html, max_drop_db: float | None = None,
                same_within_db: float | None = None, allow_different_models: bool = False) -> dict:
    """Write the diff HTML plus ``<stem>.md`` and ``<stem>.json`` beside it; returns the comparison."""
    kwargs = {} if same_within_db is None else {"same_within_db": same_within_db}
    result = compare(RunReader(base_dir), RunReader(head_dir), max_drop_db=max_drop_db,
                     allow_different_models=allow_different_models, **kwargs)
    view = diff_view(result)
    out = Path(out_html)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {out.parent} ({exc.strerror}); choose another -o") from None
    write_text_atomic(out.with_suffix(".md"), diff_markdown(view))
    write_text_atomic(out.with_suffix(".json"), json_text(diff_data(result)))
    write_text_atomic(out, environment().get_template("diff.html.j2").render(**view))
    return result

