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
from pathlib import Path

import numpy as np
import torch

from .audio import MODEL_RATE, read_audio, resample, write_audio
from .checkpoint import load_model
from .features import StftConfig, istft, stft
from .model import MaskNet

log = logging.getLogger(__name__)

# Model bins whose mean mask sets the gain of the band above 8 kHz: 6-8 kHz (bins 192-256 at
# 31.25 Hz per bin), the part of the model's band closest in content to what lies above it.
HIGH_BAND_FROM_HZ = 6000.0


class Enhancer:
    """Denoise audio with a mask model.

    >>> enh = Enhancer.load()          # the shipped default model
    >>> clean = enh(noisy, 44100)      # noisy: [samples] or [channels, samples] float
    """

    def __init__(self, model: MaskNet, stft_cfg: StftConfig, strength: float = 1.0,
                 info: dict | None = None):
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {strength}")
        self.model = model.eval()
        self.stft_cfg = stft_cfg
        self.strength = strength
        self.info = info or {}

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, strength: float = 1.0) -> Enhancer:
        """Load a checkpoint (default: the shipped pretrained model)."""
        model, stft_cfg, payload = load_model(path)
        return cls(model, stft_cfg, strength, {k: payload.get(k) for k in ("metrics",
                                                                           "train_config")})

    @torch.no_grad()
    def mask_16k(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Enhance mono 16 kHz ``audio: [N]``. Returns ``(enhanced [N], mask [T, F])``.

        The mask is ``1 - strength * (1 - mask)``: strength 0 is the input, 1 the full mask.
        """
        x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None]
        spec = stft(x, self.stft_cfg)
        mask, _ = self.model(spec.abs())
        mask = 1.0 - self.strength * (1.0 - mask)
        out = istft(spec * mask, x.shape[-1], self.stft_cfg)
        return out[0].numpy(), mask[0].numpy()

    def _channel(self, audio: np.ndarray, rate: int) -> np.ndarray:
        n = audio.shape[-1]
        if rate == MODEL_RATE:
            return self.mask_16k(audio)[0]
        low = resample(audio, rate, MODEL_RATE)
        enhanced, mask = self.mask_16k(low)
        out = _fit(resample(enhanced, MODEL_RATE, rate), n)
        # What the 16 kHz round trip loses: above 8 kHz for high rates, the anti-alias roll-off
        # just below Nyquist for low rates. Keep it, scaled per frame by the mean mask of the
        # model bands next to it, so strength 0 returns the input exactly.
        residual = audio - _fit(resample(low, MODEL_RATE, rate), n)
        bin_hz = self.stft_cfg.sample_rate / self.stft_cfg.n_fft
        top_hz = min(rate, MODEL_RATE) / 2
        from_hz = HIGH_BAND_FROM_HZ if rate > MODEL_RATE else 0.8 * top_hz
        frame_gain = mask[:, int(from_hz / bin_hz) : int(top_hz / bin_hz) + 1].mean(axis=1)
        frame_time = np.arange(len(frame_gain)) * self.stft_cfg.hop / MODEL_RATE
        gain = np.interp(np.arange(n) / rate, frame_time, frame_gain)
        return (out + gain.astype(np.float32) * residual).astype(np.float32)

    def __call__(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """Enhance ``audio: [samples]`` or ``[channels, samples]`` at ``sample_rate``; returns the
        same shape and length. Each channel is denoised on its own."""
        audio = np.asarray(audio, dtype=np.float32)
        if audio.shape[-1:] == (0,) or audio.size == 0:
            raise ValueError("audio has 0 samples")
        if not np.all(np.isfinite(audio)):
            raise ValueError("audio contains NaN or infinite samples")
        if audio.ndim == 1:
            return self._channel(audio, sample_rate)
        if audio.ndim != 2:
            raise ValueError(f"audio must be [samples] or [channels, samples], got {audio.shape}")
        return np.stack([self._channel(ch, sample_rate) for ch in audio])


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    """Trim or zero-pad ``x`` to ``n`` samples (resampler round trips may be off by one)."""
    if len(x) >= n:
        return x[:n]
    return np.pad(x, (0, n - len(x)))


def enhance_file(enhancer: Enhancer, src: Path, dst: Path, overwrite: bool = False) -> dict:
    """Enhance one file into ``dst`` (same rate and channels). Returns a summary dict."""
    if dst.resolve() == src.resolve():
        from .audio import AudioError

        raise AudioError(dst, "output would overwrite the input; choose another -o")
    audio, rate = read_audio(src)
    out = enhancer(audio, rate)
    write_audio(dst, out, rate, overwrite=overwrite)
    return {"input": str(src), "output": str(dst), "seconds": audio.shape[-1] / rate,
            "rate": rate, "channels": audio.shape[0]}
