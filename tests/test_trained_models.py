"""The real trained models and labelled data that tests and sample reports use (tests/trained_models.py)."""

from __future__ import annotations

import shutil

import pytest
import torch

import trained_models as tm

# The data sets ship inside these packages (the project's test dependencies).
pytest.importorskip("sklearn", reason="scikit-learn is not installed")
pytest.importorskip("skimage", reason="scikit-image is not installed")


def test_digits_cnn_trained_in_process_classifies_held_out_digits():
    train, held_out = tm.digits_split()
    assert train["inputs"].shape == (1200, 1, 8, 8) and held_out["inputs"].shape == (597, 1, 8, 8)
    assert 0.0 <= float(held_out["inputs"].min()) and float(held_out["inputs"].max()) <= 1.0
    assert set(held_out["labels"].tolist()) == set(range(10))
    model = tm.trained_digits_cnn()
    assert tm.example("digits").accuracy(model, held_out["inputs"], held_out["labels"]) > 0.90
    torch.fx.symbolic_trace(model)


def test_digits_training_is_bit_reproducible():
    digits = tm.example("digits")
    train = tm.digits_split()[0]
    inputs, labels = train["inputs"][:256], train["labels"][:256]
    first = digits.train(digits.digits_cnn(), inputs, labels, epochs=2, seed=3).state_dict()
    second = digits.train(digits.digits_cnn(), inputs, labels, epochs=2, seed=3).state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_labelled_file_round_trips(tmp_path):
    checkpoint, data = tm.write_digits_cnn(tmp_path)
    loaded = torch.load(data, weights_only=True)
    assert loaded["inputs"].dtype == torch.float32 and loaded["labels"].dtype == torch.int64
    assert len(loaded["inputs"]) == len(loaded["labels"]) == 597
    model = tm.example("digits").digits_cnn(str(checkpoint))
    assert tm.example("digits").accuracy(model, loaded["inputs"], loaded["labels"]) > 0.90


def test_lfw_faces_are_shuffled_deterministically_with_both_classes_early():
    faces = tm.lfw_faces(24)
    assert faces["inputs"].shape == (200, 3, 24, 24) and faces["labels"].dtype == torch.int64
    assert int(faces["labels"].sum()) == 100
    assert set(faces["labels"][:64].tolist()) == {0, 1}
    assert float(faces["inputs"].abs().max()) <= 1.0
    assert torch.equal(tm.example("real_data").lfw_faces(24)["inputs"], faces["inputs"])


@pytest.mark.parametrize("net", ["pnet", "rnet", "onet"])
def test_mtcnn_weights_load_strictly_and_trace(net):
    state_dict = tm.mtcnn_state_dict(net)
    if state_dict is None:
        pytest.skip("the facenet-pytorch wheel is not cached and cannot be downloaded")
    model = getattr(tm.example("mtcnn"), net)()
    model.load_state_dict(state_dict, strict=True)
    x = torch.zeros(2, *model.example_input_shape)
    assert model(x).shape == (2, 2)
    assert torch.equal(torch.fx.symbolic_trace(model)(x), model(x))


@pytest.mark.parametrize("net,size", [("rnet", 24), ("onet", 48)])
def test_mtcnn_tells_faces_from_non_faces(net, size):
    model = tm.mtcnn(net)
    if model is None:
        pytest.skip("the facenet-pytorch wheel is not cached and cannot be downloaded")
    faces = tm.lfw_faces(size)
    with torch.no_grad():
        predicted = model(faces["inputs"]).argmax(1)
    assert (predicted == faces["labels"]).float().mean() >= 0.95


def test_real_data_script_is_idempotent(tmp_path):
    wheel = tm.facenet_wheel()
    if wheel is None:
        pytest.skip("the facenet-pytorch wheel is not cached and cannot be downloaded")
    (tmp_path / "wheels").mkdir()
    shutil.copy(wheel, tmp_path / "wheels" / wheel.name)
    real_data = tm.example("real_data")
    lines: list[str] = []
    paths = real_data.write_real_data(tmp_path, log=lines.append)
    assert len(lines) == len(paths) == 9 and all(line.startswith("wrote") for line in lines)
    assert not list(tmp_path.glob(".*.tmp"))
    again: list[str] = []
    real_data.write_real_data(tmp_path, log=again.append)
    assert all(line.startswith("kept") for line in again)
    model = tm.example("mtcnn").rnet(str(paths["rnet.pt"]))
    torch.testing.assert_close(model.state_dict(), tm.mtcnn_state_dict("rnet"))
    digits_cnn = torch.load(paths["digits_cnn.pt"], weights_only=True)
    assert all(torch.equal(digits_cnn[k], v) for k, v in tm.trained_digits_cnn().state_dict().items())
    digits_vit = torch.load(paths["digits_vit.pt"], weights_only=True)  # the transformer, trained the same way twice
    assert all(torch.equal(digits_vit[k], v) for k, v in tm._trained_digits_vit_state_dict().items())
