"""The committed sample reports are what the current code renders from their own tables, byte for byte: a change
to the report shows up here until `make samples` regenerates them in the same commit."""

import shutil
from pathlib import Path

import pytest

from qreport.cli import main

SAMPLES = Path(__file__).resolve().parent.parent / "sample_reports"
RUNS = sorted(p.parent for p in SAMPLES.glob("*/manifest.json"))


@pytest.mark.parametrize("run", RUNS, ids=[r.name for r in RUNS])
def test_a_sample_report_re_renders_to_the_same_bytes(run, tmp_path):
    copy = tmp_path / run.name
    shutil.copytree(run, copy)
    assert main(["render", str(copy), "-q"]) == 0
    for name in ("report.html", "summary.md", "summary.json"):
        assert (copy / name).read_bytes() == (run / name).read_bytes(), f"{run.name}/{name}: run make samples"


@pytest.mark.parametrize("base, head, folder", [
    ("mobilenet_v2", "mobilenet_v2_seed_scenario", "diff_default_vs_seed"),
    ("mtcnn_rnet_lfw", "mtcnn_rnet_lfw_pt2e", "diff_rnet_fx_vs_pt2e"),
    ("digits_vit_dynamic", "digits_vit_dynamic_pt2e", "diff_vit_fx_vs_torchao"),
])
def test_the_sample_diff_is_what_the_current_code_writes(tmp_path, monkeypatch, base, head, folder):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1798761600")  # as `make samples` runs it, from the repository root
    monkeypatch.chdir(SAMPLES.parent)
    out = tmp_path / "diff.html"
    assert main(["diff", f"sample_reports/{base}", f"sample_reports/{head}", "-o", str(out), "-q"]) in (0, 1)
    for name in ("diff.html", "diff.md", "diff.json"):
        assert (tmp_path / name).read_bytes() == (SAMPLES / folder / name).read_bytes(), name


def test_every_sample_is_there():
    assert {r.name for r in RUNS} >= {"mtcnn_rnet_lfw", "digits_cnn", "mobilenet_v2", "mobilenet_v2_seed_scenario",
                                       "lstm_dynamic", "qat_unmodelled", "mtcnn_rnet_lfw_pt2e",
                                       "digits_vit_dynamic", "digits_vit_dynamic_pt2e"}
