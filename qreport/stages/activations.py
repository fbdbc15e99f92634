"""Stage 2: propagated activation error (``add_loggers``): float and int8 models run side by side."""

from __future__ import annotations

import pandas as pd
import torch

from qreport.data import call
from qreport.stages.result import StageResult
from qreport.stages.tables import stage_frame
from qreport.streaming import FLOAT_NAME, QUANT_NAME, LayerPairing


def pairing_rows(ctx, pairing: LayerPairing) -> list[dict]:
    """Table rows from a finished pairing, in execution order; layers never compared go to coverage."""
    rows = []
    for order, key in enumerate(pairing.order):
        info = pairing.info[key]
        stats = pairing.stats[key]
        layer = info.get("layer", key)
        if stats.batches == 0:
            continue
        after = ctx.compare_after.get(info.get("quant_node", ""))
        rows.append(
            {
                "layer": layer,
                "layer_fqn": ctx.layer_fqn(layer),
                "op_type": ctx.flow.op_label(info.get("op_type", "")),
                "float_node": info.get("float_node", ""),
                "order": order,
                "compared_after": after[0] if after else "",
                **stats.row(),
            }
        )
    return rows


def new_pairing(ctx, clone_float: bool = True) -> LayerPairing:
    """A pairing that compares conv-like outputs after the clamp activation they feed."""
    return LayerPairing(FLOAT_NAME, QUANT_NAME, {name: act for name, (_, act) in ctx.compare_after.items()},
                        clone_float=clone_float)


def uncompared(ctx, pairing: LayerPairing) -> list[dict]:
    """Layers the pairing saw but could not compare, with the reason."""
    out = []
    for key, reason in sorted(pairing.unsupported.items()):
        layer = pairing.info.get(key, {}).get("layer", key)
        out.append({"layer": layer, "layer_fqn": ctx.layer_fqn(layer), "reason": reason})
    return out


def run(ctx) -> StageResult:
    """Stream every evaluation batch through both logged models; keep only running statistics."""
    pairing = new_pairing(ctx)
    float_logged, quant_logged = ctx.flow.logged_models(ctx.reference, ctx.prepared, ctx.quantized, pairing)
    with torch.no_grad():
        for x in ctx.batches(ctx.data.evaluation, "activations"):
            call(quant_logged, x)  # int8 first: its (1-byte) tensors wait, each float one is folded as it arrives
            call(float_logged, x)
    return StageResult({"activations": stage_frame("activations", pairing_rows(ctx, pairing))},
                       uncompared=uncompared(ctx, pairing))
