"""Export generated scenes as an AMBER-format folder plus COCO-format captions/instances.

Layout written to ``out``::

    annotations.json         AMBER records: ids 1..N generative {truth, hallu}, then yes/no
                             (attribute-state/-number, then hallucination, then relation)
    query/query_all.json     {id, image, query} for every record (+ generative, discriminative,
                             discriminative-existence/-attribute/-relation sub-files)
    relation.json            object word -> associated words (its plural)
    safe_words.txt           words never counted as hallucinations
    images/SCENE_<i>.png     the images (i = 1..N)
    captions.json            COCO captions: images + annotations (canonical caption first,
                             then up to 4 reorderings)
    instances.json           COCO instances: one box per drawn copy, categories = object kinds,
                             with colour/size/position attributes
    vqa.json                 single-word questions {id, image, image_id, type, query, answer}
    scenes.json              full scene metadata (split, seed, objects, background)
    pope/scenes_pope_<s>.json  POPE question files, s = random, popular, adversarial
    hub/pope/<s>.parquet     the same in lmms-lab/POPE's schema; hub/coco_caption/test.parquet the
                             captions in lmms-eval's COCO-Caption2017 schema (:mod:`~lvlm_skip.scenes.hub`;
                             with pope and when ``datasets`` is installed)
                             (:mod:`~lvlm_skip.scenes.pope`; images relative to ``images/``)

The ``hallu`` list of a generative record holds plausible absent objects: the prior partners of
the present objects first (what the co-occurrence prior suggests), then random absent kinds.

:func:`export` never redraws a benchmark in place by accident: a folder that holds anything
(besides its lock file) is refused unless ``overwrite``, which first deletes what an earlier export
wrote (so no stale image survives); the folder's lock (:mod:`lvlm_skip.evaluation.lock`) is held
while it writes, so two exports cannot interleave. An evaluation that reads the folder while it is
redrawn notices at its end: it checks the data files' digests again before it writes its report.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..evaluation.lock import LOCK_FILE, FolderLock
from .catalogue import IMAGE_SIZE, KINDS, OBJECTS
from .hub import write_hub_splits
from .pope import write_pope_files
from .questions import vqa_questions, yes_no_questions
from .sampling import generate
from .scene import Scene

logger = logging.getLogger(__name__)

GENERATIVE_QUERY = "Describe this image."

SAFE_WORDS = ("image", "picture", "scene", "background", "shape", "object", "color", "left",
              "right", "top", "bottom", "center")

QUERY_FILES = {
    "query_discriminative-existence": ("discriminative-hallucination",),
    "query_discriminative-attribute": ("discriminative-attribute-state",
                                       "discriminative-attribute-number"),
    "query_discriminative-relation": ("discriminative-relation",),
}


def image_name(i: int) -> str:
    """File name of the ``i``-th (1-based) exported image."""
    return f"SCENE_{i}.png"


def _hallu_words(scene: Scene, rng: random.Random, extra: int = 2) -> list[str]:
    partners = scene.prior_partners_absent()
    others = [k for k in KINDS if k not in scene.kinds and k not in partners]
    return partners + rng.sample(others, extra)


def _captions(scene: Scene, limit: int = 5) -> list[str]:
    out = [scene.caption()]
    for perm in itertools.permutations(range(len(scene.objects))):
        if len(out) >= limit:
            break
        cap = scene.caption(list(perm))
        if cap not in out:
            out.append(cap)
    return out


def build_records(scenes: list[Scene], seed: int) -> dict[str, Any]:
    """All exported records for a list of scenes (nothing written).

    Args:
        scenes: The scenes, exported as images 1..N in order.
        seed: Seed for the choice of questions and ``hallu`` fillers.

    Returns:
        ``annotations``, ``queries`` (id -> {id, image, query}), ``captions``, ``instances``,
        ``vqa`` and ``scenes`` objects ready to dump.
    """
    rng = random.Random(f"export:{seed}")
    n = len(scenes)
    annotations: list[dict[str, Any]] = []
    queries: list[dict[str, Any]] = []
    for i, sc in enumerate(scenes, 1):
        annotations.append({"id": i, "type": "generative", "truth": sc.kinds,
                            "hallu": _hallu_words(sc, rng)})
        queries.append({"id": i, "image": image_name(i), "query": GENERATIVE_QUERY})
    per_image = [yes_no_questions(sc, rng) for sc in scenes]
    next_id = n + 1
    for types in (QUERY_FILES["query_discriminative-attribute"],
                  QUERY_FILES["query_discriminative-existence"],
                  QUERY_FILES["query_discriminative-relation"]):
        for i, qs in enumerate(per_image, 1):
            for q in qs:
                if q.type in types:
                    annotations.append({"id": next_id, "type": q.type, "truth": q.answer})
                    queries.append({"id": next_id, "image": image_name(i), "query": q.query})
                    next_id += 1
    images = [{"id": i, "file_name": image_name(i), "width": IMAGE_SIZE, "height": IMAGE_SIZE}
              for i in range(1, n + 1)]
    cap_anns, inst_anns, vqa = [], [], []
    for i, sc in enumerate(scenes, 1):
        for cap in _captions(sc):
            cap_anns.append({"id": len(cap_anns) + 1, "image_id": i, "caption": cap})
        for o in sc.objects:
            for (x, y, w, h) in o.boxes:
                inst_anns.append({
                    "id": len(inst_anns) + 1, "image_id": i,
                    "category_id": KINDS.index(o.kind) + 1, "bbox": [x, y, w, h],
                    "area": w * h, "iscrowd": 0,
                    "attributes": {"color": o.color, "size": o.size, "position": o.position,
                                   "count": o.count},
                })
        for q in vqa_questions(sc):
            vqa.append({"id": len(vqa) + 1, "image": image_name(i), "image_id": i,
                        "type": q.type, "query": q.query, "answer": q.answer,
                        "subject": q.subject})
    categories = [{"id": j + 1, "name": k, "supercategory": "object",
                   "typical_color": OBJECTS[k][1], "partner": OBJECTS[k][2]}
                  for j, k in enumerate(KINDS)]
    scene_meta = [{
        "image_id": i, "file_name": image_name(i), "split": sc.split, "seed": sc.seed,
        "index": sc.index, "background": sc.background, "texture": sc.texture,
        "caption": sc.caption(),
        "objects": [{"kind": o.kind, "color": o.color, "count": o.count, "size": o.size,
                     "position": o.position, "typical_color": OBJECTS[o.kind][1],
                     "boxes": [list(b) for b in o.boxes]} for o in sc.objects],
        "absent_partners": sc.prior_partners_absent(),
    } for i, sc in enumerate(scenes, 1)]
    return {
        "annotations": annotations,
        "queries": queries,
        "captions": {"info": {"description": "procedural scenes"}, "images": images,
                     "annotations": cap_anns},
        "instances": {"info": {"description": "procedural scenes"}, "images": images,
                      "annotations": inst_anns, "categories": categories},
        "vqa": vqa,
        "scenes": scene_meta,
    }


def _dump(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1))


#: What :func:`export` writes at the top of its folder (besides ``images/``, ``query/`` and ``pope/``).
TOP_FILES = ("annotations.json", "relation.json", "safe_words.txt", "captions.json", "instances.json", "vqa.json",
             "scenes.json")


def _contents(out: Path) -> list[Path]:
    """What ``out`` holds besides its lock file and the output check's temporary files."""
    if not out.is_dir():
        return []
    return sorted(p for p in out.iterdir() if p.name != LOCK_FILE and not p.name.startswith(".write-check-"))


def _remove_earlier_export(out: Path) -> None:
    """Delete the files an earlier :func:`export` wrote into ``out`` (other files stay, with a warning)."""
    removed = 0
    for name in TOP_FILES:
        if (out / name).is_file():
            (out / name).unlink()
            removed += 1
    for folder, pattern in (("images", "SCENE_*.png"), ("query", "query_*.json"), ("pope", "scenes_pope_*.json")):
        for file in (out / folder).glob(pattern) if (out / folder).is_dir() else ():
            file.unlink()
            removed += 1
    logger.warning("--overwrite: removed the %d file(s) of the earlier export in %s", removed, out)
    left = [p.relative_to(out) for p in out.rglob("*") if p.is_file() and p.name != LOCK_FILE]
    if left:
        logger.warning("%s also holds %d file(s) that are not the scene benchmark's, left as they are (e.g. %s)",
                       out, len(left), left[0])


def export(out: str | Path, n_images: int, seed: int, split: str = "test", pope: bool = True,
           overwrite: bool = False) -> Path:
    """Generate ``n_images`` scenes of ``split`` and write the benchmark folder.

    Args:
        out: Output folder (created).
        n_images: Number of images.
        seed: Split seed.
        split: Scene split (see :data:`~lvlm_skip.scenes.catalogue.SPLITS`).
        pope: Also write the POPE question files into ``out/pope``.
        overwrite: Replace an earlier export in ``out`` (its files are deleted first) instead of refusing.

    Returns:
        The output folder.

    Raises:
        InputError: ``out`` is not empty and ``overwrite`` is false.
        FolderBusyError: another process holds ``out``'s lock (another export).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with FolderLock(out):
        held = _contents(out)
        if held and not overwrite:
            raise InputError(f"--out {str(out)!r} is not empty (it holds {held[0].name}"
                             f"{f' and {len(held) - 1} more' if len(held) > 1 else ''}): use --overwrite to replace "
                             "an earlier benchmark, or another --out")
        if held:
            _remove_earlier_export(out)
        return _write(out, n_images, seed, split, pope)


def _write(out: Path, n_images: int, seed: int, split: str, pope: bool) -> Path:
    scenes = generate(split, seed, n_images)
    rec = build_records(scenes, seed)
    (out / "images").mkdir(parents=True, exist_ok=True)
    for i, sc in enumerate(scenes, 1):
        sc.image.save(out / "images" / image_name(i), format="PNG")
    _dump(out / "annotations.json", rec["annotations"])
    types = {a["id"]: a["type"] for a in rec["annotations"]}
    qdir = out / "query"
    _dump(qdir / "query_all.json", rec["queries"])
    _dump(qdir / "query_generative.json",
          [q for q in rec["queries"] if types[q["id"]] == "generative"])
    _dump(qdir / "query_discriminative.json",
          [q for q in rec["queries"] if types[q["id"]] != "generative"])
    for stem, kinds in QUERY_FILES.items():
        _dump(qdir / f"{stem}.json", [q for q in rec["queries"] if types[q["id"]] in kinds])
    _dump(out / "relation.json", {k: [OBJECTS[k][0]] for k in KINDS})
    (out / "safe_words.txt").write_text("\n".join(SAFE_WORDS) + "\n")
    _dump(out / "captions.json", rec["captions"])
    _dump(out / "instances.json", rec["instances"])
    _dump(out / "vqa.json", rec["vqa"])
    _dump(out / "scenes.json", rec["scenes"])
    if pope:
        write_pope_files(out / "pope", scenes, seed, [image_name(i) for i in range(1, n_images + 1)])
        try:
            import datasets  # noqa: F401 - the eval extra, optional: is it installed?
        except ImportError:
            logger.info("datasets is not installed: hub/ (POPE and captions as parquet) not written")
        else:
            write_hub_splits(out)
    logger.info("exported %d %s scenes (seed %d, %d records) to %s", n_images, split, seed,
                len(rec["annotations"]), out)
    return out
