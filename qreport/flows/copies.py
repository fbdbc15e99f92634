"""Copies of a model's structure that do not copy its weights."""

from __future__ import annotations

import copy

from torch import nn


def sharing_weights(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` whose parameters are the original's (buffers are copied): modules, graphs and
    observers are new, the weights are not duplicated. The copy may replace a parameter by assignment, never change
    one in place."""
    return copy.deepcopy(model, {id(p): p for p in model.parameters()})
