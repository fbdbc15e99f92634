"""Real torchvision mobilenet_v2 builds (a handful, at small batch counts)."""

import json

import pandas as pd
import pytest
import torch
import torchvision

from conftest import ROOT, run_cli

pytestmark = pytest.mark.mobilenet  # the handful of real mobilenet_v2 builds that `make test` keeps
SMALL = ["--batch-size", "2", "--calib-batches", "2", "--eval-batches", "1"]


def test_pretrained_weights_come_from_the_torch_hub_cache(tmp_path):
    weights = torchvision.models.MobileNet_V2_Weights.DEFAULT
    checkpoints = tmp_path / "torch_home" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.manual_seed(1)
    torch.save(torchvision.models.mobilenet_v2().state_dict(), checkpoints / weights.url.rsplit("/", 1)[1])
    out = tmp_path / "run"
    result = run_cli("build", "--model", "mobilenet_v2", "--out", str(out), *SMALL,
                     env={"TORCH_HOME": str(tmp_path / "torch_home")})
    assert result.returncode == 0, result.stderr
    assert "RANDOM" not in result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["weights"] == {"source": f"{weights} (pretrained)", "trained": True, "note": ""}
    assert manifest["model"]["source"] == "torchvision.models.quantization.mobilenet_v2"
    assert "Random weights." not in (out / "report.html").read_text()
    weights_table = pd.read_parquet(out / "weights.parquet")
    assert len(weights_table) == 53 and weights_table.qscheme.eq("per_channel_affine").all()


def test_seed_scenario_flags_features_17_and_random_weights_are_loud(tmp_path):
    out = tmp_path / "run"
    result = run_cli("build", "--model", "mobilenet_v2", "--out", str(out), "--qconfig",
                     str(ROOT / "examples" / "seed_scenario.toml"), *SMALL, env={"TORCH_HOME": str(tmp_path / "empty")})
    assert result.returncode == 0, result.stderr
    assert "WARNING: mobilenet_v2 uses RANDOM weights" in result.stderr
    html = (out / "report.html").read_text()
    assert "Random weights." in html and "BatchNorm statistics of 52 layers re-estimated" in html

    weights = pd.read_parquet(out / "weights.parquet")
    assert weights.sort_values("sqnr_db").layer_fqn.iloc[0].startswith("features.17.")
    guidance = pd.read_parquet(out / "guidance.parquet")
    weight_findings = guidance[guidance.view == "weights"]
    assert weight_findings.layer_fqn.iloc[0].startswith("features.17.")
    assert (weight_findings.code == "per_tensor_weights").all()
    assert weight_findings.change_toml.iloc[0].endswith('= "per_channel"')

    cause = guidance[guidance.code == "per_tensor_weights"].iloc[0]
    assert cause.kind == "cause" and cause.severity in ("high", "medium")
    same_or_lower = guidance[(guidance.kind == "location") & (guidance.severity.isin(
        ["high", "medium", "info"][["high", "medium", "info"].index(cause.severity):]))]
    assert (same_or_lower["rank"] > cause["rank"]).all()  # the cause outranks every location of its severity
    fix = pd.read_parquet(out / "fix.parquet")
    rungs = fix[fix.step == "rung"].sort_values("rung")
    assert rungs.iloc[0].kind == "per_channel"  # the tutorial's remedy is tried first, and measured
    assert '"features.17.conv.2" = "per_channel"' in rungs.iloc[0].changes
    assert "Remedies, measured" in html
    after = fix[fix.step == "after"]
    if not rungs.iloc[0].kept and len(after):  # measured and not helping beyond the noise: not applied
        assert '"features.17.conv.2" = "per_channel"' not in after.iloc[0].changes
    sens = pd.read_parquet(out / "sensitivity.parquet")
    layers = set(sens[sens.kind == "layer"].layer_fqn)
    assert "features.17.conv.2" in layers and "features.0.0" not in layers  # kept float: nothing to toggle

    coverage = pd.read_parquet(out / "coverage.parquet").set_index("layer_fqn")
    assert coverage.loc["features.0.0", "status"] == "float"
    assert coverage.loc["features.1.conv.1", "status"] == "float"
    assert coverage.loc["features.17.conv.2", "status"] == "quantized"
