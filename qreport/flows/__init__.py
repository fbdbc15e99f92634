"""Quantization flows: the only place qreport talks to a quantization API.

A flow prepares, calibrates and converts a model and instruments float/quantized pairs for the
comparison stages. ``fx.FxStaticFlow`` wraps ``torch.ao.quantization`` FX graph mode and the FX
Numeric Suite; another flow (for example PT2E) can provide the same methods.
"""

from qreport.flows.fx import FLOWS, FxDynamicFlow, FxStaticFlow, quiet_torch

__all__ = ["FLOWS", "FxDynamicFlow", "FxStaticFlow", "quiet_torch"]
