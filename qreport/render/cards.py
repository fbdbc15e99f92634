"""Layer cards: one folded panel per layer worth a look (its numbers, findings, ranges, histogram), every value
already formatted; the graph's nodes and the findings link to them by id."""

from __future__ import annotations

import math

from qreport.findings import Thresholds
from qreport.render import charts
from qreport.render.fmt import dom_id, fmt_db, fmt_num, fmt_pct
from qreport.render.graph import resolve

CARDS = 12  # cards in all, unless more layers than this have a high or medium finding (each of those gets one)
HISTOGRAMS = 4  # only the first (worst) cards carry a value histogram: ~27 KB of SVG each
FLAGGED = ("high", "medium")


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not math.isnan(v)


def _by_fqn(rows) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for r in sorted(rows, key=lambda r: r.get("order", 0)):
        out.setdefault(r["layer_fqn"], r)
    return out


def _span(lo, hi) -> str:
    return f"{fmt_num(lo)} … {fmt_num(hi)}"


def _inputs(r: dict | None, t: Thresholds) -> dict | None:
    """The input channel whose |max| stands out most (outlier when above the threshold ratio)."""
    if not r:
        return None
    ratio = r["outlier_ratio"]
    return {"channel": int(r["worst_channel"]), "count": int(r["in_channels"]), "absmax": fmt_num(r["input_absmax"]),
            "ratio": f"{fmt_num(ratio)}×", "outlier": _num(ratio) and ratio > t.outlier_channel_ratio,
            "threshold": f"{t.outlier_channel_ratio:g}×", "weight_spread": f"{fmt_num(r['weight_channel_spread'])}×"}


def _range(r: dict | None, t: Thresholds) -> dict | None:
    """The calibrated range against the int8 range and the evaluation data's, and the share that falls outside."""
    if not r:
        return None
    outside = r["eval_outside_fraction"]
    return {"calibrated": _span(r["cal_min"], r["cal_max"]), "int8": _span(r["qrange_lo"], r["qrange_hi"]),
            "evaluation": _span(r["eval_min"], r["eval_max"]), "outside": fmt_pct(outside, 2),
            "outside_bad": _num(outside) and outside > t.clipped_fraction,
            "images": int(r["calibration_images"] or 0), "top_image": r["top_image"],
            "top_ratio": f"{fmt_num(r['top_image_ratio'])}×", "never_observed": bool(r.get("never_observed", False))}


def _histogram(card_id: str, *rows: dict) -> str:
    r = next((r for r in rows if r and len(r.get("hist_float", ())) > 2), None)
    if r is None or not (_num(r["hist_lo"]) and _num(r["hist_hi"]) and r["hist_hi"] > r["hist_lo"]):
        return ""
    return charts.histogram_chart(card_id, r["hist_lo"], r["hist_hi"], list(r["hist_float"]), list(r["hist_quant"]),
                                  r["qrange_lo"], r["qrange_hi"])


def chosen_layers(guidance, iso, prop, limit: int = CARDS) -> list[str]:
    """Module paths worth a card: those with a high or medium finding (by rank), then the lowest isolated SQNR
    (propagated when nothing was compared in isolation) until ``limit``."""
    flagged = sorted((f for f in guidance if f["layer_fqn"] and f["severity"] in FLAGGED), key=lambda f: f["rank"])
    chosen = list(dict.fromkeys(f["layer_fqn"] for f in flagged))
    lowest = sorted((r for r in (iso or prop) if _num(r["sqnr_db"]) and r["sqnr_db"] != math.inf),
                    key=lambda r: (r["sqnr_db"], r["order"], r["layer_fqn"]))
    for r in lowest:
        if len(chosen) >= limit:
            break
        if r["layer_fqn"] not in chosen:
            chosen.append(r["layer_fqn"])
    return chosen


def layer_cards(guidance, iso, prop, weights, channels, ranges, graph=(), t: Thresholds | None = None,
                limit: int = CARDS) -> list[dict]:
    """One card per chosen layer (see ``chosen_layers``), worst first; ``id`` is ``dom_id("card", layer_fqn)`` and
    ``layer`` the tables' node name, for ``graph_view``'s links."""
    t = t or Thresholds()
    views = [_by_fqn(rows) for rows in (iso, prop, weights, ranges)]
    chan = _by_fqn(channels)
    findings: dict[str, list[dict]] = {}
    for f in sorted(guidance, key=lambda f: f["rank"]):
        if f["layer_fqn"]:
            findings.setdefault(f["layer_fqn"], []).append(f)
    names = {fqn: next((v[fqn]["layer"] for v in views if fqn in v), None) or findings[fqn][0]["layer"]
             for fqn in chosen_layers(guidance, iso, prop, limit)}
    nodes = resolve(graph, names.values())
    ops = {r["node"]: r for r in graph}
    cards, ids = [], set()
    for fqn, layer in names.items():
        i_row, p_row, w_row, r_row = (v.get(fqn, {}) for v in views)
        g_row = ops.get((nodes.get(layer) or [None])[0], {})
        card_id = dom_id("card", fqn)
        while card_id in ids:  # two module paths that differ only in punctuation
            card_id += "-"
        ids.add(card_id)
        own = findings.get(fqn, [])
        severity = next((s for s in ("high", "medium", "info") if any(f["severity"] == s for f in own)), "")
        act = i_row or p_row
        channel = w_row.get("worst_channel", -1)
        cards.append({
            "id": card_id, "layer": layer, "fqn": fqn,
            "op": g_row.get("op_type") or (act or w_row).get("op_type", "").removeprefix("quantized.") or "—",
            "runs": g_row.get("runs", ""),
            "severity": severity,
            "isolated": fmt_db(i_row.get("sqnr_db")), "propagated": fmt_db(p_row.get("sqnr_db")),
            "weights": fmt_db(w_row.get("sqnr_db")),
            "qscheme": w_row.get("qscheme", "").replace("_", " "),
            "worst_channel": f"output channel {int(channel)} at {fmt_db(w_row['worst_channel_sqnr_db'])}"
            if _num(channel) and channel >= 0 else "",
            "rmse": fmt_num(act.get("rmse_over_step"), 2), "clipped": fmt_pct(act.get("clipped_fraction"), 2),
            "findings": [{"rank": int(f["rank"]), "href": f"#finding-{int(f['rank'])}", "code": f["code"],
                          "severity": f["severity"], "evidence": f["evidence"], "change_toml": f["change_toml"]}
                         for f in own],
            "inputs": _inputs(chan.get(fqn), t),
            "range": _range(r_row, t),
            "histogram": _histogram(card_id, i_row, p_row) if len(cards) < HISTOGRAMS else "",
        })
    return cards
