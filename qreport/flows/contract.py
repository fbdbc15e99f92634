"""The flow contract: everything a stage, the pipeline or the fix may ask of a quantization flow.

A flow owns one quantization API (FX graph mode, PT2E, ...). Stages see only this interface and neutral records:
node names of the int8 graph, module paths (``layer_fqn``), op labels, tensor pairs. A flow that cannot run a stage
names it in ``unsupported_stages`` with the reason; the stage is then recorded as skipped.
"""

from __future__ import annotations

import dataclasses
from typing import ContextManager, Iterable, Iterator, Protocol

import torch
from torch import nn

from qreport.config import ModuleOverride


@dataclasses.dataclass
class CalibrationRecord:
    """What a flow saw while calibrating, so that the ranges stage need not run the calibration data again: the
    inputs' names and, per observer (keyed as the flow likes), each input's largest |value|. Only a flow that
    recorded the whole calibration, with the values its ``activation_ranges`` would see, sets ``complete``."""

    names: list[str] = dataclasses.field(default_factory=list)
    maxima: dict[str, list[torch.Tensor]] = dataclasses.field(default_factory=dict)
    complete: bool = False

    def named(self, batches) -> Iterator:
        """The inputs of ``batches`` (``data.Batch``), each batch's names noted as it goes by."""
        for batch in batches:
            self.names.extend(batch.names)
            yield batch.inputs


class Flow(Protocol):
    """What every flow provides (``fx.FxStaticFlow`` is the reference implementation)."""

    name: str  # stored in the manifest, e.g. "fx-static", "pt2e-static"
    unsupported_stages: dict[str, str]  # stage -> why this flow cannot run it
    presets: tuple[str, ...]  # the qconfig presets this flow can build (the remedy ladder tries no other)
    notes: list[str]  # lines the flow's quantization API printed
    target: str  # what the int8 model runs on or was made for ("backend x86"), for progress lines
    alternative: str  # what to try when the int8 model does not run

    # quantization
    def calibrated(self, model: nn.Module, example, batches, observed: nn.Module | None = None,
                   record: CalibrationRecord | None = None) -> nn.Module:
        """A prepared copy of ``model`` whose observers have seen ``batches``; with ``observed`` (a model prepared by
        this flow and calibrated on the same ``batches``) the flow may copy its observer states instead of running
        the batches again, when that gives the same states. A flow that can fills ``record`` as it calibrates."""

    def convert(self, prepared: nn.Module) -> nn.Module:
        """A fresh int8 model from a calibrated prepared model."""

    def running(self) -> ContextManager:
        """What this flow's models need installed while they run (the pipeline enters it around quantizing and the
        stages)."""

    def with_overrides(self, overrides: Iterable[ModuleOverride]) -> "Flow":
        """The same flow with other per-module overrides (the fix re-quantizes with them)."""

    def reference(self, float_model: nn.Module, prepared: nn.Module) -> nn.Module:
        """The model the int8 one is compared with."""

    def reference_note(self, model: nn.Module) -> str:
        """A line for the report when the reference is not simply the float model."""

    # naming
    def node_fqns(self, prepared: nn.Module, quantized: nn.Module) -> dict[str, str]:
        """Int8 graph node name -> the module path it runs in."""

    def module_nodes(self, quantized: nn.Module) -> set[str]:
        """Nodes that are a module's own op (their layer is the module path itself)."""

    def op_label(self, type_name: str) -> str:
        """An op type as the report shows it; int8 ops start with ``quantized.``."""

    def op_types(self, quantized: nn.Module) -> dict[str, str]:
        """Node name -> the type or function it calls."""

    # the views
    def weight_pairs(self, prepared: nn.Module, quantized: nn.Module) -> list[dict]:
        """Matched float and int8 weights: ``layer``, ``layer_fqn``, ``op_type``, ``float_values``, ``quant_values``
        (int8 weights as torch quantized tensors, so their scales are known)."""

    def compare_after(self, quantized: nn.Module) -> dict:
        """Node name -> (activation name, activation) applied to both sides before comparing."""

    def logged_models(self, float_model: nn.Module, prepared: nn.Module, quantized: nn.Module,
                      pairing) -> tuple[nn.Module, nn.Module]:
        """Float and int8 models that hand each layer output to ``pairing.offer(tap, value)``; ``quantized`` (the
        build's int8 model) and ``float_model`` stay as they are."""

    def shadow_model(self, float_model: nn.Module, prepared: nn.Module, quantized: nn.Module,
                     pairing) -> tuple[nn.Module, list[dict]]:
        """The int8 model with each quantized op's float counterpart fed the same input, both outputs to
        ``pairing``; and the ops it could not shadow (``op_type``, ``reason``). ``quantized`` stays as it is."""

    def graph_nodes(self, quantized: nn.Module) -> list[dict]:
        """The int8 graph's ops: ``node``, ``target``, ``runs`` (int8 | int8 pass-through | float), ``inputs``."""

    def module_statuses(self, quantized: nn.Module) -> dict[str, str]:
        """Module path -> quantized | float | fused."""

    def qdq_boundaries(self, quantized: nn.Module) -> int:
        """Quantize and dequantize steps in the int8 graph."""

    def kernel_checks(self, float_model: nn.Module, quantized: nn.Module, example: torch.Tensor) -> list[dict]:
        """Each weight-free int8 kernel run alone on synthetic input inside its calibrated range."""

    def activation_ranges(self, prepared: nn.Module, calibration, evaluation) -> list[dict]:
        """Each calibrated activation range against the calibration inputs that set it and the evaluation data;
        ``calibration`` is the labelled calibration batches or a complete ``CalibrationRecord`` of them."""

    def lowered_models(self, quantized: nn.Module, example, pairing):
        """Where the int8 model is a description that a backend lowers to other kernels: (the int8 model, the lowered
        one, a note), each lowered kernel's output and its counterpart going to ``pairing``; else None."""

    def simulator(self, prepared: nn.Module, quantized: nn.Module, calibration):
        """A simulated int8 model (``ops``, ``weights``, ``observed_ops``, ``configure``, ``outputs``, and
        ``outputs_each`` for many configurations at once) in which any set of ops can be kept float without
        re-quantizing."""
