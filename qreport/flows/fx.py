"""FX graph mode static PTQ and the FX Numeric Suite, behind one seam."""

from __future__ import annotations

import contextlib
import copy
import io
import re
import sys
import warnings
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from qreport.flows.contract import CalibrationRecord
from qreport.flows.copies import sharing_modules, sharing_weights
from qreport.flows.fx_ranges import recording
from qreport.flows.model_caches import release_cached_models
from qreport.config import QCONFIG_PRESETS, ModuleOverride
from qreport.data import call, model_args
from qreport.errors import InputError
from qreport.flows.fused_once import FusedWeights
from qreport.flows.fx_checks import check_finite_parameters, check_traceable, resolve_non_traceable
from qreport.flows.fx_regions import float_bridges, fused_followers
from qreport.flows.ns_patches import fusion_patterns_once, int8_modules_take_int8
from qreport.flows.observers import copy_observer_states
from qreport.overrides import kept_float_by, unknown_module_error
from qreport.streaming import FLOAT_NAME, QUANT_NAME

# Activations whose range a preceding quantized op takes on; both sides are compared after them.
_CLAMP_FUNCTIONS = {F.relu, F.relu6, F.hardtanh, torch.relu}
_SKIP_LINE = re.compile(r"skipping shadow loggers for node_b: (?P<b>[^,]+), start_node_a: (?P<a>[^,]+), (?P<why>.*)")


class _FxErrorFilter:
    """stderr without the source listing torch.fx prints before re-raising an error from a traced model (the
    error itself still reaches the user, in one line); everything else, progress bars included, passes."""

    def __init__(self, stream):
        self.stream = stream
        self.dropped = False

    def write(self, text: str) -> int:
        dropped, self.dropped = self.dropped, "Call using an FX-traced Module" in text
        if self.dropped or (dropped and text == "\n"):  # print() writes its end of line on its own
            return len(text)
        return self.stream.write(text)

    def __getattr__(self, name):
        return getattr(self.stream, name)


@contextlib.contextmanager
def quiet_torch(verbose: bool, notes: list[str] | None = None):
    """Hide torch's deprecation warnings and torch.fx's error listings (unless ``verbose``) and capture the Numeric
    Suite's prints; afterwards, release the models torch's caches hold (``model_caches``)."""
    buffer = io.StringIO()
    stderr = contextlib.nullcontext() if verbose or isinstance(sys.stderr, _FxErrorFilter) else \
        contextlib.redirect_stderr(_FxErrorFilter(sys.stderr))
    with warnings.catch_warnings(), contextlib.redirect_stdout(buffer), stderr:
        if not verbose:
            warnings.simplefilter("ignore")
        try:
            yield buffer
        finally:
            release_cached_models()
            printed = buffer.getvalue()
            if notes is not None:
                notes.extend(line for line in printed.splitlines() if line.strip())
    if verbose and printed:
        print(printed, end="")


def short_type(type_name: str) -> str:
    """``torch.ao.nn.quantized.modules.conv.Conv2d`` -> ``quantized.Conv2d``; keeps what a user recognises."""
    name = type_name.rsplit(".", 1)[-1]
    quantized = ".quantized." in type_name or type_name.startswith("torch._ops.quantized")
    return f"quantized.{name}" if quantized else name


def _module_names(model: nn.Module) -> list[str]:
    return [name for name, _ in model.named_modules() if name]


def _clamp_callable(node, modules: dict) -> Callable | None:
    """A non-in-place copy of the activation at ``node``, or None if it is not a clamp-like activation."""
    if node.op == "call_module":
        mod = modules.get(node.target)
        if isinstance(mod, nn.ReLU6):
            return lambda t: F.hardtanh(t, 0.0, 6.0)
        if isinstance(mod, nn.Hardtanh):
            lo, hi = float(mod.min_val), float(mod.max_val)
            return lambda t: F.hardtanh(t, lo, hi)
        if isinstance(mod, nn.ReLU):
            return F.relu
    if node.op == "call_function" and node.target in _CLAMP_FUNCTIONS:
        if node.target is F.hardtanh:
            lo = node.kwargs.get("min_val", node.args[1] if len(node.args) > 1 else -1.0)
            hi = node.kwargs.get("max_val", node.args[2] if len(node.args) > 2 else 1.0)
            if isinstance(lo, (int, float)) and isinstance(hi, (int, float)):
                return lambda t: F.hardtanh(t, float(lo), float(hi))
            return None
        if node.target is F.relu6:
            return lambda t: F.hardtanh(t, 0.0, 6.0)
        return F.relu
    return None


def _out_of_place(model: nn.Module) -> nn.Module:
    """``model`` with every ``inplace=True`` activation made out-of-place (same values; no copy, for memory).

    The Numeric Suite hands the int8 input of ops that accept both dtypes straight to the float shadow, and
    in-place variants (``hardswish_``) have no quantized kernel; in-place ops also overwrite logged tensors.
    The suite wraps the model in new graph modules and copies what it shadows; the model itself stays as it is.
    """
    for module in model.modules():
        if getattr(module, "inplace", False) is True:
            module.inplace = False
    return model


_FLOAT_TWINS: dict[type, type] = {}


def _float_twin(cls: type) -> type:
    """A subclass of ``cls`` that computes the same and is still a torch.nn leaf to FX tracers, but is not ``cls`` to
    torch's int8 lowering."""
    if cls not in _FLOAT_TWINS:
        _FLOAT_TWINS[cls] = type(cls.__name__, (cls,), {"__module__": cls.__module__, "__doc__": "kept float by qconfig"})
    return _FLOAT_TWINS[cls]


def keep_float_modules(prepared: nn.Module, overrides: Iterable[ModuleOverride]) -> list[str]:
    """Make the modules that overrides keep float stay float through ``convert_fx``; returns their paths.

    ``convert_fx`` lowers every ``dequantize → module → quantize`` run whose module type has an int8 twin (PReLU,
    Hardswish, BatchNorm, ...: torch's ``SPECIAL_PATTERN_LOWER_MODULE_MAP``) even when the module's qconfig is None:
    torch 2.14.1 then quantizes a Hardswish or BatchNorm kept float without a word, and fails on a PReLU
    (``from_reference`` reads ``qconfig.weight``). Such a module, after fusion, is given an identical subclass
    that the lowering does not recognise.
    """
    from torch.ao.quantization.fx._lower_to_native_backend import SPECIAL_PATTERN_LOWER_MODULE_MAP

    overrides = tuple(overrides)
    changed = []
    for name, module in prepared.named_modules():
        if type(module) in SPECIAL_PATTERN_LOWER_MODULE_MAP and kept_float_by(name, overrides):
            module.__class__ = _float_twin(type(module))
            changed.append(name)
    return changed


@contextlib.contextmanager
def _float_twins_in(models: Iterable[nn.Module], overrides: Iterable[ModuleOverride]):
    """The float-side models with the same twin classes as the int8 model, so the Numeric Suite matches kept-float
    modules type for type; the original classes come back afterwards."""
    originals = [(m, type(m)) for model in models for m in model.modules()]
    for model in models:
        keep_float_modules(model, overrides)
    try:
        yield
    finally:
        for module, cls in originals:
            module.__class__ = cls


def _clamp_name(node, modules: dict) -> str:
    if node.op == "call_module":
        return type(modules[node.target]).__name__
    return getattr(node.target, "__name__", str(node.target))


class FxStaticFlow:
    """Static post-training quantization with ``prepare_fx``/``convert_fx`` and the FX Numeric Suite."""

    name = "fx-static"

    def __init__(self, backend: str = "x86", overrides: Iterable[ModuleOverride] = (), verbose: bool = False,
                 non_traceable: Iterable[str] = (), activation_observer: str | None = None):
        self.backend = backend
        self.activation_observer = activation_observer  # replaces the backend's default one (None: keep it)
        self.overrides = tuple(overrides)
        self.verbose = verbose
        self.non_traceable = tuple(non_traceable)  # module paths or class names FX must not trace into
        self._skip_names: list[str] = []
        self._skip_classes: list[type] = []
        self._followers: dict[str, list[str]] = {}  # layer -> the BatchNorm/activation modules fused into it
        self._bridges: list[tuple] = []  # pass-through ops between float layers, kept float with them
        self._bias_corrections: dict = {}  # layer -> per-channel bias correction, applied by every convert
        self._fused = FusedWeights()  # Conv/Linear-BatchNorm fusions, shared with the flows with_overrides makes
        self.notes: list[str] = []  # lines the Numeric Suite printed

    @property
    def target(self) -> str:
        """What the int8 model runs on, for progress lines."""
        return f"backend {self.backend}"

    @property
    def alternative(self) -> str:
        """What to try when the int8 model does not run."""
        return f"try --backend {'qnnpack' if self.backend == 'x86' else 'x86'}"

    # -- configuration -------------------------------------------------------------------------
    def _activation_observer(self, name: str):
        """The activation observer constructor called ``name`` (``config.ACTIVATION_OBSERVERS``), for this backend."""
        from torch.ao.quantization import observer

        cls = {"minmax": observer.MinMaxObserver, "moving_average": observer.MovingAverageMinMaxObserver,
               "histogram": observer.HistogramObserver}[name]
        return cls.with_args(dtype=torch.quint8, reduce_range=self.backend == "x86")

    def _qconfig(self, override: ModuleOverride):
        from torch.ao.quantization import QConfig, get_default_qconfig, observer

        act_name, weight_name = override.observers()
        if act_name is None:
            return None
        backend = get_default_qconfig(self.backend)
        if act_name == "backend":
            activation = (self._activation_observer(self.activation_observer) if self.activation_observer
                          else backend.activation)
        else:
            activation = self._activation_observer(act_name)
        weight = {
            "backend": backend.weight,
            "per_tensor": observer.default_weight_observer,
            "per_channel": observer.default_per_channel_weight_observer,
        }[weight_name]
        return QConfig(activation=activation, weight=weight)

    def qconfig_mapping(self):
        """The backend's default ``QConfigMapping`` with the per-module overrides applied."""
        from torch.ao.quantization import get_default_qconfig_mapping

        mapping = get_default_qconfig_mapping(self.backend)
        if self.activation_observer:
            self._replace_default_activation_observer(mapping)
        for override in self.overrides:
            qconfig = self._qconfig(override)
            mapping.set_module_name(override.module, qconfig)
            if qconfig is None:  # what fuses into a layer kept float stays float with it
                for follower in self._followers.get(override.module, ()):
                    mapping.set_module_name(follower, None)
        for bridge in self._bridges:  # and so do pooling/reshaping ops between float layers
            if len(bridge) == 1:
                mapping.set_module_name(bridge[0], None)
            else:
                mapping.set_module_name_object_type_order(*bridge, None)
        return mapping

    def _replace_default_activation_observer(self, mapping) -> None:
        """Give every qconfig of ``mapping`` that observes activations with the backend's default observer
        (histogram) the chosen one instead; fixed-range and input-reusing observers stay."""
        from torch.ao.quantization import QConfig, get_default_qconfig

        default = type(get_default_qconfig(self.backend).activation())
        chosen = self._activation_observer(self.activation_observer)

        def swapped(qconfig):
            if qconfig is None or type(qconfig.activation()) is not default:
                return qconfig
            return QConfig(activation=chosen, weight=qconfig.weight)

        mapping.set_global(swapped(mapping.global_qconfig))
        for key, qconfig in list(mapping.object_type_qconfigs.items()):
            mapping.set_object_type(key, swapped(qconfig))

    def _kept_float(self, path: str) -> bool:
        """Whether the overrides keep module ``path`` float, directly or as a module fused into a float layer."""
        if kept_float_by(path, self.overrides):
            return True
        return any(path in self._followers.get(o.module, ()) for o in self.overrides if o.preset == "float")

    def check_overrides(self, model: nn.Module) -> None:
        """Fail with a one-line error if an override names a module the model does not have."""
        error = unknown_module_error(_module_names(model), self.overrides)
        if error:
            raise InputError(error)

    # -- quantization --------------------------------------------------------------------------
    def prepare(self, model: nn.Module, example: torch.Tensor) -> nn.Module:
        """Insert observers (Conv-BN folded) into a copy of the float model."""
        from torch.ao.quantization.fx.custom_config import PrepareCustomConfig

        torch.backends.quantized.engine = self.backend
        self.check_overrides(model)
        self._skip_names, self._skip_classes = resolve_non_traceable(model, self.non_traceable)
        check_finite_parameters(model)
        custom = PrepareCustomConfig().set_non_traceable_module_names(self._skip_names) \
            .set_non_traceable_module_classes(self._skip_classes)
        with quiet_torch(self.verbose, self.notes):
            graph, scopes = check_traceable(model, self._skip_names, self._skip_classes)
            self._followers = fused_followers(model, graph)
            self._bridges = float_bridges(model, graph, scopes, self._kept_float)
            with self._fused.reused_in_fx():  # fusion makes new weights, once per float model
                return self._prepare_fx(sharing_weights(model), example, custom)

    def calibrated(self, model: nn.Module, example: torch.Tensor, batches, observed: nn.Module | None = None,
                   record: CalibrationRecord | None = None) -> nn.Module:
        """A prepared copy of ``model`` whose observers have seen ``batches`` (prepare, then calibrate); layers asked
        for bias correction get theirs measured on the same batches, for every later ``convert``. With ``observed``
        (a graph calibrated on the same ``batches``), the observer states are copied when they all match. With
        ``record``, each observed activation's per-input |max| is noted for ``activation_ranges``."""
        prepared = self.prepare(model, example)
        layers = [o.module for o in self.overrides if o.preset == "bias_correct"]
        if observed is not None and not layers and copy_observer_states(observed, prepared):
            self._bias_corrections = {}
            return prepared
        seen = []
        noting = recording(prepared, record) if record is not None else contextlib.nullcontext()
        with torch.no_grad(), quiet_torch(self.verbose, self.notes), noting:
            for x in batches:
                call(prepared, x)
                if layers:
                    seen.append(x)
        if record is not None:
            record.complete = True
        self._bias_corrections = {}
        if layers:
            from qreport.flows.fx_bias import bias_corrections

            with quiet_torch(self.verbose, self.notes):
                self._bias_corrections = bias_corrections(prepared, self.convert(prepared), layers, seen)
        return prepared

    def _prepare_fx(self, model: nn.Module, example: torch.Tensor, custom) -> nn.Module:
        from torch.ao.quantization.quantize_fx import prepare_fx

        return prepare_fx(model.eval(), self.qconfig_mapping(), model_args(example), prepare_custom_config=custom,
                          _equalization_config=self.equalization_mapping())

    def equalization_mapping(self):
        """Input-weight equalization for the layers the overrides ask it for (``equalize``), else None."""
        from torch.ao.quantization import QConfigMapping
        from torch.ao.quantization.fx._equalize import default_equalization_qconfig

        layers = [o.module for o in self.overrides if o.preset == "equalize"]
        if not layers:
            return None
        mapping = QConfigMapping()
        for layer in layers:
            mapping.set_module_name(layer, default_equalization_qconfig)
        return mapping

    def reference(self, float_model: nn.Module, prepared: nn.Module) -> nn.Module:
        """The model the int8 one is compared with: the float model."""
        return float_model

    def reference_note(self, model: nn.Module) -> str:
        """A line for the report when the reference is not simply the float model."""
        return ""

    #: stage name -> why this flow cannot run it (the stage is recorded as skipped)
    unsupported_stages: dict[str, str] = {}
    presets: tuple[str, ...] = tuple(QCONFIG_PRESETS)  # every preset builds under FX

    def running(self) -> contextlib.AbstractContextManager:
        """Nothing to install: the int8 models run torch's quantized kernels as they are."""
        return contextlib.nullcontext()

    def with_overrides(self, overrides: Iterable[ModuleOverride]) -> "FxStaticFlow":
        """The same flow with other per-module overrides (the fix stage re-quantizes with them)."""
        flow = copy.copy(self)
        flow.overrides, flow.notes, flow._bias_corrections = tuple(overrides), [], {}
        return flow

    def convert(self, prepared: nn.Module) -> nn.Module:
        """A fresh int8 model from a calibrated prepared model (quantized models cannot be deep-copied)."""
        from torch.ao.quantization.quantize_fx import convert_fx

        model = sharing_weights(prepared)  # conversion makes new int8 weights, reads the float ones
        keep_float_modules(model, self.overrides)
        with quiet_torch(self.verbose, self.notes):
            quantized = convert_fx(model)
        if self._bias_corrections:
            from qreport.flows.fx_bias import apply_corrections

            apply_corrections(quantized, self._bias_corrections)
        return quantized

    # -- instrumentation -----------------------------------------------------------------------
    def weight_pairs(self, prepared: nn.Module, quantized: nn.Module) -> list[dict]:
        """Matched (float folded weight, int8 weight) pairs, in model order."""
        import torch.ao.ns._numeric_suite_fx as ns

        with quiet_torch(self.verbose, self.notes), self._ns_patches(prepared):
            results = ns.extract_weights(FLOAT_NAME, prepared, QUANT_NAME, quantized)
        pairs = []
        for layer, by_type in results.items():
            entry = by_type["weight"]
            if FLOAT_NAME not in entry or QUANT_NAME not in entry:
                continue  # matched on one side only (a fused float op without an int8 twin): coverage says so
            f, q = entry[FLOAT_NAME][0], entry[QUANT_NAME][0]
            pairs.append(
                {
                    "layer": layer,
                    "layer_fqn": q.get("fqn") or f.get("fqn") or layer,
                    "op_type": q["ref_node_target_type"],
                    "float_values": _flat_weights(f["values"]),
                    "quant_values": _flat_weights(q["values"]),
                }
            )
        return pairs

    def compare_after(self, quantized: nn.Module) -> dict[str, tuple[str, Callable]]:
        """Quantized nodes whose only consumer is a clamp-like activation: node name -> (name, activation)."""
        modules = dict(quantized.named_modules())
        found = {}
        for node in quantized.graph.nodes:
            if len(node.users) != 1:
                continue
            user = next(iter(node.users))
            act = _clamp_callable(user, modules)
            if act is not None and node.op in ("call_module", "call_function"):
                found[node.name] = (_clamp_name(user, modules), act)
        return found

    def node_fqns(self, prepared: nn.Module, quantized: nn.Module) -> dict[str, str]:
        """FX node name -> module path, for call_module nodes and for functions inside a module."""
        fqns = {}
        attrs = getattr(prepared, "meta", {}).get("_observed_graph_module_attrs")
        scopes = getattr(attrs, "node_name_to_scope", None) or {}
        for name, (scope, _type) in scopes.items():
            if scope:
                fqns[name] = scope
        for node in quantized.graph.nodes:
            if node.op == "call_module":
                fqns[node.name] = str(node.target)
        return fqns

    def logged_models(self, float_model: nn.Module, prepared: nn.Module, quantized: nn.Module,
                      pairing) -> tuple[nn.Module, nn.Module]:
        """Float and int8 models whose matched layer outputs go to ``pairing`` (a ``streaming.LayerPairing``):
        ``add_loggers``, on a copy of ``quantized``'s graph."""
        import torch.ao.ns._numeric_suite_fx as ns

        with quiet_torch(self.verbose, self.notes), self._ns_patches(float_model):
            return ns.add_loggers(FLOAT_NAME, _out_of_place(float_model), QUANT_NAME, sharing_modules(quantized),
                                  make_streaming_logger(pairing))

    def shadow_model(self, float_model: nn.Module, prepared: nn.Module, quantized: nn.Module,
                     pairing) -> tuple[nn.Module, list[dict]]:
        """The int8 model with float shadows fed its inputs (``add_shadow_loggers`` on a copy of ``quantized``'s
        graph), both outputs to ``pairing``, and what was skipped."""
        import torch.ao.ns._numeric_suite_fx as ns

        lines: list[str] = []
        with quiet_torch(self.verbose, lines), self._ns_patches(float_model):
            model = ns.add_shadow_loggers(FLOAT_NAME, _out_of_place(float_model), QUANT_NAME,
                                          sharing_modules(quantized), make_streaming_logger(pairing))
        self.notes.extend(lines)
        skipped = []
        for line in lines:
            m = _SKIP_LINE.search(line)
            if m:
                skipped.append({"op_type": m.group("b").strip(), "reason": m.group("why").strip()})
        return model, skipped

    @contextlib.contextmanager
    def _ns_patches(self, float_model: nn.Module):
        """The Numeric Suite with our corrections: the non-traceable modules, int8 input types, the float side's
        kept-float modules typed as in the int8 model; and its fusion patterns built once."""
        with self._ns_tracer(), int8_modules_take_int8(), fusion_patterns_once(), \
                _float_twins_in([float_model], self.overrides):
            yield

    @contextlib.contextmanager
    def _ns_tracer(self):
        """The Numeric Suite builds ``NSTracer([], [])`` itself; give it the non-traceable modules too."""
        import torch.ao.ns._numeric_suite_fx as ns

        if not (self._skip_names or self._skip_classes):
            yield
            return
        base = ns.NSTracer
        names, classes = self._skip_names, self._skip_classes

        class SkippingNSTracer(base):
            def __init__(self, skipped_module_names, skipped_module_classes):
                super().__init__(list(skipped_module_names) + names, list(skipped_module_classes) + classes)

        ns.NSTracer = SkippingNSTracer
        try:
            yield
        finally:
            ns.NSTracer = base

    def activation_ranges(self, prepared: nn.Module, calibration, evaluation) -> list[dict]:
        """Each calibrated activation range against the calibration images that set it and the evaluation data."""
        from qreport.flows.fx_ranges import activation_ranges

        with quiet_torch(self.verbose, self.notes):
            return activation_ranges(prepared, calibration, evaluation)

    def module_statuses(self, quantized: nn.Module) -> dict[str, str]:
        """Module path -> quantized | float | fused, in the int8 model."""
        from qreport.flows.fx_graph import module_statuses

        return module_statuses(quantized)

    def graph_nodes(self, quantized: nn.Module) -> list[dict]:
        """The int8 graph's ops: what each runs on and which ops feed it."""
        from qreport.flows.fx_graph import graph_nodes

        return graph_nodes(quantized)

    def kernel_checks(self, float_model: nn.Module, quantized: nn.Module, example: torch.Tensor) -> list[dict]:
        """Each int8 kernel without weights to fold, run alone on synthetic input inside its calibrated range."""
        from qreport.flows.fx_kernels import kernel_checks

        with quiet_torch(self.verbose, self.notes):
            return kernel_checks(float_model, quantized, example)

    @staticmethod
    def op_label(type_name: str) -> str:
        """The op type as the report shows it (``quantized.Conv2d``)."""
        return short_type(type_name)

    @staticmethod
    def module_nodes(quantized: nn.Module) -> set[str]:
        """Names of the int8 graph's nodes that are a module's own op (their layer is the module path)."""
        return {n.name for n in quantized.graph.nodes if n.op == "call_module"}

    @staticmethod
    def op_types(quantized: nn.Module) -> dict[str, str]:
        """Node name -> qualified type of what it calls in the int8 model."""
        types = {}
        for node in quantized.graph.nodes:
            if node.op == "call_module":
                cls = type(quantized.get_submodule(node.target))
                types[node.name] = f"{cls.__module__}.{cls.__name__}"
            else:
                types[node.name] = getattr(node.target, "__name__", str(node.target))
        return types

    @staticmethod
    def qdq_boundaries(quantized: nn.Module) -> int:
        """Quantize and dequantize steps in the int8 graph (each a boundary between float and int8)."""
        return sum(1 for n in quantized.graph.nodes
                   if n.target in (torch.quantize_per_tensor, "dequantize", torch.quantize_per_tensor_dynamic))

    @staticmethod
    def lowered_models(quantized: nn.Module, example, pairing):
        """None: the FX int8 model already runs torch's int8 kernels (every view measures them)."""
        return None

    def simulator(self, prepared: nn.Module, quantized: nn.Module, calibration):
        """A simulated int8 model in which any set of ops can be kept float without re-quantizing."""
        from qreport.flows.fx_sim import Simulator

        return Simulator(prepared, quantized, calibration)

    @staticmethod
    def logger_base():
        """The Numeric Suite logger class our streaming loggers extend."""
        from torch.ao.ns._numeric_suite_fx import OutputLogger

        return OutputLogger


def _flat_weights(values) -> list:
    """Weight tensors in order; recurrent layers give a list per layer (weight_ih first)."""
    out = []
    for v in values:
        out.extend(_flat_weights(v) if isinstance(v, (list, tuple)) else [v])
    return [v for v in out if isinstance(v, torch.Tensor)]


def make_streaming_logger(pairing) -> type:
    """An ``OutputLogger`` subclass that hands every value to ``pairing`` instead of storing it."""
    base = FxStaticFlow.logger_base()

    class StreamingLogger(base):
        def forward(self, x):  # noqa: D102 - same contract as OutputLogger.forward
            if self.enabled:
                pairing.offer(self, x)
            return x

    StreamingLogger.__name__ = "StreamingLogger"
    return StreamingLogger


class FxDynamicFlow(FxStaticFlow):
    """Dynamic quantization (int8 weights, activations quantized per batch at run time) of Linear, LSTM and GRU."""

    name = "fx-dynamic"

    def qconfig_mapping(self):
        """Dynamic qconfigs on Linear/LSTM/GRU (and ReLU, which fuses with Linear), with the overrides applied."""
        from torch.ao.quantization import QConfigMapping, default_dynamic_qconfig, per_channel_dynamic_qconfig

        mapping = QConfigMapping()
        for op in (nn.Linear, nn.LSTM, nn.GRU, nn.ReLU, F.relu, torch.relu):
            mapping.set_object_type(op, default_dynamic_qconfig)
        for override in self.overrides:
            if override.preset == "float":
                qconfig = None
            elif override.preset == "per_channel" or override.weight == "per_channel":
                qconfig = per_channel_dynamic_qconfig
            else:
                qconfig = default_dynamic_qconfig
            mapping.set_module_name(override.module, qconfig)
        return mapping
