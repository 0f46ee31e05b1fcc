"""Report figures: plain numbers in, PNG bytes out.

matplotlib is imported inside the functions, so ``import leanbits`` stays fast, and only
the object-oriented API is used (``Figure`` + Agg canvas, never ``pyplot``): no global
backend is switched and no window can open, whatever the user's matplotlib settings.
Every figure shares :data:`STYLE`, labels its axes with units and, where bits are on an
axis, uses a log scale - bit counts of a sweep span orders of magnitude.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from leanbits.results import Row

#: rc settings shared by every figure (a consistent look across reports)
STYLE: dict[str, object] = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 7.5,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "lines.linewidth": 1.5,
    "lines.markersize": 4,
}
#: fixed colours per output head, so a head looks the same in every figure of a report
HEAD_COLORS: dict[str, str] = {"softmax": "#1f77b4", "llr": "#d62728", "llr-code": "#2ca02c"}
_CYCLE = ("#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
#: colours of the bit categories in stacked bars, in stacking order
PART_COLORS: dict[str, str] = {"values": "#4c72b0", "positions": "#dd8452",
                               "codebook": "#55a868", "non-weight": "#c44e52",
                               "header": "#8172b3"}
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_LINESTYLES = ("-", "--", ":", "-.")


def color_for(key: str | None, index: int) -> str:
    """The colour of a head (fixed) or of the ``index``-th other group (cycled)."""
    if key in HEAD_COLORS:
        return HEAD_COLORS[key]
    return _CYCLE[index % len(_CYCLE)]


def marker_for(index: int) -> str:
    return _MARKERS[index % len(_MARKERS)]


def linestyle_for(index: int) -> str:
    return _LINESTYLES[index % len(_LINESTYLES)]


def arm_group_indices(names: Sequence[str]) -> list[tuple[int, int]] | None:
    """Per line named ``group / arm`` (e.g. ``1k / l2``): the index of its arm and of its
    group, first-seen order, so each arm gets one colour and each group one marker or line
    style - a dozen lines stay tellable apart instead of cycling ten colours. A last part
    every name shares (``full / l2 / refit`` with one pruning method) tells nothing and is
    dropped first. None unless there are several names and every one has both parts.

    Example:
        >>> arm_group_indices(["full / none", "full / l2", "1k / none"])
        [(0, 0), (1, 0), (0, 1)]
        >>> arm_group_indices(["full / none / refit", "1k / l2 / refit"])
        [(0, 0), (1, 1)]
    """
    parts = [name.split(" / ") for name in names]
    while len(parts) > 1 and all(len(p) > 2 for p in parts) and len({p[-1] for p in parts}) == 1:
        parts = [p[:-1] for p in parts]
    if len(parts) < 2 or any(len(p) < 2 for p in parts):
        return None
    arms = list(dict.fromkeys(p[-1] for p in parts))
    groups = list(dict.fromkeys(" / ".join(p[:-1]) for p in parts))
    return [(arms.index(p[-1]), groups.index(" / ".join(p[:-1]))) for p in parts]


@dataclass(frozen=True)
class Series:
    """One line (or set of markers) of a panel."""

    label: str
    x: Sequence[float]
    y: Sequence[float]
    color: str | None = None
    linestyle: str = "-"
    marker: str | None = None
    #: ± spread of each y (std over seeds), drawn as error bars as in :func:`error_figure`;
    #: None: a plain line
    spread: Sequence[float | None] | None = None
    #: draw ``spread`` as a shaded band around the line instead of error bars (curves
    #: over many epochs, where bars at every point would hide the lines)
    band: bool = False
    #: with a marker: mark every n-th point only (long curves)
    markevery: int | None = None


@dataclass(frozen=True)
class Panel:
    """One set of axes: a title, labelled axes (with units) and its series."""

    title: str
    xlabel: str
    ylabel: str
    series: Sequence[Series] = field(default_factory=tuple)
    logx: bool = False
    logy: bool = False
    #: x values are counts (weights, bits): label ticks 10k, 1.5M
    xcounts: bool = False


def si(value: float) -> str:
    """``1500000`` -> ``"1.5M"``: short tick labels for counts spanning many decades.

    Example:
        >>> si(1500000), si(20000), si(0.5)
        ('1.5M', '20k', '0.5')
    """
    for factor, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g}{suffix}"
    return f"{value:.3g}"


def _plain_log_axis(axis, counts: bool) -> None:
    """Plain tick labels (``20``, ``0.6``, ``1.5M``) on a log axis instead of ``6x10^1``.

    matplotlib's LogFormatter still decides *which* ticks get a label (so minor ticks are
    labelled only over short ranges); only the text changes.
    """
    from matplotlib.ticker import LogFormatter

    text = si if counts else (lambda v: f"{v:.3g}")

    class PlainLog(LogFormatter):
        def __call__(self, x, pos=None):
            return text(x) if super().__call__(x, pos) else ""

    axis.set_major_formatter(PlainLog())
    axis.set_minor_formatter(PlainLog(labelOnlyBase=False, minor_thresholds=(1.5, 0.6)))


def _render(fig) -> bytes:
    buf = io.BytesIO()
    # No "Software"/date metadata: the same numbers give byte-identical PNGs.
    fig.savefig(buf, format="png", metadata={"Software": None}, bbox_inches="tight")
    return buf.getvalue()


def _figure(n_panels: int, width_per_panel: float = 4.6, height: float = 3.4):
    from matplotlib.figure import Figure

    ncols = min(n_panels, 2)
    nrows = (n_panels + ncols - 1) // ncols
    fig = Figure(figsize=(width_per_panel * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def _legend(ax, n_entries: int) -> None:
    if n_entries == 0:
        return
    # Many runs: the legend goes outside the axes rather than over the curves.
    if n_entries > 6:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    else:
        ax.legend(frameon=False)


def _positive(values: Sequence[float]) -> bool:
    return all(v is not None and v > 0 for v in values)


def line_figure(panels: Sequence[Panel], title: str | None = None) -> bytes:
    """Line plots, one panel per :class:`Panel`, two panels per row.

    Args:
        panels: what to draw; a series whose x or y is empty is skipped.
        title: figure title.

    Returns:
        PNG bytes.

    Example:
        >>> png = line_figure([Panel("loss", "epoch", "loss (nats)",
        ...                          [Series("llr", [1, 2], [0.5, 0.3])])])
        >>> png[:4] == b"\\x89PNG"
        True
    """
    import matplotlib

    with matplotlib.rc_context(STYLE):
        fig, axes = _figure(len(panels))
        labels = [[s.label for s in p.series if len(s.x)] for p in panels]
        # The same runs in every panel: one legend for the figure instead of one per panel.
        shared = len(panels) > 1 and all(lb == labels[0] for lb in labels) and labels[0]
        for ax, panel in zip(axes, panels, strict=True):
            drawn = 0
            all_x = [v for s in panel.series for v in s.x]
            all_y = [v for s in panel.series for v in s.y]
            logy = panel.logy and bool(all_y) and _positive(all_y)
            for s in panel.series:
                if not len(s.x) or not len(s.y):
                    continue
                # A line through one or two points is hard to see: mark the points.
                marker = s.marker or ("o" if len(s.x) < 4 else None)
                if s.spread is not None and s.band:
                    sd = [v or 0.0 for v in s.spread]
                    # On a log axis the band stops short of zero, as error bars do.
                    lo = [y - (min(d, 0.95 * y) if logy else d)
                          for y, d in zip(s.y, sd, strict=True)]
                    hi = [y + d for y, d in zip(s.y, sd, strict=True)]
                    ax.fill_between(list(s.x), lo, hi, color=s.color, alpha=0.15,
                                    linewidth=0)
                    ax.plot(list(s.x), list(s.y), label=s.label, color=s.color,
                            linestyle=s.linestyle, marker=marker, markevery=s.markevery)
                elif s.spread is not None:
                    ax.errorbar(list(s.x), list(s.y), yerr=[v or 0.0 for v in s.spread],
                                label=s.label, color=s.color, linestyle=s.linestyle,
                                marker=marker, capsize=2, elinewidth=0.8)
                else:
                    ax.plot(list(s.x), list(s.y), label=s.label, color=s.color,
                            linestyle=s.linestyle, marker=marker, markevery=s.markevery)
                drawn += 1
            ax.set_title(panel.title)
            ax.set_xlabel(panel.xlabel)
            ax.set_ylabel(panel.ylabel)
            if all_x and all(isinstance(v, int) for v in all_x):
                from matplotlib.ticker import MaxNLocator

                # Epochs are whole numbers: no tick at epoch 0.96.
                if len(set(all_x)) <= 10:
                    ax.set_xticks(sorted(set(all_x)))
                else:
                    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            # A log axis over a zero or negative value would hide the point: stay linear.
            if panel.logx and all_x and _positive(all_x):
                ax.set_xscale("log")
                _plain_log_axis(ax.xaxis, panel.xcounts)
            if logy:
                ax.set_yscale("log")
                _plain_log_axis(ax.yaxis, False)
            if not shared:
                _legend(ax, drawn)
        if shared:
            handles, names = axes[0].get_legend_handles_labels()
            fig.legend(handles, names, loc="outside right upper", frameon=False)
        if title:
            fig.suptitle(title)
        return _render(fig)


@dataclass(frozen=True)
class ErrorPoint:
    """One configuration of a line: ``x`` (e.g. mean total bits over seeds), the mean
    ``y`` (e.g. test error in %) and its spread ``spread`` (std over seeds; 0 or None for
    one seed); ``joined``: on the line (Pareto-optimal on validation), else a marker only."""

    x: float
    y: float
    spread: float | None = None
    joined: bool = True


@dataclass(frozen=True)
class ErrorLine:
    """The configurations of one method / architecture, drawn in one colour and marker."""

    label: str
    points: Sequence[ErrorPoint]
    color: str | None = None
    marker: str = "o"


def error_figure(lines: Sequence[ErrorLine], xlabel: str, ylabel: str, title: str,
                 xcounts: bool = True) -> bytes:
    """Error against size, both on log axes, as compression papers draw it: every point
    with its spread as a vertical error bar, one line per :class:`ErrorLine` through its
    ``joined`` points (fewest ``x`` first); the other points are faint markers.

    An axis holding a zero or negative value stays linear (a log axis would hide it); an
    error bar is cut short of zero on a log y-axis.

    Args:
        lines: what to draw.
        xlabel: label of the size axis (with its unit).
        ylabel: label of the error axis (with its unit).
        title: axes title.
        xcounts: x values are counts (bits, weights): ticks read 10k, 1.5M.

    Returns:
        PNG bytes.

    Example:
        >>> png = error_figure([ErrorLine("refit", [ErrorPoint(1e4, 2.0, 0.1),
        ...                                         ErrorPoint(1e5, 1.5, 0.2)])],
        ...                    "total bits", "test error (%)", "t")
        >>> png[:4] == b"\\x89PNG"
        True
    """
    import matplotlib

    with matplotlib.rc_context(STYLE):
        fig, (ax,) = _figure(1, width_per_panel=6.4, height=4.2)
        xs = [p.x for line in lines for p in line.points]
        ys = [p.y for line in lines for p in line.points]
        logy = bool(ys) and _positive(ys)
        for line in lines:
            for joined in (True, False):
                pts = sorted((p for p in line.points if p.joined == joined),
                             key=lambda p: p.x)
                if not pts:
                    continue
                lo = [min(p.spread or 0.0, 0.95 * p.y) if logy else (p.spread or 0.0)
                      for p in pts]
                hi = [p.spread or 0.0 for p in pts]
                ax.errorbar([p.x for p in pts], [p.y for p in pts], yerr=[lo, hi],
                            color=line.color, marker=line.marker,
                            linestyle="-" if joined else "none",
                            alpha=1.0 if joined else 0.35, capsize=2, elinewidth=0.8,
                            markersize=4 if joined else 3,
                            label=line.label if joined else None)
        if xs and _positive(xs):
            ax.set_xscale("log")
            _plain_log_axis(ax.xaxis, xcounts)
        if logy:
            ax.set_yscale("log")
            _plain_log_axis(ax.yaxis, False)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        _legend(ax, sum(1 for line in lines if any(p.joined for p in line.points)))
        return _render(fig)


def stacked_bars(labels: Sequence[str], parts: Mapping[str, Sequence[float]], ylabel: str,
                 title: str) -> bytes:
    """Horizontal stacked bars: one bar per label, one segment per part.

    Horizontal, because point labels are long; the bit axis is linear, because segment
    lengths of a stacked bar only add up on a linear axis.

    Args:
        labels: one per bar (top to bottom).
        parts: part name -> one value per bar, stacked in the mapping's order.
        ylabel: label of the value axis (with its unit).
        title: axes title.

    Returns:
        PNG bytes.
    """
    import matplotlib

    with matplotlib.rc_context(STYLE):
        height = 1.2 + 0.42 * len(labels)
        fig, (ax,) = _figure(1, width_per_panel=7.0, height=height)
        ys = list(range(len(labels)))[::-1]
        left = [0.0] * len(labels)
        for i, (name, values) in enumerate(parts.items()):
            vals = [float(v or 0.0) for v in values]
            ax.barh(ys, vals, left=left, label=name,
                    color=PART_COLORS.get(name, _CYCLE[i % len(_CYCLE)]))
            left = [a + b for a, b in zip(left, vals, strict=True)]
        ax.set_yticks(ys, labels=list(labels))
        from matplotlib.ticker import FuncFormatter

        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: si(v)))
        ax.set_xlabel(ylabel)
        ax.set_title(title)
        ax.grid(axis="y", visible=False)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        return _render(fig)


def grouped_bars(categories: Sequence[str], series: Mapping[str, Sequence[float]],
                 ylabel: str, title: str) -> bytes:
    """Vertical grouped bars: one group per category (e.g. layer), one bar per series.

    Args:
        categories: the x positions (e.g. layer names).
        series: label -> one value per category (None draws nothing).
        ylabel: label of the value axis (with its unit).
        title: axes title.

    Returns:
        PNG bytes.
    """
    import matplotlib

    with matplotlib.rc_context(STYLE):
        fig, (ax,) = _figure(1, width_per_panel=max(5.0, 1.0 + 0.9 * len(categories)),
                             height=3.6)
        n = max(1, len(series))
        width = 0.8 / n
        for i, (label, values) in enumerate(series.items()):
            xs = [c + (i - (n - 1) / 2) * width for c in range(len(categories))]
            ax.bar(xs, [float(v) if v is not None else 0.0 for v in values], width=width,
                   label=label, color=_CYCLE[i % len(_CYCLE)] if n > 1 else "#4c72b0")
        ax.set_xticks(range(len(categories)), labels=list(categories))
        ax.set_xlabel("layer")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(axis="x", visible=False)
        if len(series) > 1:  # beside the bars: bars reach 100 % and a legend would hide them
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        return _render(fig)


def profile_figure(rows: Sequence[Row], title: str = "") -> bytes:
    """Accuracy against nonzero weights of a ``leanbits profile``: per method, test accuracy
    (solid) and validation accuracy (dashed); the dense model as a star.

    Args:
        rows: the profile's rows (:class:`leanbits.results.Row`, method in ``axes``); rows
            of failed levels (no ``nonzero_weights``) are skipped.
        title: figure title.

    Returns:
        PNG bytes.
    """
    rows = [r for r in rows if r.nonzero_weights is not None]
    methods = [m for m in dict.fromkeys(r.axes["method"] for r in rows) if m != "dense"]
    series = []
    for i, method in enumerate(methods):
        rs = sorted((r for r in rows if r.axes["method"] == method),
                    key=lambda r: r.nonzero_weights)
        xs = [max(r.nonzero_weights, 1) for r in rs]
        color = color_for(None, i)
        series.append(Series(f"{method} (test)", xs, [r.test_acc for r in rs], color,
                             marker="o"))
        series.append(Series(f"{method} (val)", xs, [r.val_acc for r in rs], color,
                             linestyle="--", marker="x"))
    dense = [r for r in rows if r.axes["method"] == "dense"]
    if dense:
        series.append(Series("dense (test)", [max(r.nonzero_weights, 1) for r in dense],
                             [r.test_acc for r in dense], "black", linestyle="none",
                             marker="*"))
    panel = Panel(title, "nonzero weights (count)", "accuracy", series, logx=True,
                  xcounts=True)
    return line_figure([panel])
