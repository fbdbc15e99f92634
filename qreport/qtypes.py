"""The torch types qreport's rules are written against, each rule in one place (stages, flows and the MAC
count import them; the renderer and metrics.py stay free of torch and do not)."""

from __future__ import annotations

import torch
from torch import nn

# The integers each quantized dtype holds.
INT_RANGE = {torch.quint8: (0, 255), torch.qint8: (-128, 127), torch.qint32: (-(2**31), 2**31 - 1)}

# The 8-bit dtypes of quantized activations (qint32 only ever holds biases and accumulators).
INT8_DTYPES = (torch.quint8, torch.qint8)

# The Conv/Linear modules whose weights the simulator swaps and whose inputs and MACs qreport measures
# (with isinstance, so their QAT subclasses too; ConvTranspose is none of them).
WEIGHTED_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
