"""Issue 22: where `speechmask enhance` writes (items 2, 4, 7, 10) and what it says."""

import csv
import json

import numpy as np
import pytest
import soundfile as sf

from speechmask.cli import main


@pytest.fixture(scope="module")
def onnx_model(tiny_model_files):
    return tiny_model_files()[1]


def run(capsys, *argv):
    code = main([*map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def _noise(rate=16000, seconds=0.3, channels=1, seed=0, scale=0.1):
    x = scale * np.random.default_rng(seed).standard_normal((int(rate * seconds), channels))
    return x[:, 0] if channels == 1 else x


def test_same_names_from_two_folders_are_not_overwritten(capsys, caplog, tmp_path, onnx_model):
    """Item 2: a/host.wav and b/host.wav -> two outputs, and the summary counts two."""
    for i, sub in enumerate("ab"):
        (tmp_path / sub).mkdir()
        sf.write(tmp_path / sub / "host.wav", _noise(seed=i), 16000)
    out = tmp_path / "out"
    code, stdout, err = run(capsys, "-q", "enhance", tmp_path / "a" / "host.wav",
                            tmp_path / "b" / "host.wav", "-o", out, "--model", onnx_model)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["host-a.wav", "host-b.wav"]
    assert "2 file(s) enhanced" in stdout and "same output name" in err + caplog.text
    a, b = (sf.read(out / f"host-{s}.wav")[0] for s in "ab")
    assert not np.allclose(a, b)


def test_same_stem_different_formats_in_one_folder(capsys, tmp_path, onnx_model):
    """Item 2: episode.flac + episode.wav in one folder -> both kept (one is not .wav by
    default, so force the collision with --format wav)."""
    src = tmp_path / "in"
    src.mkdir()
    sf.write(src / "episode.wav", _noise(seed=1), 16000)
    sf.write(src / "episode.flac", _noise(seed=2), 16000)
    code, stdout, err = run(capsys, "-q", "enhance", src, "-o", tmp_path / "out", "--model",
                            onnx_model, "--format", "wav")
    assert code == 0, err
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["episode-flac.wav", "episode-wav.wav"] and "2 file(s) enhanced" in stdout


@pytest.mark.parametrize("name", ["x.flac", "x.ogg", "x.mp3", "x.wav", "x.aiff", "x.m4a"])
def test_output_with_audio_extension_is_a_file(capsys, tmp_path, onnx_model, name):
    """Item 7: -o x.ogg / x.mp3 writes that file in that format, not a folder."""
    src = tmp_path / "in.wav"
    sf.write(src, _noise(), 16000)
    code, _, err = run(capsys, "-q", "enhance", src, "-o", tmp_path / name, "--model",
                       onnx_model)
    assert code == 0, err
    assert (tmp_path / name).is_file()
    if name.endswith(".m4a"):
        from speechmask.media import MediaReader

        with MediaReader(tmp_path / name) as reader:
            assert reader.samplerate == 16000 and abs(len(reader.read(10**6)) - 4800) <= 2048
        return
    info = sf.info(tmp_path / name)
    assert info.samplerate == 16000 and abs(info.frames - 4800) <= 1152  # mp3 may pad


def test_several_inputs_to_one_file_is_one_line_error(capsys, tmp_path, onnx_model):
    """Item 7: several inputs with -o x.wav: an error, and no folder called x.wav."""
    for n in "ab":
        sf.write(tmp_path / f"{n}.wav", _noise(), 16000)
    code, _, err = run(capsys, "-q", "enhance", tmp_path / "a.wav", tmp_path / "b.wav", "-o",
                       tmp_path / "x.wav", "--model", onnx_model)
    lines = err.strip().splitlines()
    assert code != 0 and len(lines) == 1 and "x.wav" in lines[0] and "folder" in lines[0]
    assert not (tmp_path / "x.wav").exists()


@pytest.mark.parametrize("subtype", ["PCM_24", "FLOAT", "PCM_16"])
@pytest.mark.parametrize("ext", [".wav", ".flac"])
def test_bit_depth_is_kept(capsys, tmp_path, onnx_model, subtype, ext):
    """Item 4: 24-bit and float files come back at their subtype (float FLAC does not exist)."""
    if ext == ".flac" and subtype == "FLOAT":
        pytest.skip("FLAC has no float subtype")
    src = tmp_path / f"in{ext}"
    sf.write(src, _noise(), 16000, subtype=subtype)
    code, _, err = run(capsys, "-q", "enhance", src, "-o", tmp_path / f"out{ext}", "--model",
                       onnx_model)
    assert code == 0, err
    assert sf.info(tmp_path / f"out{ext}").subtype == subtype


def test_subtype_flag_and_float_above_full_scale(capsys, caplog, tmp_path, onnx_model):
    """Item 4: --subtype chooses; float samples above full scale stay in a float output, and
    writing them to PCM says it clips them."""
    src = tmp_path / "loud.wav"
    sf.write(src, _noise(scale=1.5), 16000, subtype="FLOAT")
    code, _, err = run(capsys, "-q", "enhance", src, "-o", tmp_path / "f.wav", "--model",
                       onnx_model, "--strength", "0")
    assert code == 0, err
    assert np.abs(sf.read(tmp_path / "f.wav")[0]).max() > 1.2 and "clipped" not in caplog.text
    code, _, err = run(capsys, "-q", "enhance", src, "-o", tmp_path / "p.wav", "--model",
                       onnx_model, "--subtype", "PCM_16")
    assert code == 0 and sf.info(tmp_path / "p.wav").subtype == "PCM_16"
    assert "clipped" in caplog.text and "FLOAT" in caplog.text
    code, _, err = run(capsys, "-q", "enhance", src, "-o", tmp_path / "x.flac", "--model",
                       onnx_model, "--subtype", "FLOAT")
    assert code != 0 and len(err.strip().splitlines()) == 1 and "FLOAT" in err


def test_output_folder_inside_input_folder(capsys, tmp_path, onnx_model):
    """Item 10: a second run does not pick up the first run's outputs."""
    sf.write(tmp_path / "a.wav", _noise(), 16000)
    for _ in range(2):
        code, stdout, err = run(capsys, "-q", "enhance", tmp_path, "-o", tmp_path / "clean",
                                "--model", onnx_model, "--overwrite")
        assert code == 0 and "1 file(s) enhanced" in stdout, err
    assert [p.name for p in (tmp_path / "clean").iterdir()] == ["a.wav"]


def test_failures_say_failed_and_quiet_after_subcommand(capsys, tmp_path, onnx_model):
    """Item 10: a failure is "failed", exit code non-zero; -q works after the subcommand."""
    (tmp_path / "bad.wav").write_bytes(b"RIFF0000WAVEjunk")
    code, _, err = run(capsys, "enhance", tmp_path / "bad.wav", "-o", tmp_path / "o.wav",
                       "--model", onnx_model, "-q")
    assert code != 0 and "failed" in err and "skipped" not in err


def test_truncated_wav_warns(capsys, caplog, tmp_path, onnx_model):
    """Item 10: a WAV cut short is processed with a warning naming it."""
    src = tmp_path / "cut.wav"
    sf.write(src, _noise(seconds=1.0), 16000)
    data = src.read_bytes()
    src.write_bytes(data[: len(data) // 2])
    code, _, err = run(capsys, "-q", "enhance", src, "-o", tmp_path / "o.wav", "--model",
                       onnx_model)
    assert code == 0 and "truncated" in caplog.text and "cut.wav" in caplog.text


@pytest.mark.parametrize("ext", [".csv", ".json"])
def test_report(capsys, tmp_path, onnx_model, ext):
    src = tmp_path / "in"
    src.mkdir()
    sf.write(src / "a.wav", _noise(rate=44100, channels=2), 44100)
    (src / "b.wav").write_bytes(b"RIFF0000WAVEjunk")
    report = tmp_path / f"r{ext}"
    code, _, _ = run(capsys, "-q", "enhance", src, "-o", tmp_path / "out", "--model",
                     onnx_model, "--report", report)
    assert code == 3
    rows = (json.loads(report.read_text()) if ext == ".json"
            else list(csv.DictReader(open(report))))
    by = {r["input"].rsplit("/", 1)[-1]: r for r in rows}
    assert by["a.wav"]["status"] == "enhanced" and str(by["a.wav"]["rate"]) == "44100"
    assert str(by["a.wav"]["channels"]) == "2" and float(by["a.wav"]["seconds_taken"]) > 0
    assert by["b.wav"]["status"] == "failed" and by["b.wav"]["error"]


def _encode_aac(path, audio, rate, container_format=None):
    """Write ``audio: [samples, channels]`` as AAC in ``path`` (m4a/mp4/mkv) with PyAV."""
    av = pytest.importorskip("av")
    with av.open(str(path), "w", format=container_format) as out:
        stream = out.add_stream("aac", rate=rate)
        stream.layout = "stereo" if audio.shape[1] == 2 else "mono"
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio.T, np.float32),
                                           format="fltp", layout=stream.layout.name)
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


@pytest.mark.parametrize("name", ["talk.m4a", "clip.mp4", "clip.mkv"])
def test_m4a_and_video_audio_tracks(capsys, caplog, tmp_path, onnx_model, name):
    """Item 6: M4A and the audio track of video files are enhanced (to WAV, said so; .m4a
    with -o x.m4a), in a folder run too: never a silent skip."""
    caplog.set_level("INFO")
    src = tmp_path / "in"
    src.mkdir()
    audio = _noise(rate=48000, seconds=0.5, channels=2)
    _encode_aac(src / name, audio, 48000)
    sf.write(src / "other.wav", _noise(), 16000)
    code, stdout, err = run(capsys, "enhance", src, "-o", tmp_path / "out", "--model",
                            onnx_model)
    assert code == 0, err
    assert "2 file(s) enhanced" in stdout and "WAV" in caplog.text
    out = tmp_path / "out" / (name.rsplit(".", 1)[0] + ".wav")
    info = sf.info(out)
    assert info.samplerate == 48000 and info.channels == 2
    assert abs(info.frames - 24000) <= 2048  # AAC priming / padding of the input
    code, _, err = run(capsys, "-q", "enhance", src / name, "-o", tmp_path / "one.m4a",
                       "--model", onnx_model)
    assert code == 0 and (tmp_path / "one.m4a").is_file(), err


def test_media_without_pyav_is_a_clear_failure(capsys, tmp_path, onnx_model, monkeypatch):
    from speechmask import media

    (tmp_path / "a.m4a").write_bytes(b"\0\0\0\x20ftypM4A " + bytes(64))
    monkeypatch.setattr(media, "have_pyav", lambda: False)
    code, _, err = run(capsys, "-q", "enhance", tmp_path / "a.m4a", "-o", tmp_path / "o.wav",
                       "--model", onnx_model)
    assert code != 0 and "a.m4a" in err and "speechmask[media]" in err
    assert len(err.strip().splitlines()) == 1


def test_atten_lim_db_bounds_the_mask(tiny_model_files):
    from speechmask.enhance import Enhancer
    from speechmask.onnx_backend import OnnxEnhancer

    pt, onnx_path = tiny_model_files()
    x = _noise(seconds=1.0).astype(np.float32)
    for enh in (Enhancer.load(pt, atten_lim_db=6), OnnxEnhancer.load(onnx_path, atten_lim_db=6)):
        assert enh.mask_16k(x)[1].min() >= 10 ** (-6 / 20) - 1e-6
        stream = enh.pipeline(48000).stream
        assert stream.floor == pytest.approx(10 ** (-6 / 20))
    with pytest.raises(ValueError, match="atten_lim_db"):
        OnnxEnhancer.load(onnx_path, atten_lim_db=-3)


def test_residual_and_atten_lim_flags(capsys, tmp_path, onnx_model):
    """--residual writes what was removed: output + residual = input."""
    src = tmp_path / "in.wav"
    x = _noise(rate=44100, seconds=0.7, channels=2)
    sf.write(src, x, 44100, subtype="FLOAT")
    code, _, err = run(capsys, "-q", "enhance", src, "-o", tmp_path / "o.wav", "--model",
                       onnx_model, "--residual", "--atten-lim-db", "10")
    assert code == 0, err
    out, _ = sf.read(tmp_path / "o.wav", dtype="float32")
    removed, _ = sf.read(tmp_path / "o.residual.wav", dtype="float32")
    assert out.shape == removed.shape == x.shape
    assert np.max(np.abs(out + removed - x)) < 1e-5
    code, _, err = run(capsys, "-q", "enhance", src, "-o", tmp_path / "p.wav", "--model",
                       onnx_model, "--atten-lim-db", "-1")
    assert code == 1 and "--atten-lim-db" in err
    # Neither an output nor a residual ever replaces an input.
    sf.write(tmp_path / "q.residual.wav", x, 44100)
    before = (tmp_path / "q.residual.wav").read_bytes()
    code, _, err = run(capsys, "-q", "enhance", src, tmp_path / "q.residual.wav", "-o",
                       tmp_path, "--model", onnx_model, "--residual", "--overwrite")
    assert code == 1 and "overwrite an input" in err
    assert (tmp_path / "q.residual.wav").read_bytes() == before


def test_loudness_matches_the_time_domain_filter():
    """The frequency-domain K-weighting gives the BS.1770 figure of scipy's lfilter."""
    signal = pytest.importorskip("scipy.signal")
    from speechmask.loudness import integrated_loudness

    rate = 48000
    x = np.random.default_rng(0).standard_normal(rate * 3) * 0.05
    x[: rate // 2] *= 0.001  # a quiet start, gated out
    g, q, fc = 4.0, 1 / np.sqrt(2), 1500.0
    a_, w0 = 10 ** (g / 40), 2 * np.pi * fc / rate
    al, c = np.sin(w0) / (2 * q), np.cos(w0)
    r = 2 * np.sqrt(a_) * al
    y = signal.lfilter([a_ * ((a_ + 1) + (a_ - 1) * c + r), -2 * a_ * ((a_ - 1) + (a_ + 1) * c),
                        a_ * ((a_ + 1) + (a_ - 1) * c - r)],
                       [(a_ + 1) - (a_ - 1) * c + r, 2 * ((a_ - 1) - (a_ + 1) * c),
                        (a_ + 1) - (a_ - 1) * c - r], x)
    w0 = 2 * np.pi * 38 / rate
    al, c = np.sin(w0), np.cos(w0)
    y = signal.lfilter([(1 + c) / 2, -(1 + c), (1 + c) / 2], [1 + al, -2 * c, 1 - al], y)
    z = np.array([np.mean(y[i : i + 19200] ** 2) for i in range(0, len(y) - 19199, 4800)])
    loud = -0.691 + 10 * np.log10(z)
    kept = z[loud > -70]
    kept = z[(loud > -70) & (loud > -0.691 + 10 * np.log10(kept.mean()) - 10)]
    assert integrated_loudness(x, rate) == pytest.approx(-0.691 + 10 * np.log10(kept.mean()),
                                                         abs=0.1)


def test_loudness_flag(capsys, tmp_path, onnx_model):
    from speechmask.loudness import integrated_loudness

    src = tmp_path / "in.wav"
    sf.write(src, _noise(rate=44100, seconds=2.0, channels=2, scale=0.01), 44100,
             subtype="PCM_24")
    code, _, err = run(capsys, "-q", "enhance", src, "-o", tmp_path / "o.wav", "--model",
                       onnx_model, "--loudness", "-20")
    assert code == 0, err
    out, rate = sf.read(tmp_path / "o.wav", always_2d=True)
    assert sf.info(tmp_path / "o.wav").subtype == "PCM_24"
    assert integrated_loudness(out.T, rate) == pytest.approx(-20, abs=0.2)
    code, _, err = run(capsys, "-q", "enhance", src, "-o", tmp_path / "p.wav", "--model",
                       onnx_model, "--loudness", "5")
    assert code == 1 and "--loudness" in err
