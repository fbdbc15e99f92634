"""Mistyped options and subcommands get a suggestion; `render` on a folder of runs lists them."""

import pytest

from qreport.cli import _closest, main


@pytest.mark.parametrize("argv, hint", [
    (["build", "--modle", "x"], "--modle (did you mean --model?)"),
    (["build", "--mod", "x"], "--mod (did you mean --model or --mode?)"),
    (["build", "--chekpoint=a.pt"], "--chekpoint=a.pt (did you mean --checkpoint?)"),
    (["build", "--eval-batch", "3"], "--eval-batch (did you mean --eval-batches?)"),
    (["diff", "a", "b", "--same-witin", "1"], "--same-witin (did you mean --same-within?)"),
    (["buld"], "did you mean 'build'?"),
])
def test_a_mistyped_option_gets_a_suggestion(capsys, argv, hint):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert hint in err and "error:" in err


def test_an_abbreviated_option_is_not_taken_for_the_full_one(capsys):
    # --batch would silently mean --batch-size with argparse's prefix matching
    assert main(["build", "--batch", "4", "--out", "never"]) == 2
    assert "--batch (did you mean --batch-size?)" in capsys.readouterr().err


def test_an_option_of_another_subcommand_gets_no_misleading_suggestion(capsys):
    assert main(["diff", "a", "b", "--calib-batches", "2"]) == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: --calib-batches 2" in err and "did you mean" not in err


def test_closest_needs_a_near_match():
    assert _closest("--data-dir", ["--data", "--eval-data", "--seed"]) == []
    assert _closest("--sead", ["--data", "--seed"]) == ["--seed"]


def _fake_run(path):
    path.mkdir(parents=True)
    (path / "manifest.json").write_text("{}")
    return path


def test_render_on_a_folder_of_runs_lists_them_and_exits_4(tmp_path, capsys):
    runs = [_fake_run(tmp_path / name) for name in ("resnet18", "mobilenet_v2")]
    (tmp_path / "diff_only").mkdir()  # no manifest: not a run
    _fake_run(tmp_path / ".qreport-partial-x-123")  # an interrupted build: not a run
    assert main(["render", str(tmp_path)]) == 4
    out, err = capsys.readouterr()
    assert out.splitlines() == [str(p) for p in sorted(runs)]
    assert err.strip().splitlines() == [f"qreport: error: {tmp_path} is not a run folder but holds 2 runs; "
                                        "render one of them:"]


def test_render_on_a_folder_without_runs_still_says_what_is_missing(tmp_path, capsys):
    assert main(["render", str(tmp_path)]) == 4
    assert "has no manifest.json" in capsys.readouterr().err
