"""`speechmask serve`: the HTTP API and the live WebSocket, in-process (fastapi TestClient).

Every good file comes back in its format, rate, channel count, sample format and length; every
bad one gets a 4xx in plain words; limits answer 413 / 503 + Retry-After; with a token every
route needs it; and no request leaves a file in the temporary folder.
"""

from __future__ import annotations

import io
import json
import struct
import threading
import time

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402
from starlette.websockets import WebSocketDisconnect  # noqa: E402

from speechmask import serve  # noqa: E402
from speechmask.serve import Engine, ServeConfig, create_app  # noqa: E402


@pytest.fixture(scope="module")
def engine():
    return Engine()  # the shipped model, onnxruntime


def test_files_run_what_enhance_runs(engine):
    # The shipped model's graph with int8 recurrences, as `speechmask enhance` by default.
    from speechmask.onnx_backend import OnnxEnhancer

    audio = noisy(16000, 1.0, 1)[:, 0]
    assert engine.enhancer().model.weights == "int8"
    np.testing.assert_array_equal(engine.enhancer()(audio, 16000),
                                  OnnxEnhancer.load(precision="auto")(audio, 16000))


@pytest.fixture
def spool(tmp_path):
    folder = tmp_path / "spool"
    folder.mkdir()
    return folder


@pytest.fixture
def make_client(engine, spool):
    clients = []

    def make(**settings) -> TestClient:
        client = TestClient(create_app(ServeConfig(temp_dir=str(spool), **settings), engine))
        clients.append(client.__enter__())
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def noisy(rate: int, seconds: float, channels: int, seed: int = 0) -> np.ndarray:
    """``[samples, channels]``: a tone + noise per channel."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    cols = [0.3 * np.sin(2 * np.pi * (220 + 110 * c) * t) * (np.sin(2 * np.pi * 2 * t) > 0)
            + 0.05 * rng.standard_normal(len(t)) for c in range(channels)]
    return np.stack(cols, axis=1).astype(np.float32)


def encode(audio: np.ndarray, rate: int, fmt: str, subtype: str) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, audio, rate, subtype=subtype, format=fmt)
    return buf.getvalue()


def post(client: TestClient, data: bytes, name: str = "in.wav", **fields):
    return client.post("/api/enhance", files={"file": (name, data, "application/octet-stream")},
                       data={k: str(v) for k, v in fields.items()})


def assert_clean(spool) -> None:
    assert list(spool.iterdir()) == [], "a request left files in the temporary folder"


GOOD = [  # extension, libsndfile format, subtype, rate, channels, seconds
    ("wav", "WAV", "PCM_16", 16000, 1, 1.3),
    ("flac", "FLAC", "PCM_16", 16000, 1, 0.7),
    ("flac", "FLAC", "PCM_24", 44100, 2, 1.1),
    ("wav", "WAV", "FLOAT", 48000, 2, 0.9),
    ("wav", "WAV", "PCM_16", 8000, 1, 0.5),
    ("ogg", "OGG", "VORBIS", 48000, 1, 1.0),
    ("opus", "OGG", "OPUS", 48000, 2, 0.6),
    ("mp3", "MP3", "MPEG_LAYER_III", 44100, 2, 0.8),
    ("aiff", "AIFF", "PCM_16", 22050, 1, 0.4),
]


@pytest.mark.parametrize("ext,fmt,subtype,rate,channels,seconds", GOOD)
def test_enhance_keeps_format_rate_channels_length(make_client, spool, ext, fmt, subtype, rate,
                                                   channels, seconds):
    client = make_client()
    audio = noisy(rate, seconds, channels)
    response = post(client, encode(audio, rate, fmt, subtype), f"my take.{ext}")
    assert response.status_code == 200, response.text
    out, out_rate = sf.read(io.BytesIO(response.content), dtype="float32", always_2d=True)
    info = sf.info(io.BytesIO(response.content))
    assert (out_rate, out.shape, info.format, info.subtype) == (rate, audio.shape, fmt, subtype)
    assert response.headers["x-speechmask-samples"] == str(len(audio))
    assert response.headers["content-disposition"] == (
        f'attachment; filename="my_take_enhanced.{ext}"')
    assert np.all(np.isfinite(out)) and not np.allclose(out, audio, atol=1e-3)
    assert_clean(spool)


def test_strength_zero_returns_the_input_and_format_field_converts(make_client, spool):
    client = make_client()
    audio = noisy(16000, 1.0, 1)
    data = encode(audio, 16000, "WAV", "PCM_16")
    same = post(client, data, strength=0)
    assert same.status_code == 200
    back, _ = sf.read(io.BytesIO(same.content), dtype="float32")
    original, _ = sf.read(io.BytesIO(data), dtype="float32")
    assert np.max(np.abs(back - original)) < 2e-4
    half, full = post(client, data, strength=0.5), post(client, data)
    energy = [np.sum(sf.read(io.BytesIO(r.content))[0] ** 2) for r in (same, half, full)]
    assert energy[0] > energy[1] > energy[2]
    flac = post(client, data, format="flac")
    assert flac.headers["content-type"] == "audio/flac"
    assert sf.info(io.BytesIO(flac.content)).format == "FLAC"
    assert flac.headers["content-disposition"].endswith('_enhanced.flac"')
    assert_clean(spool)


def _nan_wav() -> bytes:
    audio = noisy(16000, 0.5, 1)
    audio[100] = np.nan
    return encode(audio, 16000, "WAV", "FLOAT")


def _zero_length_wav() -> bytes:
    return encode(np.zeros((0, 1), np.float32), 16000, "WAV", "PCM_16")


BAD = {
    "empty file": (b"", "empty"),
    "corrupt header": (b"RIFF\x10\x00\x00\x00WAVEfmt " + b"\xff" * 40, "cannot decode"),
    "not audio": (b"hello, this is a text file\n" * 50, "cannot decode"),
    "NaN samples": (_nan_wav(), "NaN"),
    "zero length": (_zero_length_wav(), "0 samples"),
    "truncated flac": (encode(noisy(16000, 2.0, 1), 16000, "FLAC", "PCM_16")[:3000], ""),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_a_4xx_in_plain_words_and_leaves_nothing(make_client, spool, case):
    client = make_client()
    data, words = BAD[case]
    response = post(client, data, "../../etc/evil name.wav")
    assert 400 <= response.status_code < 500, response.text
    detail = response.json()["detail"]
    assert detail.startswith("upload.wav: ") and words in detail
    assert "\n" not in detail and "etc" not in detail and "evil" not in detail
    assert str(spool) not in detail and "speechmask-serve" not in detail
    assert_clean(spool)


def test_silence_is_fine(make_client, spool):
    client = make_client()
    response = post(client, encode(np.zeros((8000, 2), np.float32), 16000, "WAV", "PCM_16"))
    assert response.status_code == 200
    out, _ = sf.read(io.BytesIO(response.content))
    assert out.shape == (8000, 2) and np.max(np.abs(out)) == 0
    assert_clean(spool)


def test_bad_fields_and_hostile_names(make_client, spool):
    client = make_client()
    data = encode(noisy(16000, 0.3, 1), 16000, "WAV", "PCM_16")
    for fields in ({"strength": 1.5}, {"strength": "loud"}, {"format": "mp3"}):
        response = post(client, data, **fields)
        assert response.status_code == 422 and response.json()["detail"].startswith(
            "bad request: "), response.text
    assert client.post("/api/enhance").status_code == 422
    response = post(client, data, 'a"b\r\n/../../x;y.WAV')
    assert response.status_code == 200
    assert response.headers["content-disposition"] == 'attachment; filename="x_y_enhanced.wav"'
    assert serve.safe_suffix("../../etc/passwd") == "" and serve.safe_suffix("x.wav/..") == ""
    assert serve.safe_suffix("C:\\dir\\take.FLAC") == ".flac"
    assert serve.safe_stem("....") == "audio"
    assert_clean(spool)


def test_default_temp_folder_keeps_nothing(engine):
    """With the system's temporary folder: large (spooled) and bad uploads leave nothing."""
    import os
    import tempfile

    def ours() -> set[str]:
        return {n for n in os.listdir(tempfile.gettempdir()) if n.startswith("speechmask-serve-")}

    before = ours()
    with TestClient(create_app(ServeConfig(), engine)) as client:
        big = encode(noisy(48000, 12.0, 2), 48000, "WAV", "PCM_16")  # 2.3 MB: spooled to disk
        assert post(client, big).status_code == 200
        assert post(client, b"not audio at all").status_code == 400
    assert ours() == before


def test_upload_size_cap_is_413(make_client, spool):
    client = make_client(max_upload_mb=0.05)  # 50 kB
    big = encode(noisy(16000, 3.0, 1), 16000, "WAV", "PCM_16")  # 96 kB
    response = post(client, big)
    assert response.status_code == 413 and "too large" in response.json()["detail"]
    # Without Content-Length (chunked): cut off as the bytes arrive.
    chunks = iter([b"--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\""
                   b"\r\n\r\n", *[big[i:i + 8192] for i in range(0, len(big), 8192)],
                   b"\r\n--x--\r\n"])
    response = client.post("/api/enhance", content=chunks,
                           headers={"content-type": "multipart/form-data; boundary=x"})
    assert response.status_code == 413
    small = encode(noisy(16000, 0.5, 1), 16000, "WAV", "PCM_16")
    assert post(client, small).status_code == 200
    assert_clean(spool)


def test_full_queue_is_503_with_retry_after(make_client, spool, monkeypatch):
    client = make_client(workers=1, queue_size=1, retry_after_s=7)
    release = threading.Event()
    real = serve.enhance_upload

    def slow(*args, **kwargs):
        release.wait(10)
        return real(*args, **kwargs)

    monkeypatch.setattr(serve, "enhance_upload", slow)
    data = encode(noisy(16000, 0.5, 1), 16000, "WAV", "PCM_16")
    results = []
    threads = [threading.Thread(target=lambda: results.append(post(client, data)))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    jobs = client.app.state.jobs
    deadline = time.monotonic() + 10
    while (jobs["admitted"] < 2 or jobs["running"] < 1) and time.monotonic() < deadline:
        time.sleep(0.01)
    health = client.get("/api/health").json()
    assert (health["jobs_admitted"], health["jobs_running"], health["queue_capacity"]) == (2, 1, 2)
    refused = post(client, data)
    assert refused.status_code == 503 and refused.headers["retry-after"] == "7"
    assert "busy" in refused.json()["detail"]
    release.set()
    for thread in threads:
        thread.join(20)
    assert [r.status_code for r in results] == [200, 200]
    assert client.get("/api/health").json()["jobs_admitted"] == 0
    assert_clean(spool)


def test_time_limit_is_503_and_cleans_up(make_client, spool):
    client = make_client(time_limit_s=1e-6)
    response = post(client, encode(noisy(16000, 2.0, 1), 16000, "WAV", "PCM_16"))
    assert response.status_code == 503 and "limit" in response.json()["detail"]
    assert "retry-after" not in response.headers  # the same file would take as long again
    assert_clean(spool)


def test_unexpected_failure_is_a_500_in_plain_words(make_client, spool, monkeypatch):
    client = make_client()

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(serve, "enhance_upload", broken)
    response = post(client, encode(noisy(16000, 0.5, 1), 16000, "WAV", "PCM_16"))
    assert response.status_code == 500 and "server's log" in response.json()["detail"]
    assert_clean(spool)


def test_model_and_health(make_client):
    client = make_client()
    info = client.get("/api/model").json()
    assert info["backend"] == "onnx" and info["cell"] == "gru" and info["latency_ms"] == 48
    assert "GRU 2x384" in info["architecture"]
    if "parameters" in info:  # torch installed: the checkpoint's figures, as `speechmask info`
        from speechmask.checkpoint import load_model

        assert info["parameters"] == load_model()[0].parameter_count() > 0 and info["stages"]
    health = client.get("/api/health").json()
    assert health["status"] == "ok" and health["max_upload_mb"] == 100
    assert client.get("/openapi.json").json()["paths"]["/api/enhance"]["post"]
    assert client.get("/docs").status_code == 200


def test_token_guards_every_route_including_the_websocket(make_client, spool):
    client = make_client(token="s3cret")
    data = encode(noisy(16000, 0.3, 1), 16000, "WAV", "PCM_16")
    routes = ["/", "/static/index.html", "/api/health", "/api/model", "/docs", "/openapi.json"]
    for route in routes:
        refused = client.get(route)
        assert refused.status_code == 401 and "token" in refused.json()["detail"], route
        assert client.get(route, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get(route, headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert post(client, data).status_code == 401
    assert client.post("/api/enhance", files={"file": ("a.wav", data)},
                       headers={"Authorization": "Bearer s3cret"}).status_code == 200
    with pytest.raises(WebSocketDisconnect) as refused:
        with client.websocket_connect("/api/live?rate=16000") as ws:
            ws.receive_json()
    assert refused.value.code == 1008
    with client.websocket_connect("/api/live?rate=16000&token=s3cret") as ws:
        assert ws.receive_json()["type"] == "ready"
    # ?token= sets a same-site cookie, so the page's own requests work without it.
    page = client.get("/?token=s3cret")
    assert page.status_code == 200 and "HttpOnly" in page.headers["set-cookie"]
    assert client.get("/api/health").status_code == 200  # the client kept the cookie
    client.cookies.clear()
    assert client.get("/api/health").status_code == 401
    assert_clean(spool)


def _stream(ws, audio: np.ndarray, chunks: list[int], ready: bool = False) -> np.ndarray:
    """Send ``audio`` in ``chunks``, then end; the enhanced samples (``ready``: the ready
    message was already read)."""
    if not ready:
        assert ws.receive_json()["type"] == "ready"
    out, start = [], 0
    for seq, size in enumerate(chunks):
        piece = audio[start:start + size]
        start += size
        ws.send_bytes(struct.pack("<I", seq) + piece.astype("<f4").tobytes())
        reply = ws.receive_bytes()
        assert struct.unpack_from("<I", reply)[0] == seq
        out.append(np.frombuffer(reply, "<f4", offset=4))
    ws.send_json({"type": "end"})
    reply = ws.receive_bytes()
    assert struct.unpack_from("<I", reply)[0] == serve.LIVE_FLUSH_SEQ
    out.append(np.frombuffer(reply, "<f4", offset=4))
    done = ws.receive_json()
    assert done["type"] == "done"
    return np.concatenate(out)


@pytest.mark.parametrize("rate", [16000, 48000])
def test_websocket_returns_as_many_samples_as_sent(make_client, engine, rate):
    client = make_client()
    audio = noisy(rate, 1.5, 1)[:, 0]
    rng = np.random.default_rng(1)
    chunks = list(rng.integers(1, rate // 20, 60))
    chunks.append(len(audio) - sum(chunks))
    with client.websocket_connect(f"/api/live?rate={rate}") as ws:
        out = _stream(ws, audio, chunks)
    assert len(out) == len(audio)
    # A live session runs every frame with the shipped int8 graph, however the chunks fall.
    offline = engine.pipeline(rate).push(audio, last=True)
    np.testing.assert_allclose(out, offline, atol=1e-5)
    deadline = time.monotonic() + 5  # the session ends on the server just after its reply
    while client.get("/api/health").json()["live_sessions"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert client.get("/api/health").json()["live_sessions"] == 0


def test_websocket_strength_busy_and_bad_requests(make_client):
    client = make_client(max_live_sessions=1)
    audio = noisy(16000, 1.0, 1)[:, 0]
    with client.websocket_connect("/api/live?rate=16000&strength=0.3") as ws:
        assert ws.receive_json()["type"] == "ready"  # sent once the session counts
        with pytest.raises(WebSocketDisconnect) as busy:
            with client.websocket_connect("/api/live?rate=16000") as second:
                second.receive_json()
        assert busy.value.code == 1013 and "busy" in busy.value.reason
        ws.send_json({"type": "strength", "value": 0})
        out = _stream(ws, audio, [4000] * 4, ready=True)
    np.testing.assert_allclose(out, audio, atol=1e-5)  # strength 0: the input
    for query in ("rate=12", "rate=abc", "rate=16000&strength=2"):
        with pytest.raises(WebSocketDisconnect) as bad:
            with client.websocket_connect(f"/api/live?{query}") as ws:
                ws.receive_json()
        assert bad.value.code == 1003
    with pytest.raises(WebSocketDisconnect) as foreign:
        with client.websocket_connect("/api/live?rate=16000",
                                      headers={"origin": "http://evil.example"}) as ws:
            ws.receive_json()
    assert foreign.value.code == 1008
    with client.websocket_connect("/api/live?rate=16000",
                                  headers={"origin": "http://testserver"}) as ws:
        ws.receive_json()
        ws.send_bytes(b"\x00\x01")
        with pytest.raises(WebSocketDisconnect) as bad:
            ws.receive_bytes()
        assert bad.value.code == 1003 and "sequence number" in bad.value.reason


def test_cli_serve_parses_and_warns(monkeypatch, capsys, caplog):
    from speechmask.cli import main

    seen = {}
    monkeypatch.setattr(serve, "run", lambda config: seen.setdefault("config", config))
    assert main(["serve", "--port", "8123", "--workers", "2", "--max-upload-mb", "5"]) == 0
    config = seen["config"]
    assert (config.host, config.port, config.workers, config.max_upload_mb, config.token) == (
        "127.0.0.1", 8123, 2, 5.0, None)
    assert "http://127.0.0.1:8123/" in capsys.readouterr().out
    assert main(["serve", "--port", "70000"]) == 1
    assert "--port must be 0..65535" in capsys.readouterr().err
    monkeypatch.setenv("SPEECHMASK_TOKEN", "tok")
    seen.clear()
    assert main(["serve"]) == 0 and seen["config"].token == "tok"
    assert "?token=" in capsys.readouterr().out


def test_run_warns_when_bound_elsewhere_without_a_token(monkeypatch, caplog):
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: None)
    monkeypatch.setattr(serve, "create_app", lambda config: None)
    with caplog.at_level("WARNING"):
        serve.run(ServeConfig(host="0.0.0.0"))
    assert "without --token" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        serve.run(ServeConfig(host="0.0.0.0", token="x"))
        serve.run(ServeConfig())
    assert "without --token" not in caplog.text


@pytest.mark.parametrize("kind", ["pt", "onnx"])
def test_other_models_both_backends(tiny_model_files, spool, kind):
    pytest.importorskip("torch")
    pt, onnx = tiny_model_files()
    model = str(pt if kind == "pt" else onnx)
    engine = Engine(model)
    assert engine.backend == ("torch" if kind == "pt" else "onnx")
    with TestClient(create_app(ServeConfig(model=model, temp_dir=str(spool)), engine)) as client:
        info = client.get("/api/model").json()
        assert info["model"] == model and info["hidden"] == 16
        assert ("parameters" in info) == (kind == "pt")
        audio = noisy(44100, 0.8, 2)
        response = post(client, encode(audio, 44100, "WAV", "PCM_16"))
        out, rate = sf.read(io.BytesIO(response.content), dtype="float32")
        assert (rate, out.shape) == (44100, audio.shape)
        with client.websocket_connect("/api/live?rate=44100") as ws:
            assert len(_stream(ws, audio[:, 0], [3000] * 11 + [len(audio) - 33000])) == len(audio)
    assert_clean(spool)


def test_bad_model_and_settings_are_one_line_errors(tmp_path):
    with pytest.raises(serve.ServeError, match="model file not found"):
        Engine(str(tmp_path / "missing.onnx"))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a readable ONNX model"):
        Engine(str(bad))
    for settings in ({"workers": 0}, {"max_upload_mb": 0}, {"token": " "}, {"port": -1}):
        with pytest.raises(serve.ServeError):
            ServeConfig(**settings)


def test_cli_serves_for_real(tmp_path):
    """`speechmask serve` in a child process: prints the URL, answers, stops on SIGINT."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "SPEECHMASK_TOKEN": "t0k"}
    proc = subprocess.Popen([sys.executable, "-m", "speechmask", "serve", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}/" in line and "?token=" in line
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/health",
                                         headers={"Authorization": "Bearer t0k"})
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    assert json.loads(response.read())["status"] == "ok"
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
                time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(20)
