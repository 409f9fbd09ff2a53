"""``lvlm_skip.profile(...)``: trace N prompts and aggregate a model's layer profile.

Every prompt is answered greedily by :func:`lvlm_skip.trace`, which detects each generated token's
critical and mutation layers (:mod:`lvlm_skip.detection`). The detections of all tokens, and of the
content-word tokens alone, become a :class:`~lvlm_skip.profiles.LayerProfile` with the model's
``c`` and ``M`` chosen by :func:`~lvlm_skip.profiles.choose_layers`.

*Content words* are the object words the data's annotations name: AMBER's (and the scene
benchmark's) annotation vocabulary (truth / hallucination words, ``relation.json``), COCO's CHAIR
object words, POPE's probed objects. A token counts as a content token when it is the first
token of a generated word that is one of them (lower-cased; a plural whose singular is one counts).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from tqdm.auto import tqdm

from .. import __version__
from ..anatomy import ModelAnatomy, eos_token_ids
from ..config import DataFormat, DetectionConfig, ReadoutName
from ..data.amber import check_queries, load_amber, load_queries
from ..data.coco_captions import load_captions
from ..data.coco_objects import object_words
from ..data.digests import file_sha256s
from ..data.pope import read_pope_questions
from ..errors import InputError
from ..inputs.models import chat_prompt, encode_inputs, is_vision_language, load_image, tokenizer_of
from ..inputs.paths import resolve_under
from ..tracing import trace
from .profile import LayerProfile, LayerStatistics, choose_layers

logger = logging.getLogger(__name__)

#: The paper's caption prompt (§3.1), used when the data does not give one.
PAPER_PROMPT = "Please describe this image in detail."
DATA_FORMATS: tuple[str, ...] = get_args(DataFormat)


@dataclass(frozen=True)
class ProfileItem:
    """One prompt to trace: an image (file path, PIL image, or None for text-only models) and its prompt."""

    image: object
    prompt: str


@dataclass
class ProfileData:
    """Prompts and the content words of a data folder.

    Attributes:
        items: The prompts.
        content_words: Lower-cased object words the annotations name (empty: no content-word statistics).
        provenance: What the data is (format, root, files and their digests, N).
    """

    items: list[ProfileItem]
    content_words: frozenset[str] = frozenset()
    provenance: dict = field(default_factory=dict)


def load_profile_data(root: str | Path, *, data_format: DataFormat | Literal["auto"] = "auto", image_dir: str | Path | None = None,
                      limit: int | None = None, prompt: str | None = None,
                      image_option: str = "image_dir") -> ProfileData:
    """The first ``limit`` prompts of an AMBER-, COCO- or POPE-format folder (the scene benchmark is AMBER format).

    * ``amber``: ``query/query_generative.json`` (its query, or ``prompt``), content words = the
      annotation vocabulary; images under ``image_dir`` (default ``root/images``, else AMBER's own
      layout's sibling ``root/../image`` when ``root`` is named ``data``, else ``root``).
    * ``coco``: ``captions.json`` (or the single ``captions*.json``), ``prompt`` (default the paper's),
      content words = CHAIR's COCO object words.
    * ``pope``: every ``*.json`` question file under ``root`` (or ``root/pope``), the question as prompt,
      content words = the probed objects.

    ``image_option`` is what an error calls the image folder: the Python argument ``image_dir``, or
    the CLI's ``--image-dir``.

    Raises:
        InputError: a missing folder or file, an unknown or undetectable format.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"data folder {str(root)!r} does not exist")
    data_format = _detect_format(root) if data_format == "auto" else data_format
    if data_format not in DATA_FORMATS:
        raise InputError(f"unknown data format {data_format!r}; use auto, {', '.join(DATA_FORMATS)}")
    images = Path(image_dir) if image_dir else _default_image_dir(root)
    if data_format == "amber":
        amber = load_amber(root)
        queries = load_queries(root, "g")
        check_queries(queries, amber)
        files = [root / "query" / "query_generative.json", root / "annotations.json", root / "relation.json"]
        pairs = [(q["image"], prompt or q["query"]) for q in queries]
        words = frozenset(w.lower() for w in amber.vocabulary() if w.isalpha())
    elif data_format == "coco":
        captions = root / "captions.json"
        if not captions.is_file():
            found = sorted(root.glob("captions*.json"))
            if len(found) != 1:
                raise InputError(f"{str(root)!r} has no captions.json (nor a single captions*.json)")
            captions = found[0]
        files = [captions]
        pairs = [(image.file_name, prompt or PAPER_PROMPT) for image in load_captions(captions).images]
        words = object_words()
    else:
        folder = root / "pope" if (root / "pope").is_dir() else root
        files = sorted(folder.glob("*pope*.json")) or sorted(folder.glob("*.json"))
        if not files:
            raise InputError(f"{str(folder)!r} holds no POPE question file (*.json)")
        questions = [q for path in files for q in read_pope_questions(path)]
        pairs = [(q.image, prompt or q.text) for q in questions]
        words = frozenset(_probed_object(q.text) for q in questions) - {""}
    pairs = pairs[:limit] if limit else pairs
    items = [ProfileItem(resolve_under(images, name, what="image", root_option=image_option), text) for name, text in pairs]
    digests = file_sha256s(files)
    provenance = {"format": data_format, "root": str(root), "image_dir": str(images), "n": len(items),
                  "files": {str(p.relative_to(root)) if p.is_relative_to(root) else str(p): d for p, d in digests.items()}}
    return ProfileData(items=items, content_words=words, provenance=provenance)


def _default_image_dir(root: Path) -> Path:
    """Where a data folder's images are when ``image_dir`` is not given: ``root/images`` (the scene
    benchmark), else the sibling ``image/`` of AMBER's release (``AMBER/data`` + ``AMBER/image``), else ``root``."""
    if (root / "images").is_dir():
        return root / "images"
    if root.name == "data" and (root.parent / "image").is_dir():
        return root.parent / "image"
    return root


def _probed_object(question: str) -> str:
    """The object a POPE question probes: "Is there a dining table in the image?" -> "table" (its last word)."""
    words = question.lower().rstrip("?").split()
    if "in" in words:
        words = words[: words.index("in")]
    return words[-1] if len(words) > 2 else ""


def _detect_format(root: Path) -> str:
    if (root / "query" / "query_generative.json").is_file():
        return "amber"
    if (root / "captions.json").is_file() or list(root.glob("captions*.json")):
        return "coco"
    if list(root.glob("*pope*.json")) or (root / "pope").is_dir():
        return "pope"
    raise InputError(f"cannot tell the format of {str(root)!r}: no query/query_generative.json (AMBER), "
                     "captions*.json (COCO) or *pope*.json (POPE); pass --format")


def content_token_mask(tokenizer, token_ids: Sequence[int], content_words: frozenset[str]) -> np.ndarray:
    """`(tokens,)` bool: the tokens that start a generated word in ``content_words``.

    Word boundaries come from decoding the growing prefix, so any tokenizer works: a token starts a
    word when the text it adds starts with white space (or it is the first token).
    """
    mask = np.zeros(len(token_ids), dtype=bool)
    if not content_words:
        return mask
    texts = [tokenizer.decode(list(token_ids[: k + 1]), skip_special_tokens=True) for k in range(len(token_ids))]
    starts = [k for k in range(len(token_ids)) if k == 0 or (texts[k][len(texts[k - 1]):][:1].isspace())]
    for i, k in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(token_ids)
        word = texts[end - 1][len(texts[k - 1]) if k else 0:].strip().strip(".,;:!?\"'()").lower()
        if word in content_words or (word.endswith("s") and word[:-1] in content_words):
            mask[k] = True
    return mask


def profile(
    model,
    processor,
    data: str | Path | Iterable[ProfileItem] | ProfileData,
    *,
    content_words: Iterable[str] = (),
    data_format: DataFormat | Literal["auto"] = "auto",
    image_dir: str | Path | None = None,
    limit: int | None = 50,
    prompt: str | None = None,
    max_new_tokens: int = 64,
    detection: DetectionConfig | None = None,
    readout: ReadoutName = "normed",
    rule: dict | None = None,
    progress: bool = False,
    batch_size: int | None = 1,
) -> LayerProfile:
    """Trace prompts and return the model's :class:`~lvlm_skip.profiles.LayerProfile`.

    Args:
        model: A supported HF model.
        processor: Its processor (or tokenizer for text-only models).
        data: A data folder (AMBER / COCO / POPE format, see :func:`load_profile_data`), a
            :class:`ProfileData`, or :class:`ProfileItem` s.
        content_words: Object words for the content-word statistics when ``data`` is items.
        data_format, image_dir, limit, prompt: For a data folder (``limit``: the first N prompts).
        max_new_tokens: Generation length per prompt.
        detection: Critical / mutation thresholds (default ``DetectionConfig()``).
        readout: ``"normed"`` or ``"raw"``.
        rule: Keyword arguments of :func:`~lvlm_skip.profiles.choose_layers`.
        progress: A progress bar over the prompts.
        batch_size: Prompts traced per ``generate`` call (left-padded, sorted by prompt length), or
            ``None``: 1 on CPU, 16 on CUDA, halved when a batch runs out of memory. The profile does
            not depend on it: each row's detections are cut at its own length.

    Returns:
        The profile (save it with ``.save("profile.json")``).
    """
    if isinstance(data, (str, Path)):
        data = load_profile_data(data, data_format=data_format, image_dir=image_dir, limit=limit, prompt=prompt)
    elif not isinstance(data, ProfileData):
        data = ProfileData(items=list(data)[:limit] if limit else list(data),
                           content_words=frozenset(w.lower() for w in content_words), provenance={"format": "items"})
    if not data.items:
        raise InputError("no prompt to profile")
    detection = detection or DetectionConfig()
    anatomy = ModelAnatomy.from_model(model)
    vision = is_vision_language(model)
    tokenizer = tokenizer_of(processor)
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise InputError(f"batch_size must be a positive integer or None (automatic), got {batch_size!r}")
    size = batch_size or (16 if model.device.type == "cuda" else 1)
    order = sorted(range(len(data.items)), key=lambda i: len(data.items[i].prompt)) if size > 1 else list(range(len(data.items)))
    rows: dict[int, tuple] = {}
    bar = tqdm(total=len(order), desc="profile", unit="prompt", disable=not progress)
    eos = eos_token_ids(model)
    start = 0
    while start < len(order):
        chunk = [data.items[i] for i in order[start:start + size]]
        try:
            result = _trace_batch(model, processor, chunk, vision, max_new_tokens, readout, detection)
        except RuntimeError as error:  # torch.cuda.OutOfMemoryError is a RuntimeError
            if "out of memory" not in str(error).lower() or size == 1:
                raise
            size //= 2
            logger.warning("profile: a batch ran out of memory; going on with batches of %d", size)
            continue
        for row, index in enumerate(order[start:start + len(chunk)]):
            n = int(result.lengths[row])
            ids = result.token_ids[row, :n].tolist()
            if n and ids[-1] in eos:
                n -= 1  # the end-of-sequence token predicts no word
            rows[index] = (result.critical[row, :n], result.mutation[row, :n],
                           content_token_mask(tokenizer, ids[:n], data.content_words))
        start += len(chunk)
        bar.update(len(chunk))
    bar.close()
    critical = [rows[i][0] for i in range(len(data.items))]  # in the data's order, whatever the batches
    mutation = [rows[i][1] for i in range(len(data.items))]
    content = [rows[i][2] for i in range(len(data.items))]
    critical_all, mutation_all, content_all = np.concatenate(critical), np.concatenate(mutation), np.concatenate(content)
    statistics = {"all": LayerStatistics.from_detections(critical_all, mutation_all)}
    if data.content_words:
        statistics["content"] = LayerStatistics.from_detections(critical_all[content_all], mutation_all[content_all])
    c, m, applied = choose_layers(statistics, **(rule or {}))
    provenance = {
        "model": {"class": type(model).__name__, "name_or_path": getattr(model.config, "_name_or_path", ""),
                  "num_layers": anatomy.num_layers},
        "data": data.provenance,
        "generation": {"max_new_tokens": max_new_tokens, "prompt": prompt, "decoding": "greedy"},  # not the batch size: the profile does not depend on it
        "detection": asdict(detection),
        "readout": readout,
        "lvlm_skip": __version__,
    }
    logger.info("profile: %d tokens (%d content), critical layer %d, mutation layers %s",
                statistics["all"].tokens, statistics.get("content", statistics["all"]).tokens, c, list(m))
    return LayerProfile(critical_layer=c, mutation_layers=m, num_layers=anatomy.num_layers, statistics=statistics,
                        rule=applied, provenance=provenance)




def _trace_batch(model, processor, items: Sequence[ProfileItem], vision: bool, max_new_tokens: int, readout, detection):
    """One left-padded :func:`~lvlm_skip.tracing.trace` of a batch of prompts (its rows' lengths are their own)."""
    images = [load_image(i.image) if isinstance(i.image, (str, Path)) else i.image for i in items] if vision else None
    texts = [chat_prompt(processor, item.prompt, with_image=images is not None) for item in items]
    inputs = encode_inputs(processor, texts, images, model)
    return trace(model, inputs, processor=processor, max_new_tokens=max_new_tokens, top_k=1, readout=readout,
                 detection=detection)
