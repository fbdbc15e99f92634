"""MTCNN's three face detectors (PNet, RNet, ONet) as face/non-face classifiers, with real pretrained weights.

The layers and their names are those of facenet-pytorch's MTCNN, so its ``pnet.pt``/``rnet.pt``/``onet.pt``
state_dicts load strictly (``examples/real_data.py`` extracts them from the facenet-pytorch wheel). ``forward``
returns only the two face-classification logits before softmax (class 1 = face); the box and landmark heads
stay in the module so the checkpoints load, and ``heads`` returns everything.

    python examples/real_data.py          # writes .cache/real-data/{rnet.pt,lfw_rnet.pt,...}
    qreport build --model examples/mtcnn.py:rnet --checkpoint .cache/real-data/rnet.pt \\
        --data .cache/real-data/lfw_rnet.pt

Inputs are RGB crops scaled as MTCNN expects: ``(pixel - 127.5) * 0.0078125`` for pixels in 0..255.
"""

from __future__ import annotations

import torch
from torch import nn


def _flatten_like_mtcnn(x: torch.Tensor) -> torch.Tensor:
    """Flatten [N, C, H, W] in MTCNN's (W, H, C) order, the order its dense layers were trained on."""
    return torch.flatten(x.permute(0, 3, 2, 1).contiguous(), 1)


class PNet(nn.Module):
    """MTCNN's proposal net on a 12×12 crop: three conv-PReLU layers, then 1×1 conv heads (face logits, box)."""

    example_input_shape = (3, 12, 12)

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, kernel_size=3)
        self.prelu1 = nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, kernel_size=3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, kernel_size=3)
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)
        self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The shared trunk: [N, 32, H', W'] (1×1 for a 12×12 crop)."""
        x = self.pool1(self.prelu1(self.conv1(x)))
        return self.prelu3(self.conv3(self.prelu2(self.conv2(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Face/non-face logits [N, 2] of 12×12 crops."""
        return torch.flatten(self.conv4_1(self.features(x)), 1)

    def heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(face logit map [N, 2, H', W'], box regression map [N, 4, H', W']) on an image of any size."""
        x = self.features(x)
        return self.conv4_1(x), self.conv4_2(x)


class RNet(nn.Module):
    """MTCNN's refinement net on a 24×24 crop: three conv-PReLU layers, a dense layer, face and box heads."""

    example_input_shape = (3, 24, 24)

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, kernel_size=3)
        self.prelu1 = nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(28, 48, kernel_size=3)
        self.prelu2 = nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(48, 64, kernel_size=2)
        self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The shared trunk: [N, 128]."""
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        return self.prelu4(self.dense4(_flatten_like_mtcnn(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Face/non-face logits [N, 2]."""
        return self.dense5_1(self.features(x))

    def heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(face logits [N, 2], box regression [N, 4])."""
        x = self.features(x)
        return self.dense5_1(x), self.dense5_2(x)


class ONet(nn.Module):
    """MTCNN's output net on a 48×48 crop: four conv-PReLU layers, a dense layer, face, box and landmark heads."""

    example_input_shape = (3, 48, 48)

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3)
        self.prelu1 = nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
        self.prelu2 = nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(64, 64, kernel_size=3)
        self.prelu3 = nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4 = nn.Conv2d(64, 128, kernel_size=2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The shared trunk: [N, 256]."""
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        return self.prelu5(self.dense5(_flatten_like_mtcnn(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Face/non-face logits [N, 2]."""
        return self.dense6_1(self.features(x))

    def heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(face logits [N, 2], box regression [N, 4], five landmarks [N, 10])."""
        x = self.features(x)
        return self.dense6_1(x), self.dense6_2(x), self.dense6_3(x)


def _build(cls: type[nn.Module], checkpoint: str | None) -> nn.Module:
    """An eval-mode ``cls``, seeded, with the state_dict at ``checkpoint`` loaded strictly when given."""
    torch.manual_seed(0)
    model = cls().eval()
    if checkpoint is not None:
        model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True), strict=True)
    return model


def pnet(checkpoint: str | None = None) -> PNet:
    """PNet as a 12×12 face classifier (random weights unless ``checkpoint`` names ``pnet.pt``)."""
    return _build(PNet, checkpoint)


def rnet(checkpoint: str | None = None) -> RNet:
    """RNet as a 24×24 face classifier (random weights unless ``checkpoint`` names ``rnet.pt``)."""
    return _build(RNet, checkpoint)


def onet(checkpoint: str | None = None) -> ONet:
    """ONet as a 48×48 face classifier (random weights unless ``checkpoint`` names ``onet.pt``)."""
    return _build(ONet, checkpoint)
