"""Fuse once: every preparation of the same float model (the fix stage prepares it again for each rung) takes the
Conv/Linear + BatchNorm fused weights the first one computed, instead of holding another copy of them.

FX fusion calls ``torch.nn.utils.fusion.fuse_conv_bn_eval`` / ``fuse_linear_bn_eval`` per pair, on a copy of the
conv; PT2E's BatchNorm folding calls ``fuse_conv_bn_weights`` on the exported tensors, which every preparation of
one export shares. While ``reused_in_fx`` / ``reused_in_pt2e`` lasts, a pair whose inputs are the same as before
(parameters by identity and version, running statistics FX copies by value) gets the earlier fused parameters.
The values are those fusing again would compute: the function and its inputs are the same.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from unittest import mock

import torch
from torch import nn


@dataclasses.dataclass
class _Fusion:
    params: tuple  # tensors compared by identity and version (None where absent)
    versions: tuple[int, ...]
    running: tuple  # tensors compared by value (FX: BatchNorm's running mean and variance, copied per preparation)
    weight: nn.Parameter
    bias: nn.Parameter

    def still_holds(self, params: tuple, running: tuple) -> bool:
        """Whether fusing ``params`` and ``running`` now would compute this fusion again."""
        return (all(a is b for a, b in zip(params, self.params)) and _versions(params) == self.versions
                and all(torch.equal(a, b) for a, b in zip(running, self.running)))


def _versions(tensors) -> tuple[int, ...]:
    return tuple(-1 if t is None else t._version for t in tensors)


class FusedWeights:
    """The fusions computed so far for one float model, shared by a flow and the flows ``with_overrides`` makes."""

    def __init__(self):
        self._done: dict[tuple, _Fusion] = {}

    @contextlib.contextmanager
    def reused_in_fx(self):
        """Within: FX fusion of a pair fused before returns a module with the earlier fused parameters."""
        import torch.nn.utils as utils
        from torch.nn.utils import fusion

        conv_bn, linear_bn = fusion.fuse_conv_bn_eval, fusion.fuse_linear_bn_eval

        def conv(module, bn, transpose=False):
            return self._fused(lambda: conv_bn(module, bn, transpose), module, bn, ("conv", transpose))

        def linear(module, bn):
            return self._fused(lambda: linear_bn(module, bn), module, bn, ("linear",))

        with mock.patch.object(fusion, "fuse_conv_bn_eval", conv), mock.patch.object(utils, "fuse_conv_bn_eval", conv), \
                mock.patch.object(fusion, "fuse_linear_bn_eval", linear), \
                mock.patch.object(utils, "fuse_linear_bn_eval", linear):
            yield

    @contextlib.contextmanager
    def reused_in_pt2e(self):
        """Within: PT2E's BatchNorm folding of tensors folded before returns the earlier fused parameters."""
        from torchao.quantization.pt2e import utils

        fuse = utils.fuse_conv_bn_weights

        def folded(conv_w, conv_b, bn_rm, bn_rv, bn_eps, bn_w, bn_b, transpose=False):
            tensors = (conv_w, conv_b, bn_rm, bn_rv, bn_w, bn_b)
            key = ("pt2e", bn_eps, transpose) + tuple(map(id, tensors))
            done = self._done.get(key)
            if done is not None and done.still_holds(tensors, ()):
                return done.weight, done.bias
            weight, bias = fuse(conv_w, conv_b, bn_rm, bn_rv, bn_eps, bn_w, bn_b, transpose=transpose)
            self._done[key] = _Fusion(tensors, _versions(tensors), (), weight, bias)
            return weight, bias

        with mock.patch.object(utils, "fuse_conv_bn_weights", folded):
            yield

    def _fused(self, fuse, module: nn.Module, bn: nn.Module, kind: tuple) -> nn.Module:
        params = (module.weight, module.bias, bn.weight, bn.bias)
        running = (bn.running_mean, bn.running_var)
        key = kind + (bn.eps,) + tuple(id(p) for p in params)
        done = self._done.get(key)
        if done is not None and done.still_holds(params, running):
            fused = copy.deepcopy(module, {id(module.weight): done.weight})  # not another copy of the weight
            fused.weight, fused.bias = done.weight, done.bias
            return fused
        fused = fuse()
        self._done[key] = _Fusion(params, _versions(params), tuple(t.clone() for t in running), fused.weight,
                                  fused.bias)
        return fused
