"""Layout rules that need no browser: layer names wrap at dots and underscores, the print stylesheet exists."""

import re

from conftest import ROOT
from qreport.render.html import environment


def test_wbr_filter_breaks_names_at_dots_and_underscores_and_escapes_them():
    wbr = environment().filters["wbr"]
    assert str(wbr("features.17.conv_1")) == "features.<wbr>17.<wbr>conv_<wbr>1"
    assert str(wbr("<script>.x")) == "&lt;script&gt;.<wbr>x"
    text = environment().from_string("{{ name | wbr }}").render(name="a.b<i>")
    assert text == "a.<wbr>b&lt;i&gt;"


def test_no_css_breaks_words_at_every_character():
    css = (ROOT / "templates" / "report.css").read_text(encoding="utf-8")
    assert "break-all" not in css
    assert "min-width: 420px" not in css  # the fix table's after column was cut at phone width


def test_print_stylesheet_hides_controls_and_keeps_blocks_whole():
    css = (ROOT / "templates" / "report.css").read_text(encoding="utf-8")
    start = css.index("@media print")
    body = css[start:]
    hidden = re.search(r"([^{}]*)\{\s*display:\s*none", body).group(1)
    for control in ("nav", ".filter", "#layer-filter"):
        assert control in hidden
    assert "th.sortable::after { content: none; }" in body
    whole = re.search(r"([^{}]*)\{\s*break-inside:\s*avoid", body).group(1)
    for block in (".finding", ".fixbox", ".chart", "figure", "tr"):
        assert block in whole
