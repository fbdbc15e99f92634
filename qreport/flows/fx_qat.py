"""Quantization-aware training (FX): the fake-quant model is the reference, its int8 conversion is compared."""

from __future__ import annotations

import copy

import torch
from torch import nn

from qreport.config import ModuleOverride
from qreport.data import model_args
from qreport.errors import InputError
from qreport.flows.fx import FxStaticFlow, quiet_torch

_RETRAIN = "keeping layers float changes what quantization-aware training learns: retrain with the qconfig"


def is_qat_prepared(model: nn.Module) -> bool:
    """True for a model ``prepare_qat_fx`` already returned (it holds fake-quantize modules)."""
    from torch.ao.quantization import FakeQuantizeBase

    return any(isinstance(m, FakeQuantizeBase) for m in model.modules())


class FxQatFlow(FxStaticFlow):
    """``prepare_qat_fx`` then ``convert_fx``; the frozen fake-quant model is what the int8 model must match.

    A model that is already prepared for QAT (a factory returning ``prepare_qat_fx``'s result, optionally with
    ``--checkpoint`` of its state_dict) is used as it is, fake-quant ranges frozen. Any other model is prepared
    here with the backend's default QAT qconfigs and its fake-quant ranges calibrated (no training).
    """

    name = "fx-qat"
    unsupported_stages = {"sensitivity": _RETRAIN, "fix": _RETRAIN}

    def _qconfig(self, override: ModuleOverride):
        from torch.ao.quantization import default_qat_qconfig, get_default_qat_qconfig

        if override.preset == "float":
            return None
        if override.preset in ("default", "per_channel"):
            return get_default_qat_qconfig(self.backend)
        if override.preset == "per_tensor":
            return default_qat_qconfig
        raise InputError(f"qconfig {override.describe()!r} for {override.module!r} is not available with --mode qat; "
                         "use float, default, per_tensor or per_channel")

    def calibrated(self, model: nn.Module, example, batches, observed: nn.Module | None = None,
                   record=None) -> nn.Module:
        """Calibrated again every time: fake quantization runs while calibrating, so every range depends on the
        whole qconfig and no other model's states can stand in; for the same reason ``record`` stays empty (the
        ranges stage runs the float values itself)."""
        return super().calibrated(model, example, batches)

    def qconfig_mapping(self):
        """The backend's default QAT ``QConfigMapping`` with the per-module overrides applied."""
        from torch.ao.quantization import get_default_qat_qconfig_mapping

        mapping = get_default_qat_qconfig_mapping(self.backend)
        for override in self.overrides:
            mapping.set_module_name(override.module, self._qconfig(override))
        return mapping

    def prepare(self, model: nn.Module, example: torch.Tensor) -> nn.Module:
        """The user's QAT model with its ranges frozen, or the float model prepared for QAT (ranges calibrate)."""
        from torch.ao.quantization import disable_observer

        if not is_qat_prepared(model):
            return super().prepare(model, example)
        if self.overrides or self.non_traceable:
            raise InputError("the model is already prepared for QAT, so --qconfig and --non-traceable cannot change it; "
                             "set them in its QConfigMapping before prepare_qat_fx")
        torch.backends.quantized.engine = self.backend
        prepared = copy.deepcopy(model).eval()
        prepared.apply(disable_observer)
        return prepared

    def _prepare_fx(self, model: nn.Module, example: torch.Tensor, custom) -> nn.Module:
        from torch.ao.quantization.quantize_fx import prepare_qat_fx

        # Prepared in training mode (QAT modules), then evaluated: calibration updates the fake-quant ranges only.
        return prepare_qat_fx(model.train(), self.qconfig_mapping(), model_args(example),
                              prepare_custom_config=custom).eval()

    def weight_pairs(self, prepared: nn.Module, quantized: nn.Module) -> list[dict]:
        """Matched (weight the fake-quant model computes with, int8 weight) pairs, in model order.

        The suite extracts a QAT Conv-BN's latent weight, before BatchNorm folding and fake quantization; the
        fake-quant model convolves with ``weight_fake_quant(weight · γ/σ)``, which is what conversion must keep.
        """
        pairs = super().weight_pairs(prepared, quantized)
        modules = dict(prepared.named_modules())
        for pair in pairs:
            module = modules.get(pair["layer_fqn"])
            if hasattr(module, "weight_fake_quant") and len(pair["float_values"]) == 1:
                pair["float_values"] = [_effective_weight(module)]
        return pairs

    def reference_note(self, model: nn.Module) -> str:
        """Say which fake-quant model every comparison in the report is against."""
        if is_qat_prepared(model):
            return ("QAT: the reference is the model as prepared for quantization-aware training, fake-quant ranges "
                    "frozen; every SQNR measures what converting it to int8 changes")
        return ("QAT: the reference is this model prepared for quantization-aware training by qreport (default QAT "
                "qconfigs, fake-quant ranges calibrated, not trained); every SQNR measures what converting it to int8 "
                "changes")

    def reference(self, float_model: nn.Module, prepared: nn.Module) -> nn.Module:
        """The calibrated fake-quant model with its ranges frozen."""
        from torch.ao.quantization import disable_observer

        with quiet_torch(self.verbose, self.notes):
            frozen = copy.deepcopy(prepared).eval()
        frozen.apply(disable_observer)
        return frozen


@torch.no_grad()
def _effective_weight(module: nn.Module) -> torch.Tensor:
    """A QAT module's weight as its forward uses it: BatchNorm folded (Conv-BN), then fake-quantized."""
    weight = module.weight.detach()
    bn = getattr(module, "bn", None)
    if bn is not None:
        factor = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        weight = weight * factor.reshape([-1] + [1] * (weight.dim() - 1))
    fake_quant = copy.deepcopy(module.weight_fake_quant)
    fake_quant.disable_observer()
    return fake_quant(weight)
