"""The versioned column schema of every stage's Parquet table (no torch here)."""

from __future__ import annotations

import pyarrow as pa

# Bump when a column is renamed, removed or changes meaning; readers refuse newer versions.
SCHEMA_VERSION = 2

STAGES = ("graph", "weights", "activations", "shadow", "kernels", "model", "channels", "ranges", "sensitivity",
          "coverage", "guidance", "fix")

# Tables a stage writes besides its own, and the stage whose status they share.
EXTRA_TABLES = {"classes": "model", "flips": "model", "verdict": "guidance", "lowered": "kernels"}

_LABELLED_COLUMNS = [
    ("labelled_samples", pa.int64()),  # evaluation inputs with a label (0: no labels)
    ("float_accuracy", pa.float64()),
    ("float_accuracy_lo", pa.float64()),  # 95 % Wilson interval
    ("float_accuracy_hi", pa.float64()),
    ("int8_accuracy", pa.float64()),
    ("int8_accuracy_lo", pa.float64()),
    ("int8_accuracy_hi", pa.float64()),
    ("accuracy_drop", pa.float64()),  # float − int8, as a fraction
    ("accuracy_drop_lo", pa.float64()),  # 95 % paired interval (Newcombe), both models on the same images
    ("accuracy_drop_hi", pa.float64()),
    ("images_lost", pa.int64()),  # right in float, wrong in int8
    ("images_gained", pa.int64()),  # wrong in float, right in int8
    ("mcnemar_p", pa.float64()),  # exact McNemar test of the two models' accuracy
    ("metric_name", pa.string()),  # --metric, or ""
    ("float_metric", pa.float64()),
    ("int8_metric", pa.float64()),
    ("metric_drop", pa.float64()),
    ("metric_drop_lo", pa.float64()),  # 95 % paired bootstrap interval
    ("metric_drop_hi", pa.float64()),
]

_ACTIVATION_COLUMNS = [
    ("layer", pa.string()),  # Numeric Suite layer name (the int8 FX node)
    ("layer_fqn", pa.string()),  # module path, e.g. features.17.conv.0
    ("op_type", pa.string()),
    ("float_node", pa.string()),
    ("order", pa.int32()),  # execution order in the quantized model
    ("compared_after", pa.string()),  # activation applied to both sides before comparing, or ""
    ("batches", pa.int32()),
    ("numel", pa.int64()),
    ("signal_energy", pa.float64()),
    ("noise_energy", pa.float64()),
    ("sqnr_db", pa.float64()),
    ("mse", pa.float64()),
    ("cosine", pa.float64()),
    ("max_abs_err", pa.float64()),
    ("float_min", pa.float64()),
    ("float_max", pa.float64()),
    ("quant_min", pa.float64()),
    ("quant_max", pa.float64()),
    ("scale", pa.float64()),
    ("zero_point", pa.int32()),
    ("qrange_lo", pa.float64()),  # float range the int8 tensor can represent
    ("qrange_hi", pa.float64()),
    ("rmse_over_step", pa.float64()),
    ("clipped_fraction", pa.float64()),
    ("nonfinite_count", pa.int64()),
    ("range_cv", pa.float64()),  # std/mean of the per-batch float range
    ("hist_lo", pa.float64()),
    ("hist_hi", pa.float64()),
    ("hist_float", pa.list_(pa.int64())),  # underflow, 64 bins, overflow; a fixed stride of each batch
    ("hist_quant", pa.list_(pa.int64())),
]

COLUMNS: dict[str, list[tuple[str, pa.DataType]]] = {
    "graph": [  # the int8 model's ops in execution order
        ("node", pa.string()),  # FX node name (the tables' "layer")
        ("layer_fqn", pa.string()),
        ("op_type", pa.string()),
        ("runs", pa.string()),  # int8 (its own kernel and scale) | int8 pass-through (its input's scale) | float
        ("inputs", pa.list_(pa.string())),  # the ops feeding it, through quantize/dequantize nodes
        ("order", pa.int32()),
    ],
    "weights": [
        ("layer", pa.string()),
        ("layer_fqn", pa.string()),
        ("op_type", pa.string()),
        ("order", pa.int32()),
        ("weight_shape", pa.string()),
        ("param_count", pa.int64()),
        ("qscheme", pa.string()),
        ("sqnr_db", pa.float64()),
        ("worst_channel", pa.int32()),
        ("worst_channel_sqnr_db", pa.float64()),
        ("max_abs_err", pa.float64()),
        ("float_min", pa.float64()),
        ("float_max", pa.float64()),
        ("rmse_over_step", pa.float64()),
    ],
    "activations": _ACTIVATION_COLUMNS,
    "shadow": _ACTIVATION_COLUMNS,
    "kernels": [  # int8 modules without weights to fold, each run alone on synthetic input
        ("layer_fqn", pa.string()),
        ("op_type", pa.string()),
        ("input_codes_lo", pa.int32()),  # the integer input range seen on real data; the synthetic codes span it
        ("input_codes_hi", pa.int32()),
        ("values", pa.int64()),
        ("rmse_over_step", pa.float64()),  # against the float module, output clamped to the int8 range (0.29 ideal)
        ("sqnr_db", pa.float64()),
    ],
    "lowered": [  # a lowered model's kernels (PT2E on x86) against the quantize/dequantize graph, same inputs
        ("layer", pa.string()),
        ("layer_fqn", pa.string()),
        ("op_type", pa.string()),  # the lowered kernel, e.g. qconv_pointwise
        ("order", pa.int32()),
        ("batches", pa.int32()),
        ("numel", pa.int64()),
        ("sqnr_db", pa.float64()),  # quantize/dequantize graph as signal, the lowered kernel's difference as noise
        ("rmse_over_step", pa.float64()),  # in steps of the kernel's output scale (0: the same codes)
        ("max_abs_err", pa.float64()),
        ("scale", pa.float64()),
    ],
    "model": [
        ("samples", pa.int64()),
        ("batches", pa.int32()),
        ("output_sqnr_db", pa.float64()),
        ("top1_agreement", pa.float64()),
        ("agreement_lo", pa.float64()),  # 95 % Wilson interval of the agreement
        ("agreement_hi", pa.float64()),
        ("cosine", pa.float64()),
        ("mse", pa.float64()),
        ("max_abs_err", pa.float64()),
        ("float_top1_classes", pa.int32()),  # distinct top-1 classes the float model predicted
        ("nonfinite_count", pa.int64()),
        *_LABELLED_COLUMNS,
    ],
    "classes": [  # per true class, labelled evaluation data only
        ("class_index", pa.int32()),
        ("class_name", pa.string()),
        ("images", pa.int64()),
        ("float_accuracy", pa.float64()),
        ("int8_accuracy", pa.float64()),
        ("accuracy_drop", pa.float64()),
    ],
    "flips": [  # evaluation inputs whose top-1 prediction differs between the two models
        ("image", pa.string()),  # file path in the data folder, or #index in a tensor file
        ("label", pa.int64()),
        ("float_pred", pa.int64()),
        ("int8_pred", pa.int64()),
        ("float_correct", pa.bool_()),
        ("int8_correct", pa.bool_()),
    ],
    "channels": [
        ("layer_fqn", pa.string()),  # a Conv/Linear module of the float model
        ("order", pa.int32()),
        ("in_channels", pa.int32()),
        ("input_absmax", pa.float64()),  # largest |input| over all channels and batches
        ("worst_channel", pa.int32()),
        ("outlier_ratio", pa.float64()),  # 100th / 97.5th percentile of the per-channel |max|
        ("weight_channel_spread", pa.float64()),  # same ratio for the weight's per-input-channel |max|
    ],
    "ranges": [  # each observed activation's calibrated range against the data
        ("layer", pa.string()),  # the op whose output is observed; "input" for the model's input
        ("layer_fqn", pa.string()),
        ("order", pa.int32()),
        ("cal_min", pa.float64()),  # extremes the observer saw during calibration
        ("cal_max", pa.float64()),
        ("qrange_lo", pa.float64()),  # what the int8 qparams can represent (7 bits of it on x86)
        ("qrange_hi", pa.float64()),
        ("scale", pa.float64()),  # one int8 step
        ("eval_min", pa.float64()),
        ("eval_max", pa.float64()),
        ("eval_outside_fraction", pa.float64()),  # evaluation values outside the representable range
        ("calibration_images", pa.int32()),
        ("top_image", pa.string()),  # the calibration input with the largest |value| here
        ("top_image_ratio", pa.float64()),  # its |max| over the median calibration input's
        ("never_observed", pa.bool_()),  # the observer saw no data: its qparams are defaults (scale 1, zero point 0)
        ("fake_quant_off", pa.bool_()),  # QAT: fake quantization was switched off here
    ],
    "sensitivity": [
        ("kind", pa.string()),  # model: a whole-model configuration; layer: one quantized op
        ("layer", pa.string()),  # FX node, or the configuration's name for model rows
        ("layer_fqn", pa.string()),
        ("op_type", pa.string()),
        ("order", pa.int32()),
        ("has_weights", pa.bool_()),
        ("macs", pa.int64()),  # per sample
        ("float_alone_sqnr_db", pa.float64()),  # output SQNR with only this layer kept float (simulated)
        ("float_alone_top1", pa.float64()),
        ("quant_alone_sqnr_db", pa.float64()),  # with only this layer quantized; model rows: that configuration
        ("quant_alone_top1", pa.float64()),
        ("gain_db", pa.float64()),  # float_alone − all quantized (simulated)
        ("greedy_step", pa.int32()),  # position in the greedy float set, −1 if not chosen
        ("greedy_sqnr_db", pa.float64()),  # simulated output SQNR once this and earlier steps are float
        ("images", pa.int32()),
        ("target_sqnr_db", pa.float64()),
        ("sim_vs_real_db", pa.float64()),  # SQNR of the simulated vs the real int8 output (model rows)
    ],
    "coverage": [
        ("layer_fqn", pa.string()),
        ("op_type", pa.string()),
        ("status", pa.string()),  # quantized | float | not matched
        ("in_weights", pa.bool_()),
        ("in_activations", pa.bool_()),
        ("in_shadow", pa.bool_()),
        ("note", pa.string()),
    ],
    "guidance": [
        ("rank", pa.int32()),
        ("kind", pa.string()),  # cause (why, with a remedy) | location (where) | context
        ("code", pa.string()),
        ("severity", pa.string()),  # high | medium | info
        ("layer", pa.string()),
        ("layer_fqn", pa.string()),
        ("view", pa.string()),  # which comparison showed it
        ("value_db", pa.float64()),
        ("median_db", pa.float64()),
        ("threshold", pa.float64()),
        ("origin", pa.string()),  # originates | inherited | n/a
        ("evidence", pa.string()),
        ("change_preset", pa.string()),  # qconfig preset the change gives the module, or ""
        ("change_toml", pa.string()),
        ("change_python", pa.string()),
        ("impact_db", pa.float64()),  # simulated output SQNR gained by keeping the layer (or its neighbour) float
        ("likely_cause", pa.string()),  # for a location: "code layer" of the cause at or next to it
        ("subject", pa.string()),  # what a finding not about a layer is about (a calibration input's name)
    ],
    "verdict": [  # one row
        ("level", pa.string()),  # good | warn | bad
        ("rule", pa.string()),  # the rule in words, with its numbers
        ("flagged", pa.list_(pa.string())),  # layers with a high or medium finding
        ("not_compared", pa.list_(pa.string())),  # quantized layers with weights no activation view compared
    ],
    "fix": [
        ("step", pa.string()),  # before | rung (one remedy tried) | after (the kept rungs) | dropped (cannot be built)
        ("rung", pa.int32()),  # the rung's place in the ladder, −1 for the other steps
        ("kind", pa.string()),  # recalibrate | observer | per_channel | float
        ("changes", pa.string()),  # qconfig TOML (a rung's own changes; after: every kept rung's); a data rung: what it does
        ("output_sqnr_db", pa.float64()),
        ("top1_agreement", pa.float64()),
        ("samples", pa.int64()),
        *_LABELLED_COLUMNS,
        ("float_param_share", pa.float64()),
        ("float_mac_share", pa.float64()),
        ("qdq_boundaries", pa.int32()),  # quantize/dequantize nodes in the int8 graph
        ("note", pa.string()),  # a rung: the findings it answers; dropped: why it cannot be built; after: data change
        ("recommended", pa.bool_()),  # the after row's measured effect beats the noise (fix.toml is written)
        ("kept", pa.bool_()),  # a rung that helped beyond the noise and stays in the set
    ],
}


PASS_THROUGH = "int8 pass-through"  # graph.runs of an op that runs on its input's int8 scale


def pass_through_nodes(graph) -> set[str]:
    """The nodes of a ``graph`` table (a DataFrame, or None) that run on their input's int8 scale."""
    return set(graph.loc[graph.runs == PASS_THROUGH, "node"]) if graph is not None and len(graph) else set()


def arrow_schema(stage: str) -> pa.Schema:
    """The pyarrow schema declared for ``stage``, tagged with the schema version."""
    return pa.schema(COLUMNS[stage], metadata={b"qreport.schema_version": str(SCHEMA_VERSION).encode()})
