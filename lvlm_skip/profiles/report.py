"""A layer profile's outputs: ``profile.json``, a Markdown summary, and the supplementary's Fig. 2 for one model."""

from __future__ import annotations

from pathlib import Path

from . import LayerProfile


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


def write_profile_outputs(profile: LayerProfile, out: str | Path, title: str = "") -> list[Path]:
    """``profile.json``, ``profile.md`` and ``profile.png`` / ``.svg`` in ``out``."""
    out = Path(out)
    paths = [profile.save(out / "profile.json")]
    (out / "profile.md").write_text(profile_markdown(profile, title))
    paths.append(out / "profile.md")
    from ..figures import plot_profile  # matplotlib, only when a figure is drawn

    return paths + plot_profile(profile, out / "profile", title)
