"""AMBER (Wang et al., arXiv 2311.07397) as an evaluation task: queries in, official metrics out.

``--amber-root`` is AMBER's data folder (:mod:`~lvlm_skip.data.amber`), ``--image-dir``
its images, ``--task`` one of ``g`` (generative), ``d`` (discriminative), ``a`` (all), ``de`` /
``da`` / ``dr`` (existence / attribute / relation). The metrics count exactly like the official
``inference.py`` (:mod:`~lvlm_skip.benchmarks.amber.metrics`): CHAIR, Cover, Hal, Cog for
descriptions; Accuracy, Precision, Recall, F1 ("No" is the positive class) for yes/no questions.
The generative metric needs a language backend (:mod:`~lvlm_skip.benchmarks.language`), named in
the report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ...config import AmberTaskName, LanguageBackendChoice
from ...errors import InputError
from ...data.amber import TASK_FILES, AmberData, check_queries, load_amber, load_queries
from .metrics import score_discriminative, score_generative
from ..language import LanguageBackend, pick_backend
from ...evaluation.task import Answers, EvalItem, EvalTask, TaskScores

#: Table columns per ``--task`` (the JSON report keeps every metric).
TASK_COLUMNS: dict[str, tuple[str, ...]] = {
    "g": ("CHAIR", "Cover", "Hal", "Cog"),
    "d": ("Accuracy", "Precision", "Recall", "F1", "existence_F1", "attribute_F1", "relation_F1"),
    "a": ("CHAIR", "Cover", "Hal", "Cog", "Accuracy", "Precision", "Recall", "F1"),
    "de": ("existence_Accuracy", "existence_Precision", "existence_Recall", "existence_F1"),
    "da": ("attribute_Accuracy", "attribute_Precision", "attribute_Recall", "attribute_F1",
           "state_F1", "number_F1", "action_F1"),
    "dr": ("relation_Accuracy", "relation_Precision", "relation_Recall", "relation_F1"),
}


class AmberTask(EvalTask):
    """One AMBER task (``g``, ``d``, ``a``, ``de``, ``da``, ``dr``) of one AMBER folder.

    Args:
        data: The validated AMBER folder.
        queries: The task's ``{id, image, query}`` records (every id has an annotation).
        task: The task letter(s).
        backend: The language backend of the generative metric.
        backend_name: Its report name.
    """

    name = "amber"

    def __init__(self, data: AmberData, queries: Sequence[Mapping[str, Any]], task: AmberTaskName,
                 backend: LanguageBackend, backend_name: str) -> None:
        self.data, self.queries, self.task = data, list(queries), task
        self.backend, self.backend_name = backend, backend_name
        self.report_name = f"amber_{task}"

    @classmethod
    def load(cls, root: str | Path, task: AmberTaskName = "g", backend: LanguageBackendChoice = "auto") -> "AmberTask":
        """Read and cross-check an AMBER folder and pick the language backend.

        Raises:
            InputError: a missing or malformed file, a query without annotation, an unknown task,
                an ``official`` backend that cannot be loaded.
        """
        data = load_amber(root)
        queries = load_queries(root, task)
        check_queries(queries, data)
        try:
            language, name = pick_backend(backend, data.vocabulary())
        except (RuntimeError, ValueError) as error:
            raise InputError(str(error)) from None
        return cls(data, queries, task, language, name)

    @property
    def data_files(self) -> dict[str, Path]:
        return {"queries": Path(self.data.root) / "query" / f"{TASK_FILES[self.task]}.json"}

    def items(self) -> list[EvalItem]:
        """One item per query; its annotations are the AMBER record (``type``, ``truth``, ``hallu``)."""
        return [EvalItem(id=q["id"], image=q["image"], prompt=q["query"], annotations=self.data.annotations[q["id"]])
                for q in self.queries]

    def score(self, answers: Answers, items: Sequence[EvalItem], reference: str | None) -> TaskScores:
        metrics: dict[str, dict[str, Any]] = {}
        for label, responses in answers.items():
            row: dict[str, Any] = {}
            if self.task in ("g", "a"):
                row.update(score_generative(responses, self.data.annotations, self.data.relation,
                                            self.data.safe_words, self.backend))
            if self.task != "g":
                row.update(score_discriminative(responses, self.data.annotations))
            metrics[label] = row
        return TaskScores(metrics=metrics, columns=TASK_COLUMNS[self.task],
                          meta={"amber_task": self.task, "backend": self.backend_name})
