"""Checkpoints: plain dicts, written atomically, loadable with ``torch.load(weights_only=True)``.

Layout (``format`` 1)::

    {"format": 1,
     "model": {"name": "sbcb.models.build_model", "kwargs": {...}},   # rebuilds the model without a config file
     "state_dict": {...}, "optimizer": {...} | None, "scheduler": {...} | None, "scaler": {...} | None,
     "step": 1234,                          # iterations completed
     "rng": {"python": ..., "numpy": ..., "torch": ByteTensor, "cuda": [ByteTensor, ...]},
     "sampler": {...},                      # position of the training sample stream
     "metrics": {...}, "best": {...}, "config": {...}, "versions": {...}}

Everything in it is a tensor, a number, a string, a list/tuple or a dict of those, so the safe
``weights_only=True`` unpickler loads it.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import random
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

import sbcb
from sbcb.models import build_model, check_allowed

FORMAT = 1
_NUMBERED = re.compile(r"^iter_(\d+)\.pt$")


def versions() -> dict[str, str]:
    """Versions of sbcb, torch and the optional model libraries, for checkpoints and resolved configs."""
    out = {"sbcb": str(sbcb.__version__), "torch": str(torch.__version__), "numpy": str(np.__version__)}
    for dist in ("timm", "segmentation-models-pytorch", "torchvision", "opencv-python-headless"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return out


# --------------------------------------------------------------------------------------------------- RNG states


def rng_state() -> dict[str, Any]:
    """All global RNG states as plain types: python, numpy (legacy global), torch CPU and every CUDA device."""
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": _to_plain(random.getstate()),
        "numpy": {
            "name": str(np_name),
            "keys": torch.from_numpy(np_keys.astype(np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
        "cuda": [],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore the states captured by `rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    npst = state["numpy"]
    np.random.set_state(
        (npst["name"], npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"], npst["gauss"])
    )
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])


def _to_plain(obj: Any) -> Any:
    if isinstance(obj, tuple):
        return tuple(_to_plain(x) for x in obj)
    if isinstance(obj, list):
        return [_to_plain(x) for x in obj]
    return obj


# --------------------------------------------------------------------------------------------------- save/load


def atomic_save(obj: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write ``obj`` with `torch.save` to a temporary file next to ``path``, fsync it, then `os.replace` it.

    A crash or a kill at any moment leaves either the old file or the complete new one at ``path``, never a
    truncated one. A failed write removes its temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(dict(obj), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not possible on every platform, and harmless to skip there.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _link_or_copy(src: Path, dst: Path) -> None:
    """Point ``dst`` at the content of ``src`` atomically (hard link if possible, else a copy), replacing it."""
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    os.unlink(tmp)
    try:
        os.link(src, tmp)
    except OSError:
        import shutil

        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def load_checkpoint(path: str | os.PathLike, *, map_location: str | torch.device | None = "cpu") -> dict[str, Any]:
    """Load a checkpoint with the safe unpickler and check its format.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: The file is not an sbcb checkpoint (or is from a newer format).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        # torch's own message suggests weights_only=False, which would run code from the file: never say that.
        raise ValueError(
            f"{path} is not a readable checkpoint ({type(e).__name__}; truncated, or not written by sbcb/torch.save "
            "of plain tensors; sbcb loads only with the safe weights_only unpickler)"
        ) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "model" not in ckpt:
        raise ValueError(f"{path} is not an sbcb checkpoint (expected a dict with 'model' and 'state_dict')")
    if int(ckpt.get("format", 0)) > FORMAT:
        raise ValueError(f"{path} has checkpoint format {ckpt['format']}; this sbcb reads format <= {FORMAT}")
    return ckpt


def model_from_checkpoint(
    ckpt: Mapping[str, Any], *, source: str | os.PathLike = "checkpoint", allow_custom: bool = False
) -> torch.nn.Module:
    """Rebuild a checkpoint's model (after `sbcb.models.check_allowed`) and load its weights.

    Raises:
        ValueError: A refused model spec or weights that do not fit it (one line naming ``source``).
    """
    try:
        kwargs = check_allowed(ckpt.get("model") or {}, allow_custom=allow_custom)
    except ValueError as e:
        raise ValueError(f"{source}: {e}") from None
    try:
        model = build_model(**kwargs)
    except (ValueError, TypeError, KeyError) as e:
        raise ValueError(f"{source}: can't rebuild its model ({type(e).__name__}: {e})") from None
    try:
        model.load_state_dict(ckpt["state_dict"])
    except (RuntimeError, TypeError, AttributeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{source}: its weights do not fit its model ({first})") from None
    return model


def load_model(
    path: str | os.PathLike, *, map_location: str | torch.device | None = "cpu", allow_custom: bool = False
) -> torch.nn.Module:
    """Rebuild the model stored in a checkpoint from its constructor kwargs and load its weights.

    Only allow-listed architectures are built (`sbcb.models.check_allowed`); nothing is downloaded.

    Args:
        path: A checkpoint written by `sbcb train` or `sbcb export` (stripped or not).
        map_location: Where tensors are loaded.
        allow_custom: Import and call a ``"module:function"`` factory named in the checkpoint (only for files you
            trust: that runs their code).

    Returns:
        The model in eval mode, on the CPU (move it yourself).

    Raises:
        ValueError: Not a checkpoint, a refused model spec, or weights that do not fit (one line).
    """
    ckpt = load_checkpoint(path, map_location=map_location)
    return model_from_checkpoint(ckpt, source=path, allow_custom=allow_custom).eval()


# --------------------------------------------------------------------------------------------------- run folder


class CheckpointManager:
    """Numbered checkpoints ``iter_NNNNNNN.pt`` in a run folder, plus ``last.pt`` and ``best.pt``.

    Args:
        directory: The run folder.
        keep_last: How many numbered checkpoints to keep (older ones are deleted; ``best.pt`` is separate).
    """

    def __init__(self, directory: str | os.PathLike, *, keep_last: int = 3) -> None:
        if keep_last < 1:
            raise ValueError(f"keep_last must be >= 1, got {keep_last}")
        self.directory = Path(directory)
        self.keep_last = int(keep_last)

    @property
    def last(self) -> Path:
        return self.directory / "last.pt"

    @property
    def best(self) -> Path:
        return self.directory / "best.pt"

    def numbered(self) -> list[Path]:
        """Numbered checkpoints, oldest first."""
        if not self.directory.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.directory.iterdir() if (m := _NUMBERED.match(p.name))]
        return [p for _, p in sorted(found)]

    def latest(self) -> Path | None:
        """The checkpoint to resume from: the newest numbered one (``last.pt`` is linked to it right after it is
        written, so a kill in between leaves the numbered file newer), else ``last.pt``, else None."""
        numbered = self.numbered()
        if numbered:
            return numbered[-1]
        return self.last if self.last.exists() else None

    def save(self, ckpt: Mapping[str, Any], *, is_best: bool = False, keep: Path | None = None) -> Path:
        """Write ``iter_<step>.pt`` atomically, point ``last.pt`` (and ``best.pt`` if asked) at it, prune all but
        the newest ``keep_last`` numbered ones and ``keep`` (the last good checkpoint, see `sbcb.train.loop`)."""
        path = atomic_save(ckpt, self.directory / f"iter_{int(ckpt['step']):07d}.pt")
        _link_or_copy(path, self.last)
        if is_best:
            _link_or_copy(path, self.best)
        for old in self.numbered()[: -self.keep_last]:
            if keep is None or old.resolve() != Path(keep).resolve():
                old.unlink(missing_ok=True)
        _fsync_dir(self.directory)
        return path
