"""A leaner CPU kernel for the q/dq graphs' weight dequantize, installed while a PT2E build runs."""

from __future__ import annotations

import contextlib

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
