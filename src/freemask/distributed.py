"""Which process am I: rank and world size under ``torchrun`` / ``accelerate launch``.

A data-parallel stage splits its work by rank, lets rank 0 alone prepare and finalise shared
outputs, and makes the other ranks wait for it at a barrier. The rank comes from an initialised
``torch.distributed`` process group when there is one (``accelerate`` or the caller set it up),
else from the ``RANK`` / ``WORLD_SIZE`` variables the launchers export; in the latter case, with
more than one process, a gloo group (CPU, no GPU needed) is opened from the launcher's
``MASTER_ADDR`` / ``MASTER_PORT`` and closed again at the end. A plain ``python`` run is rank 0
of 1, with no process group and no waiting.

``accelerate.PartialState`` would do the same set-up, but it is a process-wide singleton that
also picks devices and backends; the stages only need rank, world size and a barrier.
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch.distributed as dist

# Ranks wait at a barrier for the slowest rank's last shard, which on a real profile can take
# far longer than torch's 30-minute default before it declares the group dead.
BARRIER_TIMEOUT = timedelta(hours=12)


class LauncherEnvError(ValueError):
    """``RANK`` / ``WORLD_SIZE`` are missing, malformed or inconsistent (a launcher set-up error)."""


@dataclass(frozen=True)
class Ranks:
    """This process's place among the processes of one run."""

    rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def owns(self, shard: int) -> bool:
        """Shard ``s`` of a plan is this process's work if ``s % world_size == rank``."""
        return shard % self.world_size == self.rank

    def barrier(self) -> None:
        """Wait until every rank gets here (nothing to wait for in a single process)."""
        if self.world_size > 1:
            dist.barrier()


def _env_int(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env[name])
    except ValueError:
        raise LauncherEnvError(f"environment variable {name}={env[name]!r} is not an integer") from None


def ranks_from_env(env: Mapping[str, str] | None = None) -> Ranks:
    """``RANK`` and ``WORLD_SIZE`` as torchrun and accelerate launch export them; rank 0 of 1 when
    neither is set. One without the other, or a rank outside ``[0, WORLD_SIZE)``, is an error."""
    env = os.environ if env is None else env
    present = [n for n in ("RANK", "WORLD_SIZE") if n in env]
    if not present:
        return Ranks(0, 1)
    if len(present) == 1:
        missing = ({"RANK", "WORLD_SIZE"} - set(present)).pop()
        raise LauncherEnvError(f"environment variable {present[0]} is set but {missing} is not; "
                         f"launch with torchrun or accelerate launch, which set both")
    rank, world_size = _env_int(env, "RANK"), _env_int(env, "WORLD_SIZE")
    if world_size < 1:
        raise LauncherEnvError(f"environment variable WORLD_SIZE={world_size} must be at least 1")
    if not 0 <= rank < world_size:
        raise LauncherEnvError(f"environment variable RANK={rank} is outside [0, WORLD_SIZE={world_size})")
    return Ranks(rank, world_size)


@contextmanager
def process_group(backend: str = "gloo") -> Iterator[Ranks]:
    """This process's :class:`Ranks`, with a process group to wait on when there are several.

    An already initialised ``torch.distributed`` group is used as it is and left open. Otherwise,
    if the environment names more than one process, a ``backend`` group is initialised from it
    (``env://``: ``MASTER_ADDR``, ``MASTER_PORT``, ``RANK``, ``WORLD_SIZE``) and destroyed on exit.
    """
    if dist.is_available() and dist.is_initialized():
        yield Ranks(dist.get_rank(), dist.get_world_size())
        return
    ranks = ranks_from_env()
    if ranks.world_size == 1:
        yield ranks
        return
    if not dist.is_available():
        raise RuntimeError(f"WORLD_SIZE={ranks.world_size} asks for {ranks.world_size} processes, "
                           f"but this torch build has no torch.distributed")
    dist.init_process_group(backend, rank=ranks.rank, world_size=ranks.world_size, timeout=BARRIER_TIMEOUT)
    try:
        yield ranks
    finally:
        dist.destroy_process_group()
