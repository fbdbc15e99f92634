"""Stage: per-layer sensitivity on a simulated int8 model, and the greedy float set for a target SQNR.

Each layer is measured twice on a few evaluation images: the model with only that layer kept float, and
with only that layer quantized. Numbers are simulated (fake quantization with the real qparams and int8
weights); the fix stage re-quantizes for real to verify the chosen set.
"""

from __future__ import annotations

import math

import pandas as pd
import torch

from qreport import interrupt
from qreport.data import batch_len, call, take
from qreport.locations import SIM_ACTIVATIONS, SIM_ALL, SIM_REAL, SIM_WEIGHTS
from qreport.schema import pass_through_nodes
from qreport.scoring import first_tensor, score_outputs
from qreport.stages.result import StageResult

GREEDY_MAX_LAYERS = 10
GREEDY_MAX_TRIES = 20  # candidates tried (kept or not) before the search stops
GREEDY_MIN_GAIN_DB = 0.5  # a step must raise the simulated output SQNR this much to be kept
FORKED_OUTPUTS_BUDGET = 256 * 2**20  # bytes of outputs the per-layer sweep may hold; above it, one run at a time


def _images(split, n: int) -> list[torch.Tensor]:
    out, have = [], 0
    for x in split:
        out.append(take(x, slice(0, n - have)))
        have += batch_len(out[-1])
        if have >= n:
            break
    return out


def _score(refs, outs) -> tuple[float, float]:
    scored = score_outputs(zip(refs, outs))
    return scored["output_sqnr_db"], scored["top1_agreement"]


def run(ctx) -> StageResult:
    """Rows of kind ``model`` (simulated whole-model configurations) and ``layer`` (one per quantized op)."""
    batches = _images(ctx.data.evaluation, ctx.config.sensitivity_images)
    sim = ctx.flow.simulator(ctx.prepared, ctx.quantized, ctx.data.calibration)
    with torch.no_grad():
        refs = [first_tensor(call(ctx.reference, x)).float() for x in batches]
        real = [first_tensor(call(ctx.quantized, x)) for x in batches]

    passes = _pass_through_ops(ctx)
    measure = _Measurements(sim, batches, refs, passes, _graph_inputs(ctx))
    sim.configure()
    sim_outs = [first_tensor(o) for o in sim.outputs(batches)]
    base_db, base_top1 = _score(refs, sim_outs)
    agreement_db, _ = _score([r.dequantize() if r.is_quantized else r for r in real], sim_outs)
    real_db, real_top1 = _score(refs, real)
    rows = [
        _model_row(SIM_REAL, real_db, real_top1),
        _model_row(SIM_ALL, base_db, base_top1, agreement_db),
        _model_row(SIM_WEIGHTS, *measure(activations=False)),
    ]
    if getattr(sim, "activation_switch", True):  # no activations-only model where they are quantized in the layer
        rows.append(_model_row(SIM_ACTIVATIONS, *measure(weights=False)))
    candidates = [op for op in sim.ops if (op in sim.weights or op in _quantized_ops(ctx, sim)) and op not in passes]
    layers = _worst_first(ctx, candidates)
    notes = [] if len(layers) == len(candidates) else [
        f"sensitivity simulated for {len(layers)} of {len(candidates)} layers, the lowest SQNR first "
        "(--sensitivity-layers)"]
    every = set(sim.ops)
    held = sum(t.numel() * t.element_size() for t in sim_outs) * len(layers)
    if held <= FORKED_OUTPUTS_BUDGET and hasattr(sim, "outputs_each"):
        bar = ctx.progress(range(2 * len(layers) * len(batches)), "sensitivity", unit="run")
        measure.each(frozenset(), [{op} for op in layers], bar)  # one layer float in the int8 model
        measure.each(every, [every - {op} for op in layers], bar)  # one layer int8 in the float model
        bar.close()
    else:  # outputs too large to hold one per layer (dense prediction): each configuration runs on its own
        for op in ctx.progress(layers, "sensitivity"):
            measure(float_ops={op}), measure(float_ops=every - {op})
    measured = [(order, op, *measure(float_ops={op}), *measure(float_ops=every - {op}))
                for order, op in enumerate(layers)]
    greedy = _greedy(measured, base_db, ctx.config.target_sqnr, measure)
    op_types = ctx.flow.op_types(ctx.quantized)
    for order, op, float_db, float_top1, quant_db, quant_top1 in measured:
        fqn = ctx.layer_fqn(op)
        step, step_db = greedy.get(op, (-1, math.nan))
        rows.append({
            "kind": "layer", "layer": op, "layer_fqn": fqn, "op_type": ctx.flow.op_label(op_types.get(op, "")),
            "order": order, "has_weights": op in sim.weights, "macs": int(ctx.macs.get(fqn, 0)),
            "float_alone_sqnr_db": float_db, "float_alone_top1": float_top1,
            "quant_alone_sqnr_db": quant_db, "quant_alone_top1": quant_top1,
            "gain_db": float_db - base_db, "greedy_step": step, "greedy_sqnr_db": step_db,
            "images": sum(batch_len(b) for b in batches), "target_sqnr_db": ctx.config.target_sqnr,
            "sim_vs_real_db": math.nan,
        })
    return StageResult({"sensitivity": pd.DataFrame(rows)}, notes=notes)


class _Measurements:
    """Output SQNR and top-1 agreement of simulated configurations, each simulated once (the greedy search revisits
    the sets it built)."""

    def __init__(self, sim, batches, refs, passes: set[str], inputs: dict[str, list[str]]):
        self.sim, self.batches, self.refs, self.passes, self.inputs = sim, batches, refs, passes, inputs
        self.scores: dict[tuple, tuple[float, float]] = {}

    def _float_ops(self, float_ops) -> frozenset:
        return frozenset(_with_pass_through(set(float_ops), self.passes, self.inputs))

    def __call__(self, float_ops=frozenset(), **config) -> tuple[float, float]:
        """The scores of the model with ``float_ops`` (and the ops they leave float) kept float."""
        key = (self._float_ops(float_ops), tuple(sorted(config.items())))
        if key not in self.scores:
            self.sim.configure(float_ops=set(key[0]), **config)
            self.scores[key] = _score(self.refs, [first_tensor(o) for o in self.sim.outputs(self.batches)])
        return self.scores[key]

    def each(self, base, float_sets: list[set], bar) -> None:
        """Score many float sets near ``base`` at once: each runs from the first node where it differs."""
        keys = [(self._float_ops(s), ()) for s in float_sets]

        def done():
            interrupt.check()
            bar.update(1)

        outs = self.sim.outputs_each(self.batches, {"float_ops": set(self._float_ops(base))},
                                     [{"float_ops": set(k[0])} for k in keys], keep=first_tensor, done=done)
        self.scores.update({k: _score(self.refs, o) for k, o in zip(keys, outs)})


def _greedy(measured, base_db: float, target: float, measure) -> dict[str, tuple[int, float]]:
    """A small set of layers to keep float that raises the simulated output SQNR towards ``target``.

    Candidates go most harmful first (lowest SQNR when quantized alone, then largest gain when kept float alone)
    and are added one at a time until the target is met (neighbours that share an activation range only help
    together, so a step need not help alone). Then every layer whose removal costs less than
    ``GREEDY_MIN_GAIN_DB`` is dropped, so no kept step is useless or harmful; a set that gains less than that
    in all is no set.
    """
    if base_db >= target:
        return {}
    ranked = sorted(measured, key=lambda m: (m[4], -(m[2] - base_db), m[0]))
    chosen: list[str] = []
    current = base_db
    for _, op, *_ in ranked[:GREEDY_MAX_TRIES]:
        if current >= target or len(chosen) >= GREEDY_MAX_LAYERS:
            break
        chosen.append(op)
        current, _ = measure(float_ops=frozenset(chosen))
    for op in list(reversed(chosen)):
        rest = [c for c in chosen if c != op]
        without = measure(float_ops=frozenset(rest))[0] if rest else base_db
        if without >= current - GREEDY_MIN_GAIN_DB:
            chosen, current = rest, max(without, current) if rest else base_db
    if current - base_db < GREEDY_MIN_GAIN_DB:
        return {}
    return {op: (i, measure(float_ops=frozenset(chosen[: i + 1]))[0]) for i, op in enumerate(chosen)}


def _graph_inputs(ctx) -> dict[str, list[str]]:
    graph = ctx.tables.get("graph")
    return dict(zip(graph["node"], map(list, graph["inputs"]))) if graph is not None and len(graph) else {}


def _with_pass_through(float_ops: set[str], passes: set[str], inputs: dict[str, list[str]]) -> set[str]:
    """``float_ops`` and the pass-through ops that then run float too (all their inputs are float), as in the real
    int8 model, where such an op runs on whatever its input is."""
    changed = bool(float_ops)
    while changed:
        changed = False
        for op in passes - float_ops:
            if inputs.get(op) and all(i in float_ops for i in inputs[op]):
                float_ops.add(op)
                changed = True
    return float_ops


def _pass_through_ops(ctx) -> set[str]:
    """Ops that run on their input's int8 scale: keeping one float is no fix (the graph stage's ``runs``)."""
    return pass_through_nodes(ctx.tables.get("graph"))


def _worst_first(ctx, layers: list[str]) -> list[str]:
    """``layers`` in model order, cut to ``--sensitivity-layers``: lowest isolated SQNR first, then propagated,
    then weight SQNR (whichever tables exist), then model order."""
    cap = ctx.config.sensitivity_layers
    if cap is None or cap >= len(layers):
        return layers
    rank = {op: i for i, op in enumerate(layers)}
    keys = []
    for stage in ("shadow", "activations", "weights"):
        table = ctx.tables.get(stage)
        if table is not None and len(table):
            keys.append(table.groupby("layer")["sqnr_db"].min().to_dict())
    worst = sorted(layers, key=lambda op: tuple(k.get(op, math.inf) for k in keys) + (rank[op],))[:cap]
    return sorted(worst, key=rank.get)


def _quantized_ops(ctx, sim) -> set[str]:
    """Ops whose output is an int8 tensor in the int8 model (the activations table recorded its scale); without
    that table, every op next to an observer."""
    acts = ctx.tables.get("activations")
    if acts is None or not len(acts):
        return set(sim.observed_ops)
    return set(acts.loc[acts.scale.notna(), "layer"])


def _model_row(name: str, sqnr: float, top1: float, sim_vs_real: float = math.nan) -> dict:
    return {
        "kind": "model", "layer": name, "layer_fqn": "", "op_type": "", "order": -1, "has_weights": False,
        "macs": 0, "float_alone_sqnr_db": math.nan, "float_alone_top1": math.nan,
        "quant_alone_sqnr_db": sqnr, "quant_alone_top1": top1, "gain_db": math.nan, "greedy_step": -1,
        "greedy_sqnr_db": math.nan, "images": 0, "target_sqnr_db": math.nan, "sim_vs_real_db": sim_vs_real,
    }
