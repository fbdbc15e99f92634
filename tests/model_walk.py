"""Build every torchvision classifier with qreport at a small input size, under both flows, and record which pass.

    python tests/model_walk.py --record              # walk all, both flows: model_support.json, README table
    python tests/model_walk.py --record --flow pt2e  # the PT2E column only (the FX records stay as they are)
    python tests/model_walk.py resnet18 ...          # walk some, print, write nothing (--record: update their rows)
    python tests/model_walk.py --record --resume     # finish a recording walk that was stopped
    python tests/model_walk.py --table               # rewrite the README table from qreport/model_support.json
    python -m pytest tests/model_walk.py             # every model still builds as recorded (make walk; -k pt2e)

Each build runs in its own process (random weights, one calibration and one evaluation batch of two inputs).
FX builds at the smallest of SIZES the architecture accepts; a model that rejects one size is tried at the next.
PT2E (``--flow pt2e --quantizer x86``, the same settings) builds at the size the FX build used: the float model,
which decides the size, is the same under both flows (with no FX record, PT2E searches SIZES the same way).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SUPPORT = ROOT / "qreport" / "model_support.json"
README = ROOT / "README.md"
SIZES = (64, 128, 224)  # at 32×32 most last feature maps are 1×1, where x86 int8 kernels fail (pinned)
BUILD_ARGS = ["--weights", "none", "--batch-size", "2", "--calib-batches", "1", "--eval-batches", "1",
              "--sensitivity-images", "1", "--sensitivity-layers", "8", "-q"]
FLOWS = ("fx", "pt2e")
PT2E_QUANTIZER = "x86"
FLOW_ARGS = {"fx": [], "pt2e": ["--flow", "pt2e", "--quantizer", PT2E_QUANTIZER]}
TIMEOUT_S = 40 * 60
TABLE_BEGIN, TABLE_END = "<!-- model table: begin -->", "<!-- model table: end -->"
_ERROR = re.compile(r"^qreport: (?:internal )?error: (.*?)(?: \(rerun with --debug.*)?$", re.MULTILINE)


def candidate_sizes(name: str) -> list[int]:
    """SIZES from the smallest the model's torchvision metadata allows (fixed-size models get 224 only)."""
    import torchvision.models as tvm

    min_size = tvm.get_model_weights(name).DEFAULT.meta.get("min_size", (1, 1))[0]
    return [s for s in SIZES if s >= min(min_size, SIZES[-1])]


def input_size(row: dict) -> int:
    """The side of a row's input ("3×128×128" → 128)."""
    return int(row["input"].rsplit("×", 1)[-1])


def _first_victim() -> None:
    """In the child: if memory runs out, the kernel kills this build before anything else on the machine."""
    try:
        Path("/proc/self/oom_score_adj").write_text("1000")
    except OSError:
        pass


def _run(argv: list[str], timeout: float) -> tuple[int, str, float, float]:
    """Exit code, stderr, wall seconds and peak RSS (GiB) of one child process."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT, preexec_fn=_first_victim)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        return proc.returncode, err.read(), time.perf_counter() - start, usage.ru_maxrss / 2**20


def _failed_stages(run_dir: Path) -> list[str]:
    """The stages that failed, with their errors (a stage the flow skips by design, as ranges under PT2E, did not)."""
    manifest = json.loads((run_dir / "manifest.json").read_text())
    return [f"{name}: {info['error']}" for name, info in manifest["stages"].items()
            if info["status"] not in ("ok", "skipped")]


def walk_one(name: str, workdir: Path, timeout: float = TIMEOUT_S, flow: str = "fx", start: int | None = None) -> dict:
    """Build ``name`` under ``flow`` at the smallest size it accepts (from ``start`` on, if given); its row."""
    from qreport.models import quantizable_names

    row = {"name": name, "variant": "quantizable" if name in quantizable_names() else "plain"} if flow == "fx" \
        else {"name": name}
    sizes = [s for s in candidate_sizes(name) if start is None or s >= start] or [start]
    for size in sizes:
        out = workdir / f"{name}-{flow}-{size}"
        code, stderr, seconds, rss = _run(
            [sys.executable, "-m", "qreport", "build", "--model", name, "--input-shape", f"3,{size},{size}",
             "--out", str(out), *BUILD_ARGS, *FLOW_ARGS[flow]], timeout)
        row.update(input=f"3×{size}×{size}", seconds=round(seconds), peak_rss_gib=round(rss, 1))
        errors = _ERROR.findall(stderr)
        if code == 3 and errors and "the float model fails on an input of shape" in errors[-1]:
            continue  # too small for this architecture: try the next size
        if code == 0:
            failed = _failed_stages(out)
            row.update(status="partial" if failed else "pass", detail="; ".join(failed))
        elif code < 0 and seconds < timeout:
            row.update(status="fail", detail=f"out of memory: the system killed it at {rss:.1f} GiB (signal {-code})")
        elif code < 0:
            row.update(status="fail", detail=f"timed out after {seconds:.0f} s")
        else:
            lines = stderr.strip().splitlines()
            row.update(status="fail", detail=errors[-1] if errors else (lines[-1][:300] if lines else f"exit {code}"))
        shutil.rmtree(out, ignore_errors=True)
        return row
    row.update(status="fail", detail=errors[-1] if errors else "no input size in SIZES works")
    return row


def load_support() -> dict:
    """The recorded walk: versions, settings and one row per model; the PT2E column under "pt2e", the same way."""
    return json.loads(SUPPORT.read_text()) if SUPPORT.exists() else {}


def flow_rows(support: dict, flow: str) -> list[dict]:
    """The recorded rows of one flow."""
    return (support if flow == "fx" else support.get("pt2e", {})).get("models", [])


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_table(support: dict) -> str:
    """The README's table of models, one line each: the FX build, then the PT2E build (x86 quantizer)."""
    fx = {r["name"]: r for r in flow_rows(support, "fx")}
    pt2e = {r["name"]: r for r in flow_rows(support, "pt2e")}
    names = list(fx) + [n for n in pt2e if n not in fx]
    quantizer = support.get("pt2e", {}).get("quantizer", PT2E_QUANTIZER)
    lines = [f"| model | variant | input | FX | s | GiB | FX detail | PT2E ({quantizer}) | s | GiB | PT2E detail |",
             "|---|---|---|---|---:|---:|---|---|---:|---:|---|"]
    missing = {"status": "not walked", "seconds": "", "peak_rss_gib": "", "detail": ""}
    for name in names:
        f, p = fx.get(name, {**missing, "variant": "", "input": ""}), pt2e.get(name, missing)
        p_detail = p["detail"]
        if name in pt2e and p["input"] != f["input"]:
            p_detail = f"at {p['input']}" + (f"; {p_detail}" if p_detail else "")
        lines.append(f"| {name} | {f['variant']} | {f['input']} | {f['status']} | {f['seconds']} | "
                     f"{f['peak_rss_gib']} | {_cell(f['detail'])} | {p['status']} | {p['seconds']} | "
                     f"{p['peak_rss_gib']} | {_cell(p_detail)} |")
    return "\n".join(lines)


def write_readme_table(support: dict) -> None:
    """Replace the README's table between its markers."""
    text = README.read_text()
    head, _, rest = text.partition(TABLE_BEGIN)
    _, _, tail = rest.partition(TABLE_END)
    README.write_text(f"{head}{TABLE_BEGIN}\n{markdown_table(support)}\n{TABLE_END}{tail}")


def _write(support: dict) -> None:
    SUPPORT.write_text(json.dumps(support, indent=1, ensure_ascii=False) + "\n")


def forget(flow: str) -> None:
    """Drop one flow's records (a full walk of that flow starts from nothing; the other flow's stay)."""
    support = load_support()
    if flow == "fx":
        support = {"pt2e": support["pt2e"]} if "pt2e" in support else {}
    else:
        support.pop("pt2e", None)
    _write(support)


def record(rows: list[dict], flow: str = "fx", full: bool = True) -> None:
    """Merge ``rows`` of ``flow`` into qreport/model_support.json (replacing rows of the same models). A full walk
    dates the column today; re-recording named models keeps its date (the README names what was re-measured)."""
    from importlib.metadata import version

    import torch
    import torchvision

    from qreport.models import torchvision_classifiers

    support = load_support()
    recorded = {r["name"]: r for r in flow_rows(support, flow)}
    recorded.update({r["name"]: r for r in rows})
    merged = [recorded[n] for n in torchvision_classifiers() if n in recorded]
    versions = {"torch": torch.__version__, "torchvision": torchvision.__version__}
    previous = (support if flow == "fx" else support.get("pt2e", {})).get("measured")
    measured = datetime.date.today().isoformat() if full or previous is None else previous
    if flow == "fx":
        fx = {**versions, "measured": measured, "build_args": BUILD_ARGS, "models": merged}
        support = {**fx, **({"pt2e": support["pt2e"]} if "pt2e" in support else {})}
    else:
        support["pt2e"] = {"quantizer": PT2E_QUANTIZER, **versions, "torchao": version("torchao"),
                           "measured": measured, "build_args": BUILD_ARGS + FLOW_ARGS["pt2e"], "models": merged}
    _write(support)


def main(argv: list[str] | None = None) -> int:
    """Walk the models named (default: all) and print each row; ``--record`` writes each result as it comes."""
    from qreport.models import torchvision_classifiers

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="models to walk (default: every torchvision classifier)")
    parser.add_argument("--flow", choices=("both", *FLOWS), default="both",
                        help="walk FX, PT2E (x86 quantizer, at the input size of the recorded FX build) or both "
                             "(default); --record then replaces only that flow's records")
    parser.add_argument("--record", action="store_true",
                        help="write qreport/model_support.json (named models replace their rows; a full walk "
                             "replaces the flow's records) and, at the end, the README table")
    parser.add_argument("--resume", action="store_true",
                        help="with --record: skip the models the flow has a record of (to finish a stopped walk)")
    parser.add_argument("--table", action="store_true", help="only rewrite the README table from the recording")
    args = parser.parse_args(argv)
    if args.table:
        write_readme_table(load_support())
        return 0
    flows = FLOWS if args.flow == "both" else (args.flow,)
    if args.resume and not args.record:
        parser.error("--resume continues a recording: add --record")
    if args.record and not args.names and not args.resume:
        for flow in flows:
            forget(flow)  # a full walk starts from nothing
    names = args.names or torchvision_classifiers()
    fx_recorded = {r["name"]: r for r in flow_rows(load_support(), "fx")}
    done = {flow: {r["name"] for r in flow_rows(load_support(), flow)} if args.resume else set() for flow in flows}
    rows = []
    with tempfile.TemporaryDirectory(prefix="qreport-walk-") as tmp:
        for i, name in enumerate(names, 1):
            for flow in (f for f in flows if name not in done[f]):
                fx_row = fx_recorded.get(name)
                start = input_size(fx_row) if flow == "pt2e" and fx_row else None
                r = walk_one(name, Path(tmp), flow=flow, start=start)
                rows.append(r)
                if flow == "fx":
                    fx_recorded[name] = r  # PT2E builds at the size just found
                print(f"[{i}/{len(names)}] {name:<20} {flow:<4} {r['status']:<8} {r['input']:<10} {r['seconds']:>5} s "
                      f"{r['peak_rss_gib']:>5} GiB  {r['detail'][:120]}", flush=True)
                if args.record:
                    record([r], flow, full=not args.names)
    if args.record:
        write_readme_table(load_support())
    return 0 if all(r["status"] != "fail" for r in rows) else 1


def _recorded() -> list:
    support = load_support()
    fx_sizes = {r["name"]: input_size(r) for r in flow_rows(support, "fx")}
    return [pytest.param(flow, row, fx_sizes.get(row["name"]) if flow == "pt2e" else None,
                         id=f"{row['name']}-{flow}")
            for flow in FLOWS for row in flow_rows(support, flow)]


@pytest.mark.parametrize(("flow", "row", "start"), _recorded())
def test_model_builds_as_recorded(flow, row, start, tmp_path):
    """Every torchvision classifier still passes under each flow, or fails for the recorded reason (``make walk``)."""
    now = walk_one(row["name"], tmp_path, flow=flow, start=start)
    assert (now["status"], now["input"]) == (row["status"], row["input"]), now
    if row["status"] != "pass":
        assert now["detail"].split(":")[0] == row["detail"].split(":")[0], now


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
