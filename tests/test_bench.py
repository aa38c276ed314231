"""`speechmask bench`: the speed report measures real runs of both backends, on tiny budgets.

The figures themselves are machine-dependent, so the tests check structure and sanity (finite,
positive, consistent with the audio length), not speed targets.
"""

import json
import math

import numpy as np
import pytest

from speechmask.bench import (
    available_backends,
    bench_signal,
    format_report,
    measure_hops,
    measure_rtf,
)
from speechmask.cli import main


@pytest.fixture(scope="module")
def tiny_models(tiny_model_files):
    return tiny_model_files()


def test_bench_signal_is_deterministic_and_in_range():
    a, b = bench_signal(0.5), bench_signal(0.5)
    assert a.dtype == np.float32 and a.shape == (8000,)
    assert np.array_equal(a, b) and np.abs(a).max() <= 1 and a.std() > 0.01
    assert not np.array_equal(a, bench_signal(0.5, seed=1))
    with pytest.raises(ValueError, match="> 0"):
        bench_signal(0)


@pytest.mark.parametrize("suffix, expected", [(".pt", ["torch"]), (".onnx", ["onnx"])])
def test_available_backends_follow_the_model_file(tiny_models, suffix, expected):
    pt, onnx = tiny_models
    assert available_backends(pt if suffix == ".pt" else onnx) == expected
    assert available_backends(None) == ["torch", "onnx"]  # shipped model: both files


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_measure_rtf_and_hops_on_a_real_model(tiny_models, backend):
    model = tiny_models[0] if backend == "torch" else tiny_models[1]
    audio = bench_signal(1.0)
    rows = measure_rtf(audio, [backend], [1], model)
    assert [(r.backend, r.path, r.threads) for r in rows] == [
        (backend, "offline", 1), (backend, "streaming", 1)]
    for r in rows:
        assert math.isfinite(r.rtf) and r.rtf > 0 and r.wall_s > 0 and r.speedup == 1 / r.rtf
    (hop,) = measure_hops(bench_signal(0.5), [backend], model)
    # 0.5 s = 8000 samples = 31 whole hops of 256 samples, minus 10 untimed warm-up calls
    assert hop.hops == 8000 // 256 - 10
    assert 0 < hop.mean_ms <= hop.max_ms and hop.p99_ms <= hop.max_ms
    assert hop.budget_ms == 16 and hop.latency_ms == 32
    table = format_report(rows, [hop], 1.0)
    assert table.count(f"| {backend} |") == 3 and "p99 ms" in table


def test_onnx_rows_name_the_int8_graphs(tiny_models, tmp_path):
    import shutil

    from speechmask.checkpoint import load_model
    from speechmask.onnx_backend import export_onnx_frame, export_onnx_int8, frame_graph_path

    onnx_model = shutil.copy(tiny_models[1], tmp_path / "m.onnx")
    export_onnx_frame(*load_model(tiny_models[0])[:2], frame_graph_path(onnx_model))
    rows = measure_rtf(bench_signal(0.5), ["onnx"], [1], onnx_model)
    assert [r.path for r in rows] == ["offline", "streaming (int8)"]
    export_onnx_int8(onnx_model)  # and the whole graph with int8 recurrences
    rows = measure_rtf(bench_signal(0.5), ["onnx"], [1], onnx_model)
    assert [r.path for r in rows] == ["offline", "offline (int8)", "streaming (int8)"]
    (hop,) = measure_hops(bench_signal(0.5), ["onnx"], onnx_model)
    assert hop.backend == "onnx (int8)"


def test_measure_hops_needs_enough_audio(tiny_models):
    with pytest.raises(ValueError, match="at least"):
        measure_hops(bench_signal(0.1), ["onnx"], tiny_models[1])


def test_cli_bench_prints_tables_and_writes_json(capsys, tmp_path, tiny_models):
    out = tmp_path / "speed.json"
    code = main(["-q", "bench", "--model", str(tiny_models[1]), "--seconds", "1",
                 "--hop-seconds", "0.5", "--threads", "1", "--json", str(out)])
    stdout = capsys.readouterr().out
    assert code == 0 and "| onnx | offline | 1 |" in stdout and "| onnx | streaming | 1 |" in stdout
    report = json.loads(out.read_text())
    assert report["audio_seconds"] == 1.0 and len(report["rtf"]) == 2
    assert report["hops"][0]["backend"] == "onnx"


def test_cli_bench_times_a_given_file(capsys, tmp_path, tiny_models, speech_like):
    import soundfile as sf

    wav = tmp_path / "in.wav"
    sf.write(wav, speech_like(0.3), 16000)
    code = main(["-q", "bench", "--model", str(tiny_models[0]), "--input", str(wav),
                 "--seconds", "1", "--hop-seconds", "0"])
    stdout = capsys.readouterr().out
    assert code == 0 and "| torch | offline |" in stdout and "per call" not in stdout


@pytest.mark.parametrize("argv, message", [
    (["--seconds", "0"], "--seconds must be > 0"),
    (["--threads", "0"], "--threads must be >= 1"),
    (["--model", "missing.pt"], "missing.pt: model file not found"),
    (["--backend", "torch", "--model", "ONNX"], "backend torch cannot run"),
])
def test_cli_bench_bad_input_is_one_line(capsys, tiny_models, argv, message):
    argv = [str(tiny_models[1]) if a == "ONNX" else a for a in argv]
    code = main(["-q", "bench", "--hop-seconds", "0", *argv])
    err = capsys.readouterr().err
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1


def test_cli_bench_peers_outside_a_checkout_says_what_to_do(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(["-q", "bench", "--peers", "--count", "1"])
    err = capsys.readouterr().err
    assert code == 1 and "source checkout" in err and "[bench]" in err


def test_cli_bench_peers_forwards_its_arguments(capsys, monkeypatch):
    from pathlib import Path

    monkeypatch.chdir(Path(__file__).resolve().parents[1] / "tests")  # found from a subfolder
    code = main(["-q", "bench", "--peers", "--help"])
    assert code == 0  # benchmarks.peers printed its own help (to the child's stdout)
