"""Load the float model: torchvision names, ``pkg.module:factory``, checkpoints, and weights."""

from __future__ import annotations

import copy
import dataclasses
import difflib
import importlib
import importlib.util
import pickle
import re
import sys
import zipfile
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from qreport.data import batch_len, call, model_args
from qreport.errors import InputError

DEFAULT_IMAGE_SHAPE = (3, 224, 224)


@dataclasses.dataclass
class LoadedModel:
    """A float model in eval mode and where it and its weights came from."""

    module: nn.Module
    name: str
    source: str  # e.g. "torchvision.models.quantization.mobilenet_v2"
    weights_source: str  # human-readable provenance of the weights
    weights_trained: bool  # False when the weights are a random initialisation
    input_shape: tuple[int, ...]
    transforms: Callable | None = None
    weights_note: str = ""  # why pretrained weights are missing, if they are


def torchvision_classifiers() -> list[str]:
    """Every torchvision classification model name, sorted."""
    import torchvision.models as tvm

    return sorted(tvm.list_models(module=tvm))


def quantizable_names() -> list[str]:
    """Model names torchvision also ships as quantizable variants."""
    import torchvision.models as tvm
    import torchvision.models.quantization as tvq

    return sorted(n.removeprefix("quantized_") for n in tvm.list_models(module=tvq))


def _quantizable_builder(name: str) -> Callable | None:
    """torchvision's quantizable variant of ``name`` (fused Conv+ReLU, QuantStubs), if it has one."""
    import torchvision.models.quantization as tvq

    return getattr(tvq, name) if name in quantizable_names() else None


def _resolve_weights(name: str, weights: str):
    """The torchvision weights enum member for ``--weights`` (None for random init)."""
    import torchvision.models as tvm

    if weights == "none":
        return None
    enum = tvm.get_model_weights(name)
    if weights == "auto":
        return enum.DEFAULT
    member = weights.split(".", 1)[1] if weights.startswith(enum.__name__ + ".") else weights
    if member not in enum.__members__:
        choices = ", ".join(enum.__members__)
        raise InputError(f"unknown weights {weights!r} for {name}; use auto, none or one of: {choices}")
    return enum[member]


def _build_torchvision(name: str, weights) -> tuple[nn.Module, str]:
    import torchvision.models as tvm

    builder = _quantizable_builder(name)
    if builder is not None:
        return builder(weights=weights, quantize=False), f"torchvision.models.quantization.{name}"
    return tvm.get_model(name, weights=weights), f"torchvision.models.{name}"


def _load_torchvision(name: str, weights: str) -> LoadedModel:
    known = torchvision_classifiers()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise InputError(f"unknown model {name!r}; {hint}run 'qreport models' for the list, or pass pkg.module:factory")
    member = _resolve_weights(name, weights)
    note = ""
    if member is not None:
        try:
            module, source = _build_torchvision(name, member)
        except (OSError, RuntimeError, ValueError) as exc:  # URLError is an OSError
            filename = member.url.rsplit("/", 1)[-1]
            hub = Path(torch.hub.get_dir()) / "checkpoints" / filename
            if weights != "auto":
                raise InputError(
                    f"cannot load {member} ({exc.__class__.__name__}); place {filename} at {hub} or use --weights none"
                ) from None
            note = f"pretrained {member} could not be loaded ({exc.__class__.__name__}); place {filename} at {hub}"
            member = None
        else:
            crop = getattr(member.transforms(), "crop_size", [DEFAULT_IMAGE_SHAPE[1]])
            return LoadedModel(
                module=module.eval(),
                name=name,
                source=source,
                weights_source=f"{member} (pretrained)",
                weights_trained=True,
                input_shape=(3, int(crop[0]), int(crop[0])),
                transforms=member.transforms(),
            )
    module, source = _build_torchvision(name, None)
    return LoadedModel(
        module=module.eval(),
        name=name,
        source=source,
        weights_source="random initialisation",
        weights_trained=False,
        input_shape=DEFAULT_IMAGE_SHAPE,
        weights_note=note,
    )


def _import_factory(spec: str, what: str = "model", returns: str = "an nn.Module") -> Callable:
    target, _, attr = spec.rpartition(":")
    if not target or not attr or not attr.isidentifier():
        raise InputError(f"{what} {spec!r} is not of the form pkg.module:function or path/to/file.py:function")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise InputError(f"{what} file {target} does not exist; check the path before ':{attr}'")
        mod_name = f"qreport_user_model_{abs(hash(str(path.resolve())))}"
        spec_obj = importlib.util.spec_from_file_location(mod_name, path)
        module = importlib.util.module_from_spec(spec_obj)
        sys.modules[mod_name] = module
        try:
            spec_obj.loader.exec_module(module)
        except Exception as exc:
            raise InputError(f"importing {target} failed: {exc.__class__.__name__}: {exc}") from None
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise InputError(f"cannot import module {target!r} ({exc}); check it is on PYTHONPATH") from None
        except Exception as exc:
            raise InputError(f"importing {target} failed: {exc.__class__.__name__}: {exc}") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise InputError(f"{target} has no callable {attr!r}; name a function or class that returns {returns}")
    return factory


def load_metric(spec: str) -> Callable:
    """The ``--metric`` callable: ``(outputs, labels) -> float``, higher is better."""
    return _import_factory(spec, what="metric", returns="a float from (outputs, labels)")


def _load_factory(spec: str) -> LoadedModel:
    factory = _import_factory(spec)
    try:
        module = factory()
    except Exception as exc:
        raise InputError(f"model factory {spec} raised {exc.__class__.__name__}: {exc}") from None
    if not isinstance(module, nn.Module):
        raise InputError(f"model factory {spec} returned {type(module).__name__}, not a torch.nn.Module")
    shape = getattr(module, "example_input_shape", None)
    return LoadedModel(
        module=module.eval(),
        name=spec.rpartition(":")[2],
        source=spec,
        weights_source="as returned by the factory",
        weights_trained=True,
        input_shape=tuple(shape) if shape else DEFAULT_IMAGE_SHAPE,
    )


def _unwrap_state_dict(obj) -> dict:
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise InputError("checkpoint is not a state_dict (a dict of tensors); save model.state_dict() instead")
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def load_checkpoint(model: nn.Module, path: str) -> None:
    """Load a state_dict file into ``model`` with ``weights_only=True``; one-line errors on any mismatch."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"checkpoint {path} does not exist; check the --checkpoint path")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        blocked = re.search(r"unsupported GLOBAL (\S+)", str(exc), flags=re.IGNORECASE)
        if blocked:
            raise InputError(
                f"checkpoint {path} was refused by weights_only=True loading (it references {blocked.group(1)}); "
                "it may contain code: save a plain state_dict"
            ) from None
        raise InputError(
            f"checkpoint {path} cannot be read (not a torch.save file, or corrupt); check the --checkpoint path"
        ) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as exc:
        raise InputError(
            f"checkpoint {path} cannot be read ({exc.__class__.__name__}); is it truncated or not a torch.save file?"
        ) from None
    state = _unwrap_state_dict(obj)
    result = model.load_state_dict(state, strict=False)
    problems = []
    if result.missing_keys:
        problems.append(f"missing {', '.join(result.missing_keys[:3])}")
    if result.unexpected_keys:
        problems.append(f"unexpected {', '.join(result.unexpected_keys[:3])}")
    if problems:
        raise InputError(f"checkpoint {path} does not match the model ({'; '.join(problems)}); is it for another architecture?")


def load_model(name: str, weights: str = "auto", checkpoint: str | None = None) -> LoadedModel:
    """Build the float model named on the command line, with its weights, in eval mode."""
    loaded = _load_factory(name) if ":" in name else _load_torchvision(name, weights)
    if checkpoint:
        try:
            load_checkpoint(loaded.module, checkpoint)
        except RuntimeError as exc:  # shape mismatches
            first = str(exc).strip().splitlines()
            detail = next((line.strip() for line in first if "size mismatch" in line), first[0] if first else "")
            raise InputError(
                f"checkpoint {checkpoint} does not match the model ({detail[:200]}); is it for another architecture?"
            ) from None
        loaded.weights_source = f"checkpoint {Path(checkpoint).name}"
        loaded.weights_trained = True
        loaded.weights_note = ""
    return loaded


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches) -> int:
    """Re-estimate BatchNorm running statistics on ``batches`` (cumulative average); returns the BN count.

    Batches of one input are merged into one batch, since training-mode BatchNorm needs more than one value per
    channel; if even that is a single input, the statistics are left as they were and 0 is returned.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    batches = list(batches)
    if not norms or not batches:
        return 0
    if any(batch_len(x) < 2 for x in batches):
        batches = [tuple(torch.cat(parts) for parts in zip(*map(model_args, batches)))]
        batches = [batches[0] if len(batches[0]) > 1 else batches[0][0]]
        if batch_len(batches[0]) < 2:
            return 0
    saved = {m: (m.momentum, copy.deepcopy(m.state_dict())) for m in norms}
    model.eval()  # only the BatchNorms train: no dropout, no training-only branches (inception's aux head)
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    try:
        for x in batches:
            call(model, x)
    except BaseException:
        for m, (_, state) in saved.items():
            m.load_state_dict(state)
        raise
    finally:
        for m, (momentum, _) in saved.items():
            m.momentum = momentum
        model.eval()
    return len(norms)
