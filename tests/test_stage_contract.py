"""The pipeline's side of the stage contract: qreport's own bugs are internal errors, not failed stages; SIGTERM is
acted on at a safe point; notes and uncompared layers come back as results."""

import os
import signal

import pytest

from conftest import tiny_args
from qreport import interrupt, pipeline, scoring
from qreport.cli import main
from qreport.stages import ORDER


def test_a_bug_in_qreport_inside_a_stage_is_an_internal_error_not_a_failed_stage(tmp_path, capsys, monkeypatch):
    broken = tuple((name, scoring.first_tensor if name == "kernels" else run) for name, run in ORDER)
    monkeypatch.setattr(pipeline, "ORDER", broken)  # first_tensor(ctx) raises TypeError inside qreport
    assert main(tiny_args(tmp_path / "run", "tiny_cnn")) == 70
    err = capsys.readouterr().err
    assert "internal error: TypeError" in err and "this is a bug in qreport" in err
    assert not (tmp_path / "run").exists() and not any(tmp_path.iterdir())


def test_sigterm_sets_a_flag_that_the_next_safe_point_acts_on():
    previous = interrupt.install()
    try:
        interrupt.check()  # nothing asked yet
        os.kill(os.getpid(), signal.SIGTERM)
        with pytest.raises(interrupt.Interrupted):
            list(interrupt.checked(range(3)))
    finally:
        signal.signal(signal.SIGTERM, previous)
        interrupt.install()
        signal.signal(signal.SIGTERM, previous)


def test_notes_and_uncompared_layers_come_back_from_the_stages(tmp_path):
    out = tmp_path / "run"
    assert main(tiny_args(out, "tiny_cnn", "--sensitivity-layers", "2")) == 0
    import json

    notes = json.loads((out / "manifest.json").read_text())["data"]["notes"]
    assert any("sensitivity simulated for 2 of" in n for n in notes)
