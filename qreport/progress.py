"""Progress lines on stderr, one per build step."""

from __future__ import annotations

import sys


class Progress:
    """One line per step on stderr: ``[3/9] shadow  52 rows  4.1 s``."""

    def __init__(self, total: int, quiet: bool):
        self.total = total
        self.quiet = quiet
        self.step = 0

    def say(self, message: str) -> None:
        """Print a free-standing line (warnings, notes) unless quiet."""
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)

    def done(self, name: str, detail: str, seconds: float) -> None:
        """Report a finished step; the counter is padded to the width of ``[total/total]`` so the names line up
        past step 9."""
        self.step += 1
        counter = f"[{self.step}/{self.total}]"
        width = 2 * len(str(self.total)) + 3
        self.say(f"{counter:<{width}} {name:<12} {detail:<34} {seconds:6.1f} s")
