"""Resumable, shardable runner infrastructure shared by the evaluators.

* :class:`ResultStore`: one JSON line per finished item, keyed by ``(variant, id)``,
  appended with flush + fsync so a crash loses at most the line being written.
  A rerun reloads the file (a truncated last line is dropped and cut off) and
  skips the done keys. Failed items carry ``"error"`` and count as done.
* :func:`shard_items` / :func:`merge_shards`: under ``accelerate launch`` each
  process writes ``responses.rank{R}.jsonl``; after ``wait_for_everyone()`` rank 0
  merges them with any earlier ``responses.jsonl`` into one deduplicated file and
  checks that every expected key is present exactly once.
* :func:`run_generation`: the generic loop over variants x items.
* :func:`write_report` / :func:`format_table`: JSON + Markdown reports.
* :func:`partial_state`: the accelerate state, also right under ``torchrun`` on CPU.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

logger = logging.getLogger(__name__)

MERGED_NAME = "responses.jsonl"
Key = tuple[str, Any]
#: ``generate_fn(image, prompt, variant) -> (text, new_tokens, seconds[, layers_skipped])``.
GenerateFn = Callable[[Any, str, str], tuple]


class ShardMergeError(RuntimeError):
    """Merged shard results miss expected items."""


def record_key(record: dict[str, Any]) -> Key:
    """Returns the ``(variant, id)`` key of a stored record."""
    return (str(record["variant"]), record["id"])


def read_json(path: str | os.PathLike, error: type[Exception] = ValueError) -> Any:
    """Read a JSON file; a missing, corrupt or unreadable file raises ``error`` with a one-line message."""
    p = Path(path)
    if not p.is_file():
        raise error(f"{p}: file not found")
    try:
        with p.open("r", encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise error(f"{p}: corrupt JSON ({exc.msg} at line {exc.lineno})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{p}: unreadable ({exc})") from None


def read_jsonl(path: Path, repair: bool = False) -> list[dict[str, Any]]:
    """Reads a JSON-lines file, tolerating a truncated last line.

    Args:
        path: The file; a missing file reads as empty.
        repair: Cut a truncated last line off the file so appends start clean.

    Returns:
        The parsed records (malformed inner lines are skipped with a warning).
    """
    if not path.is_file():
        return []
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    records: list[dict[str, Any]] = []
    good_end = 0
    offset = 0
    for i, line in enumerate(lines):
        end = offset + len(line) + (1 if i < len(lines) - 1 else 0)
        if line.strip():
            try:
                rec = json.loads(line)
                if not isinstance(rec, dict) or "variant" not in rec or "id" not in rec:
                    raise ValueError("not a result record")
                records.append(rec)
                good_end = end
            except ValueError:
                if i == len(lines) - 1:
                    logger.warning("%s: dropping truncated last line (%d bytes)", path, len(line))
                else:
                    logger.warning("%s: skipping malformed line %d", path, i + 1)
                    good_end = end
        else:
            good_end = end
        offset = end
    if repair and good_end < len(raw):
        with path.open("r+b") as fh:
            fh.truncate(good_end)
    return records


def shard_path(out_dir: Path | str, rank: int) -> Path:
    """Returns the per-process results file ``<out>/responses.rank{rank}.jsonl``."""
    return Path(out_dir) / f"responses.rank{rank}.jsonl"


class ResultStore:
    """Append-only JSON-lines store of per-item results.

    Args:
        out_dir: Output folder (created).
        rank: Process rank under sharding; ``None`` writes ``responses.jsonl``
            directly, otherwise ``responses.rank{rank}.jsonl``. In both cases the
            merged ``responses.jsonl`` of an earlier run is also read as done.
    """

    def __init__(self, out_dir: Path | str, rank: int | None = None) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.merged_path = self.out_dir / MERGED_NAME
        self.path = self.merged_path if rank is None else shard_path(self.out_dir, rank)
        self._records: dict[Key, dict[str, Any]] = {}
        sources = [self.merged_path] if self.path == self.merged_path else [self.merged_path, self.path]
        for src in sources:
            for rec in read_jsonl(src, repair=src == self.path):
                self._records[record_key(rec)] = rec

    def done(self) -> set[Key]:
        """Returns the keys already recorded (errors included)."""
        return set(self._records)

    def records(self) -> list[dict[str, Any]]:
        """Returns one record per key."""
        return list(self._records.values())

    def append(self, record: dict[str, Any]) -> None:
        """Appends one record (needs ``variant`` and ``id``) durably."""
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        self._records[record_key(record)] = record


def shard_items(items: Sequence[Any], rank: int, world_size: int) -> list[Any]:
    """Returns the items of process ``rank``: every ``world_size``-th item from ``rank``.

    Raises:
        ValueError: If ``rank`` is not in ``[0, world_size)``.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"bad rank {rank} for world size {world_size}")
    return list(items[rank::world_size])


@dataclass(frozen=True)
class MergeResult:
    """Outcome of :func:`merge_shards`.

    Attributes:
        records: One record per expected key, in expected-key order.
        duplicates: Number of extra records for already-seen keys that were dropped.
    """

    records: tuple[dict[str, Any], ...]
    duplicates: int


def merge_shards(out_dir: Path | str, expected: Iterable[Key]) -> MergeResult:
    """Merges ``responses.jsonl`` and every ``responses.rank*.jsonl`` into ``responses.jsonl``.

    For a key present several times a successful record beats an error record,
    otherwise the first one read wins. The merged file is written atomically and
    the rank files are then removed.

    Args:
        out_dir: The output folder.
        expected: Every key the run should have produced.

    Returns:
        The merged records restricted to ``expected`` and the duplicate count.

    Raises:
        ShardMergeError: If an expected key has no record (named in the message).
    """
    out_dir = Path(out_dir)
    shard_files = sorted(out_dir.glob("responses.rank*.jsonl"))
    merged: dict[Key, dict[str, Any]] = {}
    duplicates = 0
    for src in [out_dir / MERGED_NAME, *shard_files]:
        for rec in read_jsonl(src):
            key = record_key(rec)
            if key in merged:
                duplicates += 1
                if "error" in merged[key] and "error" not in rec:
                    merged[key] = rec
            else:
                merged[key] = rec
    expected = list(expected)
    missing = [k for k in expected if k not in merged]
    if missing:
        shown = ", ".join(f"{v}/{i}" for v, i in missing[:5])
        raise ShardMergeError(f"{len(missing)} items missing after merge (e.g. {shown})")
    extra = [rec for key, rec in merged.items() if key not in set(expected)]
    ordered = [merged[k] for k in expected] + extra
    tmp = out_dir / (MERGED_NAME + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for rec in ordered:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, out_dir / MERGED_NAME)
    for src in shard_files:
        src.unlink()
    if duplicates:
        logger.warning("merge dropped %d duplicate records", duplicates)
    return MergeResult(records=tuple(merged[k] for k in expected), duplicates=duplicates)


@dataclass(frozen=True)
class GenItem:
    """One generation request.

    Attributes:
        id: Item id (unique within a variant).
        image_path: Image file.
        prompt: The question/instruction (without chat template).
    """

    id: Any
    image_path: Path
    prompt: str


def load_image(path: Path) -> Any:
    """Opens an image as RGB (raises on a missing or corrupt file)."""
    from PIL import Image

    with Image.open(path) as img:
        return img.convert("RGB")


def run_generation(
    store: ResultStore,
    variants: Sequence[str],
    items: Sequence[GenItem],
    generate_fn: GenerateFn,
    image_loader: Callable[[Path], Any] = load_image,
    show_progress: bool = True,
) -> int:
    """Generates every ``(variant, item)`` not yet in ``store``.

    Each finished item is appended as ``{variant, id, response, new_tokens,
    seconds}``, plus ``layers_skipped`` when ``generate_fn`` returns it as an
    optional 4th element (mean decoder layers skipped per step); an item whose image cannot be read or whose generation raises an
    ``Exception`` is appended as ``{variant, id, error}``. ``KeyboardInterrupt``
    propagates (everything finished so far is already on disk).

    Returns:
        The number of items generated (or failed) by this call.
    """
    done = store.done()
    produced = 0
    for variant in variants:
        todo = [it for it in items if (variant, it.id) not in done]
        for item in tqdm(todo, desc=f"generate[{variant}]", disable=not show_progress or not todo):
            record: dict[str, Any] = {"variant": variant, "id": item.id}
            try:
                image = image_loader(item.image_path)
            except Exception as exc:  # unreadable / missing image
                record["error"] = f"image {item.image_path.name}: {type(exc).__name__}: {exc}"
            else:
                try:
                    start = time.perf_counter()
                    result = generate_fn(image, item.prompt, variant)
                    text, new_tokens, seconds = result[:3]
                    record.update(response=text, new_tokens=int(new_tokens),
                                  seconds=float(seconds if seconds is not None else time.perf_counter() - start))
                    if len(result) > 3 and result[3] is not None:
                        record["layers_skipped"] = float(result[3])
                except Exception as exc:
                    record["error"] = f"generation: {type(exc).__name__}: {exc}"
            if "error" in record:
                logger.warning("%s id %s failed: %s", variant, item.id, record["error"])
            store.append(record)
            produced += 1
    return produced


def mean_layers_skipped(records: Iterable[dict[str, Any]]) -> float | None:
    """Mean decoder layers skipped per decoding step over successful records.

    Each record's per-step mean is weighted by its ``new_tokens`` (at least 1).
    Returns ``None`` when no record carries ``layers_skipped``.
    """
    pairs = [(r["layers_skipped"], max(int(r.get("new_tokens", 0)), 1))
             for r in records if "error" not in r and r.get("layers_skipped") is not None]
    if not pairs:
        return None
    return sum(v * w for v, w in pairs) / sum(w for _, w in pairs)


def partial_state() -> Any:
    """Returns ``accelerate.PartialState``, with ``cpu=True`` when no GPU is available.

    Without ``cpu=True`` accelerate ignores ``WORLD_SIZE`` on a machine without GPUs,
    so every process of ``torchrun`` / ``accelerate launch`` would think it is alone.
    """
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Formats rows as a Markdown table (also readable in a terminal).

    Args:
        rows: One dict per row.
        columns: Column order; defaults to the union of keys in first-seen order.
    """
    if columns is None:
        columns = list(dict.fromkeys(k for row in rows for k in row))
    cells = [[_fmt(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(v.ljust(w) for v, w in zip(r, widths)) + " |" for r in cells]
    return "\n".join(lines)


def write_report(rows: Sequence[dict[str, Any]], out_dir: Path | str, name: str,
                 meta: dict[str, Any] | None = None,
                 columns: Sequence[str] | None = None) -> tuple[Path, Path]:
    """Writes ``<out>/<name>.json`` (``{"meta": ..., "rows": [...]}``) and ``<out>/<name>.md``.

    The JSON keeps every key of every row; the Markdown table shows ``columns``
    (default: all keys) under a bullet list of ``meta``.

    Returns:
        The JSON and Markdown paths.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / f"{name}.json", out_dir / f"{name}.md"
    json_path.write_text(json.dumps({"meta": meta or {}, "rows": list(rows)}, indent=2) + "\n", encoding="utf-8")
    header = f"# {name}\n\n" + "".join(f"- {k}: {v}\n" for k, v in (meta or {}).items())
    md_path.write_text(header + "\n" + format_table(rows, columns) + "\n", encoding="utf-8")
    return json_path, md_path
