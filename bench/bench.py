"""Speed and memory figures for qreport (``make bench``): prints tables and a targets block, asserts nothing.

For each model and number of evaluation images it runs, each in a fresh seeded process on the same synthetic data:
  build     ``qreport build`` with default stages (report rendered), timed stage by stage, with the peak RSS
            the manifest records after each stage;
  passes    plain forwards over the same images: float and int8 over the evaluation images, a second float pass,
            and one float pass over the calibration images;
  tutorial  the FX Numeric Suite tutorial's way: torch's ``add_loggers``/``add_shadow_loggers`` as the tutorial
            calls them, ``OutputLogger`` keeping every tensor, then ``extend_logger_results_with_comparison``
            (skipped where it would not fit in memory).
With resnet152 in --models it also builds the issue's reference setting (64 calibration, 16 evaluation images).
Every measurement runs under the build's allocator setting (``qreport.allocator``); the float pass is also timed
under glibc's default. It ends with the sensitivity stage against re-quantizing per layer, calibration with the
histogram and the MinMax activation observer (time, and the int8 model's output against the float one), the default
``qreport build --model mobilenet_v2`` timed from the command line, and the targets, each met or not.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # measure the source tree, as ``python -m qreport`` from ROOT does, not an older wheel
BATCH = 8
CALIB_BATCHES = 4
DEFAULT_MODELS = "mobilenet_v2,resnet18,resnet152"
DEFAULT_IMAGES = "32,512"
QUICK_MODELS = "mobilenet_v2,resnet18"
QUICK_IMAGES = "32"
# The reference whole-build setting for the large model.
REFERENCE_MODEL = "resnet152"
REFERENCE_CALIB_IMAGES = 64
REFERENCE_EVAL_IMAGES = 16
# Measured: the tutorial keeps ~33 MB per 224x224 image for mobilenet_v2 and ~16 MB for resnet18 per stage;
# resnet152's figure is estimated from its activation sizes (9x resnet18's convolution outputs).
TUTORIAL_MB_PER_IMAGE = {"mobilenet_v2": 33, "resnet18": 16, "resnet152": 150}
TUTORIAL_BUDGET_MB = 12_000
# Targets from the issue.
TWO_VIEW_TARGET = 1.3  # activations + shadow / two-view bound, at 512 images
TWO_VIEW_MODELS = ("mobilenet_v2", "resnet18")
TWO_VIEW_IMAGES = 512
BUILD_FLOOR_TARGET = 4.0  # whole build / data-pass floor, reference setting
FIX_TARGET = 1.0  # fix stage / calibrate step, reference setting
RSS_WEIGHTS_FACTOR = 3.0  # peak RSS <= 3 x float weights + 1.5 GiB
RSS_EXTRA_MB = 1536.0
RSS_GROWTH_TARGET = 1.10  # peak RSS at 512 images / at 32 images
RSS_GROWTH_IMAGES = (32, 512)
MIB = 1024.0 * 1024.0

LEGEND = f"""\
legend (seconds are wall time on this machine; every figure is the median of --repeat fresh processes)
  a+s        activations + shadow stages of qreport build (propagated and isolated views, streaming loggers)
  floor      one float + one int8 forward over the same evaluation images
  two-view   the two-view bound: two float forwards + one int8 forward over the same evaluation images
             (the propagated view needs a float and an int8 pass, the isolated view at least one more float pass)
  tutorial   the FX Numeric Suite tutorial's way (torch's add_loggers/add_shadow_loggers as the tutorial calls
             them, OutputLogger keeping every tensor + extend_logger_results_with_comparison), both views; 'skipped (memory)' where it would need more than
             {TUTORIAL_BUDGET_MB} MB; tut. MiB is its peak RSS
  build      the whole qreport build() call with default stages and the report rendered (load with BatchNorm
             re-estimation for random weights, calibrate, convert, every stage, tables, manifest, report);
             interpreter start and imports excluded
  data floor the build's data-pass floor: calibration forwards + one float + one int8 forward over the evaluation
             images; the calibration forwards are timed as one float forward over the calibration images
             (a stand-in for the observed forwards)
  peak RSS   the build process's peak resident memory (ru_maxrss), MiB; per stage: the peak so far after that
             stage, as the manifest records it ('-' for load, calibrate and convert, which it records no RSS for)
  weights    float weights' size: parameters x 4 bytes, MiB
  RSS rule   peak RSS <= {RSS_WEIGHTS_FACTOR:g} x weights + {RSS_EXTRA_MB / 1024:g} GiB (information, not asserted)
  fix/calib  fix stage seconds / calibrate step seconds (the manifest's timings_s); '-' when the fix ran no
             rung (nothing to re-quantize: its cost is not measured)
  ÷X         the figure to its left divided by X: a+s ÷ floor, a+s ÷ two-view, a+s ÷ tutorial;
             build ÷ data floor"""


def _peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / MIB if sys.platform == "darwin" else peak / 1024.0, 1)  # rounded as the manifest's


def _setup(model_name: str, images: int, calib_images: int = BATCH * CALIB_BATCHES, keep_blocks: bool = True):
    """The float model, its calibrated prepared copy, the flow and the data, as qreport builds them (under the
    build's allocator setting unless ``keep_blocks`` is False, so every comparison runs under the same one)."""
    import warnings

    warnings.simplefilter("ignore")
    import torch

    from qreport.allocator import keep_freed_blocks
    from qreport.data import synthetic
    from qreport.flows import FxStaticFlow
    from qreport.models import load_model, recalibrate_batchnorm

    if keep_blocks:
        keep_freed_blocks()
    torch.manual_seed(0)
    loaded = load_model(model_name, "auto")
    data = synthetic(loaded.input_shape, BATCH, calib_images // BATCH, images // BATCH, seed=0)
    if not loaded.weights_trained:
        recalibrate_batchnorm(loaded.module, data.calibration)
    flow = FxStaticFlow("x86")
    return loaded.module, flow.calibrated(loaded.module, data.example(), data.calibration), flow, data


def child_build(model_name: str, images: int, calib_images: int) -> dict:
    """Time one ``qreport build`` (default stages, report rendered) and return its manifest's stage records."""
    import pandas as pd

    from qreport.config import BuildConfig
    from qreport.pipeline import build
    from qreport.render.html import render_run

    render_seconds, render_errors = [], []

    def render_timed(path):
        """Render the report as ``qreport build`` does, timing it; a template error is recorded, not fatal."""
        t = time.perf_counter()
        try:
            render_run(path, in_progress=True)
        except Exception as exc:  # the build's numbers are still measured
            render_errors.append(f"{exc.__class__.__name__}: {exc}"[:200])
        render_seconds.append(time.perf_counter() - t)

    with tempfile.TemporaryDirectory() as tmp:
        cfg = BuildConfig(model=model_name, eval_batches=images // BATCH, batch_size=BATCH,
                          calib_batches=calib_images // BATCH)
        t = time.perf_counter()
        manifest = build(cfg, str(Path(tmp) / "run"), quiet=True, render_report=render_timed)
        seconds = time.perf_counter() - t
        sens = pd.read_parquet(Path(tmp) / "run" / "sensitivity.parquet")
        fix_path = Path(tmp) / "run" / "fix.parquet"
        fix_rungs = int((pd.read_parquet(fix_path).step == "rung").sum()) if fix_path.exists() else 0
    stages = {name: {"seconds": s["seconds"], "peak_rss_mb": s.get("peak_rss_mb"), "status": s["status"]}
              for name, s in manifest["stages"].items()}
    return {"seconds": seconds, "timings": manifest["timings_s"], "render": sum(render_seconds),
            "render_error": "; ".join(render_errors), "stages": stages,
            "rss_mb": _peak_rss_mb(), "parameters": manifest["model"]["parameters"],
            "torch": manifest["versions"]["torch"], "sensitivity_layers": int((sens.kind == "layer").sum()),
            "fix_rungs": fix_rungs}


def _timed_pass(model, batches) -> float:
    """Seconds for one forward of ``model`` over every batch."""
    t = time.perf_counter()
    for x in batches:
        model(x)
    return time.perf_counter() - t


def child_passes(model_name: str, images: int, calib_images: int, keep_blocks: bool = True) -> dict:
    """Plain forwards (after a warm-up batch): float over calibration; float, float again, int8 over evaluation."""
    import torch

    float_model, prepared, flow, data = _setup(model_name, images, calib_images, keep_blocks)
    quantized = flow.convert(prepared)
    calibration, evaluation = list(data.calibration), list(data.evaluation)
    with torch.no_grad():
        float_model(evaluation[0])
        quantized(evaluation[0])
        return {"calibration_float": _timed_pass(float_model, calibration),
                "float": _timed_pass(float_model, evaluation),
                "float_again": _timed_pass(float_model, evaluation),
                "int8": _timed_pass(quantized, evaluation)}


def child_requant(model_name: str, images: int, calib_images: int) -> dict:
    """One cycle of the naive sensitivity: prepare, calibrate, convert, evaluate on the sensitivity images."""
    from qreport.scoring import agreement

    float_model, prepared, flow, data = _setup(model_name, BATCH * CALIB_BATCHES, calib_images)
    example = data.example()
    few = [next(iter(data.evaluation))[:4]]
    times = []
    for _ in range(3):
        t = time.perf_counter()
        agreement(float_model, flow.convert(flow.calibrated(float_model, example, data.calibration)), few)
        times.append(time.perf_counter() - t)
    return {"seconds": statistics.median(times)}


def child_tutorial(model_name: str, images: int, calib_images: int) -> dict:
    """The tutorial's unshadowed and shadowed comparisons, tensors kept, SQNR computed afterwards."""
    import torch
    import torch.ao.ns._numeric_suite_fx as ns
    from torch.ao.ns.fx.utils import compute_sqnr

    float_model, prepared, flow, data = _setup(model_name, images, calib_images)
    batches = list(data.evaluation)
    quantized = flow.convert(prepared)
    t = time.perf_counter()  # the Numeric Suite as the tutorial calls it (qreport's patches make matching faster)
    a, b = ns.add_loggers("fp32", float_model, "int8", quantized, ns.OutputLogger)
    with torch.no_grad():
        for x in batches:
            a(x)
            b(x)
    results = ns.extract_logger_info(a, b, ns.OutputLogger, "int8")
    ns.extend_logger_results_with_comparison(results, "fp32", "int8", compute_sqnr, "sqnr")
    activations = time.perf_counter() - t
    del a, b, results
    t = time.perf_counter()
    shadow = ns.add_shadow_loggers("fp32", float_model, "int8", quantized, ns.OutputLogger)
    with torch.no_grad():
        for x in batches:
            shadow(x)
    results = ns.extract_shadow_logger_info(shadow, ns.OutputLogger, "int8")
    ns.extend_logger_results_with_comparison(results, "fp32", "int8", compute_sqnr, "sqnr")
    return {"seconds": activations + time.perf_counter() - t, "rss_mb": _peak_rss_mb()}


OBSERVERS = ("histogram", "minmax")  # the x86 backend's default activation observer, and --activation-observer's


def child_observers(model_name: str, images: int, calib_images: int) -> dict:
    """Calibration (prepare + observed forwards) with each activation observer, and the converted model's output
    SQNR and top-1 agreement with the float model over the evaluation images; the plain float pass for scale."""
    import torch

    from qreport.flows import FxStaticFlow
    from qreport.scoring import agreement

    float_model, _, _, data = _setup(model_name, images, calib_images)
    calibration, evaluation = list(data.calibration), list(data.evaluation)
    with torch.no_grad():
        float_model(calibration[0])
        out = {"calibration_float": _timed_pass(float_model, calibration)}
    for name in OBSERVERS:
        flow = FxStaticFlow("x86", activation_observer=None if name == "histogram" else name)
        t = time.perf_counter()
        prepared = flow.calibrated(float_model, data.example(), calibration)
        seconds = time.perf_counter() - t
        scored = agreement(float_model, flow.convert(prepared), evaluation)
        out[name] = {"seconds": seconds, "output_sqnr_db": scored["output_sqnr_db"],
                     "top1_agreement": scored["top1_agreement"]}
    return out


def child_passes_default_allocator(model_name: str, images: int, calib_images: int) -> dict:
    """The plain forwards under glibc's default allocator setting (what the build's setting saves)."""
    return child_passes(model_name, images, calib_images, keep_blocks=False)


CHILDREN = {"build": child_build, "passes": child_passes, "tutorial": child_tutorial, "requant": child_requant,
            "observers": child_observers, "passes_default_allocator": child_passes_default_allocator}


def run_child(kind: str, model_name: str, images: int, calib_images: int) -> dict | None:
    """Run one measurement in a fresh interpreter (clean peak RSS); its JSON, or None if it failed."""
    print(f"  {kind} {model_name}: {images} eval / {calib_images} calib images", file=sys.stderr, flush=True)
    result = subprocess.run([sys.executable, __file__, "--child", kind, model_name, str(images), str(calib_images)],
                            capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        print(f"  FAILED: {result.stderr.strip().splitlines()[-1:]}", file=sys.stderr, flush=True)
        return None
    return json.loads(result.stdout.strip().splitlines()[-1])


def median_runs(runs: list[dict | None]) -> dict | None:
    """The per-figure median of repeated runs (nested dicts too); None if any run failed."""
    if not runs or any(r is None for r in runs):
        return None
    first = runs[0]
    out = {}
    for key, value in first.items():
        values = [r[key] for r in runs]
        if isinstance(value, dict):
            out[key] = median_runs(values)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and all(v is not None for v in values):
            out[key] = statistics.median(values)
        else:
            out[key] = value
    return out


def repeated(kind: str, model_name: str, images: int, calib_images: int, repeat: int) -> dict | None:
    """The median of ``repeat`` fresh-process runs of one measurement."""
    return median_runs([run_child(kind, model_name, images, calib_images) for _ in range(repeat)])


def tutorial_fits(model_name: str, images: int) -> bool:
    """Whether the tutorial's kept tensors fit the memory budget."""
    return images * TUTORIAL_MB_PER_IMAGE.get(model_name, 33) <= TUTORIAL_BUDGET_MB


def measure(model_name: str, images: int, calib_images: int, repeat: int, with_tutorial: bool = True) -> dict:
    """Build, plain passes and (where it fits) the tutorial for one model and image count."""
    print(f"{model_name}, {images} evaluation / {calib_images} calibration images:", file=sys.stderr, flush=True)
    row = {"model": model_name, "images": images, "calib_images": calib_images,
           "build": repeated("build", model_name, images, calib_images, repeat),
           "passes": repeated("passes", model_name, images, calib_images, repeat),
           "tutorial": None, "tutorial_skipped": False}
    if with_tutorial:
        if tutorial_fits(model_name, images):
            row["tutorial"] = repeated("tutorial", model_name, images, calib_images, repeat)
        else:
            row["tutorial_skipped"] = True
    return row


def derived(row: dict) -> dict:
    """The figures the tables print, computed from one row's medians (None where a run failed)."""
    build, passes, tut = row["build"], row["passes"], row["tutorial"]
    d = dict.fromkeys(["act", "shadow", "both", "floor", "two_view", "data_floor", "whole", "rss", "weights",
                       "rss_limit", "fix_calib", "tutorial", "tutorial_rss"])
    if passes:
        d["floor"] = passes["float"] + passes["int8"]
        d["two_view"] = passes["float"] + passes["float_again"] + passes["int8"]
        d["data_floor"] = passes["calibration_float"] + d["floor"]
    if build:
        stages = build["stages"]
        d["act"], d["shadow"] = stages["activations"]["seconds"], stages["shadow"]["seconds"]
        d["both"] = d["act"] + d["shadow"]
        d["whole"], d["rss"] = build["seconds"], build["rss_mb"]
        d["weights"] = build["parameters"] * 4 / MIB
        d["rss_limit"] = RSS_WEIGHTS_FACTOR * d["weights"] + RSS_EXTRA_MB
        if "fix" in stages and build["timings"].get("calibrate") and build.get("fix_rungs"):  # no rung: no cost
            d["fix_calib"] = stages["fix"]["seconds"] / build["timings"]["calibrate"]
    if tut:
        d["tutorial"], d["tutorial_rss"] = tut["seconds"], tut["rss_mb"]
    return d


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing."""
    return a / b if a is not None and b else None


def number(value: float | None, digits: int = 2) -> str:
    """A number with ``digits`` decimals, or a dash when missing."""
    return "-" if value is None else f"{value:.{digits}f}"


def cell(value, width: int, digits: int = 1) -> str:
    """A right-aligned number, or a dash when missing (text passes through)."""
    if value is None:
        return f"{'-':>{width}}"
    if isinstance(value, str):
        return f"{value:>{width}}"
    return f"{value:>{width}.{digits}f}"


def print_stage_table(rows: list[dict]) -> None:
    """Comparison stages against the floor, the two-view bound and the tutorial."""
    header = (f"{'model':<13}{'images':>7}{'activ s':>9}{'shadow s':>9}{'a+s s':>8}{'floor s':>9}{'÷floor':>8}"
              f"{'two-view s':>11}{'÷two-view':>10}{'tutorial s':>18}{'÷tutorial':>10}{'tut. MiB':>9}")
    print(header)
    print("-" * len(header))
    for row in rows:
        d = derived(row)
        tutorial = "skipped (memory)" if row["tutorial_skipped"] else d["tutorial"]
        print(f"{row['model']:<13}{row['images']:>7}{cell(d['act'], 9)}{cell(d['shadow'], 9)}{cell(d['both'], 8)}"
              f"{cell(d['floor'], 9, 2)}{cell(ratio(d['both'], d['floor']), 8, 2)}{cell(d['two_view'], 11, 2)}"
              f"{cell(ratio(d['both'], d['two_view']), 10, 2)}{cell(tutorial, 18)}"
              f"{cell(ratio(d['both'], d['tutorial']), 10, 2)}{cell(d['tutorial_rss'], 9, 0)}")


def print_build_table(rows: list[dict]) -> None:
    """Whole build against its data-pass floor, and peak RSS against the float weights."""
    header = (f"{'model':<13}{'eval':>5}{'calib':>6}{'build s':>9}{'data floor s':>13}{'÷floor':>8}{'fix/calib':>10}"
              f"{'peak RSS MiB':>13}{'weights MiB':>12}{'RSS÷weights':>12}{'RSS limit MiB':>14}{'RSS rule':>9}")
    print(header)
    print("-" * len(header))
    for row in rows:
        d = derived(row)
        rule = None if d["rss"] is None else "pass" if d["rss"] <= d["rss_limit"] else "fail"
        print(f"{row['model']:<13}{row['images']:>5}{row['calib_images']:>6}{cell(d['whole'], 9)}"
              f"{cell(d['data_floor'], 13, 2)}{cell(ratio(d['whole'], d['data_floor']), 8, 2)}"
              f"{cell(d['fix_calib'], 10, 2)}{cell(d['rss'], 13, 0)}{cell(d['weights'], 12, 1)}"
              f"{cell(ratio(d['rss'], d['weights']), 12, 1)}{cell(d['rss_limit'], 14, 0)}{cell(rule, 9)}")


def stage_names(builds: list[dict]) -> list[str]:
    """Every step and stage the builds ran, in build order."""
    names = ["load", "calibrate", "convert"]
    for build in builds:
        names += [n for n in build["stages"] if n not in names]
    return names + ["render"]


def step_figures(build: dict | None, name: str) -> tuple[float | None, float | None]:
    """(seconds, peak RSS MiB so far) of one step or stage of a build; RSS is not recorded before the stages."""
    if build is None:
        return None, None
    if name == "render":
        return build["render"], build["rss_mb"]
    if name in build["timings"]:
        return build["timings"][name], None
    stage = build["stages"].get(name)
    return (stage["seconds"], stage["peak_rss_mb"]) if stage else (None, None)


def print_per_stage(model_name: str, rows: list[dict]) -> None:
    """Seconds and peak RSS so far after each stage, one column pair per image count."""
    builds = [row["build"] for row in rows]
    labels = [f"{row['images']}e/{row['calib_images']}c" for row in rows]
    print(f"{model_name}: per stage (e = evaluation images, c = calibration images)")
    print(f"{'stage':<13}" + "".join(f"{label + ' s':>13}{'MiB':>8}" for label in labels))
    for name in stage_names([b for b in builds if b]):
        figures = [step_figures(b, name) for b in builds]
        print(f"{name:<13}" + "".join(f"{cell(s, 13, 2)}{cell(m, 8, 0)}" for s, m in figures))
    print(f"{'whole build':<13}" + "".join(f"{cell(b and b['seconds'], 13, 2)}{cell(b and b['rss_mb'], 8, 0)}"
                                           for b in builds))


def rss_growth(rows: list[dict]) -> tuple[int, int, float | None]:
    """(fewest images, most images, peak RSS at most / at fewest) over one model's rows."""
    by_images = {row["images"]: derived(row)["rss"] for row in rows}
    low, high = min(by_images), max(by_images)
    return low, high, ratio(by_images[high], by_images[low])


def sensitivity_line(rows: list[dict]) -> str:
    """The sensitivity stage against re-quantizing per layer, for the default mobilenet_v2 build."""
    row = next((r for r in rows if r["model"] == "mobilenet_v2" and r["images"] == BATCH * CALIB_BATCHES
                and r["calib_images"] == BATCH * CALIB_BATCHES and r["build"]), None)
    if row is None:
        return "sensitivity vs re-quantizing per layer: not measured (needs mobilenet_v2 at 32 images)"
    requant = run_child("requant", "mobilenet_v2", 32, BATCH * CALIB_BATCHES)
    build = row["build"]
    n, seconds = build["sensitivity_layers"], build["stages"]["sensitivity"]["seconds"]
    if requant is None:
        return f"sensitivity, mobilenet_v2 defaults: {seconds:.1f} s; re-quantizing per layer: failed"
    naive = 2 * n * requant["seconds"]
    return (f"sensitivity, mobilenet_v2 defaults ({n} layers x 2 configurations, 4 images, simulated): "
            f"{seconds:.1f} s; re-quantizing per layer instead: 2 x {n} x {requant['seconds']:.2f} s "
            f"(one prepare/calibrate/convert/evaluate cycle, median of 3) = {naive:.0f} s, "
            f"{naive / seconds:.0f}x slower")


def print_observer_table(measured: dict[str, dict | None], images: int, calib_images: int) -> None:
    """Calibration time and output agreement with each activation observer (``--activation-observer``)."""
    print(f"activation observers: calibration over {calib_images} images (prepare + observed forwards), output "
          f"against the float model over {images} images")
    header = (f"{'model':<13}{'observer':>11}{'calibrate s':>13}{'÷float pass':>13}{'output SQNR dB':>16}"
              f"{'top-1 agree':>13}")
    print(header)
    print("-" * len(header))
    for model_name, figures in measured.items():
        for name in OBSERVERS:
            f = figures and figures[name]
            print(f"{model_name:<13}{name:>11}{cell(f and f['seconds'], 13, 2)}"
                  f"{cell(ratio(f and f['seconds'], figures and figures['calibration_float']), 13, 2)}"
                  f"{cell(f and f['output_sqnr_db'], 16, 2)}{cell(f and 100 * f['top1_agreement'], 12, 1)}%")


def allocator_lines(rows: list[dict], repeat: int) -> list[str]:
    """The float pass over the most evaluation images under glibc's default allocator setting against the build's
    (``qreport.allocator``), for the models of --quick."""
    lines = []
    for model_name in QUICK_MODELS.split(","):
        row = max((r for r in rows if r["model"] == model_name and r["passes"]), key=lambda r: r["images"],
                  default=None)
        if row is None:
            continue
        default = repeated("passes_default_allocator", model_name, row["images"], row["calib_images"], repeat)
        kept = row["passes"]["float"]
        lines.append(f"allocator: {model_name}'s float pass over {row['images']} images took "
                     f"{number(default and default['float'], 2)} s with glibc's default setting, {kept:.2f} s with "
                     f"the build's (large freed blocks kept between batches): "
                     f"{number(ratio(default and default['float'], kept), 2)}x")
    return lines


def default_build_seconds() -> float | None:
    """Wall time of ``qreport build --model mobilenet_v2`` with defaults, interpreter start and import included."""
    print("  qreport build --model mobilenet_v2 (command line)", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "qreport", "build", "--model", "mobilenet_v2", "--out",
                               str(Path(tmp) / "run"), "-q"], cwd=ROOT, capture_output=True)
        return time.perf_counter() - t if done.returncode == 0 else None


def git_output(*argv: str) -> str:
    """One git command's output in ROOT, or '' if git is missing."""
    try:
        return subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def source_state() -> str:
    """The commit measured, and whether qreport/ had uncommitted changes."""
    commit = git_output("rev-parse", "--short", "HEAD") or "unknown commit"
    dirty = git_output("status", "--porcelain", "--", "qreport")
    return f"{commit}{' + uncommitted changes in qreport/' if dirty else ''}"


def load_average() -> str:
    """The 1-minute load average (other work on the machine skews every figure)."""
    return f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "n/a"


def verdict(value: float | None, limit: float) -> str:
    """'met' when value <= limit, 'not met' above, 'not measured' when missing."""
    if value is None:
        return "not measured"
    return "met" if value <= limit else "not met"


def targets(rows: list[dict], reference: dict | None) -> list[tuple[str, str, str]]:
    """(target, measured value, met / not met) for each of the issue's targets."""
    out = []
    by_model: dict[str, list[dict]] = {}
    for row in rows:
        by_model.setdefault(row["model"], []).append(row)
    for model_name in TWO_VIEW_MODELS:
        row = next((r for r in by_model.get(model_name, []) if r["images"] == TWO_VIEW_IMAGES), None)
        d = derived(row) if row else {}
        value = ratio(d.get("both"), d.get("two_view"))
        out.append((f"{model_name}: a+s ≤ {TWO_VIEW_TARGET} x two-view bound at {TWO_VIEW_IMAGES} images",
                    number(value, 2), verdict(value, TWO_VIEW_TARGET)))
    for model_name, model_rows in by_model.items():
        measured = [(r["images"], ratio(derived(r)["both"], derived(r)["tutorial"])) for r in model_rows]
        ran = [(n, v) for n, v in measured if v is not None]
        skipped = [str(r["images"]) for r in model_rows if r["tutorial_skipped"]]
        worst = max(ran, key=lambda nv: nv[1]) if ran else None
        value = f"max a+s÷tutorial {worst[1]:.2f} (at {worst[0]} images)" if worst else "-"
        if skipped:
            value += f"; tutorial skipped (memory) at {', '.join(skipped)} images"
        out.append((f"{model_name}: a+s never slower than the tutorial", value,
                    verdict(worst[1] if worst else None, 1.0)))
    ref = derived(reference) if reference else {}
    value = ratio(ref.get("whole"), ref.get("data_floor"))
    out.append((f"{REFERENCE_MODEL} whole build ({REFERENCE_CALIB_IMAGES} calib / {REFERENCE_EVAL_IMAGES} eval) "
                f"≤ {BUILD_FLOOR_TARGET:g} x data-pass floor", number(value, 2),
                verdict(value, BUILD_FLOOR_TARGET)))
    value = ref.get("fix_calib")
    out.append((f"{REFERENCE_MODEL} fix ≤ one extra calibration (fix s ÷ calibrate s)", number(value, 2),
                verdict(value, FIX_TARGET)))
    for model_name, model_rows in by_model.items():
        every = model_rows + ([reference] if reference and reference["model"] == model_name else [])
        figures = [derived(r) for r in every if r["build"]]
        worst = max(figures, key=lambda d: d["rss"] / d["rss_limit"]) if figures else None
        value = f"{worst['rss']:.0f} MiB of {worst['rss_limit']:.0f} MiB" if worst else "-"
        out.append((f"{model_name}: peak RSS ≤ {RSS_WEIGHTS_FACTOR:g} x weights + {RSS_EXTRA_MB / 1024:g} GiB "
                    "(information)", value, verdict(worst["rss"] / worst["rss_limit"] if worst else None, 1.0)))
    low, high = RSS_GROWTH_IMAGES
    for model_name, model_rows in by_model.items():
        pair = {r["images"]: derived(r)["rss"] for r in model_rows if r["images"] in (low, high)}
        value = ratio(pair.get(high), pair.get(low))
        out.append((f"{model_name}: peak RSS at {high} ÷ at {low} images ≤ {RSS_GROWTH_TARGET:.2f}",
                    number(value, 3), verdict(value, RSS_GROWTH_TARGET)))
    return out


def print_targets(rows: list[dict], reference: dict | None) -> None:
    """The targets block: each target, the measured value, met / not met."""
    print("targets (met / not met / not measured, the target, then the measured value)")
    for target, value, met in targets(rows, reference):
        print(f"  {met:<14}{target}: {value}")


def parse_args() -> argparse.Namespace:
    """The command line; --quick sets small defaults for a smoke run."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", help=f"comma-separated (default {DEFAULT_MODELS}; --quick: {QUICK_MODELS})")
    parser.add_argument("--images", help=f"evaluation image counts, multiples of {BATCH} (default {DEFAULT_IMAGES}; "
                                         f"--quick: {QUICK_IMAGES})")
    parser.add_argument("--repeat", type=int, help="fresh-process runs per measurement, the median is printed "
                                                   "(default 3; --quick: 1)")
    parser.add_argument("--quick", action="store_true", help="smoke run: the small models at 32 images, once")
    parser.add_argument("--json", metavar="PATH", help="also write every measurement to this JSON file")
    parser.add_argument("--child", nargs=4, metavar=("KIND", "MODEL", "IMAGES", "CALIB"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.models = (args.models or (QUICK_MODELS if args.quick else DEFAULT_MODELS)).split(",")
    args.images = [int(n) for n in (args.images or (QUICK_IMAGES if args.quick else DEFAULT_IMAGES)).split(",")]
    args.repeat = args.repeat or (1 if args.quick else 3)
    return args


def main() -> int:
    """Run a child measurement (--child), or every measurement and print the tables and targets."""
    args = parse_args()
    if args.child:
        kind, model_name, images, calib_images = args.child
        print(json.dumps(CHILDREN[kind](model_name, int(images), int(calib_images))))
        return 0

    calib = BATCH * CALIB_BATCHES
    load_at_start, started = load_average(), time.perf_counter()
    rows = [measure(m, n, calib, args.repeat) for m in args.models for n in args.images]
    reference = None
    if REFERENCE_MODEL in args.models:
        reference = measure(REFERENCE_MODEL, REFERENCE_EVAL_IMAGES, REFERENCE_CALIB_IMAGES, args.repeat,
                            with_tutorial=False)
    sensitivity = sensitivity_line(rows)
    observer_images = min(args.images)
    observers = {m: repeated("observers", m, observer_images, calib, args.repeat) for m in args.models}
    allocator = allocator_lines(rows, args.repeat)
    default_build = default_build_seconds()

    print(f"qreport bench · {time.strftime('%Y-%m-%d')} · torch {version('torch')} · {os.cpu_count()} cores · "
          f"batch {BATCH}, synthetic 224x224 inputs, random weights (BatchNorm re-estimated), x86 backend · "
          f"models {','.join(args.models)} · images {','.join(map(str, args.images))} · "
          f"{calib} calibration images · median of {args.repeat}")
    print(f"source {source_state()} · load average {load_at_start} at start, {load_average()} at end · "
          f"bench took {(time.perf_counter() - started) / 60:.1f} min")
    print(LEGEND)
    print()
    print_stage_table(rows)
    print()
    print_build_table(rows + ([reference] if reference else []))
    if reference:
        print(f"(the {REFERENCE_MODEL} row with {REFERENCE_EVAL_IMAGES} eval / {REFERENCE_CALIB_IMAGES} calib images "
              "is the issue's whole-build reference setting, default stages)")
    for model_name in args.models:
        model_rows = [r for r in rows if r["model"] == model_name]
        extra = [reference] if reference and reference["model"] == model_name else []
        print()
        print_per_stage(model_name, model_rows + extra)
    print()
    for model_name in args.models:
        low, high, growth = rss_growth([r for r in rows if r["model"] == model_name])
        if high != low:
            print(f"{model_name}: peak RSS at {high} images ÷ at {low} images = {number(growth, 3)}")
    for row in rows + ([reference] if reference else []):
        if row["build"] and row["build"]["render_error"]:
            print(f"{row['model']} at {row['images']} images: the report did not render "
                  f"({row['build']['render_error']})")
    print(sensitivity)
    for line in allocator:
        print(line)
    print()
    print_observer_table(observers, observer_images, calib)
    print()
    print(f"default build (qreport build --model mobilenet_v2, interpreter start and import included): "
          f"{number(default_build, 1)} s")
    print()
    print_targets(rows, reference)
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "reference": reference, "observers": observers},
                                              indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
