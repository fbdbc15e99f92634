"""Stage: each int8 kernel without weights to fold, checked alone on synthetic input inside its calibrated range;
and, where the int8 model is lowered to other kernels (PT2E on x86), the lowered model against it, layer by layer
(table ``lowered``)."""

from __future__ import annotations

import pandas as pd
import torch

from qreport.data import batch_len, call
from qreport.scoring import first_tensor, score_outputs
from qreport.stages.activations import pairing_rows
from qreport.stages.result import StageResult
from qreport.streaming import FLOAT_NAME, QUANT_NAME, LayerPairing

LOWERED_COLUMNS = ["layer", "layer_fqn", "op_type", "order", "batches", "numel", "sqnr_db", "rmse_over_step",
                   "max_abs_err", "scale"]


def run(ctx):
    """Rows of ``flow.kernel_checks``: a kernel defect shows as many output steps of error where rounding gives 0.29."""
    kernels = pd.DataFrame(ctx.flow.kernel_checks(ctx.reference, ctx.quantized, ctx.data.example()))
    pairing = LayerPairing(FLOAT_NAME, QUANT_NAME)
    lowered = ctx.flow.lowered_models(ctx.quantized, ctx.data.example(), pairing)
    if lowered is None:
        return kernels
    reference, kernels_model, note = lowered
    size = batch_len(ctx.data.example())
    refs, graph_outs, kernel_outs = [], [], []
    with torch.no_grad():
        for x in ctx.batches(ctx.data.evaluation, "kernels: lowered"):
            if batch_len(x) != size:  # the lowering is for batches of the example's size
                continue
            refs.append(first_tensor(call(ctx.reference, x)).float())
            graph_outs.append(first_tensor(call(reference, x)).float())
            kernel_outs.append(first_tensor(call(kernels_model, x)).float())
    rows = pairing_rows(ctx, pairing)
    table = pd.DataFrame([{k: r[k] for k in LOWERED_COLUMNS} for r in rows], columns=LOWERED_COLUMNS)
    graph_db = score_outputs(zip(refs, graph_outs))["output_sqnr_db"]
    kernel_db = score_outputs(zip(refs, kernel_outs))["output_sqnr_db"]
    gap_db = score_outputs(zip(graph_outs, kernel_outs))["output_sqnr_db"]
    images = sum(len(r) for r in refs)
    notes = [f"x86 lowering (oneDNN int8 kernels, what runs after torch.compile): model output SQNR {kernel_db:.1f} dB "
             f"against {graph_db:.1f} dB for the quantize/dequantize graph the other views measure; the two int8 "
             f"models agree to {gap_db:.1f} dB ({images} evaluation inputs)"]
    if note:
        notes.append(f"lowered kernels: {note}")
    return StageResult({"kernels": kernels, "lowered": table}, notes=notes)
