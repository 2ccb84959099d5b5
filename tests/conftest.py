"""Shared test set-up: offline, deterministic, few threads."""

import os

# Before anything imports huggingface_hub or albumentations: tests never touch the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
# Tiny tensors: one intra-op thread is faster than two, and OpenMP spin-waiting on a busy 2-core machine made
# 2-thread forwards 10x slower. Set before torch is imported so subprocesses (CLI tests) inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_everything():
    import random

    import numpy as np

    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield
