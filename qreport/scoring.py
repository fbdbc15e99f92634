"""Model-level scores of an int8 model against its reference: output SQNR, top-1 agreement and, where the data
has labels, accuracy of both models with intervals, per-class drop and the images whose prediction flips."""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Iterable

import torch

from qreport.data import call
from qreport.stats import mcnemar_p, paired_difference_interval, wilson_interval
from qreport.streaming import LayerStats

BOOTSTRAP_RESAMPLES = 200


def first_tensor(out):
    """The first tensor in a model output (a tensor, or nested tuples/lists/dicts of them)."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out:
        return first_tensor(out[0])
    if isinstance(out, dict) and out:
        return first_tensor(next(iter(out.values())))
    raise TypeError(f"model output is a {type(out).__name__} without tensors")


def _float(out: torch.Tensor) -> torch.Tensor:
    return out.dequantize() if out.is_quantized else out.float()


def score_outputs(pairs) -> dict:
    """Output SQNR and top-1 agreement over (float output, int8 or simulated output) pairs."""
    stats = LayerStats()
    agree = samples = 0
    classes: set[int] = set()
    for ref, out in pairs:
        ref = first_tensor(ref).float()
        out = _float(first_tensor(out))
        stats.update(ref, out)
        if ref.dim() >= 2:
            top_ref, top_out = ref.argmax(dim=1), out.argmax(dim=1)
            agree += int((top_ref == top_out).sum())
            samples += int(top_ref.numel())
            classes.update(int(c) for c in top_ref.unique())
    row = stats.row()
    low, high = wilson_interval(agree, samples)
    return {
        "samples": samples,
        "batches": stats.batches,
        "output_sqnr_db": row["sqnr_db"],
        "top1_agreement": agree / samples if samples else math.nan,
        "agreement_lo": low,
        "agreement_hi": high,
        "cosine": row["cosine"],
        "mse": row["mse"],
        "max_abs_err": row["max_abs_err"],
        "float_top1_classes": len(classes),
        "nonfinite_count": row["nonfinite_count"],
    }


def agreement(float_model, quantized, batches) -> dict:
    """Output SQNR and top-1 agreement of ``quantized`` against ``float_model`` over ``batches``."""
    with torch.no_grad():
        return score_outputs((call(float_model, x), call(quantized, x)) for x in batches)


@dataclasses.dataclass
class Evaluation:
    """Everything the model stage stores: one summary row, per-class rows and flipped-image rows."""

    summary: dict
    classes: list[dict]
    flips: list[dict]


def _accuracy(float_pred, int8_pred, labels) -> dict:
    """Accuracy of both models on the same labelled images, with Wilson and paired intervals."""
    f_ok, q_ok = float_pred == labels, int8_pred == labels
    both = int((f_ok & q_ok).sum())
    only_float = int((f_ok & ~q_ok).sum())
    only_int8 = int((~f_ok & q_ok).sum())
    n = int(labels.numel())
    f_lo, f_hi = wilson_interval(both + only_float, n)
    q_lo, q_hi = wilson_interval(both + only_int8, n)
    d_lo, d_hi = paired_difference_interval(both, only_float, only_int8, n - both - only_float - only_int8)
    return {
        "labelled_samples": n,
        "float_accuracy": (both + only_float) / n, "float_accuracy_lo": f_lo, "float_accuracy_hi": f_hi,
        "int8_accuracy": (both + only_int8) / n, "int8_accuracy_lo": q_lo, "int8_accuracy_hi": q_hi,
        "accuracy_drop": (only_float - only_int8) / n, "accuracy_drop_lo": d_lo, "accuracy_drop_hi": d_hi,
        "images_lost": only_float, "images_gained": only_int8, "mcnemar_p": mcnemar_p(only_float, only_int8),
    }


def _metric(metric: Callable, name: str, ref: torch.Tensor, out: torch.Tensor, labels: torch.Tensor) -> dict:
    """The user's metric on both models' outputs and a seeded paired-bootstrap interval for its drop."""
    def value(outputs, targets) -> float:
        v = metric(outputs, targets)
        return float(v.item() if isinstance(v, torch.Tensor) else v)

    f_value, q_value = value(ref, labels), value(out, labels)
    gen = torch.Generator().manual_seed(0)
    drops = []
    for _ in range(BOOTSTRAP_RESAMPLES):
        idx = torch.randint(0, len(labels), (len(labels),), generator=gen)
        drops.append(value(ref[idx], labels[idx]) - value(out[idx], labels[idx]))
    drops.sort()
    lo = drops[int(0.025 * (len(drops) - 1))]
    hi = drops[int(math.ceil(0.975 * (len(drops) - 1)))]
    return {"metric_name": name, "float_metric": f_value, "int8_metric": q_value, "metric_drop": f_value - q_value,
            "metric_drop_lo": lo, "metric_drop_hi": hi}


EMPTY_LABELLED = {
    "labelled_samples": 0, "float_accuracy": math.nan, "float_accuracy_lo": math.nan, "float_accuracy_hi": math.nan,
    "int8_accuracy": math.nan, "int8_accuracy_lo": math.nan, "int8_accuracy_hi": math.nan,
    "accuracy_drop": math.nan, "accuracy_drop_lo": math.nan, "accuracy_drop_hi": math.nan,
    "images_lost": 0, "images_gained": 0, "mcnemar_p": math.nan,
    "metric_name": "", "float_metric": math.nan, "int8_metric": math.nan, "metric_drop": math.nan,
    "metric_drop_lo": math.nan, "metric_drop_hi": math.nan,
}


def evaluate(reference, quantized, batches: Iterable, metric: Callable | None = None, metric_name: str = "",
             class_names: list[str] | None = None) -> Evaluation:
    """Run both models over labelled batches (``data.Batch``); score agreement, accuracy and the user's metric."""
    pairs, names, labels, keep_ref, keep_out = [], [], [], [], []
    float_pred, int8_pred = [], []
    with torch.no_grad():
        for batch in batches:
            ref = first_tensor(call(reference, batch.inputs)).float()
            out = _float(first_tensor(call(quantized, batch.inputs)))
            pairs.append((ref, out))
            if batch.labels is None:
                continue
            labels.append(batch.labels)
            names.extend(batch.names)
            if metric is not None:
                keep_ref.append(ref)
                keep_out.append(out)
            if ref.dim() == 2 and not batch.labels.is_floating_point():
                float_pred.append(ref.argmax(dim=1))
                int8_pred.append(out.argmax(dim=1))
    summary = {**score_outputs(pairs), **EMPTY_LABELLED}
    classes, flips = [], []
    if labels and float_pred:
        y, fp, qp = torch.cat(labels), torch.cat(float_pred), torch.cat(int8_pred)
        summary.update(_accuracy(fp, qp, y))
        classes = _class_rows(fp, qp, y, class_names or [])
        flips = [{"image": names[i], "label": int(y[i]), "float_pred": int(fp[i]), "int8_pred": int(qp[i]),
                  "float_correct": bool(fp[i] == y[i]), "int8_correct": bool(qp[i] == y[i])}
                 for i in torch.nonzero(fp != qp).flatten().tolist()]
    if labels and metric is not None:
        summary["labelled_samples"] = summary["labelled_samples"] or int(sum(len(t) for t in labels))
        summary.update(_metric(metric, metric_name, torch.cat(keep_ref), torch.cat(keep_out), torch.cat(labels)))
    return Evaluation(summary, classes, flips)


def _class_rows(float_pred, int8_pred, labels, class_names: list[str]) -> list[dict]:
    """Accuracy of both models per true class, every class present in the labels."""
    rows = []
    for c in sorted(int(v) for v in labels.unique()):
        mask = labels == c
        n = int(mask.sum())
        f_acc = float((float_pred[mask] == c).float().mean())
        q_acc = float((int8_pred[mask] == c).float().mean())
        rows.append({"class_index": c, "class_name": class_names[c] if c < len(class_names) else str(c), "images": n,
                     "float_accuracy": f_acc, "int8_accuracy": q_acc, "accuracy_drop": f_acc - q_acc})
    return rows
