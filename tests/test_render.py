"""The renderer: reads only the run folder, never imports torch, and writes an offline, inert page."""

import shutil
import subprocess
import sys
from html.parser import HTMLParser

import pandas as pd

from qreport.cli import main
from qreport.store import table_bytes


class _Page(HTMLParser):
    """Collects what a browser would fetch or run from the page."""

    def __init__(self):
        super().__init__()
        self.external = []
        self.scripts = 0
        self.csp = None
        self.tags = []
        self.text = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "script":
            self.scripts += 1
            self._in_script = True
            if "src" in a:
                self.external.append(("script", a["src"]))
        for key in ("src", "href", "xlink:href", "data", "poster"):
            value = a.get(key)
            if value and not value.startswith(("#", "data:")):
                self.external.append((tag, value))
        if tag == "link":
            self.external.append(("link", a.get("href")))
        if tag == "meta" and a.get("http-equiv") == "Content-Security-Policy":
            self.csp = a.get("content")

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if not self._in_script:
            self.text.append(data)


def parse(path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def test_report_is_one_offline_file_with_charts(tiny_run):
    page = parse(tiny_run / "report.html")
    assert page.external == []
    assert page.csp and "default-src 'none'" in page.csp
    assert page.tags.count("svg") >= 3  # activations, weights, histograms
    assert page.scripts == 1
    text = " ".join(page.text)
    for heading in ("Verdict", "Guidance", "SQNR per layer", "Layers", "Coverage", "Provenance"):
        assert heading in text
    assert "@import" not in (tiny_run / "report.html").read_text()


def test_render_works_where_import_torch_fails(tiny_run, tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(tiny_run, run)
    (run / "report.html").unlink()
    code = (
        "import sys; sys.modules['torch'] = None\n"  # makes `import torch` raise ImportError
        "from qreport.cli import main\n"
        f"rc = main(['render', {str(run)!r}, '-q'])\n"
        "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
        "sys.exit(rc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (run / "report.html").read_text() == (tiny_run / "report.html").read_text()


def test_layer_names_from_the_model_are_escaped_everywhere(tiny_run, tmp_path):
    run = tmp_path / "hostile"
    shutil.copytree(tiny_run, run)
    evil = '<script>alert("x")</script>&<img src=x onerror=alert(1)>'
    for stage in ("weights", "activations", "shadow", "coverage", "guidance"):
        df = pd.read_parquet(run / f"{stage}.parquet")
        df["layer_fqn"] = [f"{evil}{i}" for i in range(len(df))]
        (run / f"{stage}.parquet").write_bytes(table_bytes(stage, df))
    assert main(["render", str(run), "-q"]) == 0
    html = (run / "report.html").read_text()
    page = parse(run / "report.html")
    assert page.scripts == 1 and "img" not in page.tags
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html or "&lt;script&gt;alert" in html


def test_render_refuses_a_missing_or_incomplete_run(tmp_path, capsys):
    assert main(["render", str(tmp_path / "nope")]) == 4
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "does not exist" in err
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "weights.parquet").write_bytes(b"")
    assert main(["render", str(tmp_path / "half")]) == 4
    assert "not a finished qreport run" in capsys.readouterr().err
    assert not (tmp_path / "half" / "report.html").exists()


def test_dollar_signs_in_layer_names_are_text_not_mathtext():
    from qreport.render import charts

    svg = charts.weights_chart(["a$x^$", "b$"], [30.0, 40.0], [False, True])
    assert "a$x^$" in svg and "b$" in svg
