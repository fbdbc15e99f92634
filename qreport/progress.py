"""Progress lines on stderr, one per build step."""

from __future__ import annotations

import sys


class Progress:
    """One line per step on stderr: ``[3/9] shadow  52 layers  4.1 s``."""

    def __init__(self, total: int, quiet: bool):
        self.total = total
        self.quiet = quiet
        self.step = 0

    def say(self, message: str) -> None:
        """Print a free-standing line (warnings, notes) unless quiet."""
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)

    def done(self, name: str, detail: str, seconds: float) -> None:
        """Report a finished step."""
        self.step += 1
        self.say(f"[{self.step}/{self.total}] {name:<12} {detail:<34} {seconds:6.1f} s")
