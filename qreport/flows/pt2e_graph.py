"""Reading a converted PT2E graph: quantized ops, their weights, and what runs in int8.

After ``convert_pt2e`` a model is float in, float out: each quantized op reads ``dequantize`` nodes (its activations,
and its int8 weight stored as a constant) and its output goes through ``quantize`` → ``dequantize``. An op's
*layer* here is the op that does the work (conv2d, linear, add, ...) with the elementwise activations fused after it
(relu, hardtanh); its *end* is the last of those, whose output is quantized.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import fx, nn

from qreport.schema import PASS_THROUGH

# Elementwise activations that run inside the preceding op's quantization (no quantize step between them).
_FUSED_FOLLOWERS = {"relu", "relu_", "hardtanh", "hardtanh_", "clamp", "clamp_", "relu6", "relu6_"}


def target_name(node: fx.Node) -> str:
    """``aten.conv2d.default`` -> ``conv2d``; a module call -> its target."""
    if node.op == "call_module":
        return str(node.target)
    name = str(getattr(node.target, "__name__", node.target))
    return name.split(".")[0] if node.op == "call_function" and "." in name else name


def is_quantize(node: fx.Node) -> bool:
    return node.op == "call_function" and str(node.target).startswith("quantized_decomposed.quantize_per_")


def is_dequantize(node: fx.Node) -> bool:
    return node.op == "call_function" and str(node.target).startswith("quantized_decomposed.dequantize_per_")


def is_qdq(node: fx.Node) -> bool:
    """A quantize or dequantize step."""
    return is_quantize(node) or is_dequantize(node)


def is_constant_dequantize(node) -> bool:
    """A dequantize of a stored int8 constant: an int8 weight."""
    return isinstance(node, fx.Node) and is_dequantize(node) and isinstance(node.args[0], fx.Node) and \
        node.args[0].op == "get_attr"


def _has_float_weight(node: fx.Node) -> bool:
    """A conv or linear whose weight is a float constant."""
    if not target_name(node).startswith(("conv", "linear")):
        return False
    weight = node.args[1] if len(node.args) > 1 else None
    return isinstance(weight, fx.Node) and weight.op == "get_attr"


def _is_op(node: fx.Node) -> bool:
    return node.op in ("call_function", "call_method") and not is_qdq(node)


@dataclasses.dataclass
class QuantizedOp:
    """One quantized layer of the converted graph."""

    node: str  # the op doing the work (conv2d, linear, add, ...)
    end: str  # the last fused follower (or ``node``): its output is the layer's output
    quantize: str | None  # the quantize node of the output, None when the output stays float
    weight_args: tuple[int, ...]  # positions of int8 weights among the node's arguments
    label: str  # quantized.conv2d, ...


def chain_end(node: fx.Node) -> fx.Node:
    """The last elementwise activation fused after ``node`` (or ``node``): where its quantized output is taken."""
    end = node
    while len(end.users) == 1:
        user = next(iter(end.users))
        if not (_is_op(user) and target_name(user) in _FUSED_FOLLOWERS and user.args[0] is end):
            break
        end = user
    return end


def quantized_ops(gm: fx.GraphModule) -> list[QuantizedOp]:
    """Every quantized layer, in execution order: an op with a dequantized input whose output is quantized, or
    which has an int8 weight."""
    ops = []
    followers = set()
    for node in gm.graph.nodes:
        if not _is_op(node) or node.name in followers:
            continue
        inputs = node.all_input_nodes
        if not any(is_dequantize(a) for a in inputs):
            continue
        end = chain_end(node)
        quantize = next((u for u in end.users if is_quantize(u)), None)
        weights = tuple(i for i, a in enumerate(node.args) if is_constant_dequantize(a))
        if quantize is None and not weights:
            continue
        if not weights and _has_float_weight(node):  # a layer kept float between quantized ones
            continue
        walk = node
        while walk is not end:
            walk = next(iter(walk.users))
            followers.add(walk.name)
        ops.append(QuantizedOp(node.name, end.name, quantize.name if quantize is not None else None, weights,
                               f"quantized.{target_name(node)}"))
    return ops


def int8_weight(gm: fx.GraphModule, dequantize: fx.Node) -> torch.Tensor:
    """The int8 weight behind a constant ``dequantize`` node, as a torch quantized tensor (scales included)."""
    values = getattr_path(gm, dequantize.args[0].target)
    if "per_channel" in str(dequantize.target):
        _, scales, zero_points, axis = dequantize.args[:4]
        scales = getattr_path(gm, scales.target) if isinstance(scales, fx.Node) else scales
        zero_points = getattr_path(gm, zero_points.target) if isinstance(zero_points, fx.Node) else zero_points
        return torch._make_per_channel_quantized_tensor(values, scales.double(), zero_points.long(), int(axis))
    _, scale, zero_point = dequantize.args[:3]
    return torch._make_per_tensor_quantized_tensor(values, float(scale), int(zero_point))


def getattr_path(gm: nn.Module, target: str):
    """The attribute at a dotted path of a graph module."""
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def module_path(node: fx.Node) -> str:
    """The path of the innermost module the op ran in ('' at the top level)."""
    stack = node.meta.get("nn_module_stack") or {}
    return list(stack.values())[-1][0] if stack else ""


def float_weight(prepared: fx.GraphModule, node_name: str, arg: int) -> torch.Tensor:
    """The float weight (BatchNorm folded) the prepared graph feeds argument ``arg`` of node ``node_name``."""
    node = next(n for n in prepared.graph.nodes if n.name == node_name)
    source = node.args[arg]
    while source.op == "call_module":  # its observer
        source = source.args[0]
    return getattr_path(prepared, source.target).detach()


def _qparams(node: fx.Node) -> tuple:
    return tuple(a for a in node.args[1:3])


def graph_records(gm: fx.GraphModule) -> list[dict]:
    """One record per op (fused followers folded into their op): ``node``, ``target``, ``runs``, ``inputs``."""
    ops = {op.node: op for op in quantized_ops(gm)}
    alias = {}
    for op in ops.values():
        walk = next(n for n in gm.graph.nodes if n.name == op.node)
        while walk.name != op.end:
            walk = next(iter(walk.users))
            alias[walk.name] = op.node
    producers: dict[str, list[str]] = {}
    records = []
    for node in gm.graph.nodes:
        feeding = []
        for arg in node.all_input_nodes:
            feeding += [alias.get(arg.name, arg.name)] if _is_op(arg) else producers.get(arg.name, [])
        feeding = list(dict.fromkeys(feeding))
        if not _is_op(node):
            producers[node.name] = feeding
            continue
        if node.name in alias:
            producers[node.name] = [alias[node.name]]
            continue
        producers[node.name] = [node.name]
        runs = "int8" if node.name in ops else "float"
        if node.name in ops and not ops[node.name].weight_args:
            dequantized = [a for a in node.all_input_nodes if is_dequantize(a)]
            quantize = next((u for u in node.users if is_quantize(u)), None)
            if len(dequantized) == 1 and quantize is not None and _qparams(dequantized[0]) == _qparams(quantize):
                runs = PASS_THROUGH
        label = f"quantized.{target_name(node)}" if runs == "int8" else target_name(node)
        records.append({"node": node.name, "module": "", "target": label, "runs": runs, "inputs": feeding})
    return records


def module_statuses(gm: fx.GraphModule, float_model: nn.Module) -> dict[str, str]:
    """Module path -> quantized (one of its ops is a quantized layer with a weight), float (its ops run in float),
    or fused (no op of its own left: folded into a neighbour, like BatchNorm into its conv)."""
    statuses = {}
    quantized = {op.node for op in quantized_ops(gm) if op.weight_args}
    for node in gm.graph.nodes:
        if not _is_op(node):
            continue
        path = module_path(node)
        if path and statuses.get(path) != "quantized":
            statuses[path] = "quantized" if node.name in quantized else "float"
    for name, module in float_model.named_modules():
        if name and name not in statuses and any(True for _ in module.parameters(recurse=False)):
            statuses[name] = "fused"
    return statuses


def boundaries(gm: fx.GraphModule) -> int:
    """Quantize steps fed by a float op and dequantize steps feeding a float op: the switches between float and
    int8."""
    layers = quantized_ops(gm)
    int8_ends = {op.end for op in layers}
    int8_ops = {op.node for op in layers}
    count = 0
    for node in gm.graph.nodes:
        if is_quantize(node) and node.args[0].op != "get_attr" and node.args[0].name not in int8_ends:
            count += 1
        elif is_dequantize(node) and not is_constant_dequantize(node) and \
                any(_is_op(u) and u.name not in int8_ops for u in node.users):
            count += 1
    return count
