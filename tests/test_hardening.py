"""Hardening: untraceable and broken models, interrupted runs, corrupt or newer run folders, fuzzed inputs."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT, tiny_args
from qreport.cli import main
from qreport.config import parse_qconfig_text
from qreport.errors import InputError
from qreport.store import PARTIAL_PREFIX, table_bytes


def _one_error(capsys, argv, code, *needles):
    assert main(argv) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("qreport: error:"), err
    for needle in needles:
        assert needle in err[0], err[0]


def test_untraceable_model_names_the_module(tmp_path, capsys):
    _one_error(capsys, tiny_args(tmp_path / "o", "untraceable")[:-1] + ["-q"], 3,
               "torch.fx cannot trace module 'gate'", "control flow", "pass --non-traceable gate")
    assert not (tmp_path / "o").exists() and list(tmp_path.iterdir()) == []


def test_nan_weights_are_refused(tmp_path, capsys):
    _one_error(capsys, tiny_args(tmp_path / "o", "nan_weights"), 3, "'fc.weight' has 1 NaN/Inf values")
    assert list(tmp_path.iterdir()) == []


def test_truncated_checkpoint(tmp_path, capsys):
    import torch

    import toy_models

    good = tmp_path / "good.pt"
    torch.save(toy_models.tiny_cnn().state_dict(), good)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    _one_error(capsys, tiny_args(tmp_path / "o", "tiny_cnn", "--checkpoint", str(bad)), 3, "cannot be read")
    assert not (tmp_path / "o").exists()


def test_out_under_a_file_is_an_output_error(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    _one_error(capsys, tiny_args(tmp_path / "file" / "run"), 5, "cannot create a folder")


def test_disk_full_leaves_nothing_behind(tmp_path, capsys, monkeypatch):
    import qreport.store as store

    real = store.os.fsync
    calls = {"n": 0}

    def full(fd):
        calls["n"] += 1
        if calls["n"] == 3:  # the third file of the run
            raise OSError(28, "No space left on device")
        return real(fd)

    monkeypatch.setattr(store.os, "fsync", full)
    _one_error(capsys, tiny_args(tmp_path / "o"), 5, "No space left on device", "free disk space")
    assert list(tmp_path.iterdir()) == []


def _corrupt(tiny_run, tmp_path, edit):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "report.html").unlink()
    edit(run)
    return run


@pytest.mark.parametrize("edit, needle", [
    (lambda r: (r / "shadow.parquet").unlink(), "shadow.parquet is missing"),
    (lambda r: (r / "weights.parquet").write_bytes(b"PAR1 garbage PAR1"), "weights.parquet is corrupt"),
    (lambda r: (r / "manifest.json").write_text("{"), "manifest.json is corrupt"),
    (lambda r: (r / "manifest.json").write_text(json.dumps({**json.loads((r / "manifest.json").read_text()),
                                                            "schema_version": 99})), "newer than this qreport"),
    (lambda r: (r / "manifest.json").write_text(json.dumps({**json.loads((r / "manifest.json").read_text()),
                                                            "complete": False})), "incomplete run"),
])
def test_render_and_diff_refuse_broken_run_folders(tiny_run, tmp_path, capsys, edit, needle):
    run = _corrupt(tiny_run, tmp_path, edit)
    _one_error(capsys, ["render", str(run)], 4, needle)
    assert not (run / "report.html").exists()
    _one_error(capsys, ["diff", str(tiny_run), str(run), "-o", str(tmp_path / "d.html")], 4, needle)
    assert not (tmp_path / "d.html").exists()


def _default_sigint() -> None:
    """In the child: Ctrl-C handled as in a terminal, whatever this test process inherited (a child of a process
    that ignores SIGINT ignores it too, and Python then installs no KeyboardInterrupt handler)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start_build(out, *extra):
    args = [a for a in tiny_args(out, "tiny_cnn", "--eval-batches", "400", *extra) if a != "-q"]  # long enough
    return subprocess.Popen([sys.executable, "-m", "qreport", *args], cwd=ROOT, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)


def _wait_for_stage(proc, stage="activations"):
    deadline = time.time() + 120
    lines = []
    while time.time() < deadline:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            break
        lines.append(line)
        if line.startswith("[") and line.split()[1] == stage:
            return lines
    raise AssertionError("".join(lines))


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM])
def test_a_killed_build_leaves_no_complete_looking_report(tiny_run, tmp_path, capsys, sig):
    out = tmp_path / "run"
    shutil.copytree(tiny_run, out)  # a previous complete run
    before = (out / "report.html").read_bytes()
    proc = _start_build(out, "--force")
    _wait_for_stage(proc, "weights")
    proc.send_signal(sig)
    rest = proc.stderr.read()
    code = proc.wait(timeout=60)
    assert (out / "report.html").read_bytes() == before, (code, rest[-2000:])  # the previous run is untouched
    partial = [p for p in tmp_path.iterdir() if p.name.startswith(PARTIAL_PREFIX)]
    if sig == signal.SIGKILL:
        assert code == -signal.SIGKILL
        assert len(partial) == 1 and not (partial[0] / "report.html").exists()
        _one_error(capsys, ["render", str(partial[0])], 4, "incomplete run")
    else:
        assert code == 130
        assert rest.strip().splitlines()[-1] == "qreport: interrupted; nothing was left half-written"
        assert partial == []


def test_render_refuses_a_partial_folder_by_its_marker(tmp_path, capsys):
    partial = tmp_path / f"{PARTIAL_PREFIX}run-abc"
    partial.mkdir()
    _one_error(capsys, ["render", str(partial)], 4, "incomplete run")


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200))
def test_qconfig_parser_never_crashes(text):
    try:
        overrides = parse_qconfig_text(text)
    except InputError as exc:
        assert "\n" not in str(exc)
    else:
        assert all(o.preset or (o.activation and o.weight) for o in overrides)


_names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)
_values = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(-1e30, 1e30))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(_names, min_size=1, max_size=6), values=st.lists(_values, min_size=6, max_size=6))
def test_render_survives_any_layer_names_and_values(tiny_run, tmp_path_factory, names, values):
    run = tmp_path_factory.mktemp("fuzz") / "run"
    shutil.copytree(tiny_run, run)
    for stage in ("weights", "activations", "shadow"):
        df = pd.read_parquet(run / f"{stage}.parquet")
        df["layer_fqn"] = [names[i % len(names)] + f"<b>{i}" for i in range(len(df))]
        df["sqnr_db"] = [values[i % len(values)] for i in range(len(df))]
        (run / f"{stage}.parquet").write_bytes(table_bytes(stage, df))
    assert main(["render", str(run), "-q"]) == 0
    html = (run / "report.html").read_text()
    assert "<b>" not in html
    assert html.count("<script>") == 1
    md = (run / "summary.md").read_text()
    assert "<b>" not in md


def _pooled_bn_model():
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.BatchNorm2d(4)).eval()


def test_batchnorm_re_estimation_merges_batches_of_one_input():
    """Random weights, --batch-size 1 and a 1×1 BatchNorm used to crash training-mode BatchNorm."""
    import torch

    from qreport.models import recalibrate_batchnorm

    model = _pooled_bn_model()
    batches = [torch.randn(1, 3, 8, 8) for _ in range(3)]
    assert recalibrate_batchnorm(model, batches) == 1
    pooled = model[1](model[0](torch.cat(batches))).flatten(1)
    torch.testing.assert_close(model[2].running_mean, pooled.mean(0))
    assert not model.training


def test_batchnorm_statistics_are_kept_when_one_input_cannot_estimate_them():
    import torch

    from qreport.models import recalibrate_batchnorm

    model = _pooled_bn_model()
    model[2].running_mean.fill_(0.5)
    assert recalibrate_batchnorm(model, [torch.randn(1, 3, 8, 8)]) == 0
    assert torch.all(model[2].running_mean == 0.5)


def test_batchnorm_re_estimation_keeps_the_rest_of_the_model_in_eval_mode():
    """inception_v3's auxiliary head runs only in training mode and fails on small inputs."""
    import torch
    from torch import nn

    from qreport.models import recalibrate_batchnorm

    class TrainingOnlyBranch(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = _pooled_bn_model()
            self.drop = nn.Dropout(0.5)

        def forward(self, x):
            if self.training:
                raise RuntimeError("training-only branch ran")
            return self.drop(self.body(x))

    model = TrainingOnlyBranch().eval()
    assert recalibrate_batchnorm(model, [torch.randn(2, 3, 8, 8)]) == 1
    assert not any(m.training for m in model.modules())
