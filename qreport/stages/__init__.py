"""Comparison stages, run in this order; each returns one table for ``<run>/<stage>.parquet`` (or a dict of
tables, its own first: ``schema.EXTRA_TABLES`` names the others)."""

from qreport.stages import (activations, channels, coverage, fix, graph, guidance, kernels, model, ranges, sensitivity,
                            shadow, weights)

ORDER = (
    ("graph", graph.run),
    ("weights", weights.run),
    ("activations", activations.run),
    ("shadow", shadow.run),
    ("kernels", kernels.run),
    ("model", model.run),
    ("channels", channels.run),
    ("ranges", ranges.run),
    ("sensitivity", sensitivity.run),
    ("coverage", coverage.run),
    ("guidance", guidance.run),
    ("fix", fix.run),
)
