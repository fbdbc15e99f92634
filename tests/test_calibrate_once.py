"""Calibrate once: the fix's re-quantizations on the run's own data copy the calibrated observer states instead of
running the calibration batches again, and get exactly the int8 model calibrating again would."""

from __future__ import annotations

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
