"""Slow: distributed reductions over 2 gloo processes equal a single process that saw all the data."""

from __future__ import annotations

import os
import pickle
import socket

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.ddp]


def _data(rank):
    rng = np.random.default_rng(rank)
    seg_p = rng.integers(0, 3, (2, 12, 16))
    seg_g = rng.integers(0, 3, (2, 12, 16))
    gt = np.zeros((2, 20, 24), bool)
    gt[:, 5 + rank, 2:20] = True
    pred = np.roll(gt, 1, axis=1) * 0.8 + 0.02 * rng.random(gt.shape)
    return seg_p, seg_g, pred, gt


def _worker(rank, world, port, out_path):
    import torch.distributed as dist

    from sbcb.metrics import BoundaryFScore, MeanIoU, SBDEvaluator

    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    seg_p, seg_g, pred, gt = _data(rank)
    miou, bf, sbd = MeanIoU(3), BoundaryFScore(3, radii=(1, 2)), SBDEvaluator(2, thresholds=9, max_dist=0.05)
    miou.update(seg_p, seg_g)
    bf.update(seg_p, seg_g)
    sbd.update(pred, gt)
    for m in (miou, bf, sbd):
        m.sync()
    if rank == 0:
        with open(out_path, "wb") as f:
            pickle.dump((miou.compute(), bf.compute(), sbd.compute()), f)
    dist.destroy_process_group()


def test_sync_over_two_ranks(tmp_path):
    import torch.multiprocessing as mp

    from sbcb.metrics import BoundaryFScore, MeanIoU, SBDEvaluator

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "r0.pkl"
    mp.spawn(_worker, args=(2, port, str(out)), nprocs=2, join=True)
    got_miou, got_bf, got_sbd = pickle.loads(out.read_bytes())
    miou, bf, sbd = MeanIoU(3), BoundaryFScore(3, radii=(1, 2)), SBDEvaluator(2, thresholds=9, max_dist=0.05)
    for rank in range(2):
        seg_p, seg_g, pred, gt = _data(rank)
        miou.update(seg_p, seg_g)
        bf.update(seg_p, seg_g)
        sbd.update(pred, gt)
    np.testing.assert_array_equal(got_miou["iou"], miou.compute()["iou"])
    np.testing.assert_allclose(got_bf["fscore"], bf.compute()["fscore"])
    ref = sbd.compute()
    for key in ("ods_f", "ois_f", "ap"):
        np.testing.assert_array_equal(got_sbd[key], ref[key])
