"""TensorBoard logging with the interface of the trainer's CSV logger (extra: ``pip install "sbcb[tensorboard]"``).

`TensorBoardLogger.log(name, row)` takes the same calls as the CSV logger: ``name`` is the CSV file the row would
go to (``"train_log.csv"`` -> tag prefix ``train/``, ``"val_log.csv"`` -> ``val/``) and ``row`` a dict with an
integer ``"step"`` and numbers. Every finite number becomes a scalar ``{prefix}/{key}`` at that step; other values
(strings, NaN) are skipped. Events go to ``{out_dir}/tb``. On resume (``start_step`` > 0) TensorBoard's purge step
hides events written after the checkpoint by the interrupted run, as the CSV logger drops those rows.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["TensorBoardLogger"]


class TensorBoardLogger:
    """Scalars of the training and validation rows as TensorBoard events.

    Args:
        out_dir: The run folder; events are written under ``out_dir / "tb"``.
        start_step: The step training resumes from (0 for a fresh run).
        enabled: False on non-zero ranks: every call is then a no-op and nothing is imported.

    Raises:
        ImportError: `enabled` and tensorboard is not installed (names the extra).
    """

    def __init__(self, out_dir: str | os.PathLike, *, start_step: int = 0, enabled: bool = True) -> None:
        self.enabled = enabled
        self.log_dir = Path(out_dir) / "tb"
        self.writer: Any = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise ImportError('TensorBoard logging needs tensorboard: pip install "sbcb[tensorboard]"') from e
        self.writer = SummaryWriter(log_dir=str(self.log_dir), purge_step=start_step + 1 if start_step > 0 else None)

    def log(self, name: str, row: Mapping[str, Any]) -> None:
        """Write one row (``{"step": int, key: number, ...}``) under the prefix named by the CSV file `name`."""
        if self.writer is None:
            return
        prefix = Path(name).stem.removesuffix("_log")
        step = int(row["step"])
        for key, value in row.items():
            if key == "step" or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if math.isfinite(value):
                self.writer.add_scalar(f"{prefix}/{key}", float(value), step)

    def flush(self) -> None:
        """Write pending events to disk."""
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
