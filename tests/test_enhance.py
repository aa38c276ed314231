"""Enhancer: any rate / channel count in, same shape out; strength; the Python API."""

import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechmask import checkpoint as ckpt
from speechmask.enhance import Enhancer


@pytest.fixture(scope="module")
def tiny_model_path(tiny_model_files):
    return tiny_model_files()[0]


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
@pytest.mark.parametrize("shape", [(None,), (2,)])
def test_output_keeps_shape_and_length(tiny_model_path, rate, shape):
    enh = Enhancer.load(tiny_model_path)
    n = int(rate * 0.37) + 3  # not a multiple of any hop
    rng = np.random.default_rng(0)
    audio = rng.standard_normal((n,) if shape == (None,) else (2, n)).astype(np.float32) * 0.1
    out = enh(audio, rate)
    assert out.shape == audio.shape and out.dtype == np.float32
    assert np.isfinite(out).all()


@pytest.mark.parametrize("rate", [8000, 16000, 44100, 48000])
def test_strength_zero_returns_input(tiny_model_path, rate):
    enh = Enhancer.load(tiny_model_path, strength=0.0)
    audio = np.random.default_rng(1).standard_normal(rate // 2).astype(np.float32) * 0.1
    out = enh(audio, rate)
    # 16 kHz and above: exact up to STFT round trip; below: up/down resampling loses a little.
    tol = 1e-4
    assert np.max(np.abs(out - audio)) < tol


def test_strength_scales_attenuation(tiny_model_path):
    audio = np.random.default_rng(2).standard_normal(16000).astype(np.float32) * 0.1
    energies = [np.sum(Enhancer.load(tiny_model_path, strength=s)(audio, 16000) ** 2)
                for s in (0.0, 0.5, 1.0)]
    assert energies[0] > energies[1] > energies[2]


def test_channels_are_processed_independently(tiny_model_path):
    enh = Enhancer.load(tiny_model_path)
    rng = np.random.default_rng(3)
    a, b = (rng.standard_normal(8000).astype(np.float32) * 0.1 for _ in range(2))
    both = enh(np.stack([a, b]), 16000)
    assert np.allclose(both[0], enh(a, 16000), atol=1e-6)
    assert np.allclose(both[1], enh(b, 16000), atol=1e-6)


def test_high_band_is_kept_not_muffled(tiny_model_path):
    """A 44.1 kHz input with content at 12 kHz must keep (a scaled) 12 kHz band."""
    rate = 44100
    t = np.arange(rate) / rate
    audio = (0.1 * np.sin(2 * np.pi * 12000 * t) + 0.1 * np.sin(2 * np.pi * 500 * t))
    out = Enhancer.load(tiny_model_path)(audio.astype(np.float32), rate)
    spec = np.abs(np.fft.rfft(out))
    freqs = np.fft.rfftfreq(len(out), 1 / rate)
    high = spec[(freqs > 11900) & (freqs < 12100)].max()
    assert high > 0.01 * np.abs(np.fft.rfft(audio)).max()


def test_bad_arguments(tiny_model_path):
    with pytest.raises(ValueError):
        Enhancer.load(tiny_model_path, strength=1.5)
    with pytest.raises(ValueError):
        Enhancer.load(tiny_model_path)(np.zeros((1, 2, 3), np.float32), 16000)
    with pytest.raises(ValueError, match="0 samples"):
        Enhancer.load(tiny_model_path)(np.zeros(0, np.float32), 16000)
    with pytest.raises(ValueError, match="NaN"):
        Enhancer.load(tiny_model_path)(np.full(100, np.nan, np.float32), 16000)


def test_silence_in_silence_out(tiny_model_path):
    out = Enhancer.load(tiny_model_path)(np.zeros(16000, np.float32), 16000)
    assert np.all(out == 0)


README = Path(__file__).parents[1] / "README.md"
README_SNIPPETS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


@pytest.mark.parametrize("index", range(len(README_SNIPPETS)))
def test_readme_python_examples(tmp_path, monkeypatch, index):
    """Each Python example of the README, run as written from a folder holding data/."""
    if not ckpt.default_model_path().is_file():
        pytest.skip("no shipped model in this checkout")
    (tmp_path / "data").symlink_to(README.parent / "data")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(README_SNIPPETS[index], f"README.md python example {index}", "exec"), namespace)
    noisy, clean = namespace["noisy"], namespace["clean"]
    assert clean.shape == noisy.shape and clean.dtype == np.float32
    from speechmask.metrics import snr_db

    ref, _ = sf.read(README.parent / "data/samples/cafe_clean.flac", dtype="float32")
    assert snr_db(ref, clean) > snr_db(ref, noisy) + 5


def test_readme_has_python_examples():
    assert len(README_SNIPPETS) >= 2  # torch Enhancer and OnnxEnhancer


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
@pytest.mark.parametrize("seed", [0, 1])
def test_block_pipeline_equals_whole_signal(tiny_model_path, rate, seed):
    """Long files are processed in blocks carrying all state; the result must not depend on
    the blocking."""
    enh = Enhancer.load(tiny_model_path, strength=0.8)
    rng = np.random.default_rng(seed)
    audio = (rng.standard_normal(int(rate * 1.3) + 7) * 0.1).astype(np.float32)
    whole = enh(audio, rate)
    pipe = enh.pipeline(rate)
    pieces, pos = [], 0
    while pos < len(audio):
        # Log-uniform sizes: tiny blocks (before any frame is complete) as well as long ones.
        size = int(np.exp(rng.uniform(0.0, np.log(rate // 3))))
        pieces.append(pipe.push(audio[pos : pos + size], last=pos + size >= len(audio)))
        pos += size
    blocked = np.concatenate(pieces)
    assert len(blocked) == len(audio)
    assert np.max(np.abs(blocked - whole)) < 1e-4


@pytest.mark.parametrize("rate,channels", [(16000, 1), (44100, 2)])
def test_enhance_file_matches_array_api(tiny_model_path, tmp_path, rate, channels, monkeypatch):
    import soundfile as sf

    from speechmask import enhance as enhance_module
    from speechmask import pipeline as pipeline_module

    monkeypatch.setattr(pipeline_module, "BLOCK_SECONDS", 0.25)  # many blocks in a short file
    rng = np.random.default_rng(2)
    audio = (rng.standard_normal((channels, rate)) * 0.1).astype(np.float32)
    src, dst = tmp_path / "in.wav", tmp_path / "out.wav"
    sf.write(src, audio.T, rate, subtype="FLOAT")
    enh = Enhancer.load(tiny_model_path)
    enhance_module.enhance_file(enh, src, dst)
    out, out_rate = sf.read(dst, dtype="float32", always_2d=True)
    assert out_rate == rate and out.shape == (rate, channels)
    expected = enh(audio, rate)
    assert np.max(np.abs(out.T - expected)) < 2e-4  # 16-bit output


def test_failure_part_way_leaves_no_output(tiny_model_path, tmp_path, monkeypatch):
    """A NaN discovered in a late block aborts the file: nothing under the final name, no temp
    file left, and an existing output is not replaced."""
    import soundfile as sf

    from speechmask import enhance as enhance_module
    from speechmask import pipeline as pipeline_module
    from speechmask.audio import AudioError

    monkeypatch.setattr(pipeline_module, "BLOCK_SECONDS", 0.25)
    audio = np.full(48000, 0.1, np.float32)
    audio[40000] = np.nan
    src = tmp_path / "in.wav"
    sf.write(src, audio, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN"):
        enhance_module.enhance_file(Enhancer.load(tiny_model_path), src, tmp_path / "out.wav")
    assert not (tmp_path / "out.wav").exists()
    assert not list(tmp_path.glob(".*.part"))
    (tmp_path / "old.wav").write_bytes(b"previous result")
    with pytest.raises(AudioError):
        enhance_module.enhance_file(Enhancer.load(tiny_model_path), src, tmp_path / "old.wav",
                                    overwrite=True)
    assert (tmp_path / "old.wav").read_bytes() == b"previous result"
