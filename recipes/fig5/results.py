"""What a Fig. 5 run produced, and ``results.json``, which lets a rerun generate only what is missing.

``results.json`` holds

* ``settings``: everything that changes the descriptions (:class:`RunSettings`): the model's
  identity (SHA-256 of its weight, config and tokenizer files), the prompt, the generation length,
  the device type, the mode, skip positions and layers, the profile's SHA-256 and the versions of
  lvlm_skip and transformers;
* ``layers``: the layers and where they come from, in words (:meth:`Fig5Layers.to_dict`);
* ``images``: per image, the description of each variant (:class:`ImageResult`).

A rerun into the same folder reuses an image's variants when its settings are equal and the image
file has the same SHA-256; runs with other ``--variants`` share the folder. Other settings are
never mixed in: the rerun exits with one line naming the first difference, unless ``--overwrite``
discards the old results. The file is rewritten atomically after every image, so a killed run
keeps everything finished before it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lvlm_skip.errors import InputError

RESULTS_FILE = "results.json"
FORMAT = "recipes.fig5/2"


@dataclass
class VariantResult:
    """One greedy description and what the variant skipped.

    Attributes:
        text: The generated text.
        num_tokens: Generated tokens.
        seconds: Wall time of ``generate``.
        skipped_step0: Layers skipped at step 0 (the prompt's last position).
        skipped_any: Layers skipped at some step.
        mean_skipped: Mean number of layers skipped per step.
        calibration: Static mode without given layers: the critical and mutation layers measured on
            the prompt (``critical``, ``mutation``, ``jsd``); else ``{}``.
        notes: What ``lvlm_skip`` noted, e.g. measured layers that leave the variant nothing to skip.
    """

    text: str
    num_tokens: int
    seconds: float
    skipped_step0: list[int] = field(default_factory=list)
    skipped_any: list[int] = field(default_factory=list)
    mean_skipped: float = 0.0
    calibration: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class ImageResult:
    """All variants of one image.

    Attributes:
        stem: The image's name in the table and under ``analysis/`` (unique within a run).
        path: The image file.
        image_sha256: SHA-256 of the image file (a changed file is described again).
        truth: The scene's ground-truth caption (generated scenes only).
        variants: Variant name -> its description.
        analysis: The original model's trace summary (:func:`recipes.fig5.generation.analyse`), or ``{}``.
    """

    stem: str
    path: str
    image_sha256: str = ""
    truth: str | None = None
    variants: dict[str, VariantResult] = field(default_factory=dict)
    analysis: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict) -> "ImageResult":
        variants = {name: VariantResult(**entry) for name, entry in data.get("variants", {}).items()}
        return cls(stem=data["stem"], path=data["path"], image_sha256=data.get("image_sha256", ""),
                   truth=data.get("truth"), variants=variants, analysis=data.get("analysis", {}))


@dataclass(frozen=True)
class RunSettings:
    """Everything that changes the descriptions (see the module docstring).

    Attributes:
        model: The model folder or built-in name (informational: ``model_sha256`` decides).
        model_sha256: The model's identity (:func:`lvlm_skip.evaluation.fingerprint.model_identity`).
        prompt: The instruction.
        max_new_tokens: Generation length limit (greedy decoding).
        device_type: ``cpu`` or ``cuda``.
        mode, positions, critical, mutation, keep_last: The layers (:class:`~recipes.fig5.layers.Fig5Layers`).
        profile: The ``--profile`` path (informational: ``profile_sha256`` decides).
        profile_sha256: The profile file's SHA-256, or ``None``.
        versions: ``lvlm_skip_version`` and ``transformers_version``.
        model_files: Per-file digests of the model folder (informational).
    """

    model: str
    model_sha256: str
    prompt: str
    max_new_tokens: int
    device_type: str
    mode: str
    positions: str
    critical: int | None
    mutation: tuple[int, ...] | None
    keep_last: int
    profile: str | None = None
    profile_sha256: str | None = None
    versions: dict = field(default_factory=dict)
    model_files: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["mutation"] = list(self.mutation) if self.mutation is not None else None
        versions = data.pop("versions")
        model_files = data.pop("model_files")
        return {**data, **versions, "model_files": model_files}


class ResultsFile:
    """``<out>/results.json``: the finished images of this run's settings.

    Args:
        folder: The output folder.
        settings: This run's settings.
        layers: The layer description stored beside them.
        images: Image stem -> result, the finished ones first.
    """

    def __init__(self, folder: Path, settings: RunSettings, layers: dict, images: dict[str, ImageResult] | None = None):
        self.path = Path(folder) / RESULTS_FILE
        self.settings = settings
        self.layers = layers
        self.images: dict[str, ImageResult] = images or {}

    @classmethod
    def open(cls, folder: Path, settings: RunSettings, layers: dict, overwrite: bool = False) -> "ResultsFile":
        """The folder's results if they were made with ``settings``; none if there are none or ``overwrite``.

        Raises:
            InputError: the file is unreadable or was made with other settings (and not ``overwrite``).
        """
        from lvlm_skip.evaluation.fingerprint import differences, explain

        results = cls(folder, settings, layers)
        if overwrite or not results.path.is_file():
            return results
        try:
            data = json.loads(results.path.read_text())
            stored = data["settings"]
            images = {stem: ImageResult.from_dict(entry) for stem, entry in data.get("images", {}).items()}
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise InputError(f"{results.path} is not a readable Fig. 5 result ({type(error).__name__}); "
                             "use --overwrite to replace it, or another --out") from None
        requested = settings.to_dict()
        diffs = differences(stored, requested)
        if diffs:
            raise InputError(f"{results.path} was made with other settings ({explain(diffs, stored, requested)}); "
                             "use --overwrite to discard it, or another --out")
        results.images = images
        return results

    def finished(self, stem: str, image_sha256: str) -> ImageResult | None:
        """The stored result of this image file, if any."""
        result = self.images.get(stem)
        return result if result is not None and result.image_sha256 == image_sha256 else None

    def save(self) -> None:
        """Rewrite the file atomically (a killed run leaves the previous complete file)."""
        payload = {"format": FORMAT, "settings": self.settings.to_dict(), "layers": self.layers,
                   "images": {stem: asdict(r) for stem, r in self.images.items()}}
        temporary = self.path.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(_plain(payload), indent=1) + "\n")
        os.replace(temporary, self.path)


def _plain(value):
    """numpy scalars and arrays inside dicts and lists -> plain Python (JSON-ready)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    return value
