"""PyTorch's own quantization test models, built as user models through the CLI (tests/torch_test_models.py)."""

import json

import pandas as pd
import pyarrow.parquet as pq
import pytest

import torch_test_models
from conftest import TESTS, run_cli
from qreport.schema import arrow_schema

# Stages that fail inside torch's Numeric Suite on these models; the rest of each report is complete.
_CONV_SCHEMA = "RuntimeError: Tried to normalize arguments to torch._VariableFunctionsClass.conv2d"
PARTIAL = {
    "ConvTransposeModel": {"shadow": "AssertionError: handling for kwarg of type <class 'NoneType'>"},
    **{name: {"shadow": _CONV_SCHEMA} for name in (
        "FunctionalConv2d", "FunctionalConvReluConvModel", "FunctionalConvReluModel", "SingleLayerFunctionalConvModel",
        "TwoLayerFunctionalConvModel")},
}


def _build(name: str, out) -> dict:
    result = run_cli("build", "--model", f"{TESTS / 'torch_test_models.py'}:{name}",
                     "--input-shape", torch_test_models.input_shape(name), "--batch-size", "2",
                     "--calib-batches", "1", "--eval-batches", "1", "-q", "--out", str(out))
    assert result.returncode == 0, f"{name}: {result.stderr[-2000:]}"
    return json.loads((out / "manifest.json").read_text())


def test_the_model_set_is_the_float_single_input_models():
    assert len(torch_test_models.MODELS) == 28
    assert {"ConvTransposeModel", "ConvBnReLUModel", "LinearReluLinearModel", "FunctionalConv2d"} <= set(
        torch_test_models.MODELS)
    assert not any(name.startswith(("Annotated", "Manual", "QuantStub")) for name in torch_test_models.MODELS)
    assert torch_test_models.input_shape("ConvTransposeModel") == "3,5,5"
    assert torch_test_models.input_shape("LinearReluModel") == "5"


def test_a_model_with_no_weight_pairs_gets_an_empty_weights_table_and_coverage_says_why(tmp_path):
    # ConvTranspose2d is quantized, but the Numeric Suite pairs no weight for it: the weights table is empty.
    manifest = _build("ConvTransposeModel", tmp_path / "run")
    assert manifest["stages"]["weights"]["status"] == "ok" and manifest["stages"]["weights"]["rows"] == 0
    table = pq.read_table(tmp_path / "run" / "weights.parquet")
    assert table.num_rows == 0 and table.schema.names == arrow_schema("weights").names
    coverage = pd.read_parquet(tmp_path / "run" / "coverage.parquet").set_index("layer_fqn")
    assert coverage.loc["conv", "status"] == "quantized" and not coverage.loc["conv", "in_weights"]
    assert "not in weights: the Numeric Suite found no int8 weight to pair with it" in coverage.loc["conv", "note"]
    assert (tmp_path / "run" / "report.html").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(torch_test_models.MODELS))
def test_every_torch_test_model_builds(name, tmp_path):
    manifest = _build(name, tmp_path / "run")
    failed = {stage: s["error"] for stage, s in manifest["stages"].items() if s["status"] != "ok"}
    expected = PARTIAL.get(name, {})
    assert set(failed) == set(expected), failed
    for stage, start in expected.items():
        assert failed[stage].startswith(start), failed[stage]
    assert (tmp_path / "run" / "report.html").is_file()
