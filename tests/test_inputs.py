"""Inputs beyond the defaults: image folders, the qnnpack backend, weight names, hostile names."""

import json
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import tiny_args
from qreport.cli import main


def _images(folder, n=6, corrupt=1, nested=True):
    for i in range(n):
        sub = folder / (f"class{i % 2}" if nested else "")
        sub.mkdir(parents=True, exist_ok=True)
        pixels = (np.random.RandomState(i).rand(40, 48, 3) * 255).astype("uint8")
        Image.fromarray(pixels).save(sub / f"img{i}.png")
    for i in range(corrupt):
        (folder / f"broken{i}.jpg").write_bytes(b"this is not a jpeg")
    return folder


def test_image_folder_calibrates_and_evaluates_and_counts_the_corrupt_file(tmp_path):
    data = _images(tmp_path / "images")
    out = tmp_path / "run"
    assert main(tiny_args(out, "tiny_cnn", "--data", str(data), "--batch-size", "2", "--input-shape", "3,32,32")) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["data"]["source"] == "image folder images/ (7 images)"
    assert manifest["data"]["skipped_files"] == 1
    assert any("broken0.jpg" in note for note in manifest["data"]["notes"])
    model = pd.read_parquet(out / "model.parquet").iloc[0]
    assert model.samples >= 2
    html = (out / "report.html").read_text()
    assert "1 unreadable image files skipped: broken0.jpg" in html


def test_a_flat_folder_of_images_works_too(tmp_path):
    data = _images(tmp_path / "flat", n=4, corrupt=0, nested=False)
    assert main(tiny_args(tmp_path / "run", "tiny_cnn", "--data", str(data), "--batch-size", "2",
                          "--input-shape", "3,32,32")) == 0


def test_a_folder_of_only_corrupt_images_is_an_input_error(tmp_path, capsys):
    data = tmp_path / "bad"
    data.mkdir()
    (data / "a.png").write_bytes(b"nope")
    assert main(tiny_args(tmp_path / "run", "tiny_cnn", "--data", str(data), "--input-shape", "3,32,32")) == 3
    assert "no readable input" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_unreadable_data_folder(tmp_path, capsys, monkeypatch):
    from pathlib import Path

    def denied(self, pattern):
        raise PermissionError(13, "Permission denied")

    (tmp_path / "images").mkdir()
    monkeypatch.setattr(Path, "rglob", denied)
    assert main(tiny_args(tmp_path / "run", "tiny_cnn", "--data", str(tmp_path / "images"))) == 3
    assert "permission denied" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_qnnpack_backend_sets_the_engine(tmp_path):
    out = tmp_path / "run"
    assert main(tiny_args(out, "tiny_cnn", "--backend", "qnnpack")) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["engine"] == "qnnpack" and manifest["config"]["backend"] == "qnnpack"
    weights = pd.read_parquet(out / "weights.parquet")
    assert weights.qscheme.str.startswith("per_tensor").all()  # qnnpack's default qconfig
    assert "engine qnnpack" in (out / "report.html").read_text()


def test_unknown_torchvision_weights_name_lists_the_choices(tmp_path, capsys):
    assert main(["build", "--model", "mobilenet_v2", "--weights", "IMAGENET1K_V9", "--out", str(tmp_path / "o")]) == 3
    err = capsys.readouterr().err
    assert "unknown weights 'IMAGENET1K_V9'" in err and "IMAGENET1K_V1" in err


def test_explicit_weights_that_cannot_be_loaded_say_where_to_put_them(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    assert main(["build", "--model", "mobilenet_v2", "--weights", "IMAGENET1K_V1", "--out", str(tmp_path / "o")]) == 3
    err = capsys.readouterr().err
    assert "mobilenet_v2-b0353104.pth" in err and "--weights none" in err
    assert not (tmp_path / "o").exists()


def test_a_module_name_fx_cannot_compile_is_an_input_error(tmp_path, capsys):
    assert main(tiny_args(tmp_path / "o", "bad_names")) == 3
    assert "rename modules added with add_module()" in capsys.readouterr().err


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_markup_in_module_class_and_folder_names_renders_as_text(tmp_path):
    data = _images(tmp_path / "<img src=x onerror=alert(2)>", n=4, corrupt=0)
    out = tmp_path / "run"
    assert main(tiny_args(out, "hostile_class", "--data", str(data), "--batch-size", "2",
                          "--input-shape", "3,32,32")) == 0
    page = (out / "report.html").read_text()
    parser = _Tags()
    parser.feed(page)
    assert [t for t, _ in parser.tags].count("script") == 1
    assert not any(t == "img" for t, _ in parser.tags)
    assert not any(k.startswith("on") for _, attrs in parser.tags for k in attrs)
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page  # the module name, in tables
    assert "<text" in page and "&lt;script&gt;alert('x')&lt;/script&gt;</text>" in page  # and in SVG text
    coverage = pd.read_parquet(out / "coverage.parquet")
    assert coverage.op_type.str.contains("<script>alert").any()
    md = (out / "summary.md").read_text()
    assert "<script>" not in md and "<img" not in md


def test_tensor_file_inputs_and_a_separate_evaluation_folder(tmp_path):
    import torch

    inputs = tmp_path / "inputs.pt"
    torch.save(torch.randn(12, 3, 32, 32, generator=torch.Generator().manual_seed(0)), inputs)
    images = _images(tmp_path / "eval", n=4, corrupt=0)
    out = tmp_path / "run"
    assert main(tiny_args(out, "tiny_cnn", "--data", str(inputs), "--eval-data", str(images), "--batch-size", "2",
                          "--input-shape", "3,32,32")) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["data"]["source"] == ("calibration: tensor file inputs.pt (12 inputs of shape (3, 32, 32)); "
                                          "evaluation: image folder eval/ (4 images)")
    assert pd.read_parquet(out / "model.parquet").samples.iloc[0] == 4
    assert "evaluation: image folder eval/" in (out / "report.html").read_text()


@pytest.mark.parametrize("content, needle", [
    ("nan", "has 3 NaN/Inf values"),
    ("scalar", "must hold a tensor of shape [N, ...]"),
])
def test_bad_tensor_files(tmp_path, capsys, content, needle):
    import torch

    path = tmp_path / "inputs.pt"
    if content == "nan":
        x = torch.randn(4, 3, 32, 32)
        x[0, 0, 0, :3] = float("nan")
        torch.save(x, path)
    else:
        torch.save(torch.tensor(1.0), path)
    assert main(tiny_args(tmp_path / "run", "tiny_cnn", "--data", str(path))) == 3
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_dynamic_quantization_of_an_lstm_model_keeps_what_the_suite_can_compare(tmp_path):
    from conftest import ROOT

    out = tmp_path / "run"
    assert main(["build", "--model", str(ROOT / "examples" / "sequence_model.py") + ":lstm_classifier",
                 "--mode", "dynamic", "--out", str(out), "--batch-size", "4", "--calib-batches", "1",
                 "--eval-batches", "2", "-q"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["flow"] == "fx-dynamic"
    assert manifest["stages"]["shadow"]["status"] == "failed"  # add_shadow_loggers cannot shadow an LSTM
    assert "Index 1 out of range" in manifest["stages"]["shadow"]["error"]
    assert all(s["status"] == "ok" for k, s in manifest["stages"].items() if k != "shadow")
    weights = pd.read_parquet(out / "weights.parquet")
    assert set(weights.layer_fqn) >= {"lstm", "fc2"} and weights.op_type.str.startswith("quantized.").all()
    coverage = pd.read_parquet(out / "coverage.parquet").set_index("layer_fqn")
    assert "output is a tuple, not a tensor" in coverage.loc["lstm", "note"]
    acts = pd.read_parquet(out / "activations.parquet")
    assert acts.scale.isna().all()  # dynamic: the int8 model's outputs are float
    assert "The shadow stage failed" in (out / "report.html").read_text()


def test_an_unreadable_file_in_the_evaluation_folder_is_counted_too(tmp_path):
    import torch

    inputs = tmp_path / "inputs.pt"
    torch.save(torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0)), inputs)
    images = _images(tmp_path / "eval", n=4, corrupt=1)  # broken0.jpg sits in the evaluation source
    out = tmp_path / "run"
    assert main(tiny_args(out, "tiny_cnn", "--data", str(inputs), "--eval-data", str(images), "--batch-size", "2",
                          "--input-shape", "3,32,32")) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["data"]["skipped_files"] == 1 and manifest["data"]["skipped"] == ["broken0.jpg"]
    assert any("broken0.jpg" in note for note in manifest["data"]["notes"])
