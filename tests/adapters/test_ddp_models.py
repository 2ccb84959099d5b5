"""2-rank gloo DDP (no find_unused_parameters) for a torchvision model with aux_loss=True and a transformers model."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest
import torch

pytestmark = [pytest.mark.slow, pytest.mark.ddp]


def _tiny_fcn_with_aux(k: int = 4):
    """torchvision's FCN over a ResNet-18 with its auxiliary classifier on layer3 (as aux_loss=True builds it)."""
    import torchvision
    from torchvision.models._utils import IntermediateLayerGetter
    from torchvision.models.segmentation.fcn import FCN, FCNHead

    backbone = IntermediateLayerGetter(
        torchvision.models.resnet18(weights=None), return_layers={"layer4": "out", "layer3": "aux"}
    )
    return FCN(backbone, FCNHead(512, k), FCNHead(256, k))


def _segformer():
    sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
    from model_matrix import _hf

    return _hf("segformer")()


def _worker(rank: int, world: int, port: int, kind: str, out: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    from sbcb.segmentor import Segmentor
    from sbcb.wrapper import SBCB

    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    checksums = []
    for wrap in (SBCB, Segmentor):  # SBCB and the baseline: both train the model's own aux classifier
        torch.manual_seed(0)
        model = _tiny_fcn_with_aux() if kind == "torchvision" else _segformer()
        net = wrap(model, num_classes=4, probe_size=(64, 64))
        ddp = DDP(net)  # no find_unused_parameters: every parameter must get a gradient each step
        gen = torch.Generator().manual_seed(rank)
        for _ in range(3):
            x, y = torch.randn(2, 3, 64, 64, generator=gen), torch.randint(0, 4, (2, 64, 64), generator=gen)
            ddp.train()
            losses = ddp(x, y)
            assert kind != "torchvision" or "loss_aux" in losses
            sum(losses.values()).backward()
            with torch.no_grad():
                for p in net.parameters():
                    if p.grad is not None:
                        p -= 0.01 * p.grad
                        p.grad = None
        checksums.append(sum(float(p.double().sum()) for p in net.parameters()))
    sums = [None] * world
    dist.all_gather_object(sums, checksums)
    if rank == 0:
        Path(out).write_text(repr(sums))
    dist.destroy_process_group()


def _run(kind: str, tmp_path: Path) -> list[list[float]]:
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "sums.txt"
    mp.spawn(_worker, args=(2, port, kind, str(out)), nprocs=2, join=True)
    return eval(out.read_text())  # noqa: S307 - our own repr of a list of floats


def test_torchvision_aux_loss_model_under_ddp(tmp_path):
    pytest.importorskip("torchvision")
    sums = _run("torchvision", tmp_path)  # per rank: [SBCB checksum, baseline checksum]
    assert sums[0] == sums[1]  # the ranks stayed in sync (gradients all-reduced for every parameter)


def test_transformers_segformer_under_ddp(tmp_path):
    pytest.importorskip("transformers")
    sums = _run("transformers", tmp_path)
    assert sums[0] == sums[1]
