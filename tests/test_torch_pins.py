"""Facts about torch 2.14 that qreport builds on. If a torch upgrade changes one, these fail first."""

import contextlib
import copy
import json
import warnings
from unittest import mock

import pandas as pd
import pytest
import torch
import torchvision
from torch.ao.quantization import get_default_qconfig_mapping
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

import torch.ao.ns._numeric_suite_fx as ns
from torch.ao.ns.fx.utils import compute_sqnr

from conftest import run_cli, tiny_args
from qreport.cli import main
import toy_models


def _prepared(model, x):
    p = prepare_fx(copy.deepcopy(model), get_default_qconfig_mapping("x86"), (x,))
    with torch.no_grad():
        p(x)
    return p


def test_raw_shadow_loggers_misread_conv_before_inplace_relu6_and_qreport_does_not(tmp_path):
    torch.backends.quantized.engine = "x86"
    model = toy_models.relu6_cnn().eval()
    x = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = _prepared(model, x)
        shadow = ns.add_shadow_loggers("fp32", copy.deepcopy(model), "int8", convert_fx(copy.deepcopy(p)), ns.OutputLogger)
        shadow(x)
        raw = ns.extract_shadow_logger_info(shadow, ns.OutputLogger, "int8")
    raw_db = {
        k: float(compute_sqnr(v["node_output"]["fp32"][0]["values"][0], v["node_output"]["int8"][0]["values"][0].dequantize()))
        for k, v in raw.items()
    }
    # The torch behaviour: the int8 conv already carries ReLU6's range, its float shadow does not.
    assert raw_db["conv1"] < 10.0, raw_db

    out = tmp_path / "run"
    assert main(tiny_args(out, "relu6_cnn")) == 0
    iso = pd.read_parquet(out / "shadow.parquet").set_index("layer_fqn")
    assert iso.loc["conv1", "compared_after"] == "ReLU6"
    assert iso.loc["conv1", "sqnr_db"] > 25.0
    guidance = pd.read_parquet(out / "guidance.parquet")
    assert not ((guidance.layer_fqn == "conv1") & guidance.severity.isin(["high", "medium"])).any()


def test_prepare_fx_warns_deprecation_and_the_cli_hides_it(tmp_path):
    model = toy_models.tiny_cnn().eval()
    x = torch.randn(2, 3, 32, 32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prepare_fx(copy.deepcopy(model), get_default_qconfig_mapping("x86"), (x,))
    assert any(issubclass(w.category, DeprecationWarning) and "deprecated" in str(w.message) for w in caught)

    quiet = run_cli(*tiny_args(tmp_path / "a", "tiny_cnn")[:-1])
    assert quiet.returncode == 0, quiet.stderr
    assert "deprecated" not in quiet.stderr.lower()
    loud = run_cli(*tiny_args(tmp_path / "b", "tiny_cnn")[:-1], "-v")
    assert loud.returncode == 0, loud.stderr
    assert "deprecated" in loud.stderr.lower()


def test_shadow_loggers_print_skipped_adds_and_coverage_records_them(tiny_run):
    coverage = pd.read_parquet(tiny_run / "coverage.parquet")
    add = coverage[coverage.op_type == "quantized.add"]
    assert len(add) == 1
    assert not add.in_shadow.iloc[0] and add.in_activations.iloc[0]
    assert "Numeric Suite skipped it" in add.note.iloc[0]


def test_add_loggers_fails_on_a_prepared_resnet18_but_not_on_the_float_model():
    torch.backends.quantized.engine = "x86"
    model = torchvision.models.resnet18().eval()
    x = torch.randn(2, 3, 32, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = _prepared(model, x)
        with pytest.raises(KeyError, match="layer1_0_conv1_1"):
            ns.add_loggers("fp32", p, "int8", convert_fx(copy.deepcopy(p)), ns.OutputLogger)
        # qreport passes the float model, which works
        ns.add_loggers("fp32", copy.deepcopy(model), "int8", convert_fx(copy.deepcopy(p)), ns.OutputLogger)


def test_quantizable_mobilenet_v2_has_no_relu6():
    model = torchvision.models.quantization.mobilenet_v2(weights=None, quantize=False)
    assert not any(isinstance(m, torch.nn.ReLU6) for m in model.modules())
    assert any(isinstance(m, torch.nn.ReLU) for m in model.modules())



def test_numeric_suite_ignores_prepare_fx_non_traceable_config_and_qreport_handles_it(tmp_path):
    from torch.ao.quantization.fx.custom_config import PrepareCustomConfig

    torch.backends.quantized.engine = "x86"
    model = toy_models.untraceable().eval()
    x = torch.randn(2, 3, 32, 32)
    custom = PrepareCustomConfig().set_non_traceable_module_names(["gate"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare_fx(copy.deepcopy(model), get_default_qconfig_mapping("x86"), (x,),
                              prepare_custom_config=custom)  # passes
        prepared(x)
        quantized = convert_fx(copy.deepcopy(prepared))
        with pytest.raises(Exception, match="control flow"):  # the suite builds its own NSTracer([], [])
            ns.add_loggers("fp32", copy.deepcopy(model), "int8", quantized, ns.OutputLogger)

    for spec in ("gate", "Gate"):  # a module path or a class name
        out = tmp_path / spec
        assert main(tiny_args(out, "untraceable", "--non-traceable", spec)) == 0
        manifest = json.loads((out / "manifest.json").read_text())
        assert all(s["status"] == "ok" for s in manifest["stages"].values())
        assert set(pd.read_parquet(out / "shadow.parquet").layer_fqn) == {"stem", "fc"}


def test_raw_shadow_loggers_feed_int8_to_a_float_layernorm_and_qreport_dequantizes(tmp_path):
    """quantized.LayerNorm subclasses nn.LayerNorm, so the suite types its input as float and skips the dequantize."""
    torch.backends.quantized.engine = "x86"
    model = toy_models.norm_mlp().eval()
    x = torch.randn(8, 16, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized = convert_fx(_prepared(model, x))
        shadow = ns.add_shadow_loggers("fp32", copy.deepcopy(model), "int8", quantized, ns.OutputLogger)
    with pytest.raises(NotImplementedError, match="QuantizedCPU"):
        shadow(x)

    out = tmp_path / "run"
    assert main(tiny_args(out, "norm_mlp")) == 0
    iso = pd.read_parquet(out / "shadow.parquet").set_index("layer_fqn")
    # A float shadow that ran the int8 kernel would match exactly (infinite SQNR); a real one does not.
    for layer in ("norm", "act"):
        assert 20.0 < iso.loc[layer, "sqnr_db"] < 80.0, iso.loc[layer, "sqnr_db"]


def test_x86_int8_mean_over_a_1x1_conv_output_fails_and_qnnpack_works(tmp_path):
    """Why the model walk starts at 64×64: at 32×32 the last feature map of most classifiers is 1×1."""
    x = torch.randn(2, 3, 1, 1)
    for engine, fails in (("x86", True), ("qnnpack", False)):
        torch.backends.quantized.engine = engine
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            conv = torch.ao.nn.quantized.Conv2d(3, 4, 1)
            y = conv(torch.quantize_per_tensor(x, 0.1, 128, torch.quint8))
        if fails:
            with pytest.raises(RuntimeError, match="channels_last"):
                y.mean([2, 3])
        else:
            assert y.mean([2, 3]).shape == (2, 4)
    torch.backends.quantized.engine = "x86"

    out = tmp_path / "run"
    assert main(tiny_args(out, "pointwise_mean")) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert any("does not run (backend x86" in n and "--backend qnnpack" in n for n in manifest["data"]["notes"])
    assert manifest["stages"]["weights"]["status"] == "ok"
    assert manifest["stages"]["model"]["status"] == "failed"
    assert "does not run (backend x86" in (out / "report.html").read_text()
    assert main(tiny_args(tmp_path / "qnnpack", "pointwise_mean", "--backend", "qnnpack")) == 0
    manifest = json.loads((tmp_path / "qnnpack" / "manifest.json").read_text())
    assert not any("does not run" in n for n in manifest["data"]["notes"])


class _ConvActConv(torch.nn.Module):
    def __init__(self, act):
        super().__init__()
        self.conv1, self.act, self.conv2 = torch.nn.Conv2d(3, 8, 3), act, torch.nn.Conv2d(8, 4, 3)

    def forward(self, x):
        return self.conv2(self.act(self.conv1(x)))


def _convert_keeping_float(model, x, name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = prepare_fx(copy.deepcopy(model), get_default_qconfig_mapping("x86").set_module_name(name, None), (x,))
        p(x)
        return convert_fx(p)


def test_raw_convert_fx_cannot_keep_a_prelu_float_and_qreport_can(tmp_path):
    torch.backends.quantized.engine = "x86"
    torch.manual_seed(0)
    model, x = _ConvActConv(torch.nn.PReLU(8)).eval(), torch.randn(2, 3, 16, 16)
    with pytest.raises(AttributeError, match="'NoneType' object has no attribute 'weight'"):
        _convert_keeping_float(model, x, "act")  # PReLU.from_reference reads qconfig.weight of a None qconfig
    qconfig = tmp_path / "q.toml"
    qconfig.write_text('[modules]\n"prelu1" = "float"\n"prelu2" = "float"\n')
    out = tmp_path / "run"
    assert main(tiny_args(out, "prelu_cnn", "--qconfig", str(qconfig))) == 0
    stages = json.loads((out / "manifest.json").read_text())["stages"]
    assert {name: s["status"] for name, s in stages.items()} == {name: "ok" for name in stages}
    coverage = pd.read_parquet(out / "coverage.parquet").set_index("layer_fqn")
    assert coverage.loc["prelu1", "status"] == "float"


def test_raw_convert_fx_silently_quantizes_a_hardswish_kept_float():
    torch.backends.quantized.engine = "x86"
    model, x = _ConvActConv(torch.nn.Hardswish()).eval(), torch.randn(2, 3, 16, 16)
    assert type(_convert_keeping_float(model, x, "act").act).__module__.startswith("torch.ao.nn.quantized")
    from qreport.config import ModuleOverride
    from qreport.flows.fx import FxStaticFlow

    flow = FxStaticFlow("x86", [ModuleOverride("act", "float")])
    prepared = flow.prepare(model, x)
    prepared(x)
    assert not type(flow.convert(prepared).act).__module__.startswith("torch.ao.nn.quantized")


def test_int8_prelu_scales_positive_inputs_by_its_largest_slope():
    """torch 2.14.1's int8 PReLU: positive outputs come out times the largest representable slope when every slope is
    below 1 (x86 and qnnpack alike), so a trained PReLU network collapses in int8."""
    for engine in ("x86", "qnnpack"):
        torch.backends.quantized.engine = engine
        prelu = torch.nn.PReLU(8).eval()
        with torch.no_grad():
            prelu.weight.copy_(torch.linspace(0.05, 0.4, 8))
        model, x = _ConvActConv(prelu).eval(), torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            q = convert_fx(_prepared(model, x)).act
            xq = torch.quantize_per_tensor(torch.linspace(0.1, 1.0, 128).reshape(1, 8, 4, 4), 0.01, 0, torch.quint8)
            ratio = (q(xq).dequantize() / xq.dequantize()).mean()
        assert ratio == pytest.approx(0.4, abs=0.02), engine


def _pt2e_prepared(model, x, quantizer):
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    prepared = prepare_pt2e(torch.export.export(model.eval(), (x,)).module(), quantizer)
    with torch.no_grad():
        prepared(x)
    return prepared


def _xnnpack(**config):
    from torchao.testing.pt2e._xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config

    return XNNPACKQuantizer().set_global(get_symmetric_quantization_config(**config))


def test_convert_pt2e_keeps_the_names_of_the_ops_it_quantizes():
    """The PT2E flow pairs the prepared graph (float weights, BatchNorm folded) with the converted one by node name."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    x = torch.randn(2, 3, 32, 32)
    prepared = _pt2e_prepared(toy_models.tiny_cnn(), x, _xnnpack(is_per_channel=True))
    ops = {n.name: n.target for n in prepared.graph.nodes if n.op == "call_function"}
    converted = convert_pt2e(copy.deepcopy(prepared))
    compute = [n for n in converted.graph.nodes if n.op == "call_function" and "quantized_decomposed" not in str(n.target)]
    assert compute and all(ops.get(n.name) == n.target for n in compute)
    conv = next(n for n in compute if "conv2d" in str(n.target))
    assert "dequantize_per_channel" in str(conv.args[1].target)  # its weight: an int8 constant, dequantized


def test_convert_pt2e_searches_qat_patterns_for_a_batchnorm_left_after_ptq_and_skipping_it_changes_nothing():
    """torchao 0.18: a BatchNorm that follows no conv (DenseNet's) makes every ``convert_pt2e`` export QAT's
    conv-BatchNorm pattern graphs (17 s of densenet121's 17.2 s convert here). Post-training quantization has none of
    those patterns, so qreport's convert skips the search: the converted graph and its outputs are the same."""
    import torchao.quantization.pt2e.qat_utils as qat_utils
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    from qreport.flows.pt2e import Pt2eStaticFlow, _weights_dequantized_where_read

    x = torch.randn(2, 3, 16, 16)
    prepared = _pt2e_prepared(toy_models.dense_block_net(), x, _xnnpack(is_per_channel=True))
    with mock.patch.object(qat_utils, "_get_aten_graph_module_for_pattern",
                           wraps=qat_utils._get_aten_graph_module_for_pattern) as exported_patterns:
        theirs = convert_pt2e(copy.deepcopy(prepared))
    assert exported_patterns.call_count > 0
    with mock.patch.object(qat_utils, "_get_aten_graph_module_for_pattern",
                           wraps=qat_utils._get_aten_graph_module_for_pattern) as exported_patterns:
        ours = Pt2eStaticFlow("xnnpack").convert(prepared)
    assert exported_patterns.call_count == 0
    assert ours.code == _weights_dequantized_where_read(theirs).code  # the one change qreport makes on purpose
    torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=0)


def test_convert_pt2e_dequantizes_every_weight_at_the_top_of_the_graph_and_qreport_where_it_is_read():
    """torchao 0.18: ``convert_pt2e`` puts every constant weight's dequantize before the graph's first op, so each
    forward of the q/dq model holds the whole model's weights in float at once (regnet_y_32gf under PT2E: its
    activations stage peaked 560 MB higher). qreport's convert moves each to just before the op reading it."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    from qreport.flows import pt2e_graph
    from qreport.flows.pt2e import Pt2eStaticFlow

    x = torch.randn(2, 3, 32, 32)
    prepared = _pt2e_prepared(toy_models.bad_channel_cnn(), x, _xnnpack(is_per_channel=True))

    def weight_dequantizes(gm):
        nodes = list(gm.graph.nodes)
        return [(nodes.index(n), min(nodes.index(u) for u in n.users)) for n in nodes
                if pt2e_graph.is_constant_dequantize(n)]

    theirs = convert_pt2e(copy.deepcopy(prepared))
    first_op = next(i for i, n in enumerate(theirs.graph.nodes) if n.op == "placeholder")
    assert len(weight_dequantizes(theirs)) == 3 and all(at < first_op for at, _ in weight_dequantizes(theirs))
    ours = Pt2eStaticFlow("xnnpack").convert(prepared)
    assert len(weight_dequantizes(ours)) == 3 and all(user == at + 1 for at, user in weight_dequantizes(ours))
    torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=0)


def test_the_decomposed_weight_dequantize_makes_an_int64_copy_and_qreport_kernel_does_not():
    """torch 2.14: ``quantized_decomposed.dequantize_per_channel`` subtracts int64 zero points from the int8 weight
    (an 8-byte copy of it) before scaling, on every forward of a PT2E q/dq model: 1.6 GB for vgg11's classifier
    weight. qreport's kernel, installed while a PT2E build runs, gives the same values with one float copy."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from qreport.flows.pt2e_kernels import lean_weight_dequantize

    class Outputs(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.dtypes = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if isinstance(out, torch.Tensor) and out.numel() == weight.numel():
                self.dtypes.append(out.dtype)
            return out

    from qreport.flows import pt2e_kernels
    from torch.ao.quantization.fx import _decomposed

    weight = torch.randint(-127, 128, (16, 8, 3, 3), dtype=torch.int8)
    args = (weight, torch.rand(16) / 50, torch.zeros(16, dtype=torch.int64), 0, -127, 127, torch.int8)
    with Outputs() as theirs:  # the op's CPU kernel is this decomposition
        expected = _decomposed.dequantize_per_channel(*args)
    assert torch.int64 in theirs.dtypes
    with Outputs() as ours:
        assert torch.equal(pt2e_kernels._dequantize_per_channel(*args), expected)
    assert set(ours.dtypes) == {torch.float32}

    dequantize = torch.ops.quantized_decomposed.dequantize_per_channel.default
    with mock.patch.object(pt2e_kernels, "_dequantize_per_channel", wraps=pt2e_kernels._dequantize_per_channel) as kernel:
        with lean_weight_dequantize():
            got = dequantize(*args)
        assert kernel.call_count == 1
        assert torch.equal(got, expected) and got.stride() == expected.stride()
        assert torch.equal(dequantize(*args), expected) and kernel.call_count == 1  # uninstalled after the block


def test_convert_pt2e_evaluates_the_weight_dequantizes_it_discards_and_qreport_does_not():
    """torchao 0.18: ``convert_pt2e``'s constant folder computes each weight's dequantize (a float copy) and then
    drops it, since dequantize ops stay in the graph; qreport's convert skips them: the same graph and outputs."""
    import torchao.quantization.pt2e.constant_fold as constant_fold
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    from qreport.flows.pt2e import Pt2eStaticFlow, _weights_dequantized_where_read

    x = torch.randn(2, 3, 16, 16)
    prepared = _pt2e_prepared(toy_models.tiny_cnn(), x, _xnnpack(is_per_channel=True))

    def computed_while_folding(convert):
        computed = []
        original = constant_fold.ConstantFolder.call_function

        def recorded(self, target, args, kwargs):
            computed.append(str(target))
            return original(self, target, args, kwargs)

        with mock.patch.object(constant_fold.ConstantFolder, "call_function", recorded):
            return convert(), computed

    theirs, computed = computed_while_folding(lambda: convert_pt2e(copy.deepcopy(prepared)))
    assert any("dequantize_per_channel" in target for target in computed)
    ours, computed = computed_while_folding(lambda: Pt2eStaticFlow("xnnpack").convert(prepared))
    assert any("quantize_per_channel" in target for target in computed)
    assert not any("dequantize" in target for target in computed)
    assert ours.code == _weights_dequantized_where_read(theirs).code  # the one change qreport makes on purpose
    torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=0)


@pytest.mark.parametrize("factory, error", [("flatten_cnn", "view size is not compatible"),
                                            ("permuted_sum_net", "accum tensor must be contiguous")])
def test_the_x86_lowered_graph_does_not_run_as_it_is(factory, error):
    """torchao 0.18: ``lower_pt2e_quantized_to_x86`` keeps ``aten.view`` after a oneDNN conv whose output is channels
    last (conv → flatten → Linear fails), and feeds a conv fused with an add an accumulator that is not channels last
    (MaxViT); qreport makes the views reshapes and copies the accumulator (``pt2e_lowered.lower_x86``)."""
    from torchao.quantization.pt2e.lowering import lower_pt2e_quantized_to_x86

    from qreport.flows.pt2e import Pt2eStaticFlow

    x = torch.randn(2, 3, 8, 8)
    flow = Pt2eStaticFlow("x86")
    model = getattr(toy_models, factory)()
    quantized = flow.convert(flow.calibrated(model, x, [x]))
    with torch.no_grad():
        lowered = lower_pt2e_quantized_to_x86(copy.deepcopy(quantized), (x,))
        with pytest.raises(RuntimeError, match=error):
            lowered(x)


def test_the_xnnpack_quantizer_takes_no_none_config_per_module():
    """So the PT2E flow keeps a module float by removing the quantizer's annotations inside it."""
    quantizer = _xnnpack()
    with pytest.raises(AssertionError, match="None is not supported"):
        quantizer.set_module_name("stem", None)


def test_the_x86_quantizer_rejects_one_relu_module_called_twice():
    """torchao 0.18: torchvision's BasicBlock (self.relu after conv1 and after the add) fails in X86's annotation;
    qreport turns this into a one-line error with the workaround."""
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer, get_default_x86_inductor_quantization_config)

    quantizer = X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config())
    with pytest.raises(ValueError, match="more than one output node"):
        _pt2e_prepared(toy_models.shared_relu_net(), torch.randn(2, 3, 32, 32), quantizer)


def test_the_subgraph_matcher_rebuilds_its_fusion_patterns_per_node_and_qreport_builds_them_once():
    from torch.ao.ns.fx import graph_matcher

    from qreport.flows.ns_patches import fusion_patterns_once

    model = toy_models.shared_relu_net().eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized = convert_fx(_prepared(model, x))

    def logged_layers(patched: bool) -> tuple[list[str], int]:
        real = graph_matcher.get_reversed_fusions
        with mock.patch.object(graph_matcher, "get_reversed_fusions", side_effect=real) as counted:
            with warnings.catch_warnings(), (fusion_patterns_once() if patched else contextlib.nullcontext()):
                warnings.simplefilter("ignore")
                a, b = ns.add_loggers("fp32", copy.deepcopy(model), "int8", copy.deepcopy(quantized), ns.OutputLogger)
                a(x), b(x)
            info = ns.extract_logger_info(a, b, ns.OutputLogger, "int8")
            return sorted(info), counted.call_count

    stock, stock_calls = logged_layers(patched=False)
    ours, our_calls = logged_layers(patched=True)
    assert stock_calls > 10  # torch: one rebuild per node the matcher visits, in each of the two graphs
    assert our_calls == 1
    assert ours == stock and len(stock) > 3
    real = graph_matcher.get_reversed_fusions
    with fusion_patterns_once():
        assert graph_matcher.get_reversed_fusions is not real
    assert graph_matcher.get_reversed_fusions is real
