"""A built wheel (not the source tree) carries the templates and renders a report."""

import subprocess
import sys
import zipfile

from conftest import ROOT


def _installed_cli(target, argv: list[str]) -> subprocess.CompletedProcess:
    """Run the CLI from the package installed in ``target``, with the source tree out of the path."""
    code = (
        "import sys, qreport\n"
        f"assert qreport.__file__.startswith({str(target)!r}), qreport.__file__\n"
        "from qreport.cli import main\n"
        f"sys.exit(main({argv!r}))\n"
    )
    return subprocess.run([sys.executable, "-P", "-c", code], cwd=target.parent, capture_output=True, text=True,
                          env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}, timeout=120)


def test_installed_wheel_renders_a_report(tiny_run, tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "-w", str(wheels), str(ROOT)], check=True, capture_output=True, timeout=300)
    (wheel,) = wheels.glob("qreport-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for needed in ("qreport/templates/report.html.j2", "qreport/templates/report.css", "qreport/templates/report.js",
                   "qreport/templates/partials/finding_error_origin.html.j2", "qreport/model_support.json"):
        assert needed in names

    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    run = tmp_path / "run"
    subprocess.run(["cp", "-r", str(tiny_run), str(run)], check=True)
    (run / "report.html").unlink()
    result = _installed_cli(target, ["render", str(run), "-q"])
    assert result.returncode == 0, result.stderr
    assert (run / "report.html").read_text() == (tiny_run / "report.html").read_text()

    # The recorded model walk ships too: `qreport models` works from the wheel.
    result = _installed_cli(target, ["models"])
    assert result.returncode == 0, result.stderr
    assert "mobilenet_v2" in result.stdout and "not walked" not in result.stdout
