"""`qreport models`, the recorded model walk and the README's table agree (the walk itself: make walk)."""

import torch
import torchvision

from conftest import run_cli
from model_walk import README, TABLE_BEGIN, TABLE_END, markdown_table
from qreport.model_support import recorded_support as _support
from qreport.models import torchvision_classifiers


def test_the_walk_covers_every_torchvision_classifier_of_the_installed_versions():
    support = _support()
    assert [r["name"] for r in support["models"]] == torchvision_classifiers()
    # A torch or torchvision upgrade must re-walk (make walk-record) before this passes again.
    assert (support["torch"], support["torchvision"]) == (torch.__version__, torchvision.__version__)
    assert {r["status"] for r in support["models"]} <= {"pass", "partial", "fail"}
    assert all(r["detail"] for r in support["models"] if r["status"] != "pass")


def test_qreport_models_prints_each_model_with_its_walk_result():
    result = run_cli("models")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()[1:]
    printed = {line.split()[0]: line.split()[2] for line in lines}
    assert printed == {r["name"]: r["status"] for r in _support()["models"]}
    assert "torch 2.14.1" in result.stderr


def test_the_readme_table_is_the_recorded_walk():
    text = README.read_text()
    table = text.split(TABLE_BEGIN, 1)[1].split(TABLE_END, 1)[0].strip()
    assert table == markdown_table(_support()["models"])
