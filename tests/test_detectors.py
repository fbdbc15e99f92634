"""Cause detectors and the thresholds a qconfig file can override."""

import json

import pandas as pd
import pytest
import torch

from conftest import tiny_args
from qreport.cli import main
from qreport.guidance import findings
from qreport.streaming import LayerStats


def test_outlier_input_channel_is_found_on_the_layer_it_enters(tmp_path):
    out = tmp_path / "run"
    assert main(tiny_args(out, "outlier_channel")) == 0
    channels = pd.read_parquet(out / "channels.parquet").set_index("layer_fqn")
    assert channels.loc["conv2", "worst_channel"] == 5 and channels.loc["conv2", "outlier_ratio"] > 3.5
    assert channels.loc["conv1", "outlier_ratio"] < 3.5  # the image's three channels are alike
    guidance = pd.read_parquet(out / "guidance.parquet")
    found = guidance[guidance.code == "outlier_input_channels"]
    assert list(found.layer_fqn) == ["conv2"] and "input channel 5" in found.evidence.iloc[0]


def test_range_instability_across_batches():
    stats = LayerStats()
    for scale in (1.0, 1.0, 8.0, 1.0):
        x = torch.linspace(-scale, scale, 1000)
        stats.update(x, x)
    assert stats.row()["range_cv"] > 0.5
    steady = LayerStats()
    for _ in range(4):
        steady.update(torch.linspace(-1, 1, 1000), torch.linspace(-1, 1, 1000))
    assert steady.row()["range_cv"] < 1e-9


def _acts(range_cv, op_type):
    return pd.DataFrame([{"layer": "fc", "layer_fqn": "fc", "op_type": op_type, "order": 0, "batches": 4,
                          "range_cv": range_cv, "sqnr_db": 30.0, "clipped_fraction": 0.0, "rmse_over_step": 0.3,
                          "compared_after": ""}])


@pytest.mark.parametrize("cv, op_type, expected", [
    (0.8, "quantized.Linear", "medium"), (0.8, "quantized.Conv2d", "info"), (0.2, "quantized.Linear", None)])
def test_unstable_range_finding_suggests_dynamic_quantization_for_linear(cv, op_type, expected):
    found = [f for f in findings({"shadow": _acts(cv, op_type)}) if f.code == "unstable_range"]
    if expected is None:
        assert found == []
    else:
        assert found[0].severity == expected
        assert ("dynamic quantization" in found[0].evidence) is (op_type.endswith("Linear"))


def test_thresholds_from_the_qconfig_file_change_the_guidance_and_show_in_the_report(tmp_path):
    qconfig = tmp_path / "q.toml"
    qconfig.write_text("[thresholds]\noutlier_channel_ratio = 100.0\ngap_medium_db = 1.5\n")
    out = tmp_path / "run"
    assert main(tiny_args(out, "outlier_channel", "--qconfig", str(qconfig))) == 0
    guidance = pd.read_parquet(out / "guidance.parquet")
    assert "outlier_input_channels" not in set(guidance.code)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["thresholds"] == {"outlier_channel_ratio": 100.0, "gap_medium_db": 1.5}
    html = (out / "report.html").read_text()
    assert "outlier_channel_ratio = 100.0 (set in the qconfig file)" in html


def test_unknown_threshold_is_an_input_error(tmp_path, capsys):
    qconfig = tmp_path / "q.toml"
    qconfig.write_text("[thresholds]\noutlier_ratio = 2\n")
    assert main(tiny_args(tmp_path / "run", "tiny_cnn", "--qconfig", str(qconfig))) == 3
    err = capsys.readouterr().err
    assert "unknown threshold 'outlier_ratio'" in err and "outlier_channel_ratio" in err



def test_clipping_and_error_far_above_rounding_are_findings():
    acts = _acts(0.0, "quantized.Conv2d").assign(clipped_fraction=0.05, qrange_lo=0.0, qrange_hi=2.0,
                                                  float_min=-0.5, float_max=3.0, layer_fqn="conv")
    (clip,) = [f for f in findings({"shadow": acts}) if f.code == "activation_clipping"]
    assert clip.severity == "medium" and "5.0% of evaluation values" in clip.evidence
    assert clip.change_toml == '"conv" = "histogram"'
    noisy = _acts(0.0, "quantized.Conv2d").assign(rmse_over_step=1.2, qrange_lo=0.0, qrange_hi=2.0,
                                                   float_min=0.0, float_max=2.0)
    codes = [f.code for f in findings({"shadow": noisy})]
    assert "high_rmse" in codes and "activation_clipping" not in codes


def test_findings_from_the_propagated_table_say_so_when_there_is_no_isolated_view():
    acts = _acts(0.0, "quantized.Conv2d").assign(rmse_over_step=1.2, qrange_lo=0.0, qrange_hi=2.0,
                                                  float_min=0.0, float_max=2.0)
    views = {f.code: f.view for f in findings({"activations": acts})}
    assert views["high_rmse"] == "propagated"
    assert {f.code: f.view for f in findings({"shadow": acts})}["high_rmse"] == "isolated"


@pytest.mark.parametrize("extra", [(), ("--flow", "pt2e")])
def test_the_channels_table_comes_from_the_model_stages_float_pass(tmp_path, monkeypatch, extra):
    """The channels stage reads the input ranges the model stage recorded on its float pass instead of running the
    float model over the evaluation images again; its table is the one a pass of its own gives."""
    from qreport import pipeline
    from qreport.data import call
    from qreport.stages import channels

    passes = []
    monkeypatch.setattr(channels, "call", lambda m, x: passes.append(1) or call(m, x))
    assert main(tiny_args(tmp_path / "shared", "outlier_channel", *extra)) == 0
    assert passes == []

    def forgetting(run):
        def model_stage(ctx):
            tables = run(ctx)
            ctx.channel_record = None
            return tables
        return model_stage

    monkeypatch.setattr(pipeline, "ORDER", tuple((n, forgetting(r) if n == "model" else r) for n, r in pipeline.ORDER))
    assert main(tiny_args(tmp_path / "own", "outlier_channel", *extra)) == 0
    assert len(passes) == 2  # one per evaluation batch
    own, shared = (pd.read_parquet(tmp_path / run / "channels.parquet") for run in ("own", "shared"))
    pd.testing.assert_frame_equal(own, shared)
    assert shared.loc[shared.layer_fqn == "conv2", "worst_channel"].item() == 5
