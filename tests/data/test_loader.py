"""build_dataloader: seeded shuffling and per-worker random streams."""

from __future__ import annotations

import numpy as np
import torch

from sbcb.data.loader import build_dataloader


class _Draws(torch.utils.data.Dataset):
    """Sample i = (i, a numpy random draw): shows which random stream a worker uses."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i):
        return {"index": i, "draw": int(np.random.randint(0, 2**31))}


def _run(seed, workers):
    loader = build_dataloader(_Draws(), batch_size=2, shuffle=True, num_workers=workers, seed=seed)
    batches = list(loader)
    return [i for b in batches for i in b["index"].tolist()], [d for b in batches for d in b["draw"].tolist()]


def test_shuffle_order_follows_seed():
    order0, _ = _run(0, 0)
    assert sorted(order0) == list(range(8))
    assert _run(0, 0)[0] == order0
    assert _run(1, 0)[0] != order0


def test_workers_get_distinct_reproducible_numpy_seeds():
    order_a, draws_a = _run(3, 2)
    order_b, draws_b = _run(3, 2)
    assert order_a == order_b and draws_a == draws_b  # same seed -> same augmentation stream
    # Batches alternate between the 2 workers; workers sharing one numpy state would give equal first draws.
    assert draws_a[0] != draws_a[2]
