"""Check each int8 kernel on its own: well-conditioned synthetic input inside its calibrated range, against the
float module. Rounding alone gives an RMSE of 1/√12 ≈ 0.29 output steps; far more is a kernel defect of the
backend, not a fault of the data or the ranges."""

from __future__ import annotations

import torch
from torch import nn

from qreport.data import call
from qreport.metrics import sqnr_db
from qreport.qtypes import WEIGHTED_LAYERS

CHECK_SEED = 0
_QUANTIZED_PACKAGE = "torch.ao.nn.quantized.modules"


def _checkable(name: str, q_module: nn.Module, float_modules: dict[str, nn.Module]) -> nn.Module | None:
    """The float twin of an int8 module that computes without weights to fold (activations, norms, PReLU)."""
    if not name or not type(q_module).__module__.startswith(_QUANTIZED_PACKAGE):
        return None
    twin = float_modules.get(name)
    if twin is None or isinstance(twin, WEIGHTED_LAYERS) or list(twin.children()):
        return None
    return twin if type(twin).__name__ == type(q_module).__name__ else None


def _inputs(quantized: nn.Module, names: list[str], example) -> dict[str, torch.Tensor]:
    """The int8 input each named module receives on ``example``."""
    seen: dict[str, torch.Tensor] = {}

    def recorder(name: str):
        def record(_module, args) -> None:  # returns None: the module's input is left as it is
            seen.setdefault(name, args[0])

        return record

    hooks = [quantized.get_submodule(n).register_forward_pre_hook(recorder(n)) for n in names]
    try:
        with torch.no_grad():
            call(quantized, example)
    finally:
        for h in hooks:
            h.remove()
    return {n: t for n, t in seen.items() if isinstance(t, torch.Tensor) and t.is_quantized
            and t.qscheme() == torch.per_tensor_affine}


def kernel_checks(float_model: nn.Module, quantized: nn.Module, example: torch.Tensor) -> list[dict]:
    """One row per checkable int8 module: RMSE in output steps and SQNR on uniform codes in its input's range."""
    float_modules = dict(float_model.named_modules())
    candidates = {n: twin for n, m in quantized.named_modules() if (twin := _checkable(n, m, float_modules))}
    rows = []
    for name, q_in in _inputs(quantized, list(candidates), example).items():
        codes = q_in.int_repr()
        lo, hi = int(codes.min()), int(codes.max())
        gen = torch.Generator().manual_seed(CHECK_SEED)
        synthetic = torch.randint(lo, hi + 1, tuple(q_in.shape), generator=gen).to(codes.dtype)
        x_q = torch._make_per_tensor_quantized_tensor(synthetic, q_in.q_scale(), q_in.q_zero_point())
        with torch.no_grad():
            out = quantized.get_submodule(name)(x_q)
            ref = candidates[name](x_q.dequantize()).float()
        if not (isinstance(out, torch.Tensor) and out.is_quantized):
            continue
        info = torch.iinfo(out.int_repr().dtype)
        scale, zero = out.q_scale(), out.q_zero_point()
        ref = ref.clamp((info.min - zero) * scale, (info.max - zero) * scale)  # the output range is not on trial
        err = ref - out.dequantize()
        rows.append({"layer_fqn": name, "op_type": type(quantized.get_submodule(name)).__name__,
                     "input_codes_lo": lo, "input_codes_hi": hi, "values": int(err.numel()),
                     "rmse_over_step": float(err.pow(2).mean().sqrt()) / scale,
                     "sqnr_db": sqnr_db(float(ref.double().pow(2).sum()), float(err.double().pow(2).sum()))})
    return rows
