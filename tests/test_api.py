"""Issue 22 item 3: the Python API takes audio as soundfile gives it, in both backends."""

import warnings

import numpy as np
import pytest

from speechmask.enhance import Enhancer
from speechmask.onnx_backend import OnnxEnhancer


@pytest.fixture(scope="module", params=["torch", "onnx"])
def enh(request, tiny_model_files):
    pt, onnx_path = tiny_model_files()
    return Enhancer.load(pt) if request.param == "torch" else OnnxEnhancer.load(onnx_path)


def _stereo(rate, seconds=0.4, seed=0):
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal((int(rate * seconds), 2))).astype(np.float32)


@pytest.mark.parametrize("rate", [16000, 44100])
def test_soundfile_layout_is_samples_by_channels(enh, rate):
    """``sf.read`` gives [samples, channels]: two channels, not thousands of 2-sample ones."""
    x = _stereo(rate)
    out = enh(x, rate)
    assert out.shape == x.shape and out.dtype == np.float32
    for c in range(2):
        assert np.allclose(out[:, c], enh(x[:, c], rate), atol=1e-5)
    assert np.allclose(enh(x.T, rate), out.T, atol=1e-5)  # [channels, samples] too
    assert np.allclose(enh(x, rate, channels_first=False), out, atol=1e-6)


def test_square_array_needs_channels_first(enh):
    x = np.zeros((4, 4), np.float32)
    with pytest.raises(ValueError, match="channels_first"):
        enh(x, 16000)
    assert enh(x, 16000, channels_first=True).shape == (4, 4)


@pytest.mark.parametrize("dtype,scale,offset", [("int16", 32768, 0), ("int32", 2**31, 0),
                                                ("uint8", 128, 128)])
def test_integer_pcm_is_scaled(enh, dtype, scale, offset):
    x = np.clip(_stereo(16000)[:, 0] * 3, -0.99, 0.99)
    pcm = (np.round(x * (scale - 1)) + offset).astype(dtype)
    as_float = (pcm.astype(np.float64) - offset) / scale
    assert np.allclose(enh(pcm, 16000), enh(as_float.astype(np.float32), 16000), atol=1e-6)


@pytest.mark.parametrize("rate,error", [("16000", TypeError), (None, TypeError),
                                        (0, ValueError), (-8000, ValueError),
                                        (16000.5, TypeError), (True, TypeError)])
def test_bad_rate_is_a_clear_error(enh, rate, error):
    with pytest.raises(error, match="sample_rate"):
        enh(np.zeros(1600, np.float32), rate)


def test_whole_float_and_numpy_rates_are_accepted(enh):
    x = _stereo(16000)[:, 0]
    want = enh(x, 16000)
    assert np.allclose(enh(x, 16000.0), want) and np.allclose(enh(x, np.int64(16000)), want)


@pytest.mark.parametrize("rate", [16000, 44100, 48000])
def test_stream_any_rate_and_channels(enh, rate):
    """A stereo live stream: [n, 2] chunks in, [m, 2] out, the whole equal to the offline
    result, never flattened."""
    x = _stereo(rate, 0.6, seed=1)
    stream = enh.stream(rate, channels=2)
    rng = np.random.default_rng(0)
    pieces, pos = [], 0
    while pos < len(x):
        size = int(rng.integers(1, rate // 20))
        out = stream.process(x[pos : pos + size])
        assert out.ndim == 2 and out.shape[1] == 2
        pieces.append(out)
        pos += size
    pieces.append(stream.flush())
    got = np.concatenate(pieces)
    assert got.shape == x.shape
    assert np.max(np.abs(got - enh(x, rate))) < 1e-4
    with pytest.raises(ValueError, match="channels"):
        stream.process(np.zeros((10, 3), np.float32))


@pytest.mark.parametrize("bad, replaced", [
    (np.nan, True), (np.inf, True), (-np.inf, True),
    (3e38, False),  # finite samples whose sum overflows: left as they are, no warning
])
def test_a_stream_replaces_exactly_the_non_finite_samples(tiny_model_files, caplog, bad,
                                                          replaced):
    from speechmask.onnx_backend import OnnxMaskModel, OnnxStreamingEnhancer

    _, onnx_path = tiny_model_files()
    stream = OnnxStreamingEnhancer(OnnxMaskModel(onnx_path))
    chunk = np.zeros(160, np.float32)
    chunk[7] = chunk[8] = bad
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's overflow warnings included
        stream.process(chunk)
    assert ("replaced by 0" in caplog.text) == replaced
    pending = stream._pending[-160:]  # the chunk as the stream keeps it
    assert np.array_equal(pending[7:9], np.zeros(2) if replaced else np.full(2, bad, np.float32))


def test_nan_chunk_does_not_poison_the_stream(tiny_model_files):
    """Item 10: a NaN chunk (a glitching sound card) is replaced by silence; every later
    sample is finite without reset(), for both backends."""
    from speechmask.checkpoint import load_model
    from speechmask.onnx_backend import OnnxMaskModel, OnnxStreamingEnhancer
    from speechmask.streaming import StreamingEnhancer

    pt, onnx_path = tiny_model_files()
    model, cfg, _ = load_model(pt)
    x = (0.1 * np.random.default_rng(0).standard_normal(8000)).astype(np.float32)
    for stream in (StreamingEnhancer(model, cfg), OnnxStreamingEnhancer(OnnxMaskModel(onnx_path))):
        stream.process(x[:1000])
        stream.process(np.full(500, np.nan, np.float32))
        later = np.concatenate([stream.process(x[i : i + 700]) for i in range(1500, 8000, 700)])
        assert np.all(np.isfinite(later)) and np.abs(later[-2000:]).max() > 0
