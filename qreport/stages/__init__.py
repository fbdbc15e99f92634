"""Comparison stages, run in this order; each returns one table for ``<run>/<stage>.parquet``."""

from qreport.stages import activations, channels, coverage, fix, guidance, kernels, model, sensitivity, shadow, weights

ORDER = (
    ("weights", weights.run),
    ("activations", activations.run),
    ("shadow", shadow.run),
    ("kernels", kernels.run),
    ("model", model.run),
    ("channels", channels.run),
    ("sensitivity", sensitivity.run),
    ("coverage", coverage.run),
    ("guidance", guidance.run),
    ("fix", fix.run),
)
