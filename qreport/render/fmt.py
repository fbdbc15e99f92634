"""Number formatting for the report: bad numbers stay visibly bad, missing ones say so."""

from __future__ import annotations

import math


def fmt_db(v) -> str:
    """``23.4 dB``; zero noise reads ``exact``; missing reads ``—``."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if v == math.inf:
        return "exact"
    if v == -math.inf:
        return "−∞ dB"
    return f"{v:.1f} dB"


def fmt_num(v, digits: int = 3) -> str:
    """A general number with ``digits`` significant digits."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if isinstance(v, float) and math.isinf(v):
        return "∞" if v > 0 else "−∞"
    return f"{v:.{digits}g}"


def fmt_pct(v, digits: int = 1) -> str:
    """A fraction as a percentage; tiny non-zero values never round to 0."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if 0 < v < 10 ** -(digits + 2):
        return f"<{10 ** -digits:g} %"
    return f"{100 * v:.{digits}f} %"


def sort_key(v) -> str:
    """A value for the table's ``data-sort`` attribute (missing sorts last)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float) and math.isinf(v):
        return "1e99" if v > 0 else "-1e99"
    return repr(v) if isinstance(v, float) else str(v)


def dom_id(prefix: str, name: str) -> str:
    """A stable HTML id derived from a layer name (non-alphanumerics become ``-``)."""
    safe = "".join(c if c.isalnum() else "-" for c in name)
    return f"{prefix}-{safe}"
