"""Packaging: the wheel holds every package and template (a new folder included), builds without setuptools
warnings from our configuration, and declares the Python floor the code needs."""

import ast
import email
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile

import pytest

from conftest import ROOT

# Standard-library modules newer than Python 3.8, with the version that added them.
NEW_STDLIB = {"graphlib": (3, 9), "zoneinfo": (3, 9), "tomllib": (3, 11)}


def _sources(root):
    return sorted(p for p in (root / "qreport").rglob("*.py") if "__pycache__" not in p.parts)


def _package_dirs(root):
    """Every folder under qreport/ that holds Python code, as the package name it ships under."""
    return {".".join(p.parent.relative_to(root).parts) for p in _sources(root)}


def _template_files(root):
    return {"qreport/templates/" + p.relative_to(root / "templates").as_posix()
            for p in (root / "templates").rglob("*") if p.is_file() and p.suffix in (".j2", ".css", ".js", ".py")
            and "__pycache__" not in p.parts}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A wheel built from a copy of the sources with a new subpackage and a new template folder added."""
    src = tmp_path_factory.mktemp("src") / "qreport-src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("qreport", "templates"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    (src / "qreport" / "probe_pkg" / "inner").mkdir(parents=True)
    (src / "qreport" / "probe_pkg" / "__init__.py").write_text("")
    (src / "qreport" / "probe_pkg" / "inner" / "__init__.py").write_text("")
    (src / "templates" / "probe_dir").mkdir()
    (src / "templates" / "probe_dir" / "probe.html.j2").write_text("probe\n")
    out = src.parent / "wheels"
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                             "-w", str(out), str(src)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = out.glob("qreport-*.whl")
    return src, wheel, result.stdout + result.stderr


def test_the_build_prints_no_setuptools_warning(built):
    _, _, output = built
    warnings = [line for line in output.splitlines() if re.search(r"warn|deprecat", line, re.IGNORECASE)]
    assert not warnings, "\n".join(warnings)


def test_the_wheel_holds_every_package_including_new_ones(built):
    src, wheel, _ = built
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {name.rpartition("/")[0].replace("/", ".") for name in names if name.endswith(".py")}
    packages = _package_dirs(src)
    assert {"qreport.flows", "qreport.stages", "qreport.render", "qreport.probe_pkg.inner"} <= packages
    assert packages <= shipped, sorted(packages - shipped)
    assert {f"qreport/{p.relative_to(src / 'qreport').as_posix()}" for p in _sources(src)} <= set(names)


def test_the_wheel_holds_every_template_including_new_folders(built):
    src, wheel, _ = built
    names = set(zipfile.ZipFile(wheel).namelist())
    templates = _template_files(src)
    assert {"qreport/templates/report.html.j2", "qreport/templates/partials/finding_error_origin.html.j2",
            "qreport/templates/probe_dir/probe.html.j2"} <= templates
    assert templates <= names, sorted(templates - names)
    assert "qreport/model_support.json" in names


def test_the_wheel_metadata_has_an_spdx_license_and_the_python_floor(built):
    _, wheel, _ = built
    with zipfile.ZipFile(wheel) as zf:
        (meta_name,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        meta = email.message_from_bytes(zf.read(meta_name))
    assert meta["License-Expression"] == "BSD-3-Clause"
    assert meta["License"] is None  # the deprecated free-text field
    assert meta["Requires-Python"] == ">=3.11"


def _floor() -> tuple[int, int]:
    spec = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    match = re.fullmatch(r">=\s*3\.(\d+)", spec.strip())
    assert match, f"requires-python {spec!r} is not a plain floor"
    return 3, int(match.group(1))


def _imported_modules(tree) -> set[str]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.partition(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module.partition(".")[0])
    return out


def test_requires_python_is_the_floor_the_code_needs():
    floor = _floor()
    needed = (3, 8)
    for path in _sources(ROOT):
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text, filename=str(path), feature_version=floor)  # syntax the floor accepts
        for module in _imported_modules(tree):
            needed = max(needed, NEW_STDLIB.get(module, (3, 8)))
    assert floor == needed, f"requires-python says {floor}, the code needs {needed}"
    assert sys.version_info[:2] >= floor
