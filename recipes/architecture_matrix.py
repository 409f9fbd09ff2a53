"""The README's architecture table, generated from a run of the architecture matrix test.

    python -m recipes.architecture_matrix                 # runs tests/test_architectures.py (about 3 minutes on 2 cores)
    python -m recipes.architecture_matrix --junit runs/architectures/junit.xml    # renders an earlier run

Runs ``pytest tests/test_architectures.py`` (from a checkout) with a JUnit report, then reads each
test's outcome by class into one row per class: pass, FAIL, a skip with its reason, or the cell a
test recorded (``record_property("cell", ...)``, e.g. online skip2 refused on sliding-window
models); a refused class is one row with its one-line refusal. Writes ``junit.xml`` and
``architectures.md`` (the table, with the transformers and torch versions it ran on) into ``--out``
(default ``runs/architectures``) and prints the table.
"""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from recipes.command import recipe_parser, run_recipe

ROOT = Path(__file__).resolve().parents[1]
MATRIX = ROOT / "tests" / "test_architectures.py"

#: Table column -> (test function, the parameter id after the class name, or "" for none).
COLUMNS: dict[str, tuple[str, str]] = {
    "stock, none = stock": ("test_none_equals_stock", ""),
    "static all = deleted": ("test_static_all_positions_equals_deleted_layer", ""),
    "online skip2 = replay": ("test_online_skip_equals_cache_free_replay", "skip2-extra0"),
    "online skip3 = replay": ("test_online_skip_equals_cache_free_replay", "skip3-extra1"),
    "DoLa": ("test_text_peers_equal_slow_reference", "dola-options0"),
    "DeCo": ("test_text_peers_equal_slow_reference", "deco-options1"),
    "VCD (image)": ("test_vcd_with_an_image_equals_slow_reference", ""),
    "trace": ("test_trace_reads_out_every_layer", ""),
    "readout = logits": ("test_last_layer_readout_equals_model_logits", ""),
    "projected K/V = layer's": ("test_projected_kv_equals_each_layers_own", ""),
    "speculative = stock": ("test_speculative_equals_stock", ""),
    "unwrap": ("test_unwrap_restores", ""),
    "batch 2: none": ("test_left_padded_batch_of_two", "none"),
    "batch 2: static all": ("test_left_padded_batch_of_two", "static-all-deleted"),
    "batch 2: online skip3": ("test_left_padded_batch_of_two", "online-skip3-replay"),
    "batch 2: DoLa": ("test_text_peers_on_a_left_padded_batch_of_two", "dola"),
    "batch 2: DeCo": ("test_text_peers_on_a_left_padded_batch_of_two", "deco"),
}
REFUSED_TEST = "test_refused_in_one_line"


def _parser():
    p = recipe_parser("recipes.architecture_matrix", __doc__.split("\n\n")[0])
    p.add_argument("--junit", default=None, help="Render this JUnit report of an earlier run instead of running the matrix.")
    p.add_argument("--out", default="runs/architectures", help="Output folder.")
    return p


def outcomes(junit: Path) -> dict[str, dict]:
    """Test id (``name[params]``) -> ``{"outcome": pass|FAIL|skip, "message": str, "properties": {...}}``."""
    try:
        tree = ElementTree.parse(junit)
    except (OSError, ElementTree.ParseError) as error:
        from lvlm_skip.errors import InputError

        raise InputError(f"--junit {str(junit)!r} is not a readable JUnit report ({error})") from None
    found = {}
    for case in tree.iter("testcase"):
        outcome, message = "pass", ""
        for tag, name in (("failure", "FAIL"), ("error", "FAIL"), ("skipped", "skip")):
            element = case.find(tag)
            if element is not None:
                outcome, message = name, (element.get("message") or "").strip()
                break
        properties = {p.get("name"): p.get("value") for p in case.iter("property")}
        found[case.get("name")] = {"outcome": outcome, "message": message, "properties": properties}
    return found


def _cell(result: dict | None) -> str:
    if result is None:
        return "not in matrix"
    if result["outcome"] == "pass":
        return result["properties"].get("cell", "pass")
    if result["outcome"] == "skip":
        reason = result["message"].removeprefix("Skipped: ")
        return f"skipped: {reason.split(':')[0].split(' (')[0]}"
    return "FAIL"


def table(found: dict[str, dict], versions: str) -> str:
    """The Markdown table: one row per class, in the order the matrix ran them."""
    classes: list[str] = []
    refused: dict[str, str] = {}
    for test_id in found:
        name, _, params = test_id.partition("[")
        params = params.rstrip("]")
        model = params.split("-")[0] if params else ""
        if name == REFUSED_TEST:
            refused[model] = found[test_id]["properties"].get("refusal", found[test_id]["outcome"])
        elif model and name in {t for t, _ in COLUMNS.values()} and model not in classes:
            classes.append(model)
    lines = [f"| class | {' | '.join(COLUMNS)} |", "|---" * (len(COLUMNS) + 1) + "|"]
    for model in classes:
        cells = []
        for test, suffix in COLUMNS.values():
            key = f"{test}[{model}-{suffix}]" if suffix else f"{test}[{model}]"
            cells.append(_cell(found.get(key)))
        lines.append(f"| {model}ForConditionalGeneration | {' | '.join(cells)} |")
    for model, message in refused.items():
        message = message.split(" (supported:")[0].replace("|", "/")  # the list of supported classes is this table
        lines.append(f"| {model}ForConditionalGeneration | refused at `wrap` in one line (tested): {message} |")
    return "\n".join(lines) + f"\n\nGenerated by `python -m recipes.architecture_matrix` on {versions}.\n"


def run(args) -> int:
    from lvlm_skip.inputs.paths import check_output_dir

    out = check_output_dir(args.out)
    junit = Path(args.junit) if args.junit else out / "junit.xml"
    if not args.junit:
        if not MATRIX.is_file():
            from lvlm_skip.errors import InputError

            raise InputError(f"{MATRIX} is missing: the matrix runs from a checkout of the repository")
        subprocess.run([sys.executable, "-m", "pytest", str(MATRIX), "-q", "-p", "no:cacheprovider",
                        f"--junitxml={junit}", "-o", "junit_family=xunit1"], cwd=ROOT, check=False)
    import torch
    import transformers

    text = table(outcomes(junit), f"transformers {transformers.__version__}, torch {torch.__version__.split('+')[0]}")
    (out / "architectures.md").write_text(text)
    print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_recipe(_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
