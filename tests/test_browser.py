"""The report in a real browser (Debian's chromium, headless, network blocked), driven over the DevTools protocol:
desktop and phone widths, JavaScript on and off, print media."""

import os

import pytest
from PIL import Image

from headless import CHROMIUM, Browser
from qreport.cli import main

pytestmark = pytest.mark.browser
WIDTHS = (1440, 390)


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs Debian's chromium package")
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    with Browser() as b:
        yield b


@pytest.fixture(scope="module")
def tiny_diff(tiny_run, tmp_path_factory):
    """The tiny run compared with itself (every section of the diff page, at no extra build)."""
    out = tmp_path_factory.mktemp("diff") / "diff.html"
    assert main(["diff", str(tiny_run), str(tiny_run), "-o", str(out), "-q"]) == 0
    return out


def test_console_check_catches_a_broken_page(browser, tmp_path):
    page = tmp_path / "broken.html"
    page.write_text("<html><body><script>notDefined();</script></body></html>")
    browser.open(page, 800)
    assert any("notDefined" in e for e in browser.console_errors())


def test_overflow_check_catches_a_wide_page(browser, tmp_path):
    page = tmp_path / "wide.html"
    page.write_text('<html><body><div style="width:900px">wide</div></body></html>')
    browser.open(page, 390)
    assert browser.overflow()["scroll"] > 390


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
@pytest.mark.parametrize("width", WIDTHS)
def test_report_fits_the_window_without_console_errors(browser, tiny_run, width, javascript):
    browser.open(tiny_run / "report.html", width, javascript=javascript)
    wide = browser.overflow()
    assert wide["scroll"] <= width, f"the page scrolls sideways at {width} px: {wide}"
    assert browser.console_errors() == []
    ready = browser.evaluate("document.body.getAttribute('data-js')")
    assert ready == ("ready" if javascript else None)
    # without JavaScript the filter box (which needs it) stays hidden and every layer row is shown
    assert browser.evaluate("document.getElementById('layer-filter').hidden") is (not javascript)


@pytest.mark.parametrize("width", WIDTHS)
def test_diff_fits_the_window_without_console_errors(browser, tiny_diff, width):
    for javascript in (True, False):
        browser.open(tiny_diff, width, javascript=javascript)
        wide = browser.overflow()
        assert wide["scroll"] <= width, f"the diff scrolls sideways at {width} px: {wide}"
        assert browser.console_errors() == []


def _column(table: str, col: int) -> str:
    return (f"Array.from(document.querySelectorAll('{table} tbody tr')).map(function (r) {{"
            f" var c = r.cells[{col}]; var s = c.getAttribute('data-sort');"
            f" return s === null ? c.textContent.trim() : s; }})")


@pytest.mark.parametrize("width", WIDTHS)
def test_sorting_a_table_by_its_header_still_works(browser, tiny_run, width):
    browser.open(tiny_run / "report.html", width)
    table = "#layers table.sortable"
    headers = browser.evaluate(f"Array.from(document.querySelectorAll('{table} th')).map(function (h) "
                               "{ return h.textContent.trim(); })")
    col = headers.index("isolated")
    before = browser.evaluate(_column(table, col))
    numbers = [float(v) for v in before if v != ""]
    assert len(numbers) >= 3
    browser.evaluate(f"document.querySelectorAll('{table} th')[{col}].click()")
    ascending = [float(v) for v in browser.evaluate(_column(table, col)) if v != ""]
    assert ascending == sorted(numbers)
    browser.evaluate(f"document.querySelectorAll('{table} th')[{col}].click()")
    descending = [float(v) for v in browser.evaluate(_column(table, col)) if v != ""]
    assert descending == sorted(numbers, reverse=True)
    assert browser.console_errors() == []


def test_filtering_the_layer_table(browser, tiny_run):
    browser.open(tiny_run / "report.html", 1440)
    rows = "Array.from(document.querySelectorAll('#layers tbody tr')).filter(function (r) { return !r.hidden; })"
    total = browser.evaluate(f"{rows}.length")
    browser.evaluate("var f = document.getElementById('layer-filter'); f.value = 'fc';"
                     " f.dispatchEvent(new Event('input'))")
    shown = browser.evaluate(f"{rows}.map(function (r) {{ return r.cells[1].textContent; }})")
    assert 0 < len(shown) < total and all("fc" in name for name in shown)


def test_print_media_hides_the_controls_and_keeps_findings_whole(browser, tiny_run):
    browser.open(tiny_run / "report.html", 1000)
    browser.send("Emulation.setEmulatedMedia", {"media": "print"})
    style = ("(function (sel, prop, pseudo) { var e = document.querySelector(sel);"
             " return e ? getComputedStyle(e, pseudo || null)[prop] : null; })")
    assert browser.evaluate(f"{style}('nav', 'display')") == "none"
    assert browser.evaluate(f"{style}('#layer-filter', 'display')") == "none"
    assert browser.evaluate(f"{style}('th.sortable', 'content', '::after')") in ("none", "normal")
    assert browser.evaluate(f"{style}('.finding', 'breakInside')") == "avoid"
    assert browser.evaluate(f"{style}('.chart', 'breakInside')") == "avoid"
    pdf = browser.send("Page.printToPDF", {"printBackground": True})["data"]
    assert len(pdf) > 1000
    browser.send("Emulation.setEmulatedMedia", {"media": ""})


def test_report_screenshot_is_not_blank(browser, tiny_run, tmp_path):
    browser.open(tiny_run / "report.html", 1280)
    shot = browser.screenshot(tmp_path / "report.png")
    image = Image.open(shot).convert("L")
    lo, hi = image.getextrema()
    assert hi - lo > 100
    histogram = image.histogram()
    assert max(histogram) / sum(histogram) < 0.97  # not one flat colour
    browser.open(tiny_run / "report.html", 390)
    phone = Image.open(browser.screenshot(tmp_path / "phone.png"))
    assert phone.width == 390 and phone.height > image.height  # the same page, taller at phone width
    Image.open(shot).save(tiny_run.parent / "tiny-report.png")


def test_folded_sections_print_open_and_fold_back(browser, tiny_diff):
    browser.open(tiny_diff, 1000)
    closed = "document.querySelectorAll('details:not([open])').length"
    folded = browser.evaluate(closed)
    assert folded >= 1
    browser.evaluate("window.dispatchEvent(new Event('beforeprint'))")
    assert browser.evaluate(closed) == 0
    browser.evaluate("window.dispatchEvent(new Event('afterprint'))")
    assert browser.evaluate(closed) == folded


def test_clicking_a_graph_node_opens_its_layer_card_and_the_diagnosis_is_on_top(browser, tiny_run):
    browser.open(tiny_run / "report.html", 1440)
    assert browser.evaluate("document.querySelector('#verdict .diagnosis').textContent.length") > 40
    href = browser.evaluate("(document.querySelector('#graph svg a') || {getAttribute: () => null}).getAttribute('href')")
    assert href and href.startswith("#card-")
    card = href[1:]
    assert browser.evaluate(f"document.getElementById('{card}').open") is False
    browser.evaluate("document.querySelector('#graph svg a').dispatchEvent(new MouseEvent('click', {bubbles: true}))")
    assert browser.evaluate(f"document.getElementById('{card}').open") is True
    assert browser.console_errors() == []
