"""The bundled corpus, the mixture builder, the training Dataset and the fixed evaluation sets.

Everything is deterministic from a seed: the same (seed, epoch, index) always gives the same
mixture, so training runs and evaluation sets can be reproduced bit for bit.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from .atomic import write_text_atomic
from .audio import MODEL_RATE, AudioError, load_mono, write_audio
from .augment import (  # noqa: F401  (colored_noise, random_eq re-exported)
    GENERATORS,
    apply_gain,
    colored_noise,
    generated_noise,
    random_band_limit,
    random_eq,
)
from .features import StftConfig, stft
from .masks import ideal_mask
from .rooms import RoomConfig, reverberate, rir_bank

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
# Input SNRs of every fixed evaluation set, in dB: from hard (-5) to easy (10).
EVAL_SNRS_DB = (-5.0, 0.0, 5.0, 10.0)
# Seed of the fixed evaluation sets; changing it changes every published figure.
EVAL_SEED = 20261125


class DataError(Exception):
    """A dataset or corpus cannot be used. ``str(err)`` is one line saying what to do."""


def default_corpus_dir() -> Path:
    """Where the bundled corpus lives: ``$SPEECHMASK_CORPUS``, else ``data/corpus`` of the
    source checkout this package was installed from, else ``./data/corpus``."""
    env = os.environ.get("SPEECHMASK_CORPUS")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2] / "data" / "corpus"
    return repo if repo.is_dir() else Path("data/corpus")


def noise_type_of(path: Path) -> str:
    """Noise type from a corpus file name: ESC-10 ``sea_waves_1-123-A`` -> ``sea_waves``;
    Blanket / Speech Commands files are named after their type (``coffee-shop``)."""
    stem = path.stem
    if "-" in stem and stem.split("_")[-1][:1].isdigit():
        return stem.rsplit("_", 1)[0]
    return stem


@dataclass(frozen=True)
class CorpusFile:
    """One file of the corpus manifest."""

    path: Path  # absolute path of the FLAC file
    split: str  # train | valid | test
    kind: str  # speech | noise
    label: str  # speaker (speech) or noise type (noise)
    source: str  # vcc2016 | esc10 | blanket | speechcommands
    seconds: float  # duration from the manifest


class Corpus:
    """The clean-speech + noise corpus described by ``manifest.csv`` in ``root``."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else default_corpus_dir()
        manifest = self.root / "manifest.csv"
        if not manifest.is_file():
            raise DataError(
                f"{self.root}: no corpus here (manifest.csv missing); pass --corpus DIR pointing "
                "at a folder with manifest.csv, speech/ and noise/"
            )
        with open(manifest, newline="") as handle:
            rows = list(csv.DictReader(handle))
        self.files: list[CorpusFile] = []
        for line, row in enumerate(rows, start=2):
            try:
                path = self.root / row["path"]
                # Speech: the manifest's speaker column where it has one (corpus_ext), else the
                # speaker folder (corpus: speech/<split>/<speaker>/<utt>.flac).
                label = ((row.get("speaker") or path.parent.name) if row["kind"] == "speech"
                         else noise_type_of(path))
                self.files.append(CorpusFile(path, row["split"], row["kind"], label,
                                             row["source"], float(row["seconds"])))
            except (KeyError, TypeError, ValueError):
                raise DataError(f"{manifest}:{line}: malformed row; expected columns "
                                "split,kind,path,seconds,source,license") from None
        if not self.files:
            raise DataError(f"{manifest}: manifest lists no files")

    def select(self, split: str, kind: str) -> list[CorpusFile]:
        """Files of one split (train/valid/test) and kind (speech/noise)."""
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
        chosen = [f for f in self.files if f.split == split and f.kind == kind]
        if not chosen:
            raise DataError(f"{self.root}: corpus has no {kind} files in split {split!r}")
        return chosen

    def check_noise_types(self, types: Collection[str], split: str) -> None:
        """Raise DataError unless every noise type in ``types`` has files in ``split``."""
        known = sorted({f.label for f in self.select(split, "noise")})
        unknown = sorted(set(types) - set(known))
        if unknown:
            raise DataError(f"{self.root}: no {split} noise of type {', '.join(unknown)}; "
                            f"the {split} split has: {', '.join(known)}")

    def stats(self) -> list[dict]:
        """Per split and kind: files, hours, and distinct speakers / noise types."""
        out = []
        for split in SPLITS:
            for kind in ("speech", "noise"):
                files = [f for f in self.files if f.split == split and f.kind == kind]
                out.append({
                    "split": split,
                    "kind": kind,
                    "files": len(files),
                    "hours": sum(f.seconds for f in files) / 3600,
                    "labels": len({f.label for f in files}),
                })
        return out


def load_files(files: Sequence[CorpusFile | Path]) -> list[np.ndarray]:
    """Read files as mono 16 kHz float32 arrays (the corpus fits in memory: ~450 MB float32)."""
    return [load_mono(f.path if isinstance(f, CorpusFile) else f) for f in files]


# ---------------------------------------------------------------------------------------------
# Mixing


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
    """noisy = clean + noise, all ``[samples]`` float32 at 16 kHz."""

    clean: np.ndarray
    noise: np.ndarray

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
    return Mixture(clean.astype(np.float32), noise_seg.astype(np.float32))


# ---------------------------------------------------------------------------------------------
# Augmentation


@dataclass(frozen=True)
class AugmentConfig:
    """On-the-fly augmentation of training mixtures (probabilities are per example)."""

    # Probability of replacing the corpus noise by babble: 3-6 other training utterances summed.
    # Babble is the noise speech-trained masks find hardest; the corpus has none.
    babble: float = 0.1
    # Probability of replacing the noise by stationary coloured noise (1/f^a, a in [-1, 2]):
    # teaches hum/hiss/fan-like noise the corpus lacks.
    colored: float = 0.1
    # Probability of adding a second corpus noise (at -5..+5 dB relative) on top of the first.
    second_noise: float = 0.2
    # Probability of a random EQ on speech and, independently, on noise (mic/room colouring).
    eq: float = 0.3
    # Largest EQ gain of a random EQ knot, dB. 6 dB moves timbre without making it unnatural.
    eq_max_db: float = 6.0
    # Probability of replacing the noise by a generated family (augment.GENERATORS: coloured,
    # modulated, hum, clicks, tones, drawn evenly from `generated_kinds`): noise kinds no
    # recording here holds. 0 keeps the original recipe's random stream.
    generated: float = 0.0
    # The generated families drawn from.
    generated_kinds: tuple[str, ...] = tuple(GENERATORS)
    # Probability that the speech is played in a simulated room (rooms.RoomConfig); the
    # target is then the reverberant speech. Users record in rooms; the corpora are dry.
    room: float = 0.0
    # Given a room, probability that the noise is played in it too (another position); else it
    # stays dry, as a noise close to the microphone is.
    room_noise: float = 0.5
    # The bank of rooms drawn from (built once, cached).
    rooms: RoomConfig = field(default_factory=RoomConfig)
    # Probability of an upper band edge on speech and noise alike (telephone 3.4 kHz ... a
    # 48 -> 16 kHz resampler's 7.6-7.8 kHz, augment.BAND_EDGES_HZ): a model that never saw a
    # band-limited input cuts the band below an empty top band (issue: 44.1/48 kHz muffled).
    lowpass: float = 0.0
    # Probability of a lower band edge at 50-300 Hz (small microphones, call high-pass filters).
    highpass: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "generated_kinds", tuple(self.generated_kinds))
        if isinstance(self.rooms, dict):  # from a checkpoint's or a TOML file's config
            object.__setattr__(self, "rooms", RoomConfig(**self.rooms))
        for kind in self.generated_kinds:
            if kind not in GENERATORS:
                raise ValueError(f"unknown generated noise {kind!r}; use some of "
                                 f"{', '.join(GENERATORS)}")
        if self.generated and not self.generated_kinds:
            raise ValueError("generated > 0 needs at least one generated_kinds entry")
        for name in ("babble", "colored", "second_noise", "eq", "generated", "room",
                     "room_noise", "lowpass", "highpass"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} is a probability in [0, 1], got {getattr(self, name)}")
        if self.babble + self.colored + self.generated > 1.0:
            raise ValueError("babble + colored + generated must not exceed 1")

    @classmethod
    def off(cls) -> AugmentConfig:
        """No augmentation at all (every probability 0)."""
        return cls(babble=0.0, colored=0.0, second_noise=0.0, eq=0.0, generated=0.0, room=0.0,
                   lowpass=0.0, highpass=0.0)


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
        if room:  # after placing: the tail rings on into the padding of a short utterance
            clean = reverberate(clean, self.rirs[int(rng.integers(len(self.rirs)))])
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
        return Mixture(clean.astype(np.float32), noise.astype(np.float32))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return training_item(self.draw(index), self.target, self.stft_cfg)


def training_item(m: Mixture, target: str, stft_cfg: StftConfig) -> dict[str, torch.Tensor]:
    """What a training Dataset yields for one mixture: ``noisy, clean, noise: [N]`` waveforms,
    ``mag: [T, F]`` noisy magnitude and ``mask: [T, F]`` the ideal ``target`` mask."""
    clean, noise = torch.from_numpy(m.clean), torch.from_numpy(m.noise)
    noisy = clean + noise
    mask = ideal_mask(target, stft(clean, stft_cfg).abs(), stft(noise, stft_cfg).abs())
    return {
        "noisy": noisy,
        "clean": clean,
        "noise": noise,
        "mag": stft(noisy, stft_cfg).abs(),
        "mask": mask,
    }


# ---------------------------------------------------------------------------------------------
# Fixed evaluation sets


@dataclass(frozen=True)
class EvalPair:
    """One fixed evaluation mixture. Waveforms are ``[samples]`` float32 at 16 kHz."""

    id: str
    clean: np.ndarray
    noisy: np.ndarray
    input_snr_db: float
    noise_type: str
    speaker: str
    speech_file: str
    noise_file: str
    # "" for a dry pair, else the simulated room both speech and noise were played in.
    room: str = ""


def eval_pairs(
    corpus: Corpus,
    split: str,
    count: int | None = None,
    snrs_db: Sequence[float] = EVAL_SNRS_DB,
    seed: int = EVAL_SEED,
    noise_types: Collection[str] | None = None,
) -> list[EvalPair]:
    """The deterministic evaluation set of a split: every utterance at every SNR in ``snrs_db``,
    each with its own noise file and offset. ``count`` keeps the first ``count`` pairs of a
    seeded shuffle of utterances (all SNRs of an utterance stay together). ``noise_types``
    draws the noise from files of those types only (e.g. the types a run held out of
    training); the default, all types, gives the fixed valid and test sets."""
    speech = corpus.select(split, "speech")
    noise_files = corpus.select(split, "noise")
    if noise_types is not None:
        if not noise_types:
            raise DataError("no noise types given; name one or more, e.g. city,doing_the_dishes")
        corpus.check_noise_types(noise_types, split)
        noise_files = [f for f in noise_files if f.label in noise_types]
    order = np.random.default_rng([seed, SPLITS.index(split)]).permutation(len(speech))
    total = len(speech) * len(snrs_db)
    n_pairs = total if count is None else min(count, total)
    if n_pairs <= 0:
        raise DataError(f"--count must be >= 1, got {count}")
    noise_cache: dict[int, np.ndarray] = {}
    pairs: list[EvalPair] = []
    for rank, u in enumerate(order):
        if len(pairs) >= n_pairs:
            break
        utt_file = speech[int(u)]
        utt = load_mono(utt_file.path)
        for j, snr in enumerate(snrs_db):
            if len(pairs) >= n_pairs:
                break
            rng = np.random.default_rng([seed, SPLITS.index(split), int(u), j])
            k = int(rng.integers(len(noise_files)))
            if k not in noise_cache:
                noise_cache[k] = load_mono(noise_files[k].path)
            m = mix(utt, noise_cache[k], float(snr), rng)
            spk = utt_file.label
            pairs.append(EvalPair(
                id=f"{split}_{rank:04d}_{spk}_{utt_file.path.stem}_snr{int(snr):+d}",
                clean=m.clean,
                noisy=m.noisy,
                input_snr_db=float(snr),
                noise_type=noise_files[k].label,
                speaker=spk,
                speech_file=str(utt_file.path.relative_to(corpus.root)),
                noise_file=str(noise_files[k].path.relative_to(corpus.root)),
            ))
    return pairs


PAIRS_COLUMNS = ("id", "noisy", "clean", "input_snr_db", "noise_type", "speaker",
                 "speech_file", "noise_file", "room")


def write_pairs(pairs: Sequence[EvalPair], out_dir: str | os.PathLike) -> Path:
    """Write ``noisy/ID.flac``, ``clean/ID.flac`` and ``pairs.csv`` (paths relative to it)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for p in pairs:
        noisy = write_audio(out_dir / "noisy" / f"{p.id}.flac", p.noisy, MODEL_RATE)
        clean = write_audio(out_dir / "clean" / f"{p.id}.flac", p.clean, MODEL_RATE)
        rows.append({
            "id": p.id,
            "noisy": str(noisy.relative_to(out_dir)),
            "clean": str(clean.relative_to(out_dir)),
            "input_snr_db": f"{p.input_snr_db:g}",
            "noise_type": p.noise_type,
            "speaker": p.speaker,
            "speech_file": p.speech_file,
            "noise_file": p.noise_file,
            "room": p.room,
        })
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=PAIRS_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    return write_text_atomic(out_dir / "pairs.csv", text.getvalue())


@dataclass(frozen=True)
class PairRow:
    """One row of a ``pairs.csv`` with resolved paths."""

    id: str
    noisy: Path
    clean: Path
    input_snr_db: float
    noise_type: str
    speaker: str
    room: str = ""


def read_pairs(csv_path: str | os.PathLike) -> list[PairRow]:
    """Read a ``pairs.csv`` written by :func:`write_pairs` (or by hand, same columns)."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DataError(f"{csv_path}: no such file; make one with `speechmask data testset`")
    try:
        with open(csv_path, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"{csv_path}: cannot read as CSV ({err})") from None
    need = {"id", "noisy", "clean"}
    if not rows or not need <= set(rows[0]):
        raise DataError(f"{csv_path}: needs a header with at least columns id,noisy,clean and "
                        "one row per pair")
    base = csv_path.parent
    out = []
    for row in rows:
        try:
            snr = float(row.get("input_snr_db") or "nan")
        except ValueError:
            snr = float("nan")
        out.append(PairRow(row["id"], base / row["noisy"], base / row["clean"], snr,
                           row.get("noise_type", ""), row.get("speaker", ""),
                           row.get("room") or ""))
    return out


def load_pair(row: PairRow) -> tuple[np.ndarray, np.ndarray]:
    """(clean, noisy) mono 16 kHz of one row, trimmed to the same length."""
    clean, noisy = load_mono(row.clean), load_mono(row.noisy)
    if abs(len(clean) - len(noisy)) > MODEL_RATE // 100:
        raise AudioError(row.noisy, f"length {len(noisy)} differs from its clean file "
                                    f"{row.clean.name} ({len(clean)} samples)")
    n = min(len(clean), len(noisy))
    return clean[:n], noisy[:n]
