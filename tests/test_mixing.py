"""Speech + noise at an SNR, and the checks of MixConfig."""

import numpy as np
import pytest

from speechmask.metrics import snr_db
from speechmask.mixing import MixConfig, loop_to_length, mix, scale_to_snr


@pytest.mark.parametrize("length,offset", [(10, 0), (25, 3), (7, 9)])
def test_loop_to_length(length, offset):
    noise = np.arange(10, dtype=np.float32)
    out = loop_to_length(noise, length, offset)
    assert len(out) == length
    assert np.array_equal(out, (offset + np.arange(length)) % 10)


@pytest.mark.parametrize("snr", [-5.0, 0.0, 7.5, 15.0])
def test_scale_to_snr_is_exact(snr):
    rng = np.random.default_rng(0)
    s, n = rng.standard_normal(1000), rng.standard_normal(1000)
    assert snr_db(s, s + scale_to_snr(s, n, snr)) == pytest.approx(snr, abs=1e-4)


@pytest.mark.parametrize("snr,gain", [(-5.0, 0.0), (10.0, -20.0), (0.0, 30.0)])
def test_mix_snr_gain_no_clipping_and_determinism(snr, gain):
    speech = np.sin(np.arange(8000) / 5).astype(np.float32) * 0.9
    noise = np.random.default_rng(1).standard_normal(3000).astype(np.float32)  # shorter: looped
    m = mix(speech, noise, snr, np.random.default_rng(2), gain_db=gain)
    assert len(m.noisy) == len(speech)
    assert np.max(np.abs(m.noisy)) <= 0.99 + 1e-6
    assert snr_db(m.clean, m.noisy) == pytest.approx(snr, abs=1e-3)
    again = mix(speech, noise, snr, np.random.default_rng(2), gain_db=gain)
    assert np.array_equal(m.noisy, again.noisy)


@pytest.mark.parametrize("bad", [dict(snr_low_db=10, snr_high_db=0), dict(crop_seconds=0),
                                 dict(examples_per_epoch=0), dict(gain_low_db=5, gain_high_db=0)])
def test_mix_config_rejects_impossible_values(bad):
    with pytest.raises(ValueError):
        MixConfig(**bad)
