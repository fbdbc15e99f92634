"""Per-layer running statistics of float-vs-quantized tensors; memory does not grow with batches."""

from __future__ import annotations

import collections
import math
from typing import Callable

import torch

from qreport.metrics import cosine, sqnr_db
from qreport.qtypes import INT_RANGE

HIST_BINS = 64
HIST_SAMPLE = 1 << 16  # histograms count a fixed stride of each batch: at most ~65k values per batch
FLOAT_NAME = "fp32"  # the side a logged value comes from: the float (reference) model
QUANT_NAME = "int8"  # or the quantized model

def _quant_range(q: torch.Tensor) -> tuple[float, int, float, float]:
    """Scale, zero point and the float range a per-tensor quantized tensor can represent."""
    scale = float(q.q_scale())
    zero_point = int(q.q_zero_point())
    lo, hi = INT_RANGE.get(q.dtype, INT_RANGE[torch.qint32])
    return scale, zero_point, scale * (lo - zero_point), scale * (hi - zero_point)


def _flat(t: torch.Tensor) -> torch.Tensor:
    """All elements as 1-D, without a copy for contiguous and channels-last tensors (order not preserved)."""
    if t.is_contiguous():
        return t.view(-1)
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last):
        return t.permute(0, 2, 3, 1).reshape(-1)
    return t.reshape(-1)


def count_outside(t: torch.Tensor, lo: float, hi: float) -> int:
    """How many values of ``t`` lie below ``lo`` or above ``hi`` (count_nonzero: a bool ``sum`` widens every value
    to int64 first, 3× slower on a 38 MB activation)."""
    return int(torch.count_nonzero((t < lo).logical_or_(t > hi)))


def _same_layout(q: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``q`` in the memory layout of ``like`` (contiguous or channels-last), so elementwise work between them runs
    over plain memory and every result flattens without a copy."""
    if like.is_contiguous():
        return q.contiguous()
    if like.dim() == 4 and like.is_contiguous(memory_format=torch.channels_last):
        return q.contiguous(memory_format=torch.channels_last)
    return q


def _energies(f: torch.Tensor, q: torch.Tensor, err: torch.Tensor) -> list[float]:
    """Σf², Σq², Σerr² in one call; layout-agnostic (vector norms need no flattening)."""
    norms = torch.stack([torch.linalg.vector_norm(t) for t in (f, q, err)]).double()
    return (norms * norms).tolist()


class LayerStats:
    """Folds (float, quantized) tensor pairs of one layer into pooled sums and fixed-bin histograms."""

    def __init__(self) -> None:
        self.batches = 0
        self.numel = 0
        self.signal = 0.0  # sum of float^2
        self.noise = 0.0  # sum of (float - quant)^2
        self.dot = 0.0  # sum of float * quant
        self.quant_sq = 0.0  # sum of quant^2
        self.max_abs_err = 0.0
        self.float_min = math.inf
        self.float_max = -math.inf
        self.quant_min = math.inf
        self.quant_max = -math.inf
        self.scale = math.nan
        self.zero_point = 0
        self.range_lo = math.nan  # float range the quantized dtype can represent
        self.range_hi = math.nan
        self.clipped = 0
        self.nonfinite = 0
        self.hist_lo = math.nan
        self.hist_hi = math.nan
        self.range_mean = 0.0  # Welford running mean and M2 of the per-batch float range (max − min)
        self.range_m2 = 0.0
        self.hist_float: torch.Tensor | None = None  # HIST_BINS + 2 counts: underflow, bins, overflow
        self.hist_quant: torch.Tensor | None = None

    def update(self, reference: torch.Tensor, quantized: torch.Tensor, transform: Callable | None = None) -> None:
        """Fold one batch: ``reference`` is the float model's tensor, ``quantized`` the int8 model's.

        ``transform`` (an activation) is applied to both sides after dequantizing, before comparing.
        """
        if reference.is_quantized:
            reference = reference.dequantize()
        if quantized.is_quantized:
            if quantized.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
                self.scale, self.zero_point, self.range_lo, self.range_hi = _quant_range(quantized)
            if quantized.shape == reference.shape:  # re-laid out in int8: a quarter of the bytes of doing it after
                quantized = _same_layout(quantized, reference)
            quantized = quantized.dequantize()
        if transform is not None:
            reference, quantized = transform(reference), transform(quantized)
        f = reference.detach().float()
        q = quantized.detach().float()
        if f.shape != q.shape:
            raise ValueError(f"shape mismatch: float {tuple(reference.shape)} vs quantized {tuple(quantized.shape)}")
        q = _same_layout(q, f)
        err = f - q
        sums = _energies(f, q, err)
        if not all(math.isfinite(v) for v in sums):  # NaN/Inf on either side: count them, compare the rest
            finite = torch.isfinite(f) & torch.isfinite(q)
            self.nonfinite += int(finite.numel() - finite.sum())
            f, q, err = f[finite], q[finite], err[finite]
            sums = _energies(f.double(), q.double(), err.double())
        self.batches += 1
        self.numel += int(f.numel())
        if f.numel() == 0:
            return
        # float32 elementwise work (torch's reductions are blocked, so accurate enough), float64 running totals
        ff, qq, ee = sums
        self.signal += ff
        self.noise += ee
        self.quant_sq += qq
        self.dot += (ff + qq - ee) / 2.0  # f·q, from the three energies already taken
        f_flat, q_flat = _flat(f), _flat(q)  # aminmax copies a channels-last tensor to contiguous; a flat view not
        e_min, e_max = torch.aminmax(_flat(err))
        f_min, f_max = torch.aminmax(f_flat)
        q_min, q_max = torch.aminmax(q_flat)
        e_min, e_max, f_min, f_max, q_min, q_max = torch.stack([e_min, e_max, f_min, f_max, q_min, q_max]).tolist()
        self.max_abs_err = max(self.max_abs_err, -e_min, e_max)
        self.float_min, self.float_max = min(self.float_min, f_min), max(self.float_max, f_max)
        delta = (f_max - f_min) - self.range_mean
        self.range_mean += delta / self.batches
        self.range_m2 += delta * ((f_max - f_min) - self.range_mean)
        self.quant_min, self.quant_max = min(self.quant_min, q_min), max(self.quant_max, q_max)
        if not math.isnan(self.range_lo) and (f_min < self.range_lo or f_max > self.range_hi):
            self.clipped += count_outside(f, self.range_lo, self.range_hi)
        if self.hist_float is None:
            self._start_histograms(min(f_min, q_min), max(f_max, q_max))
        stride = max(1, f.numel() // HIST_SAMPLE)
        self.hist_float += self._histogram(f_flat[::stride])
        self.hist_quant += self._histogram(q_flat[::stride])

    def _start_histograms(self, lo: float, hi: float) -> None:
        """Fix the bin edges from the first batch (and the int8 range); later outliers land in the end bins."""
        if not math.isnan(self.range_lo):
            lo, hi = min(lo, self.range_lo), max(hi, self.range_hi)
        pad = 0.05 * (hi - lo) if hi > lo else max(abs(hi), 1.0) * 0.05
        self.hist_lo, self.hist_hi = lo - pad, hi + pad
        self.hist_float = torch.zeros(HIST_BINS + 2, dtype=torch.int64)
        self.hist_quant = torch.zeros(HIST_BINS + 2, dtype=torch.int64)

    def _histogram(self, values: torch.Tensor) -> torch.Tensor:
        """Counts in HIST_BINS bins plus an underflow and an overflow bin."""
        width = (self.hist_hi - self.hist_lo) / HIST_BINS
        lo, hi = self.hist_lo - width, self.hist_hi + width
        clamped = values.clamp(lo + width / 2, hi - width / 2)
        return torch.histc(clamped, bins=HIST_BINS + 2, min=lo, max=hi).to(torch.int64)

    def row(self) -> dict:
        """The pooled statistics as one table row (column names carry their units)."""
        n = self.numel
        mse = self.noise / n if n else math.nan
        hist_f = [int(v) for v in self.hist_float] if self.hist_float is not None else []
        hist_q = [int(v) for v in self.hist_quant] if self.hist_quant is not None else []
        return {
            "batches": self.batches,
            "numel": n,
            "signal_energy": self.signal,
            "noise_energy": self.noise,
            "sqnr_db": sqnr_db(self.signal, self.noise) if n else math.nan,
            "mse": mse,
            "cosine": cosine(self.dot, self.signal, self.quant_sq),
            "max_abs_err": self.max_abs_err if n else math.nan,
            "float_min": self.float_min if n else math.nan,
            "float_max": self.float_max if n else math.nan,
            "quant_min": self.quant_min if n else math.nan,
            "quant_max": self.quant_max if n else math.nan,
            "scale": self.scale,
            "zero_point": self.zero_point,
            "qrange_lo": self.range_lo,
            "qrange_hi": self.range_hi,
            "rmse_over_step": math.sqrt(mse) / self.scale if n and self.scale > 0 else math.nan,
            "clipped_fraction": self.clipped / n if n and not math.isnan(self.range_lo) else math.nan,
            "nonfinite_count": self.nonfinite,
            "range_cv": (math.sqrt(self.range_m2 / (self.batches - 1)) / self.range_mean
                         if self.batches >= 2 and self.range_mean > 0 else math.nan),
            "hist_lo": self.hist_lo,
            "hist_hi": self.hist_hi,
            "hist_float": hist_f,
            "hist_quant": hist_q,
        }


class LayerPairing:
    """Pairs float and quantized logger calls by their Numeric Suite ``ref_name`` and folds each pair.

    A tensor waits (one batch at most) until its counterpart arrives, then both are dropped.
    """

    def __init__(self, float_name: str, quant_name: str, compare_after: dict[str, Callable] | None = None,
                 clone_float: bool = True):
        self.float_name = float_name
        # A waiting tensor is copied so an in-place op downstream cannot change it; int8 copies are cheap.
        # Float ones can skip it when nothing consumes them (the shadow model's float copies).
        self.clone_float = clone_float
        self.quant_name = quant_name
        # quantized node name -> activation applied to both sides before comparing
        self.compare_after = compare_after or {}
        self.stats: dict[str, LayerStats] = {}
        self.info: dict[str, dict] = {}
        self.order: list[str] = []
        self.unsupported: dict[str, str] = {}
        self._waiting: dict[tuple[str, str], collections.deque] = collections.defaultdict(collections.deque)

    def offer(self, logger, x) -> None:
        """Take one logged value; fold it with its counterpart once both sides have arrived."""
        side = logger.model_name
        key = logger.ref_name
        info = self.info.setdefault(key, {})
        if side == self.quant_name:
            if key not in self.stats:
                self.order.append(key)
                self.stats[key] = LayerStats()
            info.update(layer=logger.ref_node_name, op_type=logger.ref_node_target_type, quant_node=logger.prev_node_name)
        else:
            info.update(float_node=logger.prev_node_name)
        if not isinstance(x, torch.Tensor):
            self.unsupported[key] = f"output is a {type(x).__name__}, not a tensor"
            return
        other = self.float_name if side == self.quant_name else self.quant_name
        if self._waiting[(key, other)]:
            theirs = self._waiting[(key, other)].popleft()
            ref, quant = (theirs, x) if side == self.quant_name else (x, theirs)
            self._fold(key, ref, quant)
        else:
            keep = x.detach().clone() if (x.is_quantized or self.clone_float) else x.detach()
            self._waiting[(key, side)].append(keep)

    def _fold(self, key: str, ref: torch.Tensor, quant: torch.Tensor) -> None:
        act = self.compare_after.get(self.info[key].get("quant_node", ""))
        try:
            self.stats[key].update(ref, quant, transform=act)
        except ValueError as exc:
            self.unsupported[key] = str(exc)


class Tap(torch.nn.Module):
    """Hands the value passing a point of a graph to a ``LayerPairing`` (the attributes it reads), and passes it on.

    With ``scale``/``zero_point`` the value is an integer tensor of that quantization, handed on as a torch
    quantized tensor so its scale and clipping range are known.
    """

    def __init__(self, pairing: LayerPairing, side: str, key: str, layer: str, op_type: str, node: str):
        super().__init__()
        self.pairing = pairing
        self.model_name, self.ref_name, self.ref_node_name = side, key, layer
        self.ref_node_target_type, self.prev_node_name = op_type, node
        self.enabled = True

    def forward(self, x, scale: float | None = None, zero_point: int | None = None):
        if self.enabled:
            value = x
            if scale is not None and isinstance(x, torch.Tensor) and not x.is_floating_point():
                value = torch._make_per_tensor_quantized_tensor(x, float(scale), int(zero_point))
            self.pairing.offer(self, value)
        return x
