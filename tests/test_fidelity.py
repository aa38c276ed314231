"""Issue 22: what the shipped model does to clean speech at every rate and level.

Real corpus speech (test split) through the shipped ONNX model; the figures for the full
benchmark come from ``python -m benchmarks.fidelity``.
"""

import numpy as np
import pytest
import soxr

from benchmarks.fidelity import air, corpus_speech, fft_resample
from speechmask.corpus import default_corpus_dir
from speechmask.onnx_backend import OnnxEnhancer, default_onnx_path

CORPUS = default_corpus_dir()


def band_change_db(x: np.ndarray, y: np.ndarray, rate: int, lo: float, hi: float) -> float:
    f = np.fft.rfftfreq(len(x), 1 / rate)
    sel = (f >= lo) & (f < hi)
    return float(10 * np.log10(np.sum(np.abs(np.fft.rfft(y))[sel] ** 2)
                               / np.sum(np.abs(np.fft.rfft(x))[sel] ** 2)))


@pytest.fixture(scope="module")
def shipped():
    if not default_onnx_path().is_file() or not (CORPUS / "manifest.csv").is_file():
        pytest.skip("needs the shipped model and the corpus")
    return OnnxEnhancer.load()


@pytest.mark.parametrize("rate", [22050, 44100, 48000])
@pytest.mark.parametrize("kind", ["full-band", "resampled"])
def test_high_rate_clean_speech_is_not_muffled(shipped, rate, kind):
    """Item 1: clean speech at 22.05/44.1/48 kHz keeps every band within 1.5 dB, the band above
    8 kHz included; full-band (a real high-rate recording) and resampled from 16 kHz with soxr
    (an empty 7.6-8 kHz band) alike."""
    speech = corpus_speech(6.0)
    if kind == "full-band":
        x = fft_resample(speech, 16000, rate)
    else:
        x = soxr.resample(speech, 16000, rate, quality="VHQ").astype(np.float32)
    x = x + air(speech, rate)[: len(x)]
    y = shipped(x, rate)
    for lo, hi in ((0, 2000), (2000, 4000), (4000, 6000), (6000, 7500), (8000, 11000)):
        change = band_change_db(x, y, rate, lo, hi)
        assert abs(change) < 1.5, f"{lo}-{hi} Hz: {change:+.1f} dB"


@pytest.mark.parametrize("rate", [44100, 48000])
def test_same_mixture_same_snr_at_high_rate(shipped, rate):
    """Item 1: the same noisy mixture gives the same output SNR at 44.1/48 kHz as at 16 kHz
    (within 0.5 dB)."""
    from speechmask.corpus import Corpus
    from speechmask.evalsets import eval_pairs
    from speechmask.metrics import snr_db

    pairs = eval_pairs(Corpus(), "valid", 8)
    at16 = np.mean([snr_db(p.clean, shipped(p.noisy, 16000)) for p in pairs])
    high = np.mean([snr_db(fft_resample(p.clean, 16000, rate),
                           shipped(fft_resample(p.noisy, 16000, rate), rate)) for p in pairs])
    assert abs(high - at16) < 0.5, (at16, high)


@pytest.mark.parametrize("peak_dbfs", [-20, -40, -50])
@pytest.mark.parametrize("rate", [16000, 48000])
def test_quiet_clean_speech_is_left_alone(shipped, peak_dbfs, rate):
    """Item 9: clean speech peaking at -20/-40/-50 dBFS comes back at >= 20 dB SNR against
    itself, its level within 1 dB (the model's input, not the signal, is brought up)."""
    from speechmask.metrics import snr_db

    x = corpus_speech(6.0, peak=10 ** (peak_dbfs / 20))
    if rate != 16000:
        x = fft_resample(x, 16000, rate)
    y = shipped(x, rate)
    assert snr_db(x, y) >= 20
    assert abs(10 * np.log10(np.sum(y**2) / np.sum(x**2))) < 1


def test_quiet_streaming_matches_offline(shipped):
    """The level gains are causal: a stream gives the offline output (after its latency)."""
    from speechmask.onnx_backend import OnnxStreamingEnhancer

    x = corpus_speech(3.0, peak=10 ** (-50 / 20))
    offline = shipped(x, 16000)
    stream = OnnxStreamingEnhancer(shipped.model)
    assert np.max(np.abs(stream.enhance(x, chunk=333) - offline)) < 1e-6
