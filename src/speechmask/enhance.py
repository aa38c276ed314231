"""Offline enhancement with a trained mask model: arrays (Python API) and files (CLI).

The model runs on 16 kHz STFT bins. Other rates are handled so that nothing is lost (see
:func:`speechmask.pipeline.processing_rate`):
- below 16 kHz: upsample, enhance, downsample back (plus what the resampler's anti-alias
  filter removed just below the input's Nyquist, scaled like the band above 8 kHz below);
- above 16 kHz: the STFT runs at the input rate (or 48 kHz for 22.05/44.1 kHz) with 32 ms
  frames; the model masks the 0-8 kHz bins, every bin above 8 kHz gets, per frame, the mean
  mask of the model's 6-8 kHz bins, so hiss above 8 kHz is attenuated when the model attenuates
  the top of its band, and air/sibilance of speech survives when the model keeps it. The signal
  is never resampled to 16 kHz, whose anti-alias filter would empty the model's top band.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import torch

from .checkpoint import load_model
from .features import StftConfig, istft, stft
from .model import MaskNet, resolve_device
from .pipeline import (
    BLOCK_SECONDS,
    ArrayEnhancer,
    ChannelPipeline,
    enhance_file,
    level_gains_offline,
    mask_floor,
    with_floor,
)

__all__ = ["BLOCK_SECONDS", "ChannelPipeline", "Enhancer", "enhance_file"]

log = logging.getLogger(__name__)


class Enhancer(ArrayEnhancer):
    """Denoise audio with a mask model.

    >>> enh = Enhancer.load()          # the shipped default model
    >>> clean = enh(noisy, 44100)      # noisy: [samples] or [channels, samples] float
    """

    def __init__(self, model: MaskNet, stft_cfg: StftConfig, strength: float = 1.0,
                 info: dict | None = None, device: str | torch.device = "cpu",
                 atten_lim_db: float | None = None):
        """``device``: ``cpu``, ``cuda`` or ``auto`` (CUDA when present); audio in and out
        stays numpy on the CPU. ``atten_lim_db``: remove at most this many dB anywhere (None:
        no limit)."""
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {strength}")
        self.floor = mask_floor(atten_lim_db)
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.model = model.eval().to(self.device)
        self.stft_cfg = stft_cfg
        self.strength = strength
        self.info = info or {}

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, strength: float = 1.0,
             device: str | torch.device = "cpu",
             atten_lim_db: float | None = None) -> Enhancer:
        """Load a checkpoint (default: the shipped pretrained model)."""
        model, stft_cfg, payload = load_model(path)
        info = {k: payload.get(k) for k in ("metrics", "train_config")}
        return cls(model, stft_cfg, strength, info, device, atten_lim_db)

    @torch.no_grad()
    def mask_16k(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Enhance mono 16 kHz ``audio: [N]``. Returns ``(enhanced [N], mask [T, F])``.

        The mask is ``1 - strength * (1 - mask)``: strength 0 is the input, 1 the full mask; a
        deep filter's output is added times ``strength``.
        """
        x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None]
        spec = stft(x.to(self.device), self.stft_cfg)
        gains = torch.from_numpy(level_gains_offline(audio, self.stft_cfg)).to(self.device)
        rows = self.model.offline(spec.abs() * gains[None, :, None])
        est, mask = self.model.estimate(rows, spec, self.strength, self.floor)
        out = istft(est, x.shape[-1], self.stft_cfg)
        return out[0].cpu().numpy(), mask[0].cpu().numpy()

    def pipeline(self, rate: int) -> ChannelPipeline:
        """A block-wise enhancer for one channel at ``rate`` (bounded memory, same output)."""
        from .streaming import StreamingEnhancer

        return ChannelPipeline(
            lambda band, rate: with_floor(StreamingEnhancer(
                self.model, self.stft_cfg, self.strength, band, rate), self.floor),
            self.stft_cfg, rate)
