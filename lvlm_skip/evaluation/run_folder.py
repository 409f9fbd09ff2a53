"""Claiming a run folder: its lock, and the fingerprint check that keeps runs from mixing.

:meth:`RunFolder.claim` runs under the folder's lock (:mod:`lvlm_skip.evaluation.lock`), before
the model is loaded:

* a folder without answers gets the requested fingerprint (whatever it held before: with no
  answers there is nothing to mix, e.g. after a run that failed to load its model);
* a folder whose fingerprint (:mod:`lvlm_skip.evaluation.fingerprint`) differs in its shared part,
  or in a requested variant's part, is refused with one line naming what differs, e.g.
  ``--out 'runs/x' holds results made with max_new_tokens=512, not 64: use --overwrite or another --out``;
* with ``--overwrite`` the answers that do not match are discarded instead (all of them when the
  shared part differs, else those of the differing variants), after a log line saying so;
* variants that are new to the folder, or have no answers in it, take the requested settings;
  variants that are stored but not requested keep their answers;
* answers in a folder without a fingerprint file are refused the same way.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import InputError
from .fingerprint import FINGERPRINT_FILE, RunFingerprint, differences, explain
from .lock import FolderLock
from .records import answer_files, merge_answers, read_answers

logger = logging.getLogger(__name__)


class FingerprintMismatch(InputError):
    """The folder holds answers made with other settings."""


class RunFolder:
    """The output folder of an evaluation, held by this process from :meth:`claim` to :meth:`release`.

    Args:
        path: The folder (it exists and is writable: :func:`lvlm_skip.inputs.paths.check_output_dir`).
        option: The option that named it, for messages.
    """

    def __init__(self, path: Path, option: str = "--out") -> None:
        self.path = Path(path)
        self.option = option
        self.lock = FolderLock(self.path, option)

    def _refuse(self, what: str) -> FingerprintMismatch:
        return FingerprintMismatch(f"{self.option} {str(self.path)!r} holds {what}: use --overwrite or another {self.option}")

    def _answer_counts(self) -> dict[str, int]:
        """Records per variant label, over every answers file."""
        counts: dict[str, int] = {}
        for file in answer_files(self.path):
            for record in read_answers(file):
                counts[record.variant] = counts.get(record.variant, 0) + 1
        return counts

    def _discard_all(self, why: str) -> None:
        logger.warning("--overwrite: discarding the %d answer(s) in %s (%s)", sum(self._answer_counts().values()),
                       self.path, why)
        for file in answer_files(self.path):
            file.unlink()
        (self.path / FINGERPRINT_FILE).unlink(missing_ok=True)

    def claim(self, requested: RunFingerprint, overwrite: bool = False) -> RunFingerprint:
        """Lock the folder, check ``requested`` against what it holds, and record it.

        Returns:
            The fingerprint now stored (the requested one, plus stored variants not requested).

        Raises:
            FolderBusyError: another run holds the folder.
            FingerprintMismatch: the folder holds answers made with other settings (without ``overwrite``).
        """
        self.lock.acquire()
        try:
            return self._claim(requested, overwrite)
        except BaseException:
            self.release()
            raise

    def _claim(self, requested: RunFingerprint, overwrite: bool) -> RunFingerprint:
        counts = self._answer_counts()
        if not counts:  # nothing to mix: whatever fingerprint is there gives way
            requested.save(self.path)
            return requested
        try:
            stored = RunFingerprint.load(self.path)
        except ValueError as error:
            if not overwrite:
                raise self._refuse(f"answers with an unreadable run fingerprint ({error})") from None
            stored = None
        if stored is None:
            if not overwrite:
                raise self._refuse(f"answers without a run fingerprint ({FINGERPRINT_FILE}; written by an older version)")
            self._discard_all(f"no readable {FINGERPRINT_FILE}")
            requested.save(self.path)
            return requested
        # 1. the shared part: model, generation, data, task, versions
        diffs = differences(stored.run, requested.run)
        if diffs:
            why = explain(diffs, stored.run, requested.run)
            if not overwrite:
                raise self._refuse(f"results made with {why}")
            self._discard_all(f"made with {why}")
            requested.save(self.path)
            return requested
        # 2. each requested variant that has answers in the folder
        stale: dict[str, str] = {}
        for label, settings in requested.variants.items():
            if counts.get(label) and label in stored.variants:
                variant_diffs = differences(stored.variants[label], settings)
                if variant_diffs:
                    stale[label] = explain(variant_diffs, stored.variants[label], settings)
            elif counts.get(label):  # answers, but no recorded settings: cannot be trusted
                stale[label] = "no recorded settings"
        if stale and not overwrite:
            label, why = next(iter(stale.items()))
            raise self._refuse(f"{label} answers made with {why}")
        if stale:
            for label, why in stale.items():
                logger.warning("--overwrite: discarding the %d %s answer(s) in %s (made with %s)", counts[label], label,
                               self.path, why)
            merge_answers(self.path, [], drop_variants=stale)
        fingerprint = stored.merged_with(requested)
        fingerprint.save(self.path)
        return fingerprint

    def release(self) -> None:
        self.lock.release()
