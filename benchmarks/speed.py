"""Speed of the shipped model: real-time factor (CPU seconds per second of audio) offline and
streaming, torch and ONNX backends, on one thread and on all cores, plus per-frame streaming
compute time.

    python -m benchmarks.speed [--model PATH] [--onnx PATH] [--seconds 60]

RTF = process CPU time / audio duration (lower is better; 0.02 = 50x faster than real time).
Per-frame time is the wall time of one 16 ms hop in the streaming enhancer (10 ms chunks),
mean and 99th percentile; it must stay far below the 16 ms hop for real-time use.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from speechmask.enhance import Enhancer
from speechmask.onnx_backend import OnnxEnhancer, OnnxStreamingEnhancer
from speechmask.streaming import StreamingEnhancer


def _audio(seconds: float) -> np.ndarray:
    from speechmask.audio import load_mono

    x = load_mono("data/samples/cafe_noisy.flac")
    reps = int(np.ceil(seconds * 16000 / len(x)))
    return np.tile(x, reps)[: int(seconds * 16000)]


def _cpu_time(fn) -> float:
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="torch checkpoint (default: shipped)")
    parser.add_argument("--onnx", default=None, help="ONNX model (default: shipped)")
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    audio = _audio(args.seconds)
    enh = Enhancer.load(args.model)
    stream = StreamingEnhancer.load(args.model)
    cores = os.cpu_count() or 1
    print(f"audio: {args.seconds:.0f} s at 16 kHz; torch {torch.__version__}; {cores} cores")
    print("| path | threads | RTF (CPU s / audio s) | wall s | x real time |")
    print("|---|---:|---:|---:|---:|")
    for threads in sorted({1, cores}):
        torch.set_num_threads(threads)
        enh(audio[:16000], 16000)  # warm-up
        onnx_enh = OnnxEnhancer.load(args.onnx, threads=threads)
        onnx_stream = OnnxStreamingEnhancer.load(args.onnx, threads=threads)
        onnx_enh(audio[:16000], 16000)
        for name, fn in (("torch, offline", lambda: enh(audio, 16000)),
                         ("torch, streaming 10 ms chunks", lambda: stream.enhance(audio, 160)),
                         ("onnx, offline", lambda e=onnx_enh: e(audio, 16000)),
                         ("onnx, streaming 10 ms chunks",
                          lambda s=onnx_stream: s.enhance(audio, 160))):
            w0 = time.perf_counter()
            cpu = _cpu_time(fn)
            wall = time.perf_counter() - w0
            print(f"| {name} | {threads} | {cpu / args.seconds:.4f} | {wall:.2f} | "
                  f"{args.seconds / wall:.0f} |")
    torch.set_num_threads(1)
    print()
    for name, one in (("torch", stream), ("onnx", OnnxStreamingEnhancer.load(args.onnx))):
        one.reset()
        hop = one.cfg.hop
        times = []
        chunk = audio[: 16000 * 20]
        for i in range(0, len(chunk) - hop, hop):
            t0 = time.perf_counter()
            one.process(chunk[i : i + hop])
            times.append(time.perf_counter() - t0)
        ms = np.array(times[10:]) * 1000
        print(f"{name} streaming, one thread, one 16 ms hop per call: mean {ms.mean():.2f} ms, "
              f"p99 {np.percentile(ms, 99):.2f} ms, max {ms.max():.2f} ms "
              f"(budget 16 ms; latency {one.latency_ms:.0f} ms)")


if __name__ == "__main__":
    main()
