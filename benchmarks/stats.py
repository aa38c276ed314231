"""Paired statistics over files, shared by the benchmark reports."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np


def mean_se(diffs: Iterable[float]) -> tuple[float, float, int]:
    """``(mean, standard error, n)`` of per-file differences, non-finite ones dropped; the
    standard error is the sample std / sqrt(n) (NaN below two files, the mean NaN with none).

    Why paired: file to file two systems differ by 1-3 dB SI-SDR, so a 0.01 dB difference of
    means over 864 files has a standard error of ~0.1 dB; the s.e. says which leads are real."""
    d = np.asarray(list(diffs), dtype=np.float64)
    d = d[np.isfinite(d)]
    n = len(d)
    mean = float(d.mean()) if n else math.nan
    se = float(d.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    return mean, se, n
