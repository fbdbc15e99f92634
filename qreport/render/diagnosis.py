"""The report's first sentence: what is wrong, where it starts, why, what the measured remedy buys and how sure
that is, composed from the stored verdict, model numbers, findings and remedy ladder (no torch)."""

from __future__ import annotations

import math

from qreport.render.fmt import fmt_db, fmt_pct

# What each cause is, in a few words ({layer}: where; {subject}: what it is about).
CAUSE_PHRASES = {
    "kernel_defect": "the int8 kernel of {layer} is wrong on this backend",
    "qat_range_unset": "fake quantization at {layer} was off during training, so its int8 range is the default one",
    "calibration_outlier_image": "calibration input {subject} stretches every activation range",
    "calibration_range_mismatch": "the calibration data does not cover the range of the evaluation data",
    "synthetic_calibration": "calibration used synthetic noise instead of real inputs",
    "per_tensor_weights": "per-tensor weights at {layer} cannot fit its channels",
    "weight_outlier": "the weights of {layer} have outliers",
    "outlier_input_channels": "one input channel of {layer} is far larger than the rest",
    "activation_clipping": "activations clip at {layer}",
    "high_rmse": "the error at {layer} is far above rounding",
    "unstable_range": "the activation range of {layer} moves between batches",
}


def _points(v: float) -> str:
    return f"{100 * abs(v):.1f} points"


CAUSE_PLURALS = {
    "kernel_defect": "the int8 kernels of {layer} are wrong on this backend",
    "per_tensor_weights": "per-tensor weights at {layer} cannot fit their channels",
    "weight_outlier": "the weights of {layer} have outliers",
}


def _what(verdict: dict, model: dict) -> str:
    acc = verdict.get("accuracy")
    if acc and acc["has_accuracy"]:
        drop = model["accuracy_drop"]
        sure = f"95 % interval {acc['drop_ci']}, {acc['images']} labelled images"
        if model["accuracy_drop_lo"] > 0:
            return f"int8 loses {_points(drop)} of accuracy ({acc['float']} → {acc['int8']}; {sure})"
        return f"int8 keeps the float accuracy ({acc['float']} → {acc['int8']}; drop {acc['drop']}, {sure})"
    return (f"int8 matches float at {fmt_db(model.get('output_sqnr_db', math.nan))} output SQNR and "
            f"{fmt_pct(model.get('top1_agreement', math.nan))} top-1 agreement ({verdict['samples']} inputs, no labels)")


def _ladder_effect(code: str, fix: dict | None) -> bool | None:
    """Whether a measured rung that answers ``code`` helped (None when none was measured)."""
    rows = [r for r in ((fix or {}).get("ladder") or {}).get("rows", []) if code in r["because"].split(",")]
    return any(r["kept"] for r in rows) if rows else None


def _cause(findings: list[dict], fix: dict | None) -> str:
    causes = [f for f in findings if f["kind"] == "cause" and f["severity"] in ("high", "medium")
              and f["code"] in CAUSE_PHRASES]
    causes.sort(key=lambda f: _ladder_effect(f["code"], fix) is not True)  # a cause whose remedy helped first
    for f in causes:
        same = [g["layer_fqn"] for g in findings if g["code"] == f["code"] and g["layer_fqn"]]
        phrase = CAUSE_PHRASES[f["code"]]
        if len(same) > 1:
            phrase = CAUSE_PLURALS.get(f["code"], phrase)
        text = phrase.format(layer=_names(same) if len(same) > 1 else f["layer_fqn"], subject=f.get("subject", ""))
        if _ladder_effect(f["code"], fix) is False:
            text += " — though the measured remedy did not help beyond the noise, so this is not what limits the output"
        return text
    return ""


def _where(findings: list[dict], order: dict[str, int]) -> str:
    """The earliest (in execution order) op where a high or medium error originates."""
    starts = [f for f in findings if f["code"] == "error_origin" and f["severity"] in ("high", "medium")]
    starts.sort(key=lambda f: order.get(f["layer"], len(order)))
    return starts[0]["layer_fqn"] if starts else ""


_REMEDY_VERBS = {"float": "keeping {modules} float", "per_channel": "per-channel weights for {modules}",
                 "observer": "histogram observers for {modules}",
                 "equalization": "input-weight equalization for {modules}",
                 "bias_correction": "bias correction for {modules}"}


def _names(modules: list[str]) -> str:
    return modules[0] if len(modules) == 1 else ", ".join(modules[:-1]) + " and " + modules[-1]


def _remedy(fix: dict | None) -> str:
    if not fix or not fix.get("measured") or not fix["recommended"]:
        return ""
    steps = [_REMEDY_VERBS[r["kind"]].format(modules=_names(r["modules"])) if r["modules"] else r["change"]
             for r in (fix["ladder"] or {}).get("rows", []) if r["kept"]]
    result = f"int8 accuracy {fix['accuracy']['after']}" if fix["accuracy"] else f"output SQNR {fix['output_sqnr']['after']}"
    return (f"Measured: {'; then '.join(steps) or 'the kept changes'} gives {result}, with {fix['macs']['after']} of "
            f"MACs and {fix['params']['after']} of parameters left in float")


def diagnosis(verdict: dict, model: dict | None, findings: list[dict], fix: dict | None,
              order: dict[str, int] | None = None) -> str:
    """One or two sentences a person can decide from; every number is one the report shows below."""
    if not model:
        return "No model-level comparison was measured; see the stages below."
    what = _what(verdict, model)
    parts = [what[0].upper() + what[1:] + "."]
    cause, where = _cause(findings, fix), _where(findings, order or {})
    if cause and where:
        parts.append(f"The error starts at {where}; the likely cause: {cause}.")
    elif cause:
        parts.append(f"The likely cause: {cause}.")
    elif where:
        parts.append(f"The error starts at {where}; no cause stands out in the evidence.")
    remedy = _remedy(fix)
    if remedy:
        parts.append(remedy + ".")
    elif fix and fix.get("ladder"):
        parts.append("No remedy tried helped beyond the noise of the measurement.")
    missing = verdict.get("not_compared") or []
    if missing:
        parts.append(f"Not compared: {_names(missing[:3])}{' and more' if len(missing) > 3 else ''} — the numbers "
                     "say nothing about " + ("them." if len(missing) > 1 else "it."))
    return " ".join(parts)
