"""The remedy ladder: from the ranked findings, the changes to try, cheapest first (pure data; no torch).

Rungs: fix the calibration data, then better activation observers, then per-channel weights, then input-weight
equalization, then bias correction, then keep layers float one at a time (kernel defects first, then the located layers in rank order). The fix stage measures every
rung for real and keeps only the ones that help beyond the noise.
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from qreport.config import ModuleOverride, parse_qconfig_text
from qreport.overrides import kept_float_by

FLOAT_RUNGS = 8  # layers tried in float, one rung each, at the most
KIND_ORDER = ("recalibrate", "observer", "per_channel", "equalization", "bias_correction", "float")
BIAS_CAUSES = ("per_tensor_weights", "weight_outlier")  # weight rounding shifts a layer's mean output


@dataclasses.dataclass(frozen=True)
class Rung:
    """One step of the ladder: qconfig changes, or a change of the calibration data (``data``)."""

    kind: str  # recalibrate | observer | per_channel | equalization | bias_correction | float
    changes: tuple[ModuleOverride, ...] = ()
    data: str = ""  # "" | "drop:<input name>" | "evaluation"
    because: str = ""  # the finding codes this rung answers

    def describe(self) -> str:
        """What the rung does, in one line."""
        if self.data.startswith("drop:"):
            return f"calibrate without input {self.data[5:]}"
        if self.data == "evaluation":
            return "calibrate on the evaluation inputs (inputs like those the model will see)"
        return "; ".join(f"{o.module} = {o.describe()}" for o in self.changes)


def _data_rungs(guidance: pd.DataFrame) -> list[Rung]:
    codes = set(guidance.code)
    if "calibration_outlier_image" in codes:
        image = guidance.loc[guidance.code == "calibration_outlier_image", "subject"].iloc[0]
        return [Rung("recalibrate", data=f"drop:{image}", because="calibration_outlier_image")]
    for code in ("calibration_range_mismatch", "synthetic_calibration"):
        if code in codes and guidance.loc[guidance.code == code, "severity"].iloc[0] == "high":
            return [Rung("recalibrate", data="evaluation", because=code)]
    return []


def plan(guidance: pd.DataFrame | None, existing=(), presets=None) -> list[Rung]:
    """The rungs to measure, cheapest first, from the high and medium findings with a change (never one for a module
    the user already keeps float, nor a preset outside ``presets``, the ones the flow can build)."""
    if guidance is None or not len(guidance):
        return []
    rows = guidance[guidance.severity.isin(("high", "medium"))].sort_values("rank")
    rungs = _data_rungs(rows)
    by_preset: dict[str, dict[str, str]] = {"histogram": {}, "per_channel": {}, "equalize": {}, "float": {}}
    for r in rows.to_dict("records"):
        preset = r["change_preset"]
        if not preset or preset not in by_preset or (presets is not None and preset not in presets):
            continue
        module = parse_qconfig_text("[modules]\n" + r["change_toml"], "guidance")[0].module  # a functional op's module
        if kept_float_by(module, existing):
            continue
        by_preset[preset].setdefault(module, r["code"])
    for kind, preset in (("observer", "histogram"), ("per_channel", "per_channel"), ("equalization", "equalize")):
        chosen = by_preset[preset]
        if chosen:
            rungs.append(Rung(kind, tuple(ModuleOverride(m, preset=preset) for m in chosen),
                              because=",".join(sorted(set(chosen.values())))))
    weighty = list(dict.fromkeys(r["layer_fqn"] for r in rows.to_dict("records")
                                 if r["code"] in BIAS_CAUSES and r["layer_fqn"] and not kept_float_by(r["layer_fqn"], existing)))
    if weighty and (presets is None or "bias_correct" in presets):
        rungs.append(Rung("bias_correction", tuple(ModuleOverride(m, preset="bias_correct") for m in weighty),
                          because=",".join(sorted(set(rows.loc[rows.code.isin(BIAS_CAUSES), "code"])))))
    floats = by_preset["float"]
    # a wrong kernel is fixed only in float; the simulated float set helps as a whole (neighbours sharing a range
    # only help together): one rung each; then the other located layers one at a time
    for code in ("kernel_defect", "sensitive_layer"):
        group = [m for m, c in floats.items() if c == code]
        if group:
            rungs.append(Rung("float", tuple(ModuleOverride(m, preset="float") for m in group), because=code))
    rest = [(m, c) for m, c in floats.items() if c not in ("kernel_defect", "sensitive_layer")]
    for module, code in rest[:FLOAT_RUNGS]:
        rungs.append(Rung("float", (ModuleOverride(module, preset="float"),), because=code))
    return rungs
