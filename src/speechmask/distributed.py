"""Multi-process training with ``torch.distributed`` (DistributedDataParallel).

One training run can use several processes - on one machine (``speechmask train --nproc N``) or
on several (``torchrun``). Each process holds a full copy of the model, computes the gradient
of its share of every batch, and DDP averages the gradients, so every process takes the same
optimiser step and ends every step with the same weights.

:func:`speechmask.train.train` works the same with one process or many; what differs lives here
so the training loop reads like the single-process one:

- :func:`init_from_env` joins the process group that ``torchrun`` described in environment
  variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``);
- :func:`shard_batches` splits each global batch between the ranks without communication;
- :func:`on_main` runs file work (checks, loading ``last.pt``, writing checkpoints) on rank 0
  only and hands its result - or its failure - to every rank, so the ranks never disagree on a
  decision and never wait forever for a rank that has failed;
- :func:`all_reduce_sum`, :func:`broadcast_object` and :func:`check_same_weights` keep the
  per-epoch figures and the weights identical everywhere.

With a single process (:data:`SINGLE`) every helper is a no-op, so single-process training does
not need ``torch.distributed`` at all and gives bit-identical results with or without this module.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a training run of ``world_size`` processes."""

    # Global rank, 0 .. world_size - 1; rank 0 is the one that writes files and logs.
    rank: int = 0
    # Processes in the run, over all machines.
    world_size: int = 1
    # Rank on this machine: picks the GPU (cuda:local_rank).
    local_rank: int = 0
    # Processes on this machine: they share its cores.
    local_world_size: int = 1
    # "gloo" (CPU tensors) or "nccl" (CUDA tensors); "" when not distributed.
    backend: str = ""

    @property
    def enabled(self) -> bool:
        """True when there is more than one process (a process group exists)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that logs, shows progress and writes files."""
        return self.rank == 0


SINGLE = DistContext()


class MainRankFailed(Exception):
    """Raised on ranks other than 0 when the work :func:`on_main` gave rank 0 failed. Rank 0
    raises the original error (and reports it); the others only need to stop quietly."""


def launched_by_torchrun() -> bool:
    """True inside a process started by ``torchrun`` / ``torch.distributed.run`` (which sets
    ``LOCAL_RANK`` and ``WORLD_SIZE``); such a process must not launch workers itself."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def backend_for(device: torch.device) -> str:
    """NCCL for CUDA (GPU-to-GPU all-reduce), gloo for CPU (NCCL cannot use CPU tensors)."""
    return "nccl" if device.type == "cuda" else "gloo"


def init_from_env(device: torch.device) -> DistContext:
    """Join the process group described by torchrun's environment variables, or return
    :data:`SINGLE` when there are none (or ``WORLD_SIZE`` is 1), so callers need no special
    case for a plain single-process run. ``device`` picks the backend (:func:`backend_for`)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    try:
        rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    except (KeyError, ValueError) as err:
        raise ValueError(f"WORLD_SIZE={world} but no valid RANK/LOCAL_RANK in the environment "
                         f"({err}); start the processes with torchrun") from None
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    backend = backend_for(device)
    if backend == "nccl":
        # Before init: NCCL binds each process to the GPU current at that time.
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)  # env://: MASTER_ADDR, MASTER_PORT, RANK, ...
    log.debug("rank %d of %d (local %d of %d), backend %s", rank, world, local_rank,
              local_world, backend)
    return DistContext(rank, world, local_rank, local_world, backend)


def cleanup(ctx: DistContext) -> None:
    """Leave the process group (torch warns at exit if a process group was not destroyed)."""
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


def local_device(ctx: DistContext, device: torch.device) -> torch.device:
    """This rank's device: with CUDA each process of a machine takes its own GPU."""
    if ctx.enabled and device.type == "cuda":
        return torch.device("cuda", ctx.local_rank)
    return device


def default_threads(ctx: DistContext) -> int:
    """Torch threads per process for ``--threads 0``: a single process uses torch's default
    (0 = leave it alone); several processes on one machine split its cores evenly, because each
    using all of them would oversubscribe the CPU (torchrun's own default is 1 thread each)."""
    if not ctx.enabled:
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // max(1, ctx.local_world_size))


def _comm_device(ctx: DistContext) -> torch.device:
    # NCCL only moves CUDA tensors; gloo only CPU ones.
    return torch.device("cuda", torch.cuda.current_device()) if ctx.backend == "nccl" \
        else torch.device("cpu")


def barrier(ctx: DistContext) -> None:
    """Wait until every rank gets here."""
    if ctx.enabled:
        dist.barrier()


def broadcast_object(ctx: DistContext, obj: T, src: int = 0) -> T:
    """Rank ``src``'s ``obj`` (any picklable value) on every rank. Used where an identical value
    matters more than how each rank computed it: the validation figures that drive early stopping
    and best-checkpoint choice."""
    if not ctx.enabled:
        return obj
    box = [obj if ctx.rank == src else None]
    dist.broadcast_object_list(box, src=src, device=_comm_device(ctx))
    return box[0]


def all_reduce_sum(ctx: DistContext, values: Sequence[float]) -> list[float]:
    """Element-wise sum of ``values`` over all ranks (float64), the same on every rank."""
    if not ctx.enabled:
        return [float(v) for v in values]
    buf = torch.tensor([float(v) for v in values], dtype=torch.float64, device=_comm_device(ctx))
    dist.all_reduce(buf, op=dist.ReduceOp.SUM)
    return buf.cpu().tolist()


def on_main(ctx: DistContext, fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0 only and return its result on every rank.

    For work that must happen once, where the files are: checking and loading ``last.pt``,
    writing checkpoints and logs, asking a caller's callback whether to stop. If ``fn`` fails,
    rank 0 raises the error and every other rank raises :class:`MainRankFailed`, so all ranks
    stop together instead of the others blocking in the next collective operation until a
    timeout. With one process this is just ``fn()``.
    """
    if not ctx.enabled:
        return fn()
    result: Any = None
    error: Exception | None = None
    if ctx.is_main:
        try:
            result = fn()
        except Exception as err:  # handed to the other ranks, then re-raised below
            error = err
    # Only a message travels: exceptions need not be picklable.
    message = f"rank 0 failed: {type(error).__name__}: {error}" if error is not None else None
    ok, value = broadcast_object(ctx, (error is None, result if error is None else message))
    if error is not None:
        raise error
    if not ok:
        raise MainRankFailed(value)
    return value


def wrap_model(ctx: DistContext, model: torch.nn.Module,
               device: torch.device) -> torch.nn.Module:
    """``model`` itself for one process; otherwise ``model`` wrapped in DistributedDataParallel,
    which averages gradients over the ranks during ``backward()``. Call after freezing
    parameters (DDP only synchronises those that require gradients). The wrapped module is still
    ``model``: save and validate that one, so checkpoints carry no ``module.`` prefixes."""
    if not ctx.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None)


def shard_batches(
    order: Sequence[int], batch_size: int, rank: int, world_size: int
) -> list[tuple[list[int], float]]:
    """This rank's part of every global batch of ``order``, with the weight of its loss.

    Global batch ``k`` is ``order[k * batch_size : (k + 1) * batch_size]`` - exactly the batch a
    single process takes - and rank ``r`` takes every ``world_size``-th item of it starting at
    ``r``. Every rank computes the same ``order`` from the same seeded generator, so the parts
    are disjoint and cover each batch without any communication.

    DDP averages gradients over ranks; a part's mean loss is therefore weighted by
    ``world_size * len(part) / len(batch)`` so the average equals the gradient of the global
    batch's mean loss even when the last batch does not split evenly. A rank left with no item
    (a last batch smaller than ``world_size``) gets the batch's first item with weight 0: it
    must still run forward and backward to take part in the gradient all-reduce.
    """
    if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"bad sharding: batch_size={batch_size}, rank={rank}, "
                         f"world_size={world_size}")
    parts: list[tuple[list[int], float]] = []
    for start in range(0, len(order), batch_size):
        batch = list(order[start:start + batch_size])
        part = batch[rank::world_size]
        if part:
            parts.append((part, world_size * len(part) / len(batch)))
        else:
            parts.append((batch[:1], 0.0))
    return parts


def weights_digest(state_dict: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the names and bytes of a state dict's tensors (in name order)."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def check_same_weights(ctx: DistContext, model: torch.nn.Module) -> None:
    """Raise if the ranks' weights differ. Rank 0 saves the checkpoints on behalf of all ranks;
    this makes sure that is true (DDP keeps replicas equal only if every rank ran the same
    steps on the same initial weights)."""
    if not ctx.enabled:
        return
    digest = weights_digest(model.state_dict())
    digests: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(digests, digest)
    if len(set(digests)) != 1:
        raise RuntimeError(f"model weights differ between the {ctx.world_size} training "
                           "processes; the run is not consistent")


class WorkerFailed(RuntimeError):
    """A process started by :func:`launch_local` failed; it has printed its own error."""


def launch_local(nproc: int, args: Sequence[str], module: str = "speechmask") -> None:
    """Run ``python -m module *args`` in ``nproc`` processes on this machine, started the way
    ``torchrun --standalone`` starts them (torch's elastic launcher), and wait for them. The
    processes see torchrun's environment (:func:`launched_by_torchrun`), so a command that
    launched them does not launch further ones. ``module`` is the program each one runs: the
    CLI's ``train --nproc N`` passes its own command line; a test may run its own worker.

    Raises :class:`WorkerFailed` when a process fails and ``KeyboardInterrupt`` when the
    launcher is stopped by a signal."""
    import signal
    import sys
    import uuid

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc,
                          run_id=uuid.uuid4().hex, rdzv_backend="c10d",
                          rdzv_endpoint="localhost:0", max_restarts=0)
    # Its multi-line failure report would bury the worker's own one-line error.
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    # The launcher installs signal handlers raising its SignalException and leaves them.
    handled = [sig for sig in (getattr(signal, name, None) for name in
                               ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT")) if sig is not None]
    handlers = {sig: signal.getsignal(sig) for sig in handled}
    try:
        elastic_launch(config, sys.executable)("-m", module, *args)
    except ChildFailedError as err:
        rank, failure = err.get_first_failure()
        raise WorkerFailed(f"training process {rank} of {nproc} failed (exit code "
                           f"{failure.exitcode}); see its message above") from None
    except SignalException:
        raise KeyboardInterrupt from None
    finally:
        for sig, handler in handlers.items():
            if handler is not None:  # None: set outside Python, cannot be put back
                signal.signal(sig, handler)
