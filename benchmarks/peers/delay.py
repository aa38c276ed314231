"""Delay of a system's output against its input, by FFT cross-correlation, and alignment.

Streaming denoisers emit their output a fixed number of samples late (frame buffering and
look-ahead). Scoring a late output against the clean reference would punish the delay instead of
the denoising, so every output is shifted back by its measured delay before scoring.
"""

from __future__ import annotations

import numpy as np
from scipy import fft as sp_fft


def estimate_delay(reference: np.ndarray, output: np.ndarray, max_delay: int) -> int:
    """Lag in samples by which ``output`` trails ``reference``, searched in ``[0, max_delay]``.

    The lag maximises the cross-correlation ``c[k] = sum_n output[n + k] * reference[n]``,
    computed with real FFTs (zero-padded, so it is linear, not circular). Returns 0 when either
    signal is silent. A system that adds noise or filters its input still peaks at its delay.
    """
    if max_delay < 0:
        raise ValueError(f"max_delay must be >= 0, got {max_delay}")
    ref = np.asarray(reference, dtype=np.float64).reshape(-1)
    out = np.asarray(output, dtype=np.float64).reshape(-1)
    if ref.size == 0 or out.size == 0 or not np.any(ref) or not np.any(out):
        return 0
    n = sp_fft.next_fast_len(len(ref) + len(out) - 1, real=True)
    corr = sp_fft.irfft(sp_fft.rfft(out, n) * np.conj(sp_fft.rfft(ref, n)), n)
    # corr[k] for k >= 0 is output shifted left by k against reference: output late by k.
    hi = min(max_delay, len(out) - 1)
    return int(np.argmax(corr[: hi + 1]))


def shift_back(output: np.ndarray, lag: int) -> np.ndarray:
    """``output`` advanced by ``lag`` samples (its first ``lag`` samples dropped) and zero-padded
    at the end, so it keeps its length and lines up with the reference."""
    out = np.asarray(output)
    if lag < 0:
        raise ValueError(f"lag must be >= 0, got {lag}")
    if lag == 0:
        return out.copy()
    lag = min(lag, len(out))
    return np.concatenate([out[lag:], np.zeros(lag, dtype=out.dtype)])
