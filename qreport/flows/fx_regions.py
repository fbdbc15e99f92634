"""What "keep this layer float" has to cover in an FX graph so that the layer's output really stays float:
the BatchNorm and activation modules fused into it, and the pooling/reshaping modules between two float layers
(FX quantizes their input whenever they have a qconfig, even when what feeds them is float)."""

from __future__ import annotations

import torch
from torch import fx, nn

from qreport.qtypes import WEIGHTED_LAYERS

_FUSES_AFTER = (nn.modules.batchnorm._BatchNorm, nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.Hardswish, nn.SiLU, nn.GELU)
_PASS_MODULES = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
                 nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool2d, nn.Flatten,
                 nn.Dropout, nn.Identity, nn.ReLU, nn.ReLU6, nn.Hardtanh)
_PASS_FUNCTIONS = {torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze, torch.transpose, torch.mean,
                   nn.functional.relu, nn.functional.relu6, nn.functional.max_pool2d, nn.functional.avg_pool2d,
                   nn.functional.adaptive_avg_pool2d, nn.functional.dropout}
_PASS_METHODS = {"view", "reshape", "flatten", "squeeze", "unsqueeze", "permute", "transpose", "contiguous", "mean",
                 "relu", "size"}


def fused_followers(model: nn.Module, graph: fx.Graph) -> dict[str, list[str]]:
    """Conv/Linear module path -> the BatchNorm and activation modules that run right after it on its output alone
    (what FX fuses into it)."""
    modules = dict(model.named_modules())
    followers: dict[str, list[str]] = {}
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), WEIGHTED_LAYERS):
            continue
        chain, current = [], node
        while len(current.users) == 1:
            (user,) = current.users
            if user.op != "call_module" or not isinstance(modules.get(user.target), _FUSES_AFTER):
                break
            chain.append(str(user.target))
            current = user
        if chain:
            followers[str(node.target)] = chain
    return followers


def _passes(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules.get(node.target), _PASS_MODULES)
    if node.op == "call_function":
        return node.target in _PASS_FUNCTIONS
    return node.op == "call_method" and node.target in _PASS_METHODS


def float_bridges(model: nn.Module, graph: fx.Graph, scopes: dict[str, str], kept_float) -> list[tuple]:
    """Pass-through ops (pooling, flatten, dropout, ...) whose every producer and consumer is kept float: keeping
    them float too keeps the region float end to end. ``kept_float(path)`` says whether a module is. Each entry is
    ``(module path,)`` for a module, or ``(scope, function or method name, index)`` for the index-th such call in
    that module, as ``QConfigMapping.set_module_name_object_type_order`` takes it."""
    modules = dict(model.named_modules())

    def ends(node: fx.Node, forward: bool) -> list[fx.Node]:
        found, todo, seen = [], [node], set()
        while todo:
            n = todo.pop()
            for m in (n.users if forward else n.all_input_nodes):
                if m not in seen:
                    seen.add(m)
                    (todo if _passes(m, modules) else found).append(m)
        return found

    def floats(n: fx.Node) -> bool:
        return n.op == "output" or (n.op == "call_module" and kept_float(str(n.target)))

    counts: dict[tuple, int] = {}
    bridges = []
    for node in graph.nodes:
        if not _passes(node, modules):
            continue
        key = (scopes.get(node.name, ""), node.target)
        index = counts.get(key, 0)
        counts[key] = index + 1
        if node.op == "call_module" and kept_float(str(node.target)):
            continue
        producers, consumers = ends(node, False), ends(node, True)
        if any(n.op == "call_module" for n in producers) and all(floats(n) for n in producers + consumers):
            bridges.append((str(node.target),) if node.op == "call_module" else (*key, index))
    return bridges
