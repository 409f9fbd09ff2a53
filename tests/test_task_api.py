"""A new benchmark plugs into the runner with a few lines: a POPE-style yes/no task, defined here.

POPE's question files are JSON lines ``{"question_id", "image", "text", "label"}``; the task gives
the items (with the label as an annotation), names its data file, and scores the answers. Resuming,
sharding, locking, fingerprints, error rows and the report come from the runner.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from lvlm_skip.evaluation.generation import Generation, GenerationSettings
from lvlm_skip.data.json_files import read_json_lines
from lvlm_skip.evaluation.runner import RunSettings, evaluate
from lvlm_skip.evaluation.task import EvalItem, EvalTask, TaskScores
from lvlm_skip.evaluation.variants import VariantPlan, VariantSpec


class YesNoTask(EvalTask):
    """POPE-style: accuracy and yes-ratio of yes/no answers ("yes" if the first sentence has no no/not)."""

    name = "yesno"
    report_name = "yesno_report"

    def __init__(self, questions: Path) -> None:
        self.questions = questions
        self.rows = read_json_lines(questions)

    @property
    def data_files(self):
        return {"questions": self.questions}

    def items(self):
        return [EvalItem(id=q["question_id"], image=q["image"], prompt=q["text"], annotations={"label": q["label"]})
                for q in self.rows]

    def score(self, answers, items, reference):
        labels = {item.id: item.annotations["label"] for item in items}
        metrics = {}
        for variant, texts in answers.items():
            said = {i: "no" if {"no", "not"} & set(t.split(".")[0].lower().replace(",", "").split()) else "yes"
                    for i, t in texts.items()}
            metrics[variant] = {"Accuracy": sum(said[i] == labels[i] for i in said) / max(len(said), 1),
                                "yes_ratio": sum(a == "yes" for a in said.values()) / max(len(said), 1)}
        return TaskScores(metrics=metrics, columns=("Accuracy", "yes_ratio"))


def test_a_pope_style_task_runs_on_the_runner(tmp_path, use_generator):
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (8, 8)).save(images / "COCO_1.jpg")
    questions = tmp_path / "coco_pope_random.json"
    rows = [{"question_id": 1, "image": "COCO_1.jpg", "text": "Is there a dog in the image?", "label": "yes"},
            {"question_id": 2, "image": "COCO_1.jpg", "text": "Is there a cat in the image?", "label": "no"},
            {"question_id": 3, "image": "COCO_404.jpg", "text": "Is there a car in the image?", "label": "no"}]
    questions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    use_generator(lambda image, prompt, label: Generation("Yes, there is." if "dog" in prompt else "No.", 3, 0.1))
    settings = RunSettings(
        out=tmp_path / "out", plan=VariantPlan(specs=(VariantSpec("none", "none", "static"),)),
        generation=GenerationSettings(model="tiny", device="cpu", dtype="float32", device_map=None, max_new_tokens=4),
        image_dir=images, builtin_model=True,
    )
    (tmp_path / "out").mkdir()
    report = evaluate(YesNoTask(questions), settings)
    (row,) = report.rows
    assert (row.n, row.errors, row.metrics) == (2, 1, {"Accuracy": 1.0, "yes_ratio": 0.5})
    assert "questions_sha256" in json.loads((tmp_path / "out" / "run.json").read_text())["run"]
    assert (tmp_path / "out" / "yesno_report.md").read_text().count("| none") == 1


def test_a_generating_run_without_generation_settings_is_one_line(tmp_path):
    """A run that generates needs ``generation`` and ``image_dir``; missing, it stops before the folder is claimed."""
    import pytest

    from lvlm_skip.errors import InputError

    questions = tmp_path / "coco_pope_random.json"
    questions.write_text(json.dumps({"question_id": 1, "image": "COCO_1.jpg", "text": "Is there a dog?",
                                     "label": "yes"}) + "\n")
    settings = RunSettings(out=tmp_path / "out", plan=VariantPlan(specs=(VariantSpec("none", "none", "static"),)))
    with pytest.raises(InputError, match="RunSettings.generation and image_dir") as error:
        evaluate(YesNoTask(questions), settings)
    assert "\n" not in str(error.value) and not (tmp_path / "out").exists()
