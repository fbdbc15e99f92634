"""What a sweep's folder holds: each job's run read from its manifest and Parquet files, ranked by loss, and the jobs
that left no report (no torch).

A sweep folder holds one run folder per job, ``logs/<name>.log`` and ``sweep.json`` (each job's exit code, written by
``qreport sweep``). Without ``sweep.json`` (run folders gathered from CI jobs) every run folder is a job, and a log
without a run folder is a job that failed.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

from qreport.diff import caveats
from qreport.errors import EXIT_GATE_FAILED, EXIT_OK, RunDirError
from qreport.store import MANIFEST, RunReader, runs_inside

SWEEP_RECORD = "sweep.json"
LOGS = "logs"
EXIT_MEANINGS = {0: "ok", 1: "gate failed", 2: "usage error", 3: "bad input", 4: "unreadable run folder",
                 5: "output not writable", 70: "internal error", 130: "interrupted"}


@dataclasses.dataclass(frozen=True)
class RunResult:
    """One job's finished run: what was built and how much it lost."""

    name: str
    model: str
    mode: str
    qconfig: str  # the --qconfig file's name, or ""
    overrides: int  # qconfig override entries in force
    verdict: str  # good | warn | bad | "" when the guidance stage failed
    labelled_samples: int
    accuracy_drop: float  # float − int8 accuracy, a fraction; NaN without labels
    accuracy_drop_lo: float
    accuracy_drop_hi: float
    output_sqnr_db: float  # NaN when the model stage failed
    top1_agreement: float
    random_weights: bool
    synthetic_data: bool
    failed_gates: tuple[str, ...]  # the details of the CI gates the build failed (its exit code was 1)

    @property
    def labelled(self) -> bool:
        """The run measured accuracy on labelled data."""
        return self.labelled_samples > 0 and math.isfinite(self.accuracy_drop)


@dataclasses.dataclass(frozen=True)
class FailedJob:
    """A job that left no report: its exit code (None when it has none), what that means, and the last line of its
    log."""

    name: str
    exit_code: int | None
    meaning: str
    last_line: str
    log: str  # the log's path inside the sweep folder, or "" when there is none


def exit_meaning(code: int) -> str:
    """What a ``qreport build`` exit code means, in a few words."""
    if code < 0:
        return f"killed by signal {-code}"
    return EXIT_MEANINGS.get(code, "failed")


def _number(row: dict, key: str) -> float:
    value = row.get(key)
    try:
        return math.nan if value is None else float(value)
    except (TypeError, ValueError):
        return math.nan


def read_run(path: str | Path, name: str | None = None) -> RunResult:
    """A run folder's headline numbers, from its manifest and its model and verdict tables."""
    reader = RunReader(path)
    manifest = reader.manifest
    config = manifest.get("config") or {}
    model = reader.table("model")
    row = model.iloc[0].to_dict() if model is not None and len(model) else {}
    verdict = reader.table("verdict")
    flags = caveats(manifest)
    labelled = _number(row, "labelled_samples")
    return RunResult(
        name=name or reader.path.name,
        model=str((manifest.get("model") or {}).get("name") or config.get("model") or ""),
        mode=str(config.get("mode") or "static"),
        qconfig=Path(config["qconfig_file"]).name if config.get("qconfig_file") else "",
        overrides=len(config.get("overrides") or []),
        verdict=str(verdict.iloc[0]["level"]) if verdict is not None and len(verdict) else "",
        labelled_samples=int(labelled) if math.isfinite(labelled) else 0,
        accuracy_drop=_number(row, "accuracy_drop"),
        accuracy_drop_lo=_number(row, "accuracy_drop_lo"),
        accuracy_drop_hi=_number(row, "accuracy_drop_hi"),
        output_sqnr_db=_number(row, "output_sqnr_db"),
        top1_agreement=_number(row, "top1_agreement"),
        random_weights=flags["random_weights"],
        synthetic_data=flags["synthetic_data"],
        failed_gates=tuple(str(g.get("detail", g.get("name", ""))) for g in manifest.get("gates") or []
                           if not g.get("passed", True)),
    )


def loss_key(run: RunResult) -> tuple:
    """Largest loss first: runs with labels by accuracy drop (largest first), then runs without labels by output
    SQNR (lowest first); a missing number ranks last in its group, ties by name."""
    if run.labelled:
        sqnr = run.output_sqnr_db if not math.isnan(run.output_sqnr_db) else math.inf
        return (0, -run.accuracy_drop, sqnr, run.name)
    if math.isnan(run.output_sqnr_db):
        return (2, 0.0, 0.0, run.name)
    return (1, run.output_sqnr_db, 0.0, run.name)


def rank(runs: list[RunResult]) -> list[RunResult]:
    """The runs, largest loss first (see ``loss_key``)."""
    return sorted(runs, key=loss_key)


def last_log_line(log: Path) -> str:
    """The last non-empty line of a log ("" when there is none)."""
    try:
        with open(log, "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - 8192))
            tail = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return next((line.strip() for line in reversed(tail.splitlines()) if line.strip()), "")


def read_record(folder: str | Path) -> list[dict] | None:
    """The jobs ``qreport sweep`` recorded in ``folder`` (name, exit code, seconds), or None when it has none."""
    path = Path(folder) / SWEEP_RECORD
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        jobs = data["jobs"]
        return [{"name": str(j["name"]), "exit_code": j.get("exit_code"), "seconds": j.get("seconds")} for j in jobs]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise RunDirError(f"{path} is corrupt; run qreport sweep again or delete it to index the run folders") from None


def _failed(folder: Path, name: str, exit_code: int | None, meaning: str, detail: str = "") -> FailedJob:
    log = folder / LOGS / f"{name}.log"
    has_log = log.is_file()
    return FailedJob(name=name, exit_code=exit_code, meaning=meaning,
                     last_line=detail or (last_log_line(log) if has_log else ""),
                     log=f"{LOGS}/{name}.log" if has_log else "")


def collect(folder: str | Path) -> tuple[list[RunResult], list[FailedJob]]:
    """A sweep folder's runs, ranked by loss, and the jobs that left no report (by name)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RunDirError(f"sweep folder {folder} does not exist")
    if (folder / MANIFEST).is_file():
        raise RunDirError(f"{folder} is a single run folder; pass the folder that holds the runs")
    record = read_record(folder)
    without_code = "not started: the sweep was interrupted"
    if record is None:  # run folders gathered elsewhere: every run is a job; a log without a run is a failure
        names = [p.name for p in runs_inside(folder)]
        logs = sorted(p.stem for p in (folder / LOGS).glob("*.log")) if (folder / LOGS).is_dir() else []
        record = [{"name": n, "exit_code": EXIT_OK if n in names else None} for n in sorted(set(names) | set(logs))]
        without_code = "no run folder"
    if not record:
        raise RunDirError(f"{folder} holds no run folders and no logs of qreport sweep; nothing to index")
    runs, failed = [], []
    for job in record:
        name, code = job["name"], job["exit_code"]
        if code not in (EXIT_OK, EXIT_GATE_FAILED):
            failed.append(_failed(folder, name, code, without_code if code is None else exit_meaning(code)))
            continue
        try:
            runs.append(read_run(folder / name, name))
        except RunDirError as exc:
            failed.append(_failed(folder, name, code, "unreadable run folder", detail=str(exc)))
    return rank(runs), sorted(failed, key=lambda f: f.name)
