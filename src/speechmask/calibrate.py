"""Fit a trained model's mask exponent on held-out mixtures.

The training loss pairs BCE to the IRM with the SNR of the masked spectrum; the BCE term pulls
the mask toward the IRM, which keeps more noise than the SNR-optimal mask. Raising the mask to
a power above 1 after training corrects that where the fit set resembles the audio to enhance.
The fit picks the exponent with the best mean SNR (the baseline's metric) on the given pairs.

An exponent fitted on noise types seen in training does not carry to unseen ones ("Mask-exponent
calibration" in docs/experiments.md), so the shipped model is not calibrated; calibrate on
pairs of the recordings you will enhance (``--pairs``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .checkpoint import load_raw, save
from .features import istft, stft
from .metrics import si_sdr_db, snr_db
from .model import MaskNet
from .stft_config import StftConfig

# 1.0 (as trained) to 1.6 in steps of 0.1: the SNR curve over the exponent is flat near its
# peak (docs/experiments.md), so a finer grid buys nothing.
DEFAULT_EXPONENTS = (1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6)


@dataclass(frozen=True)
class ExponentScore:
    """Mean scores of one candidate exponent over the calibration pairs."""

    exponent: float  # total mask exponent (not relative to the model's current one)
    snr_db: float  # mean SNR, dB (the baseline's formula)
    si_sdr_db: float  # mean SI-SDR, dB


def check_exponents(exponents: Sequence[float]) -> None:
    """Raise ValueError unless ``exponents`` is non-empty and each is in (0, 4]."""
    if not exponents or any(not 0.0 < p <= 4.0 for p in exponents):
        raise ValueError(f"mask exponents must each be in (0, 4], got {list(exponents)}")


@torch.no_grad()
def score_exponents(
    model: MaskNet,
    stft_cfg: StftConfig,
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    exponents: Sequence[float] = DEFAULT_EXPONENTS,
    progress: bool = True,
) -> list[ExponentScore]:
    """Mean SNR and SI-SDR of ``model`` on ``pairs`` of ``(clean [N], noisy [N])`` 16 kHz
    audio, for each total mask exponent in ``exponents``. The model runs once per pair; its own
    exponent is undone and each candidate applied to the same sigmoid output."""
    if not pairs:
        raise ValueError("no pairs to calibrate on")
    check_exponents(exponents)
    model.eval()
    current = model.cfg.mask_exponent
    sums = np.zeros((len(exponents), 2))
    for clean, noisy in tqdm(pairs, desc="calibrate", unit="pair", disable=not progress):
        x = torch.from_numpy(np.ascontiguousarray(noisy, dtype=np.float32))[None]
        spec = stft(x, stft_cfg)
        rows = model.offline(spec.abs())
        mask, coefs = rows[..., : model.cfg.n_freqs], rows[..., model.cfg.n_freqs :]
        for i, p in enumerate(exponents):
            # A deep filter's coefficients (if any) stay as they are; weighted by 1 - mask,
            # they follow the raised mask, as they will at run time (masks.apply_output).
            spec_est, _ = model.estimate(torch.cat([mask.pow(p / current), coefs], -1), spec)
            est = istft(spec_est, x.shape[-1], stft_cfg)[0].numpy()
            sums[i] += (snr_db(clean, est), si_sdr_db(clean, est))
    means = sums / len(pairs)
    return [ExponentScore(float(p), float(s), float(d))
            for p, (s, d) in zip(exponents, means, strict=True)]


def best_exponent(scores: Sequence[ExponentScore]) -> ExponentScore:
    """The candidate with the highest mean SNR (ties: the one closest to 1, the trained mask)."""
    return max(scores, key=lambda s: (round(s.snr_db, 6), -abs(s.exponent - 1.0)))


def write_calibrated(
    src: str | os.PathLike, dst: str | os.PathLike, scores: Sequence[ExponentScore],
    chosen: ExponentScore, calibration_set: str,
) -> Path:
    """Copy checkpoint ``src`` to ``dst`` with ``mask_exponent`` set to ``chosen.exponent`` and
    the fit recorded under ``calibration`` (set, pairs' table); weights are copied unchanged."""
    payload = load_raw(src)
    model_cfg = dict(payload["model_config"])
    model_cfg["mask_exponent"] = chosen.exponent
    payload = {k: v for k, v in payload.items() if k not in ("format", "version")}
    payload["model_config"] = model_cfg
    # A training config, if present, keeps describing the run that made the weights; only
    # the exponent changes, and it is recorded here.
    payload["calibration"] = {
        "set": calibration_set,
        "mask_exponent": chosen.exponent,
        "scores": [asdict(s) for s in scores],
    }
    return save(dst, payload)

