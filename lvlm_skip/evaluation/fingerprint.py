"""What changes an evaluation's answers, recorded per run folder so that runs are never mixed.

A :class:`RunFingerprint` has two parts, stored in ``<out>/run.json``:

* ``run``, shared by every variant of the folder: the task and its answer-changing settings (a
  caption prompt), the model's identity (the SHA-256 of its weight, config and tokenizer files'
  *content*, so a retrained model in the same folder is a different model and a copied one is
  the same), the generation settings (``max_new_tokens``, greedy decoding, dtype, device type),
  the data identity (the SHA-256 of the files that define the items and prompts, and the image
  folder) and the versions of lvlm_skip and transformers;
* ``variants``, one entry per variant label: its variant and mode, its resolved ``wrap`` options
  and the SHA-256 of the ``--profile`` file it uses.

A rerun into the same folder must match ``run`` and the entries of the variants it asks for; a new
variant is added to the folder (a common workflow: add ``skip3`` to a finished run). Paths that
have a digest beside them (the model folder, the data files) are recorded for the reader and never
compared: the same weights elsewhere are the same model.

File digests are cached (:mod:`lvlm_skip.data.digests`, which says when the cache is trusted);
``verify=True`` (``--verify-weights``) reads and hashes every file again. The data files are re-hashed
that way at the end of every evaluation (they are small).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..data.digests import cache_dir, file_sha256, file_sha256s
from ..errors import InputError

logger = logging.getLogger(__name__)

FINGERPRINT_FILE = "run.json"
FORMAT_VERSION = 1
#: Recorded for the reader, never compared. So is every key ``k`` that has a digest ``k_sha256``
#: beside it (the model's folder, a data file's path): the content decides, not where it lies.
INFORMATIONAL = frozenset({"model_files"})
#: Files of a model folder that change its answers (besides the weights, matched by suffix).
MODEL_FILE_NAMES = frozenset({
    "config.json", "generation_config.json", "preprocessor_config.json", "processor_config.json",
    "image_processor_config.json", "video_preprocessor_config.json", "tokenizer.json", "tokenizer_config.json",
    "special_tokens_map.json", "added_tokens.json", "vocab.json", "vocab.txt", "merges.txt", "tokenizer.model",
    "spiece.model", "chat_template.json", "chat_template.jinja",
})
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".index.json")


# ------------------------------------------------------------------------------------ identities


def model_files(folder: Path) -> list[Path]:
    """The files of a model folder that change its answers: weights, config, tokenizer, processor, template."""
    return sorted(
        p for p in Path(folder).iterdir()
        if p.is_file() and (p.name in MODEL_FILE_NAMES or p.name.endswith(WEIGHT_SUFFIXES))
    )


def model_identity(model: str, builtin: Sequence[str] = (), verify: bool = False) -> dict[str, Any]:
    """``model`` (informational), ``model_sha256`` and ``model_files`` (informational, per file).

    A built-in model (``tiny``, ``bench-llava``) is identified by its name: it is built from code,
    seeded, and the package version is part of the fingerprint. ``verify``: re-hash every file,
    ignoring the digest cache (``--verify-weights``).

    Raises:
        InputError: the folder does not exist or a file cannot be read.
    """
    if model in builtin:
        return {"model": model, "model_sha256": f"builtin:{model}"}
    folder = Path(model)
    if not folder.is_dir():
        raise InputError(f"model folder {model!r} does not exist (only local folders, no hub download)")
    files = model_files(folder)
    if not files:
        logger.warning("%s has no weight or config files that lvlm_skip knows: its identity is its name only", folder)
    digests = file_sha256s(files, verify)
    per_file = {p.name: digests[p] for p in files}
    combined = hashlib.sha256(json.dumps(per_file, sort_keys=True).encode()).hexdigest()
    return {"model": str(folder.resolve()), "model_sha256": combined, "model_files": per_file}


def data_identity(files: Mapping[str, Path], verify: bool = False) -> dict[str, Any]:
    """``{role}`` (informational path) and ``{role}_sha256`` for each data file that defines the items."""
    digests = file_sha256s(list(files.values()), verify)
    identity: dict[str, Any] = {}
    for role, path in files.items():
        identity[role] = str(Path(path).resolve())
        identity[f"{role}_sha256"] = digests[path]
    return identity


def package_versions() -> dict[str, str]:
    """The versions of lvlm_skip and transformers (a new transformers can change generation)."""
    try:
        transformers_version = version("transformers")
    except PackageNotFoundError:  # pragma: no cover
        transformers_version = "absent"
    return {"lvlm_skip_version": __version__, "transformers_version": transformers_version}


# ----------------------------------------------------------------------------------- comparison


@dataclass(frozen=True)
class RunFingerprint:
    """What changes the answers of a run folder (see the module docstring).

    Attributes:
        run: Key -> JSON value, shared by every variant of the folder.
        variants: Variant label -> (key -> JSON value).
    """

    run: Mapping[str, Any]
    variants: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT_VERSION, "run": dict(self.run), "variants": {k: dict(v) for k, v in self.variants.items()}}

    @classmethod
    def from_dict(cls, data: Any) -> "RunFingerprint":
        """Raises ``ValueError`` when ``data`` is not a fingerprint of this format."""
        if not isinstance(data, dict) or data.get("format") != FORMAT_VERSION or not isinstance(data.get("run"), dict):
            raise ValueError("not a run fingerprint of this version")
        return cls(run=data["run"], variants=data.get("variants") or {})

    @classmethod
    def load(cls, folder: Path) -> "RunFingerprint | None":
        """The fingerprint stored in ``folder`` (``None`` if there is none; ``ValueError`` if unreadable)."""
        path = Path(folder) / FINGERPRINT_FILE
        if not path.is_file():
            return None
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (OSError, ValueError) as error:
            raise ValueError(f"{path} is unreadable ({error})") from None

    def save(self, folder: Path) -> None:
        """Write ``run.json`` atomically."""
        path = Path(folder) / FINGERPRINT_FILE
        temporary = path.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(self.to_dict(), indent=1, sort_keys=False) + "\n")
        os.replace(temporary, path)

    def merged_with(self, other: "RunFingerprint") -> "RunFingerprint":
        """This fingerprint with ``other``'s run part and ``other``'s variants added or replaced."""
        return RunFingerprint(run=other.run, variants={**self.variants, **other.variants})


@dataclass(frozen=True)
class Difference:
    """One key whose stored value differs from the requested one."""

    key: str
    stored: Any
    requested: Any

    def describe(self) -> str:
        return f"{self.key}={_show(self.stored)}, not {_show(self.requested)}"


def _show(value: Any) -> str:
    """A value for a one-line message: digests shortened, long texts cut in the middle (paths keep their end)."""
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return value[:12] + "…"
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= 60 else text[:20] + "…" + text[-39:]


def _compared(key: str, stored: Mapping[str, Any], requested: Mapping[str, Any]) -> bool:
    digest = f"{key}_sha256"
    return key not in INFORMATIONAL and digest not in stored and digest not in requested


def differences(stored: Mapping[str, Any], requested: Mapping[str, Any]) -> list[Difference]:
    """Compared keys (see :data:`INFORMATIONAL`) whose values differ, in the requested fingerprint's order."""
    keys = list(dict.fromkeys([*requested, *stored]))
    return [Difference(k, stored.get(k), requested.get(k)) for k in keys
            if _compared(k, stored, requested) and stored.get(k) != requested.get(k)]


def explain(diffs: Sequence[Difference], stored: Mapping[str, Any], requested: Mapping[str, Any]) -> str:
    """The first difference, with the files behind a digest that differs, and how many more there are."""
    first = diffs[0]
    text = first.describe()
    if first.key == "model_sha256":
        old, new = stored.get("model_files") or {}, requested.get("model_files") or {}
        changed = sorted(n for n in {*old, *new} if old.get(n) != new.get(n))
        if changed:
            text += f" ({', '.join(changed[:3])}{', …' if len(changed) > 3 else ''} differ)"
    elif first.key.endswith("_sha256"):
        role = first.key[: -len("_sha256")]
        if stored.get(role) != requested.get(role):
            text += f" ({Path(str(stored.get(role))).name}, not {Path(str(requested.get(role))).name})"
    if len(diffs) > 1:
        text += f", and {len(diffs) - 1} more setting(s)"
    return text
