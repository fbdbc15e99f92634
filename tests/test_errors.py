"""Bad input: one line naming the problem and the fix, a documented exit code, nothing written."""

import os

import pytest
import torch

from conftest import run_cli, tiny_args, toy
from qreport.cli import main


def _fails(capsys, argv, code, *needles):
    assert main(argv) == code
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("qreport: error:")]
    assert len(errors) == 1, err
    for needle in needles:
        assert needle in errors[0], errors[0]
    assert not any("Traceback" in line for line in err)
    return errors[0]


def _nothing_written(parent):
    return [p.name for p in parent.iterdir()] == []


def test_unknown_model_suggests_close_names(tmp_path, capsys):
    line = _fails(capsys, ["build", "--model", "mobilenet_v9", "--out", str(tmp_path / "o")], 3,
                  "unknown model 'mobilenet_v9'", "mobilenet_v2", "qreport models")
    assert _nothing_written(tmp_path), line


def test_unknown_model_in_a_subprocess_has_no_traceback(tmp_path):
    result = run_cli("build", "--model", "resnet1800", "--out", str(tmp_path / "o"))
    assert result.returncode == 3
    assert result.stderr.strip().splitlines()[-1].startswith("qreport: error: unknown model 'resnet1800'")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "o").exists()


def test_missing_data_dir(tmp_path, capsys):
    _fails(capsys, tiny_args(tmp_path / "o", "tiny_cnn", "--data", str(tmp_path / "images")), 3,
           "does not exist", "--data synthetic")
    assert _nothing_written(tmp_path)


def test_data_dir_without_images(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "notes.txt").write_text("hello")
    _fails(capsys, tiny_args(tmp_path / "o", "tiny_cnn", "--data", str(tmp_path / "images")), 3, "has no image files")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images"]


@pytest.mark.parametrize("content, needle", [
    (b"not a checkpoint at all", "cannot be read"),
    (None, "does not exist"),
])
def test_unreadable_checkpoint(tmp_path, capsys, content, needle):
    ckpt = tmp_path / "model.pt"
    if content is not None:
        ckpt.write_bytes(content)
    _fails(capsys, tiny_args(tmp_path / "o", "tiny_cnn", "--checkpoint", str(ckpt)), 3, needle)
    assert not (tmp_path / "o").exists()


def test_checkpoint_with_pickled_code_is_refused(tmp_path, capsys):
    ckpt = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": os.getcwd}, ckpt)  # a function: needs full unpickling
    _fails(capsys, tiny_args(tmp_path / "o", "tiny_cnn", "--checkpoint", str(ckpt)), 3,
           "refused by weights_only=True", "may contain code")


def test_checkpoint_for_another_architecture(tmp_path, capsys):
    ckpt = tmp_path / "other.pt"
    torch.save({"conv.weight": torch.zeros(2, 2)}, ckpt)
    _fails(capsys, tiny_args(tmp_path / "o", "tiny_cnn", "--checkpoint", str(ckpt)), 3,
           "does not match the model", "missing stem.0.weight")


def test_checkpoint_wrappers_and_dataparallel_prefix_load(tmp_path):
    import toy_models

    state = {f"module.{k}": v for k, v in toy_models.tiny_cnn().state_dict().items()}
    ckpt = tmp_path / "wrapped.pt"
    torch.save({"model": state, "epoch": 3}, ckpt)
    assert main(tiny_args(tmp_path / "o", "tiny_cnn", "--checkpoint", str(ckpt))) == 0


def test_existing_out_dir_needs_force_and_is_left_alone(tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    _fails(capsys, tiny_args(out), 5, "already exists", "--force")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    _fails(capsys, tiny_args(out, "tiny_cnn", "--force"), 5, "not a qreport run folder")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_force_replaces_a_previous_run_only_when_the_new_one_is_complete(tiny_run, tmp_path):
    import shutil

    out = tmp_path / "o"
    shutil.copytree(tiny_run, out)
    before = (out / "manifest.json").read_text()
    assert main(tiny_args(out, "tiny_cnn", "--force", "--seed", "7")) == 0
    assert (out / "manifest.json").read_text() != before
    assert [p.name for p in tmp_path.iterdir()] == ["o"]  # no partial folders left behind


@pytest.mark.parametrize("text, needle", [
    ("[modules\n", "not valid TOML"),
    ('[modules]\n"stem.0" = "flaot"\n', "did you mean 'float'"),
    ('[modules]\n"stem.0" = { activation = "histo" }\n', "unknown activation observer"),
    ('[layers]\n', "unknown section [layers]"),
    ('[modules]\n"stem.9" = "float"\n', "does not have"),
])
def test_bad_qconfig_files(tmp_path, capsys, text, needle):
    qconfig = tmp_path / "q.toml"
    qconfig.write_text(text)
    _fails(capsys, tiny_args(tmp_path / "o", "tiny_cnn", "--qconfig", str(qconfig)), 3, needle)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("spec, needle", [
    ("no_colon_here_at_all:", "is not of the form"),
    ("not_a_real_package.mod:factory", "cannot import module"),
    (toy("missing_factory"), "has no callable 'missing_factory'"),
    (toy("not_a_module"), "returned int, not a torch.nn.Module"),
    (toy("raising_factory"), "raised RuntimeError: the factory is broken"),
])
def test_bad_model_factories(tmp_path, capsys, spec, needle):
    _fails(capsys, ["build", "--model", spec, "--out", str(tmp_path / "o")], 3, needle)
    assert not (tmp_path / "o").exists()


def test_wrong_input_shape_names_the_option(tmp_path, capsys):
    _fails(capsys, tiny_args(tmp_path / "o", "tiny_cnn", "--input-shape", "5,32,32"), 3, "--input-shape")


def test_usage_errors_exit_2(capsys):
    assert main(["build", "--batch-size", "0"]) == 2
    assert "must be at least 1" in capsys.readouterr().err
    assert main([]) == 2


def test_help_teaches_the_commands(capsys):
    assert main(["build", "--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--model", "--weights", "--qconfig", "--data", "--eval-batches", "--force", "examples:", "exit codes"):
        assert option in out


def test_checkpoint_that_is_not_a_state_dict(tmp_path, capsys):
    ckpt = tmp_path / "list.pt"
    torch.save([torch.zeros(2), torch.ones(2)], ckpt)
    _fails(capsys, tiny_args(tmp_path / "o", "tiny_cnn", "--checkpoint", str(ckpt)), 3,
           "is not a state_dict", "save model.state_dict()")
    assert not (tmp_path / "o").exists()
