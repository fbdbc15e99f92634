"""Calibrate once: a newly prepared graph takes the observer states of one calibrated on the same data.

Calibration runs the model in float whatever the qconfig, so an observer that watches the same value, with the
same settings, ends in the same state. When every observer of the new graph has such a twin in the calibrated
one (matched by the node it watches and the ops that read it, and shared with the same other places), copying the
states gives exactly what calibrating again would, without one forward pass; otherwise the caller calibrates.
"""

from __future__ import annotations

from torch import fx, nn

_SETTINGS = ("dtype", "qscheme", "quant_min", "quant_max", "reduce_range", "ch_axis", "bins", "eps")


def _observers(gm: nn.Module) -> dict[tuple, nn.Module] | None:
    """Observer per (watched node, reading ops); None when two share a key (ambiguous)."""
    graph = getattr(gm, "graph", None)
    if graph is None:
        return None
    found: dict[tuple, nn.Module] = {}
    for node in graph.nodes:
        if node.op != "call_module" or "activation_post_process" not in str(node.target):
            continue
        source = node.args[0] if node.args and isinstance(node.args[0], fx.Node) else None
        key = (source.name if source is not None else "", tuple(sorted(u.name for u in node.users)))
        if key in found:
            return None
        found[key] = gm.get_submodule(node.target)
    return found


def _watchers(model: nn.Module) -> int:
    """Every observer or fake-quantize module the model holds."""
    return sum(1 for m in model.modules() if "Observer" in type(m).__name__ or "FakeQuant" in type(m).__name__)


def _sharing(observers: dict[tuple, nn.Module], key: tuple) -> frozenset:
    """The places that share ``key``'s observer module."""
    return frozenset(k for k, m in observers.items() if m is observers[key])


def _settings(observer: nn.Module) -> tuple:
    return (type(observer),) + tuple(str(getattr(observer, name, None)) for name in _SETTINGS)


def copy_observer_states(calibrated: nn.Module, prepared: nn.Module) -> bool:
    """Give every observer of ``prepared`` the state of its twin in ``calibrated``; False (nothing copied) unless
    every one has a twin with the same settings."""
    have, want = _observers(calibrated), _observers(prepared)
    if have is None or want is None or not want or _watchers(prepared) != len({id(m) for m in want.values()}):
        return False  # an observer outside the graph's observer nodes (input equalization) would stay empty
    if any(key not in have or _settings(have[key]) != _settings(obs) for key, obs in want.items()):
        return False
    # an observer shared between places (ReLU6 and pooling share their input's) must be shared the same way in both:
    # the float layer's own output observer must not take the state of one shared with its unclamped input
    if any(_sharing(have, key) != _sharing(want, key) for key in want):
        return False
    for key, observer in want.items():
        observer.load_state_dict(have[key].state_dict())
    return True
