import math

import pytest
import torch

from sbcb.train.schedule import PolySchedule, poly_lr


def test_poly_hand_worked():
    # base 0.01, min 1e-4, 100 steps, power 0.9.
    assert poly_lr(0, base_lr=0.01, max_steps=100) == pytest.approx(0.01)
    assert poly_lr(100, base_lr=0.01, max_steps=100) == pytest.approx(1e-4)
    # step 50: 0.5**0.9 = exp(0.9 * ln 0.5) = exp(-0.6238325) = 0.5358867; (0.01 - 1e-4) * 0.5358867 + 1e-4
    assert poly_lr(50, base_lr=0.01, max_steps=100) == pytest.approx(0.0099 * 0.5358867 + 1e-4, rel=1e-6)


def test_poly_matches_torch_polynomial_lr_without_floor():
    # torch's PolynomialLR is an independent implementation of base * (1 - t/T)^p (min_lr = 0).
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.01)
    ref = torch.optim.lr_scheduler.PolynomialLR(opt, total_iters=20, power=0.9)
    for step in range(20):
        expected = opt.param_groups[0]["lr"]
        assert poly_lr(step, base_lr=0.01, max_steps=20, min_lr=0.0) == pytest.approx(expected, rel=1e-9)
        opt.step()
        ref.step()


def test_segformer_warmup():
    # Linear warm-up from ratio 1e-6 over 1500 steps on top of poly power 1, min_lr 0 (official SegFormer).
    kw = dict(base_lr=6e-5, max_steps=160_000, power=1.0, min_lr=0.0, warmup_steps=1500, warmup_ratio=1e-6)
    assert poly_lr(0, **kw) == pytest.approx(6e-5 * 1e-6)
    plain = 6e-5 * (1 - 750 / 160_000)
    assert poly_lr(750, **kw) == pytest.approx(plain * (1 - 0.5 * (1 - 1e-6)))
    assert poly_lr(1500, **kw) == pytest.approx(6e-5 * (1 - 1500 / 160_000))


def test_schedule_keeps_group_multipliers_and_state():
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [a], "lr": 0.01}, {"params": [b], "lr": 0.1}], lr=0.01)
    sched = PolySchedule(opt, max_steps=10, power=1.0, min_lr=0.0)
    sched.set_step(5)
    assert sched.get_last_lr() == pytest.approx([0.005, 0.05])
    state = sched.state_dict()
    opt2 = torch.optim.SGD([{"params": [a], "lr": 0.01}, {"params": [b], "lr": 0.1}], lr=0.01)
    sched2 = PolySchedule(opt2, max_steps=1)
    sched2.load_state_dict(state)
    assert sched2.get_last_lr() == pytest.approx([0.005, 0.05])
    assert math.isclose(sched2.lr_at(10, 0.01), 0.0)


def test_bad_steps_raise():
    with pytest.raises(ValueError, match="outside"):
        poly_lr(11, base_lr=0.1, max_steps=10)
    with pytest.raises(ValueError, match="positive"):
        poly_lr(0, base_lr=0.1, max_steps=0)
