"""Checks before FX quantization: finite weights, traceability (naming the module), non-traceable modules."""

from __future__ import annotations

import difflib

import torch
from torch import nn

from qreport.flows.copies import sharing_weights
from qreport.errors import InputError, first_line


def check_finite_parameters(model: nn.Module) -> None:
    """Refuse weights with NaN/Inf: observers would turn them into meaningless scales."""
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise InputError(f"model tensor {name!r} has {bad} NaN/Inf values; fix the weights (or checkpoint) first")


def resolve_non_traceable(model: nn.Module, specs) -> tuple[list[str], list[type]]:
    """``--non-traceable`` values as module paths and classes; a value matching neither is an input error."""
    modules = dict(model.named_modules())
    classes = {}
    for m in modules.values():
        cls = type(m)
        classes.setdefault(cls.__name__, cls)
        classes.setdefault(f"{cls.__module__}.{cls.__qualname__}", cls)
    names, found = [], []
    for spec in specs:
        if spec in modules and spec:
            names.append(spec)
        elif spec in classes:
            found.append(classes[spec])
        else:
            close = difflib.get_close_matches(spec, [n for n in modules if n] + list(classes), n=3)
            hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
            raise InputError(f"--non-traceable {spec!r} is neither a module path nor a module class of the model{hint}")
    return names, found


def check_traceable(model: nn.Module, skip_names=(), skip_classes=()) -> tuple[torch.fx.Graph, dict[str, str]]:
    """Trace the model as ``prepare_fx`` will and return the graph with each node's module scope; on failure name
    the innermost module where tracing stopped."""
    from torch.ao.quantization.fx.tracer import QuantizationTracer

    class LocatingTracer(QuantizationTracer):
        failed_in: str | None = None

        def call_module(self, m, forward, args, kwargs):
            try:
                return super().call_module(m, forward, args, kwargs)
            except Exception:
                if self.failed_in is None:
                    self.failed_in = self.path_of_module(m)
                raise

    tracer = LocatingTracer(list(skip_names), list(skip_classes))
    copied = sharing_weights(model).eval()  # tracing reads no weight
    try:
        graph = tracer.trace(copied)
    except Exception as exc:
        first = (first_line(exc) or exc.__class__.__name__)[:160]
        if tracer.failed_in:
            raise InputError(
                f"torch.fx cannot trace module {tracer.failed_in!r} ({exc.__class__.__name__}: {first}); pass "
                f"--non-traceable {tracer.failed_in} to keep it float and untraced, or rewrite its forward"
            ) from None
        raise InputError(
            f"torch.fx cannot trace the model's own forward ({exc.__class__.__name__}: {first}); move the "
            "data-dependent code into a submodule and pass it to --non-traceable"
        ) from None
    try:
        torch.fx.GraphModule(copied, graph)  # FX writes Python code for the graph; odd module names break it
    except SyntaxError as exc:
        raise InputError(
            f"a module name breaks the Python code torch.fx generates ({exc.msg}); rename modules added with "
            "add_module() to plain identifiers"
        ) from None
    return graph, {name: scope for name, (scope, _type) in tracer.node_name_to_scope.items()}

