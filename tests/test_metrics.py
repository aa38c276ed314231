"""Tests for speechmask.metrics: SNR and SI-SDR by hand, PESQ-WB and STOI on synthetic speech."""

import math

import numpy as np
import pytest

from speechmask.metrics import METRICS, pesq_wb, score, si_sdr_db, snr_db, stoi

DB_6 = 20 * math.log10(2)  # 6.0206 dB: an amplitude ratio of 2

# Zero-mean, mutually orthogonal, energy 4 each: SI-SDR's mean removal leaves them unchanged.
S = np.array([1.0, -1.0, 1.0, -1.0])
ORTHO = np.array([1.0, 1.0, -1.0, -1.0])


# --------------------------------------------------------------------------------------------
# SNR
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("clean", "estimate", "expected"),
    [
        ([1, 0, 0, 0], [1, 0, 0, 0.1], 20.0),  # error energy 0.01 vs 1
        ([1, 0, 0, 0], [1, 0, 0, 1.0], 0.0),  # error energy equals signal energy
        ([1, 0, 0, 0], [0.9, 0, 0, 0], 20.0),
        ([1, 1, 1, 1], [1, 1, 1, 0], 10 * math.log10(4)),
        ([3, 4], [3, 4.5], 20.0),  # 25 / 0.25
        ([1, -2, 3], [0, 0, 0], 0.0),  # silent estimate: error == signal
        ([1, -2, 3], [2, -4, 6], 0.0),  # doubled: error == signal
        ([1, -2, 3], [-1, 2, -3], -DB_6),  # sign flip: error == 2 * signal
        ([0.5, 0.5], [0.5, 0.5 + 0.05], 10 * math.log10(0.5 / 0.0025)),
    ],
)
def test_snr_hand_computed(clean, estimate, expected):
    value = snr_db(np.array(clean, float), np.array(estimate, float))
    assert isinstance(value, float)
    assert value == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("clean", [[1, 0, 0, 0], S, np.linspace(-1, 1, 100)])
def test_snr_of_perfect_estimate_is_very_large(clean):
    clean = np.asarray(clean, float)
    assert snr_db(clean, clean.copy()) >= 90


def test_snr_accepts_lists_ints_and_float32():
    assert snr_db([1, 0, 0, 0], [1, 0, 0, 0]) >= 90
    x = np.array([0.5, -0.25, 0.125], np.float32)
    assert snr_db(x, x * 0.9) == pytest.approx(20.0, abs=1e-4)


def test_snr_is_not_scale_invariant():
    rng = np.random.default_rng(0)
    s = rng.standard_normal(1000)
    assert snr_db(s, 2 * s) == pytest.approx(0.0, abs=1e-9)
    assert snr_db(s, 0.5 * s) == pytest.approx(DB_6, abs=1e-9)


# --------------------------------------------------------------------------------------------
# SI-SDR
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("a", [0.1, 0.5, 1.0, 2.0, 10.0])
def test_si_sdr_orthogonal_noise(a):
    # Target = s (energy 4), residual = a * ORTHO (energy 4 a^2): SI-SDR = -20 log10(a).
    assert si_sdr_db(S, S + a * ORTHO) == pytest.approx(-20 * math.log10(a), abs=1e-6)


@pytest.mark.parametrize("k", [0.01, 0.5, 3.0, -2.0])
def test_si_sdr_is_scale_invariant(k):
    est = S + 0.1 * ORTHO
    # Exact up to the 1e-10 energy guard (residual energy here is 4e-6 at k = 0.01).
    assert si_sdr_db(S, k * est) == pytest.approx(20.0, abs=1e-3)


@pytest.mark.parametrize("offset", [0.0, 5.0, -0.3])
def test_si_sdr_ignores_dc_offset(offset):
    assert si_sdr_db(S + 1.0, S + 0.5 * ORTHO + offset) == pytest.approx(DB_6, abs=1e-6)


@pytest.mark.parametrize("k", [2.0, 0.5, 1.0])
def test_scaled_estimate_si_sdr_large_but_snr_drops(k):
    s = np.array([1.0, 0.0, 0.0, 0.0])
    assert si_sdr_db(s, k * s) >= 90
    assert si_sdr_db(S, k * S) >= 90
    if k == 2.0:
        assert snr_db(s, k * s) == pytest.approx(0.0, abs=1e-6)
        assert snr_db(S, k * S) == pytest.approx(0.0, abs=1e-6)


def test_si_sdr_on_random_signals_matches_definition():
    rng = np.random.default_rng(1)
    s = rng.standard_normal(5000)
    e = 0.8 * s + 0.3 * rng.standard_normal(5000)
    s0, e0 = s - s.mean(), e - e.mean()
    target = (e0 @ s0) / (s0 @ s0) * s0
    expected = 10 * np.log10(np.sum(target**2) / np.sum((e0 - target) ** 2))
    assert si_sdr_db(s, e) == pytest.approx(expected, abs=1e-9)
    assert isinstance(si_sdr_db(s, e), float)


def test_si_sdr_is_finite_for_silent_inputs():
    assert math.isfinite(si_sdr_db(np.zeros(10), np.zeros(10)))
    assert math.isfinite(si_sdr_db(S, np.zeros(4)))


# --------------------------------------------------------------------------------------------
# PESQ and STOI on a 3 s speech-like signal
# --------------------------------------------------------------------------------------------


@pytest.fixture
def speech3(speech_like):
    return speech_like(3.0, seed=0)


@pytest.fixture
def noisy3(speech3, white_noise, mix_at_snr):
    """The same speech at 20, 0 and -5 dB SNR (white noise)."""
    noise = white_noise(speech3.size, seed=1)
    return {snr: speech3 + mix_at_snr(speech3, noise, snr)[1] for snr in (20, 0, -5)}


def test_pesq_identical_is_near_max(speech3):
    value = pesq_wb(speech3, speech3)
    assert isinstance(value, float)
    assert 4.0 < value <= 4.65


def test_pesq_drops_with_noise(speech3, noisy3):
    clean = pesq_wb(speech3, speech3)
    scores = [pesq_wb(speech3, noisy3[snr]) for snr in (20, 0)]
    assert all(1.0 <= v <= 4.65 for v in scores)
    assert clean > scores[0] > scores[1]
    assert scores[1] < 2.0


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # pesq divides 0/0 before giving up
def test_pesq_on_silence_returns_nan():
    silence = np.zeros(48000)
    assert math.isnan(pesq_wb(silence, silence))


def test_pesq_with_silent_estimate_returns_nan(speech3):
    # The pesq package raises a bare ValueError here; the metric must not crash an evaluation.
    assert math.isnan(pesq_wb(speech3, np.zeros_like(speech3)))


def test_pesq_on_too_short_input_returns_nan(speech3):
    assert math.isnan(pesq_wb(speech3[:100], speech3[:100]))


@pytest.mark.parametrize("rate", [8000, 44100])
def test_pesq_rejects_non_16k_rate(speech3, rate):
    with pytest.raises(ValueError):
        pesq_wb(speech3, speech3, rate=rate)


def test_stoi_identical_is_one(speech3):
    value = stoi(speech3, speech3)
    assert isinstance(value, float)
    assert value == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("seconds", [0.2, 0.3])
def test_stoi_of_too_little_speech_is_nan_not_zero(speech3, seconds):
    short = speech3[: int(seconds * 16_000)]
    assert math.isnan(stoi(short, short))


def test_stoi_drops_with_noise(speech3, noisy3):
    scores = [stoi(speech3, noisy3[snr]) for snr in (20, 0, -5)]
    assert all(0.0 <= v <= 1.0 for v in scores)
    assert 1.0 > scores[0] > scores[1] > scores[2]
    assert scores[2] < 0.9


# --------------------------------------------------------------------------------------------
# score()
# --------------------------------------------------------------------------------------------


def test_score_all_metrics(speech3, noisy3):
    result = score(speech3, noisy3[0])
    assert list(result) == list(METRICS) == ["snr", "si_sdr", "pesq", "stoi"]
    assert result["snr"] == pytest.approx(0.0, abs=1e-3)
    assert result["si_sdr"] == pytest.approx(si_sdr_db(speech3, noisy3[0]))
    assert result["pesq"] == pytest.approx(pesq_wb(speech3, noisy3[0]))
    assert result["stoi"] == pytest.approx(stoi(speech3, noisy3[0]))


@pytest.mark.parametrize("which", [("snr",), ("si_sdr", "snr"), ()])
def test_score_subset(which):
    est = S + 0.1 * ORTHO
    result = score(S, est, which)
    assert tuple(result) == which
    for name in which:
        assert result[name] == pytest.approx(METRICS[name](S, est))


def test_score_unknown_metric():
    with pytest.raises(KeyError):
        score(S, S, ("mos",))
