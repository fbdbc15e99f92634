"""The report in a real browser (Debian's chromium, headless, network blocked)."""

import os
import re
import shutil
import subprocess

import pytest
from PIL import Image

CHROMIUM = shutil.which("chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--host-resolver-rules=MAP * ~NOTFOUND",
         "--proxy-server=127.0.0.1:9", "--enable-logging=stderr", "--v=0"]

pytestmark = pytest.mark.browser


def _chromium(tmp_path, *args):
    if not CHROMIUM:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs Debian's chromium package")
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120)


def console_errors(stderr: str) -> list[str]:
    """Console messages that signal a broken page: script errors and refused loads."""
    return [line for line in stderr.splitlines()
            if ":CONSOLE" in line and re.search(r"Uncaught|Error|Refused", line)]


def test_console_check_catches_a_broken_page(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text("<html><body><script>notDefined();</script></body></html>")
    result = _chromium(tmp_path, "--dump-dom", page.as_uri())
    assert console_errors(result.stderr)


def test_report_runs_its_script_without_console_errors(tiny_run, tmp_path):
    result = _chromium(tmp_path, "--dump-dom", (tiny_run / "report.html").as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'data-js="ready"' in result.stdout
    assert console_errors(result.stderr) == []


def test_report_screenshot_is_not_blank(tiny_run, tmp_path):
    shot = tmp_path / "report.png"
    result = _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2200", (tiny_run / "report.html").as_uri())
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    image = Image.open(shot).convert("L")
    lo, hi = image.getextrema()
    assert hi - lo > 100
    histogram = image.histogram()
    assert max(histogram) / sum(histogram) < 0.97  # not one flat colour
    shutil.copy(shot, tiny_run.parent / "tiny-report.png")
