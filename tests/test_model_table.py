"""`qreport models`, the recorded model walk (FX and PT2E) and the README's table agree (the walk itself: make walk)."""

from importlib.metadata import version

import pytest
import torch
import torchvision

from conftest import run_cli
from model_walk import BUILD_ARGS, FLOW_ARGS, FLOWS, PT2E_QUANTIZER, README, TABLE_BEGIN, TABLE_END, flow_rows, \
    markdown_table
from qreport.model_support import recorded_support as _support
from qreport.models import torchvision_classifiers


@pytest.mark.parametrize("flow", FLOWS)
def test_the_walk_covers_every_torchvision_classifier_of_the_installed_versions(flow):
    support = _support()
    walk = support if flow == "fx" else support["pt2e"]
    rows = flow_rows(support, flow)
    assert [r["name"] for r in rows] == torchvision_classifiers()
    # A torch or torchvision upgrade must re-walk (make walk-record) before this passes again.
    assert (walk["torch"], walk["torchvision"]) == (torch.__version__, torchvision.__version__)
    assert walk["build_args"] == BUILD_ARGS + FLOW_ARGS[flow]
    assert {r["status"] for r in rows} <= {"pass", "partial", "fail"}
    assert all(r["detail"] for r in rows if r["status"] != "pass")
    # A skipped stage (ranges under PT2E) is by design: it never makes a build partial.
    assert not any("skipped" in r["detail"] for r in rows)


def test_the_pt2e_walk_is_of_the_installed_torchao_and_quantizer():
    pt2e = _support()["pt2e"]
    assert (pt2e["quantizer"], pt2e["torchao"]) == (PT2E_QUANTIZER, version("torchao"))


def test_qreport_models_prints_each_model_with_its_walk_results():
    result = run_cli("models")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()[1:]
    printed = {line.split()[0]: tuple(line.split()[2:4]) for line in lines}
    support = _support()
    pt2e = {r["name"]: r["status"] for r in flow_rows(support, "pt2e")}
    assert printed == {r["name"]: (r["status"], pt2e[r["name"]]) for r in flow_rows(support, "fx")}
    for name, detail in [(r["name"], r["detail"]) for r in flow_rows(support, "pt2e") if r["detail"]]:
        assert any(line.split()[0] == name and detail in line for line in lines), name
    assert "torch 2.14.1" in result.stderr and f"--quantizer {PT2E_QUANTIZER}" in result.stderr


def test_the_readme_table_is_the_recorded_walk():
    text = README.read_text()
    table = text.split(TABLE_BEGIN, 1)[1].split(TABLE_END, 1)[0].strip()
    assert table == markdown_table(_support())


def test_re_recording_named_models_keeps_the_columns_date(tmp_path, monkeypatch):
    """Rows of a few models measured again replace theirs; the column's date stays the one of its full walk."""
    import datetime
    import json

    import model_walk

    support = tmp_path / "model_support.json"
    support.write_text(json.dumps(_support()))
    monkeypatch.setattr(model_walk, "SUPPORT", support)
    before = json.loads(support.read_text())
    row = {**before["models"][0], "seconds": 1, "peak_rss_gib": 0.1}
    model_walk.record([row], "fx", full=False)
    after = json.loads(support.read_text())
    assert after["measured"] == before["measured"] and after["models"][0] == row
    assert after["pt2e"] == before["pt2e"] and after["models"][1:] == before["models"][1:]
    model_walk.record([row], "fx")
    assert json.loads(support.read_text())["measured"] == datetime.date.today().isoformat()  # a full walk: today
