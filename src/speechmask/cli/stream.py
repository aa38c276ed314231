"""``speechmask stream``: raw 16-bit PCM from stdin to stdout, denoised in real time."""

from __future__ import annotations

import argparse
import sys

from .common import EXIT_OK, UserError, load_enhancer, log, resolve_backend


def add_parser(sub: argparse._SubParsersAction) -> None:
    sm = sub.add_parser("stream", help="denoise raw 16-bit PCM from stdin to stdout in "
                        "real time (for pipes with sox/ffmpeg)")
    sm.add_argument("--rate", type=int, default=16000, help="sample rate of the PCM, Hz "
                    "(any; the latency is 48 ms at every rate)")
    sm.add_argument("--channels", type=int, default=1,
                    help="interleaved channels in the PCM (each denoised on its own)")
    sm.add_argument("--model", default=None,
                    help="checkpoint .pt or exported .onnx (default: shipped model)")
    sm.add_argument("--strength", type=float, default=1.0)
    sm.add_argument("--atten-lim-db", type=float, default=None, metavar="DB",
                    help="remove at most DB dB anywhere (default: no limit)")
    sm.add_argument("--block", type=int, default=None,
                    help="samples (per channel) read per step, >= 1 (default: 10 ms)")
    sm.add_argument("--backend", choices=("auto", "torch", "onnx"), default="auto",
                    help="auto (default): onnxruntime for the shipped model or an .onnx model "
                    "(about 3x less CPU per frame), torch for a .pt checkpoint")
    sm.add_argument("--precision", choices=("auto", "int8", "float32"), default="auto",
                    help="weights the ONNX model runs its 16 ms hops with: auto (default) "
                    "int8 where the model has that graph beside it (model.stream.onnx: 1.4x "
                    "less CPU, within 0.02 dB), else float32; int8 insists")
    sm.add_argument("--keep-latency", action="store_true",
                    help="output the delayed stream (the latency as leading silence: 32 ms, "
                    "+ 16 ms per look-ahead frame; then the signal) instead of trimming it to "
                    "the input's length and alignment")
    sm.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                    help="no log line at the end")
    sm.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Raw 16-bit little-endian PCM (interleaved for --channels > 1) from stdin to stdout,
    enhanced as it arrives."""
    import numpy as np

    if args.rate <= 0:
        raise UserError(f"--rate must be a positive sample rate in Hz, got {args.rate}")
    if args.block is None:
        args.block = max(1, args.rate // 100)
    if args.block < 1:
        raise UserError(f"--block must be >= 1 sample per step, got {args.block} (e.g. "
                        f"{args.rate // 100} for 10 ms)")
    if args.channels < 1:
        raise UserError(f"--channels must be >= 1, got {args.channels}")
    if not 0.0 <= args.strength <= 1.0:
        raise UserError(f"--strength must be between 0 and 1, got {args.strength}")
    # Frame by frame, onnxruntime costs ~5x less than torch per 16 ms hop (benchmarks.speed).
    backend = resolve_backend(args.backend, args.model, prefer_onnx=True)
    if args.atten_lim_db is not None and not args.atten_lim_db >= 0:
        raise UserError(f"--atten-lim-db must be >= 0 dB, got {args.atten_lim_db}")
    enhancer = load_enhancer(args.model, args.strength, backend, threads=1,
                             atten_lim_db=args.atten_lim_db, precision=args.precision,
                             stream=True)
    # The same block code as `enhance`: above 16 kHz the STFT runs at the input rate (no
    # resampler delay); below, resampled to 16 kHz and back.
    from ..pipeline import MultiChannelStream

    stream = MultiChannelStream(enhancer, args.rate, args.channels)
    latency_ms = stream.latency_ms
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    frame_bytes = 2 * args.channels
    leftover = b""
    total_in = total_out = 0
    worst_ms = 0.0

    def emit(out: np.ndarray) -> None:
        sink.write((np.clip(out, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes())
        sink.flush()

    if args.keep_latency:  # the delayed stream: as many samples out as in, from the start
        emit(np.zeros((round(latency_ms / 1000 * args.rate), args.channels), np.float32))
    while True:
        data = source.read1(args.block * frame_bytes) if hasattr(source, "read1") else \
            source.read(args.block * frame_bytes)
        if not data:
            break
        data = leftover + data
        usable = len(data) - len(data) % frame_bytes
        leftover = data[usable:]
        x = np.frombuffer(data[:usable], dtype="<i2").astype(np.float32) / 32768.0
        x = x.reshape(-1, args.channels)
        total_in += len(x)
        out = stream.process(x)
        if len(out):
            # The oldest sample just written entered `total_in - total_out` samples ago.
            worst_ms = max(worst_ms, 1000 * (total_in - total_out) / args.rate)
        total_out += len(out)
        emit(out)
    if total_in:
        emit(stream.flush())
    if not args.quiet:
        frame_model = getattr(enhancer, "frame_model", None)
        log.info("streamed %.1f s of audio at %d Hz, %d channel(s), %s hops: latency %.0f ms "
                 "(algorithmic) + up to one --block of %.0f ms; measured at most %.0f ms",
                 total_in / args.rate, args.rate, args.channels,
                 "float32" if frame_model is None else frame_model.weights, latency_ms,
                 1000 * args.block / args.rate, worst_ms)
    return EXIT_OK
