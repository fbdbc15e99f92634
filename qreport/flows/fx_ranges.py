"""Calibrated activation ranges against the data: which calibration images set each range, and how much of the
evaluation data falls outside it. Runs a float copy of the calibrated model whose observers only record; the
calibration images' maxima can instead be noted while calibrating (``recording``), saving a pass over them."""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

from qreport.flows.contract import CalibrationRecord
from qreport.flows.copies import sharing_weights
from qreport.data import call
from qreport.streaming import count_outside


def _input_maxima(x) -> torch.Tensor | None:
    """The largest |value| of each input (row) of an activation; None for what an observer would not record."""
    if not (isinstance(x, torch.Tensor) and x.is_floating_point() and x.numel()):
        return None
    v = x.detach()
    flat = v.reshape(v.shape[0], -1) if v.dim() > 1 else v.reshape(1, -1)
    low, high = torch.aminmax(flat, dim=1)  # one pass, no |x| temporary
    return torch.maximum(low.neg(), high)


class _RangeRecorder(nn.Module):
    """Stands in for one observer: records per-image |max| (calibration) or values outside a range (evaluation)."""

    def __init__(self, lo: float, hi: float, scale: float, fake_quant_off: bool):
        super().__init__()
        self.lo, self.hi, self.scale = lo, hi, scale
        self.per_image: list[float] = []
        self.outside = self.total = 0
        self.eval_min, self.eval_max = math.inf, -math.inf
        self.mode = "calibration"
        self.fake_quant_off = fake_quant_off  # QAT: the fake quantization here was switched off

    def forward(self, x):
        if not (isinstance(x, torch.Tensor) and x.is_floating_point() and x.numel()):
            return x
        v = x.detach()
        if self.mode == "calibration":
            self.per_image.extend(_input_maxima(v).tolist())
        else:
            low, high = (float(t) for t in torch.aminmax(v))
            if low < self.lo or high > self.hi:  # counted only where some value is outside
                self.outside += count_outside(v, self.lo, self.hi)
            self.total += v.numel()
            self.eval_min, self.eval_max = min(self.eval_min, low), max(self.eval_max, high)
        return x


def _representable(observer) -> tuple[float, float, float] | None:
    """The float range the observer's int8 qparams can hold (on x86 the calibrated range maps to 7 bits), and the
    scale."""
    try:
        scale, zero_point = observer.calculate_qparams()
    except Exception:  # an observer that saw nothing
        return None
    if scale.numel() != 1 or getattr(observer, "is_dynamic", False):
        return None
    qmin, qmax = observer.quant_min, observer.quant_max
    if qmin is None or qmax is None or not math.isfinite(float(scale)):
        return None
    s, z = float(scale), int(zero_point)
    return (qmin - z - 0.5) * s, (qmax - z + 0.5) * s, s  # a value within half a step of the edge only rounds


def _observer_calls(model: nn.Module) -> list[tuple[torch.fx.Node, nn.Module]]:
    """The graph's observer (or fake-quantize) calls, in graph order, which is the order they run in."""
    from torch.ao.quantization.fake_quantize import FakeQuantizeBase
    from torch.ao.quantization.observer import ObserverBase

    return [(node, model.get_submodule(node.target)) for node in model.graph.nodes if node.op == "call_module"
            and isinstance(model.get_submodule(node.target), (ObserverBase, FakeQuantizeBase))]


def _call_places(calls) -> dict[torch.fx.Node, tuple[str, int, int]]:
    """Per observer call: (the module path of the observer's first call, which of its calls this is, how many it
    has). One observer module can be registered under several paths and called at several places (ops that share
    their input's range), so calls are grouped by the module object."""
    by_module: dict[int, list[torch.fx.Node]] = {}
    for node, module in calls:
        by_module.setdefault(id(module), []).append(node)
    return {node: (nodes[0].target, place, len(nodes)) for nodes in by_module.values()
            for place, node in enumerate(nodes)}


@contextlib.contextmanager
def recording(prepared: nn.Module, record: CalibrationRecord):
    """While it lasts, each call of an observer of ``prepared`` adds the per-input |max| it sees (or None) to
    ``record.maxima[path of the observer's first call]``: k entries per batch for one called at k places, in graph
    order, which is the order they run in."""
    handles = []
    places = _call_places(_observer_calls(prepared))
    modules = {key: prepared.get_submodule(key) for key, place, _ in places.values() if place == 0}
    for key, module in modules.items():
        calls = record.maxima.setdefault(key, [])
        handles.append(module.register_forward_pre_hook(
            lambda _, args, calls=calls: calls.append(_input_maxima(args[0]) if args else None)))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _recorded_maxima(record: CalibrationRecord, key: str, place: int, places: int) -> list[float]:
    """The per-input maxima one observer call saw while calibrating (the ``place``-th of its observer's ``places``
    calls); only the values recorded, so a call that saw no float tensor comes out short."""
    entries = [e for e in record.maxima.get(key, [])[place::places] if e is not None]
    return torch.cat(entries).tolist() if entries else []


def activation_ranges(prepared: nn.Module, calibration, evaluation) -> list[dict]:
    """Per observed activation: its calibrated range, the range int8 can represent, the calibration image with the
    largest |value| and how far above the median image it is, and the share of evaluation values outside.

    ``calibration`` yields ``data.Batch`` (inputs and input names), or is the complete ``CalibrationRecord`` of
    them; ``evaluation`` yields ``data.Batch``."""
    from torch.ao.quantization.fake_quantize import FakeQuantizeBase

    recorded = calibration if isinstance(calibration, CalibrationRecord) else None
    if recorded is not None and not recorded.complete:
        raise ValueError("the calibration record is incomplete; pass the calibration batches instead")
    model = sharing_weights(prepared).eval()
    calls = _observer_calls(model)
    places = _call_places(calls)
    recorders: dict[str, tuple[_RangeRecorder, object, str]] = {}
    for node, observer in calls:
        fake_quant_off = False
        if isinstance(observer, FakeQuantizeBase):  # QAT: the fake-quant module and the observer inside it
            fake_quant_off = not bool(observer.fake_quant_enabled[0])
            inner = getattr(observer, "activation_post_process", None)
            span = _representable(observer) if inner is not None else None
            observer = inner
        else:
            span = _representable(observer)
        if observer is None or not hasattr(observer, "min_val"):
            continue
        producer = node.args[0] if node.args and isinstance(node.args[0], torch.fx.Node) else None
        if span is None or producer is None or producer.name in recorders:
            continue  # shared observers (ReLU6 shares its input's) are recorded once, at the producer
        recorder = _RangeRecorder(*span, fake_quant_off)
        if recorded is not None:
            recorder.per_image = _recorded_maxima(recorded, *places[node])
            recorder.mode = "evaluation"
        name = f"qreport_range_{node.name}"
        model.add_submodule(name, recorder)
        node.target = name
        recorders[producer.name] = (recorder, observer, producer.op)
    model.recompile()
    names: list[str] = list(recorded.names) if recorded is not None else []
    with torch.no_grad():
        if recorded is None:
            for batch in calibration:
                names.extend(batch.names)
                call(model, batch.inputs)
        for recorder, _, _ in recorders.values():
            recorder.mode = "evaluation"
        for batch in evaluation:
            call(model, batch.inputs)
    rows = []
    for layer, (rec, observer, op) in recorders.items():
        if not rec.per_image or len(rec.per_image) != len(names):
            continue
        per_image = torch.tensor(rec.per_image, dtype=torch.float64)
        top = int(per_image.argmax())
        median = float(per_image.median())
        rows.append({
            "layer": "input" if op == "placeholder" else layer,
            "cal_min": float(observer.min_val), "cal_max": float(observer.max_val),
            "qrange_lo": rec.lo, "qrange_hi": rec.hi, "scale": rec.scale,
            "eval_min": rec.eval_min if rec.total else math.nan, "eval_max": rec.eval_max if rec.total else math.nan,
            "eval_outside_fraction": rec.outside / rec.total if rec.total else math.nan,
            "calibration_images": len(names), "top_image": names[top],
            "top_image_ratio": float(per_image[top]) / median if median > 0 else math.inf,
            "never_observed": not math.isfinite(float(observer.min_val)), "fake_quant_off": rec.fake_quant_off,
        })
    return rows
