"""Sensitivity on the simulated int8 model, the greedy float set, and the measured fix it feeds."""

import json
import math

import pandas as pd
import pytest
import torch

from conftest import tiny_args
from qreport.cli import main
from qreport.data import synthetic
from qreport.flows.fx import FxStaticFlow
from qreport.flows.fx_sim import Simulator
from qreport.streaming import LayerStats
import toy_models


def _sqnr(refs, outs):
    stats = LayerStats()
    for r, o in zip(refs, outs):
        stats.update(r, o.dequantize() if o.is_quantized else o)
    return stats.row()["sqnr_db"]


def test_simulation_matches_the_real_int8_model_and_can_switch_everything_off():
    model = toy_models.tiny_cnn().eval()
    data = synthetic((3, 32, 32), 4, 2, 2, seed=0)
    flow = FxStaticFlow("x86")
    prepared = flow.prepare(model, data.example())
    with torch.no_grad():
        for x in data.calibration:
            prepared(x)
        quantized = flow.convert(prepared)
        sim = Simulator(prepared, quantized, data.calibration)
        batches = list(data.evaluation)
        real = [quantized(x) for x in batches]
        refs = [model(x) for x in batches]
    sim.configure()
    assert _sqnr(real, sim.outputs(batches)) > 40.0  # the simulation is the int8 model, to rounding
    sim.configure(float_ops=set(sim.ops))
    assert _sqnr(refs, sim.outputs(batches)) > 100.0  # nothing quantized: the float model
    sim.configure(weights=False)
    weights_off = _sqnr(refs, sim.outputs(batches))
    sim.configure()
    assert weights_off >= _sqnr(refs, sim.outputs(batches)) - 0.01


def test_sensitivity_table_has_every_quantized_op_and_the_model_split(tiny_run):
    sens = pd.read_parquet(tiny_run / "sensitivity.parquet")
    model = sens[sens.kind == "model"].set_index("layer")
    assert list(model.index) == ["int8_real", "all_quantized", "weights_only", "activations_only"]
    assert model.loc["all_quantized", "sim_vs_real_db"] > 40.0
    layers = sens[sens.kind == "layer"]
    assert {"stem.0", "block.0", "fc", "(root):add"} <= set(layers.layer_fqn)
    assert "stem.2" not in set(layers.layer_fqn)  # ReLU6 runs on its input's int8 scale: never a candidate alone
    assert layers.images.eq(4).all()


def test_the_greedy_float_set_keeps_the_range_sharing_activation_with_its_layer_and_the_fix_measures_it(tmp_path):
    out = tmp_path / "run"
    assert main(tiny_args(out, "bad_channel_cnn")) == 0
    sens = pd.read_parquet(out / "sensitivity.parquet")
    chosen = sens[sens.greedy_step >= 0].sort_values("greedy_step")
    assert set(chosen.layer_fqn) == {"stem.0"}  # its ReLU6 shares the wide range and goes float with it
    assert chosen.greedy_sqnr_db.iloc[-1] >= 30.0
    guidance = pd.read_parquet(out / "guidance.parquet")
    sensitive = guidance[guidance.code == "sensitive_layer"]
    assert set(sensitive.layer_fqn) == {"stem.0"} and sensitive.severity.eq("high").all()
    fix = pd.read_parquet(out / "fix.parquet").set_index("step")
    assert fix.loc["after", "output_sqnr_db"] >= 30.0 > fix.loc["before", "output_sqnr_db"]
    assert 0 < fix.loc["after", "float_param_share"] < 0.5
    assert fix.loc["after", "qdq_boundaries"] == fix.loc["before", "qdq_boundaries"] == 2  # float at the input: no island


def test_each_simulated_configuration_runs_once(tmp_path, monkeypatch):
    """The greedy search revisits the float sets it built (adding, pruning, then scoring each step): each is
    simulated once."""
    runs = []
    configure, outputs = Simulator.configure, Simulator.outputs

    def recording_configure(self, float_ops=frozenset(), **switches):
        self.recorded = (frozenset(float_ops), tuple(sorted(switches.items())))
        return configure(self, float_ops, **switches)

    def recording_outputs(self, batches):
        runs.append(self.recorded)
        return outputs(self, batches)

    monkeypatch.setattr(Simulator, "configure", recording_configure)
    monkeypatch.setattr(Simulator, "outputs", recording_outputs)
    out = tmp_path / "run"
    assert main(tiny_args(out, "bad_channel_cnn")) == 0
    sens = pd.read_parquet(out / "sensitivity.parquet")
    assert (sens.greedy_step >= 0).sum() >= 1  # the search ran and chose a set
    assert len(runs) == len(set(runs)) >= 3  # the per-layer sweep shares runs (below); these are the search's


@pytest.mark.parametrize("factory, extra", [("bad_channel_cnn", ()), ("shared_relu_net", ()),
                                            ("dense_block_net", ()), ("bad_channel_cnn", ("--flow", "pt2e")),
                                            ("two_input_net", ("--data", "{pairs}"))])
def test_the_per_layer_sweep_gives_the_numbers_of_one_full_run_per_configuration(tmp_path, monkeypatch, factory,
                                                                                 extra):
    """Layers are simulated from the first node their configuration changes, the rest taken from one run of the
    all-int8 (or all-float) model: every number equals that of running each configuration whole."""
    import qreport.stages.sensitivity as stage

    shared, whole = tmp_path / "shared", tmp_path / "whole"
    pairs = tmp_path / "pairs.pt"  # an image and a vector: the second input's node comes after the first's steps
    g = torch.Generator().manual_seed(0)
    torch.save({"inputs": (torch.randn(16, 3, 8, 8, generator=g), torch.randn(16, 4, generator=g))}, pairs)
    extra = tuple(e.format(pairs=pairs) for e in extra)
    assert main(tiny_args(shared, factory, *extra)) == 0
    monkeypatch.setattr(stage, "FORKED_OUTPUTS_BUDGET", 0)
    assert main(tiny_args(whole, factory, *extra)) == 0
    a, b = (pd.read_parquet(run / "sensitivity.parquet") for run in (shared, whole))
    assert len(a[a.kind == "layer"]) >= 3
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.parametrize("extra", [(), ("--flow", "pt2e")], ids=["fx", "pt2e"])
def test_weights_dequantized_where_they_are_read_give_the_numbers_of_kept_copies(tmp_path, monkeypatch, extra):
    """A simulator keeps dequantized copies of its smaller weights only (``sim_fork.DEQUANTIZED_KEPT_BYTES``) and
    dequantizes the others as they are read: with no copy kept at all, every number is the same."""
    from qreport.flows import fx_sim, pt2e_sim, sim_fork

    assert main(tiny_args(tmp_path / "kept", "dense_block_net", *extra)) == 0
    asked = []

    def spied(weights):
        kept = sim_fork.kept_dequantized(weights)
        asked.append((len(weights), len(kept)))
        return kept

    monkeypatch.setattr(sim_fork, "DEQUANTIZED_KEPT_BYTES", 0)
    monkeypatch.setattr(fx_sim if not extra else pt2e_sim, "kept_dequantized", spied)
    assert main(tiny_args(tmp_path / "read", "dense_block_net", *extra)) == 0
    assert asked and all(n >= 2 and kept == 0 for n, kept in asked)
    for name in ("sensitivity", "model"):
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "kept" / f"{name}.parquet"),
                                      pd.read_parquet(tmp_path / "read" / f"{name}.parquet"), obj=name)


def test_a_reachable_target_suggests_no_float_layers(tmp_path):
    out = tmp_path / "run"
    assert main(tiny_args(out, "tiny_cnn", "--target-sqnr", "5")) == 0
    sens = pd.read_parquet(out / "sensitivity.parquet")
    assert (sens.greedy_step < 0).all()
    assert not math.isnan(sens[sens.kind == "layer"].target_sqnr_db.iloc[0])


def test_sensitivity_layers_measures_only_the_lowest_isolated_sqnr_layers(tmp_path, tiny_run):
    out = tmp_path / "capped"
    assert main(tiny_args(out, "tiny_cnn", "--sensitivity-layers", "2")) == 0
    layers = pd.read_parquet(out / "sensitivity.parquet").query("kind == 'layer'")
    full = pd.read_parquet(tiny_run / "sensitivity.parquet").query("kind == 'layer'")
    assert len(layers) == 2 < len(full)
    shadow = pd.read_parquet(out / "shadow.parquet").groupby("layer")["sqnr_db"].min()
    measurable = shadow.reindex(full.layer).fillna(math.inf).sort_values(kind="stable")
    assert set(layers.layer) == set(measurable.index[:2])
    notes = json.loads((out / "manifest.json").read_text())["data"]["notes"]
    assert any(f"2 of {len(full)} layers" in n for n in notes)
