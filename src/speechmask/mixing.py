"""Mixing speech with noise: looping, scaling to an SNR, the :class:`Mixture` they make, and
:class:`MixConfig`, how training mixtures are drawn (built by
:class:`speechmask.dataset.MixtureDataset`).

Everything is deterministic from the random generator it is given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from .augment import AugmentConfig


def loop_to_length(noise: np.ndarray, length: int, offset: int) -> np.ndarray:
    """``length`` samples of ``noise`` starting at ``offset``, looping when it is shorter."""
    if len(noise) == 0:
        raise ValueError("noise has 0 samples")
    idx = (offset + np.arange(length)) % len(noise)
    return noise[idx]


def scale_to_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Noise scaled so that ``10*log10(sum(speech**2) / sum(noise**2)) == snr_db``."""
    ps = float(np.sum(speech.astype(np.float64) ** 2))
    pn = float(np.sum(noise.astype(np.float64) ** 2))
    if pn <= 0:
        return noise.astype(np.float32)
    return (noise * np.sqrt(ps / (pn * 10.0 ** (snr_db / 10.0)))).astype(np.float32)


@dataclass(frozen=True)
class Mixture:
    """noisy = clean + noise, all ``[samples]`` float32 at 16 kHz, and how it was made (what
    a training loss may treat differently: e.g. reverberant or clean examples)."""

    clean: np.ndarray
    noise: np.ndarray
    # SNR the noise was scaled to, dB over the speech (+inf: no noise at all; nan: unknown,
    # e.g. a recorded pair).
    snr_db: float = float("nan")
    # Whether the speech was reverberated in a simulated room (the target keeps the reverb).
    room: bool = False
    # Linear factor mix() applied to the speech (overall gain x peak limit): clean = speech x
    # gain, so a reference derived from the same speech (its early part) can be matched to it.
    gain: float = 1.0

    @cached_property
    def noisy(self) -> np.ndarray:
        return self.clean + self.noise


def mix(
    speech: np.ndarray,
    noise: np.ndarray,
    snr_db: float,
    rng: np.random.Generator,
    gain_db: float = 0.0,
    peak_limit: float = 0.99,
) -> Mixture:
    """Speech + noise at ``snr_db`` (over the whole speech), noise from a random offset and looped
    if shorter, an overall gain of ``gain_db``, then scaled down if needed so nothing clips."""
    noise_seg = loop_to_length(noise, len(speech), int(rng.integers(0, len(noise))))
    noise_seg = scale_to_snr(speech, noise_seg, snr_db)
    gain = 10.0 ** (gain_db / 20.0)
    clean, noise_seg = speech * gain, noise_seg * gain
    peak = float(np.max(np.abs(clean + noise_seg)))
    if peak > peak_limit:
        clean, noise_seg = clean * (peak_limit / peak), noise_seg * (peak_limit / peak)
        gain *= peak_limit / peak
    return Mixture(clean.astype(np.float32), noise_seg.astype(np.float32), float(snr_db),
                   gain=gain)


@dataclass(frozen=True)
class MixConfig:
    """How training mixtures are drawn."""

    # Crop length in seconds; 2 s = 126 frames, long enough for the RNN to see speech onsets
    # and pauses; shorter crops buy more optimiser steps per CPU minute.
    crop_seconds: float = 2.0
    # Input SNR range in dB, uniform; [-5, 15] spans the eval SNRs (-5..10) with margin.
    snr_low_db: float = -5.0
    snr_high_db: float = 15.0
    # Overall gain range in dB, uniform; +-10 dB around the corpus level (peaks near 0 dBFS)
    # so the model does not rely on absolute level.
    gain_low_db: float = -20.0
    gain_high_db: float = 0.0
    # Mixtures drawn per epoch. 4000 x 2 s = 2.2 h of audio, ~3 min of training on 2 cores.
    examples_per_epoch: int = 4000
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # Speech sources and their shares of the examples (sources.SPEECH_SOURCES: vcc2016,
    # picovoice_intent, speechcommands, arabic_commands), e.g. {"vcc2016": 0.4,
    # "picovoice_intent": 0.4, ...}; within a source utterances are drawn evenly. Empty = the
    # corpus' training speech only, every utterance alike (the original recipe).
    speech_sources: dict[str, float] = field(default_factory=dict)
    # Recorded noise sources and their shares (sources.NOISE_SOURCES: esc10, blanket,
    # speechcommands, arabic_commands_bg, synth_music). Empty = the corpus' training noise,
    # every file alike.
    noise_sources: dict[str, float] = field(default_factory=dict)
    # Share of examples with no noise at all: clean input must come back untouched, and a
    # model that always heard noise removes some from clean speech (issue: clean speech
    # lost 10 dB SI-SDR). 0 = the original recipe.
    clean_fraction: float = 0.0
    # Share of the noisy examples whose SNR is drawn from high_snr_db instead: good recordings
    # with a little noise, which a model trained at -5..15 dB over-suppresses.
    high_snr_fraction: float = 0.0
    # SNR range of those examples, dB, uniform.
    high_snr_db: tuple[float, float] = (15.0, 40.0)
    # Peak level of the mixture, dBFS, uniform; None = the gain range above (the original
    # recipe). (-50, -1) spans a whisper-quiet laptop recording to a hot one: a model that
    # only heard loud input damages quiet recordings (issue: -42 dBFS speech at 6.6 dB SNR).
    level_dbfs: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.augment, dict):
            object.__setattr__(self, "augment", AugmentConfig(**self.augment))
        object.__setattr__(self, "high_snr_db", tuple(self.high_snr_db))
        if self.level_dbfs is not None:
            object.__setattr__(self, "level_dbfs", tuple(self.level_dbfs))
            lo, hi = self.level_dbfs
            if not lo <= hi <= 0:
                raise ValueError(f"level_dbfs must be (low, high) with low <= high <= 0 dBFS, "
                                 f"got {self.level_dbfs}")
        for name in ("speech_sources", "noise_sources"):
            weights = dict(getattr(self, name))
            if any(w < 0 for w in weights.values()):
                raise ValueError(f"{name} weights must be >= 0, got {weights}")
            if weights and sum(weights.values()) <= 0:
                raise ValueError(f"{name} needs at least one positive weight")
            object.__setattr__(self, name, weights)
        for name in ("clean_fraction", "high_snr_fraction"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.crop_seconds <= 0:
            raise ValueError(f"crop_seconds must be > 0, got {self.crop_seconds}")
        if self.snr_low_db > self.snr_high_db:
            raise ValueError(
                f"SNR range reversed: low {self.snr_low_db} dB > high {self.snr_high_db} dB"
            )
        if self.gain_low_db > self.gain_high_db:
            raise ValueError(
                f"gain range reversed: low {self.gain_low_db} dB > high {self.gain_high_db} dB"
            )
        if self.examples_per_epoch <= 0:
            raise ValueError(f"examples_per_epoch must be > 0, got {self.examples_per_epoch}")
