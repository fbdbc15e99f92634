"""What a build is asked to do: frozen dataclasses, defaults, and the qconfig TOML file."""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import tomllib
from pathlib import Path

from qreport.errors import InputError

BACKENDS = ("x86", "qnnpack")

# Named qconfigs a module can be given in a qconfig file. "default" is the backend's default.
QCONFIG_PRESETS = {
    "float": "keep the module in float (not quantized)",
    "default": "the backend's default qconfig (per-channel weights on x86)",
    "per_tensor": "MinMax activations, per-tensor MinMax weights (torch's default_qconfig)",
    "per_channel": "the backend's default activation observer, per-channel MinMax weights",
    "histogram": "histogram activations, per-channel MinMax weights",
}
ACTIVATION_OBSERVERS = ("minmax", "moving_average", "histogram")
WEIGHT_OBSERVERS = ("per_tensor", "per_channel")


@dataclasses.dataclass(frozen=True)
class ModuleOverride:
    """One module's qconfig: a preset name, or an activation and a weight observer."""

    module: str
    preset: str | None = None
    activation: str | None = None
    weight: str | None = None

    def describe(self) -> str:
        """A short human-readable form, e.g. ``float`` or ``activation=histogram, weight=per_tensor``."""
        if self.preset:
            return self.preset
        return f"activation={self.activation}, weight={self.weight}"


@dataclasses.dataclass(frozen=True)
class BuildConfig:
    """Everything that determines a build's numbers; the manifest stores it whole."""

    model: str = "mobilenet_v2"
    weights: str = "auto"
    checkpoint: str | None = None
    backend: str = "x86"
    qconfig_file: str | None = None
    overrides: tuple[ModuleOverride, ...] = ()
    data: str = "synthetic"
    calib_batches: int = 4
    eval_batches: int = 4
    batch_size: int = 8
    input_shape: tuple[int, ...] | None = None
    seed: int = 0
    mode: str = "static"
    target_sqnr: float = 30.0  # output SQNR the greedy float set aims for (dB)
    sensitivity_images: int = 4  # evaluation images each simulated sensitivity pass runs

    def to_dict(self) -> dict:
        """The config as plain JSON-able data."""
        d = dataclasses.asdict(self)
        d["overrides"] = [dataclasses.asdict(o) for o in self.overrides]
        d["input_shape"] = list(self.input_shape) if self.input_shape else None
        return d

    def fingerprint(self) -> str:
        """A short stable hash of the config, for telling runs apart."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def _suggest(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=3)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


def _parse_override(module: str, value, where: str) -> ModuleOverride:
    if isinstance(value, str):
        if value not in QCONFIG_PRESETS:
            raise InputError(
                f"{where}: unknown qconfig {value!r} for module {module!r}{_suggest(value, QCONFIG_PRESETS)}; "
                f"use one of {', '.join(QCONFIG_PRESETS)}"
            )
        return ModuleOverride(module=module, preset=value)
    if isinstance(value, dict):
        unknown = sorted(set(value) - {"activation", "weight"})
        if unknown:
            raise InputError(
                f"{where}: module {module!r} has unknown key {unknown[0]!r}; a table takes 'activation' and 'weight'"
            )
        activation = value.get("activation", "minmax")
        weight = value.get("weight", "per_channel")
        if activation not in ACTIVATION_OBSERVERS:
            raise InputError(
                f"{where}: unknown activation observer {activation!r} for {module!r}"
                f"{_suggest(str(activation), ACTIVATION_OBSERVERS)}; use one of {', '.join(ACTIVATION_OBSERVERS)}"
            )
        if weight not in WEIGHT_OBSERVERS:
            raise InputError(
                f"{where}: unknown weight observer {weight!r} for {module!r}"
                f"{_suggest(str(weight), WEIGHT_OBSERVERS)}; use one of {', '.join(WEIGHT_OBSERVERS)}"
            )
        return ModuleOverride(module=module, activation=activation, weight=weight)
    raise InputError(f"{where}: module {module!r} must map to a qconfig name or a table, not {type(value).__name__}")


def parse_qconfig_text(text: str, where: str = "qconfig") -> tuple[ModuleOverride, ...]:
    """Parse a qconfig TOML document into per-module overrides, in file order."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{where}: not valid TOML ({exc}); fix the syntax and run again") from None
    unknown = sorted(set(doc) - {"modules"})
    if unknown:
        raise InputError(f"{where}: unknown section [{unknown[0]}]; the file takes a [modules] table")
    modules = doc.get("modules", {})
    if not isinstance(modules, dict):
        raise InputError(f"{where}: 'modules' must be a table of module path = qconfig")
    return tuple(_parse_override(name, value, where) for name, value in modules.items())


def load_qconfig_file(path: str) -> tuple[ModuleOverride, ...]:
    """Read and parse a qconfig TOML file, with one-line errors for unreadable files."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"qconfig file {path} does not exist; check the --qconfig path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"qconfig file {path} cannot be read ({exc.__class__.__name__}); pass a UTF-8 TOML file") from None
    return parse_qconfig_text(text, where=str(path))


def render_qconfig_toml(overrides) -> str:
    """Write overrides back as a qconfig TOML document that ``--qconfig`` accepts."""
    lines = ["[modules]"]
    for o in overrides:
        key = json.dumps(o.module)
        if o.preset:
            lines.append(f"{key} = {json.dumps(o.preset)}")
        else:
            lines.append(f"{key} = {{ activation = {json.dumps(o.activation)}, weight = {json.dumps(o.weight)} }}")
    return "\n".join(lines) + "\n"
