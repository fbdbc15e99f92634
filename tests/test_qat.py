"""--mode qat: a model prepared for quantization-aware training against its own int8 conversion."""

import json

import pandas as pd
import torch

from conftest import ROOT, tiny_args
from qreport.cli import main

EXAMPLE = str(ROOT / "examples" / "qat_model.py")


def _build(out, model: str, *extra: str) -> dict:
    assert main(["build", "--model", model, "--mode", "qat", "--out", str(out), "--batch-size", "4",
                 "--calib-batches", "2", "--eval-batches", "2", "-q", *extra]) == 0
    return json.loads((out / "manifest.json").read_text())


def test_a_qat_model_is_compared_with_its_conversion_and_the_unmodelled_layer_stands_out(tmp_path):
    good, bad = tmp_path / "good", tmp_path / "bad"
    manifest = _build(good, f"{EXAMPLE}:qat_cnn")
    _build(bad, f"{EXAMPLE}:qat_cnn_unmodelled")
    assert manifest["flow"] == "fx-qat"
    assert any("model as prepared for quantization-aware training" in n for n in manifest["data"]["notes"])
    assert {k: s["status"] for k, s in manifest["stages"].items() if s["status"] != "ok"} == \
        {"sensitivity": "skipped", "fix": "skipped"}
    # The fake-quant model already rounds the weights as the int8 one does: they agree to about one step.
    weights = pd.read_parquet(good / "weights.parquet")
    assert (weights.sqnr_db > 40).all(), weights[["layer_fqn", "sqnr_db"]]
    # QAT never saw the rounding after block.0 in the bad model; conversion applies it, and the report says where.
    iso_good = pd.read_parquet(good / "shadow.parquet").set_index("layer_fqn").sqnr_db
    iso_bad = pd.read_parquet(bad / "shadow.parquet").set_index("layer_fqn").sqnr_db
    assert iso_bad.idxmin() == "block.0" and iso_good["block.0"] - iso_bad["block.0"] > 3.0
    guidance = pd.read_parquet(bad / "guidance.parquet")
    top = guidance[guidance.severity.isin(["high", "medium"])]
    assert list(top.layer_fqn[:1]) == ["block.0"], guidance[["layer_fqn", "code", "severity"]]
    html = (good / "report.html").read_text()
    assert "Stage sensitivity skipped" in html and "fake-quant vs int8" in html
    assert "Stages skipped in fx-qat: sensitivity, fix." in (good / "summary.md").read_text()


def test_a_saved_qat_state_dict_loads_into_the_prepared_architecture(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("qat_example", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    checkpoint = tmp_path / "qat.pt"
    torch.save({"state_dict": example.qat_cnn().state_dict()}, checkpoint)
    trained, loaded = tmp_path / "trained", tmp_path / "loaded"
    _build(trained, f"{EXAMPLE}:qat_cnn")
    manifest = _build(loaded, f"{EXAMPLE}:qat_cnn_untrained", "--checkpoint", str(checkpoint))
    assert manifest["weights"]["source"] == "checkpoint qat.pt"
    for table in ("weights", "shadow", "model"):
        pd.testing.assert_frame_equal(pd.read_parquet(trained / f"{table}.parquet"),
                                      pd.read_parquet(loaded / f"{table}.parquet"))


def test_a_float_model_in_qat_mode_is_prepared_with_the_default_qat_qconfigs(tmp_path):
    out = tmp_path / "float"
    assert main(tiny_args(out, "tiny_cnn", "--mode", "qat")) == 0
    notes = json.loads((out / "manifest.json").read_text())["data"]["notes"]
    assert any("prepared for quantization-aware training by qreport" in n for n in notes)
    assert pd.read_parquet(out / "model.parquet").output_sqnr_db.iloc[0] > 25


def test_qat_mode_refuses_what_it_cannot_apply(tmp_path, capsys):
    toml = tmp_path / "q.toml"
    toml.write_text('[modules]\n"stem.0" = "float"\n')
    assert main(["build", "--model", f"{EXAMPLE}:qat_cnn", "--mode", "qat", "--qconfig", str(toml),
                 "--out", str(tmp_path / "a"), "-q"]) == 3
    assert "already prepared for QAT" in capsys.readouterr().err
    toml.write_text('[modules]\n"stem.0" = "histogram"\n')
    assert main(tiny_args(tmp_path / "b", "tiny_cnn", "--mode", "qat", "--qconfig", str(toml))) == 3
    assert "not available with --mode qat" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
