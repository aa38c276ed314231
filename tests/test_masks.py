"""Tests for speechmask.masks: ideal masks, mask application and oracle enhancement."""

import math

import numpy as np
import pytest
import torch

from speechmask.features import StftConfig, istft, stft
from speechmask.masks import (
    apply_mask,
    enhance_with_mask,
    ideal_binary_mask,
    ideal_mask,
    ideal_ratio_mask,
    oracle_enhance,
)
from speechmask.metrics import snr_db


def _rand_mag(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _rel_err(y, x):
    return ((y - x).norm() / x.norm()).item()


# --------------------------------------------------------------------------------------------
# ideal binary mask
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(5, 257), (2, 5, 257)])
@pytest.mark.parametrize("lc_db", [-5.0, 0.0, 10.0])
def test_ibm_is_binary_with_input_shape_and_dtype(shape, lc_db):
    s, n = _rand_mag(*shape, seed=1), _rand_mag(*shape, seed=2)
    mask = ideal_binary_mask(s, n, lc_db)
    assert mask.shape == s.shape
    assert mask.dtype == s.dtype
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    expected = (20 * torch.log10(s / n) > lc_db).to(s.dtype)
    assert torch.equal(mask, expected)


@pytest.mark.parametrize(
    ("lc_db", "expected"),
    # |S| = 2 |N| is a local SNR of 20*log10(2) = 6.02 dB.
    [(-10.0, 1.0), (0.0, 1.0), (6.0, 1.0), (6.1, 0.0), (10.0, 0.0)],
)
def test_ibm_local_criterion(lc_db, expected):
    s = torch.tensor([[0.2, 2.0, 4e-3]])
    n = s / 2
    mask = ideal_binary_mask(s, n, lc_db)
    assert torch.all(mask == expected)


def test_ibm_ties_and_silence_are_zero():
    s = torch.tensor([0.0, 0.5, 0.5, 0.0])
    n = torch.tensor([0.0, 0.5, 0.0, 0.5])
    assert ideal_binary_mask(s, n).tolist() == [0.0, 0.0, 1.0, 0.0]


# --------------------------------------------------------------------------------------------
# ideal ratio mask
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(5, 257), (3, 4, 257)])
def test_irm_matches_formula_and_is_in_unit_range(dtype, shape):
    s = _rand_mag(*shape, seed=3).to(dtype) * 3
    n = _rand_mag(*shape, seed=4).to(dtype)
    mask = ideal_ratio_mask(s, n)
    assert mask.shape == s.shape
    assert mask.dtype == dtype
    assert torch.all((mask >= 0) & (mask <= 1))
    torch.testing.assert_close(mask, torch.sqrt(s**2 / (s**2 + n**2)))


def test_irm_special_values():
    s = torch.tensor([0.0, 1.0, 0.0, 1.0, 3.0, 1e-20])
    n = torch.tensor([0.0, 0.0, 1.0, 1.0, 4.0, 0.0])
    mask = ideal_ratio_mask(s, n)
    expected = torch.tensor([0.0, 1.0, 0.0, 1 / math.sqrt(2), 0.6, 0.0])
    torch.testing.assert_close(mask, expected)
    assert torch.all(torch.isfinite(mask))


def test_irm_is_zero_where_both_are_silent():
    s = _rand_mag(4, 257, seed=5)
    n = _rand_mag(4, 257, seed=6)
    s[1], n[1] = 0.0, 0.0
    s[:, 10], n[:, 10] = 0.0, 0.0
    mask = ideal_ratio_mask(s, n)
    assert torch.all(mask[1] == 0) and torch.all(mask[:, 10] == 0)
    assert torch.all(torch.isfinite(mask))
    speech_bins = s > 0
    assert torch.all(mask[speech_bins] > 0)


def test_irm_is_scale_invariant():
    s, n = _rand_mag(5, 257, seed=7) + 0.01, _rand_mag(5, 257, seed=8) + 0.01
    torch.testing.assert_close(ideal_ratio_mask(10 * s, 10 * n), ideal_ratio_mask(s, n))


# --------------------------------------------------------------------------------------------
# dispatch and application
# --------------------------------------------------------------------------------------------


def test_ideal_mask_dispatch():
    s, n = _rand_mag(3, 257, seed=9), _rand_mag(3, 257, seed=10)
    assert torch.equal(ideal_mask("ibm", s, n), ideal_binary_mask(s, n))
    assert torch.equal(ideal_mask("ibm", s, n, lc_db=5.0), ideal_binary_mask(s, n, 5.0))
    assert torch.equal(ideal_mask("irm", s, n), ideal_ratio_mask(s, n))


@pytest.mark.parametrize("kind", ["IRM", "wiener", "", "ratio"])
def test_ideal_mask_unknown_kind(kind):
    s = _rand_mag(2, 257)
    with pytest.raises(ValueError, match="unknown mask kind"):
        ideal_mask(kind, s, s)


def test_apply_mask_scales_magnitude_and_keeps_phase():
    spec = stft(_randn(2, 3000, seed=11))
    mask = _rand_mag(*spec.shape, seed=12) * 0.9 + 0.1
    out = apply_mask(spec, mask)
    assert out.shape == spec.shape and out.is_complex()
    torch.testing.assert_close(out.abs(), spec.abs() * mask)
    nonzero = spec.abs() > 1e-4
    torch.testing.assert_close(torch.angle(out)[nonzero], torch.angle(spec)[nonzero])


@pytest.mark.parametrize("batch", [(), (1,), (2,)])
@pytest.mark.parametrize("n", [300, 16000, 16037])
def test_enhance_with_all_ones_mask_returns_noisy(batch, n):
    cfg = StftConfig()
    noisy = _randn(*batch, n, seed=n)
    mask = torch.ones(*batch, cfg.n_frames(n), cfg.n_freqs)
    out = enhance_with_mask(noisy, mask, cfg)
    assert out.shape == noisy.shape
    assert _rel_err(out, noisy) < 1e-5


@pytest.mark.parametrize("gain", [0.0, 0.5])
def test_enhance_with_constant_mask_scales(gain):
    noisy = _randn(2, 4000, seed=13)
    mask = torch.full((2, StftConfig().n_frames(4000), 257), gain)
    out = enhance_with_mask(noisy, mask)
    torch.testing.assert_close(out, gain * noisy, atol=1e-5, rtol=1e-5)


def test_enhance_with_mask_equals_manual_pipeline():
    noisy = _randn(2, 5000, seed=14)
    spec = stft(noisy)
    mask = _rand_mag(*spec.shape, seed=15)
    torch.testing.assert_close(enhance_with_mask(noisy, mask), istft(spec * mask, 5000))


def test_enhance_with_mask_other_geometry():
    cfg = StftConfig(n_fft=256, hop=64)
    noisy = _randn(3, 2000, seed=16)
    mask = torch.ones(3, cfg.n_frames(2000), cfg.n_freqs)
    assert _rel_err(enhance_with_mask(noisy, mask, cfg), noisy) < 1e-5


# --------------------------------------------------------------------------------------------
# oracle enhancement on a speech-like signal
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "input_snr", "min_gain_db"),
    [("irm", 0.0, 8.0), ("irm", -5.0, 8.0), ("irm", 5.0, 6.0), ("ibm", 0.0, 8.0)],
)
def test_oracle_mask_improves_snr(
    speech_like, white_noise, mix_at_snr, kind, input_snr, min_gain_db
):
    speech, noise = mix_at_snr(speech_like(1.0), white_noise(16000, seed=1), input_snr)
    noisy = speech + noise
    assert snr_db(speech, noisy) == pytest.approx(input_snr, abs=1e-3)

    out = oracle_enhance(torch.from_numpy(speech), torch.from_numpy(noise), kind)

    assert out.shape == (16000,)
    assert torch.all(torch.isfinite(out))
    gain = snr_db(speech, out.numpy()) - snr_db(speech, noisy)
    assert gain >= min_gain_db


def test_oracle_batch_matches_single(speech_like, white_noise):
    speech = torch.from_numpy(np.stack([speech_like(0.5, seed=0), speech_like(0.5, seed=1)]))
    noise = 0.1 * torch.from_numpy(np.stack([white_noise(8000, seed=2), white_noise(8000, 3)]))
    out = oracle_enhance(speech, noise, "irm")
    assert out.shape == speech.shape
    for b in range(2):
        torch.testing.assert_close(out[b], oracle_enhance(speech[b], noise[b], "irm"))


@pytest.mark.parametrize("kind", ["irm", "ibm"])
def test_oracle_without_noise_returns_speech(speech_like, kind):
    speech = torch.from_numpy(speech_like(0.5))
    out = oracle_enhance(speech, torch.zeros_like(speech), kind)
    assert _rel_err(out, speech) < 1e-5


def test_oracle_ibm_local_criterion_is_passed_through(speech_like, white_noise, mix_at_snr):
    speech, noise = mix_at_snr(speech_like(0.5), white_noise(8000, seed=4), 0.0)
    speech, noise = torch.from_numpy(speech), torch.from_numpy(noise)
    strict = oracle_enhance(speech, noise, "ibm", lc_db=20.0)
    loose = oracle_enhance(speech, noise, "ibm", lc_db=-20.0)
    # A stricter criterion keeps fewer bins, so less energy passes.
    assert strict.square().sum() < loose.square().sum()


def test_oracle_irm_gains_8_db_on_corpus_mixtures_at_0_db():
    """The issue's acceptance check, on real corpus mixtures (valid split, 0 dB input)."""
    from speechmask.corpus import Corpus
    from speechmask.evalsets import eval_pairs

    pairs = [p for p in eval_pairs(Corpus(), "valid", count=24) if p.input_snr_db == 0.0]
    assert len(pairs) == 6
    for kind in ("irm", "ibm"):
        gains = []
        for p in pairs:
            clean = torch.from_numpy(p.clean)[None]
            est = oracle_enhance(clean, torch.from_numpy(p.noisy)[None] - clean, kind)[0]
            gains.append(snr_db(p.clean, est.numpy()) - snr_db(p.clean, p.noisy))
        assert np.mean(gains) >= 8.0, (kind, gains)
