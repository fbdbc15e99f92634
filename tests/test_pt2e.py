"""--flow pt2e: torch.export and torchao's quantizers, measured with qreport's own weight, propagated and isolated
views, on the trained digits CNN and its held-out digits."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from conftest import run_cli, tiny_args, toy
from qreport.cli import main
from trained_models import ROOT, write_digits_cnn

DIGITS = f"{ROOT / 'examples' / 'digits.py'}:digits_cnn"
CONVS = ["conv1", "conv2", "conv3"]


def _build(out, checkpoint, data, *extra) -> int:
    return main(["build", "--model", DIGITS, "--checkpoint", str(checkpoint), "--data", str(data), "--out", str(out),
                 "--batch-size", "64", "--calib-batches", "2", "--eval-batches", "4", "-q", *extra])


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """The trained digits CNN built under FX, PT2E with XNNPACK and PT2E with XNNPACK keeping conv2 float."""
    folder = tmp_path_factory.mktemp("pt2e")
    checkpoint, data = write_digits_cnn(folder)
    keep = folder / "keep.toml"
    keep.write_text('[modules]\n"conv2" = "float"\n"fc" = "per_tensor"\n')
    runs = {"fx": folder / "fx", "pt2e": folder / "pt2e", "kept": folder / "kept", "x86": folder / "x86"}
    assert _build(runs["fx"], checkpoint, data) == 0
    assert _build(runs["x86"], checkpoint, data, "--flow", "pt2e") == 0
    assert _build(runs["pt2e"], checkpoint, data, "--flow", "pt2e", "--quantizer", "xnnpack") == 0
    assert _build(runs["kept"], checkpoint, data, "--flow", "pt2e", "--quantizer", "xnnpack", "--qconfig", str(keep)) == 0
    return runs


def _table(run, name: str) -> pd.DataFrame:
    return pd.read_parquet(run / f"{name}.parquet")


def test_a_pt2e_build_has_weights_and_both_activation_views_and_says_which_stages_it_skipped(digits):
    manifest = json.loads((digits["pt2e"] / "manifest.json").read_text())
    assert manifest["flow"] == "pt2e-static" and manifest["config"]["quantizer"] == "xnnpack"
    status = {name: stage["status"] for name, stage in manifest["stages"].items()}
    assert status.pop("kernels") == "skipped" and status.pop("ranges") == "skipped"
    assert "no lowering to int8 kernels for the xnnpack quantizer" in manifest["stages"]["kernels"]["error"]
    assert set(status.values()) == {"ok"}
    weights = _table(digits["pt2e"], "weights")
    assert list(weights.layer_fqn) == CONVS + ["fc"]
    assert set(weights.qscheme) == {"per_channel_affine"}  # XNNPACK here: per-channel symmetric weights
    assert weights.rmse_over_step.between(0.25, 0.32).all()  # plain rounding: 1/sqrt(12) of a step
    for view in ("activations", "shadow"):
        assert set(CONVS + ["fc"]) <= set(_table(digits["pt2e"], view).layer_fqn), view
    html = (digits["pt2e"] / "report.html").read_text()
    assert "pt2e-static" in html and "xnnpack quantizer" in html


def test_the_isolated_view_compares_each_conv_with_its_batchnorm_folded_float_copy(digits):
    """A float conv *before* its BatchNorm against the int8 conv with BatchNorm folded in would read a few dB (or
    below zero); paired with the folded float copy it reads what int8 rounding costs."""
    shadow = _table(digits["pt2e"], "shadow").set_index("layer_fqn")
    for conv in CONVS:
        assert shadow.loc[conv, "sqnr_db"] > 25, conv
        assert shadow.loc[conv, "rmse_over_step"] < 1.0, conv  # within a step of the output's quantization


def test_pt2e_keeps_the_trained_models_accuracy_close_to_fx(digits):
    fx, pt2e = (_table(digits[k], "model").iloc[0] for k in ("fx", "pt2e"))
    assert fx.float_accuracy == pt2e.float_accuracy > 0.9
    assert abs(fx.int8_accuracy - pt2e.int8_accuracy) < 0.03
    assert pt2e.float_accuracy - pt2e.int8_accuracy < 0.03


def test_module_settings_go_to_the_quantizer(digits):
    coverage = _table(digits["kept"], "coverage").set_index("layer_fqn")
    assert coverage.loc["conv2", "status"] == "float" and "kept float by qconfig" in coverage.loc["conv2", "note"]
    assert coverage.loc["conv1", "status"] == "quantized"
    weights = _table(digits["kept"], "weights").set_index("layer_fqn")
    assert "conv2" not in weights.index
    assert weights.loc["fc", "qscheme"] == "per_tensor_affine"
    assert "conv2" not in set(_table(digits["kept"], "shadow").layer_fqn)


def test_fx_and_pt2e_runs_of_one_model_are_compared_layer_by_layer(digits, tmp_path):
    out = tmp_path / "diff.html"
    assert main(["diff", str(digits["fx"]), str(digits["pt2e"]), "-o", str(out), "-q"]) in (0, 1)
    diff = json.loads((tmp_path / "diff.json").read_text())
    assert diff["same_model"] and not diff["appeared"] and not diff["disappeared"]  # every layer matched by path
    isolated = {d["layer_fqn"]: d for d in diff["changed"].get("isolated", [])}
    shadow_fx, shadow_pt2e = (_table(digits[k], "shadow").set_index("layer_fqn") for k in ("fx", "pt2e"))
    for fqn, change in isolated.items():
        assert change["base_db"] == pytest.approx(shadow_fx.loc[fqn, "sqnr_db"])
        assert change["head_db"] == pytest.approx(shadow_pt2e.loc[fqn, "sqnr_db"])
    summary = (tmp_path / "diff.md").read_text()
    assert "fx-static → pt2e-static" in summary and "xnnpack" in summary


def test_presets_the_quantizer_cannot_express_are_refused_in_one_line(tmp_path):
    qconfig = tmp_path / "q.toml"
    qconfig.write_text('[modules]\n"stem.0" = "histogram"\n')
    result = run_cli(*tiny_args(tmp_path / "run", "tiny_cnn", "--flow", "pt2e", "--qconfig", str(qconfig)))
    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "'histogram' is not available with --flow pt2e --quantizer x86" in lines[0]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("extra, says", [
    (("--quantizer", "xnnpack"), "add --flow pt2e"),
    (("--flow", "pt2e", "--mode", "qat"), "--mode qat needs --flow fx"),
    (("--flow", "pt2e", "--non-traceable", "stem"), "--non-traceable is an FX option"),
    (("--flow", "pt2e", "--backend", "qnnpack"), "--flow pt2e takes --quantizer"),
])
def test_fx_only_options_with_pt2e_are_one_line_errors(tmp_path, extra, says):
    result = run_cli(*tiny_args(tmp_path / "run", "tiny_cnn", *extra))
    assert result.returncode == 3 and says in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_a_known_quantizer_failure_names_the_pattern_and_the_workaround(tmp_path):
    """torchao 0.18's X86 quantizer rejects torchvision's BasicBlock, which calls one ReLU module twice."""
    result = run_cli("build", "--model", toy("shared_relu_net"), "--flow", "pt2e", "--out", str(tmp_path / "run"),
                     "--batch-size", "4", "--calib-batches", "1", "--eval-batches", "1", "-q")
    assert result.returncode == 3
    line = result.stderr.strip()
    assert "\n" not in line and "module object used at two places in forward (block.relu)" in line
    assert "--quantizer xnnpack" in line
    assert not (tmp_path / "run").exists()
    # the same model builds with the quantizer the message suggests
    assert run_cli("build", "--model", toy("shared_relu_net"), "--flow", "pt2e", "--quantizer", "xnnpack", "--out",
                   str(tmp_path / "xnnpack"), "--batch-size", "4", "--calib-batches", "1", "--eval-batches", "1",
                   "-q").returncode == 0


@pytest.mark.slow
@pytest.mark.parametrize("model, quantizer", [("mobilenet_v2", "x86"), ("resnet18", "xnnpack")])
def test_torchvision_models_under_pt2e_write_every_view(tmp_path, model, quantizer):
    """The issue's acceptance builds: every stage written, the isolated view and weights present, and no conv of the
    isolated view below 20 dB (BatchNorm is folded on both sides)."""
    out = tmp_path / model
    assert main(["build", "--model", model, "--flow", "pt2e", "--quantizer", quantizer, "--out", str(out),
                 "--batch-size", "4", "--calib-batches", "2", "--eval-batches", "2", "-q"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert {s["status"] for s in manifest["stages"].values()} == {"ok", "skipped"}
    weights, shadow = _table(out, "weights"), _table(out, "shadow")
    convs = shadow[shadow.op_type == "quantized.conv2d"]
    assert len(weights) >= 20 and len(convs) >= 20
    assert convs.sqnr_db.min() > 20, convs.nsmallest(3, "sqnr_db")[["layer_fqn", "sqnr_db"]]


def test_the_x86_lowering_is_measured_against_the_graph_it_came_from(digits):
    """On x86 the quantize/dequantize graph is lowered to oneDNN int8 kernels; on the trained CNN each kernel's output
    is within a fraction of a step of the graph's, and the report says how the two models compare."""
    lowered = _table(digits["x86"], "lowered").set_index("layer_fqn")
    assert list(lowered.index) == CONVS + ["fc"]
    assert list(lowered.op_type) == ["qconv_pointwise"] * 3 + ["qlinear_pointwise"]
    assert (lowered.loc[CONVS, "rmse_over_step"] < 0.5).all()
    assert (lowered.sqnr_db > 30).all()
    notes = " ".join(json.loads((digits["x86"] / "manifest.json").read_text())["data"]["notes"])
    assert "x86 lowering (oneDNN int8 kernels" in notes
    html = (digits["x86"] / "report.html").read_text()
    assert 'id="lowered"' in html and "qconv_pointwise" in html


@pytest.mark.parametrize("factory, kernels", [("flatten_cnn", ["qconv_pointwise", "qlinear_pointwise"]),
                                               ("permuted_sum_net", ["qconv_pointwise", "qconv2d_pointwise",
                                                                     "qlinear_pointwise"])])
def test_the_lowered_kernels_are_measured_where_the_lowered_graph_does_not_run_as_it_is(tmp_path, factory, kernels):
    """The lowered graph views a channels-last kernel output it flattens, and hands a fused add a transposed
    accumulator; qreport runs the views as reshapes and gives the add a channels-last copy."""
    assert main([*tiny_args(tmp_path / "run", factory), "--flow", "pt2e", "--input-shape", "3,8,8"]) == 0
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["stages"]["kernels"]["status"] == "ok", manifest["stages"]["kernels"]
    lowered = _table(tmp_path / "run", "lowered")
    assert list(lowered.op_type) == kernels
    assert (lowered.sqnr_db > 30).all()


def test_the_lean_weight_folding_and_dequantize_change_no_number(tmp_path, monkeypatch):
    """The PT2E convert quantizes large weights in slices of channels and skips the dequantizes its folder discards;
    the int8 model's weight dequantize runs leaner while the build runs; the simulator dequantizes its larger
    weights where they are read instead of keeping a copy. Every table equals a build with torch's own code paths
    and every dequantized weight kept (here every weight is sliced, and all but the smallest read afresh)."""
    import contextlib

    from qreport.flows import pt2e, pt2e_kernels, sim_fork

    checkpoint, data = write_digits_cnn(tmp_path)
    monkeypatch.setattr(pt2e_kernels, "FOLD_SLICE_BYTES", 256)
    monkeypatch.setattr(sim_fork, "DEQUANTIZED_KEPT_BYTES", 4096)
    assert _build(tmp_path / "lean", checkpoint, data, "--flow", "pt2e") == 0
    monkeypatch.setattr(pt2e, "lean_folding", contextlib.nullcontext)
    monkeypatch.setattr(pt2e.Pt2eStaticFlow, "running", lambda self: contextlib.nullcontext())
    monkeypatch.setattr(sim_fork, "DEQUANTIZED_KEPT_BYTES", 2**40)
    assert _build(tmp_path / "stock", checkpoint, data, "--flow", "pt2e") == 0
    tables = sorted(p.name for p in (tmp_path / "lean").glob("*.parquet"))
    assert {"weights.parquet", "activations.parquet", "shadow.parquet", "model.parquet", "sensitivity.parquet"} <= set(tables)
    for name in tables:
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "lean" / name), pd.read_parquet(tmp_path / "stock" / name),
                                      obj=name)


def test_the_float_view_runs_on_the_prepared_models_own_weights():
    """The propagated view's float graph is the prepared graph without its observers, reading the prepared model's
    own (BatchNorm-folded) weight tensors: a deep copy of them raised regnet_y_128gf's activations stage by 1.8 GiB."""
    import functools

    import torch

    from qreport.flows import pt2e_taps
    from qreport.flows.pt2e import Pt2eStaticFlow
    from trained_models import digits_split, trained_digits_cnn

    inputs = digits_split()[0]["inputs"][:64]
    prepared = Pt2eStaticFlow("x86").calibrated(trained_digits_cnn(), inputs, [inputs])
    view = pt2e_taps.float_graph(prepared)

    def read_tensors(gm) -> dict[str, torch.Tensor]:
        return {str(n.target): functools.reduce(getattr, str(n.target).split("."), gm)
                for n in gm.graph.nodes if n.op == "get_attr"}

    weights = {name: t for name, t in read_tensors(view).items() if isinstance(t, torch.Tensor) and t.dim() >= 2}
    assert len(weights) >= 4  # three convolutions and the classifier
    prepared_tensors = read_tensors(prepared)
    assert all(t.data_ptr() == prepared_tensors[name].data_ptr() for name, t in weights.items())
    assert not any(n.op == "call_module" and "activation_post_process" in str(n.target) for n in view.graph.nodes)
    assert any(n.op == "call_module" and "activation_post_process" in str(n.target) for n in prepared.graph.nodes)
    with torch.no_grad():
        assert torch.allclose(view(inputs), prepared(inputs))  # observers only observe
