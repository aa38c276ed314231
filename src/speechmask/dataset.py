"""The training Dataset: fixed-length crops of speech + noise, mixed on the fly.

Item ``i`` of epoch ``e`` is a pure function of ``(seed, e, i)``, so training runs can be
reproduced (and resumed) bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .augment import apply_gain, colored_noise, generated_noise, random_band_limit, random_eq
from .corpus import DataError
from .features import StftConfig, stft
from .masks import ideal_mask
from .mixing import MixConfig, Mixture, loop_to_length, scale_to_snr
from .rooms import early_part, reverberate, rir_bank


class WeightedPool:
    """Items drawn by group weight, evenly within a group: ``draw(rng)`` gives the index of one
    item; a group's share of the draws is its weight over the sum of the weights of the groups
    that have items (groups without a weight are never drawn)."""

    def __init__(self, groups: Sequence[str], weights: dict[str, float]):
        counts: dict[str, int] = {}
        for g in groups:
            counts[g] = counts.get(g, 0) + 1
        probs = np.array([weights.get(g, 0.0) / counts[g] for g in groups], dtype=np.float64)
        if not len(probs) or probs.sum() <= 0:
            raise DataError(f"nothing to draw: no items of {', '.join(sorted(weights))}")
        self.cdf = np.cumsum(probs / probs.sum())

    def __len__(self) -> int:
        return len(self.cdf)

    def draw(self, rng: np.random.Generator) -> int:
        return min(int(np.searchsorted(self.cdf, rng.random(), side="right")), len(self.cdf) - 1)


class MixtureDataset(torch.utils.data.Dataset):
    """Fixed-length random crops of speech + noise, mixed on the fly (no cache on disk).

    Item ``i`` of epoch ``e`` is a deterministic function of ``(seed, e, i)``. Each item is a dict:
    ``noisy, clean, noise: [N]`` waveforms, ``mag: [T, F]`` noisy magnitude and
    ``mask: [T, F]`` the ideal ``target`` mask (``"ibm"`` or ``"irm"``).

    ``speech_groups`` / ``noise_groups`` name the source of each speech / noise array; with
    ``cfg.speech_sources`` / ``cfg.noise_sources`` weights they are drawn by source share
    (else every array alike). A step whose probability is 0 draws nothing from the random
    stream, so configs without the newer steps give exactly the mixtures they always gave.
    """

    def __init__(
        self,
        speech: Sequence[np.ndarray],
        noise: Sequence[np.ndarray],
        cfg: MixConfig = MixConfig(),
        target: str = "irm",
        seed: int = 0,
        stft_cfg: StftConfig = StftConfig(),
        speech_groups: Sequence[str] | None = None,
        noise_groups: Sequence[str] | None = None,
    ):
        if not speech:
            raise DataError("no speech files to train on")
        if not noise and cfg.clean_fraction < 1.0:
            raise DataError("no noise files to train on")
        self.speech, self.noise = list(speech), list(noise)
        self.cfg, self.target, self.seed, self.stft_cfg = cfg, target, seed, stft_cfg
        self.length = int(round(cfg.crop_seconds * stft_cfg.sample_rate))
        self.epoch = 0
        self.speech_pool = (WeightedPool(speech_groups, cfg.speech_sources)
                            if cfg.speech_sources and speech_groups is not None else None)
        self.noise_pool = (WeightedPool(noise_groups, cfg.noise_sources)
                           if cfg.noise_sources and noise_groups is not None else None)
        self.rirs = rir_bank(cfg.augment.rooms).build(progress=True) if cfg.augment.room else []

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.cfg.examples_per_epoch

    def _recorded(self, rng: np.random.Generator) -> np.ndarray:
        k = self.noise_pool.draw(rng) if self.noise_pool else int(rng.integers(len(self.noise)))
        return self.noise[k]

    def _noise(self, rng: np.random.Generator, length: int, skip: int) -> np.ndarray:
        aug = self.cfg.augment
        u = rng.random()
        if u < aug.babble and len(self.speech) >= 2:  # babble needs another talker
            size = int(rng.integers(3, 7))
            # Draw from all utterances and drop the target's own (keeps the random stream of
            # the shipped model's training run); small sets draw from the others only.
            pool = np.arange(len(self.speech)) if len(self.speech) > size else np.array(
                [k for k in range(len(self.speech)) if k != skip])
            out = np.zeros(length, np.float32)
            for k in rng.choice(pool, size=min(size, len(pool)), replace=False):
                if k == skip:
                    continue
                utt = self.speech[k]
                out += loop_to_length(utt, length, int(rng.integers(0, len(utt)))) / (
                    np.sqrt(np.mean(utt**2)) + 1e-8
                )
            return out
        if u < aug.babble + aug.colored:
            return colored_noise(length, rng, float(rng.uniform(-1.0, 2.0)))
        if u < aug.babble + aug.colored + aug.generated:
            kinds = aug.generated_kinds
            return generated_noise(kinds[int(rng.integers(len(kinds)))], length, rng)
        base = self._recorded(rng)
        out = loop_to_length(base, length, int(rng.integers(0, len(base))))
        if rng.random() < aug.second_noise:
            other = self._recorded(rng)
            other = loop_to_length(other, length, int(rng.integers(0, len(other))))
            out = out + scale_to_snr(out, other, float(rng.uniform(-5, 5)))
        return out

    def _snr(self, rng: np.random.Generator) -> float:
        cfg = self.cfg
        if cfg.high_snr_fraction and rng.random() < cfg.high_snr_fraction:
            return float(rng.uniform(*cfg.high_snr_db))
        return float(rng.uniform(cfg.snr_low_db, cfg.snr_high_db))

    def draw(self, index: int) -> Mixture:
        """The mixture of item ``index`` in the current epoch, as waveforms."""
        rng = np.random.default_rng([self.seed, self.epoch, index])
        cfg, aug = self.cfg, self.cfg.augment
        k = self.speech_pool.draw(rng) if self.speech_pool else int(rng.integers(len(self.speech)))
        utt = self.speech[k]
        n = self.length
        if len(utt) >= n:
            start = int(rng.integers(0, len(utt) - n + 1))
            seg, pos = utt[start : start + n], 0
        else:
            seg, pos = utt, int(rng.integers(0, n - len(utt) + 1))
        if rng.random() < aug.eq:
            seg = random_eq(seg, rng, aug.eq_max_db)
        room = aug.room and rng.random() < aug.room
        clean = np.zeros(n, np.float32)
        clean[pos : pos + len(seg)] = seg
        late = None
        if room:  # after placing: the tail rings on into the padding of a short utterance
            rir = self.rirs[int(rng.integers(len(self.rirs)))]
            reverberant = reverberate(clean, rir)
            if aug.room_early_ms > 0:  # the late tail becomes noise below, after the SNR is set
                late = reverberant - reverberate(clean, early_part(rir, aug.room_early_ms))
            clean = reverberant
        noise = self._noise(rng, n, skip=k)
        if room and rng.random() < aug.room_noise:
            noise = reverberate(noise, self.rirs[int(rng.integers(len(self.rirs)))])
        if rng.random() < aug.eq:
            noise = random_eq(noise, rng, aug.eq_max_db)
        silent = cfg.clean_fraction and rng.random() < cfg.clean_fraction
        snr = self._snr(rng)
        # SNR is set over the speech itself, not over the zero padding around a short utterance.
        # (noise spans all n samples, speech only len(seg): lower the whole-crop ratio to match)
        noise = scale_to_snr(clean, noise, snr - 10 * np.log10(n / len(seg)))
        if silent:
            noise = np.zeros(n, np.float32)
        if late is not None:  # same mixture, the tail moved from the target to the noise
            clean, noise = clean - late, noise + late
        if aug.lowpass or aug.highpass:  # the channel filters speech and noise alike
            band = random_band_limit(rng, n, aug.highpass, aug.lowpass)
            if band is not None:
                clean, noise = apply_gain(clean, band), apply_gain(noise, band)
        if cfg.level_dbfs is not None:
            peak = float(np.max(np.abs(clean + noise)))
            level = 10.0 ** (float(rng.uniform(*cfg.level_dbfs)) / 20.0)
            gain = level / peak if peak > 0 else 1.0
        else:
            gain = 10.0 ** (float(rng.uniform(cfg.gain_low_db, cfg.gain_high_db)) / 20.0)
        clean, noise = clean * gain, noise * gain
        peak = float(np.max(np.abs(clean + noise)))
        if peak > 0.99:
            clean, noise = clean * (0.99 / peak), noise * (0.99 / peak)
        return Mixture(clean.astype(np.float32), noise.astype(np.float32),
                       float("inf") if silent else snr, bool(room))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return training_item(self.draw(index), self.target, self.stft_cfg)


def training_item(m: Mixture, target: str, stft_cfg: StftConfig) -> dict[str, torch.Tensor]:
    """What a training Dataset yields for one mixture: ``noisy, clean, noise: [N]`` waveforms,
    ``mag: [T, F]`` noisy magnitude, ``mask: [T, F]`` the ideal ``target`` mask, and the
    mixture's ``snr_db`` (float32 scalar, +inf clean, nan unknown) and ``room`` (bool scalar)."""
    clean, noise = torch.from_numpy(m.clean), torch.from_numpy(m.noise)
    noisy = clean + noise
    mask = ideal_mask(target, stft(clean, stft_cfg).abs(), stft(noise, stft_cfg).abs())
    return {
        "noisy": noisy,
        "clean": clean,
        "noise": noise,
        "mag": stft(noisy, stft_cfg).abs(),
        "mask": mask,
        "snr_db": torch.tensor(m.snr_db, dtype=torch.float32),
        "room": torch.tensor(m.room),
    }
