"""One writer per run folder: an exclusive ``fcntl.flock`` on ``<folder>/run.lock``.

The lock is advisory and held for the whole run (checking the fingerprint, generating, merging).
The kernel releases it when the holding process ends, however it ends (``kill -9`` included), so
a stale lock file never blocks a later run; the file itself stays and records the last holder.
A second run on the same folder fails at once with the holder's pid, instead of interleaving its
appends with the first run's merge.

In a sharded run (``torchrun`` / ``accelerate launch``) rank 0 holds the lock for the whole group
and tells the other ranks whether they may write (see :mod:`lvlm_skip.evaluation.processes`).

``flock`` works on local file systems; on NFS it may be a no-op depending on the mount.
Where ``fcntl`` does not exist (Windows) the lock is skipped with a warning.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path

from ..errors import InputError

logger = logging.getLogger(__name__)

LOCK_FILE = "run.lock"


class FolderBusyError(InputError):
    """Another run holds the folder's lock."""


class FolderLock:
    """An exclusive lock on a run folder, held from :meth:`acquire` to :meth:`release`.

    Args:
        folder: The run folder (it exists).
        option: The option that named the folder, for the message.
    """

    def __init__(self, folder: Path, option: str = "--out") -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self.option = option
        self._fd: int | None = None

    def acquire(self) -> "FolderLock":
        """Take the lock without waiting, and record this process as its holder.

        Raises:
            FolderBusyError: another process holds it (the message names its pid).
        """
        try:
            import fcntl  # POSIX only: where it is missing the run goes on unlocked
        except ImportError:  # pragma: no cover - not POSIX
            logger.warning("no fcntl on this platform: %s is not locked against a second run", self.folder)
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise FolderBusyError(
                f"{self.option} {str(self.folder)!r} is in use by another run ({holder}): wait for it to finish "
                f"or use another {self.option}"
            ) from None
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Release the lock (closing the descriptor releases the ``flock``)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _holder(fd: int) -> str:
    """``"pid N on HOST since T"`` from the lock file (the holder may not have written it yet)."""
    for _ in range(20):
        try:
            data = json.loads(os.pread(fd, 4096, 0).decode() or "null")
        except (ValueError, OSError):
            data = None
        if isinstance(data, dict) and "pid" in data:
            return f"pid {data['pid']} on {data.get('host', '?')} since {data.get('since', '?')}"
        time.sleep(0.01)
    return "pid unknown"
