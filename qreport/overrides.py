"""Which override applies to a module: one rule for coverage, the fix stage and the flows (no torch here)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from qreport.config import ModuleOverride


def covers(module: str, fqn: str) -> bool:
    """True when an override for module path ``module`` applies to ``fqn``: the module itself or anything inside it."""
    return fqn == module or fqn.startswith(module + ".")


def kept_float_by(fqn: str, overrides: Iterable[ModuleOverride]) -> str | None:
    """The module path of the first override that keeps ``fqn`` float (``fqn`` or a module around it), or None."""
    for o in overrides:
        if o.preset == "float" and covers(o.module, fqn):
            return o.module
    return None


def unknown_module_error(names: list[str], overrides: Iterable[ModuleOverride]) -> str:
    """A one-line error for the first override naming a module not in ``names`` (the model's paths), else ""."""
    known = set(names)
    for override in overrides:
        if override.module not in known:
            close = difflib.get_close_matches(override.module, names, n=3)
            hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
            return (f"qconfig names module {override.module!r}, which the model does not have{hint}; use a path from "
                    "the report's coverage table")
    return ""
