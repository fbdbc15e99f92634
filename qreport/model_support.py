"""The recorded model walk: which torchvision classifiers build, at what size, and why the others do not."""

from __future__ import annotations

import json
from importlib import resources


def recorded_support() -> dict:
    """The walk shipped with this version: torch/torchvision versions, settings, one row per model."""
    return json.loads(resources.files("qreport").joinpath("model_support.json").read_text(encoding="utf-8"))
