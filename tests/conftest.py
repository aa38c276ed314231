"""Shared fixtures: deterministic speech-like test signals at 16 kHz."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

# The package uses a src layout; make it importable when it is not installed in the venv.
_SRC = Path(__file__).resolve().parents[1] / "src"
if importlib.util.find_spec("speechmask") is None and _SRC.is_dir():
    sys.path.insert(0, str(_SRC))

RATE = 16_000


def _speech_like(seconds=1.0, rate=RATE, seed=0, f0=140.0, peak=0.5):
    """A voiced-speech caricature: harmonics of a gliding f0 with a formant-like spectral shape,
    gated by a ~4 Hz syllabic envelope with short pauses. float32, ``[samples]``."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * rate))
    t = np.arange(n) / rate
    # f0 glides +-15 % at 0.7 Hz; integrate the instantaneous frequency for a smooth phase.
    f_inst = f0 * (1.0 + 0.15 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 2 * np.pi)))
    phase = 2 * np.pi * np.cumsum(f_inst) / rate
    x = np.zeros(n)
    for k in range(1, int(7000 // (f0 * 1.15)) + 1):
        fk = k * f0
        # Two broad "formant" bumps (~500 Hz and ~1500 Hz) over a -6 dB/octave tilt.
        gain = (1.0 / k) * (
            1.0 + 2.0 * np.exp(-(((fk - 500) / 250) ** 2)) + np.exp(-(((fk - 1500) / 400) ** 2))
        )
        x += gain * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    # Syllables at ~4 Hz: raised-sine bumps, with every 4th syllable silent (a pause).
    syll = np.sin(np.pi * 4.0 * t) ** 2
    pause = (np.floor(4.0 * t) % 4) == 3
    env = np.where(pause, 0.0, syll)
    x *= env
    x *= peak / np.max(np.abs(x))
    return x.astype(np.float32)


@pytest.fixture
def speech_like():
    """Factory: ``speech_like(seconds=1.0, rate=16000, seed=0, f0=140.0, peak=0.5)``."""
    return _speech_like


@pytest.fixture
def white_noise():
    """Factory: ``white_noise(n, seed=0)`` -> float32 unit-variance Gaussian noise."""

    def make(n, seed=0):
        return np.random.default_rng(seed).standard_normal(n).astype(np.float32)

    return make


@pytest.fixture
def mix_at_snr():
    """Factory: ``mix_at_snr(speech, noise, snr_db) -> (speech, scaled_noise)`` so that
    ``10*log10(sum(speech**2) / sum(scaled_noise**2)) == snr_db``."""

    def mix(speech, noise, snr_db):
        speech = np.asarray(speech, dtype=np.float64)
        noise = np.asarray(noise, dtype=np.float64)
        gain = np.sqrt(np.sum(speech**2) / (np.sum(noise**2) * 10.0 ** (snr_db / 10.0)))
        return speech.astype(np.float32), (gain * noise).astype(np.float32)

    return mix


@pytest.fixture(scope="session")
def tiny_model_files(tmp_path_factory):
    """Factory: ``tiny_model_files(cell="gru", layers=1) -> (tiny.pt, tiny.onnx)``.

    An untrained 16-unit model (seed 0) with a plausible log-magnitude normalisation, saved as a
    checkpoint and exported to ONNX once per session and configuration: small enough that every
    CLI and backend test can run a real model in milliseconds.
    """
    made = {}

    def make(cell="gru", layers=1):
        if (cell, layers) not in made:
            import torch

            from speechmask import checkpoint as ckpt
            from speechmask.features import StftConfig
            from speechmask.model import MaskNet, ModelConfig
            from speechmask.onnx_backend import export_onnx

            torch.manual_seed(0)
            m = MaskNet(ModelConfig(cell=cell, hidden=16, layers=layers, dropout=0.0))
            m.set_normalization(torch.full((257,), -8.0), torch.full((257,), 4.0))
            folder = tmp_path_factory.mktemp(f"tiny_{cell}{layers}")
            pt = ckpt.save(folder / "tiny.pt", ckpt.model_payload(m, StftConfig()))
            made[cell, layers] = pt, export_onnx(m.eval(), StftConfig(), folder / "tiny.onnx")
        return made[cell, layers]

    return make
