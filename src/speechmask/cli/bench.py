"""``speechmask bench``: speed on this machine, or (``--peers``) the peer benchmark."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .common import EXIT_OK, UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    be = sub.add_parser("bench", help="speed on this machine: real-time factor and per-hop "
                        "streaming time (--peers: compare with other denoisers)")
    be.add_argument("--model", default=None,
                    help="checkpoint .pt or exported .onnx (default: shipped model, both "
                    "backends)")
    be.add_argument("--backend", choices=("all", "torch", "onnx"), default="all")
    be.add_argument("--seconds", type=float, default=60.0, help="audio length timed per path")
    be.add_argument("--hop-seconds", type=float, default=20.0,
                    help="audio fed one hop per call for the per-hop timing (0 = skip)")
    be.add_argument("--threads", type=int, default=None,
                    help="threads to measure (default: 1 and all cores)")
    be.add_argument("--input", default=None,
                    help="audio file to time (default: a generated speech-like signal; the "
                    "cost does not depend on content)")
    be.add_argument("--json", default=None, help="also write the figures as JSON")
    be.add_argument("--peers", nargs=argparse.REMAINDER, default=None, metavar="ARGS",
                    help="run the peer benchmark instead (python -m benchmarks.peers ARGS, "
                    "from a source checkout with the [bench] extra); must come last")
    be.set_defaults(func=run)


def _find_checkout(start: Path) -> Path | None:
    """The source checkout holding ``benchmarks/peers`` at or above ``start``, if any."""
    for folder in (start, *start.parents):
        if (folder / "benchmarks" / "peers" / "__main__.py").is_file():
            return folder
    return None


def run(args: argparse.Namespace) -> int:
    if args.peers is not None:  # the peer comparison needs the repo's benchmarks/ and [bench]
        import subprocess

        checkout = _find_checkout(Path.cwd())
        if checkout is None:
            raise UserError("`speechmask bench --peers` runs from a source checkout (it needs "
                            "benchmarks/peers): cd into the repository, pip install -e "
                            "'.[bench]', and run it again")
        cmd = [sys.executable, "-m", "benchmarks.peers", *args.peers]
        return subprocess.run(cmd, cwd=checkout).returncode
    from ..bench import (
        available_backends,
        bench_signal,
        format_report,
        load_bench_audio,
        measure_hops,
        measure_rtf,
        report_json,
    )

    if args.seconds <= 0 or args.hop_seconds < 0:
        raise UserError(f"--seconds must be > 0 and --hop-seconds >= 0, got {args.seconds} and "
                        f"{args.hop_seconds}")
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads must be >= 1, got {args.threads}")
    if args.model and not Path(args.model).is_file():
        raise UserError(f"{args.model}: model file not found")
    backends = available_backends(args.model)
    if args.backend != "all":
        if args.backend not in backends:
            what = args.model or "the shipped model"
            raise UserError(f"backend {args.backend} cannot run {what} here (available: "
                            f"{', '.join(backends) or 'none'})")
        backends = [args.backend]
    threads = sorted({1, os.cpu_count() or 1}) if args.threads is None else [args.threads]
    rows = measure_rtf(load_bench_audio(args.seconds, args.input), backends, threads, args.model)
    hops = (measure_hops(bench_signal(args.hop_seconds, seed=1), backends, args.model)
            if args.hop_seconds > 0 else [])
    print(f"model: {args.model or 'shipped default'}")
    print(format_report(rows, hops, args.seconds))
    if args.json:
        from ..atomic import write_text_atomic

        write_text_atomic(Path(args.json),
                          json.dumps(report_json(rows, hops, args.seconds), indent=2) + "\n")
    return EXIT_OK
