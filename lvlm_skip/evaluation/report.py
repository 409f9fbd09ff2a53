"""Report rows and the one Markdown / JSON report writer.

Every evaluation reports one :class:`VariantRow` per variant: the task's metrics, then

* ``tokens_per_s`` = sum of new tokens / sum of ``generate`` seconds over the variant's answers;
* ``speedup`` = ``tokens_per_s`` / ``tokens_per_s`` of the ``none`` variant (absent without one);
  variants run one after the other, so on a shared or busy machine this column is noisy;
* ``layers_skipped`` = mean decoder layers skipped per decoding step, over the answers, each
  answer weighted by its new tokens;
* ``n`` = items answered; ``errors`` = items with an error record (an unreadable image, a path
  outside ``--image-dir``).

:func:`markdown_table` is the project's one Markdown table writer (the recipes use it too).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .records import AnswerRecord

#: The columns every evaluation report ends with.
RUN_COLUMNS = ("tokens_per_s", "speedup", "layers_skipped", "n", "errors")


@dataclass(frozen=True)
class VariantRow:
    """One variant's line of a report (definitions in the module docstring).

    Attributes:
        variant: The variant label.
        metrics: The task's metrics (percent or fractions, as the task defines them).
        tokens_per_s: Decoding throughput, in tokens per second.
        speedup: ``tokens_per_s`` over the ``none`` variant's.
        layers_skipped: Mean decoder layers skipped per decoding step.
        n: Items answered.
        errors: Items with an error record.
    """

    variant: str
    metrics: Mapping[str, Any] = field(default_factory=dict)
    tokens_per_s: float | None = None
    speedup: float | None = None
    layers_skipped: float | None = None
    n: int = 0
    errors: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A flat ``{column: value}`` dict: variant, metrics, then :data:`RUN_COLUMNS`."""
        return {"variant": self.variant, **self.metrics, **{c: getattr(self, c) for c in RUN_COLUMNS}}


def tokens_per_second(records: Iterable[AnswerRecord]) -> float | None:
    """Sum of new tokens / sum of seconds over answers (``None`` when no time was recorded)."""
    answers = [r for r in records if r.ok]
    seconds = sum(r.seconds for r in answers)
    return sum(r.new_tokens for r in answers) / seconds if seconds > 0 else None


def mean_layers_skipped(records: Iterable[AnswerRecord]) -> float | None:
    """Mean layers skipped per step over answers, weighted by new tokens (at least 1); ``None`` if unrecorded."""
    pairs = [(r.layers_skipped, max(r.new_tokens, 1)) for r in records if r.ok and r.layers_skipped is not None]
    if not pairs:
        return None
    return sum(v * w for v, w in pairs) / sum(w for _, w in pairs)


def build_rows(records: Mapping[str, Sequence[AnswerRecord]], metrics: Mapping[str, Mapping[str, Any]],
               reference: str | None) -> list[VariantRow]:
    """One row per variant label of ``records`` (in that order), with speedup against ``reference``."""
    speeds = {label: tokens_per_second(recs) for label, recs in records.items()}
    base = speeds.get(reference) if reference else None
    rows = []
    for label, recs in records.items():
        speed = speeds[label]
        rows.append(VariantRow(
            variant=label, metrics=dict(metrics.get(label, {})), tokens_per_s=speed,
            speedup=speed / base if speed is not None and base else None,
            layers_skipped=mean_layers_skipped(recs), n=sum(r.ok for r in recs), errors=sum(not r.ok for r in recs),
        ))
    return rows


def _cell(value: Any, digits: int) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return re.sub(r"(?<!\\)\|", r"\\|", str(value)).replace("\n", " ")


def markdown_table(rows: Sequence[Mapping[str, Any]] | Sequence[Sequence[Any]], columns: Sequence[str] | None = None,
                   *, headers: Sequence[str] | None = None, digits: int = 2, pad: bool = True) -> str:
    """A Markdown table, aligned so that it also reads well in a terminal.

    Args:
        rows: Dicts (cells looked up by column) or sequences (cells in column order).
        columns: Keys of dict rows, in order; default: every key in first-seen order.
        headers: Header texts (default: the columns).
        digits: Decimals of float cells; ``None`` cells are ``-``; newlines become spaces and ``|`` is
            escaped (unless it already is).
        pad: Pad cells to the column width (turn off for long cells such as HTML).

    Returns:
        The table, without a trailing newline.
    """
    dict_rows = bool(rows) and isinstance(rows[0], Mapping)
    if columns is None:
        columns = list(dict.fromkeys(k for row in rows for k in row)) if dict_rows else list(headers or [])
    headers = list(headers or columns)
    cells = [[_cell(row.get(c) if dict_rows else row[i], digits) for i, c in enumerate(columns)] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) if pad else 0 for i, h in enumerate(headers)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |",
             "|" + "|".join("-" * max(w + 2, 3) for w in widths) + "|"]
    lines += ["| " + " | ".join(v.ljust(w) for v, w in zip(r, widths)) + " |" for r in cells]
    return "\n".join(lines)


def write_report(rows: Sequence[Mapping[str, Any]], out: Path, name: str, meta: Mapping[str, Any] | None = None,
                 columns: Sequence[str] | None = None, title: str | None = None) -> tuple[Path, Path]:
    """Write ``<out>/<name>.json`` (``{"meta": ..., "rows": [...]}``, every key) and ``<out>/<name>.md``.

    The Markdown file has a title, ``meta`` as a bullet list and the table of ``columns``.

    Returns:
        The JSON and Markdown paths.
    """
    out = Path(out)
    json_path, md_path = out / f"{name}.json", out / f"{name}.md"
    json_path.write_text(json.dumps({"meta": dict(meta or {}), "rows": list(rows)}, indent=1, default=str) + "\n",
                         encoding="utf-8")
    bullets = "".join(f"- {k}: {v if isinstance(v, str) else json.dumps(v, default=str)}\n" for k, v in (meta or {}).items())
    md_path.write_text(f"# {title or name}\n\n{bullets}\n{markdown_table(rows, columns)}\n", encoding="utf-8")
    return json_path, md_path
