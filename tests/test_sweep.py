"""`qreport sweep`: many builds from one jobs file, an index ranked by the measured loss, failed jobs named, bad jobs
files refused before anything runs, and `--index-only` over run folders gathered elsewhere."""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, TOY, run_cli
from qreport.cli import build_parser, main
from qreport.store import PARTIAL_PREFIX, RunReader
from qreport.sweep import sweep_exit_code
from qreport.sweep_results import RunResult, rank
from test_architecture import _imports


def _write_jobs(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "jobs.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A sweep of three jobs, two at a time: the bad-channel CNN quantized, the same with its bad layer kept float (and
    a gate it fails), and a model whose factory raises. Paths in the jobs file are relative to its folder."""
    base = tmp_path_factory.mktemp("sweep")
    config = base / "config"
    config.mkdir()
    (config / "stem_float.toml").write_text('[modules]\n"stem.0" = "float"\n')
    toy = os.path.relpath(TOY, config)
    jobs = _write_jobs(config, f"""
[defaults]
batch-size = 4
calib-batches = 2
eval-batches = 2
model = "{toy}:bad_channel_cnn"

[[job]]
name = "quantized"

[[job]]
name = "stem-float"
qconfig = "stem_float.toml"
fail-under-sqnr = 200

[[job]]
name = "broken"
model = "{toy}:raising_factory"
""")
    out = base / "out"
    result = run_cli("sweep", str(jobs), "--out", str(out), "--jobs", "2")
    return out, result


def _index_order(html: str) -> list[str]:
    return re.findall(r'<a href="([^"/]+)/report.html">', html)


def test_every_report_is_linked_and_ranked_by_its_measured_sqnr(sweep):
    out, result = sweep
    html = (out / "index.html").read_text()
    order = _index_order(html)
    assert set(order) == {"quantized", "stem-float"}
    assert all((out / name / "report.html").is_file() for name in order)
    sqnr = {name: RunReader(out / name).table("model")["output_sqnr_db"].iloc[0] for name in order}
    assert order == sorted(order, key=lambda n: sqnr[n])  # lowest output SQNR first
    assert order[0] == "quantized" and sqnr["stem-float"] - sqnr["quantized"] > 10  # the planted bad channel
    assert "gate failed" in html.split('href="stem-float/report.html"')[1].split("</tr>")[0]
    assert "http" not in html.replace("http-equiv", "")  # no network: the page needs nothing but itself
    summary = (out / "summary.md").read_text()
    assert [line.split(" | ")[1] for line in summary.splitlines() if re.match(r"\| \d+ \|", line)] == order


def test_a_failing_job_is_listed_with_its_log_and_sets_the_exit_code(sweep):
    out, result = sweep
    assert result.returncode == 3, result.stderr  # bad input (3) outranks the other job's failed gate (1)
    log = (out / "logs" / "broken.log").read_text()
    assert "the factory is broken" in log.splitlines()[-1]
    failed = (out / "index.html").read_text().split('id="failed"')[1]
    assert 'href="logs/broken.log"' in failed and ">3<" in failed and "the factory is broken" in failed
    assert not (out / "broken").exists()
    lines = result.stderr.splitlines()
    for name, code in (("quantized", 0), ("stem-float", 1), ("broken", 3)):
        (line,) = [line for line in lines if re.match(rf"\[\d/3\] +{name} +exit {code} ", line)]
        assert re.search(r"\d+\.\d s", line)
    assert re.search(r"quantized +exit 0 .*output SQNR \d+\.\d dB", result.stderr)


def test_index_only_reproduces_the_index(sweep, tmp_path):
    out, _ = sweep
    again = tmp_path / "again"
    shutil.copytree(out, again)
    for name in ("index.html", "summary.md"):
        (again / name).unlink()
    assert main(["sweep", "--index-only", str(again), "-q"]) == 0
    for name in ("index.html", "summary.md"):
        assert (again / name).read_text() == (out / name).read_text()

    # Run folders and logs gathered from CI jobs, without the sweep's record: the same ranking; a log without a run
    # folder is a failed job whose exit code is unknown.
    gathered = tmp_path / "gathered"
    for name in ("quantized", "stem-float", "logs"):
        shutil.copytree(out / name, gathered / name)
    assert main(["sweep", "--index-only", str(gathered), "-q"]) == 0
    html = (gathered / "index.html").read_text()
    assert _index_order(html) == _index_order((out / "index.html").read_text())
    ranking = (out / "summary.md").read_text().split("### Failed jobs")[0]
    assert (gathered / "summary.md").read_text().startswith(ranking)
    assert "| broken | — | no run folder |" in (gathered / "summary.md").read_text()


@pytest.mark.parametrize("text, exit_code, message", [
    (None, 3, "does not exist"),
    ("[[job]\nname = 'a'", 3, "is not valid TOML"),
    ("[defaults]\nbatch-size = 4\n", 3, "holds no jobs"),
    ("[[job]]\nname = 'a'\n[[job]]\nname = 'a'\n", 3, "name 'a' is already used by job 1"),
    ("[[job]]\nmodel = 'resnet18'\n", 3, "job 1 has no name"),
    ("[[job]]\nname = 'a'\nbatch-sise = 4\n", 2, "job 'a': unknown key 'batch-sise'; did you mean 'batch-size'?"),
    ("[defaults]\nmod = 'x'\n[[job]]\nname = 'a'\n", 2,
     "[defaults]: unknown key 'mod'; did you mean 'model' or 'mode'?"),
    ("[[job]]\nname = 'a'\nbatch-size = 0\n", 2, "job 'a': argument --batch-size: 0 must be at least 1"),
    ("[[job]]\nname = 'a'\nbackend = 'arm'\n", 2, "job 'a': argument --backend: invalid choice: 'arm'"),
    ("[[job]]\nname = 'a'\nout = 'x'\n", 2, "key 'out' is set by qreport sweep"),
])
def test_a_bad_jobs_file_is_one_line_and_writes_nothing(tmp_path, capsys, text, exit_code, message):
    jobs = tmp_path / "jobs.toml"
    if text is not None:
        jobs.write_text(text)
    out = tmp_path / "out"
    assert main(["sweep", str(jobs), "--out", str(out)]) == exit_code
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("qreport: error: ") and message in err, err
    assert "Traceback" not in err and not out.exists()


def test_sweep_needs_a_jobs_file_or_index_only(tmp_path, capsys):
    assert main(["sweep"]) == 2
    assert main(["sweep", str(tmp_path / "jobs.toml"), "--index-only", str(tmp_path)]) == 2
    assert main(["sweep", "--index-only", str(tmp_path)]) == 4  # an empty folder: nothing to index
    assert not list(tmp_path.iterdir())
    assert len(capsys.readouterr().err.strip().splitlines()) == 3


def test_sweep_help_has_an_example_and_the_exit_codes(capsys):
    assert main(["sweep", "--help"]) == 0
    out = capsys.readouterr().out
    assert "[[job]]" in out and "--index-only" in out and "highest exit code" in out
    assert "sweep" in build_parser().format_help()


def _result(name, drop=math.nan, sqnr=math.nan, labelled=0) -> RunResult:
    return RunResult(name=name, model="m", mode="static", qconfig="", overrides=0, verdict="good",
                     labelled_samples=labelled, accuracy_drop=drop, accuracy_drop_lo=math.nan,
                     accuracy_drop_hi=math.nan, output_sqnr_db=sqnr, top1_agreement=1.0, random_weights=False,
                     synthetic_data=False, failed_gates=())


def test_labelled_runs_rank_by_accuracy_drop_before_the_others_by_sqnr():
    runs = [_result("sqnr-high", sqnr=40.0), _result("no-model-stage"), _result("drop-small", 0.01, 10.0, 100),
            _result("exact", sqnr=math.inf), _result("drop-large", 0.05, 35.0, 100), _result("sqnr-low", sqnr=12.0)]
    assert [r.name for r in rank(runs)] == ["drop-large", "drop-small", "sqnr-low", "sqnr-high", "exact",
                                           "no-model-stage"]


def test_the_sweep_exit_code_is_the_worst_job_code():
    assert sweep_exit_code([0, 0], interrupted=False) == 0
    assert sweep_exit_code([0, 1], interrupted=False) == 1
    assert sweep_exit_code([1, 3, 0], interrupted=False) == 3
    assert sweep_exit_code([1, -9], interrupted=False) == 70
    assert sweep_exit_code([0, None], interrupted=True) == 130


def test_sigterm_stops_the_builds_and_still_writes_the_index(tmp_path):
    jobs = _write_jobs(tmp_path, f"""
[[job]]
name = "slow"
model = "{TOY}:tiny_cnn"
batch-size = 4
eval-batches = 100
[[job]]
name = "never"
model = "{TOY}:tiny_cnn"
""")
    out = tmp_path / "out"
    sweep = subprocess.Popen([sys.executable, "-m", "qreport", "sweep", str(jobs), "--out", str(out), "-q"],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = out / "logs" / "slow.log"
    deadline = time.monotonic() + 60
    while not (log.is_file() and "[2/16]" in log.read_text()):  # the build is under way
        assert time.monotonic() < deadline and sweep.poll() is None, "the build never started"
        time.sleep(0.05)
    sweep.send_signal(signal.SIGTERM)
    _, err = sweep.communicate(timeout=60)
    assert sweep.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    failed = (out / "index.html").read_text().split('id="failed"')[1]
    assert ">130<" in failed and "never" in failed and "not started" in failed
    assert not [p for p in out.iterdir() if p.name.startswith(PARTIAL_PREFIX)] and not (out / "slow").exists()


def test_the_sweep_modules_never_import_torch():
    for name in ("sweep.py", "sweep_jobs.py", "sweep_results.py", "render/sweep_index.py"):
        torchy = {n for n in _imports(ROOT / "qreport" / name) if n == "torch" or n.startswith("torch.")}
        assert not torchy, f"qreport/{name} imports {sorted(torchy)}"
