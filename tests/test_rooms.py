"""Simulated rooms: responses, the cached bank, aligned reverberation."""

import numpy as np
import pytest

from speechmask.rooms import RATE, RoomConfig, reverberate, rir_bank, simulate_rir

# Small, dry rooms simulate in milliseconds.
SMALL = RoomConfig(count=3, rt60_low=0.15, rt60_high=0.3, length_m=(3.0, 4.0),
                   width_m=(3.0, 4.0), height_m=(2.4, 3.0), seed=5)


def test_response_starts_at_its_direct_path_and_decays():
    rir = simulate_rir(SMALL, np.random.default_rng(0))
    assert rir.dtype == np.float32 and len(rir) <= SMALL.max_seconds * RATE
    assert np.argmax(np.abs(rir)) == 0 and rir[0] == pytest.approx(1.0)
    tenth = len(rir) // 10
    assert np.sum(rir[-tenth:] ** 2) < 1e-3 * np.sum(rir[:tenth] ** 2)


def test_bank_is_made_on_use_cached_and_deterministic(tmp_path):
    bank = rir_bank(SMALL, cache=tmp_path)
    first = bank[1]
    assert len(bank) == 3 and len(list(tmp_path.glob("rirs_*/*.npy"))) == 1  # room 1 only
    bank.build()
    assert len(list(tmp_path.glob("rirs_*/*.npy"))) == 3
    again = rir_bank(SMALL, cache=tmp_path)
    fresh = rir_bank(SMALL, cache=tmp_path / "other")
    np.testing.assert_array_equal(again[1], first)
    for i in range(3):
        np.testing.assert_array_equal(again[i], fresh[i])
    other_seed = rir_bank(RoomConfig(**{**SMALL.__dict__, "seed": 6}), cache=tmp_path)
    assert not np.array_equal(first, other_seed[1])
    with pytest.raises(IndexError):
        bank[3]


def test_corrupt_cache_is_simulated_again(tmp_path):
    first = rir_bank(SMALL, cache=tmp_path)[0]
    path = next(tmp_path.glob("rirs_*/0000.npy"))
    path.write_bytes(b"not an npy")
    np.testing.assert_array_equal(rir_bank(SMALL, cache=tmp_path)[0], first)


def test_reverberation_keeps_length_and_alignment(white_noise):
    x = white_noise(RATE, seed=3)
    rir = simulate_rir(SMALL, np.random.default_rng(1))
    y = reverberate(x, rir)
    assert y.shape == x.shape
    # White noise: the cross-correlation is the response itself, strongest at its direct path.
    corr = np.correlate(y[:4000], x[:4000], mode="full")
    assert np.argmax(corr) - (4000 - 1) == 0  # the direct sound lines up with the dry sound
    np.testing.assert_allclose(reverberate(x, np.array([1.0], np.float32)), x, atol=1e-6)


@pytest.mark.parametrize("bad", [{"count": 0}, {"rt60_low": 0.5, "rt60_high": 0.2},
                                 {"distance_m": (2.0, 1.0)}])
def test_config_rejects_bad_ranges(bad):
    with pytest.raises(ValueError):
        RoomConfig(**bad)
