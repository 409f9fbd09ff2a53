"""One comparison of the paper's variants and the decoding-time peers: hallucination against speed.

Reads the reports that the shipped runner wrote, on the same model and data, and puts them in one
table and one chart (nothing is generated here):

* ``lvlm-skip amber --task a``: CHAIR, Cover, Hal, Cog (generative) and Accuracy / F1 (discriminative);
* ``lvlm-skip pope --split all``: F1 and accuracy per split (random, popular, adversarial);
* ``lvlm-skip speed``: each variant's decode speed relative to the stock model, from interleaved
  runs (``speedup`` and its ``spread_pct``; the evaluators' own tokens/s come from variants run one
  after another and are not used).

    python -m recipes.compare --amber runs/compare/amber/amber_a.json --pope runs/compare/pope/pope_all.json \\
        --speed runs/compare/speed/speed.json --out runs/compare

Writes ``comparison.md``, ``comparison.json`` and ``comparison.png`` / ``.svg`` (CHAIR and POPE F1
against speed relative to stock). A variant label maps to the speed row of the same intervention:
``skip2`` -> ``skip2 static``, ``skip2:online`` -> ``skip2 online``, a peer to its own row.
"""

from __future__ import annotations

import json
from pathlib import Path

from recipes.command import recipe_parser, run_recipe

PEERS = ("dola", "deco", "vcd")
#: (column title, report, key) of the table, in order.
COLUMNS = (
    ("CHAIR", "amber", "CHAIR"), ("Cover", "amber", "Cover"), ("Hal", "amber", "Hal"), ("Cog", "amber", "Cog"),
    ("AMBER Acc", "amber", "Accuracy"), ("AMBER F1", "amber", "F1"),
    ("POPE F1 random", "pope", "random_F1"), ("POPE F1 popular", "pope", "popular_F1"),
    ("POPE F1 adversarial", "pope", "adversarial_F1"), ("POPE acc (avg)", "pope", "avg_Accuracy"),
    ("POPE yes % (avg)", "pope", None),
    ("speed vs stock", "speed", "speedup"), ("spread %", "speed", "spread_pct"), ("layers skipped/step", "speed", "layers_skipped"),
)


def speed_row_name(label: str) -> str:
    """The ``lvlm-skip speed`` row that measures the intervention a variant label names."""
    name, _, mode = label.partition(":")
    if name in PEERS or name == "none":
        return name
    return f"{name} {mode or 'static'}"


def _rows(path: Path, key: str) -> dict[str, dict]:
    from lvlm_skip.errors import InputError

    try:
        data = json.loads(Path(path).read_text())
        return {row[key]: row for row in data["rows"]}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InputError(f"cannot read the report {str(path)!r}: {type(error).__name__}: {error}") from None


def comparison_rows(amber: dict[str, dict], pope: dict[str, dict], speed: dict[str, dict]) -> list[dict]:
    """One row per variant of the AMBER report, with its POPE and speed figures."""
    rows = []
    for label in amber:
        sources = {"amber": amber.get(label, {}), "pope": pope.get(label, {}), "speed": speed.get(speed_row_name(label), {})}
        row = {"variant": label + (" (extension)" if label.split(":")[0] == "exit" else "")}
        for title, source, key in COLUMNS:
            if key is None:  # the mean yes ratio of the three POPE splits
                ratios = [sources["pope"].get(f"{s}_yes_ratio") for s in ("random", "popular", "adversarial")]
                row[title] = sum(ratios) / 3 if all(r is not None for r in ratios) else None
            else:
                row[title] = sources[source].get(key)
        rows.append(row)
    return rows


def plot_comparison(rows: list[dict], out_path: Path) -> list[Path]:
    """CHAIR (left) and mean POPE F1 (right) against decode speed relative to the stock model."""
    from lvlm_skip.figures.common import plt, save_figure

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    panels = (("CHAIR", "CHAIR (%, lower is better)"),
              ("POPE F1", "POPE F1, mean of the three splits (%, higher is better)"))
    for ax, (name, label) in zip(axes, panels):
        for row in rows:
            if name == "CHAIR":
                y = row["CHAIR"]
            else:
                f1 = [row[f"POPE F1 {s}"] for s in ("random", "popular", "adversarial")]
                y = sum(f1) / 3 if all(v is not None for v in f1) else None
            x = row["speed vs stock"]
            if x is None or y is None:
                continue
            peer = row["variant"].split(":")[0] in PEERS
            ax.scatter(x, y, marker="s" if peer else "o", color="tab:orange" if peer else "tab:blue", zorder=3)
            ax.annotate(row["variant"].replace(" (extension)", "*"), (x, y), fontsize=7, xytext=(4, 3), textcoords="offset points")
        ax.axvline(1.0, color="grey", lw=0.8, ls=":")
        ax.set_xlabel("decode speed relative to stock (lvlm-skip speed)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].scatter([], [], marker="o", color="tab:blue", label="the paper's skips (* exit: extension)")
    axes[0].scatter([], [], marker="s", color="tab:orange", label="decoding-time peers")
    axes[0].legend(fontsize=7)
    fig.suptitle("Hallucination against decoding speed, same model and data", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, out_path)


def main(argv: list[str] | None = None) -> int:
    parser = recipe_parser("recipes.compare", __doc__.split("\n\n")[0])
    parser.add_argument("--amber", required=True, help="amber_a.json of lvlm-skip amber --task a")
    parser.add_argument("--pope", required=True, help="pope_all.json of lvlm-skip pope --split all")
    parser.add_argument("--speed", required=True, help="speed.json of lvlm-skip speed")
    parser.add_argument("--out", default="runs/compare", help="Output folder.")
    return run_recipe(parser, _run, argv)


def _run(args) -> int:
    from lvlm_skip.evaluation.report import markdown_table
    from lvlm_skip.inputs.paths import check_output_dir

    out = check_output_dir(args.out)
    rows = comparison_rows(_rows(args.amber, "variant"), _rows(args.pope, "variant"), _rows(args.speed, "config"))
    (out / "comparison.json").write_text(json.dumps({"rows": rows, "sources": {"amber": args.amber, "pope": args.pope,
                                                                               "speed": args.speed}}, indent=1) + "\n")
    table = markdown_table(rows, [c[0] for c in (("variant", None, None),) + COLUMNS])
    (out / "comparison.md").write_text(table + "\n")
    plot_comparison(rows, out / "comparison")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
