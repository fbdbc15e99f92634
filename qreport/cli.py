"""Command line: ``qreport build | render | diff | sweep | models``; each subcommand returns an exit code."""

from __future__ import annotations

import argparse
import difflib
import math
import re
import shlex
import signal
import sys
import traceback

from qreport import __version__, interrupt
from qreport.config import ACTIVATION_OBSERVERS
from qreport.errors import (EXIT_GATE_FAILED, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, EXIT_RUN_DIR, EXIT_USAGE,
                            InputError, QReportError, first_line)

EPILOG = """exit codes: 0 ok · 1 gate failed · 2 usage · 3 bad input (model, weights, data, qconfig)
            4 unreadable run folder or runs of different models · 5 output not writable · 70 internal error
            130 interrupted"""


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(p) for p in text.replace("x", ",").split(",") if p.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a shape like 3,224,224") from None
    if not shape or any(d < 1 for d in shape):
        raise argparse.ArgumentTypeError(f"{text!r} is not a shape like 3,224,224")
    return shape


class _Parser(argparse.ArgumentParser):
    """argparse without prefix matching (``--mod`` is not ``--model``) and with a suggestion for a mistyped option
    or subcommand: ``unrecognized arguments: --modle (did you mean --model?)``."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_args(self, args=None, namespace=None):
        """Parse like argparse; unknown options are reported by the subcommand that got them, with suggestions."""
        ns, extras = self.parse_known_args(args, namespace)
        if extras:
            sub = next((a.choices.get(getattr(ns, a.dest, None)) for a in self._actions
                        if isinstance(a, argparse._SubParsersAction)), None) or self
            options = [o for a in sub._actions for o in a.option_strings if o.startswith("--")]
            hints = [f"{e} (did you mean {' or '.join(m)}?)" if e.startswith("--") and (m := _closest(e, options))
                     else e for e in extras]
            sub.error(f"unrecognized arguments: {' '.join(hints)}")
        return ns

    def error(self, message):
        """Add the closest subcommand to argparse's 'invalid choice' message."""
        bad = re.match(r"argument (\w+): invalid choice: '([^']*)' \(choose from (.*)\)$", message)
        if bad:
            match = _closest(bad.group(2), re.findall(r"'([^']*)'", bad.group(3)))
            if match:
                message += f"; did you mean {' or '.join(repr(m) for m in match)}?"
        super().error(message)


def _typos(a: str, b: str) -> int:
    """Edits (insert, delete, replace, swap two neighbours) that turn ``a`` into ``b``."""
    prev2, prev = None, list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        row = [i]
        for j, cb in enumerate(b, 1):
            row.append(min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (ca != cb)))
            if prev2 is not None and i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                row[j] = min(row[j], prev2[j - 2] + 1)
        prev2, prev = prev, row
    return prev[-1]


def _closest(word: str, options: list[str]) -> list[str]:
    """What a mistyped ``word`` probably meant: every option it begins (``--mod``: --mode, --model), else the one
    option a few typos away (ties go to the same length, then the most similar)."""
    word = word.split("=")[0]
    begun = [o for o in options if o.startswith(word)]
    if begun:
        return begun[:3]
    ranked = sorted(options, key=lambda o: (_typos(word, o), abs(len(o) - len(word)),
                                            -difflib.SequenceMatcher(None, word, o).ratio(), o))
    return ranked[:1] if ranked and _typos(word, ranked[0]) <= max(2, len(word) // 4) else []


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-v", "--verbose", action="store_true", help="show torch's warnings and the Numeric Suite's messages")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    p.add_argument("--debug", action="store_true", help="show the full traceback on errors")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    from qreport.diff import SAME_WITHIN_DB
    parser = _Parser(
        prog="qreport",
        description="Explain why a quantized PyTorch model lost accuracy: compare it with its float model layer by "
        "layer and write one self-contained HTML report.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"qreport {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    b = sub.add_parser(
        "build",
        help="quantize a model, run every comparison stage and write the report",
        description="Load the float model, quantize it (FX graph mode: static PTQ by default, --mode dynamic or qat),\n"
        "then run the stages in order: weights, activations (propagated), shadow (isolated), model, channels,\n"
        "sensitivity, coverage, guidance, fix. Each stage writes <out>/<stage>.parquet; the run ends with\n"
        "manifest.json and report.html.",
        epilog="examples:\n  qreport build --model mobilenet_v2\n"
        "  qreport build --model mobilenet_v2 --qconfig examples/seed_scenario.toml --out reports/seed\n"
        "  qreport build --model mypkg.nets:small_cnn --input-shape 3,32,32 --data ./images\n"
        "  qreport build --model examples/qat_model.py:qat_cnn --mode qat\n\n" + EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    b.add_argument("--model", default="mobilenet_v2",
                   help="a torchvision classifier name (see 'qreport models'), pkg.module:factory or file.py:factory "
                   "(default: %(default)s)")
    b.add_argument("--weights", default="auto",
                   help="auto (pretrained if the torch hub cache or a download has it, else random init with a warning), "
                   "none, or a torchvision weights name like IMAGENET1K_V1 (default: %(default)s)")
    b.add_argument("--checkpoint", metavar="PATH", help="a state_dict file to load (read with weights_only=True)")
    b.add_argument("--mode", choices=("static", "dynamic", "qat", "weight-only"), default="static",
                   help="static post-training quantization; dynamic (int8 weights of Linear/LSTM/GRU, activations "
                   "quantized per batch); or qat (compare a model prepared for quantization-aware training, fake-quant "
                   "ranges frozen, with its int8 conversion; a float model is prepared with the default QAT qconfigs); "
                   "with --flow pt2e, weight-only or dynamic quantize Linear layers with torchao's quantize_ "
                   "(default: %(default)s)")
    b.add_argument("--flow", choices=("fx", "pt2e"), default="fx",
                   help="fx: FX graph mode quantization and its Numeric Suite; pt2e: torch.export and a torchao quantizer "
                   "(static PTQ; needs the optional torchao, pip install --no-deps torchao==0.18.0) (default: %(default)s)")
    b.add_argument("--quantizer", choices=("x86", "arm", "xnnpack"), default=None,
                   help="with --flow pt2e: X86InductorQuantizer, ArmInductorQuantizer or the XNNPACK quantizer "
                   "(per-channel symmetric weights) (default: x86)")
    b.add_argument("--weight-bits", type=int, choices=(8, 4), default=8,
                   help="--flow pt2e --mode weight-only: int8 weights (one scale per output channel), or int4 in groups "
                   "of 32 input features (default: %(default)s)")
    b.add_argument("--non-traceable", action="append", default=[], metavar="MODULE_OR_CLASS",
                   help="a module path or class name torch.fx cannot trace: it stays float and untraced (repeatable)")
    b.add_argument("--backend", choices=("x86", "qnnpack"),
                   help="FX's quantized engine (default: x86); --flow pt2e picks its kernels with --quantizer")
    b.add_argument("--activation-observer", choices=ACTIVATION_OBSERVERS, metavar="|".join(ACTIVATION_OBSERVERS),
                   help="observer of every activation the backend's default qconfig observes (static FX builds; "
                   "default: the backend's, histogram). minmax calibrates about 1.5x faster and costs about a dB of "
                   "output SQNR (README: Performance). A --qconfig file's per-module observers still win")
    b.add_argument("--qconfig", metavar="FILE",
                   help="TOML file of per-module overrides, e.g. [modules] \"features.0\" = \"float\" "
                   "(presets: float, default, per_tensor, per_channel, histogram)")
    b.add_argument("--data", default="synthetic", metavar="synthetic|DIR|FILE.pt",
                   help="calibration/evaluation inputs: seeded synthetic tensors, an image folder (preprocessed with the "
                   "weights' transforms; unreadable files are skipped and counted) or a torch.save'd tensor [N, ...] "
                   "(default: %(default)s)")
    b.add_argument("--eval-data", metavar="DIR|FILE.pt",
                   help="evaluate on this source instead of the images after the calibration ones in --data")
    b.add_argument("--calib-batches", type=_positive, default=4, metavar="N", help="calibration batches (default: %(default)s)")
    b.add_argument("--eval-batches", type=_positive, default=4, metavar="N", help="evaluation batches (default: %(default)s)")
    b.add_argument("--batch-size", type=_positive, default=8, metavar="N", help="inputs per batch (default: %(default)s)")
    b.add_argument("--input-shape", type=_shape, metavar="C,H,W",
                   help="input shape without the batch dimension (default: from the weights, else 3,224,224)")
    b.add_argument("--seed", type=int, default=0, help="seed for synthetic data and random init (default: %(default)s)")
    b.add_argument("--out", metavar="DIR", help="run folder to write (default: reports/<model>)")
    b.add_argument("--force", action="store_true", help="replace an existing run folder (only once the new run is complete)")
    b.add_argument("--target-sqnr", type=float, default=30.0, metavar="DB",
                   help="output SQNR the suggested float set aims for (default: %(default)s)")
    b.add_argument("--target-accuracy-drop", type=float, metavar="POINTS",
                   help="with labelled data, the remedy ladder climbs until int8 accuracy is within POINTS percentage "
                   "points of float (default: it aims at --target-sqnr)")
    b.add_argument("--sensitivity-images", type=_positive, default=4, metavar="N",
                   help="evaluation images per simulated sensitivity pass (default: %(default)s)")
    b.add_argument("--sensitivity-layers", type=_positive, metavar="N",
                   help="simulate only the N layers with the lowest isolated SQNR (then propagated, then weight "
                   "SQNR); bounds the time on large models (default: every layer)")
    b.add_argument("--metric", metavar="pkg.mod:fn",
                   help="your task metric, a function (outputs, labels) -> float, higher is better, computed on the "
                   "labelled evaluation data for both models (default: top-1 accuracy when the labels are classes)")
    b.add_argument("--fail-under-sqnr", type=float, metavar="DB",
                   help="CI gate: exit 1 (report still written) if the model output SQNR is below DB")
    b.add_argument("--max-accuracy-drop", type=float, metavar="POINTS",
                   help="CI gate on labelled data: exit 1 (report still written) if float accuracy minus int8 accuracy "
                   "exceeds POINTS percentage points, e.g. 1")
    _add_common(b)
    b.set_defaults(func=cmd_build)

    r = sub.add_parser("render", help="re-render report.html from a run folder (no model, no torch)",
                       description="Rebuild <RUN_DIR>/report.html from the run's Parquet files and manifest alone.")
    r.add_argument("run_dir", metavar="RUN_DIR")
    _add_common(r)
    r.set_defaults(func=cmd_render)

    d = sub.add_parser(
        "diff", help="compare two run folders layer by layer (for pull requests)",
        description="Compare BASE_RUN and HEAD_RUN from their Parquet files alone: verdict, per-layer SQNR changes "
        "matched by module path, quantization and config changes. Writes OUT (HTML) and, beside it, OUT's stem "
        "with .md (a PR-comment summary) and .json.",
        epilog="example:\n  qreport diff reports/main reports/pr -o diff.html --max-drop-db 1\n"
        "  cat diff.md >> \"$GITHUB_STEP_SUMMARY\"\n\n" + EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    d.add_argument("base_run", metavar="BASE_RUN")
    d.add_argument("head_run", metavar="HEAD_RUN")
    d.add_argument("-o", "--out", default="qreport-diff.html", metavar="OUT",
                   help="the diff report to write (default: %(default)s)")
    d.add_argument("--max-drop-db", type=float, metavar="DB",
                   help="CI gate: exit 1 (diff still written) if the output SQNR drops by more than DB")
    d.add_argument("--same-within", type=float, default=SAME_WITHIN_DB, metavar="DB",
                   help="SQNR changes smaller than this count as unchanged (default: %(default)s)")
    d.add_argument("--allow-different-models", action="store_true",
                   help="compare runs of different models (name, source or input shape) instead of refusing (exit 4)")
    _add_common(d)
    d.set_defaults(func=cmd_diff)

    m = sub.add_parser("models", help="list the torchvision model names --model accepts and how each fared in the walk",
                       description="Every torchvision classifier --model accepts, whether torchvision has a quantizable "
                       "variant (used when it does), and the recorded walk: pass, partial (a stage failed; the report has "
                       "the rest) or fail, at the input size tried, with the reason.")
    _add_common(m)
    m.set_defaults(func=cmd_models)

    w = sub.add_parser(
        "sweep", help="build many models × configs, each as its own qreport build, and index them ranked by loss",
        description="Run every [[job]] of JOBS.toml as its own 'qreport build' process (--jobs at a time), each into "
        "OUT/<name> with its output in OUT/logs/<name>.log, then write OUT/index.html (every report linked, ranked by "
        "loss: accuracy drop with labels, else output SQNR, lowest first; failed jobs last) and OUT/summary.md. "
        "JOBS.toml keys are qreport build's long options without '--'; [defaults] applies to every job that does "
        "not set a key; relative paths resolve against JOBS.toml's folder. Every job is checked before any starts.",
        epilog="example (JOBS.toml):\n"
        "  [defaults]\n  batch-size = 8\n  calib-batches = 2\n"
        "  [[job]]\n  name = \"mnv2-default\"        # the run folder: required, unique\n  model = \"mobilenet_v2\"\n"
        "  [[job]]\n  name = \"mnv2-seed\"\n  model = \"mobilenet_v2\"\n  qconfig = \"seed_scenario.toml\"\n\n"
        "  qreport sweep examples/sweep.toml --out reports/sweep --jobs 2\n"
        "  qreport sweep --index-only reports/sweep    # index existing run folders, run nothing\n"
        "  cat reports/sweep/summary.md >> \"$GITHUB_STEP_SUMMARY\"\n\n"
        "exit code: 0 when every job exited 0, else the highest exit code of a job (so an error, 3/4/5/70, outranks\n"
        "a failed gate, 1; a job killed by a signal counts as 70); 130 if interrupted (the finished jobs are\n"
        "still indexed). A bad jobs file runs nothing: unknown key or bad value 2, unreadable file, no jobs or a\n"
        "missing or repeated name 3; an OUT that holds something other than an earlier sweep 5.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    w.add_argument("jobs_file", nargs="?", metavar="JOBS.toml", help="the jobs to run")
    w.add_argument("--out", metavar="OUT", help="sweep folder to write (default: reports/<JOBS.toml's stem>)")
    w.add_argument("--jobs", type=_positive, default=1, metavar="N", help="builds run at once (default: %(default)s)")
    w.add_argument("--threads-per-job", type=_positive, metavar="T",
                   help="threads for each build, as OMP_NUM_THREADS/MKL_NUM_THREADS (default: CPUs // --jobs, at "
                   "least 1)")
    w.add_argument("--index-only", metavar="DIR",
                   help="run nothing: write DIR/index.html and DIR/summary.md from the run folders in DIR (e.g. "
                   "downloaded from CI jobs; a DIR/logs/<name>.log without a run folder is a failed job)")
    w.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors and failed jobs")
    w.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    w.set_defaults(func=cmd_sweep, verbose=False)
    return parser


def cmd_build(args) -> int:
    """``qreport build``."""
    from qreport.config import BuildConfig, load_qconfig_file

    overrides, thresholds = load_qconfig_file(args.qconfig) if args.qconfig else ((), ())
    for option, value in (("--fail-under-sqnr", args.fail_under_sqnr), ("--target-sqnr", args.target_sqnr)):
        if value is not None and not math.isfinite(value):
            raise InputError(f"{option} needs a finite number of dB, e.g. 20")
    for option, value in (("--max-accuracy-drop", args.max_accuracy_drop),
                          ("--target-accuracy-drop", args.target_accuracy_drop)):
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise InputError(f"{option} needs a non-negative number of percentage points, e.g. 1")
    if args.weight_bits != 8 and args.mode != "weight-only":
        raise InputError("--weight-bits picks the weights of --mode weight-only; add --flow pt2e --mode weight-only")
    if args.quantizer and args.flow != "pt2e":
        raise InputError(f"--quantizer {args.quantizer} picks a PT2E quantizer; add --flow pt2e (FX takes --backend)")
    if args.backend and args.flow == "pt2e":
        raise InputError(f"--backend {args.backend} picks FX's quantized engine; --flow pt2e takes --quantizer "
                         "(x86, arm or xnnpack) instead: drop --backend, or build with --flow fx")
    cfg = BuildConfig(
        model=args.model, weights=args.weights, checkpoint=args.checkpoint, backend=args.backend or "x86",
        activation_observer=args.activation_observer, qconfig_file=args.qconfig, overrides=overrides,
        thresholds=thresholds, data=args.data,
        eval_data=args.eval_data, calib_batches=args.calib_batches, eval_batches=args.eval_batches,
        batch_size=args.batch_size, input_shape=args.input_shape, seed=args.seed, target_sqnr=args.target_sqnr,
        sensitivity_images=args.sensitivity_images,
        sensitivity_layers=args.sensitivity_layers, non_traceable=tuple(args.non_traceable), mode=args.mode,
        metric=args.metric, target_accuracy_drop=args.target_accuracy_drop, flow=args.flow,
        quantizer=args.quantizer or "x86", weight_bits=args.weight_bits,
    )
    out = args.out or f"reports/{cfg.model.rpartition(':')[2].replace('/', '_')}"
    if not args.quiet:
        print(f"qreport {__version__}: building {cfg.model} → {out}", file=sys.stderr, flush=True)
    from qreport.pipeline import build
    from qreport.render.html import render_run

    manifest = build(cfg, out, force=args.force, verbose=args.verbose, quiet=args.quiet,
                     fail_under_sqnr=args.fail_under_sqnr, max_accuracy_drop=args.max_accuracy_drop,
                     render_report=lambda path: render_run(path, in_progress=True),
                     command=reproduce_command(args.argv))
    if not args.quiet:
        print(f"report: {out}/report.html", file=sys.stderr)
    return _gate_exit(manifest.get("gates", []))


_NOT_REPRODUCED = {"--force", "-q", "--quiet", "-v", "--verbose", "--debug"}  # output options, not the numbers


def reproduce_command(argv: list[str]) -> str:
    """The ``qreport build`` command line that reproduces a run's numbers: the options as given, without where the
    run was written and how chatty the terminal was."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--out":
            skip = True
        elif arg in _NOT_REPRODUCED or arg.startswith("--out="):
            continue
        else:
            kept.append(arg)
    return shlex.join(["qreport", *kept])


def _gate_exit(gates: list[dict]) -> int:
    failed = [g for g in gates if not g["passed"]]
    for gate in failed:
        print(f"qreport: gate {gate['name']} failed: {gate['detail']}", file=sys.stderr)
    return EXIT_GATE_FAILED if failed else EXIT_OK


def cmd_diff(args) -> int:
    """``qreport diff BASE_RUN HEAD_RUN``."""
    from qreport.render.diff_view import render_diff

    result = render_diff(args.base_run, args.head_run, args.out, max_drop_db=args.max_drop_db,
                         same_within_db=args.same_within, allow_different_models=args.allow_different_models)
    if not args.quiet:
        from qreport.render.diff_view import verdict_reason

        reason = verdict_reason(result)
        print(f"verdict: {result['verdict']} ({reason['sqnr'][:1].lower()}{reason['sqnr'][1:]}; {reason['measure']})",
              file=sys.stderr)
        print(f"diff: {args.out}", file=sys.stderr)
    return _gate_exit([result["gate"]] if result["gate"] else [])


def cmd_render(args) -> int:
    """``qreport render RUN_DIR``."""
    from qreport.render.html import render_run
    from qreport.store import runs_inside

    runs = runs_inside(args.run_dir)
    if runs:  # a folder of runs, e.g. sample_reports/: say which ones it holds (on stdout, one per line)
        print(f"qreport: error: {args.run_dir} is not a run folder but holds {len(runs)} run"
              f"{'s' if len(runs) != 1 else ''}; render one of them:", file=sys.stderr)
        print("\n".join(str(run) for run in runs))
        return EXIT_RUN_DIR
    path = render_run(args.run_dir)
    if not args.quiet:
        print(f"report: {path}", file=sys.stderr)
    return EXIT_OK


def cmd_models(args) -> int:
    """``qreport models``."""
    import torch
    import torchvision

    from qreport.model_support import recorded_support
    from qreport.models import quantizable_names, torchvision_classifiers

    support = recorded_support()
    rows = {row["name"]: row for row in support["models"]}
    pt2e = support.get("pt2e", {})
    pt2e_rows = {row["name"]: row for row in pt2e.get("models", [])}
    quantizable = set(quantizable_names())
    if not args.quiet:
        print(f"walk: every classifier built at a small input with torch {support['torch']}, torchvision "
              f"{support['torchvision']} ({support['measured']}); partial = a stage failed, the report has the rest",
              file=sys.stderr)
        if pt2e:
            print(f"pt2e: the same builds with --flow pt2e --quantizer {pt2e['quantizer']} (torchao {pt2e['torchao']}, "
                  f"{pt2e['measured']}) at the FX build's input; ranges is skipped under PT2E, not a failure",
                  file=sys.stderr)
        if (support["torch"], support["torchvision"]) != (torch.__version__, torchvision.__version__):
            print(f"note: this is torch {torch.__version__}, torchvision {torchvision.__version__}; results may differ",
                  file=sys.stderr)
    print(f"{'model':<20} {'variant':<12} {'fx':<8} {'pt2e':<8} {'input':<10} detail")
    for name in torchvision_classifiers():
        row = rows.get(name, {"status": "not walked", "input": "", "detail": ""})
        p = pt2e_rows.get(name, {"status": "-", "input": row["input"], "detail": ""})
        variant = "quantizable" if name in quantizable else "plain"
        p_detail = "; ".join(filter(None, [f"at {p['input']}" if p["input"] != row["input"] else "", p["detail"]]))
        detail = "  ".join(filter(None, [row["detail"] and f"fx: {row['detail']}", p_detail and f"pt2e: {p_detail}"]))
        print(f"{name:<20} {variant:<12} {row['status']:<8} {p['status']:<8} {row['input']:<10} {detail}".rstrip())
    return EXIT_OK


def cmd_sweep(args) -> int:
    """``qreport sweep JOBS.toml`` or ``qreport sweep --index-only DIR``."""
    if args.index_only:
        if args.jobs_file or args.out:
            raise QReportError("--index-only DIR indexes DIR and runs nothing; drop JOBS.toml and --out",
                               exit_code=EXIT_USAGE)
        from qreport.render.sweep_index import write_index

        index = write_index(args.index_only)
        if not args.quiet:
            print(f"index: {index}", file=sys.stderr)
        return EXIT_OK
    if not args.jobs_file:
        raise QReportError("give a jobs file (qreport sweep JOBS.toml) or --index-only DIR", exit_code=EXIT_USAGE)
    from pathlib import Path

    from qreport.sweep import run_sweep
    from qreport.sweep_jobs import load_jobs

    jobs = load_jobs(args.jobs_file)
    out = args.out or f"reports/{Path(args.jobs_file).stem}"
    return run_sweep(jobs, out, workers=args.jobs, threads=args.threads_per_job, quiet=args.quiet)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.verbose and args.quiet:
        print("qreport: error: --verbose and --quiet contradict each other; pick one", file=sys.stderr)
        return EXIT_USAGE
    previous = interrupt.install()
    try:
        return args.func(args)
    except QReportError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"qreport: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM acted on at the next safe point
        print("qreport: interrupted; nothing was left half-written", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug or an unexpected failure inside torch
        if args.debug:
            traceback.print_exc()
        print(f"qreport: internal error: {exc.__class__.__name__}: {first_line(exc)[:200]}; this is a bug in qreport "
              "(rerun with --debug for the traceback)", file=sys.stderr)
        return EXIT_INTERNAL
    finally:
        signal.signal(signal.SIGTERM, previous)
