"""`speechmask enhance/stream --backend torch|onnx|auto`, `--jobs`, and an install without torch."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from speechmask.cli import main

SAMPLE = Path(__file__).parents[1] / "data" / "samples" / "cafe_noisy.flac"
# Runs the CLI in a fresh interpreter where `import torch` fails, as in an ONNX-only install.
NO_TORCH = ("import sys; sys.modules['torch'] = None; from speechmask.cli import main; "
            "sys.exit(main(sys.argv[1:]))")


@pytest.fixture(scope="module")
def models(tiny_model_files):
    """``(tiny.pt, tiny.onnx)`` of the same LSTM."""
    return tiny_model_files("lstm", layers=2)


def run(capsys, *argv):
    code = main(["-q", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def _noise(rate, seconds, channels, seed):
    x = 0.1 * np.random.default_rng(seed).standard_normal((int(rate * seconds), channels))
    return x[:, 0] if channels == 1 else x


@pytest.mark.parametrize(("rate", "channels"), [(16000, 1), (44100, 2)])
def test_onnx_backend_matches_torch_backend(capsys, tmp_path, models, rate, channels):
    pt, onnx_path = models
    src = tmp_path / "in.wav"
    sf.write(src, _noise(rate, 0.7, channels, 0), rate, subtype="FLOAT")
    code, _, err = run(capsys, "enhance", src, "-o", tmp_path / "t.wav", "--model", pt)
    assert code == 0, err
    code, out, err = run(capsys, "enhance", src, "-o", tmp_path / "o.wav", "--model", onnx_path)
    assert code == 0 and "enhanced" in out, err  # auto picks onnx for an .onnx model
    want, _ = sf.read(tmp_path / "t.wav", dtype="float32")
    got, got_rate = sf.read(tmp_path / "o.wav", dtype="float32")
    assert got_rate == rate and got.shape == want.shape
    assert np.abs(got - want).max() <= 2 / 32768  # 16-bit output: one or two steps at most


@pytest.mark.parametrize(("backend", "which", "message"), [
    ("onnx", 0, "needs an .onnx model"),
    ("torch", 1, "--backend onnx"),
])
def test_backend_model_mismatch_is_one_line(capsys, tmp_path, models, backend, which, message):
    src = tmp_path / "in.wav"
    sf.write(src, _noise(16000, 0.3, 1, 0), 16000)
    code, _, err = run(capsys, "enhance", src, "-o", tmp_path / "o.wav", "--model",
                       models[which], "--backend", backend)
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.wav").exists()


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_jobs_process_files_in_parallel_like_one_job(capsys, tmp_path, models, backend):
    pt, onnx_path = models
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    for i, (rate, ch) in enumerate([(16000, 1), (22050, 2), (48000, 1)]):
        sf.write(src / ("sub" if i else "") / f"f{i}.wav", _noise(rate, 0.5, ch, i), rate)
    (src / "broken.wav").write_bytes(b"RIFF0000WAVEjunk")
    model = pt if backend == "torch" else onnx_path
    code, out1, _ = run(capsys, "enhance", src, "-o", tmp_path / "one", "--model", model)
    assert code == 3 and "3 file(s) enhanced" in out1
    code, out2, err = run(capsys, "enhance", src, "-o", tmp_path / "two", "--model", model,
                          "--jobs", "2")
    assert code == 3 and "3 file(s) enhanced" in out2 and "1 failed" in out2
    assert "broken.wav" in err and "Traceback" not in err
    for one in (tmp_path / "one").rglob("*.wav"):
        two = tmp_path / "two" / one.relative_to(tmp_path / "one")
        a, b = sf.read(one, dtype="float32")[0], sf.read(two, dtype="float32")[0]
        assert np.abs(a - b).max() <= 2 / 32768  # one thread per worker vs all cores
    assert not (tmp_path / "two" / "broken.wav").exists()


def test_negative_jobs_is_one_line(capsys, tmp_path, models):
    code, _, err = run(capsys, "enhance", SAMPLE, "-o", tmp_path / "o.wav", "--jobs", "-1")
    assert code == 1 and "--jobs" in err


def test_without_torch_enhance_uses_the_shipped_onnx_model(tmp_path):
    out = tmp_path / "clean.wav"
    result = subprocess.run([sys.executable, "-c", NO_TORCH, "enhance", str(SAMPLE), "-o",
                             str(out)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "enhanced" in result.stdout and out.is_file()
    assert sf.info(out).frames == sf.info(SAMPLE).frames


def test_without_torch_training_says_what_to_install(tmp_path):
    result = subprocess.run([sys.executable, "-c", NO_TORCH, "train", "--out",
                             str(tmp_path / "run")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "needs PyTorch" in result.stderr and "speechmask[torch]" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_without_torch_a_torch_checkpoint_is_one_line(tmp_path, models):
    result = subprocess.run([sys.executable, "-c", NO_TORCH, "enhance", str(SAMPLE), "-o",
                             str(tmp_path / "o.wav"), "--model", str(models[0])],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "needs PyTorch" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_without_torch_stream_through_a_pipe(models):
    pcm = (np.clip(_noise(16000, 0.5, 1, 3), -1, 1) * 32767).astype("<i2").tobytes()
    result = subprocess.run([sys.executable, "-c", NO_TORCH, "stream", "--rate", "16000",
                             "--model", str(models[1])], input=pcm, capture_output=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr.decode()
    assert len(result.stdout) == len(pcm)


def test_without_torch_the_python_api_points_to_onnx():
    code = ("import sys; sys.modules['torch'] = None\n"
            "import soundfile as sf\n"
            "from speechmask import OnnxEnhancer\n"
            f"x, r = sf.read({str(SAMPLE)!r}, dtype='float32')\n"
            "assert OnnxEnhancer.load()(x, r).shape == x.shape\n"
            "try:\n"
            "    from speechmask import Enhancer\n"
            "except ImportError as err:\n"
            "    assert 'OnnxEnhancer' in str(err)\n"
            "else:\n"
            "    raise AssertionError('Enhancer imported without torch')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a GPU-less machine")
@pytest.mark.parametrize("command", [
    ["enhance", str(SAMPLE), "-o", "{tmp}/o.wav"],
    ["evaluate", "--set", "valid", "--count", "1", "--systems", "model"],
    ["finetune", "--noise", str(SAMPLE), "--out", "{tmp}/ft", "--epochs", "1"],
    ["train", "--out", "{tmp}/run", "--epochs", "1"],
])
def test_device_cuda_without_gpu_is_one_line(capsys, tmp_path, command):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in command]
    code, _, err = run(capsys, *argv, "--device", "cuda")
    assert code == 1 and "no CUDA GPU" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.wav").exists()


def test_device_auto_runs_where_it_can(capsys, tmp_path, models):
    src = tmp_path / "in.wav"
    sf.write(src, _noise(16000, 0.3, 1, 0), 16000)
    code, _, err = run(capsys, "enhance", src, "-o", tmp_path / "o.wav", "--model", models[0],
                       "--device", "auto")
    assert code == 0, err


def test_bench_without_torch_measures_the_onnx_rows(tmp_path):
    result = subprocess.run([sys.executable, "-c", NO_TORCH, "-q", "bench", "--seconds", "1",
                             "--hop-seconds", "0.5", "--threads", "1"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "| onnx | offline | 1 |" in result.stdout
    assert "| onnx | streaming (int8) | 1 |" in result.stdout  # the shipped int8 hop graph
    assert "| torch |" not in result.stdout
