"""Simulated int8 on the calibrated FX model: fake-quantize any chosen set of ops without re-preparing.

The prepared model already holds every observer's range. Each observer becomes a switchable fake-quantize
step with the qparams ``convert_fx`` will use, and each quantized op's weight can be swapped for the
dequantized int8 weight. An observer is active when its producer or one of its consumers is quantized: that
is where the real int8 model has a quantize step, so keeping a run of ops float removes the steps inside it.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from qreport.flows.copies import sharing_weights
from qreport.flows.sim_fork import ForkingSimulator, kept_dequantized
from qreport.data import call
from qreport.qtypes import INT8_DTYPES, INT_RANGE, WEIGHTED_LAYERS


class _FakeQuant(nn.Module):
    """Per-tensor fake quantization with fixed qparams, on or off.

    ``own`` holds qparams from this position alone (a MinMax observer over the calibration data): used when
    the producer is float, where the real model would observe this value on its own rather than share the
    range of a quantized op's output (ReLU6 shares its input's range).
    """

    def __init__(self, observer, qmin: int, qmax: int):
        super().__init__()
        scale, zero_point = observer.calculate_qparams()
        self.scale, self.zero_point, self.qmin, self.qmax = float(scale), int(zero_point), qmin, qmax
        self.own = (self.scale, self.zero_point)
        self.enabled = True
        self.use_own = False
        self.recorder = None
        kwargs = {"dtype": observer.dtype, "qscheme": observer.qscheme}
        if getattr(observer, "quant_min", None) is not None:
            kwargs.update(quant_min=observer.quant_min, quant_max=observer.quant_max)
        self._recorder_kwargs = kwargs

    def record(self, on: bool) -> None:
        """Start (or finish) observing this position alone."""
        from torch.ao.quantization.observer import MinMaxObserver

        if on:
            self.recorder = MinMaxObserver(**self._recorder_kwargs)
        elif self.recorder is not None:
            scale, zero_point = self.recorder.calculate_qparams()
            self.own = (float(scale), int(zero_point))
            self.recorder = None

    def forward(self, x):
        if self.recorder is not None and x.is_floating_point():
            self.recorder(x.detach())
            return x
        if not self.enabled or not x.is_floating_point():
            return x
        scale, zero_point = self.own if self.use_own else (self.scale, self.zero_point)
        return torch.fake_quantize_per_tensor_affine(x, scale, zero_point, self.qmin, self.qmax)


@dataclasses.dataclass
class _Edge:
    module: _FakeQuant
    producer: str
    consumers: list[str]
    node: str  # the graph node that calls ``module``


class _WeightSwitch:
    """A weighted leaf's weight: its float one, or the int8 one dequantized. The dequantized copy is kept when
    ``keep`` (``sim_fork.kept_dequantized``); else the leaf gets it just before it runs and drops it after."""

    def __init__(self, leaf: nn.Module, int8: torch.Tensor, keep: bool):
        self.leaf, self.float, self.int8, self.quantized = leaf, leaf.weight, int8, False
        self.kept = nn.Parameter(int8.dequantize(), requires_grad=False) if keep else None
        if not keep:
            leaf.register_forward_pre_hook(self._dequantized)
            leaf.register_forward_hook(self._dropped)

    def set(self, quantized: bool) -> None:
        """Give the leaf its int8 (dequantized) weight, or its float one."""
        self.quantized = quantized
        self.leaf.weight = self.kept if quantized and self.kept is not None else self.float

    def _dequantized(self, leaf: nn.Module, args) -> None:
        if self.quantized and self.kept is None:
            leaf.weight = nn.Parameter(self.int8.dequantize(), requires_grad=False)

    def _dropped(self, leaf: nn.Module, args, output) -> None:
        if self.quantized and self.kept is None:
            leaf.weight = self.float


def _weighted_leaf(module: nn.Module) -> nn.Module | None:
    if isinstance(module, WEIGHTED_LAYERS):
        return module
    for child in module.children():  # fused modules (ConvReLU2d) wrap the conv first
        if isinstance(child, WEIGHTED_LAYERS):
            return child
    return None


class Simulator(ForkingSimulator):
    """Runs the calibrated model with fake quantization on any subset of its ops."""

    def __init__(self, prepared: nn.Module, quantized: nn.Module, calibration=()):
        from torch.ao.quantization.observer import ObserverBase

        self.model = sharing_weights(prepared).eval()  # configure() assigns weights, never writes into them
        edges: list[_Edge] = []
        obs_nodes = set()
        for node in list(self.model.graph.nodes):
            if node.op != "call_module":
                continue
            module = self.model.get_submodule(node.target)
            if not isinstance(module, ObserverBase):
                continue
            obs_nodes.add(node.name)
            fq = self._fake_quant(module)
            if fq is None:
                continue
            # one switch per graph position, even where observers are shared (ReLU6 shares its input's)
            target = f"qreport_fake_quant_{node.name}"
            self.model.add_submodule(target, fq)
            node.target = target
            producer = node.args[0].name if isinstance(node.args[0], torch.fx.Node) else ""
            edges.append(_Edge(fq, producer, [u.name for u in node.users], node.name))
        self.model.recompile()
        self.edges = edges
        self.ops = [n.name for n in self.model.graph.nodes
                    if n.op in ("call_module", "call_function", "call_method") and n.name not in obs_nodes]
        self.observed_ops = {e.producer for e in edges} & set(self.ops)
        int8: dict[str, tuple[nn.Module, torch.Tensor]] = {}
        for node in self.model.graph.nodes:
            if node.op != "call_module" or node.name in obs_nodes:
                continue
            leaf = _weighted_leaf(self.model.get_submodule(node.target))
            try:
                q_module = quantized.get_submodule(node.target)
            except AttributeError:
                continue
            q_weight = getattr(q_module, "weight", None)
            q_weight = q_weight() if callable(q_weight) else None
            if leaf is not None and isinstance(q_weight, torch.Tensor) and q_weight.is_quantized:
                int8[node.name] = (leaf, q_weight)
        # the float weight is the prepared model's own (shared): configure() assigns one or the other
        kept = kept_dequantized({name: weight for name, (_, weight) in int8.items()})
        self.weights = {name: _WeightSwitch(leaf, weight, name in kept) for name, (leaf, weight) in int8.items()}
        self._record_own_ranges(calibration)

    @torch.no_grad()
    def _record_own_ranges(self, calibration) -> None:
        self.configure(float_ops=set(self.ops))
        for edge in self.edges:
            edge.module.record(True)
        for x in calibration:
            call(self.model, x)
        for edge in self.edges:
            edge.module.record(False)

    @staticmethod
    def _fake_quant(observer) -> _FakeQuant | None:
        if observer.dtype not in INT8_DTYPES or getattr(observer, "is_dynamic", False):
            return None  # dynamic quantization picks its range per batch at run time: nothing fixed to simulate
        scale, _ = observer.calculate_qparams()
        if scale.numel() != 1:
            return None
        qmin, qmax = INT_RANGE[observer.dtype]
        return _FakeQuant(observer, qmin, qmax)

    def configure(self, float_ops=frozenset(), weights: bool = True, activations: bool = True) -> None:
        """Quantize every op except ``float_ops``; ``weights``/``activations`` switch either kind off entirely."""
        quantized = set(self.ops) - set(float_ops)
        for edge in self.edges:
            edge.module.enabled = activations and (
                edge.producer in quantized or any(c in quantized for c in edge.consumers))
            edge.module.use_own = edge.producer in self.ops and edge.producer not in quantized
        for name, switch in self.weights.items():
            switch.set(weights and name in quantized)

    def states(self) -> dict[str, tuple]:
        """What ``configure`` set, by the graph node it changes: each fake-quantize step and each weight."""
        out = {e.node: (e.module.enabled, e.module.use_own) for e in self.edges}
        out.update({name: (switch.quantized,) for name, switch in self.weights.items()})
        return out

    @torch.no_grad()
    def outputs(self, batches) -> list[torch.Tensor]:
        """The model's outputs for ``batches`` under the current configuration."""
        return [call(self.model, x) for x in batches]
