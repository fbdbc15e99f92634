"""Full-page screenshots of reports at desktop and phone width, with headless chromium.

    python tests/screenshots.py OUT_DIR [RUN_DIR_OR_HTML ...]

For each run folder (its report.html, or diff.html when it holds only a diff) or HTML file given (default: every
folder in sample_reports/), writes OUT_DIR/<name>-1440.png and OUT_DIR/<name>-390.png, and prints one line per
page with its height and whether it scrolls sideways. Exit 1 if any page is wider than the window.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from headless import Browser  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WIDTHS = (1440, 390)


def _page(path: Path) -> Path | None:
    if path.is_file():
        return path
    for name in ("report.html", "diff.html"):
        if (path / name).is_file():
            return path / name
    return None


def main(argv: list[str] | None = None) -> int:
    """Write the screenshots; return 1 if any page scrolls sideways, 2 if a page is missing."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", metavar="OUT_DIR")
    parser.add_argument("runs", nargs="*", metavar="RUN_DIR", help="run folders or HTML files (default: sample_reports/*)")
    args = parser.parse_args(argv)
    runs = [Path(r) for r in args.runs] or sorted(p for p in (ROOT / "sample_reports").iterdir()
                                                   if p.is_dir() and not p.name.startswith("."))
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    status = 0
    with Browser() as browser:
        for run in runs:
            page = _page(run)
            if page is None:
                print(f"{run}: no report.html or diff.html", file=sys.stderr)
                status = max(status, 2)
                continue
            name = f"{run.parent.name}-{run.stem}" if run.is_file() else run.name
            for width in WIDTHS:
                browser.open(page, width)
                wide = browser.overflow()
                shot = browser.screenshot(out / f"{name}-{width}.png")
                sideways = wide["scroll"] > width
                status = max(status, 1 if sideways else 0)
                print(f"{shot}  {width} px" + (f"  scrolls sideways to {wide['scroll']} px ({', '.join(wide['wide'])})"
                                               if sideways else "")
                      + "".join(f"\n  console: {e}" for e in browser.console_errors()))
    return status


if __name__ == "__main__":
    sys.exit(main())
