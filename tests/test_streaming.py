"""The streaming statistics equal the tensor-based reference and handle the edge cases."""

import math

import torch
from torch.ao.ns.fx.utils import compute_sqnr

from qreport.metrics import sqnr_db
from qreport.streaming import HIST_BINS, LayerStats


def _pairs(n=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        f = torch.randn(4, 8, 6, 6, generator=gen) * (1 + i)
        q = torch.quantize_per_tensor(f, scale=0.2, zero_point=128, dtype=torch.quint8)
        out.append((f, q))
    return out


def test_pooled_sqnr_equals_sqnr_over_concatenated_tensors():
    stats = LayerStats()
    pairs = _pairs()
    for f, q in pairs:
        stats.update(f, q)
    reference = compute_sqnr(torch.cat([f for f, _ in pairs]), torch.cat([q.dequantize() for _, q in pairs]))
    assert abs(stats.row()["sqnr_db"] - float(reference)) < 1e-3
    # and it is not the mean of per-batch dB, which differs here
    per_batch = sum(float(compute_sqnr(f, q.dequantize())) for f, q in pairs) / len(pairs)
    assert abs(per_batch - stats.row()["sqnr_db"]) > 0.1


def test_companion_metrics_match_their_definitions():
    stats = LayerStats()
    pairs = _pairs(3)
    for f, q in pairs:
        stats.update(f, q)
    f = torch.cat([f for f, _ in pairs]).double().flatten()
    q = torch.cat([q.dequantize() for _, q in pairs]).double().flatten()
    row = stats.row()
    assert math.isclose(row["mse"], float(((f - q) ** 2).mean()), rel_tol=1e-4)
    assert math.isclose(row["cosine"], float(torch.nn.functional.cosine_similarity(f, q, dim=0)), rel_tol=1e-6)
    assert math.isclose(row["max_abs_err"], float((f - q).abs().max()), rel_tol=1e-5)
    assert row["float_min"] == float(f.min()) and row["quant_max"] == float(q.max())
    assert row["numel"] == f.numel() and row["batches"] == 3


def test_clipping_and_error_per_step_use_the_int8_range():
    f = torch.linspace(-1, 3, 1000)
    q = torch.quantize_per_tensor(f, scale=0.01, zero_point=0, dtype=torch.quint8)  # represents 0 … 2.55
    stats = LayerStats()
    stats.update(f, q)
    row = stats.row()
    expected = float(((f < 0) | (f > 2.55)).float().mean())
    assert abs(row["clipped_fraction"] - expected) < 1e-3
    assert row["qrange_lo"] == 0.0 and abs(row["qrange_hi"] - 2.55) < 1e-9
    assert row["scale"] == 0.01


def test_rounding_only_error_is_about_a_third_of_a_step():
    f = torch.rand(200_000) * 2.0
    q = torch.quantize_per_tensor(f, scale=2.0 / 255, zero_point=0, dtype=torch.quint8)
    stats = LayerStats()
    stats.update(f, q)
    assert abs(stats.row()["rmse_over_step"] - 1 / math.sqrt(12)) < 0.01


def test_zero_noise_is_exact_not_a_crash():
    stats = LayerStats()
    x = torch.ones(10)
    stats.update(x, x.clone())
    assert stats.row()["sqnr_db"] == math.inf
    assert sqnr_db(0.0, 0.0) == math.inf


def test_nan_and_inf_are_counted_and_the_rest_compared():
    stats = LayerStats()
    f = torch.tensor([1.0, 2.0, float("nan"), 4.0])
    q = torch.tensor([1.0, 2.5, 3.0, float("inf")])
    stats.update(f, q)
    row = stats.row()
    assert row["nonfinite_count"] == 2
    assert row["numel"] == 2
    assert math.isclose(row["sqnr_db"], 10 * math.log10(5 / 0.25), rel_tol=1e-6)


def test_histograms_count_every_value_including_later_outliers():
    stats = LayerStats()
    stats.update(torch.randn(1000), torch.randn(1000))
    stats.update(torch.randn(500) * 100, torch.randn(500) * 100)  # far outside the first batch's range
    row = stats.row()
    assert len(row["hist_float"]) == HIST_BINS + 2
    assert sum(row["hist_float"]) == 1500 and sum(row["hist_quant"]) == 1500
    assert row["hist_float"][0] > 0 and row["hist_float"][-1] > 0


def test_memory_layout_does_not_change_the_statistics():
    """Quantized convolutions give channels-last tensors and float ones usually do not: any mix of the two layouts
    gives the statistics of the contiguous pair (clipping included)."""
    gen = torch.Generator().manual_seed(1)
    f = torch.randn(2, 8, 10, 10, generator=gen) * 3
    q = torch.quantize_per_tensor(f, scale=0.02, zero_point=128, dtype=torch.quint8)  # clips beyond about ±2.5
    last = torch.channels_last
    rows = {}
    for name, (ff, qq) in {"contiguous": (f, q), "both channels-last": (f.contiguous(memory_format=last),
                                                                        q.contiguous(memory_format=last)),
                           "int8 channels-last": (f, q.contiguous(memory_format=last)),
                           "float channels-last": (f.contiguous(memory_format=last), q)}.items():
        stats = LayerStats()
        stats.update(ff, qq, transform=torch.relu)
        rows[name] = stats.row()
    want = rows.pop("contiguous")
    assert want["clipped_fraction"] > 0.1
    for name, row in rows.items():
        for key in ("float_min", "float_max", "quant_min", "quant_max", "max_abs_err", "clipped_fraction", "numel"):
            assert row[key] == want[key], (name, key)
        for key in ("signal_energy", "noise_energy", "cosine"):
            assert math.isclose(row[key], want[key], rel_tol=1e-6), (name, key)


def test_values_outside_a_range_are_counted_exactly_edges_and_nan_excluded():
    """The clipped count of the activation tables and the ranges stage's outside count: strictly below or above."""
    from qreport.streaming import count_outside

    x = torch.tensor([-2.0, -1.0, -0.5, 0.0, 1.0, 1.5, float("nan"), float("inf"), -float("inf")])
    assert count_outside(x, -1.0, 1.0) == 4  # -2, 1.5, inf, -inf; the edges and NaN are not outside
    big = torch.randn(4, 8, 33, 17).contiguous(memory_format=torch.channels_last)
    assert count_outside(big, -1.5, 0.7) == int(((big < -1.5) | (big > 0.7)).sum())
