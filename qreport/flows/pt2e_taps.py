"""Instrumenting PT2E graphs for the streaming statistics: taps on layer outputs (propagated view) and float
shadows beside each quantized layer (isolated view). Nothing is stored: every tap hands its value to a pairing."""

from __future__ import annotations

import torch
from torch import fx

from qreport.flows.copies import sharing_modules
from qreport.flows.pt2e_graph import QuantizedOp, float_weight
from qreport.streaming import FLOAT_NAME, QUANT_NAME, Tap


def _node(gm: fx.GraphModule, name: str) -> fx.Node:
    return next(n for n in gm.graph.nodes if n.name == name)


def float_graph(prepared: fx.GraphModule) -> fx.GraphModule:
    """The prepared graph without its observers: the float model (BatchNorm folded) with the int8 graph's node
    names, so the two pair op by op. A new graph on the prepared model's own tensors (a deep copy would duplicate
    every folded weight)."""
    gm = sharing_modules(prepared)
    for node in list(gm.graph.nodes):
        if node.op == "call_module" and str(node.target).startswith("activation_post_process"):
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)
            delattr(gm, str(node.target))
    gm.graph.lint()
    gm.recompile()
    return gm


def _add_tap(gm: fx.GraphModule, after: fx.Node, tap: Tap, args: tuple) -> fx.Node:
    name = f"qreport_tap_{len([m for m in gm.children() if isinstance(m, Tap)])}"
    gm.add_module(name, tap)
    with gm.graph.inserting_after(after):
        return gm.graph.call_module(name, args)


def _int8_output(gm: fx.GraphModule, op: QuantizedOp) -> tuple[fx.Node, tuple]:
    """Where the int8 layer's output is tapped, and the tap's arguments (integer values with their qparams)."""
    if op.quantize is None:
        end = _node(gm, op.end)
        return end, (end,)
    q = _node(gm, op.quantize)
    return q, (q, q.args[1], q.args[2])


def tap_layers(gm: fx.GraphModule, ops: list[QuantizedOp], pairing, side: str, module_paths: dict[str, str]) -> None:
    """Tap each layer's output in ``gm`` (the float graph, or the int8 one after its quantize step)."""
    for op in ops:
        if side == QUANT_NAME:
            at, args = _int8_output(gm, op)
        else:
            at = _node(gm, op.end)
            args = (at,)
        _add_tap(gm, at, Tap(pairing, side, op.end, op.node, op.label, module_paths.get(op.node, "")), args)
    gm.recompile()


def _out_of_place(target):
    """``aten.add_.Tensor`` -> ``aten.add.Tensor``: a shadow must not change the tensors the int8 model reads."""
    packet = getattr(target, "overloadpacket", None)
    name = getattr(packet, "__name__", "")
    if name.endswith("_") and hasattr(torch.ops.aten, name[:-1]):
        return getattr(getattr(torch.ops.aten, name[:-1]), target._overloadname)
    return target


def add_shadows(gm: fx.GraphModule, prepared: fx.GraphModule, ops: list[QuantizedOp], pairing,
                module_paths: dict[str, str]) -> None:
    """Beside each quantized layer, its float counterpart (float weights, out-of-place) fed the same dequantized
    inputs, just before the layer runs; both outputs go to ``pairing``."""
    for i, op in enumerate(ops):
        node = _node(gm, op.node)
        chain = [node]
        while chain[-1].name != op.end:
            chain.append(next(iter(chain[-1].users)))
        env: dict[fx.Node, fx.Node] = {}
        anchor = node.prev
        for arg in op.weight_args:
            name = f"qreport_float_weight_{i}_{arg}"
            gm.register_buffer(name, float_weight(prepared, op.node, arg))
            with gm.graph.inserting_after(anchor):
                env[node.args[arg]] = anchor = gm.graph.get_attr(name)
        for original in chain:
            with gm.graph.inserting_after(anchor):
                anchor = gm.graph.node_copy(original, lambda n: env.get(n, n))
            anchor.target = _out_of_place(anchor.target)
            env[original] = anchor
        layer = module_paths.get(op.node, "")
        _add_tap(gm, anchor, Tap(pairing, FLOAT_NAME, op.end, op.node, op.label, layer), (anchor,))
        at, args = _int8_output(gm, op)
        _add_tap(gm, at, Tap(pairing, QUANT_NAME, op.end, op.node, op.label, layer), args)
    gm.graph.lint()
    gm.recompile()

