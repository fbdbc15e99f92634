"""Real trained models and real labelled data, written to a folder for sample reports and tests (offline after once).

    python examples/real_data.py [FOLDER]       # default: .cache/real-data/ in the repository

writes, skipping files that already exist (each written under a temporary name, then renamed):

- ``pnet.pt``, ``rnet.pt``, ``onet.pt``: MTCNN's pretrained state_dicts, read from the facenet-pytorch 2.6.0 wheel
  (``pip download`` into ``FOLDER/wheels/`` when it is not there; nothing of the package is installed).
  They load strictly into ``examples/mtcnn.py``'s ``pnet()``, ``rnet()``, ``onet()``.
- ``lfw_rnet.pt``, ``lfw_onet.pt``: scikit-image's ``lfw_subset`` (100 faces, 100 non-faces, 25×25 grey) resized
  to 24×24 / 48×48, grey copied to 3 channels, scaled as MTCNN expects, shuffled with a fixed seed:
  ``{"inputs": float32 [200, 3, S, S], "labels": int64 [200]}``, label 1 = face.
- ``digits.pt`` (held-out 597 images) and ``digits_train.pt`` (the other 1200): scikit-learn's ``load_digits``
  shuffled with a fixed seed, ``{"inputs": float32 [N, 1, 8, 8] in 0..1, "labels": int64 [N]}``.
- ``digits_cnn.pt``: the state_dict of ``examples/digits.py``'s ``digits_cnn()`` trained on ``digits_train.pt``.
- ``digits_vit.pt``: the same for ``digits_vit()``, a small vision transformer (about 95 % held-out accuracy).
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F

DEFAULT_FOLDER = Path(__file__).resolve().parent.parent / ".cache" / "real-data"
FACENET_WHEEL = "facenet_pytorch-2.6.0-py3-none-any.whl"
FACENET_REQUIREMENT = "facenet-pytorch==2.6.0"
MTCNN_NETS = ("pnet", "rnet", "onet")
LFW_SIZES = {"rnet": 24, "onet": 48}
SEED = 0
DIGITS_EVAL = 597
DIGITS_EPOCHS = 20
VIT_EPOCHS, VIT_LR = 30, 0.003  # the digits transformer

LFW_CLASSES = ("non-face", "face")  # label 0, label 1
Split = dict[str, torch.Tensor]  # {"inputs": float32 [N, ...], "labels": int64 [N]}


def load_example(name: str):
    """Import ``examples/<name>.py`` by path (the examples folder is not a package)."""
    path = Path(__file__).resolve().with_name(f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"qreport_examples_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def facenet_wheel(folder: Path) -> Path:
    """The facenet-pytorch wheel in ``folder``, fetched there with ``pip download --no-deps`` if missing."""
    wheel = folder / FACENET_WHEEL
    if not wheel.exists():
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
                        "--retries", "2", "--timeout", "30", FACENET_REQUIREMENT, "-d", str(folder)], check=True)
    return wheel


def mtcnn_state_dict(wheel: Path, net: str) -> dict[str, torch.Tensor]:
    """The pretrained state_dict of ``net`` ("pnet", "rnet" or "onet") read out of the facenet-pytorch wheel."""
    with zipfile.ZipFile(wheel) as archive:
        raw = archive.read(f"facenet_pytorch/data/{net}.pt")
    return torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)


def lfw_faces(size: int, seed: int = SEED) -> Split:
    """lfw_subset at ``size``×``size``, 3 channels, MTCNN scaling, fixed shuffle: {"inputs", "labels"} (1 = face)."""
    from skimage import data

    grey = torch.from_numpy(data.lfw_subset()).float().unsqueeze(1)  # [200, 1, 25, 25] in 0..1
    labels = torch.cat([torch.ones(100), torch.zeros(100)]).long()
    # "area" is the resampling facenet-pytorch's detector applies to its crops.
    images = F.interpolate(grey, size=(size, size), mode="area").repeat(1, 3, 1, 1)
    inputs = (images * 255.0 - 127.5) * 0.0078125
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    return {"inputs": inputs[order].contiguous(), "labels": labels[order].contiguous()}


def digits_split(seed: int = SEED, n_eval: int = DIGITS_EVAL) -> tuple[Split, Split]:
    """scikit-learn's digits, fixed shuffle: (train, held-out), each {"inputs" [N,1,8,8] in 0..1, "labels"}."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    inputs = torch.from_numpy(digits.images).float().unsqueeze(1) / 16.0
    labels = torch.from_numpy(digits.target).long()
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    inputs, labels = inputs[order].contiguous(), labels[order].contiguous()
    cut = len(labels) - n_eval
    return ({"inputs": inputs[:cut].clone(), "labels": labels[:cut].clone()},
            {"inputs": inputs[cut:].clone(), "labels": labels[cut:].clone()})


def trained_digits_state_dict(train_split: Split, seed: int = SEED,
                              epochs: int = DIGITS_EPOCHS) -> dict[str, torch.Tensor]:
    """The state_dict of ``digits_cnn()`` trained deterministically on ``train_split``."""
    digits = load_example("digits")
    model = digits.train(digits.digits_cnn(), train_split["inputs"], train_split["labels"], epochs=epochs, seed=seed)
    return model.state_dict()


def trained_digits_vit_state_dict(train_split: Split, seed: int = SEED) -> dict[str, torch.Tensor]:
    """The state_dict of ``digits_vit()`` trained deterministically on ``train_split`` (30 epochs, Adam 3e-3)."""
    digits = load_example("digits")
    return digits.train(digits.digits_vit(), train_split["inputs"], train_split["labels"], epochs=VIT_EPOCHS,
                        seed=seed, lr=VIT_LR).state_dict()


def save_atomic(obj, path: Path) -> None:
    """``torch.save`` to a temporary name beside ``path``, then rename it into place (same object, same bytes)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)  # saved to memory, the archive's inner folder is "archive/", not the temporary name
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(buffer.getvalue())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_real_data(folder: Path = DEFAULT_FOLDER, log=print) -> dict[str, Path]:
    """Write every file this module describes into ``folder`` (existing ones are kept); returns name → path."""
    folder = Path(folder)
    paths: dict[str, Path] = {}

    def produce(name: str, make) -> None:
        path = folder / name
        paths[name] = path
        if path.exists():
            log(f"kept    {path}")
            return
        save_atomic(make(), path)
        log(f"wrote   {path}")

    for net in MTCNN_NETS:
        produce(f"{net}.pt", lambda net=net: mtcnn_state_dict(facenet_wheel(folder / "wheels"), net))
    for net, size in LFW_SIZES.items():
        produce(f"lfw_{net}.pt", lambda size=size: {**lfw_faces(size), "classes": list(LFW_CLASSES)})
    split = functools.cache(digits_split)  # made only when a digits file is missing
    produce("digits_train.pt", lambda: split()[0])
    produce("digits.pt", lambda: split()[1])
    produce("digits_cnn.pt", lambda: trained_digits_state_dict(split()[0]))
    produce("digits_vit.pt", lambda: trained_digits_vit_state_dict(split()[0]))
    return paths


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python examples/real_data.py [FOLDER]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", default=str(DEFAULT_FOLDER),
                        help=f"where to write the files (default {DEFAULT_FOLDER})")
    args = parser.parse_args(argv)
    write_real_data(Path(args.folder))
    return 0


if __name__ == "__main__":
    sys.exit(main())
