"""Stage: the int8 graph as data: each op, what it runs on and the ops feeding it (for coverage, the guidance's
links between a cause and the errors it makes, and the report's graph view)."""

from __future__ import annotations

import pandas as pd



def run(ctx) -> pd.DataFrame:
    """One row per op of the int8 model, in execution order."""
    rows = []
    for order, r in enumerate(ctx.flow.graph_nodes(ctx.quantized)):
        rows.append({"node": r["node"], "layer_fqn": ctx.layer_fqn(r["node"]), "op_type": ctx.flow.op_label(r["target"]),
                     "runs": r["runs"], "inputs": r["inputs"], "order": order})
    return pd.DataFrame(rows, columns=["node", "layer_fqn", "op_type", "runs", "inputs", "order"])
