"""The images of a Fig. 5 run: the user's files, or generated scenes, checked before any model loads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: Default images: scenes whose colours follow the training prior, and scenes that break it (split, count).
DEFAULT_SCENES = (("test-consistent", 2), ("test-breaking", 2))
SCENE_SEED = 0


@dataclass(frozen=True)
class InputImage:
    """One image of the run.

    Attributes:
        stem: Its unique name in the table, ``results.json`` and ``analysis/``.
        path: The file.
        sha256: The file's SHA-256.
        truth: The scene's ground-truth caption (generated scenes), else ``None``.
    """

    stem: str
    path: Path
    sha256: str
    truth: str | None = None


def given_images(paths: list[str]) -> list[InputImage]:
    """The ``--images`` files, each read once to check it is an image.

    Raises:
        InputError: a file that is missing or not a readable image (one line naming it).
    """
    from lvlm_skip.inputs.models import load_image

    files = [Path(p) for p in paths]
    for path in files:
        load_image(path)
    return _named(files, [None] * len(files))


def default_images(folder: Path) -> list[InputImage]:
    """:data:`DEFAULT_SCENES` drawn into ``folder`` as ``scene-<split>-<index>.png`` (kept if already there)."""
    from lvlm_skip.scenes import generate

    folder.mkdir(parents=True, exist_ok=True)
    files, truths = [], []
    for split, count in DEFAULT_SCENES:
        for scene in generate(split, SCENE_SEED, count):
            path = folder / f"scene-{split}-{scene.index}.png"
            if not path.is_file():
                scene.image.save(path)
            files.append(path)
            truths.append(scene.caption())
    return _named(files, truths)


def _named(files: list[Path], truths: list[str | None]) -> list[InputImage]:
    """Unique stems (``a``, ``a-2``, ...) and file digests."""
    from lvlm_skip.evaluation.fingerprint import file_sha256s

    digests = file_sha256s(files)
    seen: dict[str, int] = {}
    images = []
    for path, truth in zip(files, truths):
        seen[path.stem] = seen.get(path.stem, 0) + 1
        stem = path.stem if seen[path.stem] == 1 else f"{path.stem}-{seen[path.stem]}"
        images.append(InputImage(stem=stem, path=path, sha256=digests[path], truth=truth))
    return images
