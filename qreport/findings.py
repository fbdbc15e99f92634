"""What a finding is: its type, the thresholds that make one, and the qconfig change it suggests (pure data)."""

from __future__ import annotations

import dataclasses
import json
import math

import pandas as pd

from qreport.config import QCONFIG_PRESETS


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """Where a number becomes a finding; shown in the report, overridable in the qconfig file's [thresholds]."""

    gap_medium_db: float = 6.0  # this far below the median SQNR of its view: worth a look
    gap_high_db: float = 10.0  # this far below: likely a real accuracy cost
    per_tensor_gap_db: float = 3.0  # a per-tensor layer this far below the per-channel layers: per-channel unused
    clipped_fraction: float = 0.01  # more than 1 % of evaluation values outside the calibrated int8 range
    rmse_over_step: float = 0.7  # well above 1/sqrt(12) ≈ 0.289: the error is not just rounding
    outlier_channel_ratio: float = 3.5  # 100th / 97.5th percentile of per-input-channel |max|
    range_instability: float = 0.5  # std / mean of the per-batch activation range
    worst_layers: int = 3  # isolated-view layers always listed, even below the thresholds
    kernel_rmse_over_step: float = 2.0  # an int8 kernel this many output steps off on clean input is defective
    calibration_image_ratio: float = 8.0  # one calibration input this many times the median one's |max|
    impact_high_db: float = 3.0  # keeping the layer float gains this much output SQNR (simulated): a high finding

    @classmethod
    def from_pairs(cls, pairs) -> "Thresholds":
        """From the ``(name, value)`` pairs a qconfig file gives (unknown names were rejected when parsing)."""
        return cls(**{k: type(getattr(cls(), k))(v) for k, v in (pairs or ())})


# Every code has one explanation partial (templates/partials/finding_<code>.html.j2) and a kind: a *cause* says why
# (with evidence and a remedy), a *location* says where error starts or is carried, *context* qualifies everything.
KINDS = {
    "random_weights": "context",
    "synthetic_calibration": "cause",
    "calibration_outlier_image": "cause",
    "calibration_range_mismatch": "cause",
    "kernel_defect": "cause",
    "qat_range_unset": "cause",
    "per_tensor_weights": "cause",
    "weight_outlier": "cause",
    "outlier_input_channels": "cause",
    "activation_clipping": "cause",
    "high_rmse": "cause",
    "unstable_range": "cause",
    "sensitive_layer": "location",
    "error_origin": "location",
    "inherited_error": "location",
}
CODES = tuple(KINDS)
# Causes that name the fault outright rank before those that describe a symptom of some range or scale.
DEFINITIVE = ("qat_range_unset", "kernel_defect", "calibration_outlier_image", "calibration_range_mismatch")
SEVERITIES = ("high", "medium", "info")


@dataclasses.dataclass(frozen=True)
class Finding:
    """One piece of guidance: what, where, the evidence, and the change to try."""

    code: str
    severity: str
    layer: str
    layer_fqn: str
    view: str
    value_db: float
    median_db: float
    threshold: float
    origin: str
    evidence: str
    change_preset: str
    change_toml: str
    change_python: str
    impact_db: float = math.nan  # simulated output SQNR gained by keeping this layer float
    likely_cause: str = ""  # for a location: "code layer" of the cause found at or next to it
    subject: str = ""  # what a finding that is not about a layer is about (e.g. the calibration input's name)

    @property
    def kind(self) -> str:
        """cause, location or context."""
        return KINDS[self.code]


def median(series: pd.Series) -> float:
    """The median of the finite values, NaN when there are none."""
    finite = series[series.map(math.isfinite)]
    return float(finite.median()) if len(finite) else math.nan


def gap_severity(gap: float, t: Thresholds) -> str:
    """high / medium / info for a layer this many dB below the median of its view."""
    return "high" if gap >= t.gap_high_db else "medium" if gap >= t.gap_medium_db else "info"


_ACTIVATION_CODE = {
    "backend": "get_default_qconfig({backend!r}).activation",
    "minmax": "MinMaxObserver.with_args(dtype=torch.quint8, reduce_range={reduce_range})",
    "moving_average": "MovingAverageMinMaxObserver.with_args(dtype=torch.quint8, reduce_range={reduce_range})",
    "histogram": "HistogramObserver.with_args(dtype=torch.quint8, reduce_range={reduce_range})",
}
_WEIGHT_CODE = {
    "backend": "get_default_qconfig({backend!r}).weight",
    "per_tensor": "default_weight_observer",
    "per_channel": "default_per_channel_weight_observer",
}


def change(fqn: str, preset: str, backend: str = "x86") -> tuple[str, str, str]:
    """The preset, its qconfig-file entry and the ``QConfigMapping`` call, for giving module ``fqn`` a preset.

    Ops that are not modules (``block:add``) get no change here: the caller names the enclosing module instead.
    """
    if ":" in fqn or not fqn:
        return "", "", ""
    toml = f"{json.dumps(fqn)} = {json.dumps(preset)}"
    _, act, weight = QCONFIG_PRESETS[preset]
    if act is None:
        return preset, toml, f"qconfig_mapping.set_module_name({fqn!r}, None)"
    if preset == "equalize":
        return preset, toml, (f"prepare_fx(model, qconfig_mapping, example_inputs, _equalization_config="
                              f"QConfigMapping().set_module_name({fqn!r}, default_equalization_qconfig))")
    fill = {"backend": backend, "reduce_range": backend == "x86"}
    qconfig = f"QConfig(activation={_ACTIVATION_CODE[act].format(**fill)}, weight={_WEIGHT_CODE[weight].format(**fill)})"
    return preset, toml, f"qconfig_mapping.set_module_name({fqn!r}, {qconfig})"


def enclosing_module(fqn: str) -> str:
    """The module a functional op (``block.1:add``) runs in, "" at the top level or for a module path."""
    scope, colon, _ = fqn.partition(":")
    return scope if colon and scope != "(root)" else ""
