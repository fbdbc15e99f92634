"""The state a build hands from one stage to the next."""

from __future__ import annotations

import dataclasses
import sys

import pandas as pd
from tqdm import tqdm

from qreport.config import BuildConfig
from qreport.interrupt import checked


@dataclasses.dataclass
class BuildContext:
    """Models, data and finished tables of one build; stages read it and add their table."""

    config: BuildConfig
    flow: object
    loaded: object  # models.LoadedModel
    data: object  # data.DataSource
    prepared: object = None  # calibrated model with observers (Conv-BN folded)
    quantized: object = None  # the int8 model
    reference: object = None  # what the int8 model is compared with: the float model (the fake-quant one for QAT)
    node_fqns: dict = dataclasses.field(default_factory=dict)  # FX node name -> module path
    module_nodes: set = dataclasses.field(default_factory=set)  # FX nodes that call a module
    compare_after: dict = dataclasses.field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = dataclasses.field(default_factory=dict)
    uncompared: dict[str, list[dict]] = dataclasses.field(default_factory=dict)  # stage -> [{layer, reason}], from results
    stage_status: dict[str, str] = dataclasses.field(default_factory=dict)  # stage -> ok | failed
    quiet: bool = False
    macs: dict = dataclasses.field(default_factory=dict)  # module path -> MACs per sample
    notes: list = dataclasses.field(default_factory=list)  # lines for the report's notes (the pipeline adds results')
    metric: object = None  # the user's --metric callable (outputs, labels) -> float, or None
    calibration_record: object = None  # flows.CalibrationRecord the flow filled while calibrating, or None
    channel_record: object = None  # stages.channels.ChannelRecord the model stage filled on its float pass, or None

    def drop_models(self) -> None:
        """Let go of every model, once the tables are written (the report is drawn from them alone); the flow too,
        which keeps what it derived from the float model (its export, the folded weights) for later preparations."""
        self.loaded = self.prepared = self.quantized = self.reference = self.flow = None
        self.calibration_record = self.channel_record = None

    def batches(self, split, desc: str, total: int | None = None):
        """Iterate a data split (or any iterable of ``total`` batches) with a progress bar (hidden when quiet or
        not on a terminal)."""
        show = not self.quiet and sys.stderr.isatty()
        return tqdm(checked(split), total=len(split) if total is None else total, desc=f"  {desc}", unit="batch",
                    leave=False, disable=not show, file=sys.stderr)

    def progress(self, items, desc: str, unit: str = "layer"):
        """A progress bar over any loop (hidden when quiet or not on a terminal)."""
        show = not self.quiet and sys.stderr.isatty()
        return tqdm(checked(items), total=len(items) if hasattr(items, "__len__") else None, desc=f"  {desc}",
                    unit=unit, leave=False, disable=not show, file=sys.stderr)

    def layer_fqn(self, node_name: str) -> str:
        """Module path of an FX node; other ops get ``scope:node`` (``(root):add`` at the top level).

        Only a module path can take a qconfig override, so the colon marks what cannot.
        """
        fqn = self.node_fqns.get(node_name)
        if node_name in self.module_nodes and fqn:
            return fqn
        return f"{fqn or '(root)'}:{node_name}"
