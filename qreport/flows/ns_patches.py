"""Corrections and a speed-up applied to torch's FX Numeric Suite while qreport calls it (each undone after)."""

from __future__ import annotations

import contextlib


@contextlib.contextmanager
def int8_modules_take_int8():
    """Make the Numeric Suite see int8 inputs on int8 modules that subclass their float twin.

    It tests ``isinstance`` against its float-input module set first, so ``quantized.LayerNorm``, ``Hardswish``,
    ``ELU``, ``LeakyReLU``, ``InstanceNorm*`` and ``Softmax`` count as float-input: their float shadow gets the
    int8 tensor unconverted and either fails (``layer_norm``) or silently runs the int8 kernel. An exact type
    match on the int8 set comes first here.
    """
    from torch.ao.ns.fx import graph_passes, utils

    original = utils.get_node_first_input_and_output_type

    def first_input_and_output_type(node, gm, logger_cls, node_type_to_io_type_map):
        if node.op == "call_module":
            module = utils.getattr_from_fqn(gm, node.target)
            if type(module) in node_type_to_io_type_map["mods_io_type_int8"]:
                return utils.NodeInputOrOutputType.INT8, utils.NodeInputOrOutputType.INT8
        return original(node, gm, logger_cls, node_type_to_io_type_map)

    utils.get_node_first_input_and_output_type = graph_passes.get_node_first_input_and_output_type = \
        first_input_and_output_type
    try:
        yield
    finally:
        utils.get_node_first_input_and_output_type = graph_passes.get_node_first_input_and_output_type = original


@contextlib.contextmanager
def fusion_patterns_once():
    """Let the Numeric Suite's subgraph matcher build its list of fusion patterns once per call, not once per node.

    ``graph_matcher`` calls ``get_reversed_fusions()`` for every node it visits, and each call rebuilds the list
    from the native backend config: three quarters of the time ``add_loggers``, ``add_shadow_loggers`` and
    ``extract_weights`` take on mobilenet_v2 (1.3 s each in torch 2.14.1). The list depends on nothing but that
    config, so the matcher is handed one list built on entry.
    """
    from torch.ao.ns.fx import graph_matcher

    original = graph_matcher.get_reversed_fusions
    patterns = original()
    graph_matcher.get_reversed_fusions = lambda: patterns
    try:
        yield
    finally:
        graph_matcher.get_reversed_fusions = original
