"""The supplementary's Fig. 2 for one model: where a layer profile finds critical and mutation layers."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .common import FigureFiles, plt, save_figure


def plot_profile(profile, out_path: str | Path, title: str = "") -> FigureFiles:
    """The supplementary's Fig. 2 for one model: the share of tokens per critical layer, and each layer's
    mutation frequency, for all tokens and content words; the chosen ``c`` and ``M`` marked.

    Args:
        profile: A :class:`~lvlm_skip.profiles.LayerProfile`.
        out_path: Output path; ``.png`` and ``.svg`` are written.
        title: The model's name for the title.

    Returns:
        ``[png_path, svg_path]``, a :class:`~lvlm_skip.figures.common.FigureFiles` holding the figure.
    """
    stats = profile.statistics
    names = [name for name in ("all", "content") if name in stats and stats[name].tokens]
    L = profile.num_layers
    fig, axes = plt.subplots(2, 1, figsize=(max(6.0, 0.28 * L + 2), 5.5), sharex=True)
    width = 0.8 / max(len(names), 1)
    for k, name in enumerate(names):
        s = stats[name]
        offset = (k - (len(names) - 1) / 2) * width
        axes[0].bar(np.arange(1, L + 1) + offset, np.asarray(s.critical_histogram[1:]) * 100, width,
                    label=f"{name} tokens (n={s.tokens}; no critical layer: {100 * s.critical_histogram[0]:.0f}%)")
        axes[1].bar(np.arange(1, L + 1) + offset, np.asarray(s.mutation_frequency) * 100, width, label=f"{name} tokens")
    if profile.critical_layer:
        axes[0].axvline(profile.critical_layer, color="black", ls="--", lw=1, label=f"chosen c = {profile.critical_layer}")
    for j in profile.mutation_layers:
        axes[1].axvline(j, color="red", ls="--", lw=1)
    axes[0].set_ylabel("tokens with critical layer c (%)")
    axes[1].set_ylabel("mutation frequency (%)")
    axes[1].set_xlabel("layer")
    axes[0].set_title(f"Layer profile{f' of {title}' if title else ''}: critical layers (cf. supplementary Fig. 2)", fontsize=10)
    if profile.mutation_layers:
        axes[1].plot([], [], color="red", ls="--", lw=1, label=f"chosen M = {', '.join(map(str, profile.mutation_layers))}")
    for ax in axes:
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, out_path)
