"""``speechmask serve``: a local web page and HTTP API around the enhancer.

:func:`create_app` builds the FastAPI application from a :class:`ServeConfig`; :func:`run`
serves it with uvicorn. Routes:

- ``GET /`` and ``/static/*``: the page (plain HTML/JS/CSS from ``serve_static/``; nothing is
  loaded from the internet).
- ``POST /api/enhance``: one uploaded audio file -> the enhanced file in the input's format,
  sample rate, channel count and length (``strength`` and ``format`` optional form fields).
- ``GET /api/model``: what ``speechmask info`` prints, as JSON. ``GET /api/health``.
- ``WS /api/live``: live streaming enhancement (one streaming state per connection; see
  :func:`_live` for the protocol).
- ``/docs``: FastAPI's OpenAPI page.

Limits: the upload size (413), a bounded job queue (503 + ``Retry-After``), a per-request time
limit (503), a bound on live sessions. Each upload lives in a private temporary folder that is
removed before the response is sent; the client's file name is used for nothing but its
(sanitised) extension in messages and the download name. With a token, every route (the page,
its static files, the API, the docs and the WebSocket) needs it: ``Authorization: Bearer``,
``?token=`` (which also sets a same-site cookie, so a browser opening ``/?token=...`` keeps
working), or that cookie.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import re
import shutil
import struct
import tempfile
import threading
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, urlparse

import anyio
import numpy as np
import soundfile as sf
from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.websockets import WebSocketDisconnect

from .audio import AUDIO_EXTENSIONS, AudioError, open_audio, read_blocks
from .pipeline import ChannelPipeline, PipelineFactory

log = logging.getLogger(__name__)

# Hosts that only this machine can reach: binding anywhere else without a token warns.
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")

# The cookie a valid ``?token=`` sets, so the page's own requests (static files, fetch, the
# WebSocket) carry the token without putting it in every URL.
TOKEN_COOKIE = "speechmask_token"

# libsndfile container -> (extension, MIME type) of the files /api/enhance can send back. An
# input in any other container comes back as 16-bit WAV.
OUTPUT_FORMATS = {
    "WAV": (".wav", "audio/wav"), "WAVEX": (".wav", "audio/wav"),
    "FLAC": (".flac", "audio/flac"), "OGG": (".ogg", "audio/ogg"), "MP3": (".mp3", "audio/mpeg"),
    "AIFF": (".aiff", "audio/aiff"), "AU": (".au", "audio/basic"), "W64": (".w64", "audio/wav"),
    "RF64": (".wav", "audio/wav"), "CAF": (".caf", "audio/x-caf"),
}
# Values of the ``format`` field: the container asked for, instead of the input's.
REQUESTED_FORMATS = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16")}

# Live protocol: each binary message is a little-endian uint32 sequence number then float32
# samples; the reply to the final flush carries this sequence number.
LIVE_FLUSH_SEQ = 0xFFFFFFFF


class ServeError(ValueError):
    """A bad serve setting or model. ``str(err)`` is one line."""


@dataclass(frozen=True)
class ServeConfig:
    """Settings of :func:`create_app` / :func:`run` (``speechmask serve`` flags)."""

    # Interface to bind. Localhost by default: the page is for the person at this machine, and
    # browsers only allow the microphone on localhost or https.
    host: str = "127.0.0.1"
    # TCP port (8000: the usual local development port; 0 picks a free one).
    port: int = 8000
    # Model file: an exported .onnx (onnxruntime, no torch) or a .pt checkpoint (needs torch).
    # None: the shipped model, run with onnxruntime (~3x less CPU per streaming frame).
    model: str | None = None
    # Largest accepted upload, MB (10^6 bytes). 100 MB is ~10 min of 44.1 kHz stereo WAV or
    # ~50 min of 16 kHz mono FLAC; larger files are refused with 413 before being read.
    max_upload_mb: float = 100.0
    # File jobs enhanced at once, one thread and one CPU core each (1: a laptop stays usable).
    workers: int = 1
    # File jobs waiting for a worker before new ones are refused with 503 + Retry-After (4: a
    # few files dropped together queue up; a flood does not pile up unbounded work and memory).
    queue_size: int = 4
    # Longest a file job may take, seconds, from its arrival (queue wait included) to its
    # result; checked between 1 s blocks of audio. 300 s is ~20 min of audio on a slow core.
    time_limit_s: float = 300.0
    # Seconds a refused client is told to wait (Retry-After of a 503): about one short job.
    retry_after_s: int = 5
    # Shared secret; None means no check (fine on localhost). When set, every route needs it.
    token: str | None = None
    # Live microphone sessions at once (each is one streaming state and ~4 % of a core at
    # 48 kHz with ONNX; 4 leaves room for file jobs on a 2-core machine).
    max_live_sessions: int = 4
    # Folder for the per-request temporary folders. None: the system's temporary folder.
    temp_dir: str | None = None
    # Open connections before uvicorn answers 503 itself: bounds the uploads being received at
    # once (each up to max_upload_mb, spooled to disk before it reaches the queue). 64 is far
    # above what workers + queue + live sessions use.
    max_connections: int = 64

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ServeError(f"--port must be 0..65535, got {self.port}")
        if not self.max_upload_mb > 0:
            raise ServeError(f"--max-upload-mb must be > 0, got {self.max_upload_mb}")
        if self.workers < 1:
            raise ServeError(f"--workers must be >= 1, got {self.workers}")
        if self.queue_size < 0:
            raise ServeError(f"queue_size must be >= 0, got {self.queue_size}")
        if not self.time_limit_s > 0:
            raise ServeError(f"time_limit_s must be > 0, got {self.time_limit_s}")
        if self.max_connections < 1:
            raise ServeError(f"max_connections must be >= 1, got {self.max_connections}")
        if self.max_live_sessions < 0:
            raise ServeError(f"max_live_sessions must be >= 0, got {self.max_live_sessions}")
        if self.token is not None and not self.token.strip():
            raise ServeError("--token must not be empty")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1_000_000)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"


# ---------------------------------------------------------------------------------------------
# the model


class Engine:
    """The model, loaded once and shared by all requests; cheap per-request enhancers on it.

    onnxruntime sessions and torch modules in eval mode under ``no_grad`` are safe to call from
    several threads; each request or live session has its own streaming state.
    """

    def __init__(self, model: str | None = None):
        self.path = model
        self.backend = "onnx" if model is None or model.lower().endswith(".onnx") else "torch"
        if model is not None and not Path(model).is_file():
            raise ServeError(f"{model}: model file not found")
        if self.backend == "onnx":
            from .onnx_backend import (
                OnnxMaskModel,
                default_onnx_path,
                load_frame_graph,
                load_int8_graph,
            )

            self._onnx = OnnxMaskModel(model or default_onnx_path(), threads=1)
            # Live sessions run their 16 ms hops with the int8 graph where there is one, and
            # files the graph with int8 recurrences where there is one, as `enhance` does.
            self._frame = load_frame_graph(self._onnx, "auto")
            self._files = load_int8_graph(self._onnx, "auto") or self._onnx
        else:
            try:
                import torch  # noqa: F401
            except ImportError:
                raise ServeError(f"{model}: a .pt checkpoint needs PyTorch (pip install "
                                 "'speechmask[torch]'), or export it to .onnx") from None
            import torch

            from .checkpoint import load_model

            # One thread per request: parallelism comes from --workers, not from each job.
            torch.set_num_threads(1)
            self._model, self._stft, _ = load_model(model)
        self._info: dict[str, Any] | None = None

    def enhancer(self, strength: float = 1.0) -> PipelineFactory:
        """An enhancer at ``strength`` sharing the loaded weights."""
        if self.backend == "onnx":
            from .onnx_backend import OnnxEnhancer

            return OnnxEnhancer(self._files, strength)
        from .enhance import Enhancer

        return Enhancer(self._model, self._stft, strength)

    def pipeline(self, rate: int, strength: float = 1.0) -> ChannelPipeline:
        """A fresh streaming pipeline for one live channel at ``rate`` (its own recurrent
        state; with the ONNX backend, frames run the model's int8 graph if it has one)."""
        if self.backend == "onnx":
            from .onnx_backend import OnnxEnhancer

            return OnnxEnhancer(self._onnx, strength, frame_model=self._frame).pipeline(rate)
        return self.enhancer(strength).pipeline(rate)

    def info(self) -> dict[str, Any]:
        """What ``speechmask info`` prints, as a dict (computed once)."""
        if self._info is None:
            self._info = _model_info(self)
        return self._info


def _model_info(engine: Engine) -> dict[str, Any]:
    """Size, cost, STFT and training figures of the served model, as ``speechmask info``.

    With torch installed these come from the .pt checkpoint (the served one, or the shipped
    model's next to its .onnx); without, from the ONNX metadata (no parameter count)."""
    import importlib.util

    from .onnx_backend import default_onnx_path

    pt_path: Path | None = None
    if engine.backend == "torch":
        pt_path = Path(str(engine.path))
    elif engine.path is None and importlib.util.find_spec("torch") is not None:
        pt_path = default_onnx_path().with_name("model.pt")
    info: dict[str, Any] = {"model": engine.path or str(default_onnx_path()),
                            "backend": engine.backend}
    if pt_path is not None and pt_path.is_file():
        info["figures_from"] = str(pt_path)
        from .checkpoint import load_model, training_stages
        from .model import describe

        model, stft_cfg, payload = load_model(pt_path)
        desc = describe(model, stft_cfg.sample_rate / stft_cfg.hop)
        lookahead = int(desc["lookahead"])
        info["parameters"] = desc["parameters"]
        info["macs_per_frame"] = desc["macs_per_frame"]
        info["mmacs_per_second"] = round(desc["mmacs_per_second"], 1)
        info["stages"] = training_stages(payload)
        train_config = payload.get("train_config")
        held = train_config.get("holdout_noise") if isinstance(train_config, dict) else None
        if held:
            info["holdout_noise"] = list(held)
        info["mask_exponent"] = model.cfg.mask_exponent
        calibration = payload.get("calibration")
        if isinstance(calibration, dict):
            info["calibration_set"] = calibration.get("set")
    else:
        onnx = engine._onnx
        desc, stft_cfg, lookahead = dict(onnx.model_config), onnx.stft_cfg, onnx.lookahead
    info["architecture"] = (
        f"{desc['cell'].upper()} {desc['layers']}x{desc['hidden']} + dense {desc['hidden']}->"
        f"{desc['n_freqs']} + sigmoid, {desc.get('compression', '?')} features, "
        + (f"look-ahead {lookahead} frame(s)" if lookahead else "causal"))
    for key in ("cell", "layers", "hidden", "n_freqs", "compression"):
        info[key] = desc.get(key)
    info["lookahead_frames"] = lookahead
    info["stft"] = {"sample_rate": stft_cfg.sample_rate, "n_fft": stft_cfg.n_fft,
                    "hop": stft_cfg.hop}
    info["latency_ms"] = stft_cfg.stream_latency(lookahead) * 1000 / stft_cfg.sample_rate
    return json.loads(json.dumps(info, default=str))  # plain JSON types only


# ---------------------------------------------------------------------------------------------
# file jobs


class JobTimeout(Exception):
    """A file job went past :attr:`ServeConfig.time_limit_s`."""


def safe_suffix(filename: str | None) -> str:
    """The extension of an uploaded file's name, lower case, or ``""``: ``.`` and 1-5 letters or
    digits, taken from the last path component only. Nothing else of the name is used."""
    name = re.split(r"[/\\]", filename or "")[-1]
    suffix = Path(name).suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix) else ""


def safe_stem(filename: str | None) -> str:
    """A harmless download name stem from the uploaded name: letters, digits, ``-``, ``_``, at
    most 60 characters (``audio`` when nothing is left)."""
    name = re.split(r"[/\\]", filename or "")[-1]
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(name).stem).strip("_")[:60]
    return stem or "audio"


def output_format(in_format: str, in_subtype: str, requested: str | None) -> tuple[str, str]:
    """(container, subtype) to write: the requested one, else the input's when libsndfile can
    write it, else 16-bit WAV."""
    if requested is not None:
        fmt, subtype = REQUESTED_FORMATS[requested]
        # Keep the input's sample format (e.g. 24-bit) when the requested container has it.
        if in_subtype in ("PCM_16", "PCM_24") or (fmt == "WAV" and in_subtype == "FLOAT"):
            subtype = in_subtype
        return fmt, subtype
    if in_format in OUTPUT_FORMATS and sf.check_format(in_format, in_subtype):
        return in_format, in_subtype
    return "WAV", "PCM_16"


def enhance_upload(engine: Engine, src: Path, out_dir: Path, strength: float,
                   requested: str | None, deadline: float) -> dict[str, Any]:
    """Enhance ``src`` into ``out_dir/output.EXT`` (same rate, channels, length; the input's
    container and sample format where possible), block by block. Raises :class:`AudioError`
    for unusable audio and :class:`JobTimeout` past ``deadline`` (``time.monotonic()``)."""
    t0 = time.monotonic()
    enhancer = engine.enhancer(strength)
    with open_audio(src) as handle:
        rate, channels, frames = handle.samplerate, handle.channels, handle.frames
        fmt, subtype = output_format(handle.format, handle.subtype, requested)
        ext, media_type = OUTPUT_FORMATS[fmt]
        if fmt == handle.format and src.suffix.lower() in AUDIO_EXTENSIONS:
            ext = src.suffix.lower()  # the input's own spelling: .opus, .oga, .aif, ...
        dst = out_dir / f"output{ext}"
        pipes = [enhancer.pipeline(rate) for _ in range(channels)]
        written = done = 0
        # 1 s blocks: bounded memory, and the time limit is checked often.
        blocks = read_blocks(handle, src, max(1, rate))
        try:
            out = sf.SoundFile(str(dst), "w", rate, channels, subtype, format=fmt)
        except (sf.LibsndfileError, RuntimeError, ValueError) as err:
            raise AudioError(src, f"cannot write {fmt} output ({err})") from None
        with out:
            data = next(blocks, None)
            while data is not None:
                if time.monotonic() > deadline:
                    raise JobTimeout
                following = next(blocks, None)  # one block ahead: is this the last one?
                done += data.shape[-1]
                last = following is None
                y = np.stack([p.push(ch, last) for p, ch in zip(pipes, data, strict=True)])
                out.write(np.clip(y, -1.0, 1.0).T)
                written += y.shape[-1]
                data = following
    if done < frames or written != done:
        raise AudioError(src, f"file ended after {done} of {frames} samples; is it truncated?")
    return {"path": dst, "media_type": media_type, "ext": ext, "rate": rate,
            "channels": channels, "samples": done, "seconds": done / rate,
            "format": fmt, "subtype": subtype, "processing_s": time.monotonic() - t0}


# ---------------------------------------------------------------------------------------------
# ASGI middleware: token and upload size


def _query_token(scope: dict) -> str | None:
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
    return values[0] if values else None


def _header(scope: dict, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _cookie_token(scope: dict) -> str | None:
    for part in (_header(scope, b"cookie") or "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == TOKEN_COOKIE:
            return value
    return None


async def _send_json(send: Any, status: int, detail: str,
                     headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class TokenGuard:
    """Every HTTP request and WebSocket needs the token: ``Authorization: Bearer``, ``?token=``
    or the cookie a valid ``?token=`` sets. Compared in constant time."""

    def __init__(self, app: Any, token: str):
        self.app = app
        self.token = token.encode()

    def _ok(self, candidate: str | None) -> bool:
        return candidate is not None and hmac.compare_digest(candidate.encode(), self.token)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        auth = _header(scope, b"authorization") or ""
        bearer = auth[7:].strip() if auth[:7].lower() == "bearer " else None
        query = _query_token(scope)
        if self._ok(bearer) or self._ok(query) or self._ok(_cookie_token(scope)):
            if scope["type"] == "http" and self._ok(query):
                cookie = (f"{TOKEN_COOKIE}={query}; Path=/; HttpOnly; SameSite=Strict").encode()

                async def send_with_cookie(message: dict) -> None:
                    if message["type"] == "http.response.start":
                        message = {**message, "headers": [*message.get("headers", []),
                                                          (b"set-cookie", cookie)]}
                    await send(message)

                return await self.app(scope, receive, send_with_cookie)
            return await self.app(scope, receive, send)
        log.warning("refused %s %s: missing or wrong token", scope["type"], scope.get("path"))
        if scope["type"] == "websocket":
            # Accept, then close with a reason: a browser sees the reason only after an accept.
            if (await receive())["type"] == "websocket.connect":
                await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": 1008,
                        "reason": "access token missing or wrong"})
            return None
        await _send_json(send, 401, "access token missing or wrong: this server was started with "
                         "--token; open the page as /?token=YOUR_TOKEN, or send the header "
                         "'Authorization: Bearer YOUR_TOKEN'",
                         [(b"www-authenticate", b"Bearer")])
        return None


class _TooLarge(Exception):
    pass


class UploadLimit:
    """Refuse request bodies over ``limit`` bytes with 413: at once from ``Content-Length``, or
    as soon as that many bytes have arrived (chunked uploads), whatever the route does."""

    def __init__(self, app: Any, limit: int, megabytes: float):
        self.app = app
        self.limit = limit
        self.message = (f"file too large: the limit is {megabytes:g} MB (start the server with "
                        "--max-upload-mb to change it)")

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await _send_json(send, 413, self.message)
        received = 0
        over = False
        started = False

        async def counted() -> dict:
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    over = True
                    raise _TooLarge
            return message

        async def guarded(message: dict) -> None:
            nonlocal started
            if over:  # whatever the app answers to a cut-off body, the client gets the 413
                return
            started = True
            await send(message)

        try:
            await self.app(scope, counted, guarded)
        except Exception:
            if not over:
                raise
        if over and not started:
            await _send_json(send, 413, self.message)
        return None


# ---------------------------------------------------------------------------------------------
# the app


def static_dir() -> Path:
    """The page's files (package data)."""
    return Path(str(resources.files("speechmask") / "serve_static"))


def create_app(config: ServeConfig, engine: Engine | None = None) -> FastAPI:
    """The FastAPI application for ``config`` (``engine``: an already loaded model to share)."""
    engine = engine or Engine(config.model)
    capacity = config.workers + config.queue_size
    state = {"running": 0, "admitted": 0, "live": 0, "done": 0}
    limiter = anyio.CapacityLimiter(config.workers)
    running_lock = threading.Lock()  # "running" changes in worker threads
    app = FastAPI(
        title="speechmask",
        description="Speech denoising: upload a noisy recording, get it back enhanced. The page "
        "at / does the same in a browser, plus live microphone denoising over the WebSocket "
        "/api/live.",
        version=_version(),
    )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', [])[1:]) or 'request'}: {e.get('msg')}"
            for e in exc.errors())
        return JSONResponse({"detail": f"bad request: {problems}"}, status_code=422)

    def busy(detail: str) -> HTTPException:
        return HTTPException(503, detail, headers={"Retry-After": str(config.retry_after_s)})

    @app.post(
        "/api/enhance",
        summary="Enhance one audio file",
        response_class=StreamingResponse,
        responses={
            200: {"description": "The enhanced file: the input's container (16-bit WAV for "
                  "containers that cannot be written), sample rate, channel count and length. "
                  "Headers X-Speechmask-Rate / -Channels / -Samples / -Processing-Seconds.",
                  "content": {"audio/wav": {}, "audio/flac": {}}},
            400: {"description": "Not usable audio (empty, corrupt, not audio, NaN samples)"},
            413: {"description": "Upload larger than --max-upload-mb"},
            503: {"description": "Queue full (Retry-After says when to try again) or the job "
                  "went past the time limit"},
        },
    )
    async def enhance(
        file: Annotated[UploadFile, File(
            description="audio file: WAV, FLAC, OGG, MP3, AIFF, ...")],
        strength: Annotated[float, Form(
            ge=0.0, le=1.0, description="0 = input unchanged, 1 = full mask")] = 1.0,
        format: Annotated[str | None, Form(
            pattern="^(wav|flac)$", description="output container (default: the input's)")
        ] = None,
    ) -> StreamingResponse:
        name = f"upload{safe_suffix(file.filename)}"
        if file.size is not None and file.size > config.max_upload_bytes:
            raise HTTPException(413, f"file too large: the limit is {config.max_upload_mb:g} MB")
        if state["admitted"] >= capacity:
            log.warning("refused %s: queue full (%d jobs)", name, state["admitted"])
            raise busy(f"server busy: {state['admitted']} files are being enhanced or waiting; "
                       f"try again in {config.retry_after_s} s")
        deadline = time.monotonic() + config.time_limit_s
        state["admitted"] += 1
        job_dir = Path(tempfile.mkdtemp(prefix="speechmask-serve-", dir=config.temp_dir))
        try:
            src = job_dir / f"input{safe_suffix(file.filename)}"

            def work() -> tuple[dict[str, Any], Any]:
                with running_lock:
                    state["running"] += 1
                try:
                    with open(src, "wb") as handle:
                        file.file.seek(0)
                        shutil.copyfileobj(file.file, handle, 1 << 20)
                    result = enhance_upload(engine, src, job_dir, strength, format, deadline)
                    # Open, then the folder goes: nothing of the request stays on disk while
                    # the response streams from the open (nameless) file.
                    return result, open(result["path"], "rb")
                finally:
                    with running_lock:
                        state["running"] -= 1

            try:
                result, stream = await anyio.to_thread.run_sync(work, limiter=limiter)
            except AudioError as err:
                # libsndfile's messages may name the temporary file: the client sees its name.
                reason = err.reason.replace(str(src), name).replace(str(job_dir), "")
                reason = " ".join(reason.split())
                log.info("refused %s: %s", name, reason)
                raise HTTPException(400, f"{name}: {reason}") from None
            except JobTimeout:
                # No Retry-After: the same file would take as long again.
                log.warning("%s: stopped after the %g s time limit", name, config.time_limit_s)
                raise HTTPException(503, f"{name}: enhancing took longer than the server's "
                                    f"limit of {config.time_limit_s:g} s; try a shorter "
                                    "file") from None
            except (OSError, RuntimeError, ValueError) as err:  # e.g. disk full, codec error
                log.exception("%s: failed", name)
                raise HTTPException(500, f"{name}: the server failed to enhance it "
                                    f"({type(err).__name__}); see the server's log") from None
        finally:
            shutil.rmtree(job_dir, ignore_errors=True)
            state["admitted"] -= 1
        state["done"] += 1
        log.info("enhanced %s: %.1f s, %d Hz, %d ch in %.2f s", name, result["seconds"],
                 result["rate"], result["channels"], result["processing_s"])
        size = stream.seek(0, 2)
        stream.seek(0)

        def chunks() -> Any:
            with stream:
                while data := stream.read(1 << 20):
                    yield data

        download = f"{safe_stem(file.filename)}_enhanced{result['ext']}"
        return StreamingResponse(chunks(), media_type=result["media_type"], headers={
            "Content-Length": str(size),
            "Content-Disposition": f'attachment; filename="{download}"',
            "X-Speechmask-Rate": str(result["rate"]),
            "X-Speechmask-Channels": str(result["channels"]),
            "X-Speechmask-Samples": str(result["samples"]),
            "X-Speechmask-Processing-Seconds": f"{result['processing_s']:.3f}",
        })

    @app.get("/api/model", summary="The served model: what `speechmask info` prints")
    async def model_info() -> dict[str, Any]:
        return await anyio.to_thread.run_sync(engine.info)

    @app.get("/api/health", summary="Liveness and load")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "backend": engine.backend, "jobs_running": state["running"],
                "jobs_admitted": state["admitted"], "queue_capacity": capacity,
                "jobs_done": state["done"], "live_sessions": state["live"],
                "max_live_sessions": config.max_live_sessions,
                "max_upload_mb": config.max_upload_mb}

    @app.websocket("/api/live")
    async def live(websocket: WebSocket) -> None:
        """Live enhancement; see the module docstring of :func:`_live`."""
        await _live(websocket, engine, config, state)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(static_dir() / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=static_dir()), name="static")
    app.add_middleware(UploadLimit, limit=config.max_upload_bytes + 64 * 1024,
                       megabytes=config.max_upload_mb)
    if config.token:
        app.add_middleware(TokenGuard, token=config.token)
    app.state.engine = engine
    app.state.jobs = state
    return app


async def _live(websocket: WebSocket, engine: Engine, config: ServeConfig, state: dict) -> None:
    """``WS /api/live?rate=HZ&strength=S``: live enhancement of one mono stream.

    The server sends ``{"type": "ready", "rate", "latency_ms"}`` first. Then each binary message
    from the client is a little-endian uint32 sequence number followed by float32 samples at
    ``rate``; the reply is the same sequence number followed by the enhanced samples completed
    so far (the stream is delayed by ``latency_ms``, so early replies are short). Text messages:
    ``{"type": "strength", "value": 0.5}`` changes the strength, ``{"type": "end"}`` flushes:
    the reply (sequence number 0xFFFFFFFF) holds the rest, so that the enhanced samples add up
    to exactly the samples sent, then ``{"type": "done", "samples_in", "samples_out",
    "processing_s"}`` (time spent enhancing this session) and the socket closes.
    Errors close the socket with a reason in plain words (1013: server busy).
    """
    params = websocket.query_params
    origin = websocket.headers.get("origin")
    if origin and urlparse(origin).netloc != websocket.headers.get("host"):
        # Another web site's page in the user's browser must not use this server's microphone
        # endpoint (cross-site WebSocket hijacking); the page itself is same-origin.
        await websocket.accept()
        await websocket.close(code=1008, reason="cross-origin WebSocket refused")
        return
    try:
        rate = int(params.get("rate", "16000"))
        strength = float(params.get("strength", "1"))
    except ValueError:
        rate, strength = 0, math.nan
    # Accept first: a browser sees a close reason only after the handshake.
    await websocket.accept()
    if not 8000 <= rate <= 192000 or not 0.0 <= strength <= 1.0:
        await websocket.close(code=1003, reason="rate must be 8000..192000 Hz and strength 0..1")
        return
    if state["live"] >= config.max_live_sessions:
        await websocket.close(code=1013, reason=f"server busy: {state['live']} live sessions "
                              "already running; try again later")
        return
    state["live"] += 1
    try:
        pipe = engine.pipeline(rate, strength)
        await websocket.send_json({"type": "ready", "rate": rate,
                                   "latency_ms": pipe.stream.latency_ms})
        max_samples = rate * 2  # 2 s per message at most
        received = sent = 0
        busy = 0.0  # seconds spent enhancing this session's audio
        t0 = time.monotonic()
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            data = message.get("bytes")
            if data is not None:
                if len(data) < 4 or (len(data) - 4) % 4 or (len(data) - 4) // 4 > max_samples:
                    await websocket.close(code=1003, reason="binary messages are a uint32 "
                                          "sequence number and at most 2 s of float32 samples")
                    return
                seq = struct.unpack_from("<I", data)[0]
                x = np.frombuffer(data, "<f4", offset=4)
                x = np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0)
                started = time.perf_counter()
                y = await anyio.to_thread.run_sync(pipe.push, x)
                busy += time.perf_counter() - started
                received += len(x)
                sent += len(y)
                await websocket.send_bytes(struct.pack("<I", seq)
                                           + np.asarray(y, "<f4").tobytes())
                continue
            try:
                command = json.loads(message.get("text") or "")
                kind = command.get("type")
            except (ValueError, AttributeError):
                kind = None
            if kind == "strength":
                value = float(command.get("value", 1.0))
                pipe.stream.strength = min(1.0, max(0.0, value))
            elif kind == "end":
                y = (await anyio.to_thread.run_sync(pipe.push, np.zeros(0, np.float32), True)
                     if received else np.zeros(0, np.float32))
                sent += len(y)
                await websocket.send_bytes(struct.pack("<I", LIVE_FLUSH_SEQ)
                                           + np.asarray(y, "<f4").tobytes())
                await websocket.send_json({"type": "done", "samples_in": received,
                                           "samples_out": sent, "processing_s": busy})
                await websocket.close()
                break
            else:
                await websocket.close(code=1003, reason="unknown message; send binary audio, "
                                      '{"type": "strength", "value": x} or {"type": "end"}')
                return
        log.info("live session: %.1f s at %d Hz in %.1f s", received / rate, rate,
                 time.monotonic() - t0)
    except WebSocketDisconnect:
        pass
    finally:
        state["live"] -= 1


def _version() -> str:
    from . import __version__

    return __version__


def run(config: ServeConfig) -> None:
    """Serve :func:`create_app` with uvicorn until interrupted."""
    import uvicorn

    if config.host not in LOCAL_HOSTS and not config.token:
        log.warning("serving on %s without --token: anyone who can reach this machine can use "
                    "the server; set --token SECRET (and note that browsers only allow the "
                    "microphone on localhost or https)", config.host)
    app = create_app(config)
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning",
                limit_concurrency=config.max_connections, timeout_graceful_shutdown=5)
