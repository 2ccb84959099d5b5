"""sbcb metrics as torchmetrics Metrics: equal to the native classes, alone and over two gloo processes."""

from __future__ import annotations

import os
import pickle
import socket

import numpy as np
import pytest
import torch

pytest.importorskip("torchmetrics", reason='the torchmetrics integration needs: pip install "sbcb[torchmetrics]"')

from sbcb import metrics as native  # noqa: E402
from sbcb.integrations import torchmetrics as tm  # noqa: E402

K = 3


def _seg_batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    gt = np.kron(rng.integers(0, K, (2, 4, 5)), np.ones((1, 6, 6), np.int64))  # blobs, [2, 24, 30]
    pred = gt.copy()
    noise = rng.random(gt.shape) < 0.2
    pred[noise] = rng.integers(0, K, noise.sum())
    gt[rng.random(gt.shape) < 0.05] = 255
    return torch.from_numpy(pred), torch.from_numpy(gt)


def _sbd_batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    gt = np.zeros((2, 2, 20, 24), bool)
    gt[:, 0, 5 + seed % 3, 2:20] = True
    gt[:, 1, 3:17, 7] = True
    pred = np.roll(gt, 1, axis=2) * 0.8 + 0.15 * rng.random(gt.shape)
    return torch.from_numpy(pred), torch.from_numpy(gt)


def _pairs():
    return [
        (tm.MeanIoU(K), native.MeanIoU(K), "seg"),
        (tm.BoundaryFScore(K, radii=(1, 2)), native.BoundaryFScore(K, radii=(1, 2)), "seg"),
        (tm.BoundaryIoU(K, width=2), native.BoundaryIoU(K, width=2), "seg"),
        (tm.BoundaryIoU(K), native.BoundaryIoU(K), "seg"),
        (
            tm.SBDMaxF(2, thresholds=9, max_dist=0.05, backend="numpy"),
            native.SBDEvaluator(2, thresholds=9, max_dist=0.05, backend="numpy"),
            "sbd",
        ),
    ]


def _feed(metric, kind: str, seeds) -> None:
    for seed in seeds:
        if kind == "seg":
            metric.update(*_seg_batch(seed))
        else:
            pred, gt = _sbd_batch(seed)
            if isinstance(metric, native.SBDEvaluator):  # the native evaluator takes one image at a time
                for p, g in zip(pred, gt):
                    metric.update(p, g)
            else:
                metric.update(pred, gt)


def _assert_same(got: dict, ref: dict) -> None:
    assert got, "empty result"
    for key, value in got.items():
        np.testing.assert_allclose(value.numpy(), np.asarray(ref[key], dtype=np.float64), rtol=0, atol=1e-12)


def test_results_equal_the_native_classes():
    for metric, ref, kind in _pairs():
        _feed(metric, kind, seeds=(0, 1, 2))
        _feed(ref, kind, seeds=(0, 1, 2))
        got = metric.compute()
        _assert_same(got, ref.compute())
        assert all(isinstance(v, torch.Tensor) and v.dtype == torch.float64 for v in got.values())
    # the keys a training loop logs are 0-dim
    miou = tm.MeanIoU(K)
    miou.update(*_seg_batch(0))
    assert {k for k, v in miou.compute().items() if v.ndim == 0} == {"miou", "macc", "aacc"}


def test_reset_and_settings():
    biou = tm.BoundaryIoU(K, dilation_ratio=0.05)
    assert biou.settings()["dilation_ratio"] == 0.05 and biou.settings()["width_px"] is None
    biou.update(*_seg_batch(0))
    assert int(biou.union.sum()) > 0
    biou.reset()
    assert int(biou.union.sum()) == 0
    sbd = tm.SBDMaxF(2, thresholds=9)
    assert len(sbd.settings()["thresholds"]) == 9
    with pytest.warns(UserWarning, match="before the ``update``"):  # torchmetrics' own warning
        assert float(sbd.compute()["num_images"]) == 0  # no image yet: defined, not an error


def _worker(rank: int, world: int, port: int, out_path: str) -> None:
    import torch.distributed as dist

    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    results = []
    # Uneven shards (rank 0: two batches, rank 1: one), so the "cat" state of SBDMaxF is gathered with padding.
    seeds = (0, 2) if rank == 0 else (1,)
    for metric, _, kind in _pairs():
        _feed(metric, kind, seeds)
        results.append(metric.compute())  # torchmetrics syncs across the process group here
    native_biou = native.BoundaryIoU(K, width=2)  # and the native class's own reduce
    _feed(native_biou, "seg", seeds)
    native_biou.sync()
    results.append(native_biou.compute())
    with open(f"{out_path}.{rank}", "wb") as f:
        pickle.dump(results, f)
    dist.destroy_process_group()


@pytest.mark.ddp
@pytest.mark.slow  # two spawned processes import torch and torchmetrics: ~15-30 s on the shared machine
def test_torchmetrics_sync_over_two_gloo_ranks(tmp_path):
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "res"
    mp.spawn(_worker, args=(2, port, str(out)), nprocs=2, join=True)
    for rank in range(2):
        got = pickle.loads((tmp_path / f"res.{rank}").read_bytes())
        for (_, ref, kind), result in zip(_pairs(), got):
            _feed(ref, kind, seeds=(0, 1, 2))  # one process that saw every rank's data
            _assert_same(result, ref.compute())
        ref_biou = native.BoundaryIoU(K, width=2)
        _feed(ref_biou, "seg", seeds=(0, 1, 2))
        np.testing.assert_array_equal(got[-1]["intersection"], ref_biou.compute()["intersection"])
        np.testing.assert_array_equal(got[-1]["union"], ref_biou.compute()["union"])
