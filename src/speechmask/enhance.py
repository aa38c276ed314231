"""Offline enhancement with a trained mask model: arrays (Python API) and files (CLI).

The model runs at 16 kHz. Other rates are handled so that nothing is lost:
- below 16 kHz: upsample, enhance, downsample back (plus what the resampler's anti-alias
  filter removed just below the input's Nyquist, scaled like the band above 8 kHz below);
- above 16 kHz: the 0-8 kHz band is enhanced at 16 kHz and upsampled; the band above 8 kHz
  (the input minus its 16 kHz round trip) is kept and scaled per frame by the mean mask of the
  top model bands (6-8 kHz), so hiss above 8 kHz is attenuated when the model attenuates the top
  of its band, and air/sibilance of speech survives when the model keeps it.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import torch

from .audio import MODEL_RATE, resample
from .checkpoint import load_model
from .features import StftConfig, istft, stft
from .model import MaskNet, resolve_device
from .pipeline import (
    BLOCK_SECONDS,
    ChannelPipeline,
    check_audio,
    enhance_file,
    fit_length,
    high_band,
)

__all__ = ["BLOCK_SECONDS", "ChannelPipeline", "Enhancer", "enhance_file"]

log = logging.getLogger(__name__)


class Enhancer:
    """Denoise audio with a mask model.

    >>> enh = Enhancer.load()          # the shipped default model
    >>> clean = enh(noisy, 44100)      # noisy: [samples] or [channels, samples] float
    """

    def __init__(self, model: MaskNet, stft_cfg: StftConfig, strength: float = 1.0,
                 info: dict | None = None, device: str | torch.device = "cpu"):
        """``device``: ``cpu``, ``cuda`` or ``auto`` (CUDA when present); audio in and out
        stays numpy on the CPU."""
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {strength}")
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.model = model.eval().to(self.device)
        self.stft_cfg = stft_cfg
        self.strength = strength
        self.info = info or {}

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, strength: float = 1.0,
             device: str | torch.device = "cpu") -> Enhancer:
        """Load a checkpoint (default: the shipped pretrained model)."""
        model, stft_cfg, payload = load_model(path)
        info = {k: payload.get(k) for k in ("metrics", "train_config")}
        return cls(model, stft_cfg, strength, info, device)

    @torch.no_grad()
    def mask_16k(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Enhance mono 16 kHz ``audio: [N]``. Returns ``(enhanced [N], mask [T, F])``.

        The mask is ``1 - strength * (1 - mask)``: strength 0 is the input, 1 the full mask.
        """
        x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None]
        spec = stft(x.to(self.device), self.stft_cfg)
        mask = self.model.offline(spec.abs())
        mask = 1.0 - self.strength * (1.0 - mask)
        out = istft(spec * mask, x.shape[-1], self.stft_cfg)
        return out[0].cpu().numpy(), mask[0].cpu().numpy()

    def _channel(self, audio: np.ndarray, rate: int) -> np.ndarray:
        n = audio.shape[-1]
        if rate == MODEL_RATE:
            return self.mask_16k(audio)[0]
        low = resample(audio, rate, MODEL_RATE)
        enhanced, mask = self.mask_16k(low)
        out = fit_length(resample(enhanced, MODEL_RATE, rate), n)
        # What the 16 kHz round trip loses: above 8 kHz for high rates, the anti-alias roll-off
        # just below Nyquist for low rates. Keep it, scaled per frame by the mean mask of the
        # model bands next to it, so strength 0 returns the input exactly.
        residual = audio - fit_length(resample(low, MODEL_RATE, rate), n)
        first, end = high_band(self.stft_cfg, rate)
        frame_gain = mask[:, first:end].mean(axis=1)
        frame_time = np.arange(len(frame_gain)) * self.stft_cfg.hop / MODEL_RATE
        gain = np.interp(np.arange(n) / rate, frame_time, frame_gain)
        return (out + gain.astype(np.float32) * residual).astype(np.float32)

    def __call__(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """Enhance ``audio: [samples]`` or ``[channels, samples]`` at ``sample_rate``; returns the
        same shape and length. Each channel is denoised on its own."""
        audio = check_audio(audio)
        if audio.ndim == 1:
            return self._channel(audio, sample_rate)
        return np.stack([self._channel(ch, sample_rate) for ch in audio])

    def pipeline(self, rate: int) -> ChannelPipeline:
        """A block-wise enhancer for one channel at ``rate`` (bounded memory, same output)."""
        from .streaming import StreamingEnhancer

        return ChannelPipeline(
            lambda band: StreamingEnhancer(self.model, self.stft_cfg, self.strength, band),
            self.stft_cfg, rate)
