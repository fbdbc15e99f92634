"""Calibration and evaluation inputs: seeded synthetic tensors or an image folder, in batches."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Iterator

import torch

from qreport.errors import InputError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass
class Split:
    """One re-iterable sequence of input batches (calibration or evaluation)."""

    name: str
    batches: int
    make_batch: Callable[[int], torch.Tensor | None]

    def __iter__(self) -> Iterator[torch.Tensor]:
        for i in range(self.batches):
            batch = self.make_batch(i)
            if batch is not None:
                yield batch

    def __len__(self) -> int:
        return self.batches


@dataclasses.dataclass
class DataSource:
    """Calibration and evaluation splits plus what the report says about them."""

    description: str
    calibration: Split
    evaluation: Split
    notes: list[str] = dataclasses.field(default_factory=list)
    skipped_files: list[str] = dataclasses.field(default_factory=list)

    def example(self) -> torch.Tensor:
        """One batch, to trace the model with."""
        for batch in self.calibration:
            return batch
        raise InputError(f"no readable input in {self.description}; check the files or use --data synthetic")


def synthetic(input_shape, batch_size: int, calib_batches: int, eval_batches: int, seed: int) -> DataSource:
    """Seeded standard-normal inputs; every batch is reproducible from (seed, split, index)."""

    def maker(offset: int):
        def make(i: int) -> torch.Tensor:
            gen = torch.Generator().manual_seed(seed * 1_000_003 + offset + i)
            return torch.randn((batch_size, *input_shape), generator=gen)

        return make

    return DataSource(
        description=f"synthetic N(0, 1) inputs of shape {tuple(input_shape)}, seed {seed}",
        calibration=Split("calibration", calib_batches, maker(0)),
        evaluation=Split("evaluation", eval_batches, maker(500_000)),
    )


def default_image_transform(input_shape) -> Callable:
    """Resize, centre-crop, to-tensor and ImageNet normalisation for an image of ``input_shape``."""
    from torchvision import transforms as T

    size = int(input_shape[-1])
    steps = [T.Resize(max(size, int(round(size * 256 / 224)))), T.CenterCrop(size), T.ToTensor()]
    if input_shape[0] == 3:
        steps.append(T.Normalize(IMAGENET_MEAN, IMAGENET_STD))
    return T.Compose(steps)


def image_files(root: Path) -> list[Path]:
    """Image files under ``root`` (class sub-folders or flat), sorted by relative path."""
    return sorted((p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES), key=str)


def image_folder(
    root: str, input_shape, transform: Callable | None, batch_size: int, calib_batches: int, eval_batches: int
) -> DataSource:
    """Images from a folder, preprocessed with the weights' transforms; unreadable files are skipped and counted."""
    from PIL import Image, UnidentifiedImageError

    path = Path(root)
    if not path.is_dir():
        raise InputError(f"data folder {root} does not exist; pass an image folder or --data synthetic")
    try:
        files = image_files(path)
    except PermissionError:
        raise InputError(f"data folder {root} cannot be read (permission denied); check its permissions") from None
    if not files:
        raise InputError(
            f"data folder {root} has no image files ({', '.join(sorted(IMAGE_SUFFIXES))}); "
            "point --data at a folder of images or use --data synthetic"
        )
    transform = transform or default_image_transform(input_shape)
    channels = input_shape[0]
    n_calib = min(len(files), calib_batches * batch_size)
    calib_files = files[:n_calib]
    rest = files[n_calib:]
    notes = []
    if len(rest) >= batch_size:
        eval_files = rest[: eval_batches * batch_size]
    else:
        eval_files = files[-min(len(files), eval_batches * batch_size):]
        notes.append(f"only {len(files)} images: evaluation reuses calibration images")
    skipped: list[str] = []

    def loader(chunk: list[Path]):
        def make(i: int) -> torch.Tensor | None:
            tensors = []
            for f in chunk[i * batch_size:(i + 1) * batch_size]:
                try:
                    with Image.open(f) as img:
                        img = img.convert("RGB" if channels == 3 else "L")
                        tensors.append(transform(img))
                except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
                    if str(f) not in skipped:
                        skipped.append(str(f))
            return torch.stack(tensors) if tensors else None

        return make

    def n_batches(chunk):
        return (len(chunk) + batch_size - 1) // batch_size

    return DataSource(
        description=f"image folder {path.name}/ ({len(files)} images)",
        calibration=Split("calibration", n_batches(calib_files), loader(calib_files)),
        evaluation=Split("evaluation", n_batches(eval_files), loader(eval_files)),
        notes=notes,
        skipped_files=skipped,
    )


def tensor_file(path: str, batch_size: int, calib_batches: int, eval_batches: int) -> DataSource:
    """Inputs saved with ``torch.save`` (a tensor of shape [N, ...], or ``{"inputs": tensor}``), read safely."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"input file {path} does not exist; pass a .pt file of inputs or --data synthetic")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling refused, truncated or not a torch file
        raise InputError(f"input file {path} cannot be read ({exc.__class__.__name__}); save a tensor with torch.save") from None
    if isinstance(obj, dict):
        obj = obj.get("inputs")
    if not isinstance(obj, torch.Tensor) or obj.dim() < 2 or obj.shape[0] == 0:
        raise InputError(f"input file {path} must hold a tensor of shape [N, ...] (or {{'inputs': tensor}})")
    if not obj.is_floating_point():
        obj = obj.float()
    bad = int((~torch.isfinite(obj)).sum())
    if bad:
        raise InputError(f"input file {path} has {bad} NaN/Inf values; clean the inputs first")
    n = obj.shape[0]
    n_calib = min(n, calib_batches * batch_size)
    calib, rest = obj[:n_calib], obj[n_calib:]
    notes = []
    if rest.shape[0] == 0:
        rest = obj[-min(n, eval_batches * batch_size):]
        notes.append(f"only {n} inputs: evaluation reuses calibration inputs")
    evaluation = rest[: eval_batches * batch_size]

    def batches(t: torch.Tensor):
        return lambda i: t[i * batch_size:(i + 1) * batch_size]

    def count(t):
        return (t.shape[0] + batch_size - 1) // batch_size

    return DataSource(
        description=f"tensor file {p.name} ({n} inputs of shape {tuple(obj.shape[1:])})",
        calibration=Split("calibration", count(calib), batches(calib)),
        evaluation=Split("evaluation", count(evaluation), batches(evaluation)),
        notes=notes,
    )


def with_evaluation(calibration: DataSource, evaluation: DataSource) -> DataSource:
    """Calibrate on one source and evaluate on another; the report names both."""
    return DataSource(
        description=f"calibration: {calibration.description}; evaluation: {evaluation.description}",
        calibration=calibration.calibration,
        evaluation=evaluation.evaluation,
        notes=[n for n in calibration.notes + evaluation.notes if "reuses calibration" not in n],
        skipped_files=calibration.skipped_files,
    )
