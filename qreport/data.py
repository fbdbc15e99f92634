"""Calibration and evaluation inputs, with labels where the source has them, in batches.

Sources: seeded synthetic tensors, an image folder (class sub-folders or ``labels.csv`` give labels) or a
``torch.save``d file (a tensor, or ``{"inputs": ..., "labels": ...}``).
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from typing import Callable, Iterator

import torch

from qreport.errors import InputError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


Inputs = torch.Tensor | tuple  # one tensor, or a tuple of tensors for a model with several inputs


def model_args(inputs: Inputs) -> tuple:
    """The positional arguments a batch of ``inputs`` is passed to the model as."""
    return inputs if isinstance(inputs, tuple) else (inputs,)


def call(model, inputs: Inputs):
    """Run ``model`` on one batch (several inputs are passed as positional arguments)."""
    return model(*model_args(inputs))


def batch_len(inputs: Inputs) -> int:
    """How many samples a batch holds."""
    return int(model_args(inputs)[0].shape[0])


def take(inputs: Inputs, rows) -> Inputs:
    """The ``rows`` (a slice or index list) of every input of a batch."""
    return tuple(t[rows] for t in inputs) if isinstance(inputs, tuple) else inputs[rows]


def describe_shapes(inputs: Inputs) -> str:
    """``(3, 32, 32)``, or ``(12,) + (12,)`` for two inputs, without the batch dimension."""
    return " + ".join(str(tuple(t.shape[1:])) for t in model_args(inputs))


@dataclasses.dataclass
class Batch:
    """Model inputs with their labels (None when the source has none) and a name per input."""

    inputs: Inputs
    labels: torch.Tensor | None
    names: list[str]


@dataclasses.dataclass
class Split:
    """One re-iterable sequence of input batches (calibration or evaluation); iterating yields model inputs."""

    name: str
    batches: int
    make_batch: Callable[[int], Batch | None]

    def __iter__(self) -> Iterator[torch.Tensor]:
        for batch in self.labelled():
            yield batch.inputs

    def labelled(self) -> Iterator[Batch]:
        """The batches with their labels and input names."""
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
    labels: str = ""  # where the evaluation labels come from ("" when there are none)
    class_names: list[str] = dataclasses.field(default_factory=list)  # class index -> name, where known
    synthetic: bool = False  # calibration inputs are generated noise, not data
    max_label: int | None = None  # the largest class index among the evaluation labels (None: no class labels)
    evaluation_skipped: list[str] = dataclasses.field(default_factory=list)  # a separate --eval-data's skipped files

    def all_skipped(self) -> list[str]:
        """Every unreadable file of both sources, calibration's first, each once."""
        return list(dict.fromkeys(self.skipped_files + self.evaluation_skipped))

    def example(self) -> Inputs:
        """One batch, to trace the model with."""
        for batch in self.calibration:
            return batch
        raise InputError(f"no readable input in {self.description}; check the files or use --data synthetic")


def synthetic(input_shape, batch_size: int, calib_batches: int, eval_batches: int, seed: int,
              vocabulary: int | None = None) -> DataSource:
    """Seeded inputs, reproducible from (seed, split, index): N(0, 1) values, or token ids below ``vocabulary``
    for a model that starts with an embedding."""

    def maker(offset: int, split: str):
        def make(i: int) -> Batch:
            gen = torch.Generator().manual_seed(seed * 1_000_003 + offset + i)
            shape = (batch_size, *input_shape)
            inputs = torch.randint(0, vocabulary, shape, generator=gen) if vocabulary else torch.randn(shape, generator=gen)
            return Batch(inputs, None, [f"{split}-{i * batch_size + k}" for k in range(batch_size)])

        return make

    kind = f"token ids below {vocabulary}" if vocabulary else "N(0, 1) inputs"
    return DataSource(
        description=f"synthetic {kind} of shape {tuple(input_shape)}, seed {seed}",
        calibration=Split("calibration", calib_batches, maker(0, "synthetic-calibration")),
        evaluation=Split("evaluation", eval_batches, maker(500_000, "synthetic-evaluation")),
        synthetic=True,
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


def _labels_csv(root: Path, files: list[Path]) -> tuple[list[Path], list[int]]:
    """Files and labels from ``root/labels.csv`` (rows of file,label; a header row is allowed)."""
    where = root / "labels.csv"
    known = {p.relative_to(root).as_posix(): p for p in files}
    chosen, labels = [], []
    with where.open(newline="", encoding="utf-8") as handle:
        for n, row in enumerate(csv.reader(handle), start=1):
            if not row or not "".join(row).strip():
                continue
            if len(row) != 2:
                raise InputError(f"{where} line {n}: expected file,label; write one image and its class index per line")
            name, label = row[0].strip(), row[1].strip()
            if n == 1 and not label.lstrip("-").isdigit():
                continue  # a header
            if not label.lstrip("-").isdigit() or int(label) < 0:
                raise InputError(f"{where} line {n}: label {label!r} is not a class index (0, 1, 2, …)")
            if name not in known:
                raise InputError(f"{where} line {n}: {name!r} is not an image in {root}; give paths relative to the folder")
            chosen.append(known[name])
            labels.append(int(label))
    if not chosen:
        raise InputError(f"{where} lists no images; write one file,label line per image")
    return chosen, labels


def _class_folders(root: Path, files: list[Path]) -> tuple[list[Path], list[int], list[str]] | None:
    """torchvision ``ImageFolder`` labels (class index = sorted sub-folder order), interleaved class by class so
    calibration sees every class; None when the folder is not laid out that way."""
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(folders) < 2 or any(f.parent != root and f.parent.parent != root for f in files) \
            or any(f.parent == root for f in files):
        return None
    by_class = [[f for f in files if f.parent == folder] for folder in folders]
    for folder, members in zip(folders, by_class):
        if not members:
            raise InputError(f"class folder {folder.name}/ in {root} has no images; remove it or add its images "
                             "(class indices follow the sorted folder names)")
    chosen, labels = [], []
    for k in range(max(len(m) for m in by_class)):
        for label, members in enumerate(by_class):
            if k < len(members):
                chosen.append(members[k])
                labels.append(label)
    return chosen, labels, [f.name for f in folders]


def image_folder(
    root: str, input_shape, transform: Callable | None, batch_size: int, calib_batches: int, eval_batches: int
) -> DataSource:
    """Images from a folder, preprocessed with the weights' transforms; unreadable files are skipped and counted.

    Labels come from ``labels.csv`` (file,label) if the folder has one, else from one sub-folder per class.
    """
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
    labels: list[int] | None = None
    class_names: list[str] = []
    source = ""
    if (path / "labels.csv").is_file():
        files, labels = _labels_csv(path, files)
        source = "labels.csv"
    else:
        folders = _class_folders(path, files)
        if folders:
            files, labels, class_names = folders
            source = f"class folders ({len(class_names)} classes, index = sorted folder name)"
    transform = transform or default_image_transform(input_shape)
    channels = input_shape[0]
    index = list(range(len(files)))
    n_calib = min(len(files), calib_batches * batch_size)
    calib, rest = index[:n_calib], index[n_calib:]
    notes = []
    if len(rest) >= batch_size:
        evaluation = rest[: eval_batches * batch_size]
    else:
        evaluation = index[-min(len(files), eval_batches * batch_size):]
        notes.append(f"only {len(files)} images: evaluation reuses calibration images")
    skipped: list[str] = []

    def loader(chunk: list[int]):
        def make(i: int) -> Batch | None:
            tensors, kept = [], []
            for k in chunk[i * batch_size:(i + 1) * batch_size]:
                try:
                    with Image.open(files[k]) as img:
                        img = img.convert("RGB" if channels == 3 else "L")
                        tensors.append(transform(img))
                        kept.append(k)
                except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
                    if str(files[k]) not in skipped:
                        skipped.append(str(files[k]))
            if not tensors:
                return None
            batch_labels = torch.tensor([labels[k] for k in kept], dtype=torch.int64) if labels is not None else None
            return Batch(torch.stack(tensors), batch_labels, [files[k].relative_to(path).as_posix() for k in kept])

        return make

    def n_batches(chunk):
        return (len(chunk) + batch_size - 1) // batch_size

    return DataSource(
        description=f"image folder {path.name}/ ({len(files)} images)",
        calibration=Split("calibration", n_batches(calib), loader(calib)),
        evaluation=Split("evaluation", n_batches(evaluation), loader(evaluation)),
        notes=notes,
        skipped_files=skipped,
        labels=source,
        class_names=class_names,
        max_label=max(labels) if labels else None,
    )


def _check_tensor(t, path: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor) or t.dim() < 1 or t.shape[0] == 0:
        raise InputError(f"input file {path} must hold a tensor of shape [N, ...] (or {{'inputs': tensor}}, or "
                         "{'inputs': (tensor, tensor, ...)} for a model with several inputs)")
    if t.is_floating_point():
        bad = int((~torch.isfinite(t)).sum())
        if bad:
            raise InputError(f"input file {path} has {bad} NaN/Inf values; clean the inputs first")
    elif t.dtype == torch.bool or t.is_complex():
        raise InputError(f"input file {path} holds {t.dtype} inputs; save float inputs or integer token ids")
    return t


def _tensor_inputs(obj, path: str) -> tuple[Inputs, torch.Tensor | None]:
    """The inputs and labels a ``.pt`` file holds, checked: one-line errors name what is wrong."""
    labels = None
    if isinstance(obj, dict):
        unknown = sorted(set(obj) - {"inputs", "labels", "classes"})
        if unknown or "inputs" not in obj:
            raise InputError(f"input file {path} must hold a tensor or a dict with 'inputs' (and optionally 'labels' "
                             f"and 'classes'); found keys {', '.join(map(repr, sorted(map(str, obj))))}")
        labels = obj.get("labels")
        obj = obj["inputs"]
    if isinstance(obj, (tuple, list)) and obj:
        inputs = tuple(_check_tensor(t, path) for t in obj)
        if len({t.shape[0] for t in inputs}) != 1:
            raise InputError(f"input file {path}: the model's inputs hold different numbers of samples "
                             f"({', '.join(str(t.shape[0]) for t in inputs)}); give each the same first dimension")
    else:
        inputs = _check_tensor(obj, path)
        if inputs.dim() < 2 and inputs.is_floating_point():
            raise InputError(f"input file {path} must hold a tensor of shape [N, ...] (or {{'inputs': tensor}})")
    n = batch_len(inputs)
    if labels is not None:
        if not isinstance(labels, torch.Tensor) or labels.dim() < 1:
            raise InputError(f"input file {path}: 'labels' must be a tensor with one entry per input")
        if labels.shape[0] != n:
            raise InputError(f"input file {path} has {n} inputs but {labels.shape[0]} labels; "
                             "save one label per input")
        if not labels.is_floating_point():
            if labels.dim() != 1:
                raise InputError(f"input file {path}: class labels must be a 1-D tensor of class indices")
            if len(labels) and int(labels.min()) < 0:
                raise InputError(f"input file {path}: label {int(labels.min())} is negative; labels are class "
                                 "indices 0, 1, 2, …")
            labels = labels.to(torch.int64)
        elif not bool(torch.isfinite(labels).all()):
            raise InputError(f"input file {path}: 'labels' has NaN/Inf values; clean the targets first")
    return inputs, labels


def tensor_file(path: str, batch_size: int, calib_batches: int, eval_batches: int) -> DataSource:
    """Inputs saved with ``torch.save`` (a tensor [N, ...] or ``{"inputs": tensor, "labels": tensor}``), read safely.

    Integer inputs (token ids) keep their dtype; labels are class indices (or float targets for ``--metric``).
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"input file {path} does not exist; pass a .pt file of inputs or --data synthetic")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling refused, truncated or not a torch file
        raise InputError(f"input file {path} cannot be read ({exc.__class__.__name__}); save a tensor with torch.save") from None
    inputs, labels = _tensor_inputs(obj, path)
    class_names = obj.get("classes") if isinstance(obj, dict) else None
    if class_names is not None and (not isinstance(class_names, (list, tuple))
                                    or not all(isinstance(c, str) for c in class_names)):
        raise InputError(f"input file {path}: 'classes' must be a list of class names, one per class index")
    n = batch_len(inputs)
    index = torch.arange(n)
    n_calib = min(n, calib_batches * batch_size)
    calib, rest = index[:n_calib], index[n_calib:]
    notes = []
    if rest.shape[0] == 0:
        rest = index[-min(n, eval_batches * batch_size):]
        notes.append(f"only {n} inputs: evaluation reuses calibration inputs")
    evaluation = rest[: eval_batches * batch_size]

    def batches(chosen: torch.Tensor):
        def make(i: int) -> Batch:
            rows = chosen[i * batch_size:(i + 1) * batch_size]
            return Batch(take(inputs, rows), labels[rows] if labels is not None else None, [f"#{int(r)}" for r in rows])

        return make

    def count(t):
        return (t.shape[0] + batch_size - 1) // batch_size

    first = model_args(inputs)[0]
    kind = "" if first.is_floating_point() else f" {str(first.dtype).removeprefix('torch.')}"
    return DataSource(
        description=f"tensor file {p.name} ({n}{kind} inputs of shape {describe_shapes(inputs)}"
                    f"{', labelled' if labels is not None else ''})",
        calibration=Split("calibration", count(calib), batches(calib)),
        evaluation=Split("evaluation", count(evaluation), batches(evaluation)),
        notes=notes,
        labels=f"the file's 'labels' ({'class indices' if not labels.is_floating_point() else 'float targets'})"
        if labels is not None else "",
        max_label=int(labels.max()) if labels is not None and not labels.is_floating_point() else None,
        class_names=list(class_names or []),
    )


def with_evaluation(calibration: DataSource, evaluation: DataSource) -> DataSource:
    """Calibrate on one source and evaluate on another (its labels count); the report names both."""
    return DataSource(
        description=f"calibration: {calibration.description}; evaluation: {evaluation.description}",
        calibration=calibration.calibration,
        evaluation=evaluation.evaluation,
        notes=[n for n in calibration.notes + evaluation.notes if "reuses calibration" not in n],
        skipped_files=calibration.skipped_files,
        evaluation_skipped=evaluation.skipped_files,
        labels=evaluation.labels,
        class_names=evaluation.class_names,
        synthetic=calibration.synthetic,
        max_label=evaluation.max_label,
    )
