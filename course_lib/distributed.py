"""Several processes, one model: PyTorch's DistributedDataParallel (DDP) under ``torchrun``.

    torchrun --standalone --nproc_per_node=8 -m course_lib train flow --batch_size 1024 ...

``torchrun`` starts the processes and tells each its place through the environment (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``). Each process
keeps a whole copy of the model, takes its own shard of every batch, and DDP averages the gradients
across processes inside ``backward()``, so every copy takes the same optimiser step. The rules:

* ``--batch_size`` is the **global** batch: the images of one optimiser step over all processes,
  each taking ``batch_size / N`` of them. A run on N processes therefore takes the same steps over the
  same data, with the same learning-rate schedule, as one process with that batch.
* Each epoch's order is a permutation seeded by ``seed + epoch`` (``DistributedSampler``), so a
  resumed or repeated run draws the same shards; the noise and label-dropout draws of process ``r``
  come from a generator seeded by ``(seed, epoch, r)``: they differ across processes, reproducibly.
* Process 0 alone prints, writes the checkpoints and holds the save folder's lock; the others never write.
* A resume must use the world size it was saved with (the shards and noise streams depend on it).

One process (plain ``python -m course_lib``, or ``torchrun`` with one process) is the plain loop, bit
for bit; nothing here runs then.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist

from .checkpoint import resolve_device

# what torchrun sets in each process; a process that has some of them but not all was launched wrongly
LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
TIMEOUT = timedelta(minutes=10)  # a collective that waits longer than this for a peer ends the run


class LaunchError(ValueError):
    """A launch that cannot start: a missing or contradictory variable, more processes than GPUs."""


@dataclass(frozen=True)
class World:
    """This process's place: ``rank`` of ``size`` in all, ``local_rank`` of ``local_size`` on its machine."""

    size: int = 1
    rank: int = 0
    local_rank: int = 0
    local_size: int = 1

    @property
    def main(self) -> bool:
        """Process 0: the one that prints and writes."""
        return self.rank == 0

    @property
    def several(self) -> bool:
        return self.size > 1


def launched(environ=os.environ) -> World:
    """The World that torchrun's variables describe, one process if none is set; a LaunchError if some are missing."""
    present = [name for name in LAUNCH_VARIABLES if name in environ]
    if not present:
        return World()
    missing = [name for name in LAUNCH_VARIABLES if name not in environ]
    if missing:
        raise LaunchError(f"a distributed launch needs {', '.join(LAUNCH_VARIABLES)}; {', '.join(missing)} "
                          f"{'is' if len(missing) == 1 else 'are'} not set: start the run with torchrun "
                          f"(torchrun --standalone --nproc_per_node=N -m course_lib train ...)")
    values = {}
    for name in LAUNCH_VARIABLES[:4]:
        try:
            values[name] = int(environ[name])
        except ValueError:
            raise LaunchError(f"{name}={environ[name]!r} must be an integer") from None
    world = World(values["WORLD_SIZE"], values["RANK"], values["LOCAL_RANK"], values["LOCAL_WORLD_SIZE"])
    if not (0 <= world.rank < world.size and 0 <= world.local_rank < world.local_size <= world.size):
        raise LaunchError(f"RANK {world.rank}, WORLD_SIZE {world.size}, LOCAL_RANK {world.local_rank} and "
                          f"LOCAL_WORLD_SIZE {world.local_size} contradict each other")
    return world


def speaks(environ=os.environ) -> bool:
    """Whether this process reports a refusal: the first process of each machine (one line per machine)."""
    return environ.get("LOCAL_RANK", "0").strip() in ("0", "")


def writes(environ=os.environ) -> bool:
    """Whether this process is the writer (RANK 0, or the only process): the one that says what it saved."""
    return environ.get("RANK", "0").strip() in ("0", "")


def device_for(world: World, name: str | None) -> torch.device:
    """The device of this process: ``--device`` for one process; for several, ``cuda:LOCAL_RANK`` (one GPU
    each) or the CPU. Refused: CUDA where there is none, a GPU index, more processes on a machine than GPUs."""
    if not world.several:
        return resolve_device(name)
    device = resolve_device(name if name is not None else "cuda" if torch.cuda.is_available() else "cpu")
    if device.type != "cuda":
        return device
    if device.index is not None:
        raise LaunchError(f"device {name}: under torchrun each process takes the GPU of its LOCAL_RANK; "
                          f"give --device cuda (or leave it out)")
    gpus = torch.cuda.device_count()
    if world.local_size > gpus:
        raise LaunchError(f"device cuda: {world.local_size} processes on this machine but only {gpus} GPU"
                          f"{'' if gpus == 1 else 's'}; start at most --nproc_per_node={gpus}")
    return torch.device("cuda", world.local_rank)


def backend(device: torch.device) -> str:
    """NCCL between GPUs, gloo between CPU processes."""
    return "nccl" if device.type == "cuda" else "gloo"


def per_process_batch(batch_size: int, world: World) -> int:
    """``--batch_size`` is the global batch: each process takes an equal share of it."""
    if batch_size % world.size:
        raise ValueError(f"batch_size {batch_size}: the global batch must divide evenly among the "
                         f"{world.size} processes; give a multiple of {world.size}")
    return batch_size // world.size


def start(world: World, device: torch.device) -> None:
    """Join the run's process group (torchrun's rendezvous); nothing for one process."""
    if not world.several:
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    bound = {"device_id": device} if device.type == "cuda" else {}  # NCCL: one GPU per process, known at once
    dist.init_process_group(backend(device), timeout=TIMEOUT, **bound)


def stop() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def current() -> World:
    """The World of the process group that is up, or one process when none is (a notebook, plain python)."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    local_size = int(os.environ.get("LOCAL_WORLD_SIZE", dist.get_world_size()))
    local_rank = int(os.environ.get("LOCAL_RANK", dist.get_rank() % local_size))
    return World(dist.get_world_size(), dist.get_rank(), local_rank, local_size)


def shard(num_images: int, seed: int, epoch: int, world: World) -> torch.Tensor:
    """This process's indices for ``epoch``: a permutation seeded by ``seed + epoch``, every N-th from ``rank``.

    Batch k of every process together are the permutation's k-th block of ``N * per-process batch``
    images: the batch one process would take. The list is padded by repeating its start until it divides by N.
    """
    sampler = torch.utils.data.DistributedSampler(range(num_images), num_replicas=world.size, rank=world.rank,
                                                  shuffle=True, seed=seed)
    sampler.set_epoch(epoch)
    return torch.tensor(list(sampler), dtype=torch.long)


def noise_seed(seed: int, epoch: int, rank: int) -> int:
    """The seed of process ``rank``'s noise and label-dropout draws in ``epoch``: independent streams per process."""
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1, dtype=np.uint64)[0])


def mean_over_processes(value: torch.Tensor, world: World) -> torch.Tensor:
    """The average of a scalar over all processes (every process gets it), detached; the value itself for one."""
    if not world.several:
        return value
    total = value.detach().clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total / world.size
