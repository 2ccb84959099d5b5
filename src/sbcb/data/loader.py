"""From a raw dataset to training batches: the transform wrapper, worker set-up and the DataLoader.

`TransformedDataset` applies a joint transform (`(image, label, instance) -> dict of tensors`, e.g.
`sbcb.data.transforms.build_train_transform(...)`, which computes the on-the-fly boundaries last) to the raw
samples of any dataset. `build_dataloader` returns a DataLoader whose errors stay readable: a `DataError` raised in
a worker process reaches the caller as a `DataError` with the original message (naming the file), not as a
worker traceback wrapped in text.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from sbcb.data.validation import DataError, worker_error_message

Transform = Callable[[np.ndarray, np.ndarray, "np.ndarray | None"], dict]


class TransformedDataset(Dataset):
    """A raw dataset with a joint transform applied to each sample.

    Args:
        dataset: Any dataset following `sbcb.data.base` (raw dict samples, an `info` attribute).
        transform: Called as `transform(image, label, instance)`; returns a dict, e.g. image float32 [3, H, W],
            label int64 [H, W], boundaries uint8 [ceil(K/8), H, W] (bit-packed). Each returned sample also gets
            "name", the raw sample's name (a str; batches hold a list of them).

        skip_bad_samples: When a sample cannot be read or transformed, warn (naming the file) and use the next
            sample instead of stopping, so a long training run survives a damaged file. Off by default: run
            `sbcb check-data` first and keep errors loud. At most `max_skips` consecutive samples are skipped.
        max_skips: Consecutive bad samples tolerated before the error is raised anyway.

    Any exception in reading or transforming is re-raised as `DataError` naming the sample's files.
    """

    def __init__(
        self, dataset: Any, transform: Transform, *, skip_bad_samples: bool = False, max_skips: int = 8
    ) -> None:
        self.dataset = dataset
        self.transform = transform
        self.info = dataset.info
        self.skip_bad_samples = skip_bad_samples
        self.max_skips = max_skips

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        if not self.skip_bad_samples:
            return self._load(index)
        for attempt in range(self.max_skips + 1):
            try:
                return self._load((index + attempt) % len(self))
            except DataError as e:
                if attempt == self.max_skips:
                    raise
                warnings.warn(f"skipping a bad sample: {e}", stacklevel=2)
        raise AssertionError("unreachable")

    def _load(self, index: int) -> dict:
        try:
            raw = self.dataset[index]
        except DataError:
            raise
        except Exception as e:  # a reader bug or an unexpected file: still say which sample
            raise DataError(f"reading sample {index} of {self.info.name} failed: {type(e).__name__}: {e}") from e
        try:
            out = dict(self.transform(raw["image"], raw["label"], raw.get("instance")))
        except DataError:
            raise
        except Exception as e:
            meta = raw.get("meta", {})
            where = meta.get("image_path") or meta.get("name", f"sample {index}")
            raise DataError(
                f"transform failed on {where} (label {meta.get('label_path', '?')}): {type(e).__name__}: {e}"
            ) from e
        out["name"] = raw["meta"]["name"]
        return out


def worker_init_fn(worker_id: int) -> None:
    """Per-worker set-up: one OpenCV thread (workers already run in parallel) and distinct numpy/random seeds.

    PyTorch seeds each worker's torch generator with `base_seed + worker_id`; numpy and `random` are seeded from
    it (as the PyTorch docs recommend; recent PyTorch also does this itself) so that augmentations differ between
    workers and epochs but repeat for the same DataLoader seed.
    """
    import cv2

    cv2.setNumThreads(1)
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


class ReadableErrorsDataLoader(DataLoader):
    """A DataLoader that re-raises worker `DataError`s with their original message."""

    def __iter__(self) -> Iterator[Any]:
        iterator = super().__iter__()
        while True:
            try:
                batch = next(iterator)
            except StopIteration:
                return
            except DataError as e:
                # The worker's traceback is already flattened into the message text; keep only what matters.
                raise DataError(worker_error_message(e)) from None
            yield batch


def build_dataloader(
    dataset: Dataset,
    *,
    batch_size: int,
    shuffle: bool = True,
    num_workers: int = 0,
    seed: int = 0,
    drop_last: bool | None = None,
    pin_memory: bool = False,
    persistent_workers: bool | None = None,
    sampler: Any = None,
) -> DataLoader:
    """A DataLoader for training or evaluation with seeded shuffling and readable worker errors.

    Args:
        dataset: Usually a `TransformedDataset`.
        batch_size: Samples per batch.
        shuffle: Shuffle each epoch (ignored when `sampler` is given).
        num_workers: Worker processes (0 = load in the main process).
        seed: Seed of the shuffling order and of the workers' augmentation streams.
        drop_last: Drop the last incomplete batch; default: True when shuffling (training), else False.
        pin_memory: Pin batches for faster host-to-GPU copies (pass True on CUDA).
        persistent_workers: Keep workers alive between epochs; default: True when `num_workers > 0`.
        sampler: Optional sampler (e.g. a DistributedSampler); replaces `shuffle`.

    Returns:
        A `ReadableErrorsDataLoader` using the default collate (tensors are stacked, names become lists).
    """
    generator = torch.Generator()
    generator.manual_seed(seed)
    return ReadableErrorsDataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        num_workers=num_workers,
        worker_init_fn=worker_init_fn,
        generator=generator,
        drop_last=shuffle if drop_last is None else drop_last,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0 if persistent_workers is None else persistent_workers,
    )
