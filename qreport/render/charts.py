"""Charts as inline SVG: matplotlib, fixed hash salt, no dates, text kept as (escaped) text."""

from __future__ import annotations

import io
import math
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

BAD = "#c0392b"
BLUE = "#2c6fbb"
ORANGE = "#e08a1e"
GREY = "#8a8f98"


def _svg(fig, salt: str) -> str:
    """Serialise ``fig`` to an SVG fragment whose bytes depend only on the data."""
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": f"qreport-{salt}", "svg.fonttype": "none"}):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": "qreport"}, bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    text = re.sub(r"<\?xml[^>]*\?>\s*", "", text)
    text = re.sub(r"<!DOCTYPE[^>]*>\s*", "", text)
    return text.strip()


def _finite_or_cap(values, cap):
    return [cap if v == math.inf else (math.nan if v is None or not math.isfinite(v) else v) for v in values]


def _axis_labels(ax, labels, max_labels: int = 90) -> None:
    n = len(labels)
    step = max(1, math.ceil(n / max_labels))
    ticks = list(range(0, n, step))
    ax.set_xticks(ticks)
    ax.set_xticklabels([labels[i] for i in ticks], rotation=90, fontsize=6)
    ax.set_xlim(-0.6, n - 0.4)


def _figure(n: int):
    width = min(14.0, max(6.0, 0.16 * n + 2.0))
    fig, ax = plt.subplots(figsize=(width, 3.6), dpi=72)
    ax.grid(axis="y", color="#e3e5e8", linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return fig, ax


def weights_chart(labels: list[str], sqnr: list[float], bad: list[bool]) -> str:
    """Bar chart of weight SQNR per layer; outliers in red."""
    fig, ax = _figure(len(labels))
    finite = [v for v in sqnr if v is not None and math.isfinite(v)]
    cap = (max(finite) + 5.0) if finite else 1.0
    values = _finite_or_cap(sqnr, cap)
    ax.bar(range(len(values)), values, color=[BAD if b else BLUE for b in bad], width=0.8)
    ax.set_ylabel("weight SQNR (dB)")
    _axis_labels(ax, labels)
    return _svg(fig, "weights")


def activations_chart(labels: list[str], propagated: list[float], isolated: list[float], bad: list[bool]) -> str:
    """Propagated and isolated activation SQNR per layer on one axis: the gap shows where error starts."""
    fig, ax = _figure(len(labels))
    finite = [v for v in propagated + isolated if v is not None and math.isfinite(v)]
    cap = (max(finite) + 5.0) if finite else 1.0
    x = list(range(len(labels)))
    ax.plot(x, _finite_or_cap(propagated, cap), color=BLUE, marker="o", markersize=3, linewidth=1.2,
            label="propagated (error accumulated so far)")
    ax.plot(x, _finite_or_cap(isolated, cap), color=ORANGE, marker="s", markersize=3, linewidth=1.0,
            linestyle="--", label="isolated (error this op adds)")
    for i, b in enumerate(bad):
        if b:
            ax.axvspan(i - 0.5, i + 0.5, color=BAD, alpha=0.12, linewidth=0)
    if any(v == math.inf for v in propagated + isolated):
        ax.axhline(cap, color=GREY, linewidth=0.6, linestyle=":")
        ax.annotate("exact (no error)", (0, cap), fontsize=7, color=GREY, va="bottom")
    ax.set_ylabel("activation SQNR (dB)")
    ax.legend(fontsize=7, loc="lower left", frameon=False)
    _axis_labels(ax, labels)
    return _svg(fig, "activations")


def histogram_chart(salt: str, lo: float, hi: float, hist_float: list[int], hist_quant: list[int],
                    range_lo: float, range_hi: float) -> str:
    """Float vs int8 value histograms of one layer, with the int8 representable range marked."""
    fig, ax = plt.subplots(figsize=(4.2, 2.4), dpi=72)
    bins = len(hist_float) - 2
    width = (hi - lo) / bins
    edges = [lo + i * width for i in range(bins)]
    ax.bar(edges, hist_float[1:-1], width=width, align="edge", color=BLUE, alpha=0.55, label="float")
    ax.step([e + width for e in edges], hist_quant[1:-1], where="pre", color=ORANGE, linewidth=1.0, label="int8")
    ax.set_yscale("symlog")
    if math.isfinite(range_lo) and math.isfinite(range_hi):
        for edge in (range_lo, range_hi):
            if lo <= edge <= hi:
                ax.axvline(edge, color=BAD, linewidth=1.0, linestyle="--")
        ax.plot([], [], color=BAD, linestyle="--", label="int8 range")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6, frameon=False)
    return _svg(fig, salt)
