"""Augmentation of training mixtures: generated noise families and the channel a recording
passes through (microphone colouring, band limits).

Recorded noise covers a few dozen sources; users record next to hum, clicks, beeps, fans and
music we have no recording of. Each generator below draws one member of a family (a random
colour, modulation, mains frequency, click rate, tone pattern) so a model trained on them finds
unheard noises of these kinds less foreign. Every generator returns ``[length]`` float32 with
unit RMS and is a pure function of its ``rng``.

Channel effects are linear filters applied alike to speech and noise (the microphone or codec
comes after the mixing), so the training target is the filtered speech: we remove noise, we do
not restore a band the recording never had.

:class:`AugmentConfig` says how often each is drawn for a training mixture
(:class:`speechmask.dataset.MixtureDataset` draws them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .rooms import RoomConfig

# Sample rate of everything here (the model's rate).
RATE = 16_000


def unit_rms(x: np.ndarray) -> np.ndarray:
    """``x`` scaled to RMS 1 (silence stays silence), as float32."""
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    return (x / rms if rms > 0 else x).astype(np.float32)


def colored_noise(length: int, rng: np.random.Generator, exponent: float) -> np.ndarray:
    """Stationary noise with power spectrum ~ 1/f^exponent (0 white, 1 pink, 2 brown,
    negative = blue/violet). Unit RMS."""
    spec = rng.standard_normal(length // 2 + 1) + 1j * rng.standard_normal(length // 2 + 1)
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    out = np.fft.irfft(spec / f ** (exponent / 2.0), n=length)
    return (out / (np.sqrt(np.mean(out**2)) + 1e-12)).astype(np.float32)


def _smooth_envelope(length: int, rng: np.random.Generator, rate_hz: float) -> np.ndarray:
    """A random positive envelope that changes about ``rate_hz`` times a second: random knots
    joined by linear interpolation, in [0, 1]."""
    knots = max(2, int(length / RATE * rate_hz) + 2)
    values = rng.random(knots)
    return np.interp(np.linspace(0, knots - 1, length), np.arange(knots), values)


def modulated_noise(length: int, rng: np.random.Generator) -> np.ndarray:
    """Coloured noise under a slow amplitude envelope: traffic passing, wind gusts, a fan
    speeding up. Either a sine (0.2-6 Hz) or a random envelope (0.5-8 changes/s), depth
    0.5-1."""
    base = colored_noise(length, rng, float(rng.uniform(-0.5, 2.0)))
    depth = float(rng.uniform(0.5, 1.0))
    if rng.random() < 0.5:
        t = np.arange(length) / RATE
        env = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.2, 6.0) * t + rng.uniform(0, 2 * np.pi))
    else:
        env = _smooth_envelope(length, rng, float(rng.uniform(0.5, 8.0)))
    return unit_rms(base * (1.0 - depth + depth * env))


def hum(length: int, rng: np.random.Generator) -> np.ndarray:
    """Mains hum and buzz: 50 or 60 Hz (+-1 %) with 3-40 harmonics whose amplitudes fall as
    1/k^a (a in 0.3-2.5: a buzz is rich, a hum is nearly pure), random phases, a slow 5 %
    amplitude wobble and a little hiss underneath (-30 dB)."""
    f0 = (50.0 if rng.random() < 0.5 else 60.0) * float(rng.uniform(0.99, 1.01))
    count = min(int(rng.integers(3, 41)), int(RATE / 2 / f0) - 1)
    slope = float(rng.uniform(0.3, 2.5))
    t = np.arange(length) / RATE
    out = np.zeros(length)
    odd_only = rng.random() < 0.3  # transformer buzz is mostly odd harmonics
    for k in range(1, count + 1):
        if odd_only and k % 2 == 0 and k > 1:
            continue
        out += k**-slope * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi))
    out = unit_rms(out) * (0.95 + 0.05 * _smooth_envelope(length, rng, 1.0))
    return unit_rms(out + 0.03 * colored_noise(length, rng, 1.0))


def clicks(length: int, rng: np.random.Generator) -> np.ndarray:
    """Impulsive noise: clicks, taps, keyboard, crackle. Events at a Poisson rate of 0.5-20 per
    second, each a burst of white noise 0.3-10 ms long with an exponential decay, amplitudes
    spread over 20 dB, the whole coloured by a random spectral tilt."""
    out = np.zeros(length)
    events = rng.poisson(rng.uniform(0.5, 20.0) * length / RATE)
    for _ in range(max(1, events)):
        dur = max(4, int(rng.uniform(0.3, 10.0) * RATE / 1000))
        start = int(rng.integers(0, max(1, length - dur)))
        burst = rng.standard_normal(dur) * np.exp(-np.arange(dur) / (dur / 4))
        out[start : start + dur] += 10 ** (rng.uniform(-20, 0) / 20) * burst[: length - start]
    return unit_rms(random_eq(out, rng, 12.0)) if np.any(out) else out.astype(np.float32)


def tones(length: int, rng: np.random.Generator) -> np.ndarray:
    """Tonal noise: beeps, alarms, whistles, sweeps. 1-3 components, each a steady tone, an on/off
    beep (2-10 Hz) or a repeating chirp (0.2-2 s, linear or exponential sweep), between 150 and
    7000 Hz."""
    t = np.arange(length) / RATE
    out = np.zeros(length)
    for _ in range(int(rng.integers(1, 4))):
        kind = rng.integers(3)
        f1 = float(np.exp(rng.uniform(np.log(150), np.log(7000))))
        amp = 10 ** (rng.uniform(-12, 0) / 20)
        if kind == 0:
            sig = np.sin(2 * np.pi * f1 * t + rng.uniform(0, 2 * np.pi))
        elif kind == 1:
            gate = (np.sin(2 * np.pi * rng.uniform(2, 10) * t) > rng.uniform(-0.5, 0.5))
            sig = np.sin(2 * np.pi * f1 * t) * gate
        else:
            f2 = float(np.exp(rng.uniform(np.log(150), np.log(7000))))
            period = rng.uniform(0.2, 2.0)
            phase_t = np.mod(t, period) / period  # 0..1 within each sweep
            if rng.random() < 0.5:
                inst = f1 + (f2 - f1) * phase_t
            else:
                inst = f1 * (f2 / f1) ** phase_t
            sig = np.sin(2 * np.pi * np.cumsum(inst) / RATE)
        out += amp * sig
    return unit_rms(out)


# The generated families, by name (the names used in AugmentConfig.generated).
GENERATORS: dict[str, Callable[[int, np.random.Generator], np.ndarray]] = {
    "colored": lambda n, rng: colored_noise(n, rng, float(rng.uniform(-1.0, 2.0))),
    "modulated": modulated_noise,
    "hum": hum,
    "clicks": clicks,
    "tones": tones,
}


def generated_noise(kind: str, length: int, rng: np.random.Generator) -> np.ndarray:
    """One member of the family ``kind`` (a key of :data:`GENERATORS`), ``[length]`` unit RMS."""
    try:
        return GENERATORS[kind](length, rng)
    except KeyError:
        raise ValueError(f"unknown generated noise {kind!r}; use one of "
                         f"{', '.join(GENERATORS)}") from None


# ---------------------------------------------------------------------------------------------
# Channel


def random_eq(x: np.ndarray, rng: np.random.Generator, max_db: float) -> np.ndarray:
    """Random smooth spectral tilt/EQ: a gain curve through 6 random points in +-max_db dB,
    spaced on a log-frequency axis, applied in the FFT domain (zero phase)."""
    spec = np.fft.rfft(x)
    freqs = np.linspace(0, 1, len(spec))
    knots = np.logspace(-3, 0, 6)
    gains_db = rng.uniform(-max_db, max_db, size=len(knots))
    curve = 10.0 ** (np.interp(freqs, knots, gains_db) / 20.0)
    return np.fft.irfft(spec * curve, n=len(x)).astype(np.float32)


def band_gain(n: int, low_hz: float, high_hz: float, transition_hz: float = 200.0) -> np.ndarray:
    """Zero-phase gain ``[n // 2 + 1]`` for an ``n``-point rfft at 16 kHz: 1 between ``low_hz``
    and ``high_hz``, 0 outside, raised-cosine edges ``transition_hz`` wide (a telephone line or
    a resampler's anti-alias filter, not a brick wall that rings)."""
    freqs = np.fft.rfftfreq(n, 1.0 / RATE)
    gain = np.ones_like(freqs)
    if high_hz < RATE / 2:
        edge = np.clip((freqs - high_hz) / transition_hz + 0.5, 0.0, 1.0)
        gain *= 0.5 + 0.5 * np.cos(np.pi * edge)
    if low_hz > 0:
        edge = np.clip((low_hz - freqs) / transition_hz + 0.5, 0.0, 1.0)
        gain *= 0.5 + 0.5 * np.cos(np.pi * edge)
    return gain


def apply_gain(x: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """``x`` filtered by a zero-phase rfft gain of :func:`band_gain`'s shape."""
    return np.fft.irfft(np.fft.rfft(x) * gain, n=len(x)).astype(np.float32)


# Upper band edges a recording may have, Hz: telephone (3.4 k), 8 kHz codecs and narrowband
# Bluetooth (4 k), wideband codecs (5.5-7 k), and what a 44.1/48 kHz -> 16 kHz resampler leaves
# (7.6-7.8 k: its anti-alias transition empties the top 200-400 Hz).
BAND_EDGES_HZ = (3400.0, 4000.0, 5500.0, 7000.0, 7600.0, 7800.0)


def random_band_limit(rng: np.random.Generator, n: int, highpass: float, lowpass: float
                      ) -> np.ndarray | None:
    """A random channel band: with probability ``lowpass`` an upper edge from
    :data:`BAND_EDGES_HZ` (+-3 %), with probability ``highpass`` a lower edge of 50-300 Hz
    (small microphones, voice-call high-pass filters). Returns the rfft gain, or None when
    neither was drawn."""
    high = RATE / 2
    low = 0.0
    if rng.random() < lowpass:
        high = float(rng.choice(BAND_EDGES_HZ)) * float(rng.uniform(0.97, 1.03))
        high = min(high, 7900.0)
    if rng.random() < highpass:
        low = float(rng.uniform(50.0, 300.0))
    if high >= RATE / 2 and low == 0.0:
        return None
    return band_gain(n, low, high, float(rng.uniform(100.0, 400.0)))


# ---------------------------------------------------------------------------------------------
# How often each augmentation is drawn


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
    # Given a room, how much of the reverberant speech is the target, ms after the direct path
    # (0 = all of it: the shipped choice, which keeps the room). > 0: the direct path and the
    # reflections of the first N ms (50 is the usual "early" boundary of room acoustics) are the
    # target and the later tail counts as noise, so the model learns to cut the tail that at
    # low SNR looks like diffuse noise (docs/experiments.md, "Nor does width"). The noisy input
    # is the same mixture either way.
    room_early_ms: float = 0.0
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
        if not 0.0 <= self.room_early_ms <= 1000.0:
            raise ValueError(f"room_early_ms must be 0-1000 ms, got {self.room_early_ms}")
        if self.babble + self.colored + self.generated > 1.0:
            raise ValueError("babble + colored + generated must not exceed 1")

    @classmethod
    def off(cls) -> AugmentConfig:
        """No augmentation at all (every probability 0)."""
        return cls(babble=0.0, colored=0.0, second_noise=0.0, eq=0.0, generated=0.0, room=0.0,
                   lowpass=0.0, highpass=0.0)
