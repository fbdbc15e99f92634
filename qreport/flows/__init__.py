"""Quantization flows: the only place qreport talks to a quantization API (the contract: ``contract.Flow``).

``fx.FxStaticFlow`` wraps ``torch.ao.quantization`` FX graph mode and the FX Numeric Suite; ``FxDynamicFlow`` and
``fx_qat.FxQatFlow`` vary it; ``pt2e.Pt2eStaticFlow`` quantizes through ``torch.export`` and torchao's quantizers.
"""

from qreport.errors import InputError
from qreport.flows.contract import CalibrationRecord
from qreport.flows.fx import FxDynamicFlow, FxStaticFlow, quiet_torch
from qreport.flows.fx_qat import FxQatFlow

FLOWS = {"static": FxStaticFlow, "dynamic": FxDynamicFlow, "qat": FxQatFlow}


def make_flow(cfg, verbose: bool = False):
    """The flow a build config asks for (``--flow``, ``--mode``, ``--backend``/``--quantizer``)."""
    if cfg.flow == "pt2e":
        if cfg.activation_observer:
            raise InputError("--activation-observer sets FX's observers; PT2E's quantizer picks its own: drop it, "
                             "or build with --flow fx")
        if cfg.mode in ("weight-only", "dynamic"):
            from qreport.flows.torchao_linear import TorchaoLinearFlow

            return TorchaoLinearFlow(cfg.mode, cfg.weight_bits, cfg.overrides, verbose=verbose)
        if cfg.mode != "static":
            raise InputError(f"--flow pt2e runs static, weight-only or dynamic quantization; --mode {cfg.mode} needs "
                             "--flow fx")
        from qreport.flows.pt2e import Pt2eStaticFlow

        return Pt2eStaticFlow(cfg.quantizer, cfg.overrides, verbose=verbose, non_traceable=cfg.non_traceable)
    if cfg.mode not in FLOWS:
        raise InputError(f"--mode {cfg.mode} quantizes with torchao: add --flow pt2e")
    if cfg.activation_observer and cfg.mode != "static":
        raise InputError("--activation-observer sets the observers of static builds; drop it for --mode "
                         f"{cfg.mode}")
    return FLOWS[cfg.mode](cfg.backend, cfg.overrides, verbose=verbose, non_traceable=cfg.non_traceable,
                           activation_observer=cfg.activation_observer)


__all__ = ["FLOWS", "CalibrationRecord", "FxDynamicFlow", "FxQatFlow", "FxStaticFlow", "make_flow", "quiet_torch"]
