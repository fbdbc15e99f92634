"""The one timestamp a run records; honours ``SOURCE_DATE_EPOCH`` for reproducible builds."""

from __future__ import annotations

import datetime as dt
import os


def build_timestamp() -> str:
    """UTC time as ``YYYY-MM-DDTHH:MM:SSZ``, from ``SOURCE_DATE_EPOCH`` when it is set."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    moment = dt.datetime.fromtimestamp(int(epoch), dt.timezone.utc) if epoch and epoch.isdigit() else dt.datetime.now(dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
