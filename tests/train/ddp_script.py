"""Run by tests/train/test_ddp.py under torchrun: a short DDP training run with validation on the tiny model.

Usage: ddp_script.py OUT_DIR [sbcb | plain | interrupt]. With ``sbcb`` the tiny model is wrapped in `sbcb.SBCB`
(CASENet head on two taps), so the wrapper's hooks, head and loss run under DistributedDataParallel; ``plain`` is a
user's own loop through ``DistributedDataParallel(net)`` and the one call ``ddp(images, masks)`` (never its wrapped
module); ``interrupt`` trains until Ctrl-C and records, per rank, the iteration it stopped and saved at.
"""

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from test_loop import Blobs, Tiny  # noqa: E402

from sbcb.train import distributed as D  # noqa: E402
from sbcb.train.loop import TrainSettings, train  # noqa: E402

out = Path(sys.argv[1])
info = D.init_distributed(device="cpu")
mode = sys.argv[2] if len(sys.argv) > 2 else ""
wrapped = mode in ("sbcb", "plain")
torch.manual_seed(123)
model = Tiny()
if wrapped:
    from sbcb.wrapper import SBCB

    model = SBCB(model, num_classes=3, sides=["body.0", "body.2"], probe_size=(16, 16))
    head_before = [p.detach().clone() for p in model.head.parameters()]
if mode == "plain":
    from torch.nn.parallel import DistributedDataParallel

    ddp = DistributedDataParallel(model)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9)
    data = Blobs(n=8)
    for step in range(3):
        batch = [data[(4 * step + 2 * info.rank + j) % len(data)] for j in range(2)]  # each rank its own samples
        images = torch.stack([b["image"] for b in batch])
        masks = torch.stack([b["label"] for b in batch]).long()
        losses = ddp(images, masks)  # {"loss_seg", "loss_sbd_fuse", "loss_sbd_last"}, inside one forward
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
    checksum = float(sum(p.double().sum() for p in model.parameters()))
    sums = D.all_gather_object(checksum)
    if info.is_main:
        changed = any(not torch.equal(a, b) for a, b in zip(head_before, model.head.parameters()))
        result = {"world": info.world_size, "checksums": sums, "head_changed": changed, "keys": sorted(losses)}
        (out / "ddp_result.json").write_text(json.dumps(result))
    D.cleanup_distributed()
    sys.exit(0)
if mode == "interrupt":  # a long run that the test stops with Ctrl-C (SIGINT to the whole process group)
    from sbcb.train.loop import TrainingInterrupted

    settings = TrainSettings(iters=10**6, batch_size=2, lr=0.01, ckpt_every=10**6, val_every=0, workers=0, seed=7,
                             log_every=1)  # fmt: skip
    try:
        train(model, Blobs(), settings=settings, out_dir=out, num_classes=3, dist_info=info, progress=False)
    except TrainingInterrupted as e:
        (out / f"interrupted_rank{info.rank}.json").write_text(json.dumps({"step": e.step, "path": str(e.path)}))
        D.cleanup_distributed()
        sys.exit(130)
    sys.exit(1)  # never reached: a million steps
settings = TrainSettings(iters=4, batch_size=4, lr=0.05, ckpt_every=4, val_every=4, workers=0, seed=7)
result = train(
    model,
    Blobs(),
    settings=settings,
    out_dir=out,
    num_classes=3,
    val_set=Blobs(n=5, augment=False),
    dist_info=info,
    progress=False,
)
# DDP keeps every rank's parameters identical: gather a checksum from each rank.
checksum = float(sum(p.double().sum() for p in model.parameters()))
sums = D.all_gather_object(checksum)
if info.is_main:
    (out / "ddp_result.json").write_text(
        json.dumps(
            {
                "world": info.world_size,
                "checksums": sums,
                "val": {k: v for k, v in result.val_metrics.items()},
                "head_changed": bool(wrapped)
                and any(not torch.equal(a, b) for a, b in zip(head_before, model.head.parameters())),
            }
        )
    )
D.cleanup_distributed()
