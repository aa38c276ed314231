"""Ideal masks (IBM, IRM) and applying a mask to a noisy STFT with the noisy phase.

All masks are ``[B, T, F]`` (or ``[T, F]``) float in [0, 1], computed from magnitudes of the same
shape.
"""

from __future__ import annotations

import torch

from .deepfilter import DeepFilter
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


def apply_output(
    out: torch.Tensor, noisy_spec: torch.Tensor, n_freqs: int, deep_filter: DeepFilter | None,
    strength: float = 1.0, floor: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A model's estimate from its output rows ``out: [B, T, W]`` aligned with the frames of
    ``noisy_spec: [B, T, F']`` (F' >= ``n_freqs``, the model's bins; W: ``n_freqs``, or the
    row width of ``deep_filter``) -> ``(estimate [B, T, n_freqs] complex, applied mask [B, T,
    n_freqs])``.

    The mask is applied as ``1 - strength * (1 - mask)``, at least ``floor`` (strength 1 and
    no floor: the mask itself); a deep filter's output (deepfilter.py) is added on its bins,
    weighted by ``1 - mask`` (the rows' mask) and ``strength``, reading frames outside the
    signal as silence."""
    mask = raw = out[..., :n_freqs]
    if strength != 1.0:
        mask = 1.0 - strength * (1.0 - mask)
    if floor:
        mask = mask.clamp(min=floor)
    spec = noisy_spec[..., :n_freqs]
    est = spec * mask
    if deep_filter is None:
        return est, mask
    df, (batch, frames) = deep_filter, out.shape[:2]
    pairs = out[..., n_freqs:].unflatten(-1, (df.order, df.bins, 2))
    weight = (1.0 - raw[..., : df.bins]).unsqueeze(-2)  # [B, T, 1, bins]
    coefs = torch.complex(pairs[..., 0], pairs[..., 1]) * weight  # [B, T, order, bins]
    low = spec[..., : df.bins]
    low = torch.cat([low.new_zeros(batch, df.order - 1 - df.lookahead, df.bins), low,
                     low.new_zeros(batch, df.lookahead, df.bins)], dim=1)
    filtered = sum(coefs[:, :, n] * low[:, n : n + frames] for n in range(df.order))
    return torch.cat([est[..., : df.bins] + strength * filtered, est[..., df.bins :]], -1), mask
