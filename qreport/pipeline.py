"""``qreport build``: load → quantize → stages → Parquet + manifest → report, with progress lines."""

from __future__ import annotations

import dataclasses
import gc
import platform
import resource
import sys
import time
import traceback
from pathlib import Path

import torch
import torchvision

import qreport
from qreport import interrupt
from qreport.allocator import keep_freed_blocks, release_freed_blocks
from qreport import data as data_mod
from qreport.config import BuildConfig, render_qconfig_toml
from qreport.context import BuildContext
from qreport.errors import InputError, QReportError, first_line, is_own_bug
from qreport.findings import Thresholds
from qreport.flows import CalibrationRecord, make_flow, quiet_torch
from qreport.macs import macs_per_module
from qreport.progress import Progress
from qreport.models import load_metric, load_model, recalibrate_batchnorm
from qreport.schema import SCHEMA_VERSION
from qreport.scoring import first_tensor
from qreport.stages import ORDER
from qreport.stages.fix import fix_overrides
from qreport.stages.result import as_result
from qreport.store import RunWriter
from qreport.timestamp import build_timestamp


def embedding_vocabulary(model: torch.nn.Module) -> int | None:
    """The vocabulary size when the model's first layer with parameters is an embedding (its inputs are token ids)."""
    for module in model.modules():
        if next(module.children(), None) is None and next(module.parameters(recurse=False), None) is not None:
            if isinstance(module, (torch.nn.Embedding, torch.nn.EmbeddingBag)):
                return int(module.num_embeddings)
            return None
    return None


def _source(spec: str, cfg: BuildConfig, loaded, calib_batches: int) -> data_mod.DataSource:
    shape = cfg.input_shape or loaded.input_shape
    if spec == "synthetic":
        return data_mod.synthetic(shape, cfg.batch_size, calib_batches, cfg.eval_batches, cfg.seed,
                                  vocabulary=embedding_vocabulary(loaded.module))
    if spec.endswith((".pt", ".pth")):
        return data_mod.tensor_file(spec, cfg.batch_size, calib_batches, cfg.eval_batches)
    return data_mod.image_folder(spec, shape, None if cfg.input_shape else loaded.transforms,
                                 cfg.batch_size, calib_batches, cfg.eval_batches)


def _data_source(cfg: BuildConfig, loaded) -> data_mod.DataSource:
    data = _source(cfg.data, cfg, loaded, cfg.calib_batches)
    if cfg.eval_data:  # a separate evaluation source is evaluated from its first input
        data = data_mod.with_evaluation(data, _source(cfg.eval_data, cfg, loaded, calib_batches=0))
    return data


def _check_runs(model, example, data: data_mod.DataSource) -> None:
    """The float model runs on the example batch, and the labels fit its outputs."""
    try:
        with torch.no_grad():
            out = first_tensor(data_mod.call(model, example))
    except Exception as exc:  # the user's model or input shape
        hint = "pass the right --input-shape" if data_mod.model_args(example)[0].is_floating_point() else \
            "check the token ids and the --input-shape"
        raise InputError(
            f"the float model fails on an input of shape {data_mod.describe_shapes(example)} "
            f"({exc.__class__.__name__}: {first_line(exc)[:160]}); {hint}"
        ) from None
    if data.max_label is not None:
        classes = out.shape[1] if out.dim() == 2 else 0
        if not classes:
            raise InputError(f"the data has class labels but the model's output has shape {tuple(out.shape)}, not "
                             "[batch, classes]; pass --metric to score it")
        if data.max_label >= classes:
            raise InputError(f"label {data.max_label} is out of range: the model has {classes} outputs, so labels run "
                             f"from 0 to {classes - 1}; check the labels of {data.description}")


def output_gate(model_table, threshold: float) -> dict:
    """The ``--fail-under-sqnr`` gate on the model output SQNR (a missing value fails)."""
    value = float(model_table["output_sqnr_db"].iloc[0]) if model_table is not None and len(model_table) else float("nan")
    passed = value >= threshold  # NaN compares False
    return {"name": "fail-under-sqnr", "threshold": threshold, "value": value, "passed": bool(passed),
            "detail": f"model output SQNR {value:.2f} dB {'≥' if passed else '<'} {threshold:g} dB"}


def accuracy_gate(model_table, max_drop_points: float) -> dict:
    """The ``--max-accuracy-drop`` gate: float accuracy minus int8 accuracy, in percentage points."""
    drop = float(model_table["accuracy_drop"].iloc[0]) * 100 if model_table is not None and len(model_table) \
        else float("nan")
    passed = drop <= max_drop_points  # NaN compares False
    images = int(model_table["labelled_samples"].iloc[0]) if model_table is not None and len(model_table) else 0
    return {"name": "max-accuracy-drop", "threshold": max_drop_points, "value": drop, "passed": bool(passed),
            "detail": f"accuracy drop {drop:.2f} points {'≤' if passed else '>'} {max_drop_points:g} "
                      f"({images} labelled images)"}


def _check_labels_needed(cfg: BuildConfig, data: data_mod.DataSource, max_accuracy_drop: float | None) -> None:
    if not data.labels and (cfg.metric or max_accuracy_drop is not None or cfg.target_accuracy_drop is not None):
        option = "--metric" if cfg.metric else "--max-accuracy-drop" if max_accuracy_drop is not None else \
            "--target-accuracy-drop"
        raise InputError(f"{option} needs labelled evaluation data: a .pt file with {{'inputs', 'labels'}}, an image "
                         "folder with one sub-folder per class, or a labels.csv")
    if data.labels and data.max_label is None and not cfg.metric:
        raise InputError(f"the labels of {data.description} are float targets, not class indices; pass --metric "
                         "to score them")


def _load(cfg: BuildConfig, progress: Progress, verbose: bool, max_accuracy_drop: float | None = None):
    """The float model (BatchNorm re-estimated if its weights are random), the data, and notes for the report."""
    t = time.perf_counter()
    with quiet_torch(verbose):
        loaded = load_model(cfg.model, cfg.weights, cfg.checkpoint)
    data = _data_source(cfg, loaded)
    _check_labels_needed(cfg, data, max_accuracy_drop)
    example = data.example()
    _check_runs(loaded.module, example, data)
    notes = list(data.notes)
    if not loaded.weights_trained:
        why = f": {loaded.weights_note}" if loaded.weights_note else ""
        progress.say(f"WARNING: {cfg.model} uses RANDOM weights{why}. The report describes the architecture, "
                     "not a trained model.")
        count = recalibrate_batchnorm(loaded.module, data.calibration)
        if count:
            notes.append(f"random weights: BatchNorm statistics of {count} layers re-estimated on the calibration data")
    seconds = time.perf_counter() - t
    kind = "random" if not loaded.weights_trained else "checkpoint" if cfg.checkpoint else \
        "pretrained" if "pretrained" in loaded.weights_source else "as built"
    progress.done("load", f"{loaded.name} ({kind} weights)", seconds)
    return loaded, data, example, notes, seconds


def _check_int8_runs(ctx: BuildContext, example, progress: Progress) -> None:
    """Warn (terminal and report) when torch's int8 kernels cannot run the converted model at all."""
    try:
        with torch.no_grad():
            data_mod.call(ctx.quantized, example)
    except Exception as exc:  # a kernel limitation of this backend, not the user's input
        detail = f"{exc.__class__.__name__}: {first_line(exc)[:120]}"
        note = (f"the int8 model does not run ({ctx.flow.target}: {detail}); the stages that run it are marked "
                f"failed, the weights are still compared; {ctx.flow.alternative}")
        progress.say(f"WARNING: {note}")
        ctx.notes.append(note)


def _quantize(ctx: BuildContext, example, progress: Progress, verbose: bool) -> dict[str, float]:
    """Prepare, calibrate and convert; fill the context's graph facts. Returns the step timings."""
    timings = {}
    t = time.perf_counter()
    record = CalibrationRecord()  # what the ranges stage needs from the calibration data, noted on the way
    batches = ctx.batches(record.named(ctx.data.calibration.labelled()), "calibrate", total=len(ctx.data.calibration))
    ctx.prepared = ctx.flow.calibrated(ctx.loaded.module, example, batches, record=record)
    ctx.calibration_record = record if record.complete else None
    timings["calibrate"] = time.perf_counter() - t
    ctx.reference = ctx.flow.reference(ctx.loaded.module, ctx.prepared)
    note = ctx.flow.reference_note(ctx.loaded.module)
    if note:
        ctx.notes.append(note)
    progress.done("calibrate", f"{len(ctx.data.calibration)} batches of {ctx.config.batch_size}", timings["calibrate"])
    t = time.perf_counter()
    ctx.quantized = ctx.flow.convert(ctx.prepared)
    ctx.node_fqns = ctx.flow.node_fqns(ctx.prepared, ctx.quantized)
    ctx.module_nodes = ctx.flow.module_nodes(ctx.quantized)
    ctx.compare_after = ctx.flow.compare_after(ctx.quantized)
    ctx.macs = macs_per_module(ctx.loaded.module, example)
    with quiet_torch(verbose):
        _check_int8_runs(ctx, example, progress)
    timings["convert"] = time.perf_counter() - t
    progress.done("convert", ctx.flow.target, timings["convert"])
    return timings


def _run_stages(ctx: BuildContext, writer: RunWriter, progress: Progress, verbose: bool) -> dict[str, dict]:
    """Every stage in order, each table written as it finishes; a stage that fails is recorded, not fatal."""
    stages: dict[str, dict] = {}
    for name, run in ORDER:
        interrupt.check()
        t = time.perf_counter()
        if name in ctx.flow.unsupported_stages:
            stages[name] = {"status": "skipped", "error": ctx.flow.unsupported_stages[name], "seconds": 0.0}
            ctx.stage_status[name] = "skipped"
            progress.done(name, f"skipped in {ctx.flow.name}", 0.0)
            continue
        try:
            with quiet_torch(verbose):
                result = as_result(name, run(ctx))
        except QReportError:
            raise
        except Exception as exc:  # a Numeric Suite call that fails on this model (qreport's own bugs re-raise)
            if is_own_bug(exc):
                raise
            err = f"{exc.__class__.__name__}: {first_line(exc)}"[:300]
            stages[name] = {"status": "failed", "error": err, "seconds": time.perf_counter() - t}
            ctx.stage_status[name] = "failed"
            progress.done(name, "FAILED: " + err[:60], stages[name]["seconds"])
            if verbose:
                traceback.print_exc()
            continue
        finally:
            gc.collect()  # a stage's graph modules hold reference cycles: free its model copies before the next
            release_freed_blocks()
        for table_name, df in result.tables.items():
            ctx.tables[table_name] = df
            writer.write_table(table_name, df)
        ctx.notes.extend(result.notes)
        ctx.uncompared[name] = result.uncompared
        ctx.stage_status[name] = "ok"
        rows = len(result.tables[name])
        seconds = time.perf_counter() - t
        stages[name] = {"status": "ok", "rows": int(rows), "seconds": seconds, "peak_rss_mb": peak_rss_mb()}
        progress.done(name, f"{rows} row{'s' if rows != 1 else ''}", seconds)
    return stages


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0, 1)


def _manifest(ctx: BuildContext, example, stages: dict, timings: dict) -> dict:
    """Versions, config, sources, notes and stage status: everything render and diff need besides the tables."""
    cfg, loaded, data, notes = ctx.config, ctx.loaded, ctx.data, ctx.notes
    skipped = data.all_skipped()
    if skipped:
        names = ", ".join(Path(f).name for f in skipped[:5])
        more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        notes = notes + [f"{len(skipped)} unreadable image files skipped: {names}{more}"]
    return {
        "schema_version": SCHEMA_VERSION,
        "complete": True,
        "created": build_timestamp(),
        "versions": {
            "qreport": qreport.__version__,
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "python": platform.python_version(),
        },
        "config": cfg.to_dict(),
        "thresholds": dataclasses.asdict(Thresholds.from_pairs(cfg.thresholds)),  # every one in force, defaults too
        "fingerprint": cfg.fingerprint(),
        "flow": ctx.flow.name,
        "engine": torch.backends.quantized.engine,
        "model": {"name": loaded.name, "source": loaded.source, "input_shape": list(data_mod.model_args(example)[0].shape[1:]),
                  "input_shapes": [list(t.shape[1:]) for t in data_mod.model_args(example)],
                  "parameters": int(sum(p.numel() for p in loaded.module.parameters()))},
        "weights": {"source": loaded.weights_source, "trained": loaded.weights_trained, "note": loaded.weights_note},
        "data": {"source": data.description, "calibration_batches": len(data.calibration),
                 "evaluation_batches": len(data.evaluation), "batch_size": cfg.batch_size,
                 "skipped_files": len(skipped), "skipped": [Path(f).name for f in skipped], "notes": notes,
                 "labels": data.labels, "classes": len(data.class_names) or None, "synthetic": data.synthetic},
        "stages": stages,
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
    }


def build(cfg: BuildConfig, out: str, force: bool = False, verbose: bool = False, quiet: bool = False,
          fail_under_sqnr: float | None = None, render_report=None, max_accuracy_drop: float | None = None,
          command: str = "") -> dict:
    """Run every stage and write the run folder ``out``; returns the manifest."""
    torch.manual_seed(cfg.seed)
    writer = RunWriter(out, force=force)  # refuses an existing --out before any work
    keep_freed_blocks()
    progress = Progress(total=3 + len(ORDER) + 1, quiet=quiet)
    try:
        metric = load_metric(cfg.metric) if cfg.metric else None
        loaded, data, example, notes, load_seconds = _load(cfg, progress, verbose, max_accuracy_drop)
        flow = make_flow(cfg, verbose)
        ctx = BuildContext(config=cfg, flow=flow, loaded=loaded, data=data, quiet=quiet, notes=notes, metric=metric)
        with flow.running():
            timings = {"load": load_seconds, **_quantize(ctx, example, progress, verbose)}
            release_freed_blocks()
            stages = _run_stages(ctx, writer, progress, verbose)
        manifest = _manifest(ctx, example, stages, timings)
        manifest["command"] = command
        gates = []
        if fail_under_sqnr is not None:
            gates.append(output_gate(ctx.tables.get("model"), fail_under_sqnr))
        if max_accuracy_drop is not None:
            gates.append(accuracy_gate(ctx.tables.get("model"), max_accuracy_drop))
        if gates:
            manifest["gates"] = gates
        fixed = fix_overrides(cfg.overrides, ctx.tables.get("fix"))
        if fixed is not None:
            writer.write_text("fix.toml", "# qreport: your overrides plus the guidance's measured changes; use with "
                              "--qconfig\n" + render_qconfig_toml(fixed, cfg.thresholds))
        writer.write_json("manifest.json", manifest)
        ctx.drop_models()
        del loaded, flow
        gc.collect()  # the models' memory is free for rendering
        t = time.perf_counter()
        if render_report is not None:
            render_report(writer.tmp)
        progress.done("render", "report.html", time.perf_counter() - t)
        writer.commit()
        return manifest
    except BaseException:
        writer.abort()
        raise
