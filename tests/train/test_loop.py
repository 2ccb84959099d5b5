"""The training loop on a tiny model: exact resume, NaN handling, logs. (The CLI end-to-end runs are in tests/cli.)"""

import csv

import numpy as np
import pytest
import torch
from torch import nn

from sbcb.train.checkpoint import load_checkpoint
from sbcb.train.loop import NonFiniteLossError, TrainSettings, train


class Tiny(nn.Module):
    """Conv-BN-ReLU-Dropout at 1/2, a 1x1 classifier, bilinear back: BN statistics and dropout RNG both matter."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout2d(0.2)
        )
        self.cls = nn.Conv2d(8, num_classes, 1)
        self.calls = 0
        self.nan_at_call = None
        self.dtypes: set = set()

    def forward(self, x):
        out = nn.functional.interpolate(self.cls(self.body(x)), size=x.shape[-2:], mode="bilinear")
        if self.training:  # count training forwards only (Segmentor's construction probe runs in eval mode)
            self.calls += 1
            self.dtypes.add(out.dtype)
        if self.nan_at_call is not None and self.calls >= self.nan_at_call:
            out = out * float("nan")
        return out


class Blobs:
    """Random images and labels; the "augmentation" (a flip and noise) uses the global numpy/torch RNGs."""

    def __init__(self, n: int = 5, fail_after: int | None = None, augment: bool = True) -> None:
        self.n = n
        self.fail_after = fail_after
        self.augment = augment
        self.fetched = 0

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        self.fetched += 1
        if self.fail_after is not None and self.fetched > self.fail_after:
            raise KeyboardInterrupt("simulated kill")
        g = np.random.default_rng(i)
        label = g.integers(0, 3, (16, 16))
        image = np.stack([label == c for c in range(3)]).astype(np.float32) + g.normal(0, 0.5, (3, 16, 16))
        if not self.augment:
            return {"image": torch.from_numpy(image).float(), "label": torch.from_numpy(label)}
        if np.random.rand() < 0.5:
            image, label = image[:, :, ::-1], label[:, ::-1]
        image = torch.from_numpy(image.copy()).float() + 0.1 * torch.randn(3, 16, 16)
        return {"image": image, "label": torch.from_numpy(label.copy())}


def _settings(**kw):
    base = dict(iters=6, batch_size=2, lr=0.05, ckpt_every=3, val_every=0, workers=0, seed=7, keep_last=5)
    base.update(kw)
    return TrainSettings(**base)


def _fresh_model():
    torch.manual_seed(123)
    return Tiny()


def test_interrupted_then_resumed_run_is_bit_identical(tmp_path):
    full = train(_fresh_model(), Blobs(), settings=_settings(), out_dir=tmp_path / "a", num_classes=3, progress=False)
    ref = load_checkpoint(full.last_checkpoint)["state_dict"]

    # Interrupted after the step-3 checkpoint (while fetching step 4's batch), then resumed in a new model.
    with pytest.raises(KeyboardInterrupt):
        train(
            _fresh_model(),
            Blobs(fail_after=6),
            settings=_settings(),
            out_dir=tmp_path / "b",
            num_classes=3,
            progress=False,
        )
    assert load_checkpoint(tmp_path / "b" / "last.pt")["step"] == 3
    torch.manual_seed(999)  # the resumed process starts from another RNG state: the checkpoint must restore it
    np.random.seed(999)
    model = Tiny()
    train(
        model,
        Blobs(),
        settings=_settings(),
        out_dir=tmp_path / "b",
        num_classes=3,
        resume=tmp_path / "b" / "last.pt",
        progress=False,
    )
    got = load_checkpoint(tmp_path / "b" / "last.pt")["state_dict"]
    assert got.keys() == ref.keys()
    for k in ref:
        assert torch.equal(got[k], ref[k]), k

    # The CSV log of the resumed run has each step exactly once.
    steps = [int(r["step"]) for r in csv.DictReader(open(tmp_path / "b" / "train_log.csv"))]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_a_different_seed_changes_the_result(tmp_path):
    # Guards the test above: bit-identity must not come from a loop that ignores its randomness.
    a = train(
        _fresh_model(), Blobs(), settings=_settings(iters=3), out_dir=tmp_path / "a", num_classes=3, progress=False
    )
    b = train(
        _fresh_model(),
        Blobs(),
        settings=_settings(iters=3, seed=8),
        out_dir=tmp_path / "b",
        num_classes=3,
        progress=False,
    )
    wa = load_checkpoint(a.last_checkpoint)["state_dict"]["cls.weight"]
    wb = load_checkpoint(b.last_checkpoint)["state_dict"]["cls.weight"]
    assert not torch.equal(wa, wb)


def test_nan_loss_stops_naming_the_iteration_and_keeps_the_last_good_checkpoint(tmp_path):
    model = _fresh_model()
    model.nan_at_call = 5  # the 5th forward = iteration 5
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at iteration 5 \(loss_seg=nan\)") as err:
        train(
            model, Blobs(), settings=_settings(iters=8, ckpt_every=2), out_dir=tmp_path, num_classes=3, progress=False
        )
    assert err.value.last_checkpoint is not None and err.value.last_checkpoint.name == "iter_0000004.pt"
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt["step"] == 4
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())
    assert not (tmp_path / "iter_0000005.pt").exists()


def test_lr_follows_the_poly_schedule_in_the_log(tmp_path):
    train(
        _fresh_model(),
        Blobs(),
        settings=_settings(iters=4, min_lr=0.0, poly_power=1.0),
        out_dir=tmp_path,
        num_classes=3,
        progress=False,
    )
    lrs = [float(r["lr"]) for r in csv.DictReader(open(tmp_path / "train_log.csv"))]
    # lr(i) = 0.05 * (1 - i/4) for the 0-based iteration i that produced row i+1.
    assert lrs == pytest.approx([0.05, 0.0375, 0.025, 0.0125])


def test_bf16_autocast_and_grad_clip(tmp_path):
    model = _fresh_model()
    before = model.cls.weight.detach().clone()
    res = train(
        model,
        Blobs(),
        settings=_settings(iters=2, amp="bf16", grad_clip=1e-3),
        out_dir=tmp_path,
        num_classes=3,
        progress=False,
    )
    assert model.dtypes == {torch.bfloat16}  # the forward ran under autocast
    after = load_checkpoint(res.last_checkpoint)["state_dict"]["cls.weight"]
    assert after.dtype == torch.float32  # weights stay fp32
    # Clipping to a norm of 1e-3 bounds each SGD step (lr 0.05, momentum 0.9): |dw| <= 0.05 * (1 + 1.9) * 1e-3
    # plus weight decay lr * 5e-4 * 2.9 * |w| (taken as 3), far below what an unclipped step moves (~0.1).
    assert float((after - before).norm()) < 0.05 * 2.9 * 1e-3 + 0.05 * 5e-4 * 3 * float(before.norm()) + 1e-6


@pytest.mark.slow  # starts worker processes
def test_worker_count_does_not_change_the_result(tmp_path):
    # Each sample's augmentation is seeded from (seed, epoch, index): 0 or 2 workers give the same weights.
    a = train(_fresh_model(), Blobs(), settings=_settings(iters=3), out_dir=tmp_path / "a", num_classes=3,
              progress=False)  # fmt: skip
    b = train(_fresh_model(), Blobs(), settings=_settings(iters=3, workers=2), out_dir=tmp_path / "b",
              num_classes=3, progress=False)  # fmt: skip
    wa, wb = load_checkpoint(a.last_checkpoint)["state_dict"], load_checkpoint(b.last_checkpoint)["state_dict"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_param_groups_for_the_segformer_recipe():
    from sbcb.train.loop import build_optimizer

    class Net(nn.ModuleDict):
        def head_parameters(self):  # the model says which parameters are its head (as sbcb.SBCB does)
            return [*self["decoder"].parameters(), *self["head"].parameters()]

    model = Net(
        {
            "encoder": nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)),
            "decoder": nn.Sequential(nn.Conv2d(4, 4, 1), nn.LayerNorm(4)),
            "head": nn.Conv2d(4, 2, 1),
        }
    )
    s = TrainSettings(optimizer="adamw", lr=6e-5, weight_decay=0.01, head_lr_mult=10.0, norm_decay=False)
    opt = build_optimizer(model, s)
    assert isinstance(opt, torch.optim.AdamW)
    got = {(round(g["lr"], 12), g["weight_decay"]): {id(p) for p in g["params"]} for g in opt.param_groups}
    enc, dec, head = model["encoder"], model["decoder"], model["head"]
    assert got == {
        (6e-5, 0.01): {id(enc[0].weight), id(enc[0].bias)},
        (6e-5, 0.0): {id(enc[1].weight), id(enc[1].bias)},
        (6e-4, 0.01): {id(dec[0].weight), id(dec[0].bias), id(head.weight), id(head.bias)},
        (6e-4, 0.0): {id(dec[1].weight), id(dec[1].bias)},
    }
    # The paper's CNN default: one SGD group with everything.
    sgd = build_optimizer(model, TrainSettings())
    assert isinstance(sgd, torch.optim.SGD) and len(sgd.param_groups) == 1
    assert len(sgd.param_groups[0]["params"]) == len(list(model.parameters()))
