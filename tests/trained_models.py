"""Real trained models and real labelled data for tests, made in the test process (seconds, offline).

- ``digits_split()``: scikit-learn's 8×8 digits, (train, held-out) with a fixed shuffle.
- ``trained_digits_cnn()``: ``examples/digits.py``'s CNN trained on the train split (trained once per process).
- ``write_labelled(path, inputs, labels)``: a ``{"inputs", "labels"}`` file for ``qreport build --data``.
- ``mtcnn(net)``: MTCNN's pnet/rnet/onet with their pretrained weights, or None when the facenet-pytorch
  wheel is neither cached nor downloadable (tests skip then); ``lfw_faces(size)``: the labelled face crops.

The examples are loaded by path; their files are ``examples/digits.py``, ``examples/mtcnn.py`` and
``examples/real_data.py``.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import subprocess
from pathlib import Path

import torch
from filelock import FileLock
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
# Where the facenet-pytorch wheel is kept between runs (QREPORT_REAL_DATA overrides it).
REAL_DATA = Path(os.environ.get("QREPORT_REAL_DATA", ROOT / ".cache" / "real-data"))


@functools.cache
def example(name: str):
    """The module ``examples/<name>.py``, imported by path once per process."""
    spec = importlib.util.spec_from_file_location(f"qreport_examples_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.cache
def digits_split() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(train 1200, held-out 597) dicts of {"inputs" [N,1,8,8] in 0..1, "labels" int64}, fixed shuffle."""
    return example("real_data").digits_split()


@functools.cache
def _trained_digits_state_dict() -> dict[str, torch.Tensor]:
    """The state_dict of the digits CNN trained on ``digits_split()``'s train split (the shipped recipe)."""
    return example("real_data").trained_digits_state_dict(digits_split()[0])


def trained_digits_cnn() -> nn.Module:
    """A fresh eval-mode digits CNN with the weights trained once per process (callers may modify it)."""
    model = example("digits").digits_cnn()
    model.load_state_dict(_trained_digits_state_dict(), strict=True)
    return model


@functools.cache
def _trained_digits_vit_state_dict() -> dict[str, torch.Tensor]:
    return example("real_data").trained_digits_vit_state_dict(digits_split()[0])


def write_digits_vit(folder: Path) -> Path:
    """The trained digits transformer's checkpoint in ``folder`` (trained once per process, about 6 s)."""
    path = Path(folder) / "digits_vit.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(_trained_digits_vit_state_dict(), path)
    return path


def write_labelled(path: Path, inputs: torch.Tensor, labels: torch.Tensor) -> Path:
    """Save ``{"inputs": float32, "labels": int64}`` at ``path`` (the labelled-data file ``--data`` reads)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"inputs": inputs.float().contiguous(), "labels": labels.long().contiguous()}, path)
    return path


def write_digits_cnn(folder: Path) -> tuple[Path, Path]:
    """The trained digits CNN's checkpoint and its held-out labelled data in ``folder``: (checkpoint, data)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint = folder / "digits_cnn.pt"
    torch.save(_trained_digits_state_dict(), checkpoint)
    held_out = digits_split()[1]
    return checkpoint, write_labelled(folder / "digits.pt", held_out["inputs"], held_out["labels"])


@functools.cache
def facenet_wheel() -> Path | None:
    """The facenet-pytorch wheel (cached under REAL_DATA/wheels, fetched by pip once), or None if unavailable."""
    folder = REAL_DATA / "wheels"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with FileLock(folder / ".fetch.lock"):  # test processes running side by side fetch it once
            return example("real_data").facenet_wheel(folder)
    except (OSError, subprocess.CalledProcessError):
        return None


def mtcnn_state_dict(net: str) -> dict[str, torch.Tensor] | None:
    """MTCNN's pretrained state_dict for "pnet", "rnet" or "onet", or None when the wheel is unavailable."""
    wheel = facenet_wheel()
    return None if wheel is None else example("real_data").mtcnn_state_dict(wheel, net)


def mtcnn(net: str) -> nn.Module | None:
    """``examples/mtcnn.py``'s ``net`` classifier with its pretrained weights, or None when they are unavailable."""
    state_dict = mtcnn_state_dict(net)
    if state_dict is None:
        return None
    model = getattr(example("mtcnn"), net)()
    model.load_state_dict(state_dict, strict=True)
    return model


@functools.cache
def lfw_faces(size: int) -> dict[str, torch.Tensor]:
    """scikit-image's lfw_subset as MTCNN crops of ``size``×``size``: {"inputs" [200,3,S,S], "labels"}, 1 = face."""
    return example("real_data").lfw_faces(size)
