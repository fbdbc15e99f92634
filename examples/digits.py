"""A small CNN for scikit-learn's 8×8 handwritten digits, and the deterministic training loop that fits it.

    python examples/real_data.py          # writes .cache/real-data/{digits_cnn.pt,digits.pt,digits_train.pt}
    qreport build --model examples/digits.py:digits_cnn --checkpoint .cache/real-data/digits_cnn.pt \\
        --data .cache/real-data/digits_train.pt --eval-data .cache/real-data/digits.pt

Inputs are [N, 1, 8, 8] grey levels scaled to 0..1 (scikit-learn's 0..16 divided by 16).
"""

from __future__ import annotations

import torch
from torch import nn


class DigitsCNN(nn.Module):
    """conv-bn-relu ×2 at 8×8, conv-bn-relu at 4×4, average pool, linear: 1×8×8 digit images → 10 classes."""

    example_input_shape = (1, 8, 8)

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(32)
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv2d(32, 32, 3, stride=2, padding=1)
        self.bn3 = nn.BatchNorm2d(32)
        self.relu3 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits [N, 10]."""
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        x = self.relu3(self.bn3(self.conv3(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def digits_cnn(checkpoint: str | None = None) -> DigitsCNN:
    """An eval-mode DigitsCNN, seeded, with the state_dict at ``checkpoint`` loaded strictly when given."""
    torch.manual_seed(0)
    model = DigitsCNN().eval()
    if checkpoint is not None:
        model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True), strict=True)
    return model


class DigitsViT(nn.Module):
    """A small vision transformer: 2×2 patches of the 8×8 digit (16 tokens), a class token, two encoder layers of
    width 32 with 4 heads, and a linear head. Linear-heavy, for ``--flow pt2e --mode weight-only|dynamic``."""

    example_input_shape = (1, 8, 8)

    def __init__(self, width: int = 32, layers: int = 2, heads: int = 4):
        super().__init__()
        self.patch = nn.Linear(4, width)
        self.cls = nn.Parameter(torch.zeros(1, 1, width))
        self.position = nn.Parameter(torch.zeros(1, 17, width))
        layer = nn.TransformerEncoderLayer(width, heads, dim_feedforward=2 * width, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits [N, 10]."""
        patches = x.reshape(-1, 1, 4, 2, 4, 2).permute(0, 2, 4, 1, 3, 5).reshape(-1, 16, 4)
        tokens = torch.cat([self.cls.expand(x.shape[0], -1, -1), self.patch(patches)], dim=1) + self.position
        return self.head(self.norm(self.encoder(tokens)[:, 0]))


def digits_vit(checkpoint: str | None = None) -> DigitsViT:
    """An eval-mode DigitsViT, seeded, with the state_dict at ``checkpoint`` loaded strictly when given."""
    torch.manual_seed(0)
    model = DigitsViT().eval()
    if checkpoint is not None:
        model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True), strict=True)
    return model


def train(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, epochs: int = 20, seed: int = 0,
          batch_size: int = 64, lr: float = 0.01) -> nn.Module:
    """Fit ``model`` in place (Adam, cross-entropy) on one thread, so the weights are bit-reproducible; eval mode."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        order = torch.Generator().manual_seed(seed)
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        loss_fn = nn.CrossEntropyLoss()
        model.train()
        for _ in range(epochs):
            for batch in torch.randperm(len(inputs), generator=order).split(batch_size):
                optimizer.zero_grad()
                loss_fn(model(inputs[batch]), labels[batch]).backward()
                optimizer.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy of ``model`` on ``inputs`` (fraction in 0..1)."""
    return (model(inputs).argmax(1) == labels).float().mean().item()
