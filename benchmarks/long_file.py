"""Peak memory and speed of `speechmask enhance` on a long file (default: 1 hour, 16 kHz mono).

    python -m benchmarks.long_file [--minutes 60] [--rate 16000] [--channels 1]

Builds the file by repeating the bundled noisy sample, runs the CLI in a child process and
reports its peak resident memory (ru_maxrss of the child) and wall time. Files are enhanced in
10 s blocks, so memory should not grow with the file's length.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--rate", type=int, default=16000)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    from speechmask.audio import load_mono

    sample = load_mono("data/samples/cafe_noisy.flac", args.rate)
    total = int(args.minutes * 60 * args.rate)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "long.wav"
        with sf.SoundFile(src, "w", args.rate, args.channels, "PCM_16") as out:
            written = 0
            while written < total:
                n = min(len(sample), total - written)
                out.write(np.repeat(sample[:n, None], args.channels, axis=1))
                written += n
        cmd = [sys.executable, "-m", "speechmask", "-q", "enhance", str(src), "-o",
               str(Path(tmp) / "out.wav")]
        if args.model:
            cmd += ["--model", args.model]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        out_frames = sf.info(Path(tmp) / "out.wav").frames
    audio_s = total / args.rate
    print("| file | peak RSS MB | wall s | real-time factor | output length ok |")
    print("|---|---:|---:|---:|---|")
    print(f"| {args.minutes:g} min, {args.rate} Hz, {args.channels} ch | {peak_mb:.0f} | "
          f"{wall:.1f} | {wall / audio_s:.4f} | {out_frames == total} |")


if __name__ == "__main__":
    main()
