"""The Jinja environment and ``render_run``: a run folder in, ``report.html`` out."""

from __future__ import annotations

import functools
import importlib.resources
import json
from pathlib import Path

import jinja2
from markupsafe import Markup, escape

from qreport.metrics import IDEAL_RMSE_OVER_STEP
from qreport.render.context import build_view
from qreport.render.fmt import fmt_num
from qreport.render.markdown import run_summary
from qreport.store import RunReader, json_text, write_text_atomic


def templates_dir() -> Path:
    """Where the templates live: inside the installed package, or the source tree's top-level templates/."""
    try:
        path = Path(str(importlib.resources.files("qreport.templates")))
        if (path / "report.html.j2").is_file():
            return path
    except ModuleNotFoundError:
        pass
    return Path(__file__).resolve().parents[2] / "templates"


def _tojson(value) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def break_points(name) -> Markup:
    """A layer name, escaped, that may wrap after each ``.`` and ``_`` (``<wbr>``) and nowhere else."""
    text = str(escape(name))
    return Markup(text.replace(".", ".<wbr>").replace("_", "_<wbr>"))


@functools.lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """One cached environment: autoescape on, undefined names are errors, sorted JSON."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.policies["json.dumps_function"] = lambda v, **kw: _tojson(v)
    env.filters["wbr"] = break_points  # {{ r.fqn | wbr }}: long layer names wrap at dots and underscores
    # our own CSS/JS files, inlined verbatim so the report needs nothing else
    env.globals["inline"] = lambda name: Markup((templates_dir() / name).read_text(encoding="utf-8"))
    # RMSE/step of rounding alone (1/√12), as every template words it
    env.globals["ideal_rmse_over_step"] = fmt_num(IDEAL_RMSE_OVER_STEP, 2)
    return env


def render_html(view: dict) -> str:
    """The report page for a view model."""
    return environment().get_template("report.html.j2").render(**view)


def render_run(run_dir: str | Path, in_progress: bool = False) -> Path:
    """Render ``report.html``, ``summary.md`` and ``summary.json`` from the run's Parquet files and manifest."""
    reader = RunReader(run_dir, in_progress=in_progress)
    view = build_view(reader)
    markdown, data = run_summary(view)
    run = Path(run_dir)
    write_text_atomic(run / "summary.md", markdown)
    write_text_atomic(run / "summary.json", json_text(data))
    out = run / "report.html"
    write_text_atomic(out, render_html(view))
    return out
