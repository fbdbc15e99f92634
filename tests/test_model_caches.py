"""torch and torchao cache every model their device lookups see; qreport's seam lets the models go."""

import gc
import weakref

import torch
from torch.ao.quantization import get_default_qconfig_mapping
from torch.ao.quantization.quantize_fx import prepare_fx

import toy_models
from qreport.flows import make_flow
from qreport.flows.model_caches import CACHED_LOOKUPS, release_cached_models
from qreport.config import BuildConfig


def _dies(ref) -> bool:
    gc.collect()
    return ref() is None


def test_prepare_fx_keeps_the_model_alive_until_the_cache_is_released():
    x = torch.randn(2, 3, 32, 32)
    prepared = prepare_fx(toy_models.tiny_cnn().eval(), get_default_qconfig_mapping(), (x,))
    ref = weakref.ref(prepared)
    del prepared
    assert not _dies(ref)  # torch's functools.cache on the model holds it
    release_cached_models()
    assert _dies(ref)


def test_every_cached_lookup_qreport_releases_exists_in_the_installed_torch_and_torchao():
    import importlib

    for module_name, function in CACHED_LOOKUPS:
        assert hasattr(getattr(importlib.import_module(module_name), function), "cache_clear"), function


def test_the_int8_models_a_flow_makes_are_freed_when_dropped():
    x = torch.randn(2, 3, 32, 32)
    for flow_name in ("fx", "pt2e"):
        flow = make_flow(BuildConfig(model="tiny", flow=flow_name), verbose=False)
        model = toy_models.tiny_cnn()
        prepared = flow.calibrated(model, x, [x])
        quantized = flow.convert(prepared)
        refs = [weakref.ref(prepared), weakref.ref(quantized)]
        del prepared, quantized
        assert all(_dies(r) for r in refs), flow_name


def test_a_pt2e_prepared_model_and_the_fix_rungs_share_the_float_weights_of_layers_with_nothing_folded():
    """torch.export shares the float model's tensors; each prepared copy (run, fix rungs) shares them too."""
    x = torch.randn(2, 3, 32, 32)
    flow = make_flow(BuildConfig(model="tiny", flow="pt2e", quantizer="xnnpack"), verbose=False)
    model = toy_models.tiny_cnn().eval()
    linear = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for prepared in (flow.calibrated(model, x, [x]), flow.with_overrides(()).calibrated(model, x, [x])):
        pointers = {t.untyped_storage().data_ptr() for t in [*prepared.parameters(), *prepared.buffers()]}
        assert linear.weight.untyped_storage().data_ptr() in pointers
        flow.convert(prepared)(x)
    # nothing quantization does (BatchNorm folding, calibration, conversion) writes into the shared float tensors
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
