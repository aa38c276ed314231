"""Generated noise families and channel effects."""

import numpy as np
import pytest

from speechmask.augment import (
    GENERATORS,
    RATE,
    apply_gain,
    band_gain,
    colored_noise,
    generated_noise,
    random_band_limit,
    random_eq,
)


@pytest.mark.parametrize("kind", sorted(GENERATORS))
def test_generators_unit_rms_finite_and_deterministic(kind):
    a = generated_noise(kind, 8000, np.random.default_rng([1, 2]))
    b = generated_noise(kind, 8000, np.random.default_rng([1, 2]))
    c = generated_noise(kind, 8000, np.random.default_rng([1, 3]))
    assert a.shape == (8000,) and a.dtype == np.float32
    assert np.all(np.isfinite(a))
    assert np.sqrt(np.mean(a.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_hum_energy_sits_on_mains_harmonics():
    x = generated_noise("hum", RATE * 2, np.random.default_rng(4))
    spec = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / RATE)
    near = np.zeros_like(spec, dtype=bool)
    for f0 in (50.0, 60.0):
        for k in range(1, 41):
            near |= np.abs(freqs - k * f0) < 2.0
    # Harmonics of 50 or 60 Hz (+-1 %) hold nearly all the energy; the hiss is -30 dB.
    assert spec[near].sum() / spec.sum() > 0.9


def test_unknown_family_is_one_line_error():
    with pytest.raises(ValueError, match="unknown generated noise 'siren'"):
        generated_noise("siren", 100, np.random.default_rng(0))


@pytest.mark.parametrize("freq, passes", [(1000.0, True), (3000.0, True), (3800.0, False),
                                          (6000.0, False)])
def test_band_limit_keeps_the_band_and_removes_above(freq, passes):
    t = np.arange(RATE) / RATE
    tone = np.sin(2 * np.pi * freq * t).astype(np.float32)
    out = apply_gain(tone, band_gain(len(tone), 0.0, 3400.0, 200.0))
    ratio_db = 10 * np.log10(np.sum(out**2) / np.sum(tone**2))
    if passes:
        assert abs(ratio_db) < 0.1
    else:
        assert ratio_db < -60


def test_high_pass_edge():
    gain = band_gain(RATE, 200.0, RATE / 2, 100.0)
    freqs = np.fft.rfftfreq(RATE, 1 / RATE)
    assert np.all(gain[freqs < 150] == 0) and np.all(gain[freqs > 250] == 1)


def test_random_band_limit_draws_nothing_at_probability_zero():
    rng = np.random.default_rng(0)
    assert all(random_band_limit(rng, 1000, 0.0, 0.0) is None for _ in range(20))
    gain = random_band_limit(np.random.default_rng(1), 16000, 0.0, 1.0)
    freqs = np.fft.rfftfreq(16000, 1 / RATE)
    assert gain is not None and gain[freqs > 7950].max() == 0  # every edge is below 8 kHz


def test_augmentations_are_finite_and_shaped():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(4000).astype(np.float32)
    assert random_eq(x, rng, 6.0).shape == x.shape
    for exponent in (-1.0, 0.0, 1.0, 2.0):
        c = colored_noise(4000, rng, exponent)
        assert np.isfinite(c).all() and np.sqrt(np.mean(c**2)) == pytest.approx(1.0, rel=1e-3)
