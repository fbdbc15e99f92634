"""Quantization flows: the only place qreport talks to a quantization API.

A flow prepares, calibrates and converts a model and instruments reference/quantized pairs for the
comparison stages. ``fx.FxStaticFlow`` wraps ``torch.ao.quantization`` FX graph mode and the FX
Numeric Suite; ``FxDynamicFlow`` and ``fx_qat.FxQatFlow`` vary it; another flow (for example PT2E) can
provide the same methods.
"""

from qreport.flows.fx import FxDynamicFlow, FxStaticFlow, quiet_torch
from qreport.flows.fx_qat import FxQatFlow

FLOWS = {"static": FxStaticFlow, "dynamic": FxDynamicFlow, "qat": FxQatFlow}

__all__ = ["FLOWS", "FxDynamicFlow", "FxQatFlow", "FxStaticFlow", "quiet_torch"]
