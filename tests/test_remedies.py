"""Remedies the ladder measures: bias correction removes an int8 layer's mean error; the plan orders the rungs."""

import pandas as pd
import torch

from qreport.config import ModuleOverride
from qreport.flows.fx import FxStaticFlow
from qreport.remedies import KIND_ORDER, plan


class _Wide(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = torch.nn.Linear(16, 32), torch.nn.Linear(32, 4)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def _mean_error(flow, model, batches):
    prepared = flow.calibrated(model, batches[0], batches)
    quantized = flow.convert(prepared)
    with torch.no_grad():
        x = torch.cat(batches)
        return (model(x) - quantized(x)).mean(dim=0).abs().mean().item()


def test_bias_correction_removes_the_mean_error_weight_rounding_adds():
    torch.manual_seed(0)
    model = _Wide().eval()
    with torch.no_grad():
        model.fc2.weight[:, :4] *= 30.0  # a few wide input columns: the others round coarsely
    g = torch.Generator().manual_seed(1)
    batches = [torch.rand(64, 16, generator=g) for _ in range(4)]
    plain = FxStaticFlow("x86", [ModuleOverride("fc2", "default")])  # the same qconfig, no correction
    corrected = FxStaticFlow("x86", [ModuleOverride("fc2", "bias_correct")])
    assert _mean_error(corrected, model, batches) < 0.5 * _mean_error(plain, model, batches)


def test_the_ladder_goes_cheapest_first():
    guidance = pd.DataFrame([
        {"rank": 1, "code": "sensitive_layer", "severity": "high", "layer_fqn": "b", "change_preset": "float",
         "change_toml": '"b" = "float"', "subject": ""},
        {"rank": 2, "code": "per_tensor_weights", "severity": "high", "layer_fqn": "a", "change_preset": "per_channel",
         "change_toml": '"a" = "per_channel"', "subject": ""},
        {"rank": 3, "code": "calibration_outlier_image", "severity": "high", "layer_fqn": "", "change_preset": "",
         "change_toml": "", "subject": "#7"},
    ])
    kinds = [r.kind for r in plan(guidance)]
    assert kinds == ["recalibrate", "per_channel", "bias_correction", "float"]
    assert kinds == sorted(kinds, key=KIND_ORDER.index)
