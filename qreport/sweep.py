"""``qreport sweep``: run every job of a jobs file as its own ``qreport build`` process, a few at a time, then write
the sweep folder's index (no torch in this process).

The sweep folder ``OUT`` holds ``<name>/`` (each job's run folder), ``logs/<name>.log`` (each build's output),
``sweep.json`` (each job's command, exit code and seconds; written before the first job starts and after each one
ends), ``index.html`` and ``summary.md``.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from qreport import interrupt
from qreport.errors import EXIT_GATE_FAILED, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, OutputError, RunDirError
from qreport.store import json_text, write_text_atomic
from qreport.sweep_jobs import Job
from qreport.sweep_results import LOGS, SWEEP_RECORD, exit_meaning, last_log_line, read_run

POLL_S = 0.1  # how often running builds are checked
STOP_GRACE_S = 30.0  # how long a stopped build may take to clean up before it is killed


@dataclasses.dataclass
class Outcome:
    """What became of one job: its command, exit code and seconds (None while it has not run)."""

    name: str
    command: list[str]
    exit_code: int | None = None
    seconds: float | None = None


@dataclasses.dataclass
class _Running:
    job: Job
    process: subprocess.Popen
    log: object
    started: float


def default_threads(workers: int) -> int:
    """Threads for each build when ``workers`` run at once: the CPUs shared out, at least one."""
    return max(1, (os.cpu_count() or 1) // workers)


def sweep_exit_code(codes: list[int | None], interrupted: bool) -> int:
    """0 when every job exited 0; else the highest exit code of a job (an error outranks a failed gate, 1), a job
    killed by a signal counting as 70; 130 when the sweep was interrupted."""
    if interrupted:
        return EXIT_INTERRUPTED
    failed = [EXIT_INTERNAL if code is None or code < 0 else code for code in codes if code != EXIT_OK]
    return max(failed, default=EXIT_OK)


def child_command(job: Job, out: Path) -> list[str]:
    """The ``qreport build`` process of one job, written to ``<out>/<name>``."""
    return [sys.executable, "-m", "qreport", "build", *job.options, "--out", str(out / job.name), "--force"]


def child_environment(threads: int) -> dict[str, str]:
    """The environment of a build: this one, with its thread budget (torch reads OMP_NUM_THREADS at start)."""
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}


def check_sweep_folder(out: Path) -> None:
    """Refuse an output folder that holds something other than an earlier sweep (its files would be overwritten)."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} exists and is not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not (out / SWEEP_RECORD).is_file():
        raise OutputError(f"{out} is not empty and holds no earlier sweep ({SWEEP_RECORD}); choose another --out")


def write_record(out: Path, outcomes: list[Outcome], complete: bool) -> None:
    """Write ``sweep.json``: every job's command, exit code and seconds so far."""
    jobs = [{"name": o.name, "command": shlex.join(o.command), "exit_code": o.exit_code,
             "seconds": None if o.seconds is None else round(o.seconds, 1)} for o in outcomes]
    write_text_atomic(out / SWEEP_RECORD, json_text({"complete": complete, "jobs": jobs}))


def _start(job: Job, out: Path, threads: int) -> _Running:
    command = child_command(job, out)
    log = open(out / LOGS / f"{job.name}.log", "w", encoding="utf-8")
    try:
        log.write(f"$ {shlex.join(command)}\n")
        log.flush()
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   env=child_environment(threads))
    except BaseException:
        log.close()
        raise
    return _Running(job, process, log, time.monotonic())


def _stop(running: list[_Running]) -> None:
    """Ask every running build to stop (SIGTERM: it removes its partial folder), kill what outlasts the grace."""
    for r in running:
        if r.process.poll() is None:
            r.process.terminate()
    deadline = time.monotonic() + STOP_GRACE_S
    for r in running:
        try:
            r.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            r.process.kill()
            r.process.wait()
        r.log.close()


def run_jobs(jobs: list[Job], out: Path, workers: int, threads: int,
             finished: Callable[[Outcome, int], None]) -> tuple[list[Outcome], bool]:
    """Run the jobs, ``workers`` at a time, calling ``finished(outcome, count)`` as each ends; on Ctrl-C or SIGTERM
    start no more and stop the running ones. Returns every job's outcome and whether the sweep was interrupted."""
    outcomes = {job.name: Outcome(job.name, child_command(job, out)) for job in jobs}
    pending, running, done = list(jobs), [], 0
    write_record(out, list(outcomes.values()), complete=False)
    try:
        while pending or running:
            interrupt.check()
            while pending and len(running) < workers:
                running.append(_start(pending.pop(0), out, threads))
            for r in list(running):
                code = r.process.poll()
                if code is None:
                    continue
                running.remove(r)
                r.log.close()
                outcome = outcomes[r.job.name]
                outcome.exit_code, outcome.seconds = code, time.monotonic() - r.started
                write_record(out, list(outcomes.values()), complete=False)
                done += 1
                finished(outcome, done)
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        _stop(running)
        for r in running:
            outcome = outcomes[r.job.name]
            outcome.exit_code, outcome.seconds = EXIT_INTERRUPTED, time.monotonic() - r.started
        write_record(out, list(outcomes.values()), complete=False)
        return list(outcomes.values()), True
    write_record(out, list(outcomes.values()), complete=True)
    return list(outcomes.values()), False


def progress_line(outcome: Outcome, count: int, total: int, out: Path, width: int) -> str:
    """One finished job for the terminal: name, exit code, seconds, and its loss or the last line of its log."""
    code = outcome.exit_code
    head = f"[{count}/{total}]".ljust(len(f"[{total}/{total}]") + 1)
    detail = "" if code == EXIT_OK else f"{exit_meaning(code)}: "
    if code in (EXIT_OK, EXIT_GATE_FAILED):
        from qreport.render.sweep_index import headline

        try:
            detail += headline(read_run(out / outcome.name))
        except RunDirError as exc:
            detail += str(exc)
    else:
        detail += last_log_line(out / LOGS / f"{outcome.name}.log")[:160]
    return f"{head}{outcome.name.ljust(width)}  exit {code:<3} {outcome.seconds:6.1f} s  {detail}".rstrip()


def run_sweep(jobs: list[Job], out: str | Path, workers: int = 1, threads: int | None = None,
              quiet: bool = False) -> int:
    """Run the jobs into ``out``, print one line per finished job, write the index; returns the sweep's exit code."""
    from qreport import __version__
    from qreport.render.sweep_index import write_index

    out = Path(out)
    threads = threads or default_threads(workers)
    check_sweep_folder(out)
    try:
        (out / LOGS).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {out / LOGS} ({exc.strerror or exc}); choose another --out") from None
    if not quiet:
        print(f"qreport {__version__}: sweep of {len(jobs)} job{'s' if len(jobs) != 1 else ''}, {workers} at a time, "
              f"{threads} thread{'s' if threads != 1 else ''} each → {out}", file=sys.stderr, flush=True)
    width = max(len(job.name) for job in jobs)

    def finished(outcome: Outcome, count: int) -> None:
        if not quiet or outcome.exit_code != EXIT_OK:
            print(progress_line(outcome, count, len(jobs), out, width), file=sys.stderr, flush=True)

    outcomes, interrupted = run_jobs(jobs, out, workers, threads, finished)
    index = write_index(out)
    if interrupted:
        ran = sum(o.exit_code not in (None, EXIT_INTERRUPTED) for o in outcomes)
        print(f"qreport: interrupted; {ran} of {len(jobs)} jobs finished, indexed in {index}", file=sys.stderr)
    elif not quiet:
        print(f"index: {index}", file=sys.stderr)
    return sweep_exit_code([o.exit_code for o in outcomes], interrupted)
