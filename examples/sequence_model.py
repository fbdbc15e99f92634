"""A small sequence classifier for dynamic quantization: an LSTM over feature sequences, then two Linear layers.

    qreport build --model examples/sequence_model.py:lstm_classifier --mode dynamic
"""

import torch
from torch import nn


class LSTMClassifier(nn.Module):
    """Sequences of 16 steps × 32 features → 10 classes."""

    example_input_shape = (16, 32)

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(32, 64, batch_first=True)
        self.fc1 = nn.Linear(64, 64)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.fc2(self.relu(self.fc1(out[:, -1])))


def lstm_classifier():
    """The classifier with seeded random weights."""
    torch.manual_seed(0)
    return LSTMClassifier()
