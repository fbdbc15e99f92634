"""Weight-only and dynamic quantization of Linear layers with torchao's ``quantize_`` (``--flow pt2e --mode
weight-only|dynamic``), measured per Linear with module hooks.

``quantize_`` swaps each Linear's weight for a quantized tensor subclass in place; the modules stay, so the float
and int8 models share module paths. Weights: the dequantized subclass against the float weight, in units of its
own quantization step. Propagated: each Linear's output in both models. Isolated: each int8 Linear beside
``F.linear`` with the float weight on the very same input. Nothing is calibrated: weight-only keeps activations
float, dynamic quantizes each batch's activations with that batch's range.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from qreport.config import ModuleOverride
from qreport.data import call
from qreport.errors import InputError
from qreport.flows.pt2e import _torchao
from qreport.overrides import kept_float_by, unknown_module_error
from qreport.streaming import FLOAT_NAME, QUANT_NAME, Tap

MODES = ("weight-only", "dynamic")
WEIGHT_BITS = (8, 4)
INT4_GROUP = 32  # int4 weights: one scale per group of this many input features


def _config(mode: str, bits: int):
    """The torchao config of a mode: int8 weight-only, int4 weight-only grouped, or int8 dynamic."""
    _torchao()
    from torchao.quantization import (Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig,
                                      IntxWeightOnlyConfig)
    from torchao.quantization.granularity import PerGroup

    if mode == "dynamic":
        return Int8DynamicActivationInt8WeightConfig()
    if bits == 4:
        return IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(INT4_GROUP))
    return Int8WeightOnlyConfig()


def _is_quantized_linear(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) and type(module.weight) not in (torch.Tensor, nn.Parameter)


def quantized_linears(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The Linear layers whose weight is a torchao quantized tensor, in module order."""
    return [(name, m) for name, m in model.named_modules() if name and _is_quantized_linear(m)]


def _weight_steps(weight) -> torch.Tensor:
    """Each weight element's quantization step (its scale), broadcast to the weight's shape."""
    scale = weight.scale.float()
    rows, cols = weight.shape
    scale = scale.reshape(rows, -1)
    return scale.repeat_interleave(cols // scale.shape[1], dim=1)


def _label(weight) -> str:
    """The qscheme from a quantized weight's block size: ``per_channel_symmetric`` (int8, one scale per output
    channel), ``int4_per_channel_symmetric``, or ``int4_per_group_symmetric`` (one scale per group of inputs)."""
    bits = "int4_" if "Intx" in type(weight).__name__ else ""
    block = list(getattr(weight, "block_size", [1, weight.shape[1]]))
    return f"{bits}per_channel_symmetric" if block[-1] == weight.shape[1] else f"{bits}per_group_symmetric"


class TorchaoLinearFlow:
    """``quantize_`` on Linear layers: int8 or int4-grouped weight-only, or int8 dynamic."""

    unsupported_stages = {
        "graph": "quantize_ keeps the model's own modules: there is no int8 graph to read",
        "kernels": "no weight-free int8 kernels: only Linear layers are quantized",
        "ranges": "no calibrated activation ranges: weight-only keeps activations float, dynamic takes each batch's range",
    }
    presets = ("float", "default")

    def __init__(self, mode: str, weight_bits: int = 8, overrides: Iterable[ModuleOverride] = (),
                 verbose: bool = False):
        if mode == "dynamic" and weight_bits != 8:
            raise InputError("--weight-bits 4 is for --mode weight-only; dynamic quantization uses int8 weights")
        self.mode, self.weight_bits, self.verbose = mode, weight_bits, verbose
        self.overrides = tuple(overrides)
        self.notes: list[str] = []
        self.name = f"torchao-{mode}"
        for o in self.overrides:
            if o.preset not in self.presets:
                raise InputError(f"qconfig for {o.module!r}: {o.describe()!r} is not available with --mode {mode}; use "
                                 f"one of {', '.join(self.presets)}")

    @property
    def target(self) -> str:
        """What quantized the model, for progress lines."""
        return f"torchao quantize_ ({'int8 dynamic' if self.mode == 'dynamic' else f'int{self.weight_bits} weights'})"

    def describe(self) -> str:
        """The scheme in words."""
        if self.mode == "dynamic":
            return "int8 weights, int8 activations per batch"
        return f"int{self.weight_bits} weights" + (f" in groups of {INT4_GROUP}" if self.weight_bits == 4 else "")

    alternative = "try --flow fx --mode dynamic"

    # -- quantization --------------------------------------------------------------------------
    def calibrated(self, model: nn.Module, example, batches, observed: nn.Module | None = None,
                   record=None) -> nn.Module:
        """The float model itself: nothing to observe or record (its Linear layers are checked and counted)."""
        error = unknown_module_error([n for n, _ in model.named_modules() if n], self.overrides)
        if error:
            raise InputError(error)
        if not any(isinstance(m, nn.Linear) for m in model.modules()):
            raise InputError(f"--mode {self.mode} quantizes Linear layers and the model has none; use --mode static")
        return model

    def convert(self, prepared: nn.Module) -> nn.Module:
        """A copy of the model with its Linear weights quantized (those the overrides keep float excepted)."""
        _torchao()
        from torchao.quantization import quantize_

        model = copy.deepcopy(prepared)
        quantize_(model, _config(self.mode, self.weight_bits),
                  filter_fn=lambda m, fqn: self._quantizable(m) and not kept_float_by(fqn, self.overrides))
        return model

    def _quantizable(self, module: nn.Module) -> bool:
        """A Linear ``quantize_`` can take: not attention's output projection (``multi_head_attention_forward``
        reads its weight as a plain tensor), and for int4 with whole groups of input features."""
        if not isinstance(module, nn.Linear) or isinstance(module, nn.modules.linear.NonDynamicallyQuantizableLinear):
            return False
        return self.weight_bits != 4 or module.in_features % INT4_GROUP == 0

    def left_float(self, model: nn.Module) -> list[str]:
        """The Linear layers ``quantize_`` cannot take, with why, as report notes."""
        notes = []
        for name, module in model.named_modules():
            if isinstance(module, nn.modules.linear.NonDynamicallyQuantizableLinear):
                notes.append(f"{name} stays float: attention's output projection (torch reads its weight directly)")
            elif isinstance(module, nn.Linear) and not self._quantizable(module):
                notes.append(f"{name} stays float: {module.in_features} input features are not whole groups of "
                             f"{INT4_GROUP} for int4")
        return notes

    def running(self) -> contextlib.AbstractContextManager:
        """Nothing to install: torchao's quantized Linear layers run as they are."""
        return contextlib.nullcontext()

    def with_overrides(self, overrides: Iterable[ModuleOverride]) -> "TorchaoLinearFlow":
        """The same flow with other per-module overrides."""
        return TorchaoLinearFlow(self.mode, self.weight_bits, overrides, self.verbose)

    def reference(self, float_model: nn.Module, prepared: nn.Module) -> nn.Module:
        """The float model."""
        return float_model

    def reference_note(self, model: nn.Module) -> str:
        """What was quantized, and which Linear layers could not be."""
        left = self.left_float(model)
        return (f"Linear layers quantized with torchao quantize_ ({self.describe()}); every other layer runs float"
                + (f"; {'; '.join(left)}" if left else ""))

    # -- naming ----------------------------------------------------------------------------------
    def node_fqns(self, prepared: nn.Module, quantized: nn.Module) -> dict[str, str]:
        """Layers are module paths already."""
        return {name: name for name, _ in quantized_linears(quantized)}

    def module_nodes(self, quantized: nn.Module) -> set[str]:
        """Every layer is a module."""
        return {name for name, _ in quantized_linears(quantized)}

    @staticmethod
    def op_label(type_name: str) -> str:
        """Labels are made by the flow already."""
        return type_name

    def op_types(self, quantized: nn.Module) -> dict[str, str]:
        """Layer -> label."""
        return {name: "quantized.Linear" for name, _ in quantized_linears(quantized)}

    # -- the views -------------------------------------------------------------------------------
    def weight_pairs(self, prepared: nn.Module, quantized: nn.Module) -> list[dict]:
        """(float weight, dequantized int8/int4 weight with its per-element step) of every quantized Linear."""
        floats = dict(prepared.named_modules())
        pairs = []
        for name, module in quantized_linears(quantized):
            weight = module.weight
            pairs.append({"layer": name, "layer_fqn": name, "op_type": "quantized.Linear",
                          "float_values": [floats[name].weight.detach()], "quant_values": [weight.dequantize()],
                          "qscheme": _label(weight), "steps": _weight_steps(weight)})
        return pairs

    def compare_after(self, quantized: nn.Module) -> dict:
        """Nothing: Linear outputs are compared as they are."""
        return {}

    @staticmethod
    def _hook(model: nn.Module, names: list[str], taps: dict[str, Tap]) -> nn.Module:
        modules = dict(model.named_modules())
        for name in names:
            def hand_on(_module, _args, out, tap=taps[name]) -> None:  # None: the output is left as it is
                tap(out)

            modules[name].register_forward_hook(hand_on)
        return model

    def logged_models(self, float_model: nn.Module, prepared: nn.Module, quantized: nn.Module,
                      pairing) -> tuple[nn.Module, nn.Module]:
        """Copies of the float and int8 models whose quantized Linear layers hand their outputs to ``pairing`` (a
        fresh int8 model: the hooks would stay on ``quantized``)."""
        quantized = self.convert(prepared)
        names = [n for n, _ in quantized_linears(quantized)]
        taps = {side: {n: Tap(pairing, side, n, n, "quantized.Linear", n) for n in names}
                for side in (FLOAT_NAME, QUANT_NAME)}
        return (self._hook(copy.deepcopy(float_model), names, taps[FLOAT_NAME]),
                self._hook(quantized, names, taps[QUANT_NAME]))

    def shadow_model(self, float_model: nn.Module, prepared: nn.Module, quantized: nn.Module,
                     pairing) -> tuple[nn.Module, list[dict]]:
        """A fresh int8 model; each quantized Linear's output beside ``F.linear`` with the float weight on its
        input."""
        quantized = self.convert(prepared)
        floats = dict(prepared.named_modules())
        for name, module in quantized_linears(quantized):
            weight, bias = floats[name].weight.detach(), floats[name].bias
            float_tap = Tap(pairing, FLOAT_NAME, name, name, "quantized.Linear", name)
            quant_tap = Tap(pairing, QUANT_NAME, name, name, "quantized.Linear", name)

            def shadow(_m, args, out, weight=weight, bias=bias, float_tap=float_tap, quant_tap=quant_tap):
                float_tap(F.linear(args[0], weight, None if bias is None else bias.detach()))
                quant_tap(out)

            module.register_forward_hook(shadow)
        return quantized, []

    def graph_nodes(self, quantized: nn.Module) -> list[dict]:
        """No graph (the stage is skipped)."""
        return []

    def module_statuses(self, quantized: nn.Module) -> dict[str, str]:
        """Quantized Linear layers, and every other module with parameters in float."""
        return {name: "quantized" if _is_quantized_linear(m) else "float"
                for name, m in quantized.named_modules() if name}

    @staticmethod
    def qdq_boundaries(quantized: nn.Module) -> int:
        """None in the graph: weight-only dequantizes inside the Linear, dynamic quantizes inside it."""
        return 0

    @staticmethod
    def lowered_models(quantized: nn.Module, example, pairing):
        """None: the quantized Linear layers already run torchao's kernels."""
        return None

    def simulator(self, prepared: nn.Module, quantized: nn.Module, calibration):
        """The int8 model with each Linear's weight switchable between its quantized and float self."""
        return LinearSwitches(prepared, quantized, self.mode)


class LinearSwitches:
    """The real int8 model with any set of Linear layers put back to float (``Simulator``'s interface): each switch
    swaps the layer's weight object. ``weights=False`` runs every Linear with its float weight; ``activations=False``
    with its dequantized weight in a float Linear (weights alone). Activations alone have no configuration
    (weight-only has none; dynamic quantizes them inside the int8 Linear), so ``activation_switch`` is False."""

    activation_switch = False

    def __init__(self, prepared: nn.Module, quantized: nn.Module, mode: str):
        self.model = copy.deepcopy(quantized)
        floats = dict(prepared.named_modules())
        self.weights: dict[str, tuple] = {}  # layer -> (module, int8, dequantized, float weight)
        for name, module in quantized_linears(self.model):
            float_weight = nn.Parameter(floats[name].weight.detach().clone(), requires_grad=False)
            rounded = nn.Parameter(module.weight.dequantize(), requires_grad=False)
            self.weights[name] = (module, module.weight, rounded, float_weight)
        self.ops = list(self.weights)
        self.observed_ops: set[str] = set()

    def configure(self, float_ops=frozenset(), weights: bool = True, activations: bool = True) -> None:
        """Quantize every Linear except ``float_ops``; ``weights=False`` puts them all back to float."""
        for name, (module, int8, rounded, float_weight) in self.weights.items():
            if not weights or name in float_ops:
                module.weight = float_weight
            else:
                module.weight = int8 if activations else rounded

    @torch.no_grad()
    def outputs(self, batches) -> list[torch.Tensor]:
        """The model's outputs for ``batches`` under the current configuration."""
        return [call(self.model, x) for x in batches]
