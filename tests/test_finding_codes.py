"""Every finding code has its explanation partial and its README entry, and guidance emits no other code.

Without this a code with no partial fails only when a report happens to include it."""

import ast
import re

import pytest

from conftest import ROOT
from qreport.guidance import CODES

PARTIALS = ROOT / "templates" / "partials"


def test_codes_are_unique_identifiers():
    assert len(set(CODES)) == len(CODES)
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", code) for code in CODES), CODES


@pytest.mark.parametrize("code", CODES)
def test_every_code_has_its_partial(code):
    assert (PARTIALS / f"finding_{code}.html.j2").is_file()


def test_every_finding_partial_has_its_code():
    orphans = sorted(p.name for p in PARTIALS.glob("finding_*.html.j2")
                     if p.name.removeprefix("finding_").removesuffix(".html.j2") not in CODES)
    assert not orphans, orphans


def test_every_partial_renders_in_a_report_view(tiny_run):
    from qreport.render.context import build_view
    from qreport.render.html import environment
    from qreport.store import RunReader

    view = build_view(RunReader(tiny_run))
    for code in CODES:
        text = environment().get_template(f"partials/finding_{code}.html.j2").render(**view)
        assert text.strip(), code


def test_guidance_emits_only_listed_codes():
    tree = ast.parse((ROOT / "qreport" / "guidance.py").read_text(encoding="utf-8"))
    emitted = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Finding":
            first = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "code"), None)
            assert isinstance(first, ast.Constant), f"line {node.lineno}: a Finding's code is not a literal"
            emitted.add(first.value)
        elif isinstance(node, ast.Compare) and ast.unparse(node.left).endswith(".code"):
            emitted |= {c.value for c in node.comparators if isinstance(c, ast.Constant)}
    assert emitted, "no Finding(...) found in guidance.py"
    assert emitted <= set(CODES), sorted(emitted - set(CODES))


def test_every_code_is_in_the_readme():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [code for code in CODES if f"`{code}`" not in readme]
    assert not missing, f"README.md does not name these finding codes: {missing}"
