"""Stage 3: isolated activation error (``add_shadow_loggers``): each int8 op against a float shadow."""

from __future__ import annotations

import torch

from qreport.stages.activations import new_pairing, pairing_rows, uncompared
from qreport.data import call
from qreport.stages.result import StageResult
from qreport.stages.tables import stage_frame


def run(ctx) -> StageResult:
    """Each float shadow is fed the int8 model's own input, so a row shows the error that op adds."""
    pairing = new_pairing(ctx, clone_float=False)  # float shadows feed only their loggers
    model, skipped = ctx.flow.shadow_model(ctx.reference, ctx.prepared, ctx.quantized, pairing)
    with torch.no_grad():
        for x in ctx.batches(ctx.data.evaluation, "shadow"):
            call(model, x)
    missing = uncompared(ctx, pairing) + [
        {"layer": "", "layer_fqn": "", "op_type": s["op_type"], "reason": f"Numeric Suite skipped it: {s['reason']}"}
        for s in skipped
    ]
    return StageResult({"shadow": stage_frame("shadow", pairing_rows(ctx, pairing))}, uncompared=missing)
