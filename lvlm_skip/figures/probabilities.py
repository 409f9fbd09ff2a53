"""Fig. 2 and 3: token probabilities across layers.

* :func:`plot_token_probabilities` (Fig. 2): one panel per generation step. Each panel shows, at
  every readout layer, the probability of the step's *competitors* (the tokens that are top-1 at
  some layer of the late window, :mod:`lvlm_skip.tracing`; filled areas as the authors'
  ``plot_token_probabilities_area.py``) and of the watch tokens that matter there (dashed). The late
  window is shaded.
* :func:`plot_contrasts` (Fig. 3): at chosen steps, a correct token against a hallucinated one
  ("camera" against "water"), with the step's critical and mutation layers marked.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .common import (
    FigureFiles,
    check_row,
    layer_ticks,
    plt,
    save_figure,
    short_text,
    token_label,
)

#: A watch token is drawn in a step's panel when it reaches this probability at some layer there.
WATCH_MIN_PROBABILITY = 0.02


def _step_tokens(trace, row: int, step: int) -> list[tuple[str, np.ndarray, bool, int]]:
    """``(name, probabilities (R,), is_watch, token id)`` of the competitors and watch tokens of one step."""
    out, seen = [], set()
    if trace.competitor_ids is not None:
        for c, token_id in enumerate(trace.competitor_ids[row, step].tolist()):
            if token_id >= 0:
                out.append((trace.token_name(token_id), trace.competitor_probs[row, step, :, c], False, token_id))
                seen.add(token_id)
    else:  # a trace without recorded competitors (competitor_ids is None): the emitted token alone
        token_id = int(trace.token_ids[row, step])
        out.append((trace.tokens[row][step], trace.token_probs[row, step], False, token_id))
        seen.add(token_id)
    for w, (name, token_id) in enumerate(zip(trace.watch_tokens, trace.watch_token_ids)):
        probs = trace.watch_probs[row, step, :, w]
        if token_id not in seen and float(probs.max()) >= WATCH_MIN_PROBABILITY:
            out.append((name, probs, True, token_id))
    return out


def plot_token_probabilities(
    trace,
    out_path: str | Path,
    row: int = 0,
    tokens: list[int] | None = None,
    max_tokens: int = 18,
    highlight_layer: int | None = None,
    ncols: int = 6,
) -> FigureFiles:
    """Fig. 2: per step, the competitors' and watch tokens' probabilities at every layer.

    A token keeps its colour in every panel; watch tokens are dashed, and drawn in the panels where
    they reach :data:`WATCH_MIN_PROBABILITY` at some layer; the grey band is the step's late window
    (layers ``window_start..L``).

    Args:
        trace: A :class:`~lvlm_skip.tracing.Trace`.
        out_path: Output path; ``.png`` and ``.svg`` are written.
        row: Batch row of the trace.
        tokens: Generation steps to draw (default: the first ``max_tokens`` steps).
        max_tokens: Cap on the number of panels (the paper shows 18).
        highlight_layer: Optional layer drawn as a vertical line in every panel.
        ncols: Panels per figure row.

    Returns:
        ``[png_path, svg_path]``, a :class:`~lvlm_skip.figures.common.FigureFiles` holding the figure.
    """
    check_row(trace, row)
    n = int(trace.lengths[row])
    steps = list(range(n)) if tokens is None else [int(t) for t in tokens]
    if any(not 0 <= t < n for t in steps):
        raise ValueError(f"`tokens` {steps} has steps outside 0..{n - 1}")
    steps = steps[:max_tokens]
    layers = trace.layer_numbers
    per_step = {t: _step_tokens(trace, row, t) for t in steps}
    # 1. one colour per token id across all panels
    ids = list(dict.fromkeys(token_id for entries in per_step.values() for *_, token_id in entries))
    palette = plt.get_cmap("tab20")(np.arange(len(ids)) % 20)
    color = dict(zip(ids, palette))
    ncols = max(1, min(ncols, len(steps)))
    nrows = math.ceil(len(steps) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols, 2.3 * nrows), sharex=True, sharey=True,
                             squeeze=False, layout="constrained")
    # 2. one panel per step
    for ax, t in zip(axes.flat, steps):
        for name, probs, is_watch, token_id in per_step[t]:
            label = f"{short_text(name, 10)}" + (" (watch)" if is_watch else "")
            if is_watch:
                ax.plot(layers, probs, color=color[token_id], ls="--", lw=1.2, label=label)
            else:
                ax.fill_between(layers, probs, color=color[token_id], alpha=0.35, lw=0)
                ax.plot(layers, probs, color=color[token_id], lw=1.0, label=label)
        if trace.window_start is not None:
            ax.axvspan(int(trace.window_start[row, t]), layers[-1], color="0.5", alpha=0.08, lw=0)
        if highlight_layer is not None:
            ax.axvline(highlight_layer, color="grey", ls=":", lw=1)
        ax.set_title(token_label(trace, row, t, width=16), fontsize=8)
        ax.legend(fontsize=5.5, loc="upper left", handlelength=1.2, borderaxespad=0.2, framealpha=0.6)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.25)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(steps):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xticks(layer_ticks(layers)[::2] if len(layers) > 16 else layer_ticks(layers))
        ax.set_xlabel("layer", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("probability", fontsize=8)
    fig.suptitle(f"Token probabilities across layers ({trace.meta.get('readout', 'normed')} readout): per step, "
                 "the tokens that are top-1 at some layer of the late window (shaded); dashed: watch tokens", fontsize=9)
    return save_figure(fig, out_path)


def plot_contrasts(trace, out_path: str | Path, contrasts, row: int = 0) -> FigureFiles:
    """Fig. 3: at each given step, the correct token's probability against the hallucinated one's.

    Args:
        trace: A :class:`~lvlm_skip.tracing.Trace`; both tokens of a pair must have been recorded at
            their step (watch tokens, or late-window competitors there).
        out_path: Output path; ``.png`` and ``.svg`` are written.
        contrasts: ``(step, correct, hallucinated)`` triples; tokens as words or ids.
        row: Batch row of the trace.

    Returns:
        ``[png_path, svg_path]``, a :class:`~lvlm_skip.figures.common.FigureFiles` holding the figure.

    Raises:
        ValueError: an empty list, a step out of range, or a token whose probability was not recorded.
    """
    check_row(trace, row)
    contrasts = list(contrasts)
    if not contrasts:
        raise ValueError("`contrasts` is empty: give (step, correct, hallucinated) triples")
    n = int(trace.lengths[row])
    layers = trace.layer_numbers
    # 1. every pair's two curves, checked before drawing (KeyError: not recorded)
    panels = []
    for step, correct, hallucinated in contrasts:
        if not 0 <= int(step) < n:
            raise ValueError(f"contrast step {step} is out of range: the answer has {n} tokens (steps 0..{n - 1})")
        try:
            panels.append((int(step), [(trace.probabilities(token, int(step), row), token) for token in (correct, hallucinated)]))
        except KeyError as error:
            raise ValueError(error.args[0]) from None
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False, layout="constrained")
    for ax, (step, curves) in zip(axes[0], panels):
        for (probs, token), color, kind in zip(curves, ("tab:green", "tab:red"), ("correct", "hallucinated")):
            name = trace.token_name(token) if isinstance(token, (int, np.integer)) else token
            ax.fill_between(layers, probs, color=color, alpha=0.25, lw=0)
            ax.plot(layers, probs, color=color, lw=1.8, label=f"{kind}: {short_text(name, 14)}")
        # 2. the step's detected layers
        critical = int(trace.critical[row, step])
        if critical:
            ax.axvline(critical, color="0.3", ls="--", lw=1, label=f"critical layer {critical}")
        for k, j in enumerate(np.nonzero(trace.mutation[row, step])[0] + 1):
            ax.axvline(j, color="tab:red", ls=":", lw=1, label="mutation layer" if k == 0 else None)
        ax.set_title(f"step {token_label(trace, row, step, width=16)}", fontsize=9)
        ax.set_ylim(0, 1)
        ax.set_xticks(layer_ticks(layers))
        ax.set_xlabel("layer")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    axes[0, 0].set_ylabel("probability")
    fig.suptitle(f"Correct vs hallucinated token across layers ({trace.meta.get('readout', 'normed')} readout)", fontsize=10)
    return save_figure(fig, out_path)
