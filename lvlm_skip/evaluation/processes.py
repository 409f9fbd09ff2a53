"""The processes of a run: one, or the ranks of ``torchrun`` / ``accelerate launch``.

**Launching N processes on CPU.** ``torchrun --nproc_per_node N`` and ``accelerate launch
--multi_gpu --num_processes N`` (accelerate's multi-GPU launcher is torchrun; on a machine without
CUDA its ranks run on the CPU) both start N ranks. ``accelerate launch --cpu --num_processes N``
does not: accelerate 1.16 starts CPU ranks only through ``mpirun`` (an MPI config), and otherwise
runs one process; :func:`current_processes` then warns that the run is unsharded.

Under a launcher (``WORLD_SIZE`` > 1) every process answers every ``world``-th item
(:func:`shard_items`) into its own ``responses.rank{R}.jsonl``; rank 0 holds the folder's lock,
checks the fingerprint and tells the others (:meth:`Processes.broadcast`) whether to go on, and
after a barrier it merges and scores. A single process needs none of this and imports no torch
distributed machinery (so a fake-generator run starts in a fraction of a second).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class Processes:
    """This process's place in the run.

    Attributes:
        rank: This process's index, ``0 <= rank < world``.
        world: Number of processes.
        device: The device this rank should use under a launcher (``cuda:N`` / ``cpu``), else ``None``.
    """

    rank: int = 0
    world: int = 1
    device: str | None = None
    _state: Any = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        """Wait until every process gets here."""
        if self._state is not None:
            self._state.wait_for_everyone()

    def broadcast(self, value: T) -> T:
        """Rank 0's ``value``, on every rank (pickled)."""
        if self._state is None:
            return value
        import torch.distributed as dist  # on the --help import path, which loads no torch

        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def current_processes() -> Processes:
    """The processes of this run: a single one unless ``WORLD_SIZE`` > 1 (then accelerate's state).

    ``PartialState(cpu=True)`` where there is no GPU: without it accelerate ignores ``WORLD_SIZE``
    on a CPU machine and every process of ``torchrun`` would think it is alone.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        if os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true") and os.environ.get("MASTER_PORT"):
            logger.warning("accelerate launch --cpu started one process (accelerate runs several CPU processes only "
                           "through mpirun): running unsharded; for N CPU processes use `accelerate launch --multi_gpu "
                           "--num_processes N` or `torchrun --nproc_per_node N`")
        return Processes()
    import torch  # on the --help import path, which loads no torch
    from accelerate import PartialState  # loads torch, as above

    state = PartialState(cpu=not torch.cuda.is_available())
    if state.num_processes <= 1:
        logger.warning("WORLD_SIZE > 1 but accelerate sees one process: running unsharded")
        return Processes()
    return Processes(rank=state.process_index, world=state.num_processes, device=str(state.device), _state=state)


def shard_items(items: Sequence[T], rank: int, world: int) -> list[T]:
    """The items of process ``rank``: every ``world``-th item from position ``rank``.

    Raises:
        ValueError: ``rank`` is not in ``[0, world)``.
    """
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"bad rank {rank} for world size {world}")
    return list(items[rank::world])
