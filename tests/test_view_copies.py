"""The propagated and isolated views (and under PT2E the lowering's comparison and the simulator) work on copies of
the build's int8 graph that share its tensors instead of converting again or deep-copying it; the int8 model itself
is left as it was, and the numbers are those a freshly converted model gives."""

from __future__ import annotations

import pytest
import torch

from qreport.flows.fx import FxStaticFlow
from qreport.flows.pt2e import Pt2eStaticFlow
from qreport.streaming import FLOAT_NAME, QUANT_NAME, LayerPairing
from trained_models import digits_split, trained_digits_cnn


def _views(flow, model, prepared, quantized, x) -> dict[str, list[dict]]:
    """Both views' per-layer rows after one batch (and, under PT2E on x86, the lowered kernels' against the graph)."""
    rows = {}
    with torch.no_grad():
        if isinstance(flow, Pt2eStaticFlow):
            pairing = LayerPairing(FLOAT_NAME, QUANT_NAME)
            reference, lowered, note = flow.lowered_models(quantized, x, pairing)
            reference(x), lowered(x)
            rows["lowered"] = [pairing.stats[k].row() for k in pairing.order]
            assert not note and len(rows["lowered"]) >= 3
        pairing = LayerPairing(FLOAT_NAME, QUANT_NAME)
        for logged in flow.logged_models(model, prepared, quantized, pairing):
            logged(x)
        rows["propagated"] = [pairing.stats[k].row() for k in pairing.order]
        pairing = LayerPairing(FLOAT_NAME, QUANT_NAME, clone_float=False)
        shadow, _ = flow.shadow_model(model, prepared, quantized, pairing)
        shadow(x)
        rows["isolated"] = [pairing.stats[k].row() for k in pairing.order]
    return rows


@pytest.mark.parametrize("make_flow", [lambda: FxStaticFlow("x86"), lambda: Pt2eStaticFlow("x86")], ids=["fx", "pt2e"])
def test_the_views_leave_the_int8_model_as_it_was_and_measure_what_a_fresh_conversion_measures(make_flow):
    torch.backends.quantized.engine = "x86"
    model = trained_digits_cnn()
    train, held = digits_split()
    calibration = [train["inputs"][i:i + 64] for i in range(0, 256, 64)]
    x = held["inputs"][:64]
    flow = make_flow()
    prepared = flow.calibrated(model, calibration[0], calibration)
    quantized = flow.convert(prepared)
    code, modules = quantized.code, {name: id(m) for name, m in quantized.named_modules()}
    tensors = {name: id(t) for name, t in [*quantized.named_parameters(), *quantized.named_buffers()]}
    with torch.no_grad():
        before = quantized(x)

    shared = _views(flow, model, prepared, quantized, x)
    simulator = flow.simulator(prepared, quantized, calibration)  # sensitivity's: switches on a copy of the graph
    simulator.configure(float_ops={simulator.ops[0]})
    simulator.outputs([x[:8]])

    assert quantized.code == code  # no logger, tap or shadow node left in its graph
    assert {name: id(m) for name, m in quantized.named_modules()} == modules  # nor a module added or replaced
    assert {name: id(t) for name, t in [*quantized.named_parameters(), *quantized.named_buffers()]} == tensors
    with torch.no_grad():
        assert torch.equal(quantized(x), before)
    fresh = _views(flow, model, prepared, flow.convert(prepared), x)
    assert len(shared["propagated"]) >= 4 and len(shared["isolated"]) >= 3
    assert shared == fresh
