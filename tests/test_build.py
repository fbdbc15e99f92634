"""`qreport build` on toy models: the run folder, its tables, the stage sequence and the weights numbers."""

import copy
import html
import json
import math
import warnings

import pandas as pd
import pytest
import pyarrow.parquet as pq
import torch
from torch.ao.quantization import get_default_qconfig_mapping
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

import torch.ao.ns._numeric_suite_fx as ns
from torch.ao.ns.fx.utils import compute_sqnr

from conftest import run_cli, tiny_args
from qreport.cli import main
from qreport.data import synthetic
from qreport.schema import EXTRA_TABLES, SCHEMA_VERSION, STAGES, arrow_schema
import toy_models


def test_run_folder_has_one_parquet_per_stage_a_manifest_and_a_report(tiny_run):
    names = sorted(p.name for p in tiny_run.iterdir() if p.name != "fix.toml")  # fix.toml only when a fix applies
    # the model stage also writes classes and flips; lowered is written by the PT2E flow on x86 only
    tables = [t for t in list(STAGES) + list(EXTRA_TABLES) if t != "lowered"]
    assert names == sorted([f"{s}.parquet" for s in tables] + ["manifest.json", "report.html", "summary.json", "summary.md"])
    for stage in tables:
        table = pq.read_table(tiny_run / f"{stage}.parquet")
        assert table.schema.names == arrow_schema(stage).names
        assert table.schema.metadata[b"qreport.schema_version"] == str(SCHEMA_VERSION).encode()


def test_manifest_records_versions_config_sources_and_timings(tiny_run):
    m = json.loads((tiny_run / "manifest.json").read_text())
    assert m["complete"] is True and m["schema_version"] == SCHEMA_VERSION
    assert m["versions"]["torch"].startswith("2.14.1")
    assert m["config"]["seed"] == 0 and m["config"]["backend"] == "x86"
    assert m["engine"] == "x86"
    assert m["data"]["source"].startswith("synthetic")
    assert m["weights"]["source"] == "as returned by the factory"
    assert [s for s in m["stages"]] == sorted(STAGES) and all(v["status"] == "ok" for v in m["stages"].values())
    assert set(m["timings_s"]) == {"load", "calibrate", "convert"}


def test_tables_are_in_model_order_with_every_layer(tiny_run):
    acts = pd.read_parquet(tiny_run / "activations.parquet")
    assert list(acts.layer_fqn[:3]) == ["stem.0", "stem.2", "block.0"]
    assert list(acts.order) == sorted(acts.order)
    assert acts.batches.eq(2).all()
    cov = pd.read_parquet(tiny_run / "coverage.parquet")
    assert {"stem.0", "stem.1", "block.0", "block.1", "fc"} <= set(cov.layer_fqn)
    assert cov.set_index("layer_fqn").loc["stem.1", "status"] == "fused"


def test_weight_sqnr_equals_extract_weights_and_compute_sqnr(tiny_run):
    torch.backends.quantized.engine = "x86"
    model = toy_models.tiny_cnn().eval()
    data = synthetic((3, 32, 32), 4, 2, 2, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare_fx(copy.deepcopy(model), get_default_qconfig_mapping("x86"), (data.example(),))
        for x in data.calibration:
            prepared(x)
        quantized = convert_fx(copy.deepcopy(prepared))
        reference = ns.extract_weights("fp32", prepared, "int8", quantized)
    ours = pd.read_parquet(tiny_run / "weights.parquet").set_index("layer")
    assert set(ours.index) == set(reference)
    for layer, entry in reference.items():
        f = entry["weight"]["fp32"][0]["values"][0]
        q = entry["weight"]["int8"][0]["values"][0].dequantize()
        assert abs(ours.loc[layer, "sqnr_db"] - float(compute_sqnr(f, q))) < 0.01, layer


def test_a_bad_weight_channel_is_the_top_finding_and_the_measured_fix_helps(tmp_path):
    qconfig = tmp_path / "q.toml"
    qconfig.write_text('[modules]\n"stem.0" = "per_tensor"\n')
    out = tmp_path / "bad"
    assert main(tiny_args(out, "bad_channel_cnn", "--qconfig", str(qconfig))) == 0
    weights = pd.read_parquet(out / "weights.parquet").set_index("layer_fqn")
    assert weights.worst_channel_sqnr_db.idxmin() == "stem.0"
    assert weights.loc["stem.0", "worst_channel"] != 3  # the scaled channel is fine; the others are crushed
    guidance = pd.read_parquet(out / "guidance.parquet")
    top = guidance.iloc[0]
    assert top.layer_fqn == "stem.0" and top.code == "per_tensor_weights" and top.severity == "high"
    assert top.change_toml == '"stem.0" = "per_channel"'
    fix = pd.read_parquet(out / "fix.parquet")
    first = fix[fix.step == "rung"].sort_values("rung").iloc[0]
    assert first.kind == "per_channel" and first.changes == '[modules]\n"stem.0" = "per_channel"\n'  # cheapest first
    steps = fix.set_index("step")
    assert first.kept and first.output_sqnr_db > steps.loc["before", "output_sqnr_db"] + 0.5
    assert steps.loc["after", "output_sqnr_db"] >= first.output_sqnr_db
    fix_toml = (out / "fix.toml").read_text()
    assert fix_toml.count('"stem.0"') == 1 and fix_toml.splitlines()[-1] in steps.loc["after", "changes"]
    page = html.unescape((out / "report.html").read_text())
    assert "Remedies, measured" in page and fix_toml.splitlines()[-1] in page


def test_fix_toml_is_a_valid_qconfig_that_reproduces_the_after_numbers(tmp_path):
    out = tmp_path / "run"
    assert main(tiny_args(out, "bad_channel_cnn")) == 0
    fix = pd.read_parquet(out / "fix.parquet").set_index("step")
    again = tmp_path / "again"
    assert main(tiny_args(again, "bad_channel_cnn", "--qconfig", str(out / "fix.toml"))) == 0
    model = pd.read_parquet(again / "model.parquet").iloc[0]
    assert abs(model.output_sqnr_db - fix.loc["after", "output_sqnr_db"]) < 1e-6
    assert model.output_sqnr_db > fix.loc["before", "output_sqnr_db"] + 10.0


def test_float_override_keeps_the_module_float_and_says_why(tmp_path):
    qconfig = tmp_path / "q.toml"
    qconfig.write_text('[modules]\n"stem" = "float"\n')
    out = tmp_path / "run"
    assert main(tiny_args(out, "tiny_cnn", "--qconfig", str(qconfig))) == 0
    cov = pd.read_parquet(out / "coverage.parquet").set_index("layer_fqn")
    assert cov.loc["stem.0", "status"] == "float"
    assert "kept float by qconfig (stem)" in cov.loc["stem.0", "note"]
    assert cov.loc["block.0", "status"] == "quantized"


def test_model_stage_measures_output_agreement(tiny_run):
    model = pd.read_parquet(tiny_run / "model.parquet").iloc[0]
    assert model.samples == 8 and model.batches == 2
    assert 0.0 <= model.top1_agreement <= 1.0
    assert math.isfinite(model.output_sqnr_db) and model.output_sqnr_db > 10


def test_progress_is_one_line_per_stage_with_its_time(tmp_path):
    result = run_cli(*tiny_args(tmp_path / "run")[:-1])
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("[")]
    names = [line.split()[1] for line in lines]
    assert names == ["load", "calibrate", "convert", *STAGES, "render"]
    assert all(line.rstrip().endswith(" s") for line in lines)
    assert "Traceback" not in result.stderr


def test_a_failing_numeric_suite_call_still_completes_the_run(tmp_path, monkeypatch):
    from qreport.flows.fx import FxStaticFlow

    def broken(self, *args, **kwargs):
        raise KeyError("layer1_0_conv1_1")

    monkeypatch.setattr(FxStaticFlow, "shadow_model", broken)
    out = tmp_path / "run"
    assert main(tiny_args(out)) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["stages"]["shadow"]["status"] == "failed"
    assert "KeyError" in m["stages"]["shadow"]["error"]
    assert not (out / "shadow.parquet").exists()
    html = (out / "report.html").read_text()
    assert "The shadow stage failed" in html
    cov = pd.read_parquet(out / "coverage.parquet")
    assert cov[cov.status == "quantized"].note.str.contains("shadow stage failed").all()


@pytest.mark.parametrize("extra", [(), ("--flow", "pt2e")], ids=["fx", "pt2e"])
def test_the_models_and_their_weights_are_let_go_before_the_report_renders(tmp_path, monkeypatch, extra):
    """The report is drawn from the written tables, so the build frees its models first: rendering gets their
    memory. Nothing may keep the float model or its weight matrices alive (the flow caches what it folded per
    model). Under PT2E a conv bias can outlive the build in torch.export's own tracing leftovers (small, torch's)."""
    import gc
    import weakref

    import qreport.pipeline as pipeline
    import qreport.render.html as html

    loaded_refs = []
    real_load, real_render = pipeline.load_model, html.render_run

    def loading(*args, **kwargs):
        loaded = real_load(*args, **kwargs)
        weights = [p for p in loaded.module.parameters() if p.dim() > 1]
        loaded_refs.extend(weakref.ref(t) for t in [loaded.module, *weights])
        return loaded

    alive = []

    def rendering(path, **kwargs):
        gc.collect()
        alive.append(sum(ref() is not None for ref in loaded_refs))
        return real_render(path, **kwargs)

    monkeypatch.setattr(pipeline, "load_model", loading)
    monkeypatch.setattr(html, "render_run", rendering)
    assert main(tiny_args(tmp_path / "run", "bad_channel_cnn", *extra)) == 0  # Conv-BatchNorm: folded weights
    assert len(loaded_refs) == 4 and alive == [0]  # the model, two conv and one Linear weight
