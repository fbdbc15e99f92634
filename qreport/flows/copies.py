"""Copies of a model's structure that do not copy its weights."""

from __future__ import annotations

import copy

from torch import fx, nn


def sharing_weights(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` whose parameters are the original's (buffers are copied): modules, graphs and
    observers are new, the weights are not duplicated. The copy may replace a parameter by assignment, never change
    one in place."""
    return copy.deepcopy(model, {id(p): p for p in model.parameters()})


def sharing_tensors(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` whose parameters and buffers are the original's: for passes that replace tensors
    (lowering, packing) but never write into one."""
    return copy.deepcopy(model, {id(t): t for t in [*model.parameters(), *model.buffers()]})


def sharing_modules(gm: fx.GraphModule) -> fx.GraphModule:
    """A GraphModule running a copy of ``gm``'s graph on ``gm``'s own submodules and tensors: nodes and attributes
    added to it (loggers, taps, shadows) do not reach ``gm``, and nothing but the graph is copied."""
    view = fx.GraphModule(gm, copy.deepcopy(gm.graph))
    view.meta = dict(gm.meta)
    return view
