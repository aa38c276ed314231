"""Tests for speechmask.audio: reading, resampling, atomic writing and folder scanning."""

import os
import stat

import numpy as np
import pytest
import soundfile as sf

from speechmask.audio import (
    AUDIO_EXTENSIONS,
    MODEL_RATE,
    AudioError,
    find_audio_files,
    load_mono,
    read_audio,
    resample,
    write_audio,
)

LSB16 = 1.0 / 32768  # one 16-bit quantisation step in float [-1, 1]
RATES = [8000, 16000, 22050, 44100, 48000]


def _test_signal(channels, n, seed=0):
    """[channels, n] float32: a sine per channel plus noise, within [-0.9, 0.9]."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    sig = [
        0.6 * np.sin(2 * np.pi * (0.01 + 0.013 * c) * t) + 0.3 * rng.uniform(-1, 1, n)
        for c in range(channels)
    ]
    return np.stack(sig).astype(np.float32)


def _sine(freq, rate, n, amp=0.5):
    return (amp * np.sin(2 * np.pi * freq * np.arange(n) / rate)).astype(np.float32)


def _peak_hz(x, rate):
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return np.argmax(spec) * rate / x.size


def _assert_one_line_with_path(err, path):
    msg = str(err)
    assert "\n" not in msg and "\r" not in msg
    assert str(path) in msg
    assert err.path == str(path)
    assert msg.startswith(f"{path}: ")


def _part_files(folder):
    return [p for p in folder.rglob("*") if p.name.endswith(".part")]


# --------------------------------------------------------------------------------------------
# write -> read round trip
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ext", [".wav", ".flac"])
@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("channels", [1, 2])
def test_write_read_round_trip(tmp_path, ext, rate, channels):
    n = 800
    audio = _test_signal(channels, n, seed=rate + channels)
    to_write = audio[0] if channels == 1 else audio  # mono written as [samples]
    path = tmp_path / f"x{ext}"

    assert write_audio(path, to_write, rate) == path
    back, back_rate = read_audio(path)

    assert back_rate == rate
    assert back.shape == (channels, n)
    assert back.dtype == np.float32
    assert back.flags["C_CONTIGUOUS"]
    # 16-bit PCM: every sample within one quantisation step (tiny slack for float32 rounding).
    np.testing.assert_allclose(back, audio, rtol=0, atol=LSB16 + 1e-9)


@pytest.mark.parametrize(("ext", "fmt"), [(".wav", "WAV"), (".flac", "FLAC")])
def test_write_uses_16_bit_pcm(tmp_path, ext, fmt):
    path = write_audio(tmp_path / f"x{ext}", _sine(440, 16000, 400), 16000)
    info = sf.info(str(path))
    assert info.format == fmt
    assert info.subtype == "PCM_16"
    assert info.samplerate == 16000
    assert info.frames == 400


def test_stereo_channel_order_is_preserved(tmp_path):
    left = _sine(500, 16000, 600)
    audio = np.stack([left, np.zeros_like(left)])
    back, _ = read_audio(write_audio(tmp_path / "s.wav", audio, 16000))
    np.testing.assert_allclose(back[0], left, atol=LSB16 + 1e-9)
    assert np.all(back[1] == 0)


@pytest.mark.parametrize("ext", [".WAV", ".Flac"])
def test_write_extension_is_case_insensitive(tmp_path, ext):
    path = write_audio(tmp_path / f"x{ext}", _sine(440, 16000, 300), 16000)
    back, rate = read_audio(path)
    assert back.shape == (1, 300) and rate == 16000


def test_write_clips_to_unit_range(tmp_path):
    audio = np.array([1.5, -2.0, 0.25, 1.0, -1.0], dtype=np.float32)
    back, _ = read_audio(write_audio(tmp_path / "c.wav", audio, 16000))
    np.testing.assert_allclose(back[0], np.clip(audio, -1, 1), atol=LSB16 + 1e-9)
    assert np.all(np.abs(back) <= 1.0)


# --------------------------------------------------------------------------------------------
# reading other formats and bit depths
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "subtype", "ext", "atol"),
    [
        ("WAV", "PCM_U8", ".wav", 1 / 128),
        ("WAV", "PCM_16", ".wav", LSB16),
        ("WAV", "PCM_24", ".wav", 2.0**-23),
        ("WAV", "PCM_32", ".wav", 2.0**-31),
        ("WAV", "FLOAT", ".wav", 0.0),
        ("WAV", "DOUBLE", ".wav", 1e-7),
        ("FLAC", "PCM_24", ".flac", 2.0**-23),
        ("AIFF", "PCM_16", ".aiff", LSB16),
    ],
)
@pytest.mark.parametrize("channels", [1, 2])
def test_read_bit_depths(tmp_path, fmt, subtype, ext, atol, channels):
    audio = _test_signal(channels, 500, seed=3)
    path = tmp_path / f"x{ext}"
    sf.write(str(path), audio.T, 22050, format=fmt, subtype=subtype)

    back, rate = read_audio(path)

    assert rate == 22050
    assert back.shape == (channels, 500)
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, audio, rtol=0, atol=atol + 1e-9)


@pytest.mark.parametrize("channels", [1, 2])
def test_read_ogg_vorbis(tmp_path, channels):
    rate, n = 16000, 8000
    audio = np.stack([_sine(440 * (c + 1), rate, n) for c in range(channels)])
    path = tmp_path / "x.ogg"
    sf.write(str(path), audio.T, rate, format="OGG", subtype="VORBIS")

    back, back_rate = read_audio(path)

    assert back_rate == rate
    assert back.shape == (channels, n)
    assert back.dtype == np.float32
    for c in range(channels):
        # Lossy, but a pure tone survives: same pitch, > 20 dB SNR.
        assert _peak_hz(back[c], rate) == pytest.approx(440 * (c + 1), abs=2)
        err = np.sum((back[c] - audio[c]) ** 2) / np.sum(audio[c] ** 2)
        assert 10 * np.log10(err) < -20


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------


def _missing(tmp_path):
    return tmp_path / "nope.wav"


def _folder(tmp_path):
    path = tmp_path / "folder.wav"
    path.mkdir()
    return path


def _empty(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    return path


def _random_bytes(tmp_path):
    path = tmp_path / "random.wav"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8).tobytes())
    return path


def _truncated_header(tmp_path):
    good = tmp_path / "good.wav"
    sf.write(str(good), _sine(440, 16000, 100), 16000, subtype="PCM_16")
    path = tmp_path / "truncated.wav"
    path.write_bytes(good.read_bytes()[:20])  # cut inside the 'fmt ' chunk
    return path


def _text_as_flac(tmp_path):
    path = tmp_path / "notes.flac"
    path.write_text("this is not audio\n" * 10)
    return path


def _nan_samples(tmp_path):
    audio = _sine(440, 16000, 100)
    audio[37] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(str(path), audio, 16000, subtype="FLOAT")
    return path


def _inf_samples(tmp_path):
    audio = np.stack([_sine(440, 16000, 100), _sine(440, 16000, 100)])
    audio[1, 5] = -np.inf
    path = tmp_path / "inf.wav"
    sf.write(str(path), audio.T, 16000, subtype="FLOAT")
    return path


def _zero_samples(tmp_path):
    path = tmp_path / "zero.wav"
    sf.write(str(path), np.zeros((0, 1), np.float32), 16000, subtype="PCM_16")
    assert path.stat().st_size > 0  # a valid header, just no samples
    return path


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (_missing, "no such file"),
        (_folder, "folder"),
        (_empty, "empty"),
        (_random_bytes, "cannot decode"),
        (_truncated_header, "cannot decode"),
        (_text_as_flac, "cannot decode"),
        (_nan_samples, "NaN"),
        (_inf_samples, "infinite"),
        (_zero_samples, "0 samples"),
    ],
    ids=lambda v: getattr(v, "__name__", v).strip("_"),
)
def test_read_bad_input_raises_audio_error(tmp_path, make, reason):
    path = make(tmp_path)
    with pytest.raises(AudioError) as info:
        read_audio(path)
    _assert_one_line_with_path(info.value, path)
    assert reason in info.value.reason
    # load_mono goes through read_audio and must fail the same way.
    with pytest.raises(AudioError):
        load_mono(path)


def test_read_accepts_str_path(tmp_path):
    path = write_audio(tmp_path / "x.wav", _sine(440, 16000, 100), 16000)
    back, rate = read_audio(str(path))
    assert back.shape == (1, 100) and rate == 16000


def test_audio_error_format():
    err = AudioError("/some/file.wav", "broken")
    assert str(err) == "/some/file.wav: broken"
    assert err.path == "/some/file.wav" and err.reason == "broken"


# --------------------------------------------------------------------------------------------
# resampling
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [4410, 12345, 44100])
def test_resample_44100_to_16000_keeps_frequency_and_length(n):
    x = _sine(1000, 44100, n)
    y = resample(x, 44100, 16000)

    assert y.dtype == np.float32
    assert y.shape == (round(n * 16000 / 44100),)
    assert _peak_hz(y, 16000) == pytest.approx(1000, abs=16000 / y.size)
    # The amplitude is preserved (compare RMS away from the filter's edge transients).
    core = y[y.size // 10 : -y.size // 10]
    assert np.sqrt(np.mean(core**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


@pytest.mark.parametrize(
    ("rate_in", "rate_out"),
    [(44100, 16000), (48000, 16000), (22050, 16000), (8000, 16000), (16000, 44100)],
)
@pytest.mark.parametrize("n", [1, 7, 1000, 4801])
def test_resample_length(rate_in, rate_out, n):
    x = np.random.default_rng(n).uniform(-0.5, 0.5, n).astype(np.float32)
    assert resample(x, rate_in, rate_out).shape == (round(n * rate_out / rate_in),)


def test_resample_removes_content_above_new_nyquist():
    x = _sine(10_000, 44100, 22050)  # 10 kHz cannot exist at 16 kHz
    y = resample(x, 44100, 16000)[500:-500]  # skip the transients of the abrupt start/end
    assert np.sqrt(np.mean(y**2)) < 1e-3 * np.sqrt(np.mean(x**2))


@pytest.mark.parametrize("lead_shape", [(2,), (2, 3)])
def test_resample_multichannel_matches_per_channel(lead_shape):
    rng = np.random.default_rng(1)
    x = rng.uniform(-0.5, 0.5, (*lead_shape, 4410)).astype(np.float32)
    y = resample(x, 44100, 16000)
    assert y.shape == (*lead_shape, 1600)
    for idx in np.ndindex(*lead_shape):
        np.testing.assert_allclose(y[idx], resample(x[idx], 44100, 16000), atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(100,), (2, 100)])
def test_resample_identity_when_rates_equal(dtype, shape):
    x = np.random.default_rng(0).uniform(-1, 1, shape).astype(dtype)
    y = resample(x, 16000, 16000)
    assert y.dtype == np.float32
    assert y.shape == shape
    np.testing.assert_array_equal(y, x.astype(np.float32))


@pytest.mark.parametrize(("rate_in", "rate_out"), [(0, 16000), (16000, 0), (-8000, 16000)])
def test_resample_rejects_non_positive_rates(rate_in, rate_out):
    with pytest.raises(ValueError, match="positive"):
        resample(np.zeros(100, np.float32), rate_in, rate_out)


def test_load_mono_averages_channels_and_resamples(tmp_path):
    left = _sine(1000, 44100, 44100, amp=0.6)
    right = -0.5 * left  # mean = 0.25 * left = amplitude 0.15
    path = tmp_path / "st.wav"
    sf.write(str(path), np.stack([left, right]).T, 44100, subtype="FLOAT")

    y = load_mono(path)

    assert y.shape == (MODEL_RATE,)
    assert y.dtype == np.float32
    assert _peak_hz(y, MODEL_RATE) == pytest.approx(1000, abs=1)
    core = y[1000:-1000]
    assert np.sqrt(np.mean(core**2)) == pytest.approx(0.15 / np.sqrt(2), rel=0.01)


def test_load_mono_at_file_rate_is_the_channel_mean(tmp_path):
    audio = _test_signal(2, 300)
    path = tmp_path / "st.wav"
    sf.write(str(path), audio.T, 8000, subtype="FLOAT")
    np.testing.assert_allclose(load_mono(path, rate=8000), audio.mean(axis=0), atol=1e-7)


# --------------------------------------------------------------------------------------------
# atomic, careful writing
# --------------------------------------------------------------------------------------------


def _need_ext(ext):
    if ext == ".m4a":
        pytest.importorskip("av", reason="writing .m4a needs PyAV")


@pytest.mark.parametrize("ext", [".wav", ".flac", ".m4a"])
def test_write_leaves_no_part_files(tmp_path, ext):
    _need_ext(ext)
    target = tmp_path / f"out{ext}"
    write_audio(target, _sine(440, 16000, 500), 16000)
    write_audio(target, _sine(880, 16000, 500), 16000)  # overwrite
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]


def test_write_overwrite_true_replaces(tmp_path):
    target = tmp_path / "out.wav"
    write_audio(target, _sine(440, 16000, 500), 16000)
    write_audio(target, _sine(880, 16000, 700), 8000)
    back, rate = read_audio(target)
    assert rate == 8000 and back.shape == (1, 700)


def test_write_overwrite_false_keeps_original(tmp_path):
    target = tmp_path / "out.wav"
    write_audio(target, _sine(440, 16000, 500), 16000)
    original = target.read_bytes()

    with pytest.raises(AudioError) as info:
        write_audio(target, _sine(880, 16000, 500), 16000, overwrite=False)

    _assert_one_line_with_path(info.value, target)
    assert target.read_bytes() == original
    assert _part_files(tmp_path) == []


def test_write_overwrite_false_on_new_file_writes(tmp_path):
    target = tmp_path / "new.flac"
    write_audio(target, _sine(440, 16000, 500), 16000, overwrite=False)
    assert read_audio(target)[0].shape == (1, 500)


@pytest.mark.parametrize("name", ["x.txt", "x", "x.wav.bak", "x.m4a.part"])
def test_write_refuses_unknown_extension(tmp_path, name):
    target = tmp_path / name
    with pytest.raises(AudioError) as info:
        write_audio(target, _sine(440, 16000, 100), 16000)
    _assert_one_line_with_path(info.value, target)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_write_refuses_non_finite(tmp_path, bad):
    audio = _sine(440, 16000, 100)
    audio[50] = bad
    target = tmp_path / "x.wav"
    with pytest.raises(AudioError) as info:
        write_audio(target, audio, 16000)
    _assert_one_line_with_path(info.value, target)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "audio", [np.zeros(0), np.zeros((2, 0)), np.zeros((1, 2, 10)), np.float32(0.5)]
)
def test_write_refuses_nothing_to_write(tmp_path, audio):
    target = tmp_path / "x.wav"
    with pytest.raises(AudioError, match="nothing to write"):
        write_audio(target, audio, 16000)
    assert list(tmp_path.iterdir()) == []


def test_write_creates_parent_folders(tmp_path):
    target = tmp_path / "a" / "b" / "x.flac"
    write_audio(target, _sine(440, 16000, 100), 16000)
    assert read_audio(target)[0].shape == (1, 100)


def test_write_failure_cleans_up_temporary_file(tmp_path):
    # The final rename fails because the target name is taken by a folder.
    target = tmp_path / "taken.wav"
    target.mkdir()
    with pytest.raises(AudioError) as info:
        write_audio(target, _sine(440, 16000, 100), 16000)
    _assert_one_line_with_path(info.value, target)
    assert target.is_dir() and list(target.iterdir()) == []
    assert _part_files(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.wav"]


def test_write_into_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        probe = folder / "probe"
        try:
            probe.touch()
        except PermissionError:
            pass
        else:
            probe.unlink()
            pytest.skip("chmod does not stop this user (root?) from writing")
        target = folder / "x.wav"
        with pytest.raises(AudioError) as info:
            write_audio(target, _sine(440, 16000, 100), 16000)
        _assert_one_line_with_path(info.value, target)
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)


@pytest.mark.parametrize("ext", [".wav", ".m4a"])
@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077], ids=oct)
def test_written_file_mode_follows_umask(tmp_path, umask, ext):
    # The temporary file comes from mkstemp (mode 0600); the output must get the usual mode.
    _need_ext(ext)
    old = os.umask(umask)
    try:
        target = write_audio(tmp_path / f"x{ext}", _sine(440, 16000, 100), 16000)
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


# --------------------------------------------------------------------------------------------
# scanning folders
# --------------------------------------------------------------------------------------------


def _touch(root, rel):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")  # names only: the scan never opens the files
    return path


def test_find_audio_files_recursive_sorted_skips_hidden(tmp_path):
    wanted = ["a.wav", "b/c.FLAC", "b/d/e.ogg", "b/d/f.mp3", "z.opus"]
    ignored = [
        "notes.txt",
        "wav",
        "b/readme.md",
        ".hidden.wav",
        "b/.also_hidden.flac",
        ".cache/g.wav",
        "b/.git/d/h.wav",
    ]
    for rel in wanted + ignored:
        _touch(tmp_path, rel)
    (tmp_path / "folder.wav").mkdir()  # a folder with an audio extension is not a file

    found = find_audio_files(tmp_path)

    assert found == sorted(tmp_path / rel for rel in wanted)
    assert found == sorted(found)


def test_find_audio_files_root_may_be_hidden(tmp_path):
    root = tmp_path / ".data"
    _touch(root, "x/a.wav")
    assert find_audio_files(str(root)) == [root / "x" / "a.wav"]


@pytest.mark.parametrize("ext", AUDIO_EXTENSIONS)
def test_find_audio_files_knows_every_extension(tmp_path, ext):
    lower = _touch(tmp_path, f"lower{ext}")
    upper = _touch(tmp_path, f"upper{ext.upper()}")
    assert find_audio_files(tmp_path) == [lower, upper]


def test_find_audio_files_empty_folder(tmp_path):
    assert find_audio_files(tmp_path) == []
