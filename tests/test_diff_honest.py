"""`qreport diff` is honest: different models refused, a noise band from the runs' own intervals, layers that
became float apart from improvements, every qconfig change listed, random weights and synthetic data called out."""

import json
import math
import shutil

import pandas as pd
import pytest

from conftest import run_cli, tiny_args
from qreport.cli import main
from qreport.diff import Estimate, _interval_direction, _verdict, model_identity
from qreport.store import table_bytes


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same toy model twice: backend defaults, then its stem conv per-tensor and its block kept float."""
    root = tmp_path_factory.mktemp("honest")
    qconfig = root / "q.toml"
    qconfig.write_text('[modules]\n"stem.0" = "per_tensor"\n"block" = "float"\n')
    assert main(tiny_args(root / "base", "bad_channel_cnn")) == 0
    assert main(tiny_args(root / "head", "bad_channel_cnn", "--qconfig", str(qconfig))) == 0
    return root / "base", root / "head"


def _copy(run, dest):
    shutil.copytree(run, dest)
    return dest


def _edit_manifest(run, edit):
    path = run / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


def _edit_model(run, **columns):
    model = pd.read_parquet(run / "model.parquet")
    for key, value in columns.items():
        model[key] = value
    (run / "model.parquet").write_bytes(table_bytes("model", model))


def _diff(base, head, out, *extra):
    code = main(["diff", str(base), str(head), "-o", str(out / "diff.html"), "-q", *extra])
    if not (out / "diff.json").is_file():
        return code, None, None, None
    return (code, json.loads((out / "diff.json").read_text()), (out / "diff.md").read_text(),
            (out / "diff.html").read_text())


# -- different models ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("edit", [
    lambda m: m["model"].update(name="tiny_cnn", source="/x/toy_models.py:tiny_cnn"),
    lambda m: m["model"].update(input_shape=[3, 64, 64]),
], ids=["model", "input-shape"])
def test_runs_of_different_models_are_refused_in_one_line(runs, tmp_path, edit):
    base, head = runs
    other = _copy(head, tmp_path / "other")
    _edit_manifest(other, edit)
    result = run_cli("diff", str(base), str(other), "-o", str(tmp_path / "d" / "diff.html"))
    assert result.returncode == 4, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("qreport: error: ") and "different models" in lines[0]
    assert "--allow-different-models" in lines[0]
    assert not (tmp_path / "d").exists()


def test_different_models_are_compared_when_asked_and_said_so(runs, tmp_path):
    base, head = runs
    other = _copy(head, tmp_path / "other")
    _edit_manifest(other, lambda m: m["model"].update(name="tiny_cnn", source="pkg.nets:tiny_cnn"))
    code, data, md, html = _diff(base, other, tmp_path, "--allow-different-models")
    assert code == 0 and data["same_model"] is False
    assert "**Different models.**" in md and "Different models." in html


def test_the_same_model_file_reached_by_another_path_is_the_same_model():
    a = {"model": {"name": "rnet", "source": "examples/mtcnn.py:rnet", "input_shape": [3, 24, 24]}}
    b = {"model": {"name": "rnet", "source": "/home/ci/src/examples/mtcnn.py:rnet", "input_shape": [3, 24, 24]}}
    c = {"model": {"name": "rnet", "source": "examples/mtcnn.py:onet", "input_shape": [3, 24, 24]}}
    assert model_identity(a) == model_identity(b) != model_identity(c)


# -- the noise band ----------------------------------------------------------------------------------------------

def test_interval_direction_needs_intervals_that_do_not_overlap():
    assert _interval_direction(Estimate(0.5, 0.4, 0.6), Estimate(0.55, 0.45, 0.65)) == "same"
    assert _interval_direction(Estimate(0.5, 0.4, 0.6), Estimate(0.8, 0.7, 0.9)) == "better"
    assert _interval_direction(Estimate(0.5, 0.4, 0.6), Estimate(0.2, 0.1, 0.3)) == "worse"
    nan = math.nan
    assert _interval_direction(Estimate(0.5, nan, nan), Estimate(0.52, nan, nan)) == "better"  # older runs: 1 point
    assert _interval_direction(Estimate(nan, nan, nan), Estimate(0.5, 0.4, 0.6)) == "unknown"


@pytest.mark.parametrize("signals, verdict", [
    (["better", "better"], "better"), (["worse", "worse"], "worse"), (["same", "same"], "same"),
    (["better", "same"], "inconclusive"), (["same", "worse"], "inconclusive"), (["better", "worse"], "mixed"),
    (["better", "unknown"], "inconclusive"), (["same", "unknown"], "same"), (["unknown", "unknown"], "unknown"),
])
def test_verdict_needs_both_signals(signals, verdict):
    assert _verdict(signals) == verdict


def test_a_small_sqnr_gain_with_agreement_inside_its_interval_is_not_better(runs, tmp_path):
    base, _ = runs
    head = _copy(base, tmp_path / "head")
    model = pd.read_parquet(base / "model.parquet").iloc[0]
    _edit_model(head, output_sqnr_db=model.output_sqnr_db + 0.7)
    code, data, md, html = _diff(base, head, tmp_path)
    assert code == 0 and data["verdict"] == "inconclusive"
    assert data["signals"] == {"sqnr": "better", "interval": "same"} and data["measure"] == "top1_agreement"
    assert "## qreport diff — INCONCLUSIVE" in md and "intervals overlap" in md
    assert "Verdict: inconclusive" in html


def test_better_when_sqnr_and_agreement_both_move_beyond_their_noise(runs, tmp_path):
    base, _ = runs
    low = _copy(base, tmp_path / "low")
    high = _copy(base, tmp_path / "high")
    _edit_model(low, output_sqnr_db=10.0, top1_agreement=0.3, agreement_lo=0.2, agreement_hi=0.4)
    _edit_model(high, output_sqnr_db=20.0, top1_agreement=0.9, agreement_lo=0.8, agreement_hi=0.95)
    code, data, md, _ = _diff(low, high, tmp_path / "up")
    assert data["verdict"] == "better" and "do not overlap" in md
    code, data, _, _ = _diff(high, low, tmp_path / "down")
    assert data["verdict"] == "worse"


def test_with_labels_the_verdict_follows_int8_accuracy_and_its_intervals(runs, tmp_path):
    base, _ = runs
    a = _copy(base, tmp_path / "a")
    b = _copy(base, tmp_path / "b")
    labelled = {"labelled_samples": 200, "float_accuracy": 0.95, "float_accuracy_lo": 0.91, "float_accuracy_hi": 0.97}
    _edit_model(a, output_sqnr_db=10.0, top1_agreement=0.5, agreement_lo=0.43, agreement_hi=0.57, int8_accuracy=0.50,
                int8_accuracy_lo=0.43, int8_accuracy_hi=0.57, **labelled)
    # agreement moves beyond its interval, but int8 accuracy stays inside both runs' intervals
    _edit_model(b, output_sqnr_db=15.0, top1_agreement=0.9, agreement_lo=0.85, agreement_hi=0.94, int8_accuracy=0.54,
                int8_accuracy_lo=0.47, int8_accuracy_hi=0.61, **labelled)
    _, data, md, _ = _diff(a, b, tmp_path / "d1")
    assert data["measure"] == "int8_accuracy" and data["verdict"] == "inconclusive"
    assert "int8 accuracy 50.0 % \\[43.0 %, 57.0 %\\] → 54.0 % \\[47.0 %, 61.0 %\\]" in md
    assert data["int8_accuracy_delta"] == pytest.approx(0.04)
    _edit_model(b, int8_accuracy=0.9, int8_accuracy_lo=0.85, int8_accuracy_hi=0.94)
    _, data, _, _ = _diff(a, b, tmp_path / "d2")
    assert data["verdict"] == "better"


# -- layers that became float, every qconfig change -------------------------------------------------------------

def test_layers_that_became_float_are_not_listed_as_improvements(runs, tmp_path):
    base, head = runs
    _, data, md, html = _diff(base, head, tmp_path)
    assert data["status_changes"] == [{"layer_fqn": "block.0", "base": "quantized", "head": "float"}]
    for view, rows in data["changed"].items():
        assert "block.0" not in [r["layer_fqn"] for r in rows], view
    status_table = md.split("Layers whose quantization status changed")[1].split("###")[0]
    assert "| block.0 | quantized | float |" in status_table
    for section in md.split("### Largest ")[1:]:
        assert "block.0" not in section
    assert "Layers whose quantization status changed" in html


def test_every_qconfig_override_that_differs_is_listed(runs, tmp_path):
    base, head = runs
    _, data, md, html = _diff(base, head, tmp_path / "a")
    assert [(o["module"], o["base"], (o["head"] or {}).get("preset"), o["layers"]) for o in data["override_changes"]] == [
        ("block", None, "float", ["block.0"]), ("stem.0", None, "per_tensor", ["stem.0"])]
    assert "| stem.0 | backend default | per\\_tensor | stem.0 |" in md
    assert "| block | backend default | float | block.0 |" in md
    assert data["scheme_changes"] == [{"layer_fqn": "stem.0", "base": "per_channel_affine", "head": "per_tensor_affine"}]
    assert "| stem.0 | per-channel | per-tensor |" in md and "per-tensor" in html
    # a changed entry and a removed one, not only added ones
    edited = _copy(head, tmp_path / "edited")
    _edit_manifest(base_copy := _copy(base, tmp_path / "base"), lambda m: m["config"].update(overrides=[
        {"module": "stem.0", "preset": "per_channel", "activation": None, "weight": None},
        {"module": "fc", "preset": "histogram", "activation": None, "weight": None}]))
    _, data, md, _ = _diff(base_copy, edited, tmp_path / "b")
    rows = {o["module"]: (o["base"], o["head"]) for o in data["override_changes"]}
    assert rows["stem.0"][0]["preset"] == "per_channel" and rows["stem.0"][1]["preset"] == "per_tensor"
    assert rows["fc"][0]["preset"] == "histogram" and rows["fc"][1] is None
    assert "| fc | histogram | backend default | fc |" in md


# -- random weights and synthetic data ---------------------------------------------------------------------------

def test_random_weights_and_synthetic_data_are_called_out(runs, tmp_path):
    base, head = runs
    _, data, md, html = _diff(base, head, tmp_path / "a")
    assert data["caveats"]["base"] == {"random_weights": False, "synthetic_data": True}
    assert "**Synthetic calibration data** in both runs" in md and "Random weights" not in md
    assert "Synthetic calibration data" in html
    random_head = _copy(head, tmp_path / "random")
    _edit_manifest(random_head, lambda m: m["weights"].update(trained=False))
    _, data, md, html = _diff(base, random_head, tmp_path / "b")
    assert "**Random weights** in the head run" in md and "Random weights" in html
    assert md.index("Random weights") < md.index("**Verdict:")  # before the verdict a PR comment shows


def test_runs_without_data_synthetic_are_judged_by_their_data_option(runs, tmp_path):
    base, head = runs
    real = _copy(head, tmp_path / "real")

    def old_manifest(m):
        del m["data"]["synthetic"]
        m["config"]["data"] = "/data/images"

    _edit_manifest(real, old_manifest)
    old = _copy(base, tmp_path / "old")
    _edit_manifest(old, lambda m: m["data"].pop("synthetic"))
    _, data, md, _ = _diff(old, real, tmp_path / "d")
    assert data["caveats"]["base"]["synthetic_data"] is True and data["caveats"]["head"]["synthetic_data"] is False
    assert "**Synthetic calibration data** in the base run" in md


def test_cli_prints_the_verdict_with_its_evidence(runs, tmp_path):
    base, head = runs
    result = run_cli("diff", str(base), str(head), "-o", str(tmp_path / "diff.html"))
    assert result.returncode == 0, result.stderr
    first = result.stderr.splitlines()[0]
    assert first.startswith("verdict: ") and "output SQNR" in first and "top-1 agreement" in first


def test_runs_without_intervals_fall_back_to_a_full_point_of_agreement(runs, tmp_path):
    base, _ = runs
    a = _copy(base, tmp_path / "a")
    b = _copy(base, tmp_path / "b")
    _edit_model(a, output_sqnr_db=10.0, top1_agreement=0.50, agreement_lo=math.nan, agreement_hi=math.nan)
    _edit_model(b, output_sqnr_db=12.0, top1_agreement=0.505, agreement_lo=math.nan, agreement_hi=math.nan)
    _, data, md, _ = _diff(a, b, tmp_path / "d")
    assert data["signals"] == {"sqnr": "better", "interval": "same"} and data["verdict"] == "inconclusive"
    assert "no stored intervals, so a change under 1 point counts as none" in md
