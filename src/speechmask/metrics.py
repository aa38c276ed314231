"""Quality metrics on 1-D waveforms at 16 kHz: SNR (the baseline's), SI-SDR, PESQ-WB, STOI."""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

# Guards the log of 0 for a perfect estimate / silent reference; caps SNR near 100 dB.
_EPS = 1e-10


def snr_db(clean: np.ndarray, estimate: np.ndarray) -> float:
    """The baseline's SNR: ``10*log10(sum(s**2) / sum((s - s_hat)**2))`` in dB."""
    clean = np.asarray(clean, dtype=np.float64)
    err = clean - np.asarray(estimate, dtype=np.float64)
    return float(10.0 * np.log10((np.sum(clean**2) + _EPS) / (np.sum(err**2) + _EPS)))


def si_sdr_db(clean: np.ndarray, estimate: np.ndarray) -> float:
    """Scale-invariant SDR (Le Roux et al. 2019), zero-mean signals, in dB."""
    s = np.asarray(clean, dtype=np.float64)
    e = np.asarray(estimate, dtype=np.float64)
    s = s - s.mean()
    e = e - e.mean()
    target = (np.dot(e, s) / (np.dot(s, s) + _EPS)) * s
    return float(10.0 * np.log10((np.sum(target**2) + _EPS) / (np.sum((e - target) ** 2) + _EPS)))


def pesq_wb(clean: np.ndarray, estimate: np.ndarray, rate: int = 16_000) -> float:
    """Wide-band PESQ (ITU-T P.862.2), MOS-LQO in [1.04, 4.64]; NaN when PESQ cannot score
    (e.g. no speech detected in the reference)."""
    from pesq import pesq
    from pesq.cypesq import PesqError

    if rate != 16_000:
        raise ValueError(f"wide-band PESQ needs 16 kHz audio, got {rate} Hz")
    try:
        return float(pesq(rate, np.asarray(clean, np.float64), np.asarray(estimate, np.float64),
                          "wb"))
    except (PesqError, ValueError) as err:
        # The pesq package raises a bare ValueError ("cannot convert float NaN to integer")
        # when it cannot score, e.g. for an all-zero estimate.
        log.debug("PESQ failed: %s", err)
        return float("nan")


def stoi(clean: np.ndarray, estimate: np.ndarray, rate: int = 16_000) -> float:
    """Short-time objective intelligibility (Taal et al. 2011), in [0, 1]; NaN when the
    reference holds too little speech to score (under 30 frames of 12.8 ms, ~0.4 s, within 40
    dB of its loudest frame). pystoi then warns and returns 1e-5, which as a score would count
    a perfect copy of a short clip as unintelligible and pull a set's mean down by 1/n."""
    import warnings

    from pystoi import stoi as _stoi

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = float(_stoi(np.asarray(clean, np.float64), np.asarray(estimate, np.float64),
                            rate))
    if any("Not enough STFT frames" in str(w.message) for w in caught):
        log.debug("STOI: too little speech in the reference to score")
        return float("nan")
    return value


METRICS = {"snr": snr_db, "si_sdr": si_sdr_db, "pesq": pesq_wb, "stoi": stoi}


def score(clean: np.ndarray, estimate: np.ndarray, which: tuple[str, ...] = tuple(METRICS)) -> dict:
    """All requested metrics of one estimate against its clean reference."""
    return {name: METRICS[name](clean, estimate) for name in which}
