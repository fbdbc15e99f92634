"""A sweep folder's ``index.html`` and ``summary.md``: every job's report linked and ranked by loss (no torch)."""

from __future__ import annotations

import math
from pathlib import Path
from urllib.parse import quote

from qreport.render.context import fmt_interval, fmt_points
from qreport.render.fmt import fmt_db, fmt_pct, sort_key
from qreport.render.html import environment
from qreport.render.markdown import md_escape, md_table
from qreport.store import write_text_atomic
from qreport.sweep_results import FailedJob, RunResult, collect

INDEX = "index.html"
SUMMARY = "summary.md"
RANKING_RULE = ("Ranked by loss, largest first: runs with labelled evaluation data by accuracy drop (float − int8, "
                "percentage points), then runs without labels by model output SQNR, lowest first.")


def _quantization(run: RunResult) -> str:
    text = run.mode
    if run.qconfig:
        text += f" · {run.qconfig}"
    if run.overrides:
        text += f" ({run.overrides} override{'s' if run.overrides != 1 else ''})"
    return text


def _notes(run: RunResult) -> list[str]:
    notes = [f"gate failed: {detail}" for detail in run.failed_gates]
    if run.random_weights:
        notes.append("random weights")
    if run.synthetic_data:
        notes.append("synthetic calibration")
    return notes


def _run_row(rank: int, run: RunResult) -> dict:
    return {
        "rank": rank,
        "name": run.name,
        "href": f"{quote(run.name)}/report.html",
        "model": run.model,
        "quantization": _quantization(run),
        "verdict": run.verdict.upper() or "—",
        "verdict_class": run.verdict if run.verdict in ("good", "bad") else "",
        "drop": fmt_points(run.accuracy_drop) if run.labelled else "—",
        "drop_ci": fmt_interval(run.accuracy_drop_lo, run.accuracy_drop_hi, fmt_points) if run.labelled else "",
        "drop_sort": sort_key(100 * run.accuracy_drop) if run.labelled else "",
        "labelled": run.labelled_samples if run.labelled else 0,
        "sqnr": fmt_db(run.output_sqnr_db),
        "sqnr_sort": sort_key(run.output_sqnr_db),
        "top1": fmt_pct(run.top1_agreement),
        "top1_sort": sort_key(run.top1_agreement),
        "notes": _notes(run),
    }


def _failed_row(job: FailedJob) -> dict:
    return {"name": job.name, "exit_code": "—" if job.exit_code is None else str(job.exit_code),
            "meaning": job.meaning, "last_line": job.last_line, "log": quote(job.log) if job.log else ""}


def index_view(runs: list[RunResult], failed: list[FailedJob]) -> dict:
    """The page's data: ranked rows (every number formatted), failed jobs, verdict counts."""
    rows = [_run_row(i, run) for i, run in enumerate(runs, 1)]
    counts = {level: sum(r.verdict == level for r in runs) for level in ("bad", "warn", "good")}
    return {
        "title": "qreport sweep",
        "jobs": len(runs) + len(failed),
        "rows": rows,
        "failed": [_failed_row(job) for job in failed],
        "counts": counts,
        "worst": rows[0] if rows else None,
        "rule": RANKING_RULE,
        "any_labelled": any(r.labelled for r in runs),
    }


def index_html(view: dict) -> str:
    """The self-contained index page."""
    return environment().get_template("sweep_index.html.j2").render(**view)


def index_markdown(view: dict) -> str:
    """The same ranking as a Markdown table, for ``$GITHUB_STEP_SUMMARY``."""
    reports, failed = len(view["rows"]), len(view["failed"])
    lines = [f"## qreport sweep: {view['jobs']} job{'s' if view['jobs'] != 1 else ''}, {reports} "
             f"report{'s' if reports != 1 else ''}, {failed} failed", ""]
    if view["rows"]:
        lines.append(md_table(
            ["#", "job", "model", "quantization", "verdict", "accuracy drop", "output SQNR", "top-1 agreement",
             "notes"],
            [[str(r["rank"]), md_escape(r["name"]), md_escape(r["model"]), md_escape(r["quantization"]), r["verdict"],
              f"{r['drop']} {r['drop_ci']}".strip(), r["sqnr"], r["top1"], md_escape("; ".join(r["notes"]))]
             for r in view["rows"]]))
        lines += ["", f"<sub>{md_escape(view['rule'])}</sub>"]
    if view["failed"]:
        lines += ["", "### Failed jobs", ""] if view["rows"] else ["### Failed jobs", ""]
        lines.append(md_table(["job", "exit code", "meaning", "last line of the log"],
                              [[md_escape(f["name"]), f["exit_code"], md_escape(f["meaning"]),
                                md_escape(f["last_line"]) or "—"] for f in view["failed"]]))
    return "\n".join(lines) + "\n"


def write_index(folder: str | Path) -> Path:
    """Write ``index.html`` and ``summary.md`` into a sweep folder from its run folders, logs and ``sweep.json``."""
    folder = Path(folder)
    runs, failed = collect(folder)
    view = index_view(runs, failed)
    write_text_atomic(folder / SUMMARY, index_markdown(view))
    out = folder / INDEX
    write_text_atomic(out, index_html(view))
    return out


def headline(run: RunResult) -> str:
    """A run's loss in a few words, for the terminal: accuracy drop with labels, output SQNR always."""
    parts = []
    if run.labelled:
        parts.append(f"accuracy drop {fmt_points(run.accuracy_drop)}")
    if not math.isnan(run.output_sqnr_db):
        parts.append(f"output SQNR {fmt_db(run.output_sqnr_db)}")
    if run.verdict:
        parts.append(run.verdict.upper())
    return ", ".join(parts)
