"""--activation-observer replaces the backend's default activation observer, and only that one."""

import json

import pandas as pd
import pytest
import torch
from torch import nn
from torch.ao.quantization.observer import FixedQParamsObserver, HistogramObserver, MinMaxObserver

from conftest import run_cli, tiny_args
from qreport.cli import main
from qreport.config import ModuleOverride
from qreport.flows.fx import FxStaticFlow


def _observer_types(prepared: nn.Module) -> set[type]:
    return {type(m) for name, m in prepared.named_modules() if "activation_post_process" in name}


def test_it_replaces_the_default_observer_but_not_fixed_ranges_or_a_qconfig_files_choice():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 1), nn.Sigmoid()).eval()
    example = torch.randn(2, 3, 8, 8)
    default = FxStaticFlow("x86").prepare(model, example)
    assert HistogramObserver in _observer_types(default) and MinMaxObserver not in _observer_types(default)
    minmax = FxStaticFlow("x86", activation_observer="minmax").prepare(model, example)
    assert _observer_types(minmax) == {MinMaxObserver, FixedQParamsObserver}  # sigmoid keeps its fixed range
    assert all(m.reduce_range for m in minmax.modules() if isinstance(m, MinMaxObserver))  # x86 keeps reduce_range
    chosen = FxStaticFlow("x86", overrides=[ModuleOverride("2", activation="histogram", weight="per_channel")],
                          activation_observer="minmax").prepare(model, example)
    assert HistogramObserver in _observer_types(chosen)  # the qconfig file's per-module observer wins


def test_a_minmax_build_records_it_and_calibrates_other_ranges(tmp_path, tiny_run):
    out = tmp_path / "minmax"
    assert main(tiny_args(out, "tiny_cnn", "--activation-observer", "minmax")) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["activation_observer"] == "minmax"
    assert "activation_observer" not in json.loads((tiny_run / "manifest.json").read_text())["config"]
    assert "minmax activation observers in place of the backend" in (out / "report.html").read_text()
    scales = pd.read_parquet(out / "activations.parquet").set_index("layer").scale.dropna()
    default_scales = pd.read_parquet(tiny_run / "activations.parquet").set_index("layer").scale.dropna()
    assert (scales != default_scales.reindex(scales.index)).any()  # MinMax keeps the extremes histogram trims


@pytest.mark.parametrize("extra, says", [
    (("--flow", "pt2e"), "PT2E's quantizer picks its own"),
    (("--mode", "dynamic"), "drop it for --mode dynamic"),
])
def test_it_is_refused_where_it_means_nothing(tmp_path, extra, says):
    result = run_cli(*tiny_args(tmp_path / "run", "tiny_cnn", "--activation-observer", "minmax", *extra))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 3 and len(lines) == 1 and says in lines[0]
    assert not (tmp_path / "run").exists()
