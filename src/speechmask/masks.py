"""Ideal masks (IBM, IRM) and applying a mask to a noisy STFT with the noisy phase.

All masks are ``[B, T, F]`` (or ``[T, F]``) float in [0, 1], computed from magnitudes of the same
shape.
"""

from __future__ import annotations

import torch

from .features import StftConfig, istft, stft

# Below this energy a bin counts as empty in the IRM (avoids 0/0 in digital silence).
_TINY = 1e-12


def ideal_binary_mask(
    speech_mag: torch.Tensor, noise_mag: torch.Tensor, lc_db: float = 0.0
) -> torch.Tensor:
    """IBM: 1 where ``|S| > |N| * 10^(LC/20)``, else 0.

    ``lc_db`` is the local criterion in dB; 0 dB (speech louder than noise) is the classic choice.
    """
    return (speech_mag > noise_mag * 10.0 ** (lc_db / 20.0)).to(speech_mag.dtype)


def ideal_ratio_mask(speech_mag: torch.Tensor, noise_mag: torch.Tensor) -> torch.Tensor:
    """IRM: ``sqrt(|S|^2 / (|S|^2 + |N|^2))``, in [0, 1]; 0 where both are silent."""
    s2 = speech_mag.square()
    total = s2 + noise_mag.square()
    return torch.sqrt(s2 / total.clamp_min(_TINY)) * (total > _TINY)


def ideal_mask(
    kind: str, speech_mag: torch.Tensor, noise_mag: torch.Tensor, lc_db: float = 0.0
) -> torch.Tensor:
    """``kind`` is ``"ibm"`` or ``"irm"``."""
    if kind == "ibm":
        return ideal_binary_mask(speech_mag, noise_mag, lc_db)
    if kind == "irm":
        return ideal_ratio_mask(speech_mag, noise_mag)
    raise ValueError(f"unknown mask kind {kind!r}; use 'ibm' or 'irm'")


def apply_mask(noisy_spec: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked complex spectrum: scales each bin's magnitude, keeps the noisy phase."""
    return noisy_spec * mask


def enhance_with_mask(
    noisy: torch.Tensor, mask: torch.Tensor, cfg: StftConfig = StftConfig()
) -> torch.Tensor:
    """Resynthesise ``noisy: [B, N]`` with ``mask: [B, T, F]``. Returns ``[B, N]``."""
    return istft(apply_mask(stft(noisy, cfg), mask), noisy.shape[-1], cfg)


def oracle_enhance(
    speech: torch.Tensor,
    noise: torch.Tensor,
    kind: str,
    cfg: StftConfig = StftConfig(),
    lc_db: float = 0.0,
) -> torch.Tensor:
    """Enhance ``speech + noise`` with the ideal mask computed from the true sources."""
    mask = ideal_mask(kind, stft(speech, cfg).abs(), stft(noise, cfg).abs(), lc_db)
    return enhance_with_mask(speech + noise, mask, cfg)
