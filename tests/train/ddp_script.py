"""Run by tests/train/test_ddp.py under torchrun: a short DDP training run with validation on the tiny model."""

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
torch.manual_seed(123)
model = Tiny()
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
        json.dumps({"world": info.world_size, "checksums": sums, "val": {k: v for k, v in result.val_metrics.items()}})
    )
D.cleanup_distributed()
