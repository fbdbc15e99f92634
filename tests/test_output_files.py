"""Run folders and their files honour the user's umask; progress lines keep their columns."""

import os
import stat

import pandas as pd
import pytest

from qreport.progress import Progress
from qreport.store import RunWriter, current_umask, write_text_atomic


@pytest.fixture
def umask():
    """Set the process umask for one test, restoring it afterwards."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield os.umask
    os.umask(previous)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077, 0o002])
def test_run_folder_and_files_follow_the_umask(tmp_path, umask, mask):
    umask(mask)
    assert current_umask() == mask
    writer = RunWriter(tmp_path / "run")
    assert _mode(writer.tmp) == 0o777 & ~mask  # mkdtemp alone gives 0700
    writer.write_table("coverage", pd.DataFrame())
    writer.write_json("manifest.json", {"complete": True})
    writer.write_text("report.html", "<html></html>")
    out = writer.commit()
    assert _mode(out) == 0o777 & ~mask
    for name in ("coverage.parquet", "manifest.json", "report.html"):
        assert _mode(out / name) == 0o666 & ~mask, name  # mkstemp alone gives 0600
    write_text_atomic(tmp_path / "diff.md", "x")
    assert _mode(tmp_path / "diff.md") == 0o666 & ~mask


def test_reading_the_umask_leaves_it_unchanged(umask):
    umask(0o027)
    current_umask()
    assert os.umask(0o027) == 0o027


def test_progress_columns_line_up_past_step_nine(capsys):
    progress = Progress(total=13, quiet=False)
    for i in range(13):
        progress.done(f"stage{i}", f"{i} row{'s' if i != 1 else ''}", 1.0)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("[1/13]  stage0 ") and lines[9].startswith("[10/13] stage9 ")
    assert len({line.index("stage") for line in lines}) == 1  # the stage column
    assert len({line.rindex(" s") for line in lines}) == 1  # the seconds column
    assert [line.split()[1] for line in lines] == [f"stage{i}" for i in range(13)]


def test_quiet_progress_prints_nothing(capsys):
    Progress(total=3, quiet=True).done("load", "x", 0.1)
    assert capsys.readouterr().err == ""
