"""Simulated int8 on a converted PT2E graph: any set of layers kept float without re-quantizing.

The quantize/dequantize graph already is a simulation: each activation's quantize → dequantize pair becomes a
switchable fake-quantize step with the same qparams, and each int8 weight a switch between the dequantized int8
weight and the float (BatchNorm-folded) one. A step is active when its producer or one of its consumers is
quantized, as in a real int8 model, where keeping a run of layers float removes the steps inside it.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import fx, nn

from qreport.data import call
from qreport.flows import pt2e_graph
from qreport.flows.copies import sharing_modules
from qreport.flows.sim_fork import ForkingSimulator, kept_dequantized


class _FakeQuant(nn.Module):
    def __init__(self, scale: float, zero_point: int, qmin: int, qmax: int):
        super().__init__()
        self.scale, self.zero_point, self.qmin, self.qmax = scale, zero_point, qmin, qmax
        self.enabled = True

    def forward(self, x):
        if not self.enabled:
            return x
        return torch.fake_quantize_per_tensor_affine(x, self.scale, self.zero_point, self.qmin, self.qmax)


class _Weight(nn.Module):
    """A weight argument's switch: the int8 weight dequantized, or the float one; the dequantized copy is kept when
    ``keep`` (``sim_fork.kept_dequantized``), else made where the weight is read."""

    def __init__(self, int8: torch.Tensor, float_: torch.Tensor, keep: bool):
        super().__init__()
        self.int8, self.float, self.quantized = int8, float_, True
        self.dequantized = int8.dequantize() if keep else None

    def forward(self):
        if not self.quantized:
            return self.float
        return self.dequantized if self.dequantized is not None else self.int8.dequantize()


@dataclasses.dataclass
class _Edge:
    module: _FakeQuant
    producer: str
    consumers: list[str]
    node: str  # the graph node that calls ``module``


class Pt2eSimulator(ForkingSimulator):
    """Runs the converted graph with fake quantization on any subset of its layers (``Simulator``'s interface)."""

    def __init__(self, prepared: fx.GraphModule, quantized: fx.GraphModule):
        self.model = gm = sharing_modules(quantized)
        layers = pt2e_graph.quantized_ops(gm)
        owner = {op.end: op.node for op in layers}
        nodes = {n.name: n for n in gm.graph.nodes}
        self.weights: dict[str, list[_Weight]] = {}  # layer -> a switch per weight argument
        self._weight_reads: dict[str, _Weight] = {}  # node that reads a weight switch -> the switch
        int8 = {(op.node, arg): pt2e_graph.int8_weight(gm, nodes[op.node].args[arg])
                for op in layers for arg in op.weight_args}
        kept = kept_dequantized(int8)
        for op in layers:
            node = nodes[op.node]
            for arg in op.weight_args:
                dq = node.args[arg]
                switch = _Weight(int8[op.node, arg], pt2e_graph.float_weight(prepared, op.node, arg),
                                 keep=(op.node, arg) in kept)
                name = f"qreport_weight_{op.node}_{arg}"
                gm.add_module(name, switch)
                with gm.graph.inserting_before(node):
                    read = gm.graph.call_module(name, ())
                    node.update_arg(arg, read)
                if not dq.users:
                    gm.graph.erase_node(dq)
                self.weights.setdefault(op.node, []).append(switch)
                self._weight_reads[read.name] = switch
        self.edges: list[_Edge] = []
        for q in [n for n in gm.graph.nodes if pt2e_graph.is_quantize(n) and n.args[0].op != "get_attr"]:
            scale, zero_point, qmin, qmax = (q.args[1], q.args[2], q.args[3], q.args[4])
            fq = _FakeQuant(float(scale), int(zero_point), int(qmin), int(qmax))
            name = f"qreport_fake_quant_{q.name}"
            gm.add_module(name, fq)
            source = q.args[0]
            with gm.graph.inserting_after(q):
                step = gm.graph.call_module(name, (source,))
            consumers = []
            for dq in list(q.users):
                consumers += [owner.get(u.name, u.name) for u in dq.users]
                dq.replace_all_uses_with(step)
                gm.graph.erase_node(dq)
            gm.graph.erase_node(q)
            self.edges.append(_Edge(fq, owner.get(source.name, source.name), consumers, step.name))
        gm.recompile()
        self.ops = [op.node for op in layers]
        self.observed_ops = {e.producer for e in self.edges} & set(self.ops)

    def configure(self, float_ops=frozenset(), weights: bool = True, activations: bool = True) -> None:
        """Quantize every layer except ``float_ops``; ``weights``/``activations`` switch either kind off entirely."""
        quantized = set(self.ops) - set(float_ops)
        for edge in self.edges:
            edge.module.enabled = activations and (
                edge.producer in quantized or any(c in quantized for c in edge.consumers))
        for name, switches in self.weights.items():
            for switch in switches:
                switch.quantized = weights and name in quantized

    def states(self) -> dict[str, tuple]:
        """What ``configure`` set, by the graph node it changes: each fake-quantize step and each weight."""
        out = {e.node: (e.module.enabled,) for e in self.edges}
        out.update({node: (switch.quantized,) for node, switch in self._weight_reads.items()})
        return out

    @torch.no_grad()
    def outputs(self, batches) -> list[torch.Tensor]:
        """The model's outputs for ``batches`` under the current configuration."""
        return [call(self.model, x) for x in batches]
