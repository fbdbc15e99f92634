"""Calibrate once: the fix's re-quantizations on the run's own data copy the calibrated observer states instead of
running the calibration batches again, and get exactly the int8 model calibrating again would; the ranges stage
takes the calibration maxima noted while calibrating; BatchNorm is folded once for every preparation."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from qreport.config import ModuleOverride
from qreport.flows.fx import FxStaticFlow
from qreport.flows.pt2e import Pt2eStaticFlow
from trained_models import digits_split, trained_digits_cnn


class Untouchable:
    """Calibration batches that must not be read."""

    def __iter__(self):
        raise AssertionError("calibrated again although every observer state could be copied")


@pytest.mark.parametrize("flow_of", [lambda o: FxStaticFlow("x86", o), lambda o: Pt2eStaticFlow("x86", o),
                                     lambda o: Pt2eStaticFlow("xnnpack", o)], ids=["fx", "pt2e-x86", "pt2e-xnnpack"])
@pytest.mark.parametrize("change", [ModuleOverride("conv2", preset="float"), ModuleOverride("fc", preset="float")],
                         ids=["conv2-float", "fc-float"])
def test_a_float_rung_reuses_the_observers_and_quantizes_exactly_as_recalibrating(flow_of, change):
    torch.backends.quantized.engine = "x86"
    model = trained_digits_cnn()
    train, held = digits_split()
    calibration = [train["inputs"][i:i + 64] for i in range(0, 256, 64)]
    example, x = calibration[0], held["inputs"][:128]
    base = flow_of(())
    observed = base.calibrated(model, example, calibration)
    flow = base.with_overrides([change])
    reused = flow.convert(flow.calibrated(model, example, Untouchable(), observed=observed))
    again = flow.convert(flow.calibrated(model, example, calibration))
    with torch.no_grad():
        assert torch.equal(reused(x), again(x))


def test_other_calibration_data_or_other_observers_calibrate_again():
    model = trained_digits_cnn()
    train, _ = digits_split()
    calibration = [train["inputs"][i:i + 64] for i in range(0, 256, 64)]
    observed = FxStaticFlow("x86").calibrated(model, calibration[0], calibration)
    minmax = FxStaticFlow("x86", [ModuleOverride("conv2", preset="per_tensor")])  # MinMax, not x86's histogram
    with pytest.raises(AssertionError, match="calibrated again"):
        minmax.calibrated(model, calibration[0], Untouchable(), observed=observed)  # not copied: it calibrates
    equalized = FxStaticFlow("x86", [ModuleOverride("conv2", preset="equalize")])
    with pytest.raises(AssertionError, match="calibrated again"):
        equalized.calibrated(model, calibration[0], Untouchable(), observed=observed)


@pytest.mark.parametrize("preset", ["default", "float", "per_tensor", "equalize", "bias_correct"])
def test_quantizing_and_simulating_leave_the_float_and_prepared_weights_as_they_were(preset):
    """The prepared and int8 models share the float model's weight tensors instead of copying them (memory); nothing
    may write into them."""
    from qreport.flows.fx_sim import Simulator

    model = trained_digits_cnn()
    train, held = digits_split()
    calibration = [train["inputs"][i:i + 64] for i in range(0, 256, 64)]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flow = FxStaticFlow("x86", [ModuleOverride("conv2", preset=preset)])
    prepared = flow.calibrated(model, calibration[0], calibration)
    prepared_before = {k: v.clone() for k, v in prepared.state_dict().items() if "activation_post_process" not in k}
    quantized = flow.convert(prepared)
    sim = Simulator(prepared, quantized, calibration)
    sim.configure(float_ops={"conv1"})
    sim.outputs([held["inputs"][:8]])
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name
    for name, value in prepared_before.items():
        assert torch.equal(prepared.state_dict()[name], value), name


def test_an_observer_shared_with_an_unclamped_input_is_not_copied_into_a_float_layers_own():
    """TinyCNN's stem: conv → BatchNorm → ReLU6, whose int8 output shares the conv output's observer (it saw the
    unclamped values). With the conv kept float, ReLU6's output gets its own observer, which must be calibrated."""
    import toy_models
    from qreport.data import synthetic

    model = toy_models.bad_channel_cnn()
    data = synthetic((3, 32, 32), 4, 2, 2, seed=0)
    calibration, x = list(data.calibration), data.example()
    base = FxStaticFlow("x86")
    observed = base.calibrated(model, x, calibration)
    flow = base.with_overrides([ModuleOverride("stem.0", preset="float")])
    with pytest.raises(AssertionError, match="calibrated again"):
        flow.calibrated(model, x, Untouchable(), observed=observed)


def _labelled(inputs: torch.Tensor, size: int, prefix: str):
    from qreport.data import Batch

    return [Batch(inputs[i:i + size], None, [f"{prefix}{j}" for j in range(i, min(i + size, len(inputs)))])
            for i in range(0, len(inputs), size)]


@pytest.mark.parametrize("model_name", ["digits_cnn", "bad_channel_cnn"])
def test_the_ranges_noted_while_calibrating_are_those_a_second_pass_over_the_calibration_data_finds(model_name):
    """The build notes each observed activation's per-image maximum as it calibrates, so the ranges stage runs only
    the evaluation data; its table must be the one running the calibration data again gives (bad_channel_cnn's
    ReLU6 shares its input's observer; an equalized layer adds observers of its own)."""
    import toy_models
    from qreport.flows.contract import CalibrationRecord
    from qreport.flows.fx_ranges import activation_ranges

    if model_name == "digits_cnn":
        model, (train, held) = trained_digits_cnn(), digits_split()
        calibration, evaluation = _labelled(train["inputs"][:256], 64, "cal"), _labelled(held["inputs"][:96], 32, "ev")
        overrides = [ModuleOverride("conv2", preset="equalize")]
    else:
        model, generator = toy_models.bad_channel_cnn(), torch.Generator().manual_seed(0)
        images = torch.randn(40, 3, 32, 32, generator=generator)
        calibration, evaluation = _labelled(images[:24], 8, "cal"), _labelled(images[24:], 8, "ev")
        overrides = []
    flow = FxStaticFlow("x86", overrides)
    record = CalibrationRecord()
    prepared = flow.calibrated(model, calibration[0].inputs, record.named(calibration), record=record)
    assert record.complete and record.names == [n for b in calibration for n in b.names]
    noted = pd.DataFrame(activation_ranges(prepared, record, evaluation))
    again = pd.DataFrame(activation_ranges(prepared, calibration, evaluation))
    assert len(noted) >= 3 and noted["top_image"].str.startswith("cal").all()
    pd.testing.assert_frame_equal(noted, again)


def test_a_qat_calibration_notes_nothing_so_its_ranges_stage_runs_the_float_values_itself():
    """QAT calibrates with fake quantization on; the ranges stage measures the float values, so nothing noted then
    may stand in."""
    from qreport.flows.contract import CalibrationRecord
    from qreport.flows.fx_qat import FxQatFlow

    model = trained_digits_cnn()
    train, _ = digits_split()
    calibration = _labelled(train["inputs"][:128], 64, "cal")
    record = CalibrationRecord()
    FxQatFlow("x86").calibrated(model, calibration[0].inputs, record.named(calibration), record=record)
    assert not record.complete


@pytest.mark.parametrize("flow_of, preset", [(FxStaticFlow, "float"), (FxStaticFlow, "equalize"),
                                             (FxStaticFlow, "bias_correct"), (Pt2eStaticFlow, "float")],
                         ids=["fx-float", "fx-equalize", "fx-bias_correct", "pt2e-float"])
def test_a_rung_prepared_again_shares_the_folded_weights_and_quantizes_exactly_as_folding_again(flow_of, preset):
    """The fix prepares the model again for each rung; BatchNorm folding then hands it the folded weights the
    build's own preparation computed (no second copy of the model's weights), and the int8 model is the one a flow
    folding afresh builds."""
    import toy_models
    from qreport.data import synthetic

    model = toy_models.bad_channel_cnn()  # Conv-BatchNorm-ReLU6 stem and Conv-BatchNorm-ReLU block
    data = synthetic((3, 32, 32), 4, 2, 2, seed=0)
    calibration, x = list(data.calibration), data.example()
    change = ModuleOverride("block.0", preset=preset)
    base = flow_of("x86")
    first = base.calibrated(model, x, calibration)
    flow = base.with_overrides([change])
    again = flow.calibrated(model, x, calibration)
    float_params = list(model.parameters())
    folded = {n: p for n, p in first.named_parameters() if not any(p is q for q in float_params)}
    assert len(folded) >= 4  # two convs' weights and biases, BatchNorm folded in
    assert {n for n, p in again.named_parameters() if folded.get(n) is p} == set(folded)
    afresh = flow_of("x86", [change])
    with torch.no_grad():
        assert torch.equal(flow.convert(again)(x), afresh.convert(afresh.calibrated(model, x, calibration))(x))
