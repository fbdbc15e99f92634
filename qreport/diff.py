"""Compare two stored runs layer by layer (matched by module path); pure data, no torch.

The verdict is honest about noise: a run is *better* or *worse* only when its output SQNR moved by more than
``same_within_db`` **and** its int8 accuracy (labelled data) or top-1 agreement moved outside both runs' own 95 %
intervals. Layers whose quantization status changed (e.g. kept float) are listed apart from the layers whose SQNR
improved, every qconfig override that differs is listed entry by entry, and runs of different models are refused
unless asked for.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import PurePosixPath

from qreport.errors import RunDirError
from qreport.overrides import covers
from qreport.store import RunReader

SAME_WITHIN_DB = 0.5  # |delta| below this counts as unchanged
SAME_WITHIN_TOP1 = 0.01  # without intervals (older runs): a top-1 change below one point counts as unchanged
VIEWS = (("weights", "weights"), ("shadow", "isolated"), ("activations", "propagated"))
# (measure, value column, interval columns); int8 accuracy when both runs have labels, else top-1 agreement
MEASURES = {"int8_accuracy": ("int8_accuracy", "int8_accuracy_lo", "int8_accuracy_hi"),
            "top1_agreement": ("top1_agreement", "agreement_lo", "agreement_hi")}
_OVERRIDE_FIELDS = ("preset", "activation", "weight")


class DifferentModelsError(RunDirError):
    """Two runs of different models (name, source or input shape): their layers and numbers do not correspond."""


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


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A model-level measure of one run with its 95 % interval (NaN where the run did not store one)."""

    value: float
    lo: float
    hi: float

    @property
    def has_interval(self) -> bool:
        """Both ends of the interval are known."""
        return not (math.isnan(self.lo) or math.isnan(self.hi))


def _flatten(d, prefix="") -> dict:
    out = {}
    for k, v in (d or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _differences(base: dict, head: dict, skip: tuple[str, ...] = ()) -> list[tuple[str, object, object]]:
    a, b = _flatten(base), _flatten(head)
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k) and k not in skip]


def _settings(manifest: dict) -> dict:
    """The build config with the flow that quantized the model (FX runs store no flow in their config)."""
    return {**(manifest.get("config") or {}), "flow": manifest.get("flow")}


def _column_by_fqn(reader: RunReader, stage: str, column: str) -> dict:
    df = reader.table(stage)
    return {} if df is None else dict(zip(df["layer_fqn"], df[column]))


def _model_row(reader: RunReader) -> dict:
    df = reader.table("model")
    return df.iloc[0].to_dict() if df is not None and len(df) else {}


def _number(row: dict, key: str) -> float:
    v = row.get(key)
    try:
        return math.nan if v is None else float(v)
    except (TypeError, ValueError):
        return math.nan


def _direction(delta: float, same_within: float) -> str:
    if math.isnan(delta):
        return "unknown"
    return "same" if abs(delta) < same_within else "better" if delta > 0 else "worse"


def _interval_direction(base: Estimate, head: Estimate) -> str:
    """better/worse only when the two runs' 95 % intervals do not overlap; same when they do."""
    if math.isnan(base.value) or math.isnan(head.value):
        return "unknown"
    if not (base.has_interval and head.has_interval):  # older runs: a point change of a full point
        return _direction(head.value - base.value, SAME_WITHIN_TOP1)
    if head.lo > base.hi:
        return "better"
    if head.hi < base.lo:
        return "worse"
    return "same"


def _verdict(signals: list[str]) -> str:
    """better/worse when every signal agrees on it; same when none moved; mixed when they point both ways;
    inconclusive when one moved and another did not (or could not be measured)."""
    known = [s for s in signals if s != "unknown"]
    if not known:
        return "unknown"
    if {"better", "worse"} <= set(known):
        return "mixed"
    if set(known) == {"same"}:
        return "same"
    if len(known) == len(signals) and len(set(known)) == 1:
        return known[0]
    return "inconclusive"


def model_identity(manifest: dict) -> dict:
    """What makes two runs the same model: its name, where it came from and its input shape. A model file is
    named by its file name and factory, so the same file reached by another path is the same model."""
    model = manifest.get("model") or {}
    source = str(model.get("source") or "")
    path, colon, factory = source.rpartition(":")
    if colon and path.endswith(".py"):
        source = f"{PurePosixPath(path.replace(chr(92), '/')).name}:{factory}"
    shape = model.get("input_shape")
    return {"name": model.get("name"), "source": source, "input_shape": list(shape) if shape else None}


def _describe(identity: dict) -> str:
    shape = "×".join(str(d) for d in identity["input_shape"] or []) or "unknown"
    return f"{identity['name']} ({identity['source'] or 'unknown source'}, input {shape})"


def check_same_model(base: RunReader, head: RunReader) -> None:
    """Refuse two runs of different models, in one line."""
    a, b = model_identity(base.manifest), model_identity(head.manifest)
    if a != b:
        raise DifferentModelsError(
            f"base {base.path} is {_describe(a)} but head {head.path} is {_describe(b)}: different models, whose "
            "layers and numbers do not correspond; pass --allow-different-models to compare them anyway")


def caveats(manifest: dict) -> dict:
    """What limits a run's numbers: random weights, synthetic calibration data (runs written before the manifest
    recorded ``data.synthetic`` are judged by their ``--data`` option)."""
    weights = manifest.get("weights") or {}
    data = manifest.get("data") or {}
    synthetic = data.get("synthetic")
    if synthetic is None:
        synthetic = (manifest.get("config") or {}).get("data") == "synthetic"
    return {"random_weights": not weights.get("trained", False), "synthetic_data": bool(synthetic)}


def _overrides(config: dict | None) -> dict[str, dict]:
    """module → its override fields; a module overridden twice keeps its last entry, as QConfigMapping does."""
    out = {}
    for o in (config or {}).get("overrides") or []:
        if isinstance(o, dict) and o.get("module") is not None:
            out[str(o["module"])] = {k: o.get(k) for k in _OVERRIDE_FIELDS}
    return out


def override_changes(base_config: dict | None, head_config: dict | None, layers: list[str]) -> list[dict]:
    """Every qconfig override entry that was added, removed or changed, with the compared layers it covers."""
    a, b = _overrides(base_config), _overrides(head_config)
    out = []
    for module in sorted(set(a) | set(b)):
        if a.get(module) != b.get(module):
            out.append({"module": module, "base": a.get(module), "head": b.get(module),
                        "layers": [fqn for fqn in layers if covers(module, fqn)]})
    return out


def compare(base: RunReader, head: RunReader, same_within_db: float = SAME_WITHIN_DB,
            max_drop_db: float | None = None, allow_different_models: bool = False) -> dict:
    """Everything the diff report and summary show: verdict, per-layer deltas, coverage and config changes."""
    identities = {"base": model_identity(base.manifest), "head": model_identity(head.manifest)}
    same_model = identities["base"] == identities["head"]
    if not same_model and not allow_different_models:
        check_same_model(base, head)
    base_model, head_model = _model_row(base), _model_row(head)
    out_delta = LayerDelta("model output", "model", _number(base_model, "output_sqnr_db"),
                           _number(head_model, "output_sqnr_db"), 0).delta_db
    top1_delta = _number(head_model, "top1_agreement") - _number(base_model, "top1_agreement")
    labelled = all(_number(m, "labelled_samples") > 0 and not math.isnan(_number(m, "int8_accuracy"))
                   for m in (base_model, head_model))
    measure = "int8_accuracy" if labelled else "top1_agreement"
    estimates = {side: Estimate(*(_number(row, k) for k in MEASURES[measure]))
                 for side, row in (("base", base_model), ("head", head_model))}
    signals = {"sqnr": _direction(out_delta, same_within_db),
               "interval": _interval_direction(estimates["base"], estimates["head"])}

    layers: dict[str, list[LayerDelta]] = {}
    fqns_base: set[str] = set()
    fqns_head: set[str] = set()
    for stage, view in VIEWS:
        b, h = _column_by_fqn(base, stage, "sqnr_db"), _column_by_fqn(head, stage, "sqnr_db")
        fqns_base |= set(b)
        fqns_head |= set(h)
        order = list(h) + [k for k in b if k not in h]
        layers[view] = [LayerDelta(k, view, b.get(k, math.nan), h.get(k, math.nan), i) for i, k in enumerate(order)]
    status_b, status_h = _column_by_fqn(base, "coverage", "status"), _column_by_fqn(head, "coverage", "status")
    status_changes = [(k, status_b[k], status_h[k]) for k in status_h if k in status_b and status_b[k] != status_h[k]]
    moved = {k for k, _, _ in status_changes}
    scheme_b, scheme_h = _column_by_fqn(base, "weights", "qscheme"), _column_by_fqn(head, "weights", "qscheme")
    scheme_changes = [(k, scheme_b[k], scheme_h[k]) for k in scheme_h
                      if k in scheme_b and scheme_b[k] != scheme_h[k] and k not in moved]
    compared = list(dict.fromkeys(d.layer_fqn for view in ("propagated", "isolated", "weights") for d in layers[view]))
    gate = None
    if max_drop_db is not None:
        passed = math.isfinite(out_delta) and out_delta >= -max_drop_db or out_delta == math.inf
        gate = {"name": "max-drop-db", "threshold": max_drop_db, "passed": bool(passed),
                "detail": f"output SQNR changed by {out_delta:+.2f} dB (allowed drop {max_drop_db:g} dB)"}
    return {
        "base": {"path": str(base.path), "manifest": base.manifest, "model": base_model,
                 "caveats": caveats(base.manifest)},
        "head": {"path": str(head.path), "manifest": head.manifest, "model": head_model,
                 "caveats": caveats(head.manifest)},
        "same_model": same_model,
        "models": identities,
        "verdict": _verdict(list(signals.values())),
        "signals": signals,
        "measure": measure,
        "estimates": estimates,
        "same_within_db": same_within_db,
        "same_within_top1": SAME_WITHIN_TOP1,
        "output_delta_db": out_delta,
        "top1_delta": top1_delta,
        "accuracy_delta": (_number(head_model, "int8_accuracy") - _number(base_model, "int8_accuracy")
                           if labelled else math.nan),
        "layers": layers,
        # layers whose quantization status changed are listed in status_changes, not as SQNR changes
        "changed": {view: sorted((d for d in deltas if d.magnitude() >= same_within_db and d.layer_fqn not in moved),
                                 key=lambda d: (-d.magnitude(), d.order)) for view, deltas in layers.items()},
        "appeared": sorted(fqns_head - fqns_base),
        "disappeared": sorted(fqns_base - fqns_head),
        "status_changes": status_changes,
        "scheme_changes": scheme_changes,
        "override_changes": override_changes(base.manifest.get("config"), head.manifest.get("config"), compared),
        "config_changes": _differences(_settings(base.manifest), _settings(head.manifest), skip=("overrides",)),
        "version_changes": _differences(base.manifest.get("versions"), head.manifest.get("versions")),
        "gate": gate,
    }
