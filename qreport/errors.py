"""Errors a user can act on, each with its own exit code."""

from __future__ import annotations

# Exit codes, documented in the README.
EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_USAGE = 2
EXIT_INPUT = 3
EXIT_RUN_DIR = 4
EXIT_OUTPUT = 5
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (torch often starts its messages with a newline)."""
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), "")


def is_own_bug(exc: BaseException) -> bool:
    """Whether an exception was raised by qreport's own code rather than inside torch or another library: the
    innermost frame of its traceback is in the qreport package."""
    import traceback
    from pathlib import Path

    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return False
    package = Path(__file__).resolve().parent
    innermost = Path(frames[-1].filename).resolve()
    return package in innermost.parents


class QReportError(Exception):
    """A problem with the user's input or environment, shown as one line."""

    exit_code = EXIT_INPUT

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class InputError(QReportError):
    """Bad model name, checkpoint, data folder or qconfig file."""

    exit_code = EXIT_INPUT


class RunDirError(QReportError):
    """A run directory that cannot be read: missing, incomplete, corrupt or too new."""

    exit_code = EXIT_RUN_DIR


class OutputError(QReportError):
    """The output directory cannot be written."""

    exit_code = EXIT_OUTPUT
