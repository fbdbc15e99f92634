"""The kernels that run: a PT2E model lowered to x86 (oneDNN int8 conv/linear kernels, torchao's
``lower_pt2e_quantized_to_x86``) against the quantize/dequantize graph it came from, layer by layer.

Each lowered conv or linear kernel is matched, in execution order, with the quantized op that has an int8 weight;
its output is compared with the value the quantize/dequantize graph holds at the same point (after the fused
activation, or after the add a conv is fused with). Both runs see the same inputs, so a row is the gap the lowering
has accumulated up to that layer: where it jumps is where a kernel computes something else.
"""

from __future__ import annotations

import copy

import torch
from torch import fx

from qreport.flows.pt2e_graph import QuantizedOp, quantized_ops
from qreport.streaming import FLOAT_NAME, QUANT_NAME, Tap


def lower_x86(quantized: fx.GraphModule, example: tuple) -> fx.GraphModule:
    """The quantize/dequantize graph lowered to x86 int8 kernels for batches shaped like ``example``."""
    from torchao.quantization.pt2e.lowering import lower_pt2e_quantized_to_x86

    with torch.no_grad():
        lowered = lower_pt2e_quantized_to_x86(copy.deepcopy(quantized), example)
    return _views_as_reshapes(lowered)


def _views_as_reshapes(gm: fx.GraphModule) -> fx.GraphModule:
    """``gm`` with every ``aten.view`` made an ``aten.reshape`` (the same values).

    The oneDNN kernels write channels-last outputs, and a ``view`` that flattened the float graph's contiguous tensor
    (``torch.flatten`` before a classifier, as in VGG) fails on them when the lowered graph runs as it is;
    ``torch.compile`` plans the layouts itself. A reshape copies only where the layout needs it."""
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.target is torch.ops.aten.view.default:
            node.target = torch.ops.aten.reshape.default
    gm.recompile()
    return gm


def _kernels(lowered: fx.GraphModule) -> list[fx.Node]:
    return [n for n in lowered.graph.nodes if n.op == "call_function" and str(n.target).startswith("onednn.q")
            and "prepack" not in str(n.target)]


def _argument(node: fx.Node, name: str):
    names = [a.name for a in node.target._schema.arguments]
    return node.args[names.index(name)] if name in names and names.index(name) < len(node.args) else None


def _compared_value(gm: fx.GraphModule, op: QuantizedOp, layers: dict[str, QuantizedOp]) -> tuple[fx.Node, tuple]:
    """Where the quantize/dequantize graph holds the value a lowered kernel outputs: the layer's quantize step, the
    quantize step of the add it is fused with, or its float output."""
    nodes = {n.name: n for n in gm.graph.nodes}
    end = nodes[op.end]
    if op.quantize is None and len(end.users) == 1:
        user = next(iter(end.users))
        fused = layers.get(user.name)
        if fused is not None and fused.quantize is not None and not fused.weight_args:
            op = fused
    if op.quantize is None:
        return nodes[op.end], (nodes[op.end],)
    q = nodes[op.quantize]
    return q, (q, q.args[1], q.args[2])


def tap_both(quantized: fx.GraphModule, lowered: fx.GraphModule, pairing,
             module_paths: dict[str, str]) -> tuple[fx.GraphModule, fx.GraphModule, str]:
    """Copies of both graphs with each lowered kernel's output and its quantize/dequantize counterpart going to
    ``pairing`` (reference side: the quantize/dequantize graph); and a note when they cannot be matched."""
    reference, kernels_gm = copy.deepcopy(quantized), lowered
    layers = quantized_ops(reference)
    weighted = [op for op in layers if op.weight_args]
    kernels = _kernels(kernels_gm)
    if len(kernels) != len(weighted):
        return reference, kernels_gm, (f"{len(kernels)} lowered kernels for {len(weighted)} quantized layers with "
                                       "weights: not matched layer by layer")
    by_name = {op.node: op for op in layers}
    for i, (op, kernel) in enumerate(zip(weighted, kernels)):
        label = str(kernel.target).split(".")[1]
        layer = module_paths.get(op.node, op.node)
        at, args = _compared_value(reference, op, by_name)
        _insert(reference, at, Tap(pairing, FLOAT_NAME, op.node, op.node, label, layer), args, f"qreport_qdq_{i}")
        dtype = _argument(kernel, "output_dtype")
        scale, zero_point = _argument(kernel, "output_scale"), _argument(kernel, "output_zero_point")
        integer = dtype in (torch.uint8, torch.int8) and isinstance(scale, float)
        _insert(kernels_gm, kernel, Tap(pairing, QUANT_NAME, op.node, op.node, label, layer),
                (kernel, scale, zero_point) if integer else (kernel,), f"qreport_kernel_{i}")
    reference.recompile()
    kernels_gm.recompile()
    return reference, kernels_gm, ""


def _insert(gm: fx.GraphModule, after: fx.Node, tap: Tap, args: tuple, name: str) -> None:
    gm.add_module(name, tap)
    with gm.graph.inserting_after(after):
        gm.graph.call_module(name, args)

