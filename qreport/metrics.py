"""Pure-math metrics shared by compute, render and diff (no torch here)."""

from __future__ import annotations

import math

# RMSE of rounding a uniform signal to a grid of step 1 is 1/sqrt(12).
IDEAL_RMSE_OVER_STEP = 1.0 / math.sqrt(12.0)


def sqnr_db(signal_energy: float, noise_energy: float) -> float:
    """Signal-to-quantization-noise ratio in dB from pooled energies; +inf when the noise is zero."""
    if math.isnan(signal_energy) or math.isnan(noise_energy):
        return math.nan
    if noise_energy == 0.0:
        return math.inf
    if signal_energy == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal_energy / noise_energy)


def cosine(dot: float, norm_a_sq: float, norm_b_sq: float) -> float:
    """Cosine similarity from a dot product and two squared norms; NaN when a side is all zero."""
    if norm_a_sq <= 0.0 or norm_b_sq <= 0.0:
        return math.nan
    return dot / math.sqrt(norm_a_sq * norm_b_sq)
