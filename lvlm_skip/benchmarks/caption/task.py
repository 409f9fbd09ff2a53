"""Image captioning as an evaluation task: COCO caption metrics, CHAIR and closeness to ``none``.

Items are the images of a COCO-format caption file (:mod:`~lvlm_skip.data.coco_captions`),
each asked ``--prompt``. Per variant:

* COCO caption metrics against the reference captions (:mod:`~lvlm_skip.benchmarks.caption.coco_metrics`):
  BLEU-1..4, METEOR, ROUGE-L, CIDEr, and SPICE when its jars are installed;
* CHAIR_S / CHAIR_I (Rohrbach et al. 2018), with ``--instances``: the ground truth of an image
  is its instance categories united with the objects its reference captions name;
* closeness to the ``none`` variant's caption of the same image
  (:mod:`~lvlm_skip.benchmarks.caption.closeness`): ``close_identical``, ``close_edit_similarity``,
  ``close_unigram_f1``, ``close_rouge_l_f1``.

The CHAIR mentions and hallucinations of every caption go to ``caption_report_details.json``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, get_args

from . import chair  # the one import of CHAIR
from ...config import Closeness
from ...data.coco_captions import CaptionDataError, CaptionDataset, CaptionImage, load_captions
from ...data.hub import CAPTION_COLUMNS, caption_images, open_hub_dataset
from .closeness import closeness_to_reference_variant
from .coco_metrics import SCORER_GROUPS, coco_caption_scores_multi
from ...data.json_files import read_json
from ...evaluation.task import Answers, EvalItem, EvalTask, TaskScores

DEFAULT_PROMPT = "Please describe this image in detail."
CLOSENESS: tuple[str, ...] = get_args(Closeness)


def load_image_objects(path: str | Path) -> dict[Any, set[str]]:
    """CHAIR's ground-truth categories per image from a COCO ``instances_*.json``.

    Raises:
        CaptionDataError: a missing, corrupt or malformed file (one line).
    """
    data = read_json(path, CaptionDataError)
    if not isinstance(data, dict) or "annotations" not in data or "categories" not in data:
        raise CaptionDataError(f"{path}: not a COCO instances file (needs 'annotations' and 'categories')")
    try:
        return chair.image_objects_from_instances(data)
    except (KeyError, TypeError, ValueError) as error:
        raise CaptionDataError(f"{path}: malformed COCO instances data ({type(error).__name__}: {error})") from None


class CaptionTask(EvalTask):
    """The images of a caption file, each described once per variant.

    Args:
        dataset: The images and their reference captions.
        captions_path: The caption file (the task's data identity).
        prompt: The instruction every image gets.
        metrics: COCO scorer groups among :data:`~lvlm_skip.benchmarks.caption.coco_metrics.SCORER_GROUPS`.
        image_objects: CHAIR's ground truth per image (instances), or ``None`` for no CHAIR.
    """

    name = "caption"
    report_name = "caption_report"

    def __init__(self, dataset: CaptionDataset, captions_path: str | Path, prompt: str = DEFAULT_PROMPT,
                 metrics: Iterable[str] = SCORER_GROUPS, image_objects: dict[Any, set[str]] | None = None) -> None:
        self.dataset, self.captions_path, self.prompt = dataset, Path(captions_path), prompt
        self.metrics = [m.strip().lower() for m in metrics if m.strip()]
        unknown = sorted(set(self.metrics) - set(SCORER_GROUPS))
        if unknown:
            raise CaptionDataError(f"unknown --metrics {', '.join(unknown)}; choose among {','.join(SCORER_GROUPS)}")
        self.image_objects = image_objects

    @classmethod
    def load(cls, captions: str | Path, prompt: str = DEFAULT_PROMPT, metrics: Iterable[str] = SCORER_GROUPS,
             instances: str | Path | None = None) -> "CaptionTask":
        """Read the caption file (and the instances file for CHAIR).

        Raises:
            CaptionDataError: a missing or malformed file, an unknown metric.
        """
        dataset = load_captions(captions)
        if not dataset.images:
            raise CaptionDataError(f"{captions}: no images")
        objects = load_image_objects(instances) if instances else None
        return cls(dataset, captions, prompt, metrics, objects)

    @property
    def data_files(self) -> dict[str, Path]:
        return {"captions": self.captions_path}

    def settings(self) -> dict[str, Any]:
        return {"prompt": self.prompt}

    def items(self) -> list[EvalItem]:
        """One item per image; its annotations are the reference captions."""
        return [EvalItem(id=im.image_id, image=im.file_name, prompt=self.prompt, annotations={"references": im.references})
                for im in self.dataset.images]

    def score(self, answers: Answers, items: Sequence[EvalItem], reference: str | None) -> TaskScores:
        wanted = {item.id for item in items}
        references = {i: refs for i, refs in self.dataset.references().items() if i in wanted}
        metrics: dict[str, dict[str, Any]] = {label: {} for label in answers}
        skipped: dict[str, str] = {}
        details: dict[str, Any] = {}
        # 1. COCO caption metrics, every variant in one tokenizer / scorer pass
        if references and self.metrics:
            coco = coco_caption_scores_multi(references, {k: v for k, v in answers.items() if v}, metrics=self.metrics)
            for label, result in coco.items():
                metrics[label].update(result["scores"])
                skipped.update(result["skipped"])
        # 2. CHAIR against instances + the objects the references name
        if self.image_objects is not None:
            named = chair.image_objects_from_captions(references)
            truth = {i: set(objs) | named.get(i, set()) for i, objs in self.image_objects.items() if i in wanted}
            for label, captions in answers.items():
                result = chair.chair_scores(captions, truth)
                metrics[label].update(CHAIR_S=result["CHAIR_S"], CHAIR_I=result["CHAIR_I"])
                details[label] = {str(i): d for i, d in result["per_caption"].items()}
        # 3. closeness to the none variant's captions
        if reference is not None:
            for label, captions in answers.items():
                if label != reference:
                    close = closeness_to_reference_variant(captions, answers[reference])
                    metrics[label].update({f"close_{k}": close[k] for k in CLOSENESS})
        columns = list(dict.fromkeys(k for row in metrics.values() for k in row))
        meta = {"prompt": self.prompt, "captions": str(self.captions_path), "skipped_metrics": skipped,
                "closeness": "mean over images of identical / word edit similarity / unigram F1 / ROUGE-L F1 "
                             f"between the variant's and {reference}'s caption" if reference else "no none variant"}
        return TaskScores(metrics=metrics, columns=columns, meta=meta, details={"chair": details} if details else None)


class HubCaptionTask(CaptionTask):
    """COCO captions read as lmms-eval ships them (COCO-Caption2017's schema, :mod:`lvlm_skip.data.hub`), images
    embedded: items, prompt and scoring are :class:`CaptionTask`'s; the data identity is the dataset's files.

    Raises:
        HubDataError: a missing or malformed dataset (one line).
    """

    embeds_images = True

    def __init__(self, path: str | Path, prompt: str = DEFAULT_PROMPT, metrics: Iterable[str] = SCORER_GROUPS,
                 image_objects: dict[Any, set[str]] | None = None) -> None:
        self.data = open_hub_dataset(path, CAPTION_COLUMNS)
        images = caption_images(self.data)
        self._rows = {image.image_id: image.row for image in images}
        dataset = CaptionDataset(images=[CaptionImage(image_id=i.image_id, file_name=i.file_name,
                                                      references=list(i.references)) for i in images],
                                 path=str(self.data.source))
        super().__init__(dataset, self.data.source, prompt, metrics, image_objects)

    @classmethod
    def load(cls, path: str | Path, prompt: str = DEFAULT_PROMPT, metrics: Iterable[str] = SCORER_GROUPS,
             instances: str | Path | None = None) -> "HubCaptionTask":
        """Read the dataset (and the instances file for CHAIR)."""
        return cls(path, prompt, metrics, load_image_objects(instances) if instances else None)

    @property
    def data_files(self) -> dict[str, Path]:
        return self.data.data_files()

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "format": "hub (COCO-Caption2017)"}

    def load_image(self, item: EvalItem) -> Any:
        return self.data.image(self._rows[item.id])
