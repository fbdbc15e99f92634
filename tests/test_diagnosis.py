"""Diagnosis on a trained network with one planted fault each: the cause comes first, the measured remedy ladder
recovers the clean model's quality, and nothing is recommended that its own measurement does not support."""

import json

import pandas as pd
import pytest

from planted_faults import write_calibration_fault
from qreport.cli import main

PLANTED = "tests/planted_faults.py"

# fault -> (model factory, calibration fault, where the first finding must point, a cause expected in the top 3,
# a qconfig file forcing a poor scheme or "")
FAULTS = {
    "clean": ("digits_clean", "none", None, None, ""),
    "outlier_channel": ("digits_outlier_channel", "none", {"conv3", "pool", "fc"}, "outlier_input_channels", ""),
    "calibration_outlier_image": ("digits_clean", "outlier_image", {""}, "calibration_outlier_image", ""),
    "calibration_misses_range": ("digits_clean", "dim", {""}, "calibration_range_mismatch", ""),
    # the wide channel's layer forced to per-tensor weights (the FX Numeric Suite tutorial's scenario)
    "per_tensor_forced": ("digits_outlier_channel", "none", {"conv3", "pool", "fc"}, "per_tensor_weights",
                          '[modules]\n"conv3" = "per_tensor"\n'),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Each fault built once: calibration on 256 training digits, evaluation on the 597 held-out ones."""
    root = tmp_path_factory.mktemp("faults")
    out = {}
    for name, (factory, fault, _, _, qconfig) in FAULTS.items():
        calibration, evaluation = write_calibration_fault(root / "data", fault)
        run = root / name
        extra = []
        if qconfig:
            (root / f"{name}.toml").write_text(qconfig)
            extra = ["--qconfig", str(root / f"{name}.toml")]
        assert main(["build", "--model", f"{PLANTED}:{factory}", "--data", str(calibration), "--eval-data",
                     str(evaluation), "--out", str(run), "--batch-size", "64", "--calib-batches", "4",
                     "--eval-batches", "4", "-q", *extra]) == 0
        out[name] = run
    return out


def _tables(run):
    return (pd.read_parquet(run / "guidance.parquet").sort_values("rank"), pd.read_parquet(run / "fix.parquet"),
            pd.read_parquet(run / "model.parquet").iloc[0])


def test_a_clean_trained_model_gets_no_high_or_medium_finding(runs):
    guidance, fix, model = _tables(runs["clean"])
    assert not guidance.severity.isin(["high", "medium"]).any(), guidance[["code", "severity", "layer_fqn"]]
    assert list(fix.step) == ["before"] and not (runs["clean"] / "fix.toml").exists()
    assert model.accuracy_drop < 0.01


@pytest.mark.parametrize("fault", [f for f in FAULTS if f != "clean"])
def test_the_planted_fault_is_found_first_with_its_cause_and_the_measured_fix_recovers(runs, fault):
    _, _, where, cause, _ = FAULTS[fault]
    guidance, fix, model = _tables(runs[fault])
    assert guidance.iloc[0].layer_fqn in where and guidance.iloc[0].kind == "cause"
    assert cause in set(guidance.head(3).code)
    clean = _tables(runs["clean"])[2]
    after = fix[fix.step == "after"].iloc[0]
    assert after.recommended and after.output_sqnr_db >= clean.output_sqnr_db - 3.0
    assert after.int8_accuracy >= clean.int8_accuracy - 0.01


def test_every_kept_rung_beats_the_one_before_and_the_others_are_not_applied(runs):
    for fault, run in runs.items():
        _, fix, model = _tables(run)
        current = model.to_dict()
        for rung in fix[fix.step == "rung"].sort_values("rung").to_dict("records"):
            better = rung["int8_accuracy"] > current["int8_accuracy"] or (
                rung["int8_accuracy"] == current["int8_accuracy"]
                and rung["output_sqnr_db"] >= current["output_sqnr_db"] + 0.5)
            assert rung["kept"] == better, (fault, rung)
            if rung["kept"]:
                current = rung


def test_calibration_faults_are_fixed_by_the_data_not_by_float_layers(runs):
    for fault in ("calibration_outlier_image", "calibration_misses_range"):
        guidance, fix, _ = _tables(runs[fault])
        kept = fix[(fix.step == "rung") & fix.kept]
        assert list(kept.kind) == ["recalibrate"]
        after = fix[fix.step == "after"].iloc[0]
        assert after.changes == "" and after.note.startswith("calibrate")
        assert not (runs[fault] / "fix.toml").exists()  # a data change is not a qconfig file
    guidance = _tables(runs["calibration_outlier_image"])[0]
    assert guidance.iloc[0].subject == "#7"  # the input left at 0..255


def test_pass_through_ops_are_never_the_change_and_a_float_region_stays_float(runs, tmp_path):
    graph = pd.read_parquet(runs["outlier_channel"] / "graph.parquet")
    passes = set(graph.loc[graph.runs == "int8 pass-through", "layer_fqn"])
    assert "pool" in passes
    for run in runs.values():
        guidance = pd.read_parquet(run / "guidance.parquet")
        assert not guidance[guidance.layer_fqn.isin(passes)].change_toml.astype(bool).any()
    fix_toml = runs["outlier_channel"] / "fix.toml"
    calibration, evaluation = write_calibration_fault(tmp_path, "none")
    again = tmp_path / "again"
    assert main(["build", "--model", f"{PLANTED}:digits_outlier_channel", "--data", str(calibration), "--eval-data",
                 str(evaluation), "--out", str(again), "--batch-size", "64", "--calib-batches", "4", "--eval-batches",
                 "4", "-q", "--qconfig", str(fix_toml)]) == 0
    after = pd.read_parquet(runs["outlier_channel"] / "fix.parquet").set_index("step").loc["after"]
    rebuilt = pd.read_parquet(again / "model.parquet").iloc[0]
    assert rebuilt.output_sqnr_db == pytest.approx(after.output_sqnr_db, abs=0.01)
    regraph = pd.read_parquet(again / "graph.parquet").set_index("layer_fqn")
    assert regraph.loc["pool", "runs"] == "float"  # between two float layers, no quantize is left in the way


def test_the_report_shows_the_ladder_and_the_cause_beside_the_location(runs):
    html = (runs["outlier_channel"] / "report.html").read_text()
    assert "Remedies, measured" in html and "Likely cause:" in html
    summary = json.loads((runs["outlier_channel"] / "summary.json").read_text())
    assert summary["fix"]["ladder"] and summary["findings"][0]["code"] == "outlier_input_channels"


def test_an_outlier_input_channel_is_first_tried_with_equalization(runs):
    fix = pd.read_parquet(runs["outlier_channel"] / "fix.parquet")
    rungs = fix[fix.step == "rung"].sort_values("rung")
    equalized = rungs[rungs.kind == "equalization"].iloc[0]
    assert '"fc" = "equalize"' in equalized.changes and equalized.kept  # measured: it helps, float helps more
    before = fix[fix.step == "before"].iloc[0]
    assert equalized.output_sqnr_db > before.output_sqnr_db + 3
