"""Room impulse responses: a bank of simulated shoebox rooms (pyroomacoustics' image source
method), built once per configuration and cached on disk, and reverberation aligned to the dry
signal.

Users record in rooms; the corpus speech is dry. Convolving speech (and separately the noise)
with a room's response teaches the model that reverberant speech is speech: the training target
stays the reverberant speech, because we remove noise, we do not change the room.

One response of RT60 0.5 s costs about 0.5 s to compute, so each is made once (200 rooms in
about 1.5 min on one core) and stored under :func:`cache_dir`; every training example then only
convolves (about 1 ms for 2 s of audio).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.signal import fftconvolve

from .atomic import write_atomic

log = logging.getLogger(__name__)

RATE = 16_000


@dataclass(frozen=True)
class RoomConfig:
    """The distribution a bank of rooms is drawn from (and its size and seed)."""

    # Rooms in the bank. 200 distinct responses are plenty next to millions of (speech, noise,
    # SNR) draws; the bank costs ~1.5 min once.
    count: int = 200
    # Reverberation time range, seconds, uniform: 0.15 (furnished office, car) to 0.9 (hall,
    # kitchen with hard walls). Beyond 1 s speech is hard to follow and rare in recordings.
    rt60_low: float = 0.15
    rt60_high: float = 0.9
    # Room length / width / height ranges, metres: a small office (3 x 3 x 2.4) to a classroom
    # (10 x 8 x 4).
    length_m: tuple[float, float] = (3.0, 10.0)
    width_m: tuple[float, float] = (3.0, 8.0)
    height_m: tuple[float, float] = (2.4, 4.0)
    # Source-microphone distance range, metres: a headset-free laptop (0.3) to across a
    # meeting table (3).
    distance_m: tuple[float, float] = (0.3, 3.0)
    # Longest response kept, seconds (faded out over its last 10 %): 1 s holds the audible
    # tail of RT60 0.9 s (-60 dB at 0.9 s).
    max_seconds: float = 1.0
    # Seed of the bank: training, validation and test banks use different seeds.
    seed: int = 0

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"room count must be >= 1, got {self.count}")
        if not 0 < self.rt60_low <= self.rt60_high:
            raise ValueError(f"need 0 < rt60_low <= rt60_high, got {self.rt60_low}, "
                             f"{self.rt60_high}")
        for name in ("length_m", "width_m", "height_m", "distance_m"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"{name} must be (low, high) with 0 < low <= high")
            object.__setattr__(self, name, (float(lo), float(hi)))


def cache_dir() -> Path:
    """Where banks are cached: ``$SPEECHMASK_CACHE``, else ``~/.cache/speechmask``."""
    env = os.environ.get("SPEECHMASK_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "speechmask"


def _position(rng: np.random.Generator, dims: np.ndarray, margin: float = 0.3) -> np.ndarray:
    return np.array([rng.uniform(margin, d - margin) for d in dims])


def simulate_rir(cfg: RoomConfig, rng: np.random.Generator) -> np.ndarray:
    """One room impulse response ``[samples]`` float32 at 16 kHz, peak 1, starting at its direct
    path: a shoebox of random size and RT60 (absorption by inverse Sabine), a source and a
    microphone at a random distance, image sources to the order the RT60 needs (randomised
    image positions, which avoid the sweeping echoes of a perfect shoebox)."""
    import pyroomacoustics as pra

    dims = np.array([rng.uniform(*cfg.length_m), rng.uniform(*cfg.width_m),
                     rng.uniform(*cfg.height_m)])
    rt60 = float(rng.uniform(cfg.rt60_low, cfg.rt60_high))
    mic = _position(rng, dims)
    for _ in range(100):  # a source at the drawn distance, inside the room
        distance = rng.uniform(*cfg.distance_m)
        direction = rng.standard_normal(3)
        src = mic + distance * direction / np.linalg.norm(direction)
        if np.all(src > 0.3) and np.all(src < dims - 0.3):
            break
    else:
        src = _position(rng, dims)
    try:
        absorption, max_order = pra.inverse_sabine(rt60, dims)
    except ValueError:  # RT60 too long for a small room: the most reverberant it can be
        absorption, max_order = 0.05, 60
    room = pra.ShoeBox(dims, fs=RATE, materials=pra.Material(absorption),
                       max_order=int(max_order), use_rand_ism=True, max_rand_disp=0.05)
    room.add_source(src.tolist())
    room.add_microphone(mic.tolist())
    # The randomised image positions come from pyroomacoustics' package-wide generators
    # (numpy's and its C++ core's): seed them from `rng` for a deterministic response.
    pra.random.seed(int(rng.integers(2**32)))
    room.compute_rir()
    rir = np.asarray(room.rir[0][0], dtype=np.float64)
    start = int(np.argmax(np.abs(rir)))  # the direct path is the strongest arrival
    rir = rir[start : start + int(cfg.max_seconds * RATE)]
    fade = max(1, len(rir) // 10)
    rir[-fade:] *= np.linspace(1.0, 0.0, fade)
    return (rir / np.max(np.abs(rir))).astype(np.float32)


def _key(cfg: RoomConfig) -> str:
    import pyroomacoustics as pra

    text = json.dumps({**asdict(cfg), "pra": pra.__version__, "v": 3}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class RirBank:
    """The ``cfg.count`` responses of ``cfg``, made on first use and cached one file each under
    ``cache/rirs_<key>/`` (the key covers every field and the pyroomacoustics version), so a
    set that uses 4 of 50 rooms simulates 4, and processes share what any of them made.
    Deterministic: response ``i`` depends only on ``(cfg.seed, i)``."""

    def __init__(self, cfg: RoomConfig, cache: Path | None = None):
        self.cfg = cfg
        self.folder = (cache if cache is not None else cache_dir()) / f"rirs_{_key(cfg)}"
        self._made: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return self.cfg.count

    def __getitem__(self, i: int) -> np.ndarray:
        if not 0 <= i < self.cfg.count:
            raise IndexError(f"room {i} of a bank of {self.cfg.count}")
        if i not in self._made:
            self._made[i] = self._load(i)
        return self._made[i]

    def _load(self, i: int) -> np.ndarray:
        path = self.folder / f"{i:04d}.npy"
        if path.is_file():
            try:
                return np.load(path)
            except (OSError, ValueError) as err:
                log.warning("%s: unreadable cached room (%s); simulating it again", path, err)
        rir = simulate_rir(self.cfg, np.random.default_rng([self.cfg.seed, i]))
        try:
            write_atomic(path, lambda handle: np.save(handle, rir))
        except OSError as err:  # a read-only home still works, only slower next time
            log.warning("%s: cannot cache the room (%s)", path, err)
        return rir

    def build(self, progress: bool = False) -> RirBank:
        """Make every response now (training draws from all of them), with a progress bar."""
        from tqdm import tqdm

        missing = [i for i in range(self.cfg.count) if not (self.folder / f"{i:04d}.npy").is_file()]
        if missing:
            log.info("simulating %d rooms (RT60 %.2f-%.2f s), cached in %s", len(missing),
                     self.cfg.rt60_low, self.cfg.rt60_high, self.folder)
        for i in tqdm(range(self.cfg.count), desc="rooms", disable=not (progress and missing),
                      leave=False):
            self[i]
        return self


def rir_bank(cfg: RoomConfig, cache: Path | None = None) -> RirBank:
    """The bank of ``cfg`` (see :class:`RirBank`; responses are made when first used)."""
    return RirBank(cfg, cache)


def reverberate(x: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """``x`` convolved with ``rir`` (which starts at its direct path), cut to ``len(x)``: the
    direct sound stays where the dry sound was, the tail of the last second is dropped."""
    return fftconvolve(x, rir)[: len(x)].astype(np.float32)


# Fade at the early/late boundary: 5 ms (80 samples at 16 kHz), so cutting the response does not
# put a click into the target.
EARLY_FADE_MS = 5.0


def early_part(rir: np.ndarray, ms: float, rate: int = 16_000) -> np.ndarray:
    """The first ``ms`` of ``rir`` (which starts at its direct path), then a half-cosine fade of
    EARLY_FADE_MS to zero: the direct sound and early reflections, whose sum with the rest is
    ``rir`` again."""
    keep, fade = int(round(ms * rate / 1000)), int(round(EARLY_FADE_MS * rate / 1000))
    out = np.zeros_like(rir)
    out[:keep] = rir[:keep]
    tail = rir[keep : keep + fade]
    out[keep : keep + len(tail)] = tail * 0.5 * (1 + np.cos(np.pi * np.arange(len(tail)) / fade))
    return out
