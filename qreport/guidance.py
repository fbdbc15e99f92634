"""Guidance: stage tables in, ranked findings out (pure data; no torch).

Causes (why) and locations (where) come from ``causes`` and ``locations``; here each finding gets its measured
impact (the simulated output SQNR gained by keeping its layer float), a location gets the likely cause found at
or next to it in the int8 graph, and the list is ranked: severity, then causes before locations, then impact.
"""

from __future__ import annotations

import dataclasses
import math

import pandas as pd

from qreport import causes, locations
from qreport.findings import (CODES, DEFINITIVE, KINDS, SEVERITIES, Finding, Thresholds,  # noqa: F401 (public)
                               change)
from qreport.schema import pass_through_nodes


def _graph_links(graph: pd.DataFrame | None) -> tuple[dict[str, str], dict[str, set[str]]]:
    """(module path or op name -> node, node -> its neighbours through int8 pass-through ops, both directions)."""
    if graph is None or not len(graph):
        return {}, {}
    rows = graph.to_dict("records")
    node_of = {r["layer_fqn"]: r["node"] for r in rows}
    node_of.update({r["node"]: r["node"] for r in rows})
    passes = pass_through_nodes(graph)
    inputs = {r["node"]: list(r["inputs"]) for r in rows}
    consumers: dict[str, list[str]] = {}
    for node, feeding in inputs.items():
        for src in feeding:
            consumers.setdefault(src, []).append(node)

    def walk(node: str, edges: dict[str, list[str]]) -> set[str]:
        seen, todo = set(), list(edges.get(node, []))
        while todo:
            n = todo.pop()
            if n not in seen:
                seen.add(n)
                if n in passes:
                    todo.extend(edges.get(n, []))
        return seen

    return node_of, {n: walk(n, inputs) | walk(n, consumers) | {n} for n in inputs}


def _impacts(sens: pd.DataFrame | None, node_of: dict[str, str]) -> dict[str, float]:
    """node -> simulated output SQNR gained by keeping it float (the sensitivity stage's gain)."""
    if sens is None or not len(sens):
        return {}
    out: dict[str, float] = {}
    for r in sens[sens.kind == "layer"].to_dict("records"):
        node = node_of.get(r["layer_fqn"], r["layer"])
        if math.isfinite(r["gain_db"]):
            out[node] = max(out.get(node, -math.inf), r["gain_db"])
    return out


def _place(f: Finding, node_of: dict[str, str]) -> str | None:
    return node_of.get(f.layer) or node_of.get(f.layer_fqn)


def _measured(found: list[Finding], node_of, near, impacts, t: Thresholds) -> list[Finding]:
    """Each finding with its impact (its layer's, or the largest next to it for a cause), causes with a large
    impact raised to high, and each location with its likely cause."""
    out = []
    for f in found:
        node = _place(f, node_of)
        if node is not None and math.isnan(f.impact_db):
            around = near.get(node, {node}) if f.kind == "cause" else {node}
            gains = [impacts[n] for n in around if n in impacts]
            if gains:
                f = dataclasses.replace(f, impact_db=max(gains))
        if f.kind == "cause" and f.severity != "high" and f.impact_db >= t.impact_high_db:
            f = dataclasses.replace(f, severity="high")
        out.append(f)
    data_causes = [f for f in out if f.kind == "cause" and not f.layer_fqn and f.severity == "high"]
    linked = []
    for f in out:
        if f.kind == "location":
            node = _place(f, node_of)
            around = near.get(node, {node}) if node else set()
            nearby = [c for c in out if c.kind == "cause" and c.layer_fqn and _place(c, node_of) in around]
            nearby.sort(key=lambda c: SEVERITIES.index(c.severity))
            cause = (data_causes or nearby or [None])[0]
            if cause is not None:
                f = dataclasses.replace(f, likely_cause=f"{cause.code} {cause.layer_fqn}".strip())
        linked.append(f)
    return linked


def _rank_key(f: Finding):
    impact = f.impact_db if math.isfinite(f.impact_db) else 0.0
    value = f.value_db if math.isfinite(f.value_db) else -math.inf
    return (SEVERITIES.index(f.severity), ("context", "cause", "location").index(f.kind),
            f.code not in DEFINITIVE, f.code == "inherited_error", -impact, value)


def findings(tables: dict[str, pd.DataFrame], weights_trained: bool = True, backend: str = "x86",
             t: Thresholds = Thresholds(), synthetic: bool = False, evaluation_real: bool = False) -> list[Finding]:
    """All findings, ranked: severity, causes before locations, then measured impact."""
    out: list[Finding] = []
    if not weights_trained:
        out.append(Finding("random_weights", "high", "", "", "model", math.nan, math.nan, math.nan, "n/a",
                           "Weights: random initialisation.", "", "", ""))
    ranges = tables.get("ranges")
    data = causes.data_findings(ranges, t, synthetic, evaluation_real)
    out += data
    out += causes.kernel_findings(tables.get("kernels"), t, backend)
    out += causes.unset_range_findings(ranges)
    out += causes.weight_findings(tables.get("weights"), backend, t)
    out += causes.channel_findings(tables.get("channels"), t, backend)
    shadow, prop_df = tables.get("shadow"), tables.get("activations")
    acts = shadow if shadow is not None else prop_df
    whole_model = any(f.code in ("calibration_outlier_image", "calibration_range_mismatch") for f in data)
    out += causes.range_findings(acts, ranges, t, backend, whole_model,
                                 view="isolated" if shadow is not None else "propagated")
    out += locations.sensitivity_findings(tables.get("sensitivity"), backend)
    graph = tables.get("graph")
    passes = pass_through_nodes(graph)
    prop = {r["layer"]: r for r in prop_df.to_dict("records")} if prop_df is not None and len(prop_df) else {}
    origins = locations.origin_findings(shadow, prop, passes, backend, t)
    iso = {r["layer"]: r for r in shadow.to_dict("records")} if shadow is not None and len(shadow) else {}
    out += origins + locations.inherited_finding(prop_df, iso, origins, t)
    node_of, near = _graph_links(graph)
    out = _measured(out, node_of, near, _impacts(tables.get("sensitivity"), node_of), t)
    return sorted(out, key=_rank_key)


def findings_table(found: list[Finding]) -> pd.DataFrame:
    """Findings as the guidance stage's table, ranked from 1."""
    rows = [{"rank": i + 1, "kind": f.kind, **dataclasses.asdict(f)} for i, f in enumerate(found)]
    return pd.DataFrame(rows, columns=["rank", "kind"] + [f.name for f in dataclasses.fields(Finding)])
