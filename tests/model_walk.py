"""Build every torchvision classifier with qreport at a small input size and record which pass.

    python tests/model_walk.py --record      # walk all, write qreport/model_support.json and the README table
    python tests/model_walk.py resnet18 ...  # walk some, print, write nothing (add --record to update their rows)
    python -m pytest tests/model_walk.py     # check every model still builds as recorded (make walk)

Each model is built in its own process (random weights, one calibration and one evaluation batch of two
inputs) at the smallest of SIZES its architecture accepts; a model that rejects one size is tried at the next.
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
TIMEOUT_S = 40 * 60
TABLE_BEGIN, TABLE_END = "<!-- model table: begin -->", "<!-- model table: end -->"
_ERROR = re.compile(r"^qreport: (?:internal )?error: (.*?)(?: \(rerun with --debug.*)?$", re.MULTILINE)


def candidate_sizes(name: str) -> list[int]:
    """SIZES from the smallest the model's torchvision metadata allows (fixed-size models get 224 only)."""
    import torchvision.models as tvm

    min_size = tvm.get_model_weights(name).DEFAULT.meta.get("min_size", (1, 1))[0]
    return [s for s in SIZES if s >= min(min_size, SIZES[-1])]


def _run(argv: list[str], timeout: float) -> tuple[int, str, float, float]:
    """Exit code, stderr, wall seconds and peak RSS (GiB) of one child process."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT)
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
    manifest = json.loads((run_dir / "manifest.json").read_text())
    return [f"{name}: {info['error']}" for name, info in manifest["stages"].items() if info["status"] != "ok"]


def walk_one(name: str, workdir: Path, timeout: float = TIMEOUT_S) -> dict:
    """Build ``name`` at the smallest size it accepts; its row for the support table."""
    from qreport.models import quantizable_names

    row = {"name": name, "variant": "quantizable" if name in quantizable_names() else "plain"}
    for size in candidate_sizes(name):
        out = workdir / f"{name}-{size}"
        code, stderr, seconds, rss = _run(
            [sys.executable, "-m", "qreport", "build", "--model", name, "--input-shape", f"3,{size},{size}",
             "--out", str(out), *BUILD_ARGS], timeout)
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
            row.update(status="fail", detail=errors[-1] if errors else stderr.strip().splitlines()[-1][:300])
        shutil.rmtree(out, ignore_errors=True)
        return row
    row.update(status="fail", detail=errors[-1] if errors else "no input size in SIZES works")
    return row


def load_support() -> dict:
    """The recorded walk: versions, settings and one row per model."""
    return json.loads(SUPPORT.read_text())


def markdown_table(rows: list[dict]) -> str:
    """The README's table of models, one line each."""
    lines = ["| model | variant | input | result | seconds | peak RSS (GiB) | detail |",
             "|---|---|---|---|---:|---:|---|"]
    for r in rows:
        detail = r["detail"].replace("|", "\\|")
        lines.append(f"| {r['name']} | {r['variant']} | {r['input']} | {r['status']} | {r['seconds']} | "
                     f"{r['peak_rss_gib']} | {detail} |")
    return "\n".join(lines)


def write_readme_table(rows: list[dict]) -> None:
    """Replace the README's table between its markers."""
    text = README.read_text()
    head, _, rest = text.partition(TABLE_BEGIN)
    _, _, tail = rest.partition(TABLE_END)
    README.write_text(f"{head}{TABLE_BEGIN}\n{markdown_table(rows)}\n{TABLE_END}{tail}")


def record(rows: list[dict]) -> None:
    """Merge ``rows`` into qreport/model_support.json (replacing rows of the same models) and the README table."""
    import torch
    import torchvision

    from qreport.models import torchvision_classifiers

    recorded = {r["name"]: r for r in (load_support()["models"] if SUPPORT.exists() else [])}
    recorded.update({r["name"]: r for r in rows})
    merged = [recorded[n] for n in torchvision_classifiers() if n in recorded]
    support = {"torch": torch.__version__, "torchvision": torchvision.__version__,
               "measured": datetime.date.today().isoformat(), "build_args": BUILD_ARGS, "models": merged}
    SUPPORT.write_text(json.dumps(support, indent=1, ensure_ascii=False) + "\n")
    write_readme_table(merged)


def main(argv: list[str] | None = None) -> int:
    """Walk the models named (default: all) and print each row; ``--record`` writes each result as it comes."""
    from qreport.models import torchvision_classifiers

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="models to walk (default: every torchvision classifier)")
    parser.add_argument("--record", action="store_true",
                        help="write qreport/model_support.json and the README table (named models replace their rows)")
    args = parser.parse_args(argv)
    if args.record and not args.names:
        SUPPORT.unlink(missing_ok=True)  # a full walk starts from nothing
    names = args.names or torchvision_classifiers()
    rows = []
    with tempfile.TemporaryDirectory(prefix="qreport-walk-") as tmp:
        for i, name in enumerate(names, 1):
            rows.append(walk_one(name, Path(tmp)))
            r = rows[-1]
            print(f"[{i}/{len(names)}] {name:<20} {r['status']:<8} {r['input']:<10} {r['seconds']:>5} s "
                  f"{r['peak_rss_gib']:>5} GiB  {r['detail'][:120]}", flush=True)
            if args.record:
                record([r])
    return 0 if all(r["status"] != "fail" for r in rows) else 1


def _recorded() -> list[dict]:
    return load_support()["models"] if SUPPORT.exists() else []


@pytest.mark.parametrize("row", _recorded(), ids=lambda r: r["name"])
def test_model_builds_as_recorded(row, tmp_path):
    """Every torchvision classifier still passes, or fails for the recorded reason (run by ``make walk``)."""
    now = walk_one(row["name"], tmp_path)
    assert (now["status"], now["input"]) == (row["status"], row["input"]), now
    if row["status"] != "pass":
        assert now["detail"].split(":")[0] == row["detail"].split(":")[0], now


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
