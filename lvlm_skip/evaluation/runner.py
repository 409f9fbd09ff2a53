"""The one evaluation runner: items x variants -> stored answers -> scored report.

:func:`evaluate` runs a task (:class:`~lvlm_skip.evaluation.task.EvalTask`) for every variant of a
:class:`~lvlm_skip.evaluation.variants.VariantPlan`:

1. claim ``--out`` (rank 0 only): take its lock, check and record the fingerprint of what changes
   answers (:mod:`~lvlm_skip.evaluation.run_folder`), all before the model is loaded;
2. load the generator (:func:`lvlm_skip.evaluation.generation.load_generator`, looked up at call
   time so that tests can replace it);
3. answer every (variant, item) of this process's shard that has no answer yet (errored items are
   retried), appending each record durably (:mod:`~lvlm_skip.evaluation.records`). An item whose
   image is missing, unreadable, outside ``--image-dir`` or not a regular file becomes an error
   record. Any other exception (a bug, out of memory) aborts the run: what is finished is saved,
   and a rerun resumes. Ctrl-C raises :class:`RunInterrupted` (the console script exits 130 with
   the resume hint);
4. merge the processes' answers (rank 0), check that every (variant, item) has a record, score
   them with the task and write ``<report>.json`` / ``<report>.md`` (:mod:`~lvlm_skip.evaluation.report`).

``score_only`` skips 2 and 3 and scores what the folder holds, reporting the stored fingerprint.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import InputError, one_line
from ..inputs.images import load_image, max_image_pixels
from ..inputs.paths import resolve_under
from . import generation
from .fingerprint import RunFingerprint, data_identity, file_sha256, model_identity, package_versions
from .generation import GenerationSettings
from .processes import Processes, current_processes, shard_items
from .records import AnswerRecord, AnswerStore, merge_answers
from .report import RUN_COLUMNS, VariantRow, build_rows, markdown_table, write_report
from .run_folder import RunFolder
from .task import EvalItem, EvalTask
from .variants import VariantPlan, variant_fingerprint

logger = logging.getLogger(__name__)


class DataChangedError(InputError):
    """The task's data files changed while the run answered (e.g. a benchmark redrawn in place)."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during generation; the message says how much is saved and how to resume."""


@dataclass(frozen=True)
class RunSettings:
    """Everything an evaluation run needs besides the task.

    Attributes:
        out: The run folder (checked with :func:`lvlm_skip.inputs.paths.check_output_dir`).
        plan: The variants and their options.
        generation: How answers are generated; ``None`` with ``score_only``.
        image_dir: The folder the items' image names are relative to; ``None`` with ``score_only``.
        builtin_model: ``generation.model`` names a built-in model (identified by name, not by hash).
        limit: Only the first ``limit`` items.
        overwrite: Discard answers made with other settings instead of refusing (see ``run_folder``).
        score_only: Score the folder's answers; generate nothing.
        progress: Show a progress bar (on a terminal).
        verify_weights: Re-hash the model's files instead of trusting the digest cache (``--verify-weights``).
    """

    out: Path
    plan: VariantPlan
    generation: GenerationSettings | None = None
    image_dir: Path | None = None
    builtin_model: bool = False
    limit: int | None = None
    overwrite: bool = False
    score_only: bool = False
    progress: bool = False
    verify_weights: bool = False


@dataclass(frozen=True)
class EvaluationReport:
    """The outcome of :func:`evaluate`.

    Attributes:
        rows: One row per variant, in plan order.
        columns: The table's columns.
        meta: Report metadata (task, variants, fingerprint, the task's own).
        json_path: ``<out>/<report>.json``.
        md_path: ``<out>/<report>.md``.
    """

    rows: list[VariantRow]
    columns: list[str]
    meta: dict[str, Any] = field(default_factory=dict)
    json_path: Path | None = None
    md_path: Path | None = None

    def table(self, timing: bool = False) -> str:
        """The rows as a Markdown table; without ``timing``, less ``tokens_per_s`` and ``speedup``.

        Variants run one after the other here, without a warm-up or interleaving, so the first
        absorbs the warm-up and a busy machine shifts the rest: those two columns stay in the JSON
        and Markdown reports, and ``lvlm-skip speed`` is the measurement of speed.
        """
        columns = [c for c in self.columns if timing or c not in UNTIMED_COLUMNS]
        return markdown_table([r.to_dict() for r in self.rows], columns)


#: Columns left out of the printed table (measured without warm-up or interleaving; see ``lvlm-skip speed``).
UNTIMED_COLUMNS = ("tokens_per_s", "speedup")


def select_items(task: EvalTask, limit: int | None) -> list[EvalItem]:
    """The task's first ``limit`` items, after checking that ids are unique.

    Raises:
        InputError: no items, or a duplicate id.
    """
    items = list(task.items())
    seen: set = set()
    for item in items:
        if item.id in seen:
            raise InputError(f"{task.name}: duplicate item id {item.id!r}")
        seen.add(item.id)
    items = items[:limit] if limit is not None else items
    if not items:
        raise InputError(f"{task.name}: no items to evaluate")
    return items


def _generation_of(settings: RunSettings, task: EvalTask | None = None) -> GenerationSettings:
    """``settings.generation``, or a one-line error when a run that generates lacks it or its image folder
    (which a task whose data holds its images does not need)."""
    needed = ("generation",) if task is not None and task.embeds_images else ("generation", "image_dir")
    missing = [name for name in needed if getattr(settings, name) is None]
    if missing:
        raise InputError(f"a run that generates answers needs RunSettings.{' and '.join(missing)} "
                         "(only score_only runs go without)")
    return settings.generation


def run_fingerprint(task: EvalTask, settings: RunSettings) -> RunFingerprint:
    """What changes the answers of this run (see :mod:`~lvlm_skip.evaluation.fingerprint`); hashes files."""
    gen = _generation_of(settings, task)
    run: dict[str, Any] = {"task": task.name, **task.settings()}
    run.update(model_identity(gen.model, builtin=(gen.model,) if settings.builtin_model else (),
                              verify=settings.verify_weights))
    run.update(gen.fingerprint())
    run.update(data_identity(task.data_files))
    run["image_dir"] = "in the data files" if task.embeds_images else str(Path(settings.image_dir).resolve())
    run.update(package_versions())
    profile_sha = file_sha256(settings.plan.profile) if settings.plan.profile is not None else None
    variants = {label: variant_fingerprint(settings.plan, label, profile_sha) for label in settings.plan.labels}
    return RunFingerprint(run=run, variants=variants)


def _claim(folder: RunFolder, task: EvalTask, settings: RunSettings, processes: Processes) -> RunFingerprint | None:
    """Rank 0 claims the folder and tells the other ranks whether to go on (they raise its error)."""
    outcome: tuple[str, str] | None = None
    fingerprint = None
    if processes.is_main:
        try:
            fingerprint = folder.claim(run_fingerprint(task, settings), settings.overwrite)
        except BaseException as error:  # every rank must learn that rank 0 stopped
            outcome = ("input" if isinstance(error, InputError) else "other", one_line(error))
            processes.broadcast(outcome)
            raise
    outcome = processes.broadcast(outcome)
    if outcome is not None:
        if outcome[0] == "input":
            raise InputError(outcome[1])
        raise RuntimeError(f"rank 0 stopped: {outcome[1]}")
    return fingerprint


def _image_or_error(item: EvalItem, label: str, task: EvalTask, image_dir: Path) -> tuple[Any, AnswerRecord | None]:
    """The item's image, or the error record of an image that cannot be used (missing, unreadable,
    outside ``--image-dir``, not a regular file)."""
    try:
        if task.embeds_images:
            return task.load_image(item), None
        return load_image(resolve_under(image_dir, task.request(item).image)), None
    except InputError as error:  # per-item data
        return None, AnswerRecord(variant=label, id=item.id, error=one_line(error))


def _record(item: EvalItem, label: str, result: generation.Generation) -> AnswerRecord:
    return AnswerRecord(variant=label, id=item.id, response=result.text, new_tokens=int(result.new_tokens),
                        seconds=float(result.seconds),
                        layers_skipped=None if result.layers_skipped is None else float(result.layers_skipped))


def batches(items: Sequence[EvalItem], size: int, length: Callable[[EvalItem], Any]) -> list[list[EvalItem]]:
    """``items`` sorted by ``length`` (a sort key; ties keep their order) and cut into batches of ``size``: rows of
    one batch have similar prompt lengths, so that left padding adds little (or the same image, to share it)."""
    ordered = sorted(items, key=length)  # sorted() is stable
    return [ordered[i:i + size] for i in range(0, len(ordered), size)]


class _VariantProgress:
    """Per variant: a bar with items/s and ETA (on a terminal), and one log line when it finishes."""

    def __init__(self, show_bar: bool, rank: int):
        self.show_bar, self.rank = show_bar, rank
        self.bar: Any = None
        self.label: str | None = None
        self.items = self.errors = 0
        self.began = 0.0

    def start(self, label: str, total: int) -> None:
        from tqdm.auto import tqdm  # 0.2 s to import, kept off the --help import path

        self.finish()
        self.label, self.items, self.errors, self.began = label, 0, 0, time.perf_counter()
        self.bar = tqdm(total=total, desc=label, unit="item", disable=not self.show_bar, leave=True)

    def count(self, records: Sequence[AnswerRecord]) -> None:
        self.items += len(records)
        for record in records:
            if not record.ok:
                self.errors += 1
                # the first error of a variant is shown; the others are counted (the records hold them all)
                (logger.warning if self.errors == 1 else logger.debug)("%s / %s: %s", record.variant, record.id,
                                                                      record.error)
        self.bar.update(len(records))

    def finish(self) -> None:
        if self.label is None:
            return
        self.bar.close()
        seconds = time.perf_counter() - self.began
        errors = f", {self.errors} error record(s)" if self.errors else ""
        logger.info("rank %d: %s done: %d item(s) in %.1f s (%.2f items/s)%s", self.rank, self.label, self.items,
                    seconds, self.items / seconds if seconds > 0 else float("nan"), errors)
        self.label = None


def batch_sort_key(generator: generation.Generator, label: str) -> Callable[[Any], Any]:
    """``key(request)``, what ``label``'s batches sort a request (anything with ``.prompt`` and ``.image``) by: its
    prompt's length in tokens (the generator's ``prompt_length``, else characters), by image first when the
    generator shares an image's prefill among its rows (its ``shares_image_prefixes``). The runner and
    ``recipes.throughput`` batch by it."""
    length = getattr(generator, "prompt_length", len)
    shares = getattr(generator, "shares_image_prefixes", None)
    if shares is not None and shares(label):
        return lambda request: (request.image, length(request.prompt))
    return lambda request: length(request.prompt)


def _sort_key(generator: Callable[[], generation.Generator], task: EvalTask, size: int,
              label: str) -> Callable[[EvalItem], Any]:
    """Batches sort items by :func:`batch_sort_key` of their variant request; at batch 1 the order stays (and
    the model is not loaded for it)."""
    if size == 1:
        return lambda item: 0
    key = batch_sort_key(generator(), label)
    return lambda item: key(task.variant_request(item, label))


def _fit_batch_size(generator: Callable[[], generation.Generator], task: EvalTask, todo: dict[str, list[EvalItem]],
                    settings: RunSettings) -> int:
    """``batch_size=None`` on CUDA: the generator's ``fit_batch_size`` on the run's longest prompt (1 if it has none)."""
    fit = getattr(generator(), "fit_batch_size", None)
    if fit is None:
        return 1
    label = next(iter(todo))
    key = _sort_key(generator, task, 2, label)
    for item in sorted((i for pending in todo.values() for i in pending), key=key, reverse=True)[:8]:
        image, error = _image_or_error(item, label, task, settings.image_dir)
        if error is None:
            return int(fit([image], [task.variant_request(item, label).prompt], label))
    return 1


def _generate(task: EvalTask, items: Sequence[EvalItem], settings: RunSettings, processes: Processes) -> None:
    """Answer this process's shard of every (variant, item) that has no answer yet, a batch at a time.

    Per variant, the items are sorted by prompt length and cut into batches of ``batch_size``;
    each batch's records are appended as soon as it ends. ``batch_size=None`` asks the generator
    once (:meth:`~lvlm_skip.evaluation.generation.ModelGenerator.fit_batch_size`; 1 for a generator
    that cannot say).
    """
    gen = _generation_of(settings, task)
    if processes.world > 1:  # one full model copy per process, on its own device
        gen = replace(gen, device=processes.device or gen.device, device_map=None)
    with AnswerStore(settings.out, processes.rank, processes.world) as store:
        processes.barrier()  # every rank has read the folder before any rank appends to it
        answered = store.answered()
        mine = shard_items(items, processes.rank, processes.world)
        todo = {label: [item for item in mine if (label, item.id) not in answered] for label in settings.plan.labels}
        todo = {label: pending for label, pending in todo.items() if pending}
        total = sum(len(pending) for pending in todo.values())
        if not total:
            logger.info("rank %d: every answer is already in %s", processes.rank, settings.out)
            return
        retried = sum(1 for r in store.records() if not r.ok and r.variant in settings.plan.labels)
        logger.info("rank %d: %d answer(s) to generate%s", processes.rank, total,
                    f" ({retried} earlier error(s) retried)" if retried else "")
        loaded: list[generation.Generator] = []

        def generator() -> generation.Generator:  # loaded on first use: a rerun whose items all have broken images loads none
            if not loaded:
                loaded.append(generation.load_generator(gen, settings.plan, progress=settings.progress and processes.is_main))
            return loaded[0]

        done = 0
        progress = _VariantProgress(show_bar=settings.progress and processes.is_main, rank=processes.rank)
        try:
            size = gen.batch_size
            if size is None:  # automatic: 1 off CUDA; on CUDA, the generator measures what fits
                size = 1 if not str(gen.device).startswith("cuda") else _fit_batch_size(generator, task, todo, settings)
            for label, pending in todo.items():
                progress.start(label, len(pending))
                decoding = settings.plan.decoding.get(label)
                sampled = decoding is not None and decoding.sample
                for batch in batches(pending, size, _sort_key(generator, task, size, label)):
                    images, ready, records = [], [], []
                    for item in batch:
                        image, error = _image_or_error(item, label, task, settings.image_dir)
                        if error is not None:
                            records.append(error)
                        else:
                            images.append(image)
                            ready.append(item)
                    if ready:
                        prompts = [task.variant_request(i, label).prompt for i in ready]
                        seeds = [decoding.item_seed(i.id) for i in ready] if sampled else None
                        results = generation.answer_batch(generator(), images, prompts, label, seeds)
                        records += [_record(item, label, result) for item, result in zip(ready, results)]
                    for record in records:  # as soon as the batch ends
                        store.append(record)
                    done += len(records)
                    progress.count(records)
            progress.finish()
        except KeyboardInterrupt:
            raise RunInterrupted(
                f"interrupted: {done} of {total} answer(s) of this run are saved in {settings.out}; "
                "rerun the same command to resume"
            ) from None
        except InputError:  # a model or option that cannot be used: its one line says it all
            raise
        except BaseException as error:
            logger.error("aborting on %s: the %d answer(s) finished by this run are saved in %s, and a rerun "
                         "resumes after them", type(error).__name__, done, settings.out)
            raise
        finally:
            if progress.bar is not None:
                progress.bar.close()


def evaluate(task: EvalTask, settings: RunSettings, processes: Processes | None = None) -> EvaluationReport | None:
    """Run ``task`` for every variant and write its report (see the module docstring).

    Args:
        task: The benchmark.
        settings: Where, what and how.
        processes: This process's place among the run's processes (default: from the environment).

    Returns:
        The report on rank 0; ``None`` on the other ranks.

    Raises:
        InputError: a folder held by another run or made with other settings, an answer missing after
            the merge, a model or option that cannot be used (one line each).
        RunInterrupted: Ctrl-C during generation.
    """
    processes = processes or current_processes()
    items = select_items(task, settings.limit)
    if not settings.score_only:
        _generation_of(settings, task)  # checked before the folder is claimed
        max_image_pixels()  # a bad LVLM_SKIP_MAX_IMAGE_PIXELS is one error, not one per item
    labels = settings.plan.labels
    expected = [(label, item.id) for label in labels for item in items]
    folder = RunFolder(settings.out)
    try:
        # 1-3. claim the folder and generate (or, with score_only, just lock it)
        if settings.score_only:
            if processes.is_main:
                folder.lock.acquire()
            fingerprint = _stored_fingerprint(settings)
        else:
            fingerprint = _claim(folder, task, settings, processes)
            images_before = _image_stats(task, items, settings.image_dir) if processes.is_main else {}
            _generate(task, items, settings, processes)
            processes.barrier()
        if not processes.is_main:
            return None
        # 4. merge, score, report
        merged = merge_answers(settings.out, expected)
        if merged.missing:
            label, item_id = merged.missing[0]
            hint = "run without --score-only first" if settings.score_only else "rerun the same command to generate them"
            raise InputError(f"{len(merged.missing)} answer(s) missing in {settings.out} (e.g. {label} / {item_id!r}): {hint}")
        if not settings.score_only:
            _check_data_unchanged(task, items, settings, fingerprint, images_before)
        return _report(task, items, settings, merged.records, fingerprint)
    finally:
        folder.release()


def _image_stats(task: EvalTask, items: Sequence[EvalItem], image_dir: Path | None) -> dict[str, tuple[int, int] | None]:
    """``(size, mtime_ns)`` of every item's image (``None`` when it cannot be stat'ed): read nothing, open nothing.

    Empty for a task whose data files hold its images: their digests cover them.
    """
    stats: dict[str, tuple[int, int] | None] = {}
    if task.embeds_images:
        return stats
    for item in items:
        name = str(task.request(item).image)
        if name not in stats:
            try:
                info = os.stat(os.path.join(str(image_dir), name))
                stats[name] = (info.st_size, info.st_mtime_ns)
            except (OSError, ValueError):
                stats[name] = None
    return stats


def _check_data_unchanged(task: EvalTask, items: Sequence[EvalItem], settings: RunSettings,
                          fingerprint: RunFingerprint | None, images_before: dict[str, tuple[int, int] | None]) -> None:
    """Before the report, check that the data did not change while the run answered (e.g. a benchmark redrawn in place).

    The data files are hashed again (ignoring the digest cache) and compared with the digests taken
    when the run started; the items' images, which the fingerprint identifies by their folder
    only, are compared by size and mtime with what they were when this run started.

    Raises:
        DataChangedError: a data file's digest, or an image's size or mtime, changed during the run. The
            folder's fingerprint then records it, so a rerun refuses the folder's answers until ``--overwrite``.
    """
    if fingerprint is None:
        return
    now = data_identity(task.data_files, verify=True)  # read again, whatever the digest cache says
    changed = [f"{role}: {Path(task.data_files[role]).name}" for role in task.data_files
               if fingerprint.run.get(f"{role}_sha256") != now[f"{role}_sha256"]]
    images_now = _image_stats(task, items, settings.image_dir)
    images = [name for name, stat in images_before.items() if images_now.get(name) != stat]
    if images:
        changed.append(f"{len(images)} image(s) such as {images[0]}")
    if changed:
        # the folder's answers are marked, so that a rerun refuses them (until --overwrite) instead of resuming
        marked = RunFingerprint(run={**fingerprint.run, "data_changed_during_run": "; ".join(changed)},
                                variants=fingerprint.variants)
        marked.save(settings.out)
        raise DataChangedError(
            f"the data changed during this run ({'; '.join(changed)} rewritten): the answers in {settings.out} may mix "
            "old and new data, so no report was written; rerun with --overwrite"
        )


def _stored_fingerprint(settings: RunSettings) -> RunFingerprint:
    try:
        stored = RunFingerprint.load(settings.out)
    except ValueError as error:
        raise InputError(str(error)) from None
    if stored is None:
        raise InputError(f"--out {str(settings.out)!r} holds no run fingerprint: run without --score-only first")
    absent = [label for label in settings.plan.labels if label not in stored.variants]
    if absent:
        raise InputError(f"--out {str(settings.out)!r} has no answers of {', '.join(absent)}: run without --score-only first")
    return stored


def _report(task: EvalTask, items: Sequence[EvalItem], settings: RunSettings, records: Sequence[AnswerRecord],
            fingerprint: RunFingerprint | None) -> EvaluationReport:
    labels = settings.plan.labels
    by_label = {label: [r for r in records if r.variant == label] for label in labels}
    answers = {label: {r.id: r.response for r in recs if r.ok} for label, recs in by_label.items()}
    scores = task.score(answers, items, settings.plan.reference)
    names = list(dict.fromkeys([*scores.columns, *(k for m in scores.metrics.values() for k in m)]))
    metrics = {label: {k: scores.metrics.get(label, {}).get(k) for k in names} for label in labels}  # same keys in every row
    rows = build_rows(by_label, metrics, settings.plan.reference)
    run = dict(fingerprint.run) if fingerprint else {}
    run.pop("model_files", None)
    meta: dict[str, Any] = {
        "task": task.name, "items": len(items),
        "variants": {label: dict(fingerprint.variants[label]) if fingerprint else {} for label in labels},
        "run": run, **scores.meta,
    }
    columns = ["variant", *scores.columns, *RUN_COLUMNS]
    if all(r.layers_skipped is None for r in rows):
        columns.remove("layers_skipped")
    json_path, md_path = write_report([r.to_dict() for r in rows], settings.out, task.report_name, meta, columns)
    if scores.details is not None:
        details_path = settings.out / f"{task.report_name}_details.json"
        details_path.write_text(json.dumps(scores.details, indent=1, default=str) + "\n", encoding="utf-8")
    logger.info("wrote %s and %s", json_path, md_path)
    return EvaluationReport(rows=rows, columns=columns, meta=meta, json_path=json_path, md_path=md_path)
