"""The kernels that run: a PT2E model lowered to x86 (oneDNN int8 conv/linear kernels, torchao's
``lower_pt2e_quantized_to_x86``) against the quantize/dequantize graph it came from, layer by layer.

Each lowered conv or linear kernel is matched, in execution order, with the quantized op that has an int8 weight;
its output is compared with the value the quantize/dequantize graph holds at the same point (after the fused
activation, or after the add a conv is fused with). Both runs see the same inputs, so a row is the gap the lowering
has accumulated up to that layer: where it jumps is where a kernel computes something else.
"""

from __future__ import annotations

import torch
from torch import fx

from qreport.flows.copies import sharing_modules, sharing_tensors
from qreport.flows.pt2e_graph import QuantizedOp, chain_end, quantized_ops, target_name
from qreport.streaming import FLOAT_NAME, QUANT_NAME, Tap


def lower_x86(quantized: fx.GraphModule, example: tuple) -> fx.GraphModule:
    """The quantize/dequantize graph lowered to x86 int8 kernels for batches shaped like ``example``."""
    from torchao.quantization.pt2e.lowering import lower_pt2e_quantized_to_x86

    with torch.no_grad():
        lowered = lower_pt2e_quantized_to_x86(sharing_tensors(quantized), example)
    return _runnable_eagerly(lowered)


def _runnable_eagerly(gm: fx.GraphModule) -> fx.GraphModule:
    """``gm`` made to run as it is, with the same values (``torch.compile`` plans the layouts itself):

    - every ``aten.view`` an ``aten.reshape``: the oneDNN kernels write channels-last outputs, and a ``view`` that
      flattened the float graph's contiguous tensor (``torch.flatten`` before a classifier, as in VGG) fails on them;
      a reshape copies only where the layout needs it;
    - the accumulator of a conv fused with an add (``binary_attr='sum'``, which the kernel adds its output into, in
      place) a channels-last copy, as the kernel requires (MaxViT's feeds it a permuted tensor)."""
    for node in list(gm.graph.nodes):
        if node.op != "call_function":
            continue
        if node.target is torch.ops.aten.view.default:
            node.target = torch.ops.aten.reshape.default
        elif str(node.target).startswith("onednn.qconv2d_pointwise.binary"):
            position = _position(node, "qaccum")
            with gm.graph.inserting_before(node):
                copied = gm.graph.call_function(torch.ops.aten.clone.default, (node.args[position],),
                                                {"memory_format": torch.channels_last})
            node.update_arg(position, copied)
    gm.recompile()
    return gm


def _kernels(lowered: fx.GraphModule) -> list[fx.Node]:
    return [n for n in lowered.graph.nodes if n.op == "call_function" and str(n.target).startswith("onednn.q")
            and "prepack" not in str(n.target)]


def _position(node: fx.Node, name: str) -> int | None:
    """Where the kernel's schema puts argument ``name`` (None if it has none)."""
    names = [a.name for a in node.target._schema.arguments]
    return names.index(name) if name in names else None


def _argument(node: fx.Node, name: str):
    position = _position(node, name)
    return node.args[position] if position is not None and position < len(node.args) else None


def _compared_value(gm: fx.GraphModule, op: QuantizedOp, layers: dict[str, QuantizedOp],
                    fused_add: bool) -> tuple[fx.Node, tuple]:
    """Where the quantize/dequantize graph holds the value a lowered kernel outputs: the layer's quantize step or
    float output, or, for a kernel fused with the add after it (``fused_add``), that add's quantize step or its
    float output (after any activation fused with it)."""
    nodes = {n.name: n for n in gm.graph.nodes}
    end = nodes[op.end]
    if fused_add and op.quantize is None and len(end.users) == 1:
        user = next(iter(end.users))
        fused = layers.get(user.name)
        if fused is not None and not fused.weight_args:
            op = fused
        elif target_name(user).startswith("add"):  # an add whose output stays float: not a quantized layer
            after_add = chain_end(user)
            return after_add, (after_add,)
    if op.quantize is None:
        return nodes[op.end], (nodes[op.end],)
    q = nodes[op.quantize]
    return q, (q, q.args[1], q.args[2])


def tap_both(quantized: fx.GraphModule, lowered: fx.GraphModule, pairing,
             module_paths: dict[str, str]) -> tuple[fx.GraphModule, fx.GraphModule, str]:
    """Copies of both graphs with each lowered kernel's output and its quantize/dequantize counterpart going to
    ``pairing`` (reference side: the quantize/dequantize graph); and a note when they cannot be matched."""
    reference, kernels_gm = sharing_modules(quantized), lowered
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
        at, args = _compared_value(reference, op, by_name, ".binary" in str(kernel.target))
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

