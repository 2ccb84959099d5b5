"""Iteration-based learning-rate schedules: poly (the paper's CNN recipe) with an optional linear warm-up.

The rule follows mmcv's `PolyLrUpdaterHook`, which produced the paper's numbers: at 0-based iteration ``i`` of
``max_steps``::

    lr(i) = (base_lr - min_lr) * (1 - i / max_steps) ** power + min_lr

With a warm-up of ``warmup_steps`` (the official SegFormer recipe: 1500 steps, ratio 1e-6, power 1.0, min_lr 0)
the first steps are scaled linearly::

    lr_warm(i) = lr(i) * (1 - (1 - i / warmup_steps) * (1 - warmup_ratio))      for i < warmup_steps
"""

from __future__ import annotations

import torch


def poly_lr(
    step: int,
    *,
    base_lr: float,
    max_steps: int,
    power: float = 0.9,
    min_lr: float = 1e-4,
    warmup_steps: int = 0,
    warmup_ratio: float = 1e-6,
) -> float:
    """Learning rate at a 0-based iteration.

    Args:
        step: Iteration about to run, ``0 <= step <= max_steps``.
        base_lr: Learning rate at step 0 (without warm-up).
        max_steps: Total number of iterations.
        power: Poly exponent (paper: 0.9; SegFormer: 1.0).
        min_lr: Floor reached at ``max_steps`` (paper: 1e-4).
        warmup_steps: Length of the linear warm-up; 0 disables it.
        warmup_ratio: Factor applied at step 0 of the warm-up.

    Returns:
        The learning rate (a float).
    """
    if max_steps <= 0:
        raise ValueError(f"max_steps must be positive, got {max_steps}")
    if not 0 <= step <= max_steps:
        raise ValueError(f"step {step} is outside 0..{max_steps}")
    coeff = (1.0 - step / max_steps) ** power
    lr = (base_lr - min_lr) * coeff + min_lr
    if step < warmup_steps:
        k = (1.0 - step / warmup_steps) * (1.0 - warmup_ratio)
        lr = lr * (1.0 - k)
    return lr


class PolySchedule:
    """Sets every param group's lr from `poly_lr` before each iteration.

    Each group keeps its own base lr (``group["initial_lr"]``, taken from ``group["lr"]`` at construction), so a
    head trained at ``lr x 10`` stays at 10x; ``min_lr`` is the same absolute floor for every group, as in mmcv.

    Args:
        optimizer: The optimizer whose groups are scheduled.
        max_steps: Total number of iterations.
        power: Poly exponent.
        min_lr: Absolute floor.
        warmup_steps: Linear warm-up length (0 = none).
        warmup_ratio: Warm-up start factor.

    Call `set_step(i)` before iteration ``i``; `state_dict`/`load_state_dict` hold the settings and the step.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        *,
        max_steps: int,
        power: float = 0.9,
        min_lr: float = 1e-4,
        warmup_steps: int = 0,
        warmup_ratio: float = 1e-6,
    ) -> None:
        self.optimizer = optimizer
        self.max_steps = int(max_steps)
        self.power = float(power)
        self.min_lr = float(min_lr)
        self.warmup_steps = int(warmup_steps)
        self.warmup_ratio = float(warmup_ratio)
        self.step_index = 0
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.set_step(0)

    def lr_at(self, step: int, base_lr: float) -> float:
        return poly_lr(
            step,
            base_lr=base_lr,
            max_steps=self.max_steps,
            power=self.power,
            min_lr=self.min_lr,
            warmup_steps=self.warmup_steps,
            warmup_ratio=self.warmup_ratio,
        )

    def set_step(self, step: int) -> None:
        """Write the lr of iteration ``step`` (0-based) into every param group."""
        self.step_index = int(step)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(min(self.step_index, self.max_steps), group["initial_lr"])

    def get_last_lr(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {
            "max_steps": self.max_steps,
            "power": self.power,
            "min_lr": self.min_lr,
            "warmup_steps": self.warmup_steps,
            "warmup_ratio": self.warmup_ratio,
            "step_index": self.step_index,
        }

    def load_state_dict(self, state: dict) -> None:
        self.max_steps = int(state["max_steps"])
        self.power = float(state["power"])
        self.min_lr = float(state["min_lr"])
        self.warmup_steps = int(state["warmup_steps"])
        self.warmup_ratio = float(state["warmup_ratio"])
        self.set_step(int(state["step_index"]))
