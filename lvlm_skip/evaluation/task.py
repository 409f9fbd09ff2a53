"""What a benchmark gives the runner, in the shape of lm-evaluation-harness's ``Task``.

A task (:class:`EvalTask`) has three jobs, and the runner (:mod:`lvlm_skip.evaluation.runner`)
does everything else (variants, the model, resuming, sharding, locking, fingerprints, reports):

1. **items**: what to answer, as :class:`EvalItem` (id, image name relative to ``--image-dir``,
   prompt, and annotations such as AMBER's truth / hallucination words or a POPE label, which
   other analyses, e.g. layer statistics over content words, can read);
2. **request**: the image and prompt the model gets for an item (by default the item's own; a
   task can add an instruction);
3. **score**: the stored answers of every variant into metrics (one dict per variant), plus
   report metadata and optional per-item details.

A new benchmark is a subclass with those three methods and a few attributes. POPE, for
example: items from the JSON lines ``{"question_id", "image", "text", "label"}``
(:func:`~lvlm_skip.data.json_files.read_json_lines`) with ``annotations={"label": ...}``,
``data_files = {"questions": path}``, and a ``score`` that maps each answer to yes/no and counts.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .records import ItemId

#: Variant label -> item id -> answer text (successful answers only).
Answers = Mapping[str, Mapping[ItemId, str]]


@dataclass(frozen=True)
class EvalItem:
    """One thing to answer.

    Attributes:
        id: Unique within the task (an int or a string, as in the data file).
        image: The image's name relative to ``--image-dir``, as written in the data file (resolved
            with :func:`lvlm_skip.inputs.paths.resolve_under`, which refuses names outside the folder).
        prompt: The question or instruction, without chat template.
        annotations: What the task knows about the item (ground truth, labels), for scoring and
            for analyses; not sent to the model.
    """

    id: ItemId
    image: str
    prompt: str
    annotations: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GenerationRequest:
    """What the model gets for one item: an image name (relative to ``--image-dir``) and a prompt."""

    image: str
    prompt: str


@dataclass(frozen=True)
class TaskScores:
    """A task's scores of a run.

    Attributes:
        metrics: Variant label -> metric name -> value (``None``: not computable, e.g. no answers).
        columns: The metric names to show in the Markdown table, in order (the JSON has them all).
        meta: Report metadata (e.g. the language backend, skipped metrics and why).
        details: Optional per-item details, written to ``<report>_details.json``.
    """

    metrics: Mapping[str, Mapping[str, Any]]
    columns: Sequence[str]
    meta: Mapping[str, Any] = field(default_factory=dict)
    details: Any = None


class EvalTask(ABC):
    """A benchmark, as the runner sees it (see the module docstring).

    Attributes:
        name: The task's name (``amber``, ``caption``, ``pope``), part of the run fingerprint.
        report_name: File stem of the report (``amber_g`` -> ``amber_g.json`` / ``amber_g.md``).
    """

    name: str = ""
    report_name: str = ""
    #: The items' images are in the task's data (a hub dataset): :meth:`load_image` gives them, and a
    #: run needs no ``--image-dir``. Otherwise the runner reads ``--image-dir / item.image``.
    embeds_images: bool = False

    @abstractmethod
    def items(self) -> Sequence[EvalItem]:
        """Every item, in report order (``--limit`` takes the first ones)."""

    @property
    @abstractmethod
    def data_files(self) -> Mapping[str, Path]:
        """The files that define the items and prompts, by role (``queries``, ``captions``, ``questions``).

        Their content digests are the data identity of the run's fingerprint. Files used only for
        scoring (annotations, instances) are not listed: a corrected annotation file re-scores the
        same answers.
        """

    def settings(self) -> dict[str, Any]:
        """Task settings that change the answers besides the data files (e.g. a caption prompt)."""
        return {}

    def load_image(self, item: EvalItem) -> Any:
        """The item's image (RGB PIL) when ``embeds_images``.

        Raises:
            InputError: the image cannot be decoded (the runner makes it the item's error record).
        """
        raise NotImplementedError(f"{type(self).__name__} reads its images from --image-dir")

    def request(self, item: EvalItem) -> GenerationRequest:
        """The model's input for ``item``: by default its image and prompt as they are."""
        return GenerationRequest(image=item.image, prompt=item.prompt)

    def variant_request(self, item: EvalItem, label: str) -> GenerationRequest:
        """The model's input for ``item`` when the variant ``label`` answers: by default :meth:`request`'s
        (a task whose protocol differs per variant, e.g. POPE's ``--protocol authors``, overrides it)."""
        return self.request(item)

    @abstractmethod
    def score(self, answers: Answers, items: Sequence[EvalItem], reference: str | None) -> TaskScores:
        """Score every variant's answers.

        Args:
            answers: Variant label -> item id -> answer (items with an error record are absent).
            items: The evaluated items (after ``--limit``).
            reference: The label of the ``none`` variant, when it was run (closeness metrics).
        """
