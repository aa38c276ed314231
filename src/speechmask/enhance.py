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
import soxr
import torch

from .audio import MODEL_RATE, resample
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

    def pipeline(self, rate: int) -> ChannelPipeline:
        """A block-wise enhancer for one channel at ``rate`` (bounded memory, same output)."""
        return ChannelPipeline(self, rate)


class ChannelPipeline:
    """One channel of any rate through the model in blocks, carrying all state across blocks.

    resample to 16 kHz -> :class:`~speechmask.streaming.StreamingEnhancer` (latency removed) ->
    resample back, plus the part of the input the 16 kHz round trip loses, scaled per frame like
    :meth:`Enhancer._channel`. soxr's streaming resampler gives exactly the whole-signal result, so
    the concatenated output equals ``Enhancer(audio, rate)`` for any blocking (tested).
    """

    def __init__(self, enhancer: Enhancer, rate: int):
        from .streaming import StreamingEnhancer

        cfg = enhancer.stft_cfg
        self.rate = rate
        self.resampled = rate != MODEL_RATE
        bin_hz = cfg.sample_rate / cfg.n_fft
        top_hz = min(rate, MODEL_RATE) / 2
        from_hz = HIGH_BAND_FROM_HZ if rate > MODEL_RATE else 0.8 * top_hz
        band = (int(from_hz / bin_hz), int(top_hz / bin_hz) + 1) if self.resampled else None
        self.stream = StreamingEnhancer(enhancer.model, cfg, enhancer.strength, gain_band=band)
        self._to_drop = self.stream.latency
        self._frame_seconds = cfg.hop / MODEL_RATE
        if self.resampled:
            def make(a: int, b: int) -> soxr.ResampleStream:
                return soxr.ResampleStream(a, b, 1, dtype="float32", quality="VHQ")

            self._down, self._up, self._round_trip = (
                make(rate, MODEL_RATE), make(MODEL_RATE, rate), make(MODEL_RATE, rate))
        self._input = self._enhanced = self._low = np.zeros(0, np.float32)
        self._emitted = 0

    def push(self, block: np.ndarray, last: bool = False) -> np.ndarray:
        """Feed the next ``block: [n]`` of input; returns the output that is complete so far.
        After the ``last`` block, everything has been returned (as many samples as were fed)."""
        block = np.asarray(block, dtype=np.float32)
        low = self._down.resample_chunk(block, last=last) if self.resampled else block
        enhanced = self.stream.process(low)
        if last:
            enhanced = np.concatenate([enhanced, self.stream.flush()])
        cut = min(self._to_drop, len(enhanced))
        enhanced, self._to_drop = enhanced[cut:], self._to_drop - cut
        if not self.resampled:
            return enhanced
        self._input = np.concatenate([self._input, block])
        self._enhanced = np.concatenate([self._enhanced,
                                         self._up.resample_chunk(enhanced, last=last)])
        self._low = np.concatenate([self._low, self._round_trip.resample_chunk(low, last=last)])
        if last:
            n = len(self._input)
            self._enhanced, self._low = _fit(self._enhanced, n), _fit(self._low, n)
        else:
            n = min(len(self._input), len(self._enhanced), len(self._low))
        gains = np.asarray(self.stream.frame_gains, dtype=np.float64)
        times = (self._emitted + np.arange(n)) / self.rate
        gain = np.interp(times, np.arange(len(gains)) * self._frame_seconds, gains)
        out = self._enhanced[:n] + gain.astype(np.float32) * (self._input[:n] - self._low[:n])
        self._input, self._enhanced, self._low = (
            self._input[n:], self._enhanced[n:], self._low[n:])
        self._emitted += n
        return out.astype(np.float32)


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    """Trim or zero-pad ``x`` to ``n`` samples (resampler round trips may be off by one)."""
    if len(x) >= n:
        return x[:n]
    return np.pad(x, (0, n - len(x)))


# Block length for files: 10 s keeps memory flat (a few MB per channel) at any file length.
BLOCK_SECONDS = 10.0


def enhance_file(enhancer: Enhancer, src: Path, dst: Path, overwrite: bool = False,
                 progress: bool = False) -> dict:
    """Enhance one file into ``dst`` (same rate, channels and length), block by block in bounded
    memory, written atomically. Returns a summary dict. Raises AudioError for bad files."""
    from tqdm import tqdm

    from .audio import AtomicAudioWriter, AudioError, open_audio, read_blocks

    if dst.resolve() == Path(src).resolve():
        raise AudioError(dst, "output would overwrite the input; choose another -o")
    with open_audio(src) as handle:
        rate, channels, frames = handle.samplerate, handle.channels, handle.frames
        block = max(1, int(BLOCK_SECONDS * rate))
        pipes = [enhancer.pipeline(rate) for _ in range(channels)]
        with AtomicAudioWriter(dst, rate, channels, overwrite) as writer:
            bar = tqdm(total=frames / rate, unit="s", desc=Path(src).name, leave=False,
                       disable=not progress or frames < 60 * rate, bar_format="{l_bar}{bar}| "
                       "{n:.0f}/{total:.0f} s audio [{elapsed}<{remaining}]")
            done = 0
            for data in read_blocks(handle, src, block):
                done += data.shape[-1]
                last = done >= frames
                writer.write(np.stack([p.push(ch, last) for p, ch in zip(pipes, data,
                                                                          strict=True)]))
                bar.update(data.shape[-1] / rate)
            if done < frames or writer.frames != frames:
                raise AudioError(src, f"file ended after {done} of {frames} samples; is it "
                                 "truncated?")
            bar.close()
            writer.commit()
    return {"input": str(src), "output": str(dst), "seconds": frames / rate,
            "rate": rate, "channels": channels}
