"""Distributed helpers for torchrun: process-group set-up, rank queries and metric reduction.

Under ``torchrun`` the environment carries ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and
``MASTER_PORT``. `init_distributed` picks **nccl** when CUDA is available and **gloo** otherwise; without those
variables everything runs as a single process and the helpers below become no-ops.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from sbcb.metrics.miou import all_reduce_sum as all_reduce_sum  # one cross-rank sum for arrays and tensors


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Only the main process (rank 0) writes files and prints progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(*, device: str | None = None, timeout_s: float = 600.0) -> DistInfo:
    """Initialise the process group from the torchrun environment (no-op without it).

    Args:
        device: ``"cpu"``, ``"cuda"`` or ``None`` (CUDA when available). Each rank uses ``cuda:LOCAL_RANK``.
        timeout_s: Collective timeout.

    Returns:
        The `DistInfo` of this process.
    """
    import datetime

    want_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    if want_cuda and not torch.cuda.is_available():
        from sbcb.train.config import ConfigError

        raise ConfigError(
            f"--device {device}: CUDA is not available on this machine (torch.cuda.is_available() is "
            "False); use --device cpu"
        )
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if want_cuda:
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if want_cuda else "gloo", timeout=datetime.timedelta(seconds=timeout_s))
    return DistInfo(rank=rank, local_rank=local_rank, world_size=world, device=dev)


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    return dist.get_rank() if is_dist() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def barrier() -> None:
    if is_dist():
        dist.barrier()


def all_gather_object(obj: object) -> list[object]:
    """Every rank's ``obj`` (a picklable value), in rank order; ``[obj]`` when not distributed."""
    if not is_dist():
        return [obj]
    out: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_buffers(model: torch.nn.Module, *, src: int = 0) -> None:
    """Copy rank ``src``'s buffers (BN running statistics) to every rank.

    DDP broadcasts buffers at the *start* of each forward, so after a training step each rank holds running
    statistics updated by its own batch. Validation and checkpoints must use one model: rank 0's.
    """
    if not is_dist():
        return
    for buf in model.buffers():
        work = buf.cuda() if dist.get_backend() == "nccl" and not buf.is_cuda else buf
        dist.broadcast(work, src=src)
        if work is not buf:
            buf.copy_(work)


def maybe_convert_sync_bn(model: torch.nn.Module, info: DistInfo) -> torch.nn.Module:
    """BatchNorm -> SyncBatchNorm only for distributed CUDA training (SyncBN raises on CPU modules)."""
    if info.distributed and info.device.type == "cuda":
        return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


def wrap_ddp(model: torch.nn.Module, info: DistInfo) -> torch.nn.Module:
    """Wrap in DistributedDataParallel when the job has more than one process; else return ``model``."""
    if not info.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [info.device.index] if info.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)
