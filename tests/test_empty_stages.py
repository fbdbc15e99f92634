"""A stage that finds nothing to compare still returns its declared columns, so the stages after it run."""

import json

import pyarrow.parquet as pq

from conftest import run_cli
from qreport.schema import arrow_schema
from qreport.stages.tables import stage_frame

MODEL = '''
import torch
from torch import nn


class Flatten(nn.Module):
    """No parameters and no op the Numeric Suite shadows: nothing for the weights or shadow stage."""

    example_input_shape = (3, 4, 4)

    def forward(self, x):
        return torch.flatten(x, 1)


def flatten():
    return Flatten()
'''


def test_stage_frame_of_no_rows_has_the_declared_typed_columns():
    for stage in ("weights", "activations", "shadow", "coverage"):
        df = stage_frame(stage, [])
        assert list(df.columns) == arrow_schema(stage).names and len(df) == 0
    assert str(stage_frame("coverage", []).dtypes["in_weights"]) == "bool"
    assert list(stage_frame("weights", [{"layer": "a"}]).columns) == ["layer"]  # rows are kept as they are


def test_a_model_with_nothing_to_shadow_builds_every_stage(tmp_path):
    (tmp_path / "model.py").write_text(MODEL)
    out = tmp_path / "run"
    result = run_cli("build", "--model", f"{tmp_path / 'model.py'}:flatten", "--batch-size", "2",
                     "--calib-batches", "1", "--eval-batches", "1", "-q", "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    stages = json.loads((out / "manifest.json").read_text())["stages"]
    assert {name: s["status"] for name, s in stages.items() if s["status"] != "ok"} == {}
    assert stages["weights"]["rows"] == 0 and stages["shadow"]["rows"] == 0 and stages["coverage"]["rows"] == 1
    for stage in ("weights", "shadow"):
        assert pq.read_table(out / f"{stage}.parquet").schema.names == arrow_schema(stage).names
