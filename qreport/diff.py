"""Compare two stored runs layer by layer (matched by module path); pure data, no torch."""

from __future__ import annotations

import dataclasses
import math

from qreport.store import RunReader

SAME_WITHIN_DB = 0.5  # |delta| below this counts as unchanged
SAME_WITHIN_TOP1 = 0.01  # top-1 agreement change below one point counts as unchanged
VIEWS = (("weights", "weights"), ("shadow", "isolated"), ("activations", "propagated"))


@dataclasses.dataclass(frozen=True)
class LayerDelta:
    """One layer's SQNR in one view, before and after."""

    layer_fqn: str
    view: str
    base_db: float
    head_db: float
    order: int

    @property
    def delta_db(self) -> float:
        """head − base; ±inf when one side is exact; NaN when a side is missing."""
        b, h = self.base_db, self.head_db
        if math.isnan(b) or math.isnan(h):
            return math.nan
        if b == h:
            return 0.0
        return h - b

    def magnitude(self) -> float:
        """Size of the change for ranking (missing sorts last)."""
        d = self.delta_db
        return -1.0 if math.isnan(d) else abs(d)


def _flatten(d, prefix="") -> dict:
    out = {}
    for k, v in (d or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _differences(base: dict, head: dict) -> list[tuple[str, object, object]]:
    a, b = _flatten(base), _flatten(head)
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def _sqnr_by_fqn(reader: RunReader, stage: str) -> dict[str, float]:
    df = reader.table(stage)
    return {} if df is None else dict(zip(df["layer_fqn"], df["sqnr_db"]))


def _model_row(reader: RunReader) -> dict:
    df = reader.table("model")
    return df.iloc[0].to_dict() if df is not None and len(df) else {}


def _status(reader: RunReader) -> dict[str, str]:
    df = reader.table("coverage")
    return {} if df is None else dict(zip(df["layer_fqn"], df["status"]))


def _direction(delta: float, same_within: float) -> str:
    if math.isnan(delta):
        return "unknown"
    return "same" if abs(delta) < same_within else "better" if delta > 0 else "worse"


def compare(base: RunReader, head: RunReader, same_within_db: float = SAME_WITHIN_DB,
            max_drop_db: float | None = None) -> dict:
    """Everything the diff report and summary show: verdict, per-layer deltas, coverage and config changes."""
    base_model, head_model = _model_row(base), _model_row(head)
    out_delta = LayerDelta("model output", "model", base_model.get("output_sqnr_db", math.nan),
                           head_model.get("output_sqnr_db", math.nan), 0).delta_db
    top1_delta = head_model.get("top1_agreement", math.nan) - base_model.get("top1_agreement", math.nan)
    directions = {_direction(out_delta, same_within_db), _direction(top1_delta, SAME_WITHIN_TOP1)} - {"same", "unknown"}
    verdict = "same" if not directions else directions.pop() if len(directions) == 1 else "mixed"

    layers: dict[str, list[LayerDelta]] = {}
    fqns_base: set[str] = set()
    fqns_head: set[str] = set()
    for stage, view in VIEWS:
        b, h = _sqnr_by_fqn(base, stage), _sqnr_by_fqn(head, stage)
        fqns_base |= set(b)
        fqns_head |= set(h)
        order = list(h) + [k for k in b if k not in h]
        layers[view] = [LayerDelta(k, view, b.get(k, math.nan), h.get(k, math.nan), i) for i, k in enumerate(order)]
    status_b, status_h = _status(base), _status(head)
    status_changes = [(k, status_b[k], status_h[k]) for k in status_h if k in status_b and status_b[k] != status_h[k]]
    gate = None
    if max_drop_db is not None:
        passed = math.isfinite(out_delta) and out_delta >= -max_drop_db or out_delta == math.inf
        gate = {"name": "max-drop-db", "threshold": max_drop_db, "passed": bool(passed),
                "detail": f"output SQNR changed by {out_delta:+.2f} dB (allowed drop {max_drop_db:g} dB)"}
    return {
        "base": {"path": str(base.path), "manifest": base.manifest, "model": base_model},
        "head": {"path": str(head.path), "manifest": head.manifest, "model": head_model},
        "verdict": verdict,
        "same_within_db": same_within_db,
        "same_within_top1": SAME_WITHIN_TOP1,
        "output_delta_db": out_delta,
        "top1_delta": top1_delta,
        "layers": layers,
        "changed": {view: sorted((d for d in deltas if d.magnitude() >= same_within_db),
                                 key=lambda d: (-d.magnitude(), d.order)) for view, deltas in layers.items()},
        "appeared": sorted(fqns_head - fqns_base),
        "disappeared": sorted(fqns_base - fqns_head),
        "status_changes": status_changes,
        "config_changes": _differences(base.manifest.get("config"), head.manifest.get("config")),
        "version_changes": _differences(base.manifest.get("versions"), head.manifest.get("versions")),
        "gate": gate,
    }
