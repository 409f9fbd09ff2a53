"""Fig. 4: the adjacent-layer divergence per emitted token (rows) and layer (columns).

Two scalings (``normalize``):

* ``"none"``: the stored values, in nats (``JSD`` for ``reduction="sum"`` traces, the authors'
  formula for ``reduction="paper"`` ones), one colour scale for the whole figure;
* ``"layer"``: the authors' ``MaxAbsScaler`` on the `(tokens, layers)` matrix: every layer column is
  divided by its largest absolute value over the plotted tokens, so each column peaks at 1 and
  columns are no longer comparable with each other.

and two column labellings (``axis``, see :mod:`lvlm_skip.figures.common`): ``"layer"`` (our ``j = 1..L``)
and ``"paper"`` (their ``0..L-1``; the paper's column ``i`` is our ``d_{i+1}``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..config import FigureAxis, Normalization
from .common import (
    AXES,
    NORMALIZATIONS,
    FigureFiles,
    axis_title,
    check_choice,
    check_row,
    column_labels,
    divergence_name,
    layer_ticks,
    max_abs_scale,
    plt,
    save_figure,
    token_label,
)


def heatmap_matrix(trace, row: int = 0, max_tokens: int = 40, normalize: Normalization = "none") -> np.ndarray:
    """`(tokens, L)` the plotted values: ``trace.jsd`` of the first ``max_tokens`` steps, scaled per ``normalize``."""
    check_choice("normalize", normalize, NORMALIZATIONS)
    n = min(int(trace.lengths[row]), max_tokens)
    values = np.asarray(trace.jsd[row, :n], dtype=np.float64)  # shape: (tokens, L)
    return max_abs_scale(values, axis=0) if normalize == "layer" else values


def _value_label(trace, normalize: Normalization) -> str:
    name = divergence_name(trace.meta.get("reduction", "sum"))
    return f"{name} / column max" if normalize == "layer" else name


def _draw_heatmap(fig, ax, trace, row, max_tokens, normalize, axis, annotate, cmap, vmax=None, colorbar=True):
    """One heatmap with the detected layers marked; returns the image."""
    values = heatmap_matrix(trace, row, max_tokens, normalize)
    n, num_layers = values.shape
    # 1. columns at x = 0..L-1 hold d_1..d_L whatever the labels
    image = ax.imshow(values, aspect="auto", cmap=cmap, interpolation="nearest", vmin=0.0, vmax=vmax,
                      extent=(-0.5, num_layers - 0.5, n - 0.5, -0.5))
    if annotate:
        top = float(values.max()) or 1.0
        for (t, j), value in np.ndenumerate(values):
            ax.text(j, t, f"{value:.2g}", ha="center", va="center", fontsize=5,
                    color="white" if value > 0.6 * top else "black")
    if colorbar:
        fig.colorbar(image, ax=ax, label=_value_label(trace, normalize), fraction=0.05, pad=0.02)
    # 2. detected layers: the critical layer c is column c - 1, mutation layer j column j - 1
    critical = trace.critical[row, :n]
    steps = np.nonzero(critical > 0)[0]
    ax.scatter(critical[steps] - 1, steps, marker="s", s=60, facecolors="none", edgecolors="tab:orange", linewidths=1.8,
               label="critical layer")
    mut_steps, mut_columns = np.nonzero(trace.mutation[row, :n])
    ax.scatter(mut_columns, mut_steps, marker="x", s=40, color="red", linewidths=1.5, label="mutation layer")
    # 3. labels
    ticks = layer_ticks(np.arange(num_layers))
    ax.set_xticks(ticks, column_labels(num_layers, axis)[ticks])
    ax.set_yticks(np.arange(n), [token_label(trace, row, t) for t in range(n)], fontsize=7)
    return image


def plot_jsd_heatmap(
    trace,
    out_path: str | Path,
    row: int = 0,
    max_tokens: int = 40,
    highlight_layer: int | None = None,
    normalize: Normalization = "none",
    axis: FigureAxis = "layer",
    annotate: bool = False,
    cmap: str = "viridis",
) -> FigureFiles:
    """Fig. 4: adjacent-layer divergence of every emitted token (rows) at every layer (columns).

    An orange square marks each token's critical layer, a red cross each mutation layer.

    Args:
        trace: A :class:`~lvlm_skip.tracing.Trace`.
        out_path: Output path; ``.png`` and ``.svg`` are written.
        row: Batch row of the trace.
        max_tokens: Cap on the number of token rows (the authors plot 40).
        highlight_layer: Optional layer ``j`` (our numbering) drawn as a vertical line at ``d_j``.
        normalize: ``"none"`` (absolute nats) or ``"layer"`` (each column / its max, the authors').
        axis: ``"layer"`` (columns labelled ``1..L``) or ``"paper"`` (``0..L-1``, the authors').
        annotate: Write each cell's value (the authors' ``annot=True``).
        cmap: Colour map (the authors use ``"Purples"``).

    Returns:
        ``[png_path, svg_path]``, a :class:`~lvlm_skip.figures.common.FigureFiles` holding the figure.
    """
    check_row(trace, row)
    check_choice("axis", axis, AXES)
    n = min(int(trace.lengths[row]), max_tokens)
    num_layers = trace.num_layers
    width = min(5 + (0.5 if annotate else 0.35) * num_layers, 22)
    fig, ax = plt.subplots(figsize=(width, min(2.2 + 0.28 * n, 14)), layout="constrained")
    _draw_heatmap(fig, ax, trace, row, max_tokens, normalize, axis, annotate, cmap)
    if highlight_layer is not None:
        ax.axvline(highlight_layer - 1, color="white", ls=":", lw=1)
    ax.set_xlabel(axis_title(axis))
    ax.set_ylabel("step: emitted token")
    scaled = ", each layer column scaled to max-abs 1" if normalize == "layer" else ""
    ax.set_title(f"Adjacent-layer divergence ({trace.meta.get('readout', 'normed')} readout{scaled})")
    fig.legend(loc="outside lower center", ncol=2, fontsize=8)
    return save_figure(fig, out_path)


def plot_jsd_comparison(
    traces: list,
    titles: list[str],
    out_path: str | Path,
    rows: list[int] | None = None,
    max_tokens: int = 40,
    normalize: Normalization = "none",
    axis: FigureAxis = "layer",
    cmap: str = "viridis",
) -> FigureFiles:
    """Several traces' heatmaps side by side, and below them each trace's mean curve over its tokens.

    The paper's §6 control: the LVLM answering about an image beside the language model alone
    answering the same prompt without it. With ``normalize="none"`` the heatmaps share one colour scale.

    Args:
        traces: :class:`~lvlm_skip.tracing.Trace` objects (a text-only model may have another depth).
        titles: One title per trace.
        out_path: Output path; ``.png`` and ``.svg`` are written.
        rows: Batch row of each trace (default 0 each).
        max_tokens, normalize, axis, cmap: As :func:`plot_jsd_heatmap`.

    Returns:
        ``[png_path, svg_path]``, a :class:`~lvlm_skip.figures.common.FigureFiles` holding the figure.
    """
    rows = [0] * len(traces) if rows is None else list(rows)
    if not traces or len(titles) != len(traces) or len(rows) != len(traces):
        raise ValueError(f"{len(traces)} traces, {len(titles)} titles and {len(rows)} rows: give one title and row per trace")
    for trace, row in zip(traces, rows):
        check_row(trace, row)
    matrices = [heatmap_matrix(t, r, max_tokens, normalize) for t, r in zip(traces, rows)]
    vmax = max(float(m.max()) for m in matrices) or None
    height = min(2.5 + 0.22 * max(m.shape[0] for m in matrices), 12)
    fig = plt.figure(figsize=(6.5 * len(traces), height + 3.2), layout="constrained")
    grid = fig.add_gridspec(2, len(traces), height_ratios=(height, 3.0))
    # 1. the heatmaps, one colour scale
    for k, (trace, row, title) in enumerate(zip(traces, rows, titles)):
        ax = fig.add_subplot(grid[0, k])
        image = _draw_heatmap(fig, ax, trace, row, max_tokens, normalize, axis, False, cmap, vmax=vmax, colorbar=False)
        ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=fig.axes, label=_value_label(traces[0], normalize), fraction=0.03, pad=0.01)
    # 2. the mean curve of each trace over its plotted tokens
    ax = fig.add_subplot(grid[1, :])
    curves = {title: matrix for title, matrix in zip(titles, matrices)}
    _draw_curves(ax, curves, axis)
    ax.set_ylabel(_value_label(traces[0], normalize), fontsize=8)
    ax.set_xlabel(axis_title(axis))
    return save_figure(fig, out_path)


def _draw_curves(ax, curves: dict[str, np.ndarray], axis: FigureAxis) -> None:
    """Each `(n, L)` group of curves as thin lines and its mean as a bold one."""
    colors = plt.get_cmap("tab10")(np.arange(len(curves)) % 10)
    for color, (name, values) in zip(colors, curves.items()):
        values = np.atleast_2d(np.asarray(values, dtype=np.float64))
        x = np.arange(values.shape[1])
        for curve in values:
            ax.plot(x, curve, color=color, lw=0.6, alpha=0.35)
        ax.plot(x, values.mean(axis=0), color=color, lw=2.2, label=f"{name} (mean of {values.shape[0]})")
    num_layers = max(np.atleast_2d(v).shape[1] for v in curves.values())
    ticks = layer_ticks(np.arange(num_layers))
    ax.set_xticks(ticks, column_labels(num_layers, axis)[ticks])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def plot_jsd_curves(
    curves: dict[str, np.ndarray],
    out_path: str | Path,
    axis: FigureAxis = "layer",
    ylabel: str = "JSD (nats)",
    title: str = "",
) -> FigureFiles:
    """Divergence curves of several groups, e.g. one step of many images against the text-only model.

    Args:
        curves: Name -> `(n, L)` (or `(L,)`) curves ``d_1..d_L``; each drawn thin, their mean bold.
        out_path: Output path; ``.png`` and ``.svg`` are written.
        axis: ``"layer"`` or ``"paper"`` column labels.
        ylabel: y-axis title (what the values are).
        title: Figure title.

    Returns:
        ``[png_path, svg_path]``, a :class:`~lvlm_skip.figures.common.FigureFiles` holding the figure.
    """
    check_choice("axis", axis, AXES)
    if not curves:
        raise ValueError("`curves` is empty")
    fig, ax = plt.subplots(figsize=(8, 4), layout="constrained")
    _draw_curves(ax, curves, axis)
    ax.set_xlabel(axis_title(axis), fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    return save_figure(fig, out_path)
