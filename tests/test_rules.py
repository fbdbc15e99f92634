"""One home for each rule: the modules that need a rule import it from its home instead of writing it again,
and no function is left unused. Each check reads the source (ast), so a new copy anywhere fails here."""

from __future__ import annotations

import ast
import math
import re
from pathlib import Path

import pytest

from conftest import ROOT
from qreport.metrics import IDEAL_RMSE_OVER_STEP
from qreport.overrides import covers, kept_float_by

# Files that still hold their own copy of a rule and are being switched to its home; remove an entry with the copy.
PENDING: dict[str, set[str]] = {}


def _python_files(*folders: str) -> list[Path]:
    return sorted(p for f in folders for p in (ROOT / f).rglob("*.py") if "__pycache__" not in p.parts)


def _trees():
    for path in _python_files("qreport"):
        yield path.relative_to(ROOT).as_posix(), ast.parse(path.read_text(encoding="utf-8"))


def _docstrings(tree) -> set[int]:
    """ids of the docstring nodes (prose may quote a rule's number)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def _int_range(node) -> bool:
    return isinstance(node, ast.Tuple) and ast.unparse(node) in ("(0, 255)", "(-128, 127)")


def _weighted_layers(node) -> bool:
    if not isinstance(node, ast.Tuple):
        return False
    names = {ast.unparse(e).rpartition(".")[2] for e in node.elts}
    return {"Conv2d", "Linear"} <= names


def _kept_float_prefix(node) -> bool:
    """``fqn == m or fqn.startswith(m + ".")``, or a function of its own for it."""
    if isinstance(node, ast.FunctionDef) and node.name in ("kept_float_by", "_kept_float_by", "covers"):
        return True
    if not (isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or)):
        return False
    equal = any(isinstance(v, ast.Compare) and isinstance(v.ops[0], ast.Eq) for v in node.values)
    prefix = any(isinstance(v, ast.Call) and isinstance(v.func, ast.Attribute) and v.func.attr == "startswith"
                 and v.args and isinstance(v.args[0], ast.BinOp) and ast.unparse(v.args[0]).endswith("+ '.'")
                 for v in node.values)
    return equal and prefix


def _ideal_rmse(node, docstrings) -> bool:
    if not isinstance(node, ast.Constant) or id(node) in docstrings:
        return False
    if isinstance(node.value, float):
        return abs(node.value - IDEAL_RMSE_OVER_STEP) < 0.006
    return isinstance(node.value, str) and re.search(r"\b0\.29\d*\b", node.value) is not None


def _db_format(node) -> bool:
    return isinstance(node, ast.Constant) and node.value == "exact"


def _diff_default(node) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add_argument"
            and any(isinstance(a, ast.Constant) and a.value == "--same-within" for a in node.args)
            and any(k.arg == "default" and isinstance(k.value, ast.Constant) for k in node.keywords))


RULES = {
    # rule: (its one home, detector)
    "int_range": ("qreport/qtypes.py", _int_range),
    "weighted_layers": ("qreport/qtypes.py", _weighted_layers),
    "kept_float_prefix": ("qreport/overrides.py", _kept_float_prefix),
    "ideal_rmse": ("qreport/metrics.py", _ideal_rmse),
    "db_format": ("qreport/render/fmt.py", _db_format),
    "diff_default": ("qreport/diff.py", _diff_default),
}


def _holders(rule: str) -> set[str]:
    _, detect = RULES[rule]
    out = set()
    for name, tree in _trees():
        docstrings = _docstrings(tree)
        for node in ast.walk(tree):
            if detect(node, docstrings) if rule == "ideal_rmse" else detect(node):
                out.add(name)
    if rule == "ideal_rmse":  # templates say it through the `ideal_rmse_over_step` global
        for path in sorted((ROOT / "templates").rglob("*.j2")):
            text = re.sub(r"{#.*?#}", "", path.read_text(encoding="utf-8"), flags=re.S)
            if re.search(r"\b0\.29\d*\b", text):
                out.add(path.relative_to(ROOT).as_posix())
    return out


@pytest.mark.parametrize("rule", sorted(RULES))
def test_each_rule_has_one_home(rule):
    home, _ = RULES[rule]
    holders = _holders(rule)
    pending = PENDING.get(rule, set())
    if rule not in ("diff_default", "ideal_rmse"):  # those two are named constants at home, not patterns
        assert home in holders, f"{rule}: the detector no longer finds the rule in its home {home}"
    extra = holders - {home} - pending
    assert not extra, f"{rule} is written again in {sorted(extra)}; import it from {home}"
    stale = {p for p in pending - holders if (ROOT / p).exists()}
    assert not stale, f"{sorted(stale)} no longer copy {rule}: remove them from PENDING"


def test_the_homes_hold_what_the_others_import():
    import torch

    from qreport import macs, qtypes, streaming
    from qreport.diff import SAME_WITHIN_DB
    from qreport.flows import fx_sim
    from qreport.render.fmt import fmt_db

    assert qtypes.INT_RANGE[torch.quint8] == (0, 255) and qtypes.INT_RANGE[torch.qint8] == (-128, 127)
    assert set(qtypes.INT8_DTYPES) <= set(qtypes.INT_RANGE)
    assert streaming.INT_RANGE is fx_sim.INT_RANGE is qtypes.INT_RANGE
    assert macs.WEIGHTED_LAYERS is fx_sim.WEIGHTED_LAYERS is qtypes.WEIGHTED_LAYERS
    assert SAME_WITHIN_DB == 0.5
    assert math.isclose(IDEAL_RMSE_OVER_STEP, 1 / math.sqrt(12))
    assert [fmt_db(v) for v in (math.inf, -math.inf, math.nan, 23.44)] == ["exact", "−∞ dB", "—", "23.4 dB"]


def test_the_qtypes_ranges_are_torchs():
    import torch

    from qreport.qtypes import INT_RANGE

    for dtype, (lo, hi) in INT_RANGE.items():
        info = torch.iinfo(dtype)
        assert (info.min, info.max) == (lo, hi), dtype


def test_kept_float_by_covers_the_module_and_what_is_inside_it():
    from qreport.config import ModuleOverride

    overrides = [ModuleOverride(module="features.1", preset="per_channel"),
                 ModuleOverride(module="features.17", preset="float")]
    assert kept_float_by("features.17", overrides) == "features.17"
    assert kept_float_by("features.17.conv.0", overrides) == "features.17"
    assert kept_float_by("features.170", overrides) is None  # a sibling with the same prefix is not inside
    assert kept_float_by("features.1.conv", overrides) is None  # overridden, but not kept float
    assert covers("a.b", "a.b") and covers("a.b", "a.b.c") and not covers("a.b", "a.bc") and not covers("a.b", "a")


def test_the_templates_get_the_ideal_rmse_from_metrics():
    from qreport.render.html import environment

    text = environment().get_template("partials/finding_high_rmse.html.j2").render(thresholds={"rmse": 0.7})
    assert "1/√12 ≈ 0.29 steps" in text  # IDEAL_RMSE_OVER_STEP to two significant digits


def _identifiers_in_templates() -> set[str]:
    out = set()
    for path in (ROOT / "templates").rglob("*.j2"):
        for expr in re.findall(r"{[{%](.*?)[%}]}", path.read_text(encoding="utf-8"), flags=re.S):
            out |= set(re.findall(r"[A-Za-z_]\w*", expr))
    return out


def test_every_function_qreport_defines_is_used():
    defined: list[tuple[str, str]] = []
    used: set[str] = set(_identifiers_in_templates())
    for path in _python_files("qreport", "tests", "bench", "examples"):
        if path == Path(__file__).resolve():
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        in_package = path.relative_to(ROOT).parts[0] == "qreport"
        for node in ast.walk(tree):
            if in_package and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("__"):
                defined.append((node.name, path.relative_to(ROOT).as_posix()))
            elif isinstance(node, ast.Name):
                used.add(node.id)
            elif isinstance(node, ast.Attribute):
                used.add(node.attr)
            elif isinstance(node, ast.alias):
                used.add(node.name.rpartition(".")[2])
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isidentifier():
                used.add(node.value)  # getattr(obj, "name"), entry points
    unused = sorted(f"{path}: {name}" for name, path in defined if name not in used)
    assert not unused, unused
