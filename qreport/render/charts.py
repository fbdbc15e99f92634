"""Charts as inline SVG: matplotlib, fixed hash salt, no dates, text kept as (escaped) text."""

from __future__ import annotations

import io
import math
import re
import warnings

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
    with matplotlib.rc_context({"svg.hashsalt": f"qreport-{salt}", "svg.fonttype": "none"}), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # glyphs missing from the font: the SVG keeps the text anyway
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": "qreport"}, bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    text = re.sub(r"<\?xml[^>]*\?>\s*", "", text)
    text = re.sub(r"<!DOCTYPE[^>]*>\s*", "", text)
    return text.strip()


EXACT_DB = 100.0  # above this an SQNR is float rounding noise (e.g. a layer kept in float): drawn as exact


def _display(values) -> tuple[list[float], float, bool]:
    """Values to draw, the ceiling exact ones are drawn at, and whether any were."""
    shown = [v for v in values if v is not None and math.isfinite(v) and v <= EXACT_DB]
    ceiling = (max(shown) + 5.0) if shown else 10.0
    out, capped = [], False
    for v in values:
        if v is not None and (v == math.inf or (math.isfinite(v) and v > EXACT_DB)):
            out.append(ceiling)
            capped = True
        else:
            out.append(v if v is not None and math.isfinite(v) else math.nan)
    return out, ceiling, capped


def _mark_exact(ax, ceiling: float) -> None:
    ax.axhline(ceiling, color=GREY, linewidth=0.6, linestyle=":")
    ax.annotate(f"exact or > {EXACT_DB:.0f} dB (e.g. kept float)", (0, ceiling), fontsize=7, color=GREY, va="bottom")


def _axis_labels(ax, labels, max_labels: int = 70) -> None:
    n = len(labels)
    step = max(1, math.ceil(n / max_labels))
    ticks = list(range(0, n, step))
    ax.set_xticks(ticks)
    # layer names are text: a "$" must not start matplotlib's mathtext
    ax.set_xticklabels([labels[i].replace("$", r"\$") for i in ticks], rotation=60, ha="right",
                       rotation_mode="anchor", fontsize=8)
    ax.set_xlim(-0.6, n - 0.4)


def _legend_above(ax) -> None:
    """The legend in a row above the plot, where it covers no data."""
    ax.legend(fontsize=8, loc="lower left", bbox_to_anchor=(0.0, 1.01), ncol=3, frameon=False)


def _figure(n: int):
    width = min(30.0, max(6.0, 0.2 * n + 2.0))  # wide models scroll in their frame rather than shrink
    fig, ax = plt.subplots(figsize=(width, 3.6), dpi=72)
    ax.grid(axis="y", color="#e3e5e8", linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return fig, ax


def weights_chart(labels: list[str], sqnr: list[float], bad: list[bool]) -> str:
    """Weight SQNR per layer as dots (most layers sit close together); the flagged ones red and named."""
    fig, ax = _figure(len(labels))
    values, ceiling, capped = _display(sqnr)
    x = list(range(len(values)))
    ax.scatter([i for i in x if not bad[i]], [values[i] for i in x if not bad[i]], color=BLUE, s=14,
               label="weight SQNR")
    flagged = [i for i in x if bad[i]]
    if flagged:
        ax.scatter(flagged, [values[i] for i in flagged], color=BAD, s=26, label="flagged in the guidance")
        for i in flagged:
            ax.annotate(labels[i].replace("$", r"\$"), (i, values[i]), fontsize=8, color=BAD, xytext=(4, -10),
                        textcoords="offset points")
    if capped:
        _mark_exact(ax, ceiling)
    ax.set_ylabel("weight SQNR (dB)")
    _legend_above(ax)
    _axis_labels(ax, labels)
    return _svg(fig, "weights")


def activations_chart(labels: list[str], propagated: list[float], isolated: list[float], bad: list[bool]) -> str:
    """Propagated and isolated activation SQNR per layer on one axis: the gap shows where error starts."""
    fig, ax = _figure(len(labels))
    shown, ceiling, capped = _display(propagated + isolated)
    prop_shown, iso_shown = shown[:len(propagated)], shown[len(propagated):]
    x = list(range(len(labels)))
    ax.plot(x, prop_shown, color=BLUE, marker="o", markersize=3, linewidth=1.2,
            label="propagated (error accumulated so far)")
    ax.plot(x, iso_shown, color=ORANGE, marker="s", markersize=3, linewidth=1.0,
            linestyle="--", label="isolated (error this op adds)")
    for i, b in enumerate(bad):
        if b:
            ax.axvspan(i - 0.5, i + 0.5, color=BAD, alpha=0.12, linewidth=0)
    gaps = [i for i, v in enumerate(iso_shown) if not (isinstance(v, float) and math.isfinite(v))]
    if gaps:  # ops the isolated view cannot shadow (adds and the like): marked, not left as silent gaps
        finite = [v for v in shown if isinstance(v, float) and math.isfinite(v)]
        floor = min(finite) if finite else 0.0
        ax.scatter(gaps, [floor] * len(gaps), color=GREY, marker="x", s=18, zorder=3,
                   label="no isolated view for this op (see Coverage)")
    if capped:
        _mark_exact(ax, ceiling)
    ax.set_ylabel("activation SQNR (dB)")
    _legend_above(ax)
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


def delta_chart(labels: list[str], series: dict[str, list[float]]) -> str:
    """SQNR change per layer (head − base) for each view; changes to or from exact are drawn at the edge."""
    fig, ax = _figure(len(labels))
    finite = [abs(v) for values in series.values() for v in values if v is not None and math.isfinite(v)]
    edge = (max(finite) * 1.1 + 1.0) if finite else 10.0
    styles = {"weights": (BAD, "s"), "isolated": (ORANGE, "o"), "propagated": (BLUE, ".")}
    x = list(range(len(labels)))
    for name, values in series.items():
        color, marker = styles.get(name, (GREY, "."))
        shown = [edge if v == math.inf else -edge if v == -math.inf else v for v in values]
        ax.plot(x, shown, color=color, marker=marker, markersize=3, linewidth=0.9, label=name)
    ax.axhline(0, color=GREY, linewidth=0.8)
    ax.set_ylabel("SQNR change, head − base (dB)")
    _legend_above(ax)
    _axis_labels(ax, labels)
    return _svg(fig, "delta")


def sensitivity_chart(labels: list[str], quant_alone: list[float], float_alone: list[float], chosen: list[bool],
                      base: float, target: float) -> str:
    """Output SQNR with only each layer quantized, and with only it kept float; the greedy set shaded."""
    fig, ax = _figure(len(labels))
    shown, ceiling, capped = _display(quant_alone + float_alone + [base])
    q, f = shown[:len(labels)], shown[len(labels):2 * len(labels)]
    x = list(range(len(labels)))
    ax.plot(x, q, color=ORANGE, marker="o", markersize=3, linewidth=1.0, label="only this layer quantized")
    ax.plot(x, f, color=BLUE, marker="s", markersize=3, linewidth=1.0, label="only this layer kept float")
    for i, c in enumerate(chosen):
        if c:
            ax.axvspan(i - 0.5, i + 0.5, color=BAD, alpha=0.15, linewidth=0)
    if math.isfinite(base):
        ax.axhline(base, color=GREY, linewidth=0.8, linestyle="--", label="all quantized")
    if math.isfinite(target) and target <= ceiling:
        ax.axhline(target, color=BAD, linewidth=0.8, linestyle=":", label="target")
    if capped:
        _mark_exact(ax, ceiling)
    ax.set_ylabel("model output SQNR (dB), simulated")
    _legend_above(ax)
    _axis_labels(ax, labels)
    return _svg(fig, "sensitivity")


def ladder_chart(cost: list[float], quality: list[float], kept: list[bool], labels: list[str], unit: str) -> str:
    """Each measured remedy as quality against the share of MACs left in float; the kept ones joined (the front)."""
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    x = [100 * c if c is not None and math.isfinite(c) else 0.0 for c in cost]
    shown, ceiling, capped = _display(quality) if unit == "dB" else (quality, math.nan, False)
    path = [(xi, yi) for xi, yi, k in zip(x, shown, kept) if k]
    if path:
        ax.plot(*zip(*path), color=BLUE, linewidth=1.0, zorder=1)
    for xi, yi, k, label in zip(x, shown, kept, labels):
        ax.scatter([xi], [yi], color=BLUE if k else GREY, marker="o" if k else "x", s=28, zorder=2)
        ax.annotate(label, (xi, yi), fontsize=7, xytext=(4, 3), textcoords="offset points")
    if capped:
        _mark_exact(ax, ceiling)
    ax.set_xlabel("MACs left in float (%)")
    ax.set_ylabel("int8 accuracy (%)" if unit == "%" else "model output SQNR (dB)")
    ax.grid(True, linewidth=0.3, alpha=0.5)
    return _svg(fig, "ladder")
