"""Without numba the SBD evaluator falls back to NumPy/SciPy and gives the same counts."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # a fresh interpreter: import time dominates under load

CODE = r"""
import sys
sys.modules["numba"] = None  # import numba -> ImportError
import numpy as np
from sbcb.metrics import _kernels
from sbcb.metrics.sbd import image_counts
assert not _kernels.HAVE_NUMBA
rng = np.random.default_rng(0)
gt = np.zeros((1, 20, 30), bool)
gt[0, 8, 3:27] = True
pred = np.clip(np.roll(gt, 1, axis=1) * 0.9 + 0.3 * rng.random(gt.shape), 0, 1)
np.save(sys.argv[1], image_counts(pred, gt, thresholds=9, max_dist=0.06))
"""


def test_no_numba_fallback_gives_identical_counts(tmp_path):
    out = tmp_path / "c.npy"
    subprocess.run([sys.executable, "-c", CODE, str(out)], check=True, timeout=300)
    from sbcb.metrics.sbd import image_counts

    rng = np.random.default_rng(0)
    gt = np.zeros((1, 20, 30), bool)
    gt[0, 8, 3:27] = True
    pred = np.clip(np.roll(gt, 1, axis=1) * 0.9 + 0.3 * rng.random(gt.shape), 0, 1)
    np.testing.assert_array_equal(np.load(out), image_counts(pred, gt, thresholds=9, max_dist=0.06))
