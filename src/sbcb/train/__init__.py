"""Training, evaluation and checkpoints on top of the public sbcb API.

- `train(model, train_set, settings=TrainSettings(...), out_dir=..., num_classes=K)`: the plain PyTorch loop;
- `evaluate(model, dataset, num_classes=K)`: whole / slide / multi-scale+flip inference and the paper's metrics;
- `load_model(path)`: rebuild a model from a checkpoint's constructor kwargs and load its weights;
- `load_checkpoint(path)`: the checkpoint dict (safe ``weights_only`` loading);
- `Config`: the one run configuration (model, data, train, run sections); `run_training(config)`: a whole run.

Names are imported lazily so that ``import sbcb.train`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "train": "sbcb.train.loop",
    "TrainSettings": "sbcb.train.config",
    "Config": "sbcb.train.config",
    "run_training": "sbcb.train.run",
    "TrainResult": "sbcb.train.loop",
    "NonFiniteLossError": "sbcb.train.loop",
    "evaluate": "sbcb.train.evaluate",
    "predict_logits": "sbcb.train.evaluate",
    "load_model": "sbcb.train.checkpoint",
    "load_checkpoint": "sbcb.train.checkpoint",
    "CheckpointManager": "sbcb.train.checkpoint",
    "PolySchedule": "sbcb.train.schedule",
    "poly_lr": "sbcb.train.schedule",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sbcb.train' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
