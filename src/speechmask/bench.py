"""Speed of a mask model on this machine (``speechmask bench``).

Two figures a user needs before choosing a path:

- **real-time factor** (RTF) = CPU seconds spent per second of audio, offline (whole signal) and
  streaming (10 ms chunks), for each backend (torch, onnxruntime) on one thread and on all
  cores. 0.02 means 50x faster than real time on one core; CPU time (not wall time) is what a
  server pays for, so RTF is measured with :func:`time.process_time`, which counts every thread
  of the process.
- **per-hop time** of the streaming enhancer fed one 16 ms hop at a time, mean and 99th
  percentile, which must stay far below the 16 ms budget for live use.

Torch is optional: without it only the onnxruntime rows are measured.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .audio import MODEL_RATE

log = logging.getLogger(__name__)

BACKENDS = ("torch", "onnx")
STREAM_CHUNK = 160  # samples fed per streaming call: 10 ms at 16 kHz, a typical audio callback


@dataclass(frozen=True)
class SpeedRow:
    """One real-time-factor measurement."""

    backend: str  # "torch" or "onnx"
    # "offline" (whole signal at once) or "streaming" (10 ms chunks; "streaming (int8)" where
    # ONNX runs the model's int8 one-frame graph)
    path: str
    threads: int  # intra-op threads of the backend
    rtf: float  # CPU seconds per audio second; lower is better, < 1 keeps up with real time
    wall_s: float  # wall-clock seconds for the whole signal

    @property
    def speedup(self) -> float:
        """Audio seconds per CPU second (1 / RTF): "x times faster than real time"."""
        return 1.0 / self.rtf if self.rtf > 0 else float("inf")


@dataclass(frozen=True)
class HopTiming:
    """Wall time of one streaming call that receives exactly one hop of audio."""

    backend: str  # "torch", "onnx" or "onnx (int8)" (the model's int8 one-frame graph)
    hops: int  # number of timed calls (after 10 warm-up calls)
    mean_ms: float  # mean wall time per hop, ms
    p99_ms: float  # 99th percentile, ms: what decides dropouts in a live pipeline
    max_ms: float  # worst call, ms (often a scheduler hiccup, reported for honesty)
    budget_ms: float  # the hop's duration, ms: a call must finish within it to keep up
    latency_ms: float  # algorithmic latency of the enhancer, ms


def bench_signal(seconds: float, rate: int = MODEL_RATE, seed: int = 0) -> np.ndarray:
    """A deterministic speech-like test signal: harmonic tones with a moving pitch in noise.

    The model's cost does not depend on what it hears, so any audio measures speed; this one
    needs no file, so ``speechmask bench`` runs on an installed package.

    Returns ``[samples]`` float32 in [-1, 1].
    """
    if seconds <= 0:
        raise ValueError(f"benchmark length must be > 0 s, got {seconds}")
    n = int(round(seconds * rate))
    t = np.arange(n) / rate
    rng = np.random.default_rng(seed)
    pitch = 140 + 40 * np.sin(2 * np.pi * 0.5 * t)  # 100-180 Hz, a voice's range
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 3 * t))  # ~3 syllables per second
    x = 0.1 * voiced * envelope + 0.03 * rng.standard_normal(n)
    return np.clip(x, -1, 1).astype(np.float32)


def load_bench_audio(seconds: float, path: str | os.PathLike | None = None) -> np.ndarray:
    """``seconds`` of 16 kHz audio to time: the file at ``path`` repeated to that length, or
    :func:`bench_signal` when no file is given. Returns ``[samples]`` float32."""
    if path is None:
        return bench_signal(seconds)
    from .audio import load_mono

    sample = load_mono(path)
    n = int(round(seconds * MODEL_RATE))
    return np.tile(sample, -(-n // len(sample)))[:n]


def available_backends(model: str | os.PathLike | None) -> list[str]:
    """Backends that can run ``model`` here: torch needs a .pt checkpoint and torch installed;
    onnx needs an .onnx file (the shipped model has both)."""
    path = None if model is None else Path(model)
    backends = []
    if path is None or path.suffix != ".onnx":
        try:
            import torch  # noqa: F401
        except ImportError:
            log.info("torch is not installed: measuring the onnxruntime backend only")
        else:
            backends.append("torch")
    if path is None or path.suffix == ".onnx":
        backends.append("onnx")
    return backends


@contextmanager
def _torch_threads_restored(backends: Sequence[str]) -> Iterator[None]:
    """Measurements set torch's thread count per row; put the caller's back afterwards."""
    if "torch" not in backends:
        yield
        return
    import torch

    before = torch.get_num_threads()
    try:
        yield
    finally:
        _set_torch_threads(before)


def _set_torch_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _enhancers(backend: str, model: str | os.PathLike | None, threads: int
               ) -> list[tuple[str, Callable[[np.ndarray], np.ndarray]]]:
    """``[(path, callable)]`` for ``backend`` on ``threads`` threads: "offline", then, where
    the ONNX model has its graph with int8 recurrences, "offline (int8)" (``enhance
    --precision int8``), then "streaming", named "streaming (int8)" where ONNX streams with
    the model's int8 one-frame graph, as ``speechmask stream`` does."""
    paths = []
    stream_path = "streaming"
    if backend == "torch":
        from .enhance import Enhancer
        from .streaming import StreamingEnhancer

        _set_torch_threads(threads)
        offline, stream = Enhancer.load(model), StreamingEnhancer.load(model)
        paths.append(("offline", offline))
    elif backend == "onnx":
        from .onnx_backend import OnnxEnhancer, OnnxStreamingEnhancer, load_int8_graph

        offline = OnnxEnhancer.load(model, threads=threads)
        paths.append(("offline", offline))
        int8 = load_int8_graph(offline.model, "auto", threads)  # the model's own, loaded once
        if int8 is not None:
            paths.append(("offline (int8)", OnnxEnhancer(int8)))
        stream = OnnxStreamingEnhancer.load(model, threads=threads)
        if stream.frame_model is not None:
            stream_path = f"streaming ({stream.frame_model.weights})"
    else:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")

    def run_stream(audio: np.ndarray) -> np.ndarray:
        stream.reset()
        return stream.enhance(audio, STREAM_CHUNK)

    return [(path, lambda audio, enhancer=enhancer: enhancer(audio, MODEL_RATE))
            for path, enhancer in paths] + [(stream_path, run_stream)]


def measure_rtf(audio: np.ndarray, backends: Sequence[str], threads: Sequence[int],
                model: str | os.PathLike | None = None) -> list[SpeedRow]:
    """Real-time factor of every (backend, offline/streaming, threads) combination.

    ``audio: [samples]`` at 16 kHz. Each path is warmed up on 1 s of audio before timing.
    """
    seconds = len(audio) / MODEL_RATE
    rows = []
    with _torch_threads_restored(backends):
        for backend in backends:
            for n_threads in threads:
                for path, fn in _enhancers(backend, model, n_threads):
                    fn(audio[:MODEL_RATE])  # warm-up: first-call allocations, lazy init
                    w0, c0 = time.perf_counter(), time.process_time()
                    fn(audio)
                    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
                    rows.append(SpeedRow(backend, path, n_threads, cpu / seconds, wall))
                    log.debug("%s %s, %d thread(s): RTF %.4f", backend, path, n_threads,
                              rows[-1].rtf)
    return rows


def measure_hops(audio: np.ndarray, backends: Sequence[str],
                 model: str | os.PathLike | None = None, warmup: int = 10) -> list[HopTiming]:
    """Wall time per call of the streaming enhancer fed one hop at a time, on one thread.

    ``audio: [samples]`` at 16 kHz; every whole hop after ``warmup`` calls is timed.
    """
    with _torch_threads_restored(backends):
        return [_time_hops(backend, audio, model, warmup) for backend in backends]


def _time_hops(backend: str, audio: np.ndarray, model: str | os.PathLike | None,
               warmup: int) -> HopTiming:
    """One backend's row of :func:`measure_hops`."""
    if backend == "torch":
        from .streaming import StreamingEnhancer

        _set_torch_threads(1)
        stream = StreamingEnhancer.load(model)
    else:
        from .onnx_backend import OnnxStreamingEnhancer

        stream = OnnxStreamingEnhancer.load(model, threads=1)
        if stream.frame_model is not None:
            backend = f"{backend} ({stream.frame_model.weights})"
    hop = stream.cfg.hop
    if len(audio) < (warmup + 1) * hop:
        raise ValueError(f"per-hop timing needs at least {(warmup + 1) * hop} samples")
    times = []
    for start in range(0, len(audio) - hop + 1, hop):
        t0 = time.perf_counter()
        stream.process(audio[start : start + hop])
        times.append(time.perf_counter() - t0)
    ms = np.asarray(times[warmup:]) * 1000
    return HopTiming(backend, len(ms), float(ms.mean()), float(np.percentile(ms, 99)),
                     float(ms.max()), 1000 * hop / MODEL_RATE, stream.latency_ms)


def format_report(rows: Sequence[SpeedRow], hops: Sequence[HopTiming], seconds: float) -> str:
    """Markdown tables of :func:`measure_rtf` and :func:`measure_hops` results."""
    lines = [f"audio: {seconds:g} s at 16 kHz; {os.cpu_count()} cores", "",
             "| backend | path | threads | RTF (CPU s / audio s) | x real time | wall s |",
             "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r.backend} | {r.path} | {r.threads} | {r.rtf:.4f} | "
                     f"{r.speedup:.0f} | {r.wall_s:.2f} |")
    if hops:
        lines += ["", "| streaming, one hop per call, 1 thread | hops | mean ms | p99 ms | "
                  "max ms | budget ms | latency ms |", "|---|---:|---:|---:|---:|---:|---:|"]
        for h in hops:
            lines.append(f"| {h.backend} | {h.hops} | {h.mean_ms:.2f} | {h.p99_ms:.2f} | "
                         f"{h.max_ms:.2f} | {h.budget_ms:.0f} | {h.latency_ms:.0f} |")
    return "\n".join(lines)


def report_json(rows: Sequence[SpeedRow], hops: Sequence[HopTiming], seconds: float) -> dict:
    """The same figures as a JSON-ready dict."""
    return {"audio_seconds": seconds, "cores": os.cpu_count(),
            "rtf": [asdict(r) for r in rows], "hops": [asdict(h) for h in hops]}
