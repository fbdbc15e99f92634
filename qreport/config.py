"""What a build is asked to do: frozen dataclasses, defaults, and the qconfig TOML file."""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import tomllib
from pathlib import Path

from qreport.errors import InputError, first_line

BACKENDS = ("x86", "qnnpack")

# Named qconfigs a module can be given in a qconfig file: what each does, and its activation and weight observer
# ("backend": the backend's default one; None: kept float). The flow and the guidance's code text both read this.
QCONFIG_PRESETS = {
    "float": ("keep the module in float (not quantized)", None, None),
    "default": ("the backend's default qconfig (per-channel weights on x86)", "backend", "backend"),
    "per_tensor": ("MinMax activations, per-tensor MinMax weights (torch's default_qconfig)", "minmax", "per_tensor"),
    "per_channel": ("the backend's default activation observer, per-channel MinMax weights", "backend", "per_channel"),
    "histogram": ("histogram activations, per-channel MinMax weights", "histogram", "per_channel"),
    "bias_correct": ("the backend's default qconfig, with empirical bias correction: the mean error the int8 layer "
                     "adds per output channel on the calibration data is folded into its bias (Conv/Linear)",
                     "backend", "backend"),
    "equalize": ("the backend's default qconfig, with input-weight equalization: the layer's input channels are "
                 "scaled into its weights (Conv/Linear)", "backend", "backend"),
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

    def observers(self) -> tuple[str | None, str | None]:
        """(activation, weight) observer names; "backend" for the backend's default, (None, None) for float."""
        if self.preset:
            return QCONFIG_PRESETS[self.preset][1:]
        return self.activation, self.weight


@dataclasses.dataclass(frozen=True)
class BuildConfig:
    """Everything that determines a build's numbers; the manifest stores it whole."""

    model: str = "mobilenet_v2"
    weights: str = "auto"
    checkpoint: str | None = None
    backend: str = "x86"
    activation_observer: str | None = None  # every activation observer the backend's default sets (None: keep it)
    qconfig_file: str | None = None
    overrides: tuple[ModuleOverride, ...] = ()
    data: str = "synthetic"
    eval_data: str | None = None  # a separate evaluation source; None: split --data
    non_traceable: tuple[str, ...] = ()  # module paths or class names kept out of FX tracing (and float)
    calib_batches: int = 4
    eval_batches: int = 4
    batch_size: int = 8
    input_shape: tuple[int, ...] | None = None
    seed: int = 0
    mode: str = "static"
    flow: str = "fx"  # fx (FX graph mode) or pt2e (torch.export + torchao)
    quantizer: str = "x86"  # the PT2E quantizer: x86, arm or xnnpack
    weight_bits: int = 8  # --mode weight-only under --flow pt2e: int8, or int4 in groups
    thresholds: tuple[tuple[str, float], ...] = ()  # guidance thresholds overridden by the qconfig file
    target_sqnr: float = 30.0  # output SQNR the greedy float set and the remedy ladder aim for (dB)
    target_accuracy_drop: float | None = None  # with labels, the ladder's goal instead: at most this many points lost
    sensitivity_images: int = 4  # evaluation images each simulated sensitivity pass runs
    sensitivity_layers: int | None = None  # measure only this many layers, the lowest isolated SQNR first
    metric: str | None = None  # pkg.module:function or file.py:function, (outputs, labels) -> float, higher is better

    def to_dict(self) -> dict:
        """The config as plain JSON-able data."""
        d = dataclasses.asdict(self)
        d["overrides"] = [dataclasses.asdict(o) for o in self.overrides]
        d["thresholds"] = dict(self.thresholds)
        d["input_shape"] = list(self.input_shape) if self.input_shape else None
        if self.activation_observer is None:  # runs with the backend's observers keep their fingerprint
            del d["activation_observer"]
        if self.flow == "fx":  # FX runs keep the config (and fingerprint) they had before PT2E existed
            del d["flow"], d["quantizer"], d["weight_bits"]
        elif self.mode == "static":
            del d["weight_bits"]
        else:  # torchao's quantize_ takes no quantizer
            del d["quantizer"]
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


def _parse_thresholds(table, where: str) -> tuple[tuple[str, float], ...]:
    from qreport.guidance import Thresholds

    known = {f.name: f.type for f in dataclasses.fields(Thresholds)}
    if not isinstance(table, dict):
        raise InputError(f"{where}: 'thresholds' must be a table of name = number")
    pairs = []
    for name, value in table.items():
        if name not in known:
            raise InputError(f"{where}: unknown threshold {name!r}{_suggest(name, known)}; use one of {', '.join(known)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value < 0:
            raise InputError(f"{where}: threshold {name!r} must be a non-negative number, not {value!r}")
        pairs.append((name, float(value)))
    return tuple(pairs)


def parse_qconfig_document(text: str, where: str = "qconfig"):
    """Parse a qconfig TOML document: per-module overrides (file order) and guidance thresholds."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{where}: not valid TOML ({first_line(exc)}); fix the syntax and run again") from None
    unknown = sorted(set(doc) - {"modules", "thresholds"})
    if unknown:
        raise InputError(f"{where}: unknown section [{unknown[0]}]; the file takes [modules] and [thresholds] tables")
    modules = doc.get("modules", {})
    if not isinstance(modules, dict):
        raise InputError(f"{where}: 'modules' must be a table of module path = qconfig")
    overrides = tuple(_parse_override(name, value, where) for name, value in modules.items())
    return overrides, _parse_thresholds(doc.get("thresholds", {}), where)


def parse_qconfig_text(text: str, where: str = "qconfig") -> tuple[ModuleOverride, ...]:
    """Parse a qconfig TOML document into per-module overrides, in file order."""
    return parse_qconfig_document(text, where)[0]


def load_qconfig_file(path: str):
    """Read and parse a qconfig TOML file into (overrides, thresholds), with one-line errors."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"qconfig file {path} does not exist; check the --qconfig path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"qconfig file {path} cannot be read ({exc.__class__.__name__}); pass a UTF-8 TOML file") from None
    return parse_qconfig_document(text, where=str(path))


def render_qconfig_toml(overrides, thresholds=()) -> str:
    """Write overrides (and thresholds) back as a qconfig TOML document that ``--qconfig`` accepts."""
    lines = ["[modules]"]
    for o in overrides:
        key = json.dumps(o.module)
        if o.preset:
            lines.append(f"{key} = {json.dumps(o.preset)}")
        else:
            lines.append(f"{key} = {{ activation = {json.dumps(o.activation)}, weight = {json.dumps(o.weight)} }}")
    if thresholds:
        lines += ["", "[thresholds]"] + [f"{name} = {value!r}" for name, value in thresholds]
    return "\n".join(lines) + "\n"
