"""The int8 FX graph as neutral records: each op, what it runs on (int8 kernel, int8 pass-through, float) and
the ops that feed it. Quantize, dequantize and constant nodes are looked through."""

from __future__ import annotations

import torch
from torch import fx, nn

_QUANTIZE = {torch.quantize_per_tensor, torch.quantize_per_channel, torch.quantize_per_tensor_dynamic}
_QUANTIZED_MODULES = ("torch.ao.nn.quantized", "torch.ao.nn.intrinsic.quantized")  # .dynamic included


def _is_quantize(node: fx.Node) -> bool:
    return node.op == "call_function" and node.target in _QUANTIZE


def _is_dequantize(node: fx.Node) -> bool:
    return (node.op == "call_method" and node.target == "dequantize") or \
        (node.op == "call_function" and node.target is torch.dequantize)


def _is_op(node: fx.Node) -> bool:
    return node.op in ("call_module", "call_function", "call_method") and not (_is_quantize(node) or _is_dequantize(node))


def _runs_int8_kernel(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return type(modules[node.target]).__module__.startswith(_QUANTIZED_MODULES)
    return node.op == "call_function" and str(getattr(node.target, "__module__", "")).startswith("torch._ops.quantized") \
        or "quantized." in str(node.target)


def module_statuses(quantized: nn.Module) -> dict[str, str]:
    """Module path -> how it ended up in the int8 model: ``quantized`` (an int8 module), ``float``, or ``fused``
    (an Identity left where fusion folded it into its neighbour); paths missing here were fused away too."""
    out = {}
    for name, module in quantized.named_modules():
        if isinstance(module, nn.Identity):
            out[name] = "fused"
        else:
            out[name] = "quantized" if type(module).__module__.startswith(_QUANTIZED_MODULES) else "float"
    return out


def _first_tensor_input(node: fx.Node) -> fx.Node | None:
    for arg in node.all_input_nodes:
        if arg.op != "get_attr":
            return arg
    return None


def graph_nodes(quantized: fx.GraphModule) -> list[dict]:
    """One record per op in execution order: ``node``, ``module`` (the module path of a call_module, else ""),
    ``target`` (its type or function name), ``runs`` (``int8`` kernel, ``int8 pass-through`` on its input's scale,
    or ``float``) and ``inputs`` (the ops feeding it, through quantize/dequantize nodes)."""
    modules = dict(quantized.named_modules())
    int8: dict[fx.Node, bool] = {}
    producers: dict[fx.Node, list[str]] = {}
    records = []
    for node in quantized.graph.nodes:
        first = _first_tensor_input(node)
        if node.op == "placeholder" or node.op == "get_attr":
            int8[node] = False
            producers[node] = []
            continue
        feeding = []
        for arg in node.all_input_nodes:
            feeding += [arg.name] if _is_op(arg) else producers.get(arg, [])
        producers[node] = list(dict.fromkeys(feeding)) if not _is_op(node) else [node.name]
        if _is_quantize(node):
            int8[node] = True
            continue
        if _is_dequantize(node) or node.op == "output":
            int8[node] = False
            continue
        kernel = _runs_int8_kernel(node, modules)
        passes = not kernel and first is not None and int8.get(first, False)
        int8[node] = kernel or passes
        if node.op == "call_module":
            target = type(modules[node.target]).__name__
        else:
            target = getattr(node.target, "__name__", str(node.target))
        records.append({"node": node.name, "module": str(node.target) if node.op == "call_module" else "",
                        "target": target, "runs": "int8" if kernel else "int8 pass-through" if passes else "float",
                        "inputs": list(dict.fromkeys(feeding))})
    return records
