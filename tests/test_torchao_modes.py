"""--flow pt2e --mode weight-only|dynamic: torchao's quantize_ on the Linear layers of a trained digits transformer,
measured per Linear on the held-out digits."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from conftest import run_cli, tiny_args
from qreport.cli import main
from trained_models import ROOT, write_digits_cnn, write_digits_vit

VIT = f"{ROOT / 'examples' / 'digits.py'}:digits_vit"
ENCODER = [f"encoder.layers.{i}.linear{j}" for i in (0, 1) for j in (1, 2)]


@pytest.fixture(scope="module")
def vit(tmp_path_factory):
    """The trained transformer under int8 weight-only, int4 weight-only and int8 dynamic, and with its head kept
    float."""
    folder = tmp_path_factory.mktemp("vit")
    checkpoint = write_digits_vit(folder)
    _, data = write_digits_cnn(folder)  # the held-out digits
    keep = folder / "keep.toml"
    keep.write_text('[modules]\n"head" = "float"\n')
    modes = {"int8": ["--mode", "weight-only"], "int4": ["--mode", "weight-only", "--weight-bits", "4"],
             "dynamic": ["--mode", "dynamic"], "kept": ["--mode", "weight-only", "--qconfig", str(keep)]}
    runs = {}
    for name, extra in modes.items():
        runs[name] = folder / name
        assert main(["build", "--model", VIT, "--checkpoint", str(checkpoint), "--data", str(data), "--out",
                     str(runs[name]), "--batch-size", "64", "--calib-batches", "1", "--eval-batches", "4", "-q",
                     "--flow", "pt2e", *extra]) == 0
    return runs


def _table(run, name: str) -> pd.DataFrame:
    return pd.read_parquet(run / f"{name}.parquet").set_index("layer_fqn")


def test_every_quantizable_linear_is_in_every_view_and_the_rest_is_said(vit):
    manifest = json.loads((vit["int8"] / "manifest.json").read_text())
    assert manifest["flow"] == "torchao-weight-only"
    assert {k for k, s in manifest["stages"].items() if s["status"] == "skipped"} == {"graph", "kernels", "ranges"}
    for view in ("weights", "activations", "shadow"):
        assert set(_table(vit["int8"], view).index) == {"patch", "head", *ENCODER}, view
    notes = " ".join(manifest["data"]["notes"])
    assert "out_proj stays float: attention's output projection" in notes
    coverage = _table(vit["int8"], "coverage")
    assert coverage.loc["encoder.layers.0.self_attn.out_proj", "status"] == "float"
    assert coverage.loc["encoder.layers.0.linear1", "status"] == "quantized"


def test_weight_error_is_rounding_and_four_bits_cost_about_six_db_each(vit):
    int8, int4 = _table(vit["int8"], "weights"), _table(vit["int4"], "weights")
    assert set(int8.qscheme) == {"per_channel_symmetric"}
    # one scale per group of 32 inputs: a layer with 32 inputs has one group per output channel
    assert int4.loc["encoder.layers.0.linear2", "qscheme"] == "int4_per_group_symmetric"  # 64 inputs
    assert int4.loc["encoder.layers.0.linear1", "qscheme"] == "int4_per_channel_symmetric"  # 32 inputs
    big = ["head", *ENCODER]  # at least 320 weights each (the patch embedding has 128: too few for the average)
    assert int8.rmse_over_step[big].between(0.27, 0.31).all() and int4.rmse_over_step[big].between(0.27, 0.31).all()
    lost = (int8.sqnr_db - int4.sqnr_db).dropna()
    assert set(lost.index) == {"head", *ENCODER}  # the patch embedding (4 inputs) has no whole int4 group
    assert lost.between(18, 30).all(), lost  # 4 bits fewer: about 24 dB


def test_the_isolated_error_of_weight_only_is_its_weight_error_and_dynamic_adds_the_activations(vit):
    weights, iso8, iso_dyn = (_table(vit[k], v) for k, v in (("int8", "weights"), ("int8", "shadow"),
                                                              ("dynamic", "shadow")))
    for layer in ENCODER + ["head"]:
        assert abs(iso8.loc[layer, "sqnr_db"] - weights.loc[layer, "sqnr_db"]) < 6, layer
        assert iso_dyn.loc[layer, "sqnr_db"] < iso8.loc[layer, "sqnr_db"], layer


def test_the_trained_transformer_keeps_its_accuracy_and_sensitivity_runs_the_real_model(vit):
    for name in ("int8", "dynamic"):
        model = pd.read_parquet(vit[name] / "model.parquet").iloc[0]
        assert model.float_accuracy > 0.9 and model.float_accuracy - model.int8_accuracy < 0.02, name
        sens = pd.read_parquet(vit[name] / "sensitivity.parquet").set_index("layer")
        # no simulation: the switched model with every layer quantized is the int8 model itself
        assert sens.loc["all_quantized", "quant_alone_sqnr_db"] == pytest.approx(sens.loc["int8_real",
                                                                                           "quant_alone_sqnr_db"])
        assert "activations_only" not in sens.index


def test_a_linear_kept_float_stays_float(vit):
    assert "head" not in _table(vit["kept"], "weights").index
    assert _table(vit["kept"], "coverage").loc["head", "status"] == "float"
    assert "kept float by qconfig" in _table(vit["kept"], "coverage").loc["head", "note"]


@pytest.mark.parametrize("extra, says", [
    (("--mode", "weight-only"), "add --flow pt2e"),
    (("--flow", "pt2e", "--mode", "dynamic", "--weight-bits", "4"), "--weight-bits picks the weights of --mode weight-only"),
    (("--flow", "pt2e", "--mode", "weight-only"), "has none; use --mode static"),
])
def test_mode_mistakes_are_one_line_errors(tmp_path, extra, says):
    result = run_cli(*tiny_args(tmp_path / "run", "conv_only", *extra))
    assert result.returncode == 3 and says in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()
