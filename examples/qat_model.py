"""A small CNN prepared for quantization-aware training, for ``qreport build --mode qat``.

    qreport build --model examples/qat_model.py:qat_cnn --mode qat
    qreport build --model examples/qat_model.py:qat_cnn_unmodelled --mode qat   # a QAT bug qreport localizes

Your own QAT model works the same way: a factory returning ``prepare_qat_fx``'s result, and ``--checkpoint``
the ``state_dict()`` your training saved (``qat_cnn_untrained`` is the architecture such a file loads into).
"""

import copy
import warnings

import torch
from torch import nn

EXAMPLE_SHAPE = (3, 32, 32)


class SmallCNN(nn.Module):
    """Two conv-bn-relu blocks with a residual add, pooling and a classifier: 32×32 images → 10 classes."""

    example_input_shape = EXAMPLE_SHAPE

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.head = nn.Sequential(nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = self.stem(x)
        x = self.head(x + self.block(x))
        return self.fc(torch.flatten(self.pool(x), 1))


def _prepare_and_train(steps: int, unmodelled: str | None = None) -> nn.Module:
    """SmallCNN prepared for QAT (x86 defaults) and trained ``steps`` steps to match its float self on noise.

    With ``unmodelled``, the fake quantization after that module and its observer are off from the start, as when
    a warm-up switches them off and they are never switched back on: QAT never sees that rounding nor measures
    that range, and conversion quantizes with the initial scale of 1.0.
    """
    from torch.ao.quantization import get_default_qat_qconfig_mapping
    from torch.ao.quantization.quantize_fx import prepare_qat_fx

    torch.manual_seed(0)
    model = SmallCNN()
    teacher = copy.deepcopy(model).eval()
    gen = torch.Generator().manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qat = prepare_qat_fx(model.train(), get_default_qat_qconfig_mapping("x86"),
                             (torch.randn(8, *EXAMPLE_SHAPE, generator=gen),))
    if unmodelled:
        for node in qat.graph.nodes:
            if node.op == "call_module" and node.args and getattr(node.args[0], "target", None) == unmodelled:
                qat.get_submodule(node.target).disable_fake_quant()
                qat.get_submodule(node.target).disable_observer()
    opt = torch.optim.SGD(qat.parameters(), lr=0.01, momentum=0.9)
    for _ in range(steps):
        batch = torch.randn(16, *EXAMPLE_SHAPE, generator=gen)
        with torch.no_grad():
            target = teacher(batch)
        loss = nn.functional.mse_loss(qat(batch), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return qat.eval()


def qat_cnn():
    """SmallCNN after 20 steps of quantization-aware training."""
    return _prepare_and_train(20)


def qat_cnn_unmodelled():
    """qat_cnn trained with the fake quantization (and observer) after ``block.0`` switched off."""
    return _prepare_and_train(20, unmodelled="block.0")


def qat_cnn_untrained():
    """SmallCNN just prepared for QAT: the architecture ``--checkpoint qat_state.pt`` loads into."""
    return _prepare_and_train(0)
