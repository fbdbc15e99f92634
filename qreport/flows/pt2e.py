"""PT2E static post-training quantization (torchao): ``torch.export`` → ``prepare_pt2e`` → calibrate →
``convert_pt2e``, with qreport's own weight, propagated and isolated views on the converted graph.

torchao is an optional extra (``pip install --no-deps torchao==0.18.0``). The converted model is the reference
quantize/dequantize representation: it computes in float around quantize/dequantize steps, as a backend's
lowering is meant to reproduce.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import re
from typing import Iterable
from unittest import mock

import torch
from torch import fx, nn

from qreport.config import ModuleOverride
from qreport.data import call, model_args
from qreport.errors import InputError, first_line
from qreport.flows import pt2e_graph, pt2e_taps
from qreport.flows.copies import sharing_modules, sharing_weights
from qreport.flows.fused_once import FusedWeights
from qreport.flows.fx import quiet_torch
from qreport.flows.observers import copy_observer_states
from qreport.flows.pt2e_kernels import lean_folding, lean_weight_dequantize
from qreport.overrides import covers, kept_float_by, unknown_module_error
from qreport.streaming import FLOAT_NAME, QUANT_NAME

QUANTIZERS = ("x86", "arm", "xnnpack")
TORCHAO_PIN = "torchao==0.18.0"
# The presets each quantizer can express per module (X86 and ARM weights are per-channel, activations histogram).
QUANTIZER_PRESETS = {"x86": ("float", "default"), "arm": ("float", "default"),
                     "xnnpack": ("float", "default", "per_channel", "per_tensor")}
# Known quantizer failures: (pattern in the error, what it means and what to do; {reused} names the modules).
KNOWN_FAILURES = [
    (re.compile(r"more than one output node"),
     "a module object used at two places in forward{reused} makes a partition with two outputs, which this "
     "quantizer rejects (torchvision's BasicBlock reuses self.relu); give each place its own module, or use "
     "--quantizer xnnpack or arm, or --flow fx"),
]


# Leaf modules whose reuse is harmless to a quantizer (they leave no op in the exported graph).
_NO_OPS = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)


def reused_modules(model: nn.Module, example) -> list[str]:
    """The leaf modules (other than no-ops) one forward pass calls more than once, in the order first called."""
    calls: dict[str, int] = {}
    hooks = [m.register_forward_hook(lambda *_, name=name: calls.__setitem__(name, calls.get(name, 0) + 1))
             for name, m in model.named_modules()
             if name and next(m.children(), None) is None and not isinstance(m, _NO_OPS)]
    try:
        with torch.no_grad():
            call(model, example)
    finally:
        for hook in hooks:
            hook.remove()
    return [name for name, count in calls.items() if count > 1]


def _listed(names: list[str], shown: int = 3) -> str:
    more = f", … {len(names)} in all" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _torchao():
    quiet = logging.getLogger("torch.utils._pytree")  # torchao 0.18 registers an Enum torch 2.14 warns about
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        import torchao.quantization  # noqa: F401 - everything torchao registers, under the quieted logger
        import torchao.quantization.pt2e.quantize_pt2e as quantize_pt2e
    except ImportError:
        raise InputError(f"--flow pt2e needs torchao: pip install --no-deps {TORCHAO_PIN} (or install qreport[pt2e])") \
            from None
    finally:
        quiet.setLevel(level)
    return quantize_pt2e


def _dead_code_removed(model: fx.GraphModule) -> fx.GraphModule:
    model.graph.eliminate_dead_code()
    model.recompile()
    return model


def _unread_tensors_dropped(gm: fx.GraphModule) -> fx.GraphModule:
    """``gm`` without the parameters and buffers its graph no longer reads: after ``convert_pt2e`` the float weights
    stay attached beside the int8 constants that replaced them (507 of vgg11's 634 MB)."""
    read = [str(n.target) for n in gm.graph.nodes if n.op in ("get_attr", "call_module")]
    for name, _ in [*gm.named_parameters(), *gm.named_buffers()]:
        if not any(covers(r, name) for r in read):
            owner, _, attr = name.rpartition(".")
            delattr(gm.get_submodule(owner), attr)
    return gm


def _weights_dequantized_where_read(gm: fx.GraphModule) -> fx.GraphModule:
    """``gm`` with each constant weight's dequantize moved to just before the op that reads it. ``convert_pt2e``
    puts them all at the top of the graph, so every forward held the whole model's weights dequantized to float
    at once (one more copy of the weights, in every stage that runs the int8 model); the generated code frees each
    value after its last use, so now one layer's at a time. The same ops on the same values."""
    order = {node: i for i, node in enumerate(gm.graph.nodes)}
    for node in list(gm.graph.nodes):
        if pt2e_graph.is_constant_dequantize(node) and node.users:
            min(node.users, key=order.__getitem__).prepend(node)
    gm.recompile()
    return gm


@contextlib.contextmanager
def _without_qat_folding(quantize_pt2e):
    """``convert_pt2e`` without its search for quantization-aware training's conv-BatchNorm patterns.

    A post-training graph cannot hold them (they are the scale-factor chain ``prepare_qat_pt2e`` inserts), but any
    BatchNorm left in the graph (DenseNet's, after a concatenation) starts the search, which exports 96 small
    pattern graphs on every conversion: 17 s of densenet121's 17.2 s convert here. What the search does besides
    matching is dropping dead code (kept) and the training-mode BatchNorm counter update (absent: the export is of
    the model in eval mode). The result is the same graph (pinned in the tests)."""
    if not hasattr(quantize_pt2e, "_fold_conv_bn_qat"):
        yield
        return
    with mock.patch.object(quantize_pt2e, "_fold_conv_bn_qat", _dead_code_removed):
        yield


def _keeping_float(quantizer, modules: list[str]):
    """``quantizer`` that leaves the ops inside ``modules`` unannotated, so they stay float (the XNNPACK quantizer
    takes no ``None`` config per module)."""
    from torchao.quantization.pt2e.quantizer import Quantizer

    class KeepingFloat(Quantizer):
        def annotate(self, model):
            model = quantizer.annotate(model)
            for node in model.graph.nodes:
                if kept_float_by(pt2e_graph.module_path(node), floats):
                    node.meta.pop("quantization_annotation", None)
            return model

        def validate(self, model):
            return quantizer.validate(model)

    floats = [ModuleOverride(m, preset="float") for m in modules]
    return KeepingFloat()


class _Exports:
    """One ``torch.export`` per float model, shared by a flow and its variants (the fix's rungs): exporting a large
    model takes seconds to minutes. ``prepare_pt2e`` changes the graph it is given (BatchNorm folding attaches new
    weights rather than writing into the old ones), so each gets a copy of the graph that shares the tensors: the
    export shares them with the float model, and so does every prepared model, its folded convs included
    (``fused``)."""

    def __init__(self):
        self._model: nn.Module | None = None
        self._key: tuple = ()
        self._exported: nn.Module | None = None
        self.fused = FusedWeights()  # BatchNorm folded into the export's convs, once for all its preparations

    def copy_of(self, model: nn.Module, example, export) -> nn.Module:
        """A fresh copy of ``export(model, example)``, exporting again only for another model, other input shapes
        or dtypes, or other parameter objects."""
        key = (tuple((tuple(a.shape), a.dtype) if isinstance(a, torch.Tensor) else repr(a) for a in model_args(example)),
               tuple(map(id, model.parameters())))
        if self._model is not model or self._key != key:
            self._model, self._key, self._exported = model, key, export(model, example)
        shared = {id(t): t for t in [*self._exported.parameters(), *self._exported.buffers()]}
        return copy.deepcopy(self._exported, shared)


class Pt2eStaticFlow:
    """Static PTQ through torchao's PT2E quantizers (X86 inductor, ARM inductor, XNNPACK)."""

    name = "pt2e-static"

    def __init__(self, quantizer: str = "x86", overrides: Iterable[ModuleOverride] = (), verbose: bool = False,
                 non_traceable: Iterable[str] = (), exports: "_Exports | None" = None):
        if tuple(non_traceable):
            raise InputError("--non-traceable is an FX option: torch.export captures the whole model; drop it with "
                             "--flow pt2e")
        if quantizer not in QUANTIZERS:
            raise InputError(f"unknown quantizer {quantizer!r}; use one of {', '.join(QUANTIZERS)}")
        self.quantizer_name = quantizer
        self.unsupported_stages = {"ranges": "not yet measured for PT2E observers"}
        if quantizer != "x86":
            self.unsupported_stages["kernels"] = (f"no lowering to int8 kernels for the {quantizer} quantizer here (the "
                                                  "quantize/dequantize graph runs float kernels)")
        self.overrides = tuple(overrides)
        self.verbose = verbose
        self.notes: list[str] = []
        self.presets = QUANTIZER_PRESETS[quantizer]
        self._float_model: nn.Module | None = None
        self._exports = exports if exports is not None else _Exports()
        for o in self.overrides:
            if o.preset not in self.presets:
                raise InputError(f"qconfig for {o.module!r}: {o.describe()!r} is not available with --flow pt2e "
                                 f"--quantizer {quantizer}; use one of {', '.join(self.presets)}")

    @property
    def target(self) -> str:
        """What quantized the model, for progress lines."""
        return f"{self.quantizer_name} quantizer (PT2E)"

    @property
    def alternative(self) -> str:
        """What to try when the int8 model does not run."""
        return "try another --quantizer, or --flow fx"

    # -- quantization --------------------------------------------------------------------------
    def _quantizer(self):
        if self.quantizer_name == "xnnpack":
            from torchao.testing.pt2e._xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config

            quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
            for o in self.overrides:
                if o.preset != "float":
                    quantizer.set_module_name(o.module, get_symmetric_quantization_config(
                        is_per_channel=o.preset != "per_tensor"))
            floats = [o.module for o in self.overrides if o.preset == "float"]
            return _keeping_float(quantizer, floats) if floats else quantizer
        if self.quantizer_name == "arm":
            from torchao.quantization.pt2e.quantizer.arm_inductor_quantizer import (
                ArmInductorQuantizer, get_default_arm_inductor_quantization_config)

            quantizer, config = ArmInductorQuantizer(), get_default_arm_inductor_quantization_config()
        else:
            from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
                X86InductorQuantizer, get_default_x86_inductor_quantization_config)

            quantizer, config = X86InductorQuantizer(), get_default_x86_inductor_quantization_config()
        quantizer.set_global(config)
        for o in self.overrides:
            quantizer.set_module_name_qconfig(o.module, None if o.preset == "float" else config)
        return quantizer

    def export(self, model: nn.Module, example) -> nn.Module:
        """``torch.export`` of the float model with a free batch size, as a graph module."""
        args = model_args(example)
        dynamic = tuple({0: torch.export.Dim.AUTO} for _ in args)
        try:
            return torch.export.export(model.eval(), args, dynamic_shapes=dynamic).module()
        except Exception as exc:  # the user's model: tell them what torch.export said
            raise InputError(f"torch.export cannot capture the model ({exc.__class__.__name__}: "
                             f"{first_line(exc)[:160]}); quantize it with --flow fx instead") from None

    def prepare(self, model: nn.Module, example) -> nn.Module:
        """Export and insert the quantizer's observers (BatchNorm folded into its conv)."""
        quantize_pt2e = _torchao()
        error = unknown_module_error([n for n, _ in model.named_modules() if n], self.overrides)
        if error:
            raise InputError(error)
        self._float_model = model
        with quiet_torch(self.verbose, self.notes):
            exported = self._exports.copy_of(model, example, self.export)
            try:
                with self._exports.fused.reused_in_pt2e():
                    return quantize_pt2e.prepare_pt2e(exported, self._quantizer())
            except Exception as exc:
                raise self._quantizer_error(exc, model, example) from None

    def _quantizer_error(self, exc: Exception, model: nn.Module, example) -> Exception:
        message = first_line(exc)
        for pattern, meaning in KNOWN_FAILURES:
            if pattern.search(message):
                reused = reused_modules(model, example)
                meaning = meaning.format(reused=f" ({_listed(reused)})" if reused else "")
                return InputError(f"the {self.quantizer_name} quantizer fails on this model ({message[:80]}): {meaning}")
        return InputError(f"the {self.quantizer_name} quantizer fails on this model ({exc.__class__.__name__}: "
                          f"{message[:160]}); try another --quantizer or --flow fx")

    def calibrated(self, model: nn.Module, example, batches, observed: nn.Module | None = None,
                   record=None) -> nn.Module:
        """A prepared copy of ``model`` whose observers have seen ``batches``, or copied the states of ``observed``
        (calibrated on the same batches) when they all match; ``record`` stays empty (no ranges stage here)."""
        prepared = self.prepare(model, example)
        if observed is not None and copy_observer_states(observed, prepared):
            return prepared
        with torch.no_grad(), quiet_torch(self.verbose, self.notes):
            for x in batches:
                call(prepared, x)
        return prepared

    def convert(self, prepared: nn.Module) -> nn.Module:
        """A fresh quantize/dequantize model from a calibrated prepared one (int8 weights stored as constants)."""
        quantize_pt2e = _torchao()
        with quiet_torch(self.verbose, self.notes), _without_qat_folding(quantize_pt2e), lean_folding():
            return _weights_dequantized_where_read(
                _unread_tensors_dropped(quantize_pt2e.convert_pt2e(sharing_weights(prepared))))

    def running(self) -> contextlib.AbstractContextManager:
        """A leaner kernel for the q/dq graph's weight dequantize (same values; ``pt2e_kernels``)."""
        return lean_weight_dequantize()

    def with_overrides(self, overrides: Iterable[ModuleOverride]) -> "Pt2eStaticFlow":
        """The same flow with other per-module overrides."""
        return Pt2eStaticFlow(self.quantizer_name, overrides, self.verbose, exports=self._exports)

    def reference(self, float_model: nn.Module, prepared: nn.Module) -> nn.Module:
        """The float model."""
        return float_model

    def reference_note(self, model: nn.Module) -> str:
        """A line for the report about what PT2E measures."""
        return (f"quantized with torch.export and torchao's {self.quantizer_name} quantizer (PT2E); the int8 model is "
                "the quantize/dequantize graph, before any backend lowering")

    # -- naming ----------------------------------------------------------------------------------
    def node_fqns(self, prepared: nn.Module, quantized: nn.Module) -> dict[str, str]:
        """Node name -> the module path it ran in."""
        return {n.name: path for n in quantized.graph.nodes if (path := pt2e_graph.module_path(n))}

    def module_nodes(self, quantized: nn.Module) -> set[str]:
        """Nodes that are the op of a leaf module (a conv's conv2d, a ReLU6's hardtanh)."""
        leaves = {name for name, m in (self._float_model or nn.Module()).named_modules()
                  if name and next(m.children(), None) is None}
        return {n.name for n in quantized.graph.nodes if pt2e_graph.module_path(n) in leaves}

    @staticmethod
    def op_label(type_name: str) -> str:
        """Op labels are made by the flow already (``quantized.conv2d``)."""
        return type_name

    @staticmethod
    def op_types(quantized: nn.Module) -> dict[str, str]:
        """Node name -> label of what it calls."""
        labels = {op.node: op.label for op in pt2e_graph.quantized_ops(quantized)}
        return {n.name: labels.get(n.name, pt2e_graph.target_name(n)) for n in quantized.graph.nodes}

    # -- the views -------------------------------------------------------------------------------
    def weight_pairs(self, prepared: nn.Module, quantized: nn.Module) -> list[dict]:
        """(folded float weight, int8 weight) of every quantized layer with a weight, in graph order."""
        fqns = self.node_fqns(prepared, quantized)
        nodes = {n.name: n for n in quantized.graph.nodes}
        pairs = []
        for op in pt2e_graph.quantized_ops(quantized):
            if not op.weight_args:
                continue
            arg = op.weight_args[0]
            pairs.append({
                "layer": op.node, "layer_fqn": fqns.get(op.node, op.node), "op_type": op.label,
                "float_values": [pt2e_graph.float_weight(prepared, op.node, arg)],
                "quant_values": [pt2e_graph.int8_weight(quantized, nodes[op.node].args[arg])],
            })
        return pairs

    def compare_after(self, quantized: nn.Module) -> dict:
        """Nothing: each layer is tapped after its fused activations already."""
        return {}

    def logged_models(self, float_model: nn.Module, prepared: nn.Module, quantized: nn.Module,
                      pairing) -> tuple[nn.Module, nn.Module]:
        """The float graph (observers removed, BatchNorm folded) and a copy of the int8 graph, each layer output
        tapped."""
        quantized = sharing_modules(quantized)
        ops = pt2e_graph.quantized_ops(quantized)
        fqns = self.node_fqns(prepared, quantized)
        reference = pt2e_taps.float_graph(prepared)
        pt2e_taps.tap_layers(reference, ops, pairing, FLOAT_NAME, fqns)
        pt2e_taps.tap_layers(quantized, ops, pairing, QUANT_NAME, fqns)
        return reference, quantized

    def shadow_model(self, float_model: nn.Module, prepared: nn.Module, quantized: nn.Module,
                     pairing) -> tuple[nn.Module, list[dict]]:
        """A copy of the int8 graph (sharing its modules) with each quantized layer's float counterpart fed the same
        dequantized inputs."""
        quantized = sharing_modules(quantized)
        ops = pt2e_graph.quantized_ops(quantized)
        pt2e_taps.add_shadows(quantized, prepared, ops, pairing, self.node_fqns(prepared, quantized))
        return quantized, []

    def graph_nodes(self, quantized: nn.Module) -> list[dict]:
        """The int8 graph's ops (fused activations folded into their op)."""
        return pt2e_graph.graph_records(quantized)

    def module_statuses(self, quantized: nn.Module) -> dict[str, str]:
        """Module path -> quantized | float | fused."""
        return pt2e_graph.module_statuses(quantized, self._float_model or nn.Module())

    @staticmethod
    def qdq_boundaries(quantized: nn.Module) -> int:
        """Switches between float and int8 in the graph."""
        return pt2e_graph.boundaries(quantized)

    def kernel_checks(self, float_model: nn.Module, quantized: nn.Module, example) -> list[dict]:
        """Nothing to check alone: the quantize/dequantize graph has no int8 kernels (``lowered_models`` has them)."""
        return []

    def lowered_models(self, quantized: nn.Module, example, pairing):
        """The quantize/dequantize graph and its x86 lowering (oneDNN int8 kernels), each kernel's output and its
        counterpart going to ``pairing``; None without a lowering. Returns (reference, lowered, note)."""
        if self.quantizer_name != "x86":
            return None
        from qreport.flows.pt2e_lowered import lower_x86, tap_both

        with quiet_torch(self.verbose, self.notes):
            lowered = lower_x86(quantized, model_args(example))
        return tap_both(quantized, lowered, pairing, self.node_fqns(quantized, quantized))

    def simulator(self, prepared: nn.Module, quantized: nn.Module, calibration):
        """The converted graph with switchable quantize steps and weights."""
        from qreport.flows.pt2e_sim import Pt2eSimulator

        return Pt2eSimulator(prepared, quantized)
