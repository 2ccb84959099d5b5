"""Shared checks for sbcb's real-time models: train with and without SBCB, strip exactly, ONNX parity."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from sbcb.contract import DeclaresSides, HasAuxiliaryHeads
from sbcb.data.synthetic import SyntheticStreets
from sbcb.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from sbcb.segmentor import Segmentor
from sbcb.wrapper import SBCB

SIZE = (64, 128)
BATCH = 2


def synthetic_batch(size: tuple[int, int] = SIZE) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(images [2, 3, H, W] normalized, labels [2, H, W] int64 with 255 = ignore, K) from `SyntheticStreets`."""
    ds = SyntheticStreets(num_samples=BATCH, size=size, seed=0)
    samples = [ds[i] for i in range(BATCH)]
    mean, std = np.array(IMAGENET_MEAN, np.float32), np.array(IMAGENET_STD, np.float32)
    images = torch.from_numpy(np.stack([(s["image"] - mean) / std for s in samples])).permute(0, 3, 1, 2).float()
    labels = torch.from_numpy(np.stack([s["label"] for s in samples])).long()
    return images.contiguous(), labels, ds.info.num_classes


def training_losses(net: nn.Module, images: torch.Tensor, masks: torch.Tensor) -> dict[str, torch.Tensor]:
    """One training forward through the call contract, ``net(images, masks)``: a bare model is trained as the
    trainer does it, through `sbcb.Segmentor` (main CE plus the model's own auxiliary losses, as its paper does)."""
    assert isinstance(net, Segmentor), "wrap a bare model with Segmentor(model, num_classes=K)"
    net.train()
    losses = net(images, masks)
    assert isinstance(losses, dict)
    return losses


def sgd_steps(net: nn.Module, images: torch.Tensor, masks: torch.Tensor, *, steps: int, lr: float) -> list[float]:
    """Plain SGD by hand on one batch (torch.optim's first import is slow here); returns each step's total loss."""
    totals = []
    for _ in range(steps):
        losses = training_losses(net, images, masks)
        assert all(v.ndim == 0 and torch.isfinite(v) for v in losses.values()), losses
        total = sum(losses.values())
        total.backward()
        with torch.no_grad():
            for p in net.parameters():
                if p.grad is not None:
                    p -= lr * p.grad
                    p.grad = None
        totals.append(float(total.detach()))
    return totals


def aux_modules(model: nn.Module) -> list[nn.Module]:
    """The model's training-only heads (auxiliary FCN heads, boosters, Detail Head)."""
    prefixes = ("aux_head", "boosters", "detail_head")
    heads = []
    for name, m in model.named_children():
        if name.startswith(prefixes):
            heads += list(m.values()) if isinstance(m, nn.ModuleDict) else [m]
    return heads


def check_forward_is_inference_only(model: nn.Module, k: int) -> None:
    """``forward`` returns only [B, K, H, W] logits, in train mode too, and never runs an auxiliary head."""
    assert isinstance(model, DeclaresSides) and isinstance(model, HasAuxiliaryHeads)
    called: list[str] = []
    hooks = [m.register_forward_hook(lambda m, i, o: called.append(type(m).__name__)) for m in aux_modules(model)]
    try:
        images, _, _ = synthetic_batch()
        for train in (True, False):
            model.train(train)
            with torch.no_grad():
                out = model(images)
            assert isinstance(out, torch.Tensor) and out.shape == (BATCH, k, *SIZE)
        assert called == []
        model.train()
        with torch.no_grad():
            model.forward_train(images)
        assert len(called) == len(aux_modules(model)) > 0  # forward_train runs every auxiliary head once
    finally:
        for h in hooks:
            h.remove()


def check_trains_with_and_without_sbcb(
    build: Callable[[int], nn.Module],
    *,
    expected_sides: Sequence[tuple[int, int]],
    aux_loss_names: set[str],
    build_for_sbcb: Callable[[int], nn.Module] | None = None,
    sbcb_aux_loss_names: set[str] | None = None,
    steps: int = 3,
) -> None:
    """Baseline and SBCB training on synthetic streets, side selection without ``sides=``, exact strip.

    Args:
        build: ``build(K)`` -> the baseline model.
        expected_sides: (channels, stride) of each SBD side, from the architecture's published widths.
        aux_loss_names: The model's own loss keys (``loss_aux_*``, ``loss_detail_*``) in the baseline.
        build_for_sbcb: The model SBCB wraps (STDC: without the Detail Head); default ``build``.
        sbcb_aux_loss_names: The model's own loss keys under SBCB; default ``aux_loss_names``.
        steps: SGD steps on one batch.
    """
    images, masks, k = synthetic_batch()
    torch.manual_seed(0)
    baseline = Segmentor(build(k), num_classes=k)  # what `sbcb train` does with a model without an SBD head
    totals = sgd_steps(baseline, images, masks, steps=steps, lr=0.01)
    assert set(training_losses(baseline, images, masks)) == {"loss_seg"} | aux_loss_names
    assert totals[-1] < totals[0]  # the same batch three times: the loss goes down

    build_for_sbcb = build_for_sbcb or build
    torch.manual_seed(0)
    model = build_for_sbcb(k)
    torch.manual_seed(0)
    twin = build_for_sbcb(k)
    net = SBCB(model, num_classes=k)  # no sides=: the model declares the paper's sides
    assert [(i.num_chs, i.reduction) for i in net.side_infos] == list(expected_sides)
    totals = sgd_steps(net, images, masks, steps=steps, lr=0.01)
    assert totals[-1] < totals[0]
    losses = training_losses(net, images, masks)
    assert {"loss_seg", "loss_sbd_fuse", "loss_sbd_last"} <= set(losses)
    expected = aux_loss_names if sbcb_aux_loss_names is None else sbcb_aux_loss_names
    assert set(losses) == {"loss_seg", "loss_sbd_fuse", "loss_sbd_last"} | expected

    stripped = net.strip()
    assert stripped is model and type(stripped) is type(twin)
    assert list(stripped.state_dict()) == list(twin.state_dict())  # the exact baseline architecture
    assert sum(p.numel() for p in stripped.parameters()) == sum(p.numel() for p in twin.parameters())
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(images), stripped.eval()(images))


def check_onnx(model: nn.Module, tmp_path, *, size: tuple[int, int] = SIZE) -> None:
    """The eval-mode model exports to ONNX with no auxiliary-head node and matches onnxruntime on two shapes."""
    import onnx

    from sbcb.export import export_onnx, onnx_head_nodes, run_onnx

    model.eval()
    sample = torch.randn(1, 3, *size)
    path = export_onnx(model, tmp_path / "model.onnx", sample)
    nodes = [n.name for n in onnx.load(str(path)).graph.node]
    assert nodes and not [n for n in nodes if n.startswith(("/aux_head", "/boosters", "/detail_head"))]
    assert onnx_head_nodes(path) == []  # what `sbcb export` checks: no node that looks like the SBCB wrapper's heads
    for x in (sample, torch.randn(2, 3, size[0] + 32, size[1] - 32)):  # dynamic batch, height and width
        with torch.no_grad():
            ref = model(x)
        got = torch.from_numpy(run_onnx(path, x))
        assert got.shape == ref.shape
        assert float((got - ref).abs().max()) < 1e-4
