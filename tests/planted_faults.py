"""The trained digits CNN with one planted quantization fault each, for diagnosis tests (``--model`` factories and
data writers). Model faults keep the float function: only the int8 model suffers."""

from __future__ import annotations

from pathlib import Path

import torch

from trained_models import digits_split, trained_digits_cnn, write_labelled

OUTLIER_CHANNEL = 5  # the conv3 output channel made large (and fc's input channel 5)
OUTLIER_SCALE = 40.0


def digits_clean():
    """The trained digits CNN as it is."""
    return trained_digits_cnn()


def digits_outlier_channel():
    """conv3's output channel 5 is 40× larger, fc's weights for it 40× smaller: the same function in float, but
    fc's per-tensor input scale now spans one channel 40× the rest."""
    model = trained_digits_cnn()
    with torch.no_grad():
        model.bn3.weight[OUTLIER_CHANNEL] *= OUTLIER_SCALE
        model.bn3.bias[OUTLIER_CHANNEL] *= OUTLIER_SCALE
        model.fc.weight[:, OUTLIER_CHANNEL] /= OUTLIER_SCALE
    return model


def write_calibration_fault(folder: Path, fault: str) -> tuple[Path, Path]:
    """(calibration .pt, evaluation .pt) from the digits splits, the calibration data broken by ``fault``:
    ``outlier_image`` (one image left at 0..255 instead of 0..1), ``dim`` (every image at a quarter of its
    brightness, so calibration misses the evaluation range) or ``none``."""
    train, held_out = digits_split()
    inputs = train["inputs"][:256].clone()
    if fault == "outlier_image":
        inputs[7] *= 255.0
    elif fault == "dim":
        inputs *= 0.25
    elif fault != "none":
        raise ValueError(fault)
    folder = Path(folder)
    return (write_labelled(folder / f"calibration_{fault}.pt", inputs, train["labels"][:256]),
            write_labelled(folder / "evaluation.pt", held_out["inputs"], held_out["labels"]))
