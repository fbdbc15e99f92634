"""SIGTERM as a flag, acted on at safe points (between stages and batches), so cleanup always runs."""

from __future__ import annotations

import signal

_requested = False


class Interrupted(KeyboardInterrupt):
    """The build was asked to stop (SIGTERM); handled like Ctrl-C."""


def _request(signum, frame) -> None:
    global _requested
    _requested = True


def install() -> object:
    """Route SIGTERM to the flag (cleared); returns the previous handler."""
    global _requested
    _requested = False
    return signal.signal(signal.SIGTERM, _request)


def check() -> None:
    """Raise ``Interrupted`` if a stop was asked for since ``install``."""
    if _requested:
        raise Interrupted()


def checked(items):
    """``items``, checking for a stop before each one."""
    for item in items:
        check()
        yield item
