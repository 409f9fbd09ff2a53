"""A layer profile's outputs: ``profile.json``, a Markdown summary, and the supplementary's Fig. 2 for one model."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .profiles import LayerProfile


def profile_markdown(profile: LayerProfile, title: str = "") -> str:
    """The profile's choice, its rule, and per-layer statistics as a Markdown table."""
    stats = profile.statistics
    names = [name for name in ("all", "content") if name in stats]
    lines = [f"# Layer profile{f': {title}' if title else ''}", "",
             f"- critical layer: **{profile.critical_layer}**",
             f"- mutation layers: **{', '.join(map(str, profile.mutation_layers)) or 'none'}**",
             f"- rule: {profile.rule}",
             "- tokens: " + ", ".join(f"{name} {stats[name].tokens}" for name in names), "",
             "| layer | " + " | ".join(f"critical share ({n}) | mutation frequency ({n})" for n in names) + " |",
             "|---|" + "---|---|" * len(names)]
    for j in range(0, profile.num_layers + 1):
        cells = []
        for name in names:
            s = stats[name]
            cells.append(f"{100 * s.critical_histogram[j]:.1f}%")
            cells.append(f"{100 * s.mutation_frequency[j - 1]:.1f}%" if j else "")
        lines.append(f"| {j if j else '0 (none)'} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_profile(profile: LayerProfile, out_path: str | Path, title: str = "") -> list[Path]:
    """The supplementary's Fig. 2 for one model: the share of tokens per critical layer, and each layer's
    mutation frequency, for all tokens and content words; the chosen ``c`` and ``M`` marked.

    Returns:
        ``[png_path, svg_path]``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    base = Path(out_path).with_suffix("")
    base.parent.mkdir(parents=True, exist_ok=True)
    paths = [base.with_name(base.name + ext) for ext in (".png", ".svg")]
    for path in paths:
        fig.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(fig)
    return paths


def write_profile_outputs(profile: LayerProfile, out: str | Path, title: str = "") -> list[Path]:
    """``profile.json``, ``profile.md`` and ``profile.png`` / ``.svg`` in ``out``."""
    out = Path(out)
    paths = [profile.save(out / "profile.json")]
    (out / "profile.md").write_text(profile_markdown(profile, title))
    paths.append(out / "profile.md")
    return paths + plot_profile(profile, out / "profile", title)
