"""A resumable, rank-aware stream of training samples with per-sample seeds.

Training is iteration-based, so the sample order is an endless stream of positions 0, 1, 2, ... Position ``p``
lies in epoch ``p // N`` at offset ``p % N`` of that epoch's permutation (seeded by ``(seed, epoch)``). Step
``s`` of a job with ``W`` ranks and ``B`` samples per rank uses positions ``s*B*W .. (s+1)*B*W - 1``; rank ``r``
takes the slice ``r*B .. (r+1)*B - 1`` of them. Hence:

- the stream after step ``s`` depends on nothing but ``(seed, s)``: resuming restarts it exactly;
- one process with batch ``B*W`` sees the same samples, with the same seeds, as ``W`` ranks with batch ``B``.

Each sample also gets its own seed from ``(seed, epoch, index)``; `SeededDataset` seeds python/numpy/torch
with it around the transform, so random augmentation is independent of worker count, prefetching and resumes.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 32-bit seed for one sample of one epoch (well mixed by NumPy's SeedSequence)."""
    return int(np.random.SeedSequence([int(seed), int(epoch), int(index)]).generate_state(1)[0])


class StreamSampler(Sampler):
    """Endless sampler yielding ``(index, sample_seed)`` pairs for this rank (see the module docstring).

    Args:
        length: Dataset size N.
        batch_size: Samples per rank per step (B).
        seed: Run seed.
        rank: This process's rank.
        world_size: Number of ranks (W).
        start_step: First step to produce (the resume point).
        shuffle: Permute each epoch (False: 0..N-1 in order).
    """

    def __init__(
        self,
        length: int,
        *,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        start_step: int = 0,
        shuffle: bool = True,
    ) -> None:
        if length <= 0:
            raise ValueError("the training dataset is empty")
        self.length = int(length)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.start_step = int(start_step)
        self.shuffle = shuffle
        self._perm_epoch = -1
        self._perm: np.ndarray = np.arange(0)

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._perm_epoch:
            if self.shuffle:
                g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
                self._perm = torch.randperm(self.length, generator=g).numpy()
            else:
                self._perm = np.arange(self.length)
            self._perm_epoch = epoch
        return self._perm

    def position(self, step: int, slot: int) -> int:
        """Stream position of this rank's ``slot``-th sample of step ``step``."""
        return (step * self.world_size + self.rank) * self.batch_size + slot

    def __iter__(self) -> Iterator[tuple[int, int]]:
        step = self.start_step
        while True:
            for slot in range(self.batch_size):
                epoch, offset = divmod(self.position(step, slot), self.length)
                index = int(self._permutation(epoch)[offset])
                yield index, sample_seed(self.seed, epoch, index)
            step += 1

    def state_dict(self) -> dict[str, Any]:
        return {
            "length": self.length,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "world_size": self.world_size,
            "shuffle": self.shuffle,
        }


class SeededDataset(Dataset):
    """Wraps a dataset so that ``ds[(index, seed)]`` runs ``dataset[index]`` under seeded global RNGs.

    The python, numpy and torch global generators are seeded with ``seed`` before the call and restored after
    it, so a sample's random augmentation depends only on its seed, and the caller's RNG streams are untouched.
    Plain integer keys are passed through unseeded.
    """

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: Any) -> Any:
        if not isinstance(key, tuple):
            return self.dataset[key]
        index, seed = key
        py_state = random.getstate()
        np_state = np.random.get_state()
        torch_state = torch.get_rng_state()
        try:
            random.seed(seed)
            np.random.seed(seed)
            torch.manual_seed(seed)
            return self.dataset[index]
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
            torch.set_rng_state(torch_state)

    def __getattr__(self, name: str) -> Any:
        # Forward `info` and friends to the wrapped dataset.
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)
