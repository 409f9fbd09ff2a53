"""The paper's figures from a :class:`~lvlm_skip.tracing.Trace` or plain arrays (never the model).

* :func:`plot_token_probabilities`: Fig. 2/3, probability of each emitted token across layers, and
  the watch tokens (e.g. "red" vs "black") at the steps where they matter.
* :func:`plot_jsd_heatmap`: Fig. 4, adjacent-layer JSD per token and layer, with the detected
  critical and mutation layers marked.
* :func:`plot_tsne_tokens`: Fig. 6, t-SNE of the per-layer hidden vectors of one answer's tokens.
* :func:`plot_tsne_images`: Fig. 7, t-SNE of one answer token's per-layer hidden vectors across
  images.

Layer numbers follow :mod:`lvlm_skip.anatomy` (1-based, 0 = embeddings). Every function writes a PNG
and an SVG next to each other (``out_path`` with its suffix replaced) and returns both paths.
matplotlib is imported here only, with the non-interactive Agg backend, so importing
``lvlm_skip`` costs nothing of it.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

FIGURE_FORMATS = (".png", ".svg")


def _save(fig, out_path: str | Path) -> list[Path]:
    base = Path(out_path)
    if base.suffix.lower() in FIGURE_FORMATS:
        base = base.with_suffix("")
    base.parent.mkdir(parents=True, exist_ok=True)
    paths = [base.with_name(base.name + suffix) for suffix in FIGURE_FORMATS]
    for path in paths:
        fig.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(fig)
    return paths


def _check_row(trace, row: int) -> int:
    batch = trace.token_ids.shape[0]
    if not 0 <= row < batch:
        raise ValueError(f"`row` (={row}) is out of range: the trace has {batch} row(s)")
    if int(trace.lengths[row]) == 0:
        raise ValueError(f"row {row} of the trace generated no tokens")
    return row


def _token_label(trace, row: int, step: int, width: int = 14) -> str:
    text = trace.tokens[row][step] if step < len(trace.tokens[row]) else str(int(trace.token_ids[row, step]))
    text = repr(text)[1:-1] or "<empty>"
    if len(text) > width:
        text = text[: width - 1] + "…"
    return f"{step}: {text}"


def _watch_steps(trace, row: int, max_steps: int = 3) -> list[int]:
    """Steps where a watch token matters: where one was emitted, else where one is likeliest at ``L``."""
    n = int(trace.lengths[row])
    emitted = [t for t in range(n) if int(trace.token_ids[row, t]) in set(trace.watch_token_ids)]
    if emitted:
        return emitted[:max_steps]
    final = trace.watch_probs[row, :n, -1, :].max(axis=-1)  # shape: (steps,)
    return [int(final.argmax())]


def plot_token_probabilities(
    trace,
    out_path: str | Path,
    row: int = 0,
    tokens: list[int] | None = None,
    max_tokens: int = 18,
    highlight_layer: int | None = None,
) -> list[Path]:
    """Fig. 2/3: probability of each emitted token at every layer.

    Args:
        trace: A :class:`~lvlm_skip.tracing.Trace`.
        out_path: Output path; ``.png`` and ``.svg`` are written.
        row: Batch row of the trace.
        tokens: Generation steps to draw (default: the first ``max_tokens`` steps).
        max_tokens: Cap on the number of lines.
        highlight_layer: Optional layer drawn as a vertical line.

    Returns:
        ``[png_path, svg_path]``.
    """
    _check_row(trace, row)
    n = int(trace.lengths[row])
    steps = list(range(n)) if tokens is None else [int(t) for t in tokens]
    if any(not 0 <= t < n for t in steps):
        raise ValueError(f"`tokens` {steps} has steps outside 0..{n - 1}")
    steps = steps[:max_tokens]
    layers = trace.layer_numbers
    has_watch = len(trace.watch_tokens) > 0
    fig, axes = plt.subplots(2 if has_watch else 1, 1, figsize=(9.5, 7.5 if has_watch else 4.2), sharex=True, squeeze=False)
    axes = axes[:, 0]
    colors = plt.get_cmap("tab20")(np.linspace(0, 1, max(len(steps), 1)))
    # 1. one line per emitted token
    ax = axes[0]
    for color, t in zip(colors, steps):
        ax.plot(layers, trace.token_probs[row, t], color=color, lw=1.4, marker=".", ms=3, label=_token_label(trace, row, t))
    ax.set_ylabel("probability of the emitted token")
    ax.set_title(f"Token probability across layers ({trace.meta.get('readout', 'normed')} readout)")
    ax.legend(title="step: token", fontsize=7, title_fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=1 + len(steps) // 19)
    # 2. the watch tokens at the steps where they matter, dashed
    if has_watch:
        ax = axes[1]
        watch_colors = plt.get_cmap("Set1")(np.arange(len(trace.watch_tokens)) % 9)
        markers = "os^Dv"
        for k, t in enumerate(_watch_steps(trace, row)):
            for w, name in enumerate(trace.watch_tokens):
                ax.plot(layers, trace.watch_probs[row, t, :, w], ls="--", lw=1.5, color=watch_colors[w], marker=markers[k % 5], ms=3,
                        label=f"{name!r} at step {_token_label(trace, row, t)}")
        ax.set_ylabel("probability of the watch token")
        ax.set_title("Watch tokens at the step(s) where they matter")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    top = max(float(trace.token_probs[row, steps].max()), float(trace.watch_probs[row].max(initial=0.0)), 0.05)
    for ax in axes:
        ax.set_ylim(-0.02 * top, min(1.02, 1.1 * top))
        ax.grid(alpha=0.3)
        if highlight_layer is not None:
            ax.axvline(highlight_layer, color="grey", ls=":", lw=1)
    axes[-1].set_xlabel("layer")
    axes[-1].set_xticks(_layer_ticks(layers))
    fig.tight_layout()
    return _save(fig, out_path)


def _layer_ticks(layers: np.ndarray) -> np.ndarray:
    step = max(1, int(np.ceil(len(layers) / 16)))
    return layers[::step]


def plot_jsd_heatmap(trace, out_path: str | Path, row: int = 0, max_tokens: int = 40, highlight_layer: int | None = None) -> list[Path]:
    """Fig. 4: adjacent-layer JSD of every emitted token (rows) at every layer ``1..L`` (columns).

    A white square marks each token's critical layer, a red cross each mutation layer.

    Args:
        trace: A :class:`~lvlm_skip.tracing.Trace`.
        out_path: Output path; ``.png`` and ``.svg`` are written.
        row: Batch row of the trace.
        max_tokens: Cap on the number of token rows.
        highlight_layer: Optional layer drawn as a vertical line.

    Returns:
        ``[png_path, svg_path]``.
    """
    _check_row(trace, row)
    n = min(int(trace.lengths[row]), max_tokens)
    num_layers = trace.num_layers
    jsd = trace.jsd[row, :n]  # shape: (steps, L)
    fig, ax = plt.subplots(figsize=(min(5 + 0.35 * num_layers, 16), min(2.2 + 0.28 * n, 14)), layout="constrained")
    image = ax.imshow(jsd, aspect="auto", cmap="viridis", interpolation="nearest",
                      extent=(0.5, num_layers + 0.5, n - 0.5, -0.5))
    unit = "nats" if trace.meta.get("reduction", "sum") == "sum" else "nats / vocabulary size"
    fig.colorbar(image, ax=ax, label=f"JSD$(p_{{j-1}} \\| p_j)$ ({unit})", fraction=0.05, pad=0.02)
    # 1. detected layers of each step
    critical = trace.critical[row, :n]
    steps = np.nonzero(critical > 0)[0]
    ax.scatter(critical[steps], steps, marker="s", s=60, facecolors="none", edgecolors="white", linewidths=1.5, label="critical layer")
    mut_steps, mut_layers = np.nonzero(trace.mutation[row, :n])
    ax.scatter(mut_layers + 1, mut_steps, marker="x", s=40, color="red", linewidths=1.5, label="mutation layer")
    if highlight_layer is not None:
        ax.axvline(highlight_layer, color="white", ls=":", lw=1)
    ax.set_yticks(np.arange(n), [_token_label(trace, row, t) for t in range(n)], fontsize=7)
    ax.set_xticks(_layer_ticks(np.arange(1, num_layers + 1)))
    ax.set_xlabel("layer $j$")
    ax.set_ylabel("step: emitted token")
    ax.set_title(f"Adjacent-layer JSD ({trace.meta.get('readout', 'normed')} readout)")
    # legend under the axes, on grey so the white critical squares show
    fig.legend(loc="outside lower center", ncol=2, fontsize=8, facecolor="0.35", labelcolor="white")
    return _save(fig, out_path)


def _tsne(points: np.ndarray, seed: int) -> np.ndarray:
    """2-D t-SNE of `(N, d)` points, perplexity adapted to small ``N``."""
    from sklearn.manifold import TSNE

    count = points.shape[0]
    if count < 3:
        raise ValueError(f"t-SNE needs at least 3 points, got {count}")
    perplexity = float(min(30.0, max(1.0, (count - 1) / 3)))
    # exact gradients are faster than Barnes-Hut for the few hundred points of a figure
    method = "exact" if count <= 1000 else "barnes_hut"
    embedding = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed, method=method, max_iter=500)
    return embedding.fit_transform(points.astype(np.float32))


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


def _plot_layer_paths(ax, xy: np.ndarray, labels: list[str] | None):
    """Scatter `(items, layers, 2)` points coloured by layer, each item's layers joined in order."""
    items, depth, _ = xy.shape
    for i in range(items):
        ax.plot(xy[i, :, 0], xy[i, :, 1], color="grey", lw=0.5, alpha=0.5, zorder=1)
    layer_index = np.broadcast_to(np.arange(depth), (items, depth))
    points = ax.scatter(xy[..., 0].ravel(), xy[..., 1].ravel(), c=layer_index.ravel(), cmap="plasma", s=14, zorder=2)
    if labels:
        _annotate_clusters(ax, xy[:, -1], labels)
    ax.margins(0.12)
    ax.set_xticks([])
    ax.set_yticks([])
    return points


def plot_tsne_tokens(trace, out_path: str | Path, row: int = 0, seed: int = 0, max_tokens: int = 40) -> list[Path]:
    """Fig. 6: t-SNE of the per-layer hidden vectors of one row's tokens, `(T, L + 1, d)` -> 2-D.

    Points are coloured by layer (``0`` = embeddings .. ``L``); each token's consecutive layers are
    joined by a thin line and its last-layer point is labelled with the token.

    Args:
        trace: A :class:`~lvlm_skip.tracing.Trace` traced with ``keep_hidden=True``.
        out_path: Output path; ``.png`` and ``.svg`` are written.
        row: Batch row of the trace.
        seed: t-SNE seed.
        max_tokens: Cap on the number of tokens.

    Returns:
        ``[png_path, svg_path]``.
    """
    _check_row(trace, row)
    if trace.hidden is None:
        raise ValueError("the trace has no hidden states: trace with keep_hidden=True")
    n = min(int(trace.lengths[row]), max_tokens)
    hidden = np.asarray(trace.hidden[row, :n], dtype=np.float32)  # shape: (T, L + 1, d)
    xy = _tsne(hidden.reshape(-1, hidden.shape[-1]), seed).reshape(n, hidden.shape[1], 2)
    fig, ax = plt.subplots(figsize=(7.5, 6))
    points = _plot_layer_paths(ax, xy, [_token_label(trace, row, t) for t in range(n)])
    fig.colorbar(points, ax=ax, label="layer (0 = embeddings)")
    ax.set_title(f"t-SNE of per-layer hidden states, {n} tokens x {hidden.shape[1]} depths")
    fig.tight_layout()
    return _save(fig, out_path)


def plot_tsne_images(hidden, out_path: str | Path, labels: list[str] | None = None, seed: int = 0) -> list[Path]:
    """Fig. 7: t-SNE across images of one answer token's per-layer hidden vectors.

    Args:
        hidden: `(N_images, L + 1, d)` hidden vectors ``h_0..h_L`` of the position predicting the
            (single-word) answer, one row per image.
        out_path: Output path; ``.png`` and ``.svg`` are written.
        labels: Optional name per image, written next to its last-layer point.
        seed: t-SNE seed.

    Returns:
        ``[png_path, svg_path]``.
    """
    hidden = np.asarray(hidden, dtype=np.float32)
    if hidden.ndim != 3:
        raise ValueError(f"`hidden` has to be (N_images, L + 1, d), got shape {hidden.shape}")
    if labels is not None and len(labels) != hidden.shape[0]:
        raise ValueError(f"{len(labels)} labels for {hidden.shape[0]} images")
    images, depth, width = hidden.shape
    xy = _tsne(hidden.reshape(-1, width), seed).reshape(images, depth, 2)
    fig, ax = plt.subplots(figsize=(7.5, 6))
    points = _plot_layer_paths(ax, xy, labels)
    fig.colorbar(points, ax=ax, label="layer (0 = embeddings)")
    ax.set_title(f"t-SNE of the answer token's hidden states across {images} images")
    fig.tight_layout()
    return _save(fig, out_path)
