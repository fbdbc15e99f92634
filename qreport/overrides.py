"""Which override applies to a module: one rule for coverage, the fix stage and the flows (no torch here)."""

from __future__ import annotations

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
