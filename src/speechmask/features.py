"""STFT analysis/synthesis at 16 kHz and the compressed magnitude features the model sees.

Shapes: waveforms ``[B, N]`` (or ``[N]``), spectra ``[B, T, F]`` with ``F = n_fft // 2 + 1``.
Frame ``t`` covers samples ``[t*hop - n_fft/2, t*hop + n_fft/2)`` (centred, zero padded), so
``T = N // hop + 1``; :func:`istft` with ``length=N`` gives back exactly ``N`` samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .stft_config import StftConfig

__all__ = ["FeatureConfig", "StftConfig", "compress", "istft", "stft", "window"]


def window(cfg: StftConfig, device: torch.device | None = None) -> torch.Tensor:
    """sqrt of the periodic Hann window: used for both analysis and synthesis."""
    return torch.hann_window(cfg.n_fft, periodic=True, device=device).sqrt()


def stft(x: torch.Tensor, cfg: StftConfig = StftConfig()) -> torch.Tensor:
    """Complex STFT. ``x: [B, N]`` or ``[N]`` float -> ``[B, T, F]`` (or ``[T, F]``) complex."""
    spec = torch.stft(
        x,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop,
        window=window(cfg, x.device),
        center=True,
        pad_mode="constant",
        return_complex=True,
    )
    return spec.transpose(-1, -2)


def istft(spec: torch.Tensor, length: int, cfg: StftConfig = StftConfig()) -> torch.Tensor:
    """Inverse of :func:`stft`. ``spec: [B, T, F]`` complex -> ``[B, length]`` float."""
    return torch.istft(
        spec.transpose(-1, -2),
        n_fft=cfg.n_fft,
        hop_length=cfg.hop,
        window=window(cfg, spec.device),
        center=True,
        length=length,
    )


@dataclass(frozen=True)
class FeatureConfig:
    """How the magnitude is compressed before per-bin normalisation."""

    # "log": log(|X|^2 + eps), scale-equivariant (a gain is a shift, removed by normalisation);
    # "power": |X|^power, bounded near 0, a common alternative (RNNoise-style compression).
    compression: str = "log"
    # Exponent for "power" compression; 0.3 is the usual perceptual choice.
    power: float = 0.3
    # Floor added to |X|^2 for "log": 1e-10 = -100 dB, far below 16-bit quantisation (-96 dB).
    eps: float = 1e-10

    def __post_init__(self) -> None:
        if self.compression not in ("log", "power"):
            raise ValueError(f"compression must be 'log' or 'power', got {self.compression!r}")
        if not 0 < self.power <= 1:
            raise ValueError(f"power must be in (0, 1], got {self.power}")


def compress(mag: torch.Tensor, cfg: FeatureConfig = FeatureConfig()) -> torch.Tensor:
    """Compressed magnitude. ``mag: [B, T, F]`` >= 0 -> same shape."""
    if cfg.compression == "log":
        return torch.log(mag.square() + cfg.eps)
    return (mag + 1e-12).pow(cfg.power)
