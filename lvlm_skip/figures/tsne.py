"""Fig. 6 and 7: t-SNE of the per-layer states that predict a token.

The points are the predicting position's states at layers ``1..L`` (the embeddings ``h_0`` are left
out, as the authors' ``tsne.py`` / ``combined_tsne.py`` do), `(items, L, d) -> (items * L, 2)`:

* Fig. 6 (:func:`plot_tsne_tokens`): items = the emitted tokens of one answer (eq. 5);
* Fig. 7 (:func:`plot_tsne_images`): items = images asked the same one-word question, at the step
  that predicts the first answer token (eq. 6), marked by their answer.

Points are coloured by the authors' four layer groups: layers 1-2, 3..c, c+1..L-1 and L, with ``c``
the critical layer (theirs: 18 in ``tsne.py``, 19 in ``combined_tsne.py``, for 32 layers). The two
preprocessing choices that the authors made, and that the paper's "the final layer re-clusters"
depends on, are options:

* ``last_state``: ``"normed"`` takes layer ``L``'s state after the final norm (transformers' last
  ``output_hidden_states`` entry, which their scripts use); ``"raw"`` keeps it un-normed like every
  other layer, so all points are residual-stream states on the same footing.
* ``scale``: ``"maxabs"`` divides every feature by its largest absolute value over all points
  (sklearn ``MaxAbsScaler``, theirs); ``"none"`` keeps the states as they are.

t-SNE is sklearn's with the authors' settings (``learning_rate=200``, 2000 iterations, the seed as
``random_state``) and their perplexity (40 for Fig. 6, 35 for Fig. 7). t-SNE needs a perplexity below
the number of points; with fewer than ``3 * perplexity + 1`` points the perplexity falls back to
``(points - 1) / 3`` (at least 1), and the figure says so.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import get_args

import numpy as np

from ..config import LastState, TsneScaling
from .common import GROUP_COLORS, FigureFiles, check_choice, check_row, max_abs_scale, plt, save_figure, token_label

LAST_STATES: tuple[str, ...] = get_args(LastState)
SCALINGS: tuple[str, ...] = get_args(TsneScaling)
#: ``perplexity=40`` in the authors' tsne.py (Fig. 6), 35 in their combined_tsne.py (Fig. 7).
AUTHORS_PERPLEXITY_TOKENS = 40.0
AUTHORS_PERPLEXITY_IMAGES = 35.0
#: The authors' critical layer 18 of LLaVA-1.5-7B's 32, scaled, when a trace detected none.
FALLBACK_CRITICAL_FRACTION = 18 / 32
_MARKERS = "os^Dv<>PX*hp"


def dominant_critical(critical: np.ndarray) -> int:
    """The most common detected critical layer (> 0) in ``critical``; ties -> the shallower; 0 if none."""
    values = [int(c) for c in np.asarray(critical).ravel() if c > 0]
    if not values:
        return 0
    counts = Counter(values)
    return min(counts, key=lambda c: (-counts[c], c))


def layer_groups(num_layers: int, critical: int) -> list[tuple[str, np.ndarray]]:
    """The authors' four layer groups for ``L`` layers and critical layer ``c``, empty groups left out.

    Args:
        num_layers: ``L``.
        critical: ``c``, clamped to ``2..L-1``.

    Returns:
        ``(label, 1-based layer numbers)`` per group: 1-2, 3..c, c+1..L-1, L.
    """
    if num_layers < 1:
        raise ValueError(f"`num_layers` (={num_layers}) has to be >= 1")
    c = int(min(max(critical, 2), max(num_layers - 1, 2)))
    bounds = [(1, min(2, num_layers)), (3, c), (c + 1, num_layers - 1), (num_layers, num_layers)]
    groups, taken = [], set()
    for low, high in bounds:
        layers = np.array([j for j in range(low, high + 1) if j not in taken], dtype=np.int64)
        if layers.size:
            taken.update(layers.tolist())
            label = f"layer {layers[0]}" if layers.size == 1 else f"layers {layers[0]}-{layers[-1]}"
            groups.append((label, layers))
    return groups


def layer_features(trace, last_state: LastState = "raw") -> np.ndarray:
    """`(batch, steps, L, d)` float32 states of layers ``1..L`` (``last_state`` decides layer ``L``'s).

    Raises:
        ValueError: the trace kept no hidden states (trace with ``keep_hidden=True``).
    """
    check_choice("last_state", last_state, LAST_STATES)
    if trace.hidden is None or (last_state == "normed" and trace.hidden_final is None):
        raise ValueError("the trace has no hidden states: trace with keep_hidden=True")
    features = np.asarray(trace.hidden[:, :, 1:], dtype=np.float32).copy()  # shape: (batch, steps, L, d)
    if last_state == "normed":
        features[:, :, -1] = trace.hidden_final
    return features


def tsne_2d(points: np.ndarray, perplexity: float, seed: int = 0) -> tuple[np.ndarray, float]:
    """2-D t-SNE of `(N, d)` points with the authors' settings; returns ``(xy, perplexity used)``."""
    from sklearn.manifold import TSNE  # 2 s to import, for the t-SNE figures only (not the other figures)
    from threadpoolctl import threadpool_limits  # comes with scikit-learn, as above

    count = points.shape[0]
    if count < 3:
        raise ValueError(f"t-SNE needs at least 3 points, got {count}")
    used = float(perplexity) if count >= 3 * perplexity + 1 else max(1.0, (count - 1) / 3)
    embedding = TSNE(n_components=2, perplexity=used, learning_rate=200.0, max_iter=2000, init="pca", random_state=seed)
    # one OpenMP thread: for a figure's few hundred points, more threads cost more than they save
    # (5-10x slower on a busy 2-core machine, measured)
    with threadpool_limits(limits=1, user_api="openmp"):
        return embedding.fit_transform(points.astype(np.float32)), used


def _embed(features: np.ndarray, scale: TsneScaling, perplexity: float, seed: int) -> tuple[np.ndarray, float]:
    """`(items, L, d)` -> `(items, L, 2)` t-SNE coordinates."""
    check_choice("scale", scale, SCALINGS)
    items, depth, width = features.shape
    points = features.reshape(-1, width)  # shape: (items * L, d)
    if scale == "maxabs":
        points = max_abs_scale(points, axis=0)
    xy, used = tsne_2d(points, perplexity, seed)
    return xy.reshape(items, depth, 2), used


def _draw_groups(ax, xy: np.ndarray, groups, last_state: LastState, markers=None) -> None:
    """Scatter `(items, L, 2)` coloured by layer group; ``markers`` optionally one marker per item."""
    for (label, layers), color in zip(groups, GROUP_COLORS):
        if layers[-1] == xy.shape[1] and layers.size == 1:
            label += " (after the final norm)" if last_state == "normed" else " (before the final norm)"
        points = xy[:, layers - 1]  # shape: (items, group layers, 2)
        if markers is None:
            ax.scatter(points[..., 0].ravel(), points[..., 1].ravel(), color=color, s=16, alpha=0.75, label=label, zorder=2)
            continue
        for i, marker in enumerate(markers):
            ax.scatter(points[i, :, 0], points[i, :, 1], color=color, marker=marker, s=20, alpha=0.75, zorder=2,
                       label=label if i == 0 else None)


def _draw_paths(ax, xy: np.ndarray) -> None:
    for item in xy:
        ax.plot(item[:, 0], item[:, 1], color="grey", lw=0.5, alpha=0.5, zorder=1)


def _critical_text(critical: int | None, detected: int, num_layers: int) -> tuple[int, str]:
    if critical is not None:
        return int(critical), f"c = {critical} (given)"
    if detected:
        return detected, f"c = {detected} (most common detected critical layer)"
    fallback = max(2, round(FALLBACK_CRITICAL_FRACTION * num_layers))
    return fallback, f"c = {fallback} (none detected; the authors' 18 of 32, scaled)"


def _settings_text(scale: TsneScaling, perplexity: float, used: float) -> str:
    text = "MaxAbs-scaled, " if scale == "maxabs" else "unscaled, "
    if used == perplexity:
        return text + f"perplexity {perplexity:g}"
    return text + f"perplexity {used:.1f} (too few points for {perplexity:g})"


def plot_tsne_tokens(
    trace,
    out_path: str | Path,
    row: int = 0,
    seed: int = 0,
    max_tokens: int = 40,
    critical: int | None = None,
    scale: TsneScaling = "none",
    last_state: LastState = "raw",
    perplexity: float = AUTHORS_PERPLEXITY_TOKENS,
    paths: bool = True,
) -> FigureFiles:
    """Fig. 6: t-SNE of the per-layer states of one answer's tokens, `(T, L, d) -> 2-D`.

    Args:
        trace: A :class:`~lvlm_skip.tracing.Trace` traced with ``keep_hidden=True``.
        out_path: Output path; ``.png`` and ``.svg`` are written.
        row: Batch row of the trace.
        seed: t-SNE seed.
        max_tokens: Cap on the number of tokens ``T``.
        critical: ``c`` of the layer groups; default: the most common critical layer detected over
            the row's steps (the authors' 18 of 32, scaled, when none is).
        scale: ``"none"`` or ``"maxabs"`` (the authors').
        last_state: ``"raw"`` or ``"normed"`` (the authors'), see the module docstring.
        perplexity: t-SNE perplexity (the authors' 40), lowered for few points.
        paths: Join each token's consecutive layers with a thin line, and label its last layer.

    Returns:
        ``[png_path, svg_path]``, a :class:`~lvlm_skip.figures.common.FigureFiles` holding the figure.
    """
    check_row(trace, row)
    n = min(int(trace.lengths[row]), max_tokens)
    features = layer_features(trace, last_state)[row, :n]  # shape: (T, L, d)
    c, c_text = _critical_text(critical, dominant_critical(trace.critical[row, :n]), trace.num_layers)
    xy, used = _embed(features, scale, perplexity, seed)
    fig, ax = plt.subplots(figsize=(9, 6), layout="constrained")
    if paths:
        _draw_paths(ax, xy)
        _annotate_clusters(ax, xy[:, -1], [token_label(trace, row, t) for t in range(n)])
    _draw_groups(ax, xy, layer_groups(trace.num_layers, c), last_state)
    fig.legend(title=c_text, fontsize=8, title_fontsize=8, loc="outside right upper")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"t-SNE of per-layer states: {n} tokens x {trace.num_layers} layers\n"
                 f"({_settings_text(scale, perplexity, used)})", fontsize=10)
    return save_figure(fig, out_path)


def answer_labels(trace) -> list[str]:
    """Each row's answer: the first word of its text, else its first token."""
    labels = []
    for b, text in enumerate(trace.texts):
        words = text.strip().strip(".,!?").split()
        labels.append(words[0].strip(".,!?") if words else (trace.tokens[b][0].strip() if trace.tokens[b] else "?"))
    return labels


def plot_tsne_images(
    trace,
    out_path: str | Path,
    step: int = 0,
    labels: list[str] | None = None,
    seed: int = 0,
    critical: int | None = None,
    scale: TsneScaling = "none",
    last_state: LastState = "raw",
    perplexity: float = AUTHORS_PERPLEXITY_IMAGES,
    paths: bool = True,
) -> FigureFiles:
    """Fig. 7: t-SNE across images (the trace's batch rows) of the states predicting answer token ``step``.

    One point per image and layer: `(N_images, L, d) -> 2-D`, coloured by layer group and marked by
    the image's answer.

    Args:
        trace: A :class:`~lvlm_skip.tracing.Trace` of one question over ``N`` images (one row each),
            traced with ``keep_hidden=True``.
        out_path: Output path; ``.png`` and ``.svg`` are written.
        step: Generation step (0: the first answer token, as the paper).
        labels: Name of each image's answer (default: :func:`answer_labels`).
        seed: t-SNE seed.
        critical: ``c`` of the layer groups; default: the most common critical layer detected at
            ``step`` over the images.
        scale, last_state, perplexity, paths: As :func:`plot_tsne_tokens` (perplexity: the authors' 35).

    Returns:
        ``[png_path, svg_path]``, a :class:`~lvlm_skip.figures.common.FigureFiles` holding the figure.
    """
    images = trace.token_ids.shape[0]
    if not 0 <= step < trace.token_ids.shape[1]:
        raise ValueError(f"`step` (={step}) is out of range: the trace has {trace.token_ids.shape[1]} step(s)")
    labels = answer_labels(trace) if labels is None else list(labels)
    if len(labels) != images:
        raise ValueError(f"{len(labels)} labels for {images} images")
    features = layer_features(trace, last_state)[:, step]  # shape: (N, L, d)
    c, c_text = _critical_text(critical, dominant_critical(trace.critical[:, step]), trace.num_layers)
    xy, used = _embed(features, scale, perplexity, seed)
    answers = list(dict.fromkeys(labels))
    marker_of = {answer: _MARKERS[k % len(_MARKERS)] for k, answer in enumerate(answers)}
    fig, ax = plt.subplots(figsize=(9, 6), layout="constrained")
    if paths:
        _draw_paths(ax, xy)
    _draw_groups(ax, xy, layer_groups(trace.num_layers, c), last_state, markers=[marker_of[a] for a in labels])
    fig.legend(title=c_text, fontsize=8, title_fontsize=8, loc="outside right upper")
    handles = [plt.Line2D([], [], ls="", marker=marker_of[a], color="black", label=f"{a} ({labels.count(a)})") for a in answers]
    fig.legend(handles=handles, title="answer (images)", fontsize=8, title_fontsize=8, loc="outside right lower")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"t-SNE of the answer's per-layer states across {images} images (step {step})\n"
                 f"({_settings_text(scale, perplexity, used)})", fontsize=10)
    return save_figure(fig, out_path)


def _join_labels(labels: list[str], limit: int = 60) -> str:
    """``["0: dog", "1: dog", "2: cat"]`` -> ``"0,1: dog; 2: cat"``."""
    groups: dict[str, list[str]] = {}
    for label in labels:
        prefix, _, text = label.partition(": ") if ": " in label else ("", "", label)
        groups.setdefault(text, []).append(prefix)
    text = "; ".join(f"{','.join(p for p in prefixes if p)}: {name}" if any(prefixes) else name for name, prefixes in groups.items())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _annotate_clusters(ax, points: np.ndarray, labels: list[str]) -> None:
    """Label `(items, 2)` points; points closer than 7% of the spread share one label."""
    radius = 0.07 * (float(np.ptp(points, axis=0).max()) or 1.0)
    left = list(range(len(points)))
    clusters = []
    while left:
        first = left.pop(0)
        members = [first] + [i for i in left if np.linalg.norm(points[i] - points[first]) < radius]
        left = [i for i in left if i not in members]
        clusters.append(members)
    clusters.sort(key=lambda members: points[members[0], 0])
    for c, members in enumerate(clusters):
        ax.annotate(_join_labels([labels[i] for i in members]), points[members].mean(axis=0), fontsize=6,
                    xytext=(4, 4 if c % 2 == 0 else -10), textcoords="offset points", zorder=3,
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "alpha": 0.75, "lw": 0})
