"""What every figure shares: saving, row checks, token labels, the layer axis and max-abs scaling.

**The two layer axes of a divergence heatmap.** A trace stores ``d_j = D(p_{j-1}, p_j)``, the change
made by layer ``j`` (:mod:`lvlm_skip.anatomy`), at column ``j - 1``. The same columns are labelled:

* ``axis="layer"``: ``j = 1..L``, our layer numbers;
* ``axis="paper"``: ``0..L-1``, as the authors' ``heatmap.py`` labels them: their column ``i`` is the
  divergence between hidden states ``i`` and ``i + 1`` counted from 0 (0 = the embeddings), i.e. our
  ``d_{i+1}``. The paper's "18-th layer" in Fig. 4 is therefore our ``d_19``.
"""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..config import FigureAxis, Normalization, Reduction  # noqa: E402

FIGURE_FORMATS = (".png", ".svg")
AXES: tuple[str, ...] = get_args(FigureAxis)
NORMALIZATIONS: tuple[str, ...] = get_args(Normalization)
#: The authors' four layer-group colours (tsne.py / combined_tsne.py), in group order.
GROUP_COLORS = ("#FF6347", "#3CB371", "#4682B4", "#9370DB")


class FigureFiles(list):
    """``[png_path, svg_path]`` of a written figure, with the drawn ``matplotlib.figure.Figure`` as ``.figure``.

    A plain list of the two paths for every caller; ``.figure`` (closed in pyplot, so it holds no
    window and no global state, but still holds its axes, lines, images and texts) lets a caller or
    a test read what was drawn.
    """

    def __init__(self, paths, figure=None):
        super().__init__(paths)
        self.figure = figure


def save_figure(fig, out_path: str | Path) -> FigureFiles:
    """Write ``fig`` as PNG and SVG (``out_path`` with its suffix replaced), close it in pyplot, and
    return both paths as :class:`FigureFiles` (``.figure`` is ``fig``)."""
    base = Path(out_path)
    if base.suffix.lower() in FIGURE_FORMATS:
        base = base.with_suffix("")
    base.parent.mkdir(parents=True, exist_ok=True)
    paths = [base.with_name(base.name + suffix) for suffix in FIGURE_FORMATS]
    for path in paths:
        fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return FigureFiles(paths, fig)


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"`{name}` (={value!r}) has to be one of {choices}")
    return value


def check_row(trace, row: int) -> int:
    """``row`` as a valid batch row of ``trace`` that generated at least one token."""
    batch = trace.token_ids.shape[0]
    if not 0 <= row < batch:
        raise ValueError(f"`row` (={row}) is out of range: the trace has {batch} row(s)")
    if int(trace.lengths[row]) == 0:
        raise ValueError(f"row {row} of the trace generated no tokens")
    return row


def short_text(text: str, width: int = 14) -> str:
    """``text`` with escapes visible, cut to ``width`` characters."""
    text = repr(text)[1:-1] or "<empty>"
    return text if len(text) <= width else text[: width - 1] + "…"


def token_label(trace, row: int, step: int, width: int = 14) -> str:
    """``"step: token"`` for a step of a row."""
    text = trace.tokens[row][step] if step < len(trace.tokens[row]) else str(int(trace.token_ids[row, step]))
    return f"{step}: {short_text(text, width)}"


def layer_ticks(layers: np.ndarray) -> np.ndarray:
    """At most ~16 evenly spaced ticks."""
    step = max(1, int(np.ceil(len(layers) / 16)))
    return layers[::step]


def column_labels(num_layers: int, axis: FigureAxis = "layer") -> np.ndarray:
    """Labels of the ``L`` divergence columns (``d_1..d_L``): ``1..L`` (``"layer"``) or ``0..L-1`` (``"paper"``)."""
    check_choice("axis", axis, AXES)
    return np.arange(1, num_layers + 1) if axis == "layer" else np.arange(num_layers)


def axis_title(axis: FigureAxis) -> str:
    """x-axis title of a divergence plot, stating what a column is."""
    if axis == "layer":
        return "layer $j$  (column $j$: $d_j = D(p_{j-1}, p_j)$, the change made by layer $j$)"
    return "layer, paper's axis  (column $i$: $D(p_i, p_{i+1})$ from 0 = embeddings; column $i$ = our $d_{i+1}$)"


def divergence_name(reduction: Reduction) -> str:
    """What the stored divergence is, for colour-bar and axis labels."""
    if reduction == "paper":
        return r"$\frac{1}{2}[KL(m\|p)+KL(m\|q)]/V$ (authors' formula, nats)"
    return r"JSD$(p_{j-1}\|p_j)$ (nats)"


def max_abs_scale(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """Divide every slice along ``axis`` by its largest absolute value (sklearn ``MaxAbsScaler``).

    With ``axis=0`` and `(samples, features)` input this is ``MaxAbsScaler().fit_transform``: each
    feature column is scaled to max-abs 1; an all-zero column is left as is.
    """
    values = np.asarray(values, dtype=np.float64)
    scale = np.abs(values).max(axis=axis, keepdims=True)
    return values / np.where(scale == 0, 1.0, scale)
