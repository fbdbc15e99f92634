"""PyTorch's own quantization test models as user models (``--model tests/torch_test_models.py:<Name>``).

The set: every float ``nn.Module`` in ``torch.testing._internal.common_quantization`` (no QuantStub, no
qconfig set: those are eager-mode models) that takes one tensor input, builds without arguments and says
its input through ``get_example_inputs()``. Each is exported here under its class name, seeded, so a build
is reproducible; ``input_shape(name)`` gives its ``--input-shape``.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn
from torch.ao.quantization import DeQuantStub, QuantStub
from torch.testing._internal import common_quantization as _cq


def _simple_constructor(cls) -> bool:
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    return all(p.default is not inspect.Parameter.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
               for p in params)


def _single_input(cls) -> bool:
    return len(inspect.signature(cls.forward).parameters) == 2  # self, x


def _is_float_model(module: nn.Module) -> bool:
    return not any(isinstance(m, (QuantStub, DeQuantStub)) or getattr(m, "qconfig", None) is not None
                   for m in module.modules())


def _select() -> dict[str, type]:
    chosen = {}
    for name, cls in sorted(vars(_cq).items()):
        if not (inspect.isclass(cls) and issubclass(cls, nn.Module) and cls.__module__ == _cq.__name__):
            continue
        if "get_example_inputs" not in vars(cls) or not _simple_constructor(cls) or not _single_input(cls):
            continue
        if _is_float_model(cls()):
            chosen[name] = cls
    return chosen


MODELS = _select()


def _factory(cls):
    def build() -> nn.Module:
        torch.manual_seed(0)
        return cls().eval()

    build.__name__ = build.__qualname__ = cls.__name__
    build.__doc__ = f"{cls.__name__} from torch.testing._internal.common_quantization, seeded."
    return build


def input_shape(name: str) -> str:
    """The model's example input shape without the batch dimension, as ``--input-shape`` takes it."""
    (example,) = MODELS[name]().get_example_inputs()
    return ",".join(str(d) for d in example.shape[1:])


globals().update({name: _factory(cls) for name, cls in MODELS.items()})
