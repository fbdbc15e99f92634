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


def _fmt_delta(v: float) -> str:
    if math.isnan(v):
        return "—"
    if math.isinf(v):
        return "from exact" if v < 0 else "to exact"
    return "0.0 dB" if round(v, 1) == 0 else f"{v:+.1f} dB"


def _row(d) -> dict:
    cls = "bad" if d.delta_db < 0 else "good" if d.delta_db > 0 else ""
    return {"fqn": d.layer_fqn, "base": fmt_db(d.base_db), "head": fmt_db(d.head_db),
            "delta": _fmt_delta(d.delta_db), "sort": sort_key(d.delta_db), "cls": cls}


def _run_label(side: dict) -> str:
    m = side["manifest"]
    return f"{Path(side['path']).name} ({m['model']['name']}, fingerprint {m['fingerprint']})"


def _override_text(o: dict) -> str:
    return f"{o['module']}={o.get('preset') or 'activation ' + str(o.get('activation')) + ', weight ' + str(o.get('weight'))}"


def _setting(value) -> str:
    """A config value as a person reads it; qconfig overrides as ``module=preset``."""
    if isinstance(value, list) and all(isinstance(v, dict) and "module" in v for v in value):
        return "; ".join(_override_text(v) for v in value) or "none"
    return "—" if value is None else str(value)


def diff_view(result: dict) -> dict:
    """View model of a comparison for the diff template."""
    head_order = [d.layer_fqn for d in result["layers"]["propagated"]] or \
        [d.layer_fqn for d in result["layers"]["isolated"]]
    series = {}
    for view, deltas in result["layers"].items():
        # a layer going to or from > EXACT_DB (kept float) is drawn at the chart's edge, not as +100 dB
        by = {d.layer_fqn: (math.copysign(math.inf, d.delta_db) if max(d.base_db, d.head_db) > charts.EXACT_DB
                            else d.delta_db) for d in deltas}
        if view == "weights" or any(not math.isnan(v) for v in by.values()):
            series[view] = [by.get(k, math.nan) for k in head_order]
    return {
        "title": "qreport diff",
        "created": build_timestamp(),
        "base": _run_label(result["base"]),
        "head": _run_label(result["head"]),
        "verdict": result["verdict"],
        "same_within": f"{result['same_within_db']:g} dB",
        "same_within_top1": fmt_pct(result["same_within_top1"], 0),
        "output": {"base": fmt_db(result["base"]["model"].get("output_sqnr_db", math.nan)),
                   "head": fmt_db(result["head"]["model"].get("output_sqnr_db", math.nan)),
                   "delta": _fmt_delta(result["output_delta_db"])},
        "top1": {"base": fmt_pct(result["base"]["model"].get("top1_agreement", math.nan)),
                 "head": fmt_pct(result["head"]["model"].get("top1_agreement", math.nan)),
                 "delta": "—" if math.isnan(result["top1_delta"]) else
                 "0.0 points" if round(100 * result["top1_delta"], 1) == 0 else f"{100 * result['top1_delta']:+.1f} points"},
        "gate": result["gate"],
        "status_changes": [{"fqn": k, "base": a, "head": b} for k, a, b in result["status_changes"]],
        "changed": {view: [_row(d) for d in rows] for view, rows in result["changed"].items()},
        "all_layers": {view: [_row(d) for d in rows] for view, rows in result["layers"].items()},
        "appeared": result["appeared"],
        "disappeared": result["disappeared"],
        "config_changes": [{"key": k, "base": _setting(a), "head": _setting(b)} for k, a, b in result["config_changes"]],
        "version_changes": [{"key": k, "base": _setting(a), "head": _setting(b)} for k, a, b in result["version_changes"]],
        "chart": charts.delta_chart(head_order, series) if head_order else "",
    }


def diff_markdown(view: dict) -> str:
    """The PR-comment verdict of a diff: what got worse, where, by how much."""
    lines = [f"## qreport diff — {view['verdict'].upper()}", "",
             f"Base {md_escape(view['base'])} → head {md_escape(view['head'])}.", "",
             f"Output SQNR {view['output']['base']} → {view['output']['head']} (**{view['output']['delta']}**), "
             f"top-1 agreement {view['top1']['base']} → {view['top1']['head']} (**{view['top1']['delta']}**). "
             f"Unchanged means within {view['same_within']} / {view['same_within_top1']}."]
    if view["gate"]:
        g = view["gate"]
        lines.append(f"Gate `{g['name']}` {'passed' if g['passed'] else '**FAILED**'}: {md_escape(g['detail'])}.")
    if view["status_changes"]:
        lines += ["", "### Quantization changes", "",
                  md_table(["layer", "base", "head"], [[md_escape(s["fqn"]), s["base"], s["head"]]
                                                       for s in view["status_changes"]])]
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


def diff_data(result: dict) -> dict:
    """The comparison as JSON data for machines."""
    return {
        "verdict": result["verdict"],
        "base": result["base"]["path"],
        "head": result["head"]["path"],
        "output_sqnr_delta_db": json_number(result["output_delta_db"]),
        "top1_agreement_delta": json_number(result["top1_delta"]),
        "same_within_db": result["same_within_db"],
        "gate": result["gate"],
        "status_changes": [{"layer_fqn": k, "base": a, "head": b} for k, a, b in result["status_changes"]],
        "changed": {view: [{"layer_fqn": d.layer_fqn, "base_db": json_number(d.base_db), "head_db": json_number(d.head_db),
                            "delta_db": json_number(d.delta_db)} for d in rows] for view, rows in result["changed"].items()},
        "appeared": result["appeared"],
        "disappeared": result["disappeared"],
    }


def render_diff(base_dir, head_dir, out_html, max_drop_db: float | None = None,
                same_within_db: float | None = None) -> dict:
    """Write the diff HTML plus ``<stem>.md`` and ``<stem>.json`` beside it; returns the comparison."""
    kwargs = {} if same_within_db is None else {"same_within_db": same_within_db}
    result = compare(RunReader(base_dir), RunReader(head_dir), max_drop_db=max_drop_db, **kwargs)
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
