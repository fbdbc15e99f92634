"""Markdown and JSON summaries of a run, for PR comments and ``$GITHUB_STEP_SUMMARY`` (no torch)."""

from __future__ import annotations

import math
import re

from qreport.render.fmt import fmt_db, fmt_pct

_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")
WORST_LAYERS = 5
ACCURACY_KEYS = ("labelled_samples", "float_accuracy", "float_accuracy_lo", "float_accuracy_hi", "int8_accuracy",
                 "int8_accuracy_lo", "int8_accuracy_hi", "accuracy_drop", "accuracy_drop_lo", "accuracy_drop_hi",
                 "images_lost", "images_gained", "mcnemar_p", "metric_name", "float_metric", "int8_metric",
                 "metric_drop", "metric_drop_lo", "metric_drop_hi", "top1_agreement", "agreement_lo", "agreement_hi")


def md_escape(text) -> str:
    """Text that renders literally in Markdown and inertly as HTML (layer names are user data)."""
    text = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MD_SPECIAL.sub(r"\\\1", text)
    return text.replace("\n", " ").replace("\r", " ")


def md_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured Markdown table (cells must already be escaped)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def json_number(v):
    """JSON-safe number: NaN becomes None, infinities become strings."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


def worst_layers(rows: list[dict], findings: list[dict], n: int = WORST_LAYERS) -> list[dict]:
    """The layers the guidance puts first (in its order), then the lowest isolated (else propagated) SQNR, ``n`` at
    most; raw numbers."""
    view = "isolated_db" if any(not math.isnan(r["isolated_db"]) for r in rows) else "propagated_db"
    by_fqn = {r["layer_fqn"]: r for r in rows}
    chosen = list(dict.fromkeys(f["layer_fqn"] for f in findings
                                if f["layer_fqn"] in by_fqn and f["severity"] in ("high", "medium")))
    lowest = sorted(rows, key=lambda r: (math.inf if math.isnan(r[view]) else r[view], r["order"]))
    chosen += [r["layer_fqn"] for r in lowest if r["layer_fqn"] not in chosen]
    return [by_fqn[f] for f in chosen[:n]]


def run_summary(view: dict) -> tuple[str, dict]:
    """The run's Markdown verdict with its worst-layers table, and the same facts as JSON data."""
    man = view["manifest"]
    verdict = view["verdict"]
    raw = view["raw"]
    worst = worst_layers(raw["layers"], view["findings"])
    lines = [f"## qreport: {md_escape(man['model']['name'])} — {verdict['level'].upper()}", ""]
    if not man["weights"]["trained"]:
        lines += ["> **Random weights**: no trained weights were loaded; the numbers describe the architecture only.", ""]
    lines += [view["diagnosis"], ""]
    if man["data"].get("synthetic"):
        lines += ["> **Synthetic calibration data**: activation ranges come from generated noise, not real inputs.", ""]
    acc = verdict["accuracy"]
    if acc and acc["has_accuracy"]:
        lines.append(f"Accuracy **{acc['float']} → {acc['int8']}** (float → int8), drop **{acc['drop']}** "
                     f"(95 % interval {acc['drop_ci']}, {acc['images']} labelled images; {acc['lost']} lost, "
                     f"{acc['gained']} gained).")
    if acc and acc["metric"]:
        lines.append(f"{md_escape(acc['metric'])}: **{acc['float_metric']} → {acc['int8_metric']}** "
                     f"(drop {acc['metric_drop']}, 95 % interval {acc['metric_drop_ci']}, {acc['images']} images).")
    flagged = verdict["bad_count"]
    lines.append(
        f"Output SQNR **{verdict['output_sqnr']}**, top-1 agreement **{verdict['top1']}** {verdict['top1_ci']} "
        f"({verdict['samples']} inputs), **{flagged}** layer{'s' if flagged != 1 else ''} flagged."
    )
    missing = verdict["not_compared"]
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        lines.append(f"Not compared by any activation view: {md_escape(', '.join(missing[:5]))}{more}.")
    lines.append(f"<sub>Verdict rule: {md_escape(verdict['rule'])}.</sub>")
    gates = man.get("gates", [])
    for gate in gates:
        lines.append(f"Gate `{gate['name']}` {'passed' if gate['passed'] else '**FAILED**'}: {md_escape(gate['detail'])}.")
    fix = view.get("fix")
    if fix and fix["measured"]:
        accuracy = (f"int8 accuracy {fix['accuracy']['before']} → **{fix['accuracy']['after']}**, "
                    if fix["accuracy"] else "")
        verdict_text = "`fix.toml`" if fix["recommended"] and fix["changes"] else \
            "recommended" if fix["recommended"] else "not recommended: the effect is negative or within noise"
        what = f"{fix['count']} qconfig change{'s' if fix['count'] != 1 else ''}" if fix["count"] else "no qconfig change"
        data = f"; data change: {md_escape(fix['data_change'])}" if fix["data_change"] else ""
        lines.append(
            f"Measured fix ({what}{data}; {verdict_text}): "
            f"{accuracy}output SQNR {fix['output_sqnr']['before']} → **{fix['output_sqnr']['after']}**, top-1 "
            f"agreement {fix['top1']['before']} → **{fix['top1']['after']}**; parameters in float "
            f"{fix['params']['before']} → {fix['params']['after']}."
        )
    elif fix and fix["ladder"]:
        lines.append(f"Measured fix: none of the {len(fix['ladder']['rows'])} remedies tried helped beyond the noise.")
    for dropped in (fix or {}).get("dropped", []):
        lines.append(f"Change left out, it cannot be built: `{dropped['changes']}` ({md_escape(dropped['note'])}).")
    classes = view.get("classes")
    if classes and classes["rows"][0]["drop"] not in ("—", "+0.0 pt"):
        losing = ", ".join(f"{md_escape(c['name'])} {c['drop']}" for c in classes["rows"][:3])
        lines.append(f"Classes losing most: {losing}.")
    failed = [s["name"] for s in view["failed_stages"] if s.get("status") != "skipped"]
    skipped = [s["name"] for s in view["failed_stages"] if s.get("status") == "skipped"]
    if failed:
        lines.append(f"Stages that failed: {md_escape(', '.join(failed))} (see the report).")
    if skipped:
        lines.append(f"Stages skipped in {md_escape(man['flow'])}: {md_escape(', '.join(skipped))}.")
    lines += ["", "### Worst layers", ""]
    lines.append(md_table(
        ["layer", "op", "isolated", "propagated", "weights"],
        [[md_escape(r["layer_fqn"]), md_escape(r["op_type"]), fmt_db(r["isolated_db"]), fmt_db(r["propagated_db"]),
          fmt_db(r["weights_db"])] for r in worst],
    ))
    serious = [f for f in view["findings"] if f["severity"] in ("high", "medium")]
    top = serious[:5]
    if top:
        lines += ["", "### Guidance", ""]
        for f in top:
            where = f"{md_escape(f['layer_fqn'])}: " if f["layer_fqn"] else ""
            change = f" Try `{f['change_toml']}`." if f["change_toml"] and "`" not in f["change_toml"] else ""
            lines.append(f"- **{f['severity']}** {where}{md_escape(f['code'].replace('_', ' '))} — {md_escape(f['evidence'])}{change}")
        if len(serious) > len(top):
            lines.append(f"- and {len(serious) - len(top)} more high or medium findings (see the report).")
    lines += ["", f"<sub>qreport {md_escape(man['versions']['qreport'])} · torch {md_escape(man['versions']['torch'])} · "
              f"{md_escape(man['data']['source'])} · {md_escape(man['weights']['source'])}</sub>", ""]
    data = {
        "model": man["model"]["name"],
        "verdict": verdict["level"],
        "output_sqnr_db": json_number(raw["output_sqnr_db"]),
        "top1_agreement": json_number(raw["top1_agreement"]),
        "samples": verdict["samples"],
        "flagged_layers": verdict["bad_count"],
        "verdict_rule": verdict["rule"],
        "diagnosis": view["diagnosis"],
        "not_compared": verdict["not_compared"],
        "weights_trained": man["weights"]["trained"],
        "failed_stages": failed,
        "skipped_stages": skipped,
        "gates": gates,
        "accuracy": {k: json_number(raw["model"].get(k)) for k in ACCURACY_KEYS} if raw.get("model") else None,
        "classes": raw.get("classes", []),
        "flips": raw.get("flips", []),
        "fix": {"changes": fix["changes"], "data_change": fix["data_change"], "recommended": fix["recommended"],
                "output_sqnr_db_after": json_number(fix["gain_db"] + raw["output_sqnr_db"]),
                "ladder": [{k: r[k] for k in ("number", "kind", "change", "kept")} for r in fix["ladder"]["rows"]]
                if fix["ladder"] else [], "dropped": fix["dropped"]} if fix else None,
        "worst_layers": [{k: json_number(v) for k, v in r.items()} for r in worst],
        "findings": [{"code": f["code"], "severity": f["severity"], "layer_fqn": f["layer_fqn"]} for f in view["findings"]],
    }
    return "\n".join(lines), data
