"""Byte-stable builds, `qreport diff`, the CI gates and the Markdown/JSON summaries."""

import json
import shutil

import pandas as pd
import pytest

from conftest import run_cli, tiny_args
from qreport.cli import main
from qreport.store import table_bytes


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """A model with one wide weight channel: default qconfig, then its conv per-tensor and the block kept float."""
    root = tmp_path_factory.mktemp("diff")
    qconfig = root / "q.toml"
    qconfig.write_text('[modules]\n"stem.0" = "per_tensor"\n"block" = "float"\n')
    assert main(tiny_args(root / "base", "bad_channel_cnn")) == 0
    assert main(tiny_args(root / "head", "bad_channel_cnn", "--qconfig", str(qconfig))) == 0
    return root / "base", root / "head"


def test_two_builds_of_the_same_config_are_byte_identical(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1798761600")
    for name in ("a", "b"):
        assert main(tiny_args(tmp_path / name)) == 0
    a, b = tmp_path / "a", tmp_path / "b"
    for name in ("report.html", "summary.md", "summary.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert "2027-01-01T00:00:00Z" in (a / "report.html").read_text()
    tables = sorted(p.name for p in a.glob("*.parquet"))
    assert tables == sorted(p.name for p in b.glob("*.parquet")) and len(tables) >= 15  # every stage's table
    for name in tables:
        pd.testing.assert_frame_equal(pd.read_parquet(a / name), pd.read_parquet(b / name), obj=name)


def test_diff_names_the_changed_layers_in_html_and_markdown(two_runs, tmp_path):
    base, head = two_runs
    out = tmp_path / "d" / "diff.html"
    assert main(["diff", str(base), str(head), "-o", str(out), "-q"]) == 0
    md = (tmp_path / "d" / "diff.md").read_text()
    html = out.read_text()
    assert "| block.0 | quantized | float |" in md
    assert "### Largest weights changes" in md and "| stem.0 |" in md
    assert "block.0" in html and "stem.0" in html and "Quantization changes" in html
    data = json.loads((tmp_path / "d" / "diff.json").read_text())
    assert data["status_changes"] == [{"layer_fqn": "block.0", "base": "quantized", "head": "float"}]
    stem = next(c for c in data["changed"]["weights"] if c["layer_fqn"] == "stem.0")
    assert stem["delta_db"] < -3.0


def test_diff_of_a_run_with_itself_is_same(two_runs, tmp_path):
    base, _ = two_runs
    assert main(["diff", str(base), str(base), "-o", str(tmp_path / "same.html"), "-q", "--max-drop-db", "0"]) == 0
    data = json.loads((tmp_path / "same.json").read_text())
    assert data["verdict"] == "same" and data["output_sqnr_delta_db"] == 0.0 and data["gate"]["passed"]


def test_diff_lists_layers_that_appeared_or_disappeared(two_runs, tmp_path):
    base, head = two_runs
    edited = tmp_path / "edited"
    shutil.copytree(head, edited)
    for stage in ("weights", "activations", "shadow", "coverage"):
        df = pd.read_parquet(edited / f"{stage}.parquet")
        df.loc[df.layer_fqn == "stem.0", "layer_fqn"] = "stem.0_renamed"
        (edited / f"{stage}.parquet").write_bytes(table_bytes(stage, df))
    assert main(["diff", str(base), str(edited), "-o", str(tmp_path / "d.html"), "-q"]) == 0
    data = json.loads((tmp_path / "d.json").read_text())
    assert data["appeared"] == ["stem.0_renamed"] and data["disappeared"] == ["stem.0"]


def test_diff_gate_fails_with_exit_1_and_still_writes_the_diff(two_runs, tmp_path):
    base, head = two_runs
    worse = tmp_path / "worse"
    shutil.copytree(head, worse)
    model = pd.read_parquet(worse / "model.parquet")
    model["output_sqnr_db"] = model["output_sqnr_db"] - 5.0
    (worse / "model.parquet").write_bytes(table_bytes("model", model))
    result = run_cli("diff", str(base), str(worse), "-o", str(tmp_path / "g.html"), "--max-drop-db", "1")
    assert result.returncode == 1, result.stderr
    assert "gate max-drop-db failed" in result.stderr
    assert (tmp_path / "g.html").is_file() and "**FAILED**" in (tmp_path / "g.md").read_text()


def test_diff_error_exit_code_for_a_missing_run(two_runs, tmp_path, capsys):
    base, _ = two_runs
    assert main(["diff", str(base), str(tmp_path / "missing"), "-o", str(tmp_path / "x.html")]) == 4
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "x.html").exists()


@pytest.mark.parametrize("threshold, code", [("-100", 0), ("1000", 1)])
def test_build_gate_on_output_sqnr(tmp_path, threshold, code):
    out = tmp_path / "run"
    assert main(tiny_args(out, "tiny_cnn", "--fail-under-sqnr", threshold)) == code
    assert (out / "report.html").is_file()
    manifest = json.loads((out / "manifest.json").read_text())
    assert [g["passed"] for g in manifest["gates"]] == [code == 0]
    summary = json.loads((out / "summary.json").read_text())
    assert [g["passed"] for g in summary["gates"]] == [code == 0]


def test_build_gate_rejects_a_non_number(tmp_path, capsys):
    assert main(tiny_args(tmp_path / "run", "tiny_cnn", "--fail-under-sqnr", "nan")) == 3
    assert "finite number" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_summary_markdown_has_the_verdict_and_worst_layers(tiny_run):
    md = (tiny_run / "summary.md").read_text()
    assert md.startswith("## qreport: tiny\\_cnn — ")
    assert "### Worst layers" in md and "| layer | op | isolated | propagated | weights |" in md
    data = json.loads((tiny_run / "summary.json").read_text())
    assert data["model"] == "tiny_cnn" and len(data["worst_layers"]) == 5
    assert data["worst_layers"][0]["isolated_db"] <= data["worst_layers"][1]["isolated_db"]


def test_markdown_escapes_hostile_layer_names():
    from qreport.render.markdown import md_escape

    assert md_escape("a|b<script>`x`*y*") == "a\\|b&lt;script&gt;\\`x\\`\\*y\\*"
