"""Speed and memory figures for qreport (``make bench``): prints one table, asserts nothing.

For each model and number of evaluation images it runs, each in a fresh process on the same seeded data:
  qreport   the activations and shadow stages of ``qreport build`` (streaming loggers), and its peak RSS;
  tutorial  the FX Numeric Suite tutorial's way: ``OutputLogger`` keeping every tensor, then
            ``extend_logger_results_with_comparison`` (skipped where it would not fit in memory);
  floor     one float forward plus one int8 forward over the same images.
It also times the default ``qreport build --model mobilenet_v2``, import included.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BATCH = 8
CALIB_BATCHES = 4
# Measured: the tutorial keeps ~33 MB per 224x224 image for mobilenet_v2 and ~16 MB for resnet18 per stage.
TUTORIAL_MB_PER_IMAGE = {"mobilenet_v2": 33, "resnet18": 16}
TUTORIAL_BUDGET_MB = 12_000


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _setup(model_name: str, images: int):
    """The float model, its calibrated prepared copy and the evaluation batches, as qreport builds them."""
    import warnings

    warnings.simplefilter("ignore")
    import torch

    from qreport.data import synthetic
    from qreport.flows import FxStaticFlow
    from qreport.models import load_model, recalibrate_batchnorm

    torch.manual_seed(0)
    loaded = load_model(model_name, "auto")
    data = synthetic(loaded.input_shape, BATCH, CALIB_BATCHES, images // BATCH, seed=0)
    if not loaded.weights_trained:
        recalibrate_batchnorm(loaded.module, data.calibration)
    flow = FxStaticFlow("x86")
    return loaded.module, flow.calibrated(loaded.module, data.example(), data.calibration), flow, data


def child_qreport(model_name: str, images: int) -> dict:
    """Time ``qreport build`` stage by stage and report this process's peak RSS."""
    from qreport.config import BuildConfig
    from qreport.pipeline import build

    import pandas as pd

    with tempfile.TemporaryDirectory() as tmp:
        cfg = BuildConfig(model=model_name, eval_batches=images // BATCH, batch_size=BATCH, calib_batches=CALIB_BATCHES)
        manifest = build(cfg, str(Path(tmp) / "run"), quiet=True)
        sens = pd.read_parquet(Path(tmp) / "run" / "sensitivity.parquet")
    stages = {k: v["seconds"] for k, v in manifest["stages"].items()}
    return {"stages": stages, "rss_mb": _peak_rss_mb(), "sensitivity_layers": int((sens.kind == "layer").sum())}


def child_requant(model_name: str, images: int) -> dict:
    """One cycle of the naive sensitivity: prepare, calibrate, convert, evaluate on the sensitivity images."""
    from qreport.scoring import agreement

    float_model, prepared, flow, data = _setup(model_name, BATCH * CALIB_BATCHES)
    example = data.example()
    few = [next(iter(data.evaluation))[:4]]
    times = []
    for _ in range(3):
        t = time.perf_counter()
        agreement(float_model, flow.convert(flow.calibrated(float_model, example, data.calibration)), few)
        times.append(time.perf_counter() - t)
    return {"seconds": statistics.median(times)}


def child_tutorial(model_name: str, images: int) -> dict:
    """The tutorial's unshadowed and shadowed comparisons, tensors kept, SQNR computed afterwards."""
    import torch
    import torch.ao.ns._numeric_suite_fx as ns
    from torch.ao.ns.fx.utils import compute_sqnr

    float_model, prepared, flow, data = _setup(model_name, images)
    batches = list(data.evaluation)
    t = time.perf_counter()
    a, b = flow.ns_logged_models(float_model, prepared, ns.OutputLogger)
    with torch.no_grad():
        for x in batches:
            a(x)
            b(x)
    results = ns.extract_logger_info(a, b, ns.OutputLogger, "int8")
    ns.extend_logger_results_with_comparison(results, "fp32", "int8", compute_sqnr, "sqnr")
    activations = time.perf_counter() - t
    del a, b, results
    t = time.perf_counter()
    shadow, _ = flow.ns_shadow_model(float_model, prepared, ns.OutputLogger)
    with torch.no_grad():
        for x in batches:
            shadow(x)
    results = ns.extract_shadow_logger_info(shadow, ns.OutputLogger, "int8")
    ns.extend_logger_results_with_comparison(results, "fp32", "int8", compute_sqnr, "sqnr")
    return {"activations": activations, "shadow": time.perf_counter() - t, "rss_mb": _peak_rss_mb()}


def child_floor(model_name: str, images: int) -> dict:
    """One float forward plus one int8 forward over the same images (after a warm-up batch)."""
    import torch

    float_model, prepared, flow, data = _setup(model_name, images)
    quantized = flow.convert(prepared)
    batches = list(data.evaluation)
    with torch.no_grad():
        float_model(batches[0])
        quantized(batches[0])
        t = time.perf_counter()
        for x in batches:
            float_model(x)
            quantized(x)
    return {"seconds": time.perf_counter() - t, "rss_mb": _peak_rss_mb()}


def run_child(kind: str, model_name: str, images: int) -> dict:
    """Run one measurement in a fresh interpreter (clean peak RSS) and return its JSON."""
    result = subprocess.run([sys.executable, __file__, "--child", kind, model_name, str(images)],
                            capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        raise RuntimeError(f"{kind} {model_name} {images}: {result.stderr.strip().splitlines()[-1:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def default_build_seconds() -> float:
    """Wall time of ``qreport build --model mobilenet_v2`` with defaults, interpreter start and import included."""
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "qreport", "build", "--model", "mobilenet_v2", "--out",
                        str(Path(tmp) / "run"), "-q"], check=True, cwd=ROOT)
        return time.perf_counter() - t


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="mobilenet_v2,resnet18")
    parser.add_argument("--images", default="32,128,512")
    parser.add_argument("--repeat", type=int, default=3, help="floor repetitions (the median is printed)")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "MODEL", "IMAGES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, model_name, images = args.child
        fn = {"qreport": child_qreport, "tutorial": child_tutorial, "floor": child_floor, "requant": child_requant}[kind]
        print(json.dumps(fn(model_name, int(images))))
        return 0

    print(f"qreport bench · {time.strftime('%Y-%m-%d')} · {os.cpu_count()} cores · batch {BATCH}, "
          f"synthetic 224x224 inputs, x86 backend", flush=True)
    header = (f"{'model':<13}{'images':>7}{'activ s':>9}{'shadow s':>9}{'a+s s':>8}{'floor s':>9}{'/floor':>8}"
              f"{'tutor. s':>10}{'/tutor.':>8}{'RSS MB':>8}{'tut. MB':>9}")
    print(header)
    print("-" * len(header), flush=True)
    for model_name in args.models.split(","):
        rss = {}
        for images in (int(n) for n in args.images.split(",")):
            q = run_child("qreport", model_name, images)
            floor = statistics.median(run_child("floor", model_name, images)["seconds"] for _ in range(args.repeat))
            both = q["stages"]["activations"] + q["stages"]["shadow"]
            rss[images] = q["rss_mb"]
            if images * TUTORIAL_MB_PER_IMAGE.get(model_name, 33) <= TUTORIAL_BUDGET_MB:
                tut = run_child("tutorial", model_name, images)
                tut_s = tut["activations"] + tut["shadow"]
                tut_cols = f"{tut_s:>10.1f}{both / tut_s:>8.2f}"
                tut_rss = f"{tut['rss_mb']:>9.0f}"
            else:
                tut_cols = f"{'(too big)':>10}{'':>8}"
                tut_rss = f"{'':>9}"
            print(f"{model_name:<13}{images:>7}{q['stages']['activations']:>9.1f}{q['stages']['shadow']:>9.1f}"
                  f"{both:>8.1f}{floor:>9.2f}{both / floor:>8.2f}{tut_cols}{q['rss_mb']:>8.0f}{tut_rss}", flush=True)
        sizes = sorted(rss)
        print(f"{model_name}: peak RSS at {sizes[-1]} images / at {sizes[0]} images = "
              f"{rss[sizes[-1]] / rss[sizes[0]]:.3f}", flush=True)
    q = run_child("qreport", "mobilenet_v2", 32)
    cycle = run_child("requant", "mobilenet_v2", 32)["seconds"]
    n = q["sensitivity_layers"]
    naive = 2 * n * cycle
    print(f"sensitivity, mobilenet_v2 defaults ({n} layers x 2 configurations, 4 images, simulated): "
          f"{q['stages']['sensitivity']:.1f} s; re-quantizing per layer instead: 2 x {n} x {cycle:.2f} s "
          f"(one prepare/calibrate/convert/evaluate cycle, median of 3) = {naive:.0f} s, "
          f"{naive / q['stages']['sensitivity']:.0f}x slower")
    print(f"default build (qreport build --model mobilenet_v2, import included): {default_build_seconds():.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
