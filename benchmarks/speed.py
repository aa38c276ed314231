"""Speed of the shipped model, as the README reports it: ``speechmask bench`` timed on the bundled
noisy sample (repeated to --seconds).

    python -m benchmarks.speed [--seconds 60] [--model PATH] [--json FILE] ...

Takes every option of ``speechmask bench``; see ``speechmask bench --help`` and
:mod:`speechmask.bench` for what is measured.
"""

from __future__ import annotations

import sys
from pathlib import Path

from speechmask.cli import main

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "samples" / "cafe_noisy.flac"

if __name__ == "__main__":
    sys.exit(main(["bench", "--input", str(SAMPLE), *sys.argv[1:]]))
