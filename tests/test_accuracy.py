"""Labelled data: accuracy with intervals, per-class drop, flips, --metric and the accuracy gate, on trained models."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from conftest import tiny_args, toy
from qreport.cli import main
from qreport.stats import mcnemar_p, paired_difference_interval, wilson_interval
from trained_models import ROOT, digits_split, lfw_faces, mtcnn_state_dict, write_digits_cnn, write_labelled

DIGITS = f"{ROOT / 'examples' / 'digits.py'}:digits_cnn"
RNET = f"{ROOT / 'examples' / 'mtcnn.py'}:rnet"


def test_wilson_interval_matches_the_textbook_value():
    lo, hi = wilson_interval(8, 10)
    assert (round(lo, 3), round(hi, 3)) == (0.490, 0.943)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))  # no observations: nothing to say


def test_paired_interval_holds_the_difference_and_is_not_degenerate_without_flips():
    lo, hi = paired_difference_interval(both=40, only_first=9, only_second=1, neither=10)
    assert lo < (9 - 1) / 60 < hi and lo > 0  # 9 against 1 flips on 60 images is a real drop
    lo, hi = paired_difference_interval(both=20, only_first=0, only_second=0, neither=0)
    assert lo < 0 < hi  # no flips on 20 images still leaves room for a few points either way
    assert mcnemar_p(10, 0) == pytest.approx(2 / 1024)
    assert mcnemar_p(3, 3) == 1.0


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """The trained digits CNN on its held-out digits, labelled."""
    folder = tmp_path_factory.mktemp("digits")
    checkpoint, data = write_digits_cnn(folder)
    out = folder / "run"
    assert main(["build", "--model", DIGITS, "--checkpoint", str(checkpoint), "--data", str(data), "--out", str(out),
                 "--batch-size", "64", "--calib-batches", "2", "--eval-batches", "4", "-q"]) == 0
    return out


def test_trained_digits_report_accuracy_with_intervals_classes_and_counts(digits_run):
    model = pd.read_parquet(digits_run / "model.parquet").iloc[0]
    assert model.labelled_samples == 256 == model.samples
    assert 0.9 < model.float_accuracy <= 1 and 0.9 < model.int8_accuracy <= 1
    assert model.float_accuracy_lo < model.float_accuracy < model.float_accuracy_hi
    assert model.accuracy_drop_lo <= model.accuracy_drop <= model.accuracy_drop_hi
    assert model.agreement_lo < model.top1_agreement <= model.agreement_hi
    classes = pd.read_parquet(digits_run / "classes.parquet")
    assert sorted(classes.class_index) == list(range(10)) and classes.images.sum() == 256
    flips = pd.read_parquet(digits_run / "flips.parquet")
    assert len(flips) == model.images_lost + model.images_gained + int(((~flips.float_correct) & (~flips.int8_correct)).sum())
    summary = json.loads((digits_run / "summary.json").read_text())
    assert summary["accuracy"]["float_accuracy"] == pytest.approx(model.float_accuracy)
    assert len(summary["classes"]) == 10
    md = (digits_run / "summary.md").read_text()
    assert "256 labelled images" in md and "Accuracy **" in md
    html = (digits_run / "report.html").read_text()
    assert "accuracy lost in int8" in html and "256 labelled images" in html and "Per class (10 classes" in html


def test_a_clean_trained_model_gets_no_kernel_defect_and_keeps_its_accuracy(digits_run):
    guidance = pd.read_parquet(digits_run / "guidance.parquet")
    assert "kernel_defect" not in set(guidance.code)
    model = pd.read_parquet(digits_run / "model.parquet").iloc[0]
    assert abs(model.accuracy_drop) < 0.03
    assert json.loads((digits_run / "summary.json").read_text())["verdict"] != "bad"


def _digit_images(folder, per_class=4, classes=3):
    train, _ = digits_split()
    images = train["inputs"][:, 0].numpy()
    labels = train["labels"].numpy()
    for c in range(classes):
        sub = folder / f"digit{c}"
        sub.mkdir(parents=True)
        for k, i in enumerate(np.flatnonzero(labels == c)[:per_class]):
            Image.fromarray((images[i] * 255).astype("uint8")).save(sub / f"{k}.png")
    return folder


def test_a_class_folder_gives_labels_in_sorted_folder_order_and_every_class_calibrates(tmp_path):
    data = _digit_images(tmp_path / "images")
    out = tmp_path / "run"
    assert main(["build", "--model", DIGITS, "--data", str(data), "--input-shape", "1,8,8", "--out", str(out),
                 "--batch-size", "3", "--calib-batches", "1", "--eval-batches", "3", "-q"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["data"]["labels"].startswith("class folders (3 classes")
    classes = pd.read_parquet(out / "classes.parquet")
    assert list(classes.class_name) == ["digit0", "digit1", "digit2"] and list(classes.images) == [3, 3, 3]


def test_labels_csv_names_the_class_of_each_file(tmp_path):
    data = _digit_images(tmp_path / "images", per_class=3, classes=2)
    files = sorted(p.relative_to(data).as_posix() for p in data.rglob("*.png"))
    (data / "labels.csv").write_text("file,label\n" + "".join(f"{f},{7 if 'digit0' in f else 3}\n" for f in files))
    out = tmp_path / "run"
    assert main(["build", "--model", DIGITS, "--data", str(data), "--input-shape", "1,8,8", "--out", str(out),
                 "--batch-size", "2", "--calib-batches", "1", "--eval-batches", "2", "-q"]) == 0
    assert set(pd.read_parquet(out / "classes.parquet").class_index) <= {3, 7}


@pytest.mark.parametrize("case, message", [
    ("range", "label 12 is out of range: the model has 10 outputs"),
    ("count", "has 8 inputs but 7 labels"),
    ("negative", "label -1 is negative"),
    ("empty", "class folder digit1/"),
    ("csv", "is not a class index"),
    ("metric", "--metric needs labelled evaluation data"),
])
def test_bad_labels_are_one_line_errors_and_leave_nothing(tmp_path, capsys, case, message):
    inputs = torch.rand(8, 1, 8, 8)
    labels = torch.arange(8) % 10
    extra = []
    if case == "range":
        data = write_labelled(tmp_path / "d.pt", inputs, torch.tensor([0, 1, 2, 12, 4, 5, 6, 7]))
    elif case == "count":
        data = tmp_path / "d.pt"
        torch.save({"inputs": inputs, "labels": labels[:7]}, data)
    elif case == "negative":
        data = write_labelled(tmp_path / "d.pt", inputs, labels - 1)
    elif case == "empty":
        data = _digit_images(tmp_path / "images", per_class=2, classes=2)
        for f in (data / "digit1").iterdir():
            f.unlink()
        (data / "digit1" / "notes.txt").write_text("no images here")
        extra = ["--input-shape", "1,8,8"]
    elif case == "csv":
        data = _digit_images(tmp_path / "images", per_class=2, classes=2)
        (data / "labels.csv").write_text("file,label\ndigit0/0.png,cat\n")
        extra = ["--input-shape", "1,8,8"]
    else:
        data = tmp_path / "d.pt"
        torch.save(inputs, data)
        extra = ["--metric", f"{ROOT / 'tests' / 'test_accuracy.py'}:mean_true_score"]
    out = tmp_path / "run"
    code = main(["build", "--model", DIGITS, "--data", str(data), "--out", str(out), "--batch-size", "4", "-q", *extra])
    err = capsys.readouterr().err
    assert code == 3 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".qreport-partial")]


def mean_true_score(outputs, labels):
    """A metric for the test: the mean softmax probability of the true class (higher is better)."""
    return outputs.softmax(dim=1).gather(1, labels[:, None]).mean()


def test_a_user_metric_is_scored_for_both_models_with_an_interval(tmp_path):
    checkpoint, data = write_digits_cnn(tmp_path)
    out = tmp_path / "run"
    assert main(["build", "--model", DIGITS, "--checkpoint", str(checkpoint), "--data", str(data), "--out", str(out),
                 "--batch-size", "32", "--calib-batches", "1", "--eval-batches", "2", "-q",
                 "--metric", f"{ROOT / 'tests' / 'test_accuracy.py'}:mean_true_score"]) == 0
    model = pd.read_parquet(out / "model.parquet").iloc[0]
    assert model.metric_name.endswith(":mean_true_score")
    assert 0.5 < model.float_metric <= 1 and 0.5 < model.int8_metric <= 1
    assert model.metric_drop == pytest.approx(model.float_metric - model.int8_metric)
    assert model.metric_drop_lo <= model.metric_drop_hi
    assert "mean\\_true\\_score" in (out / "summary.md").read_text()


def test_without_labels_the_report_says_so_and_gives_agreement_with_an_interval(tiny_run):
    model = pd.read_parquet(tiny_run / "model.parquet").iloc[0]
    assert model.labelled_samples == 0 and math.isnan(model.float_accuracy)
    assert model.agreement_lo <= model.top1_agreement <= model.agreement_hi
    html = (tiny_run / "report.html").read_text()
    assert "The evaluation data has no labels" in html and "Calibration used synthetic noise" in html


def test_token_ids_stay_integers_for_an_embedding_model(tmp_path):
    data = tmp_path / "tokens.pt"
    g = torch.Generator().manual_seed(0)
    torch.save({"inputs": torch.randint(0, 50, (16, 12), generator=g), "labels": torch.randint(0, 4, (16,), generator=g)},
               data)
    out = tmp_path / "run"
    assert main(["build", "--model", toy("embedding_classifier"), "--mode", "dynamic", "--data", str(data),
                 "--out", str(out), "--batch-size", "4", "--calib-batches", "2", "--eval-batches", "2", "-q"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert "int64 inputs" in manifest["data"]["source"]
    assert pd.read_parquet(out / "model.parquet").iloc[0].labelled_samples == 8


def test_synthetic_inputs_for_an_embedding_model_are_token_ids(tmp_path):
    out = tmp_path / "run"
    assert main(["build", "--model", toy("embedding_classifier"), "--mode", "dynamic", "--out", str(out),
                 "--batch-size", "4", "--calib-batches", "1", "--eval-batches", "1", "-q"]) == 0
    assert "token ids below 50" in json.loads((out / "manifest.json").read_text())["data"]["source"]


def test_the_accuracy_gate_passes_and_fails_on_the_measured_drop(digits_run, tmp_path):
    checkpoint, data = write_digits_cnn(tmp_path)
    args = ["build", "--model", DIGITS, "--checkpoint", str(checkpoint), "--data", str(data), "--batch-size", "64",
            "--calib-batches", "1", "--eval-batches", "1", "-q"]
    assert main(args + ["--out", str(tmp_path / "a"), "--max-accuracy-drop", "100"]) == 0
    assert main(tiny_args(tmp_path / "b", "tiny_cnn", "--max-accuracy-drop", "1")) == 3  # no labels: refused


@pytest.fixture(scope="module")
def rnet_data(tmp_path_factory):
    """MTCNN's trained RNet (from the facenet-pytorch wheel) and scikit-image's labelled faces, or skip."""
    state = mtcnn_state_dict("rnet")
    if state is None:
        pytest.skip("the facenet-pytorch wheel cannot be fetched from the package registry")
    folder = tmp_path_factory.mktemp("rnet")
    torch.save(state, folder / "rnet.pt")
    faces = lfw_faces(24)
    torch.save({**faces, "classes": ["non-face", "face"]}, folder / "lfw.pt")
    return folder


@pytest.fixture(scope="module")
def rnet_run(rnet_data):
    out = rnet_data / "run"
    code = main(["build", "--model", RNET, "--checkpoint", str(rnet_data / "rnet.pt"), "--data",
                 str(rnet_data / "lfw.pt"), "--out", str(out), "--batch-size", "16", "--eval-batches", "9", "-q",
                 "--sensitivity-layers", "4", "--max-accuracy-drop", "5"])
    assert code == 1  # the gate fails: int8 loses about half the accuracy
    return out


def test_rnet_int8_collapses_and_the_cause_is_the_prelu_kernel(rnet_run):
    model = pd.read_parquet(rnet_run / "model.parquet").iloc[0]
    assert model.float_accuracy == 1.0 and model.labelled_samples == 136
    assert 0.3 < model.int8_accuracy < 0.7 and model.accuracy_drop_lo > 0.3
    guidance = pd.read_parquet(rnet_run / "guidance.parquet").sort_values("rank")
    top = guidance.head(3)
    assert set(top.code) == {"kernel_defect"} and set(top.layer_fqn) == {"prelu2", "prelu3", "prelu4"}
    kernels = pd.read_parquet(rnet_run / "kernels.parquet").set_index("layer_fqn")
    assert kernels.loc["prelu1", "rmse_over_step"] < 0.5  # its largest slope is above 1: the kernel is right there
    summary = json.loads((rnet_run / "summary.json").read_text())
    assert summary["verdict"] == "bad" and not summary["gates"][0]["passed"]
    classes = pd.read_parquet(rnet_run / "classes.parquet").set_index("class_name")
    assert classes.loc["non-face", "accuracy_drop"] > 0.5  # every non-face is called a face


def test_rnet_fix_restores_accuracy_and_fix_toml_builds_and_agrees(rnet_run, rnet_data):
    fix = pd.read_parquet(rnet_run / "fix.parquet").set_index("step")
    before, after = fix.loc["before"], fix.loc["after"]
    assert after.recommended and "dropped" not in fix.index
    assert after.int8_accuracy >= before.float_accuracy - 0.02 > before.int8_accuracy
    assert '"prelu4" = "float"' in after.changes
    again = rnet_data / "again"
    assert main(["build", "--model", RNET, "--checkpoint", str(rnet_data / "rnet.pt"), "--data",
                 str(rnet_data / "lfw.pt"), "--out", str(again), "--batch-size", "16", "--eval-batches", "9", "-q",
                 "--sensitivity-layers", "4", "--qconfig", str(rnet_run / "fix.toml")]) == 0
    rebuilt = pd.read_parquet(again / "model.parquet").iloc[0]
    assert rebuilt.int8_accuracy == pytest.approx(after.int8_accuracy)
    assert rebuilt.output_sqnr_db == pytest.approx(after.output_sqnr_db, abs=0.01)
    coverage = pd.read_parquet(again / "coverage.parquet").set_index("layer_fqn")
    assert coverage.loc["prelu4", "status"] == "float" and "kept float by qconfig" in coverage.loc["prelu4", "note"]
    stages = json.loads((again / "manifest.json").read_text())["stages"]
    assert all(s["status"] == "ok" for s in stages.values()), stages


def test_a_model_with_two_inputs_takes_a_tuple_of_inputs(tmp_path):
    g = torch.Generator().manual_seed(0)
    data = tmp_path / "pairs.pt"
    torch.save({"inputs": (torch.randn(24, 3, 8, 8, generator=g), torch.randn(24, 4, generator=g)),
                "labels": torch.randint(0, 5, (24,), generator=g)}, data)
    out = tmp_path / "run"
    assert main(["build", "--model", toy("two_input_net"), "--data", str(data), "--out", str(out),
                 "--batch-size", "4", "--calib-batches", "2", "--eval-batches", "4", "-q"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["input_shapes"] == [[3, 8, 8], [4]]
    assert "(3, 8, 8) + (4,)" in manifest["data"]["source"]
    model = pd.read_parquet(out / "model.parquet").iloc[0]
    assert model.labelled_samples == 16 and model.output_sqnr_db > 20
    stages = manifest["stages"]
    assert stages["activations"]["status"] == "ok" and stages["weights"]["rows"] == 3


def test_inputs_of_different_lengths_are_refused(tmp_path, capsys):
    data = tmp_path / "bad.pt"
    torch.save({"inputs": (torch.randn(8, 3, 8, 8), torch.randn(7, 4))}, data)
    assert main(["build", "--model", toy("two_input_net"), "--data", str(data), "--out", str(tmp_path / "o"),
                 "-q"]) == 3
    assert "different numbers of samples (8, 7)" in capsys.readouterr().err
