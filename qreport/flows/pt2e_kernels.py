"""Leaner ways for torch to quantize and dequantize PT2E weights: the same values with less memory (while
``convert_pt2e`` folds constants, and while a PT2E build runs its q/dq graphs)."""

from __future__ import annotations

import contextlib
from unittest import mock

import torch


def _dequantize_per_channel(input, scales, zero_points, axis, quant_min, quant_max, dtype, *, out_dtype=None):
    """``quantized_decomposed.dequantize_per_channel`` with one float temporary instead of three.

    torch's decomposition computes ``(input - zero_points) * scales`` with int64 zero points: an int64 copy of the
    int8 weight (8 bytes a value), then the float result: 1.6 GB for vgg11's 411 MB classifier weight, on every
    forward of the int8 model. Converting to float first and subtracting and scaling in place gives the same
    values (the integer differences are exact in float32) in the same layout. Other cases go to torch's code."""
    from torch.ao.quantization.fx import _decomposed

    if (axis != 0 or input.dtype not in (torch.int8, torch.uint8) or input.dtype != dtype
            or scales.dtype != torch.float32 or (zero_points is not None and zero_points.is_floating_point())
            or out_dtype not in (None, torch.float32)):
        return _decomposed.dequantize_per_channel(input, scales, zero_points, axis, quant_min, quant_max, dtype,
                                                  out_dtype=out_dtype)
    shape = [-1] + [1] * (input.dim() - 1)
    out = input.to(torch.float32)
    if zero_points is not None:
        out.sub_(zero_points.to(torch.float32).view(shape))
    return out.mul_(scales.view(shape))


@contextlib.contextmanager
def lean_weight_dequantize():
    """Run ``dequantize_per_channel`` on CPU tensors through ``_dequantize_per_channel`` inside the block."""
    import torch.ao.quantization.fx._decomposed  # noqa: F401 - defines the quantized_decomposed ops

    with torch.library._scoped_library("quantized_decomposed", "IMPL") as lib:
        lib.impl("dequantize_per_channel", _dequantize_per_channel, "CPU")
        yield


FOLD_SLICE_BYTES = 32 << 20  # float weights larger than this are quantized while folding a slice of channels at a time


def _quantized_in_slices(quantize, args: tuple) -> torch.Tensor:
    """``quantize_per_channel(weight, scales, zero_points, 0, ...)`` computed over slices of output channels: the same
    values and layout as one call, with float temporaries the size of a slice instead of four of the weight."""
    weight, scales, zero_points, axis, *rest = args
    out = torch.empty_like(weight, dtype=rest[-1])
    step = max(1, weight.size(0) * FOLD_SLICE_BYTES // (weight.numel() * weight.element_size()))
    for start in range(0, weight.size(0), step):
        n = min(step, weight.size(0) - start)
        out.narrow(0, start, n).copy_(quantize(weight.narrow(0, start, n), scales.narrow(0, start, n),
                                               zero_points.narrow(0, start, n), axis, *rest))
    return out


@contextlib.contextmanager
def lean_folding():
    """``convert_pt2e``'s constant folding without float copies of the weights it does not keep.

    The folder evaluates every op whose inputs are constants: each weight's ``quantize_per_channel`` (kept: the int8
    weight) and the ``dequantize`` after it, which it then discards (dequantize ops stay in the graph). On vgg11
    the dequantized copy of the 411 MB classifier weight and its temporaries took the process 1.6 GB above its
    steady state, and the quantize's own float temporaries (scaled, rounded, shifted, clamped) 0.9 GB. Here the
    ops the folder discards are not evaluated, and large weights are quantized a slice of output channels at a
    time (per-channel quantization treats each channel alone): the same graph and int8 weights (pinned in the
    tests)."""
    try:
        from torchao.quantization.pt2e import constant_fold as folding
    except ImportError:
        yield
        return
    quantize = torch.ops.quantized_decomposed.quantize_per_channel.default

    class LeanFolder(folding.ConstantFolder):
        def _deduce_value(self, node):
            if node.op == "call_function" and self.is_impure(node):
                return self.unknown_value  # what the folder would compute, then discard as impure
            return super()._deduce_value(node)

        def call_function(self, target, args, kwargs):
            weight = args[0] if args else None
            if (target is quantize and not kwargs and len(args) == 7 and args[3] == 0
                    and isinstance(weight, torch.Tensor) and weight.numel() * weight.element_size() > FOLD_SLICE_BYTES):
                return _quantized_in_slices(quantize, args)
            return super().call_function(target, args, kwargs)

    with mock.patch.object(folding, "ConstantFolder", LeanFolder):
        yield
