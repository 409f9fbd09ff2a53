"""POPE (Li et al., EMNLP 2023, "Evaluating Object Hallucination in Large Vision-Language Models") as a task.

Every question of one or more POPE question files (:mod:`~lvlm_skip.data.pope`), usually
the ``random``, ``popular`` and ``adversarial`` splits, is asked once per variant; each split is
scored like POPE's official ``evaluate.py`` (:mod:`~lvlm_skip.benchmarks.pope.metrics`).

* **Items.** One per question, in file order, the splits one after the other. With one file an
  item's id is the file's ``question_id``; with several, ``"<split>:<question_id>"`` (POPE's files
  all number their questions from 1). ``limit`` keeps the first questions of *each* split.
* **Prompt.** The question text as is, which is POPE's own protocol, plus ``prompt_suffix``
  (default none). :data:`PROMPT_SUFFIXES` names the two suffixes in use: ``llava`` (LLaVA-1.5's
  ``llava_pope_test.jsonl``: ``"\\nAnswer the question using a single word or phrase."``) and
  ``vcd`` (VCD's POPE script: ``" Please answer this question with one word."``; DeCo's script has
  that line commented out and asks the question as is). The
  suffix is part of the run's fingerprint.
* **Metrics.** Per split and variant, over the questions answered (an item whose image cannot be
  read is an error record, counted in the report's ``errors`` and left out here):
  ``<split>_Accuracy``, ``_Precision``, ``_Recall``, ``_F1``, ``_yes_ratio`` in percent (unrounded in
  the JSON), the counts ``<split>_TP``, ``_FP``, ``_TN``, ``_FN``, ``<split>_n``; with several
  splits also ``avg_Accuracy`` and ``avg_F1``, the unweighted means over the splits. The per-question
  readings (answer, yes/no, label) go to ``<report>_details.json``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ...errors import InputError
from ...data.hub import POPE_COLUMNS, open_hub_dataset, pope_questions
from ...data.pope import POPE_SPLITS, PopeQuestion, find_split_files, read_pope_questions, split_name
from .metrics import count_pope, pope_answer, score_pope  # noqa: F401 - score_pope is this module's API too
from .protocols import HARNESS, READINGS, PopeProtocol
from ...evaluation.task import Answers, EvalItem, EvalTask, GenerationRequest, TaskScores

#: ``--prompt-suffix`` names -> the text appended to every question.
PROMPT_SUFFIXES: dict[str, str] = {
    "none": "",
    "llava": "\nAnswer the question using a single word or phrase.",
    "vcd": " Please answer this question with one word.",
}
#: Report metric name (percent) -> :func:`score_pope` key (fraction).
REPORT_METRICS = {"Accuracy": "accuracy", "Precision": "precision", "Recall": "recall", "F1": "f1",
                  "yes_ratio": "yes_ratio"}
#: What the report says about the scoring rule.
SCORING = ("POPE's evaluate.py: first sentence, commas removed, split on ' '; 'no' if 'No', 'not' or 'no' "
           "is a word, else 'yes'; 'yes' is positive; 0/0 (no 'yes' answer or label, TP = 0) scores 0")


def resolve_prompt_suffix(value: str | None) -> str:
    """The suffix text of ``--prompt-suffix``: a name of :data:`PROMPT_SUFFIXES`, or the text itself."""
    if value is None:
        return ""
    return PROMPT_SUFFIXES.get(value, value)


class PopeTask(EvalTask):
    """The questions of POPE files, one split per file, each split scored on its own.

    Args:
        files: Split name -> question file, in report order.
        prompt_suffix: Text appended to every question (not a preset name; see :func:`resolve_prompt_suffix`).
        limit: Only the first ``limit`` questions of each split.

    Raises:
        PopeFormatError: a missing or malformed question file.
        InputError: no file.
    """

    name = "pope"

    def __init__(self, files: Mapping[str, str | Path], prompt_suffix: str = "", limit: int | None = None) -> None:
        if not files:
            raise InputError("pope: no question file")
        self.files = {split: Path(path) for split, path in files.items()}
        self.prompt_suffix = prompt_suffix
        self.protocols: dict[str, PopeProtocol] = {}
        self.questions: dict[str, list[PopeQuestion]] = {}
        for split, path in self.files.items():
            questions = read_pope_questions(path)
            self.questions[split] = questions[:limit] if limit is not None else questions
        splits = tuple(self.files)
        self.report_name = "pope_" + ("all" if splits == POPE_SPLITS else "_".join(splits))

    @classmethod
    def from_folder(cls, root: str | Path, splits: Sequence[str] = POPE_SPLITS, dataset: str | None = None,
                    prompt_suffix: str = "", limit: int | None = None) -> "PopeTask":
        """The splits' files ``<dataset>_pope_<split>.json`` of the folder ``root`` (see :func:`find_split_files`)."""
        return cls(find_split_files(root, tuple(splits), dataset), prompt_suffix, limit)

    @classmethod
    def from_files(cls, paths: Sequence[str | Path], prompt_suffix: str = "", limit: int | None = None) -> "PopeTask":
        """Question files named by path; each one's split is its name's ``<split>`` (or its stem).

        Raises:
            InputError: two files of the same split.
        """
        files: dict[str, Path] = {}
        for path in paths:
            split = split_name(path)
            if split in files:
                raise InputError(f"--questions {files[split]} and {path} are both split {split!r}")
            files[split] = Path(path)
        return cls(files, prompt_suffix, limit)

    @property
    def splits(self) -> list[str]:
        return list(self.questions)

    @property
    def data_files(self) -> dict[str, Path]:
        return {f"questions_{split}": path for split, path in self.files.items()}

    def use_protocols(self, protocols: Mapping[str, PopeProtocol]) -> None:
        """Ask and read each variant (label) by its protocol (``--protocol``; :mod:`.protocols`); a label
        without one follows the harness."""
        self.protocols = dict(protocols)

    def _protocol(self, label: str) -> PopeProtocol:
        return self.protocols.get(label, HARNESS)

    def settings(self) -> dict[str, Any]:
        settings: dict[str, Any] = {"splits": self.splits, "prompt_suffix": self.prompt_suffix}
        if any(p is not HARNESS for p in self.protocols.values()):  # only then: harness fingerprints stay as they were
            settings["protocols"] = self._described()
        return settings

    def _described(self) -> dict[str, dict[str, Any]]:
        return {label: protocol.describe(self.prompt_suffix) for label, protocol in self.protocols.items()}

    def _item_id(self, split: str, question: PopeQuestion) -> int | str:
        return question.question_id if len(self.files) == 1 else f"{split}:{question.question_id}"

    def items(self) -> list[EvalItem]:
        """One item per question; its annotations are the split, the question id and the label."""
        return [EvalItem(id=self._item_id(split, q), image=q.image, prompt=q.text,
                         annotations={"split": split, "question_id": q.question_id, "label": q.label})
                for split, questions in self.questions.items() for q in questions]

    def request(self, item: EvalItem) -> GenerationRequest:
        return GenerationRequest(image=item.image, prompt=item.prompt + self.prompt_suffix)

    def variant_request(self, item: EvalItem, label: str) -> GenerationRequest:
        """The question plus the suffix of ``label``'s protocol (the run's ``prompt_suffix`` for the harness)."""
        suffix = self._protocol(label).prompt_suffix
        return self.request(item) if suffix is None else GenerationRequest(image=item.image, prompt=item.prompt + suffix)

    def score(self, answers: Answers, items: Sequence[EvalItem], reference: str | None) -> TaskScores:
        metrics: dict[str, dict[str, Any]] = {}
        details: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for label, responses in answers.items():
            row: dict[str, Any] = {}
            details[label] = {}
            read = READINGS[self._protocol(label).reading]
            for split in self.splits:
                answered = [item for item in items if item.annotations["split"] == split and item.id in responses]
                texts = [responses[item.id] for item in answered]
                labels = [item.annotations["label"] for item in answered]
                readings = [read(text, truth) for text, truth in zip(texts, labels)]
                row.update(_split_metrics(split, readings, labels))
                details[label][split] = [
                    {"question_id": item.annotations["question_id"], "answer": text, "pope_answer": reading,
                     "label": item.annotations["label"]} for item, text, reading in zip(answered, texts, readings)]
            if len(self.splits) > 1:
                for name in ("Accuracy", "F1"):
                    values = [row[f"{split}_{name}"] for split in self.splits]
                    row[f"avg_{name}"] = None if None in values else sum(values) / len(values)
            metrics[label] = row
        meta = {"splits": {split: str(path) for split, path in self.files.items()},
                "questions": {split: len(qs) for split, qs in self.questions.items()},
                "prompt_suffix": self.prompt_suffix, "scoring": SCORING,
                "protocols": self._described() if self.protocols else "harness (every variant)",
                "percent": "Accuracy, Precision, Recall, F1, yes_ratio are percentages"}
        return TaskScores(metrics=metrics, columns=self.columns(), meta=meta, details={"answers": details})

    def columns(self) -> list[str]:
        """The Markdown table's metrics: all five for one split; accuracy, F1, yes-ratio per split and the means for several."""
        if len(self.splits) == 1:
            (split,) = self.splits
            return [f"{split}_{name}" for name in REPORT_METRICS]
        return [f"{split}_{name}" for split in self.splits for name in ("Accuracy", "F1", "yes_ratio")] + [
            "avg_Accuracy", "avg_F1"]


def _split_metrics(split: str, answers: list[str], labels: list[str]) -> dict[str, Any]:
    """One split's report entries: the metrics in percent (``None`` without answers) and the counts.

    ``answers`` are already read as ``"yes"`` / ``"no"`` (which :func:`count_pope` reads as themselves).
    """
    if not answers:
        return {**{f"{split}_{name}": None for name in REPORT_METRICS},
                **{f"{split}_{count}": 0 for count in ("TP", "FP", "TN", "FN", "n")}}
    counts = count_pope(answers, labels)
    fractions = counts.metrics()
    row = {f"{split}_{name}": 100 * fractions[key] for name, key in REPORT_METRICS.items()}
    row.update({f"{split}_TP": counts.tp, f"{split}_FP": counts.fp, f"{split}_TN": counts.tn,
                f"{split}_FN": counts.fn, f"{split}_n": counts.n})
    return row


class HubPopeTask(PopeTask):
    """POPE read as the hub ships it (lmms-lab/POPE's schema, :mod:`lvlm_skip.data.hub`), images embedded.

    The splits are the ``category`` column's (``test`` without one), in POPE's order; items,
    prompts and scoring are :class:`PopeTask`'s, an item's ``image`` is its ``image_source`` (for the
    records; the image itself comes from the dataset's row), and the data identity is the digests of
    the dataset's files.

    Args:
        path: A ``.parquet`` file, a folder of them (a hub snapshot), or a ``save_to_disk`` folder.
        splits: The splits to answer (default: every split the data has).
        prompt_suffix, limit: As :class:`PopeTask`'s.

    Raises:
        HubDataError: a missing or malformed dataset (one line).
        InputError: a requested split the data does not have.
    """

    embeds_images = True

    def __init__(self, path: str | Path, splits: Sequence[str] | None = None, prompt_suffix: str = "",
                 limit: int | None = None) -> None:
        self.data = open_hub_dataset(path, POPE_COLUMNS)
        found: dict[str, list[PopeQuestion]] = {}
        self._rows: dict[tuple[str, str], int] = {}
        for q in pope_questions(self.data):
            found.setdefault(q.split, []).append(PopeQuestion(question_id=q.question_id, image=q.image_name,
                                                              text=q.question, label=q.label, line=q.row + 1))
            self._rows[(q.split, q.question_id)] = q.row
        order = [s for s in POPE_SPLITS if s in found] + [s for s in found if s not in POPE_SPLITS]
        wanted = list(splits) if splits else order
        absent = [s for s in wanted if s not in found]
        if absent:
            raise InputError(f"{path}: no split {', '.join(absent)} (its 'category' column has {', '.join(order)})")
        self.prompt_suffix = prompt_suffix
        self.protocols = {}
        self.questions = {s: found[s][:limit] if limit is not None else found[s] for s in wanted}
        self.files = {s: self.data.source for s in wanted}
        self.report_name = "pope_" + ("all" if tuple(wanted) == POPE_SPLITS else "_".join(wanted))

    @property
    def data_files(self) -> dict[str, Path]:
        return self.data.data_files()

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "format": "hub (lmms-lab/POPE)"}

    def load_image(self, item: EvalItem) -> Any:
        split, question_id = item.annotations["split"], item.annotations["question_id"]
        return self.data.image(self._rows[(split, question_id)])
