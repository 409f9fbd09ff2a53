"""The SHA-256 of data and model files, cached by real path, size and modification time.

File digests are cached in ``~/.cache/lvlm_skip/file_digests.json`` (``$LVLM_SKIP_CACHE_DIR``, or
``$XDG_CACHE_HOME/lvlm_skip``), keyed by real path, size and modification time in nanoseconds,
so a 14 GB model is read once, not at every run. **When the cache is trusted**: a file whose real
path, size and mtime (ns) equal a cached entry is taken to be unchanged without being read. Any
ordinary rewrite changes the mtime; what defeats the cache is an edit of the same size whose mtime is
then restored (``touch -r``, ``cp -p`` / ``rsync -t`` of a same-size file over it, a tool that keeps
timestamps, a file system with coarse mtimes). Then pass ``verify=True`` (``--verify-weights`` on the
command line): every file is read and hashed again, and the cache is updated. The data files are
re-hashed that way at the end of every evaluation (they are small).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import InputError

logger = logging.getLogger(__name__)

_CHUNK = 1 << 22


def cache_dir() -> Path:
    """Where file digests are cached (see the module docstring)."""
    if os.environ.get("LVLM_SKIP_CACHE_DIR"):
        return Path(os.environ["LVLM_SKIP_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lvlm_skip"


def _load_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _store_cache(path: Path, entries: dict[str, Any]) -> None:
    """Best effort: an unwritable cache only costs a re-hash next time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(entries))
        os.replace(temporary, path)
    except OSError as error:
        logger.debug("cannot write the digest cache %s: %s", path, error)


def file_sha256s(paths: Sequence[Path], verify: bool = False) -> dict[Path, str]:
    """The SHA-256 (hex) of each file's content, read from the cache when size and mtime match.

    Args:
        paths: The files.
        verify: Read and hash every file even when the cache has it (see the module docstring).

    Raises:
        InputError: a file cannot be read.
    """
    cache_file = cache_dir() / "file_digests.json"
    cache = _load_cache(cache_file)
    digests: dict[Path, str] = {}
    changed = False
    for path in paths:
        real = os.path.realpath(path)
        try:
            info = os.stat(real)
        except OSError as error:
            raise InputError(f"cannot read {str(path)!r}: {error.strerror}") from None
        entry = cache.get(real)
        if (not verify and isinstance(entry, dict) and entry.get("size") == info.st_size
                and entry.get("mtime_ns") == info.st_mtime_ns):
            digests[path] = entry["sha256"]
            continue
        if info.st_size > 1 << 30:
            logger.info("hashing %s (%.1f GB; cached for later runs)", path, info.st_size / 1e9)
        digest = hashlib.sha256()
        try:
            with open(real, "rb") as handle:
                while chunk := handle.read(_CHUNK):
                    digest.update(chunk)
        except OSError as error:
            raise InputError(f"cannot read {str(path)!r}: {error.strerror}") from None
        digests[path] = digest.hexdigest()
        if isinstance(entry, dict) and entry.get("sha256") not in (None, digests[path]) and \
                entry.get("size") == info.st_size and entry.get("mtime_ns") == info.st_mtime_ns:
            logger.warning("%s changed without a change of size or mtime: its cached digest was stale", path)
        cache[real] = {"size": info.st_size, "mtime_ns": info.st_mtime_ns, "sha256": digests[path]}
        changed = True
    if changed:
        _store_cache(cache_file, cache)
    return digests


def file_sha256(path: Path, verify: bool = False) -> str:
    """The SHA-256 (hex) of one file's content (cached unless ``verify``, see :func:`file_sha256s`)."""
    return file_sha256s([Path(path)], verify)[Path(path)]
