"""Tests for speechmask.features: STFT geometry, perfect reconstruction, compression."""

import dataclasses
import math

import pytest
import torch

from speechmask.features import FeatureConfig, StftConfig, compress, istft, stft, window

LENGTHS = [1, 255, 256, 257, 511, 512, 16000, 16037]


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _rel_err(y, x):
    return ((y - x).norm() / x.norm()).item()


# --------------------------------------------------------------------------------------------
# StftConfig
# --------------------------------------------------------------------------------------------


def test_default_geometry():
    cfg = StftConfig()
    assert (cfg.sample_rate, cfg.n_fft, cfg.hop) == (16000, 512, 256)
    assert cfg.n_freqs == 257
    assert cfg.frame_ms == pytest.approx(32.0)


@pytest.mark.parametrize(
    ("n_fft", "hop", "sample_rate", "n_freqs", "frame_ms"),
    [
        (512, 256, 16000, 257, 32.0),
        (512, 128, 16000, 257, 32.0),
        (400, 160, 16000, 201, 25.0),
        (256, 64, 8000, 129, 32.0),
        (2, 1, 1000, 2, 2.0),
    ],
)
def test_config_properties(n_fft, hop, sample_rate, n_freqs, frame_ms):
    cfg = StftConfig(sample_rate=sample_rate, n_fft=n_fft, hop=hop)
    assert cfg.n_freqs == n_freqs
    assert cfg.frame_ms == pytest.approx(frame_ms)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_fft": 0},
        {"n_fft": -512},
        {"hop": 0},
        {"hop": -256},
        {"hop": 513},  # hop > n_fft
        {"n_fft": 256, "hop": 512},
        # Less than 50 % overlap: the centred frames miss the end of the signal.
        {"hop": 257},
        {"hop": 512},
        # Odd n_fft: T would be (N - 1) // hop + 1, not N // hop + 1.
        {"n_fft": 511, "hop": 255},
        {"sample_rate": 0},
        {"sample_rate": -16000},
    ],
    ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()),
)
def test_config_validation(kwargs):
    with pytest.raises(ValueError):
        StftConfig(**kwargs)


def test_config_is_frozen_and_hashable():
    cfg = StftConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.hop = 128
    assert cfg == StftConfig() and hash(cfg) == hash(StftConfig())


def test_window_is_sqrt_hann_and_satisfies_cola():
    cfg = StftConfig()
    w = window(cfg)
    assert w.shape == (cfg.n_fft,)
    torch.testing.assert_close(w.square(), torch.hann_window(cfg.n_fft, periodic=True))
    # Analysis * synthesis window = Hann, which overlap-adds to exactly 1 at 50 % overlap.
    ola = w[: cfg.hop].square() + w[cfg.hop :].square()
    torch.testing.assert_close(ola, torch.ones(cfg.hop))


# --------------------------------------------------------------------------------------------
# STFT shapes and reconstruction
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("batch", [(), (1,), (3,)])
def test_stft_shape(n, batch):
    cfg = StftConfig()
    spec = stft(_randn(*batch, n), cfg)
    assert spec.shape == (*batch, n // 256 + 1, 257)
    assert spec.shape[-2] == cfg.n_frames(n)
    assert spec.is_complex()


@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("batch", [(), (1,), (3,)])
def test_round_trip(n, batch):
    x = _randn(*batch, n, seed=n)
    y = istft(stft(x), n)
    assert y.shape == x.shape
    assert y.dtype == x.dtype
    assert _rel_err(y, x) < 1e-5


@pytest.mark.parametrize(("n_fft", "hop"), [(512, 128), (400, 160), (256, 128), (64, 32)])
@pytest.mark.parametrize("n", [1, 999, 4000])
def test_round_trip_other_geometries(n_fft, hop, n):
    cfg = StftConfig(n_fft=n_fft, hop=hop)
    x = _randn(2, n, seed=n_fft + n)
    spec = stft(x, cfg)
    assert spec.shape == (2, cfg.n_frames(n), cfg.n_freqs)
    y = istft(spec, n, cfg)
    assert y.shape == x.shape
    assert _rel_err(y, x) < 1e-5


def test_batch_items_are_independent():
    x = _randn(3, 3000)
    spec = stft(x)
    for b in range(3):
        torch.testing.assert_close(spec[b], stft(x[b]))


def test_stft_is_linear():
    x, y = _randn(2000, seed=1), _randn(2000, seed=2)
    torch.testing.assert_close(
        stft(2.0 * x - 0.5 * y), 2.0 * stft(x) - 0.5 * stft(y), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("freq", [500.0, 1000.0, 3000.0, 7000.0])
def test_sine_peaks_in_its_bin(freq):
    cfg = StftConfig()
    t = torch.arange(16000) / cfg.sample_rate
    mag = stft(torch.sin(2 * math.pi * freq * t), cfg).abs()
    bin_hz = cfg.sample_rate / cfg.n_fft  # 31.25 Hz
    peaks = mag[2:-2].argmax(dim=-1)  # interior frames (edges are zero padded)
    assert torch.all(peaks == round(freq / bin_hz))


def test_silence_gives_zero_spectrum():
    spec = stft(torch.zeros(2, 1000))
    assert torch.count_nonzero(spec) == 0
    assert torch.count_nonzero(istft(spec, 1000)) == 0


# --------------------------------------------------------------------------------------------
# compression
# --------------------------------------------------------------------------------------------


GRID = torch.cat([torch.zeros(1), torch.logspace(-8, 3, 200)]).double()


@pytest.mark.parametrize(
    "cfg",
    [
        FeatureConfig(),
        FeatureConfig("power"),
        FeatureConfig("power", power=0.5),
        FeatureConfig("power", power=1.0),
        FeatureConfig("log", eps=1e-6),
    ],
    ids=["log", "power0.3", "power0.5", "power1", "log-eps1e-6"],
)
def test_compress_monotonic_and_finite(cfg):
    out = compress(GRID, cfg)
    assert out.shape == GRID.shape
    assert torch.all(torch.isfinite(out))
    assert torch.all(out[1:] > out[:-1])  # strictly increasing, including from 0
    out32 = compress(GRID.float(), cfg)  # float32: still finite and never decreasing
    assert out32.dtype == torch.float32
    assert torch.all(torch.isfinite(out32))
    assert torch.all(out32[1:] >= out32[:-1])


@pytest.mark.parametrize("shape", [(7,), (5, 257), (2, 5, 257)])
@pytest.mark.parametrize("compression", ["log", "power"])
def test_compress_keeps_shape(shape, compression):
    mag = _randn(*shape).abs()
    out = compress(mag, FeatureConfig(compression))
    assert out.shape == mag.shape
    assert torch.all(torch.isfinite(out))


def test_compress_log_values():
    cfg = FeatureConfig()
    mag = torch.tensor([0.0, 1.0, 10.0, 1e-3], dtype=torch.float64)
    expected = torch.log(mag**2 + cfg.eps)
    torch.testing.assert_close(compress(mag, cfg), expected)
    assert compress(torch.zeros(1), cfg).item() == pytest.approx(math.log(1e-10), rel=1e-6)


def test_compress_log_turns_gain_into_shift():
    mag = _randn(4, 257).abs() + 0.1  # well above eps
    gain = 3.0
    shift = compress(gain * mag) - compress(mag)
    torch.testing.assert_close(shift, torch.full_like(shift, 2 * math.log(gain)))


@pytest.mark.parametrize("power", [0.3, 0.5, 1.0])
def test_compress_power_values(power):
    mag = torch.tensor([0.0, 0.25, 1.0, 4.0], dtype=torch.float64)
    out = compress(mag, FeatureConfig("power", power=power))
    torch.testing.assert_close(out, (mag + 1e-12) ** power)
    assert out[0] >= 0 and out[2].item() == pytest.approx(1.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"compression": "sqrt"},
        {"compression": "LOG"},
        {"compression": ""},
        {"power": 0.0},
        {"power": -0.3},
        {"power": 1.5},
        {"power": float("nan")},
    ],
    ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()),
)
def test_feature_config_validation(kwargs):
    with pytest.raises(ValueError):
        FeatureConfig(**kwargs)
