"""Training, evaluation and checkpoints on top of the public sbcb API.

- `train(model, train_set, settings=TrainSettings(...), out_dir=..., num_classes=K)`: the plain PyTorch loop;
- `evaluate(model, dataset, num_classes=K)`: whole / slide / multi-scale+flip inference and the paper's metrics;
- `load_model(path)`: rebuild a model from a checkpoint's constructor kwargs and load its weights;
- `load_checkpoint(path)`: the checkpoint dict (safe ``weights_only`` loading);
- `Config`: the one run configuration (model, data, train, run sections); `run_training(config)`: a whole run.

Names are imported lazily so that ``import sbcb.train`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sbcb._lazy import lazy_getattr, lazy_table

_LAZY = lazy_table(
    {
        "sbcb.train.loop": ["train", "TrainResult", "NonFiniteLossError"],
        "sbcb.train.config": ["TrainSettings", "Config"],
        "sbcb.train.run": ["run_training"],
        "sbcb.train.evaluation": ["evaluate", "predict_logits"],
        "sbcb.train.checkpoint": ["load_model", "load_checkpoint", "CheckpointManager"],
        "sbcb.train.schedule": ["PolySchedule", "poly_lr"],
    }
)

if TYPE_CHECKING:  # the names for type checkers and IDEs; at run time `__getattr__` imports on first use
    from sbcb.train.checkpoint import CheckpointManager as CheckpointManager
    from sbcb.train.checkpoint import load_checkpoint as load_checkpoint
    from sbcb.train.checkpoint import load_model as load_model
    from sbcb.train.config import Config as Config
    from sbcb.train.config import TrainSettings as TrainSettings
    from sbcb.train.evaluation import evaluate as evaluate
    from sbcb.train.evaluation import predict_logits as predict_logits
    from sbcb.train.loop import NonFiniteLossError as NonFiniteLossError
    from sbcb.train.loop import TrainResult as TrainResult
    from sbcb.train.loop import train as train
    from sbcb.train.run import run_training as run_training
    from sbcb.train.schedule import PolySchedule as PolySchedule
    from sbcb.train.schedule import poly_lr as poly_lr

__all__ = list(_LAZY)
__getattr__ = lazy_getattr(__name__, _LAZY)
