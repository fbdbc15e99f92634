"""Many configurations of one simulated graph, each run only from the first node it changes.

A sensitivity sweep runs the simulated model once per layer, each time with one layer switched. Every node before
the first one a configuration changes computes what the base configuration computes, so one run of the base
configuration, node by node, hands each configuration the values alive at its first changed node (computed values
copied, so an in-place op of one configuration cannot reach another; weights and constants shared), and the
configuration runs the rest of the graph.
The outputs are a full run's: the same ops on the same values.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Callable

import torch
from torch import fx

from qreport.data import model_args

DEQUANTIZED_KEPT_BYTES = 256 * 2**20  # dequantized int8 weights a simulator keeps, smallest first; the rest per read


def kept_dequantized(int8_weights: dict) -> set:
    """The keys of ``int8_weights`` whose dequantized float copies a simulator keeps: the smallest, up to
    ``DEQUANTIZED_KEPT_BYTES`` in all. The others are dequantized where they are read, as the int8 model's
    q/dq graph does, so a simulator of a large model holds no extra float copy of its largest layers."""
    kept, budget = set(), DEQUANTIZED_KEPT_BYTES
    for key, weight in sorted(int8_weights.items(), key=lambda item: item[1].numel()):
        budget -= 4 * weight.numel()
        if budget < 0:
            break
        kept.add(key)
    return kept


def _copied(value):
    """``value`` with every tensor in it (nested in tuples, lists and dicts) cloned."""
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a named tuple
        return type(value)(*(_copied(v) for v in value))
    if isinstance(value, (tuple, list)):
        return type(value)(_copied(v) for v in value)
    if isinstance(value, dict):
        return {k: _copied(v) for k, v in value.items()}
    return value


class ForkedRuns:
    """Runs batches through ``model`` under many configurations that each differ from one base configuration.

    ``configure(**settings)`` switches the graph's modules; ``states()`` reports each switchable node's setting by
    node name (what ``configure`` changed).
    """

    def __init__(self, model: fx.GraphModule, configure: Callable[..., None], states: Callable[[], dict]):
        self.model, self.configure, self.states = model, configure, states
        self._interpreter = fx.Interpreter(model, garbage_collect_values=False)
        self.nodes = list(model.graph.nodes)
        self.position = {node.name: i for i, node in enumerate(self.nodes)}
        placeholders = [node for node in self.nodes if node.op == "placeholder"]
        self.input_index = {node: i for i, node in enumerate(placeholders)}
        self.last_use: dict[fx.Node, int] = {}
        for i, node in enumerate(self.nodes):
            for used in node.all_input_nodes:
                self.last_use[used] = i

    def first_changes(self, base: dict, variants: list[dict]) -> list[int | None]:
        """Each variant's first node whose setting differs from the base configuration's (None: none does)."""
        self.configure(**base)
        base_states = self.states()
        starts = []
        for settings in variants:
            self.configure(**settings)
            changed = [self.position[name] for name, state in self.states().items() if base_states.get(name) != state]
            starts.append(min(changed) if changed else None)
        self.configure(**base)
        return starts

    @torch.no_grad()
    def outputs(self, batches, base: dict, variants: list[dict], keep: Callable = lambda out: out,
                done: Callable[[], None] = lambda: None) -> list[list]:
        """Each variant's outputs over ``batches`` (``configure`` settings in, a list per variant out, each output
        passed through ``keep``); ``done`` is called after each variant's run of each batch."""
        starts = self.first_changes(base, variants)
        forks: dict[int | None, list[int]] = defaultdict(list)
        for v, start in enumerate(starts):
            forks[start].append(v)
        results: list[list] = [[] for _ in variants]
        for batch in batches:
            env: dict[fx.Node, object] = {}
            for i, node in enumerate(self.nodes):
                for v in forks.get(i, ()):
                    self.configure(**variants[v])
                    results[v].append(keep(self._run_from(i, env, batch)))
                    self.configure(**base)
                    done()
                self._run_node(node, env, batch)
                self._drop_dead(env, node, i)
            for v in forks.get(None, ()):
                results[v].append(keep(env[self.nodes[-1]]))
                done()
        return results

    def _run_node(self, node: fx.Node, env: dict, batch) -> None:
        """Compute ``node`` from the values in ``env`` (placeholders from ``batch``) and store it there."""
        if node.op == "placeholder":
            inputs, index = model_args(batch), self.input_index[node]
            env[node] = inputs[index] if index < len(inputs) else node.args[0]  # an omitted input: its default
            return
        self._interpreter.env = env
        env[node] = self._interpreter.run_node(node)

    def _run_from(self, start: int, env: dict, batch):
        """The output of a run that takes the values alive before node ``start`` from ``env`` (an input that comes
        later in the graph, from ``batch``)."""
        mine = {node: value if node.op == "get_attr" else _copied(value) for node, value in env.items()}
        for i in range(start, len(self.nodes)):
            self._run_node(self.nodes[i], mine, batch)
            self._drop_dead(mine, self.nodes[i], i)
        return mine[self.nodes[-1]]

    def _drop_dead(self, env: dict, node: fx.Node, i: int) -> None:
        for used in node.all_input_nodes:
            if self.last_use.get(used) == i:
                env.pop(used, None)


class ForkingSimulator:
    """What a simulator (a graph ``model`` with ``configure`` and ``states``) gains: many configurations at once."""

    def outputs_each(self, batches, base: dict, variants: list[dict], keep: Callable = lambda out: out,
                     done: Callable[[], None] = lambda: None) -> list[list]:
        """Each variant's outputs over ``batches`` (``configure`` settings), each run from the first node where it
        differs from ``base``; see ``ForkedRuns.outputs``."""
        return ForkedRuns(self.model, self.configure, self.states).outputs(batches, base, variants, keep, done)
