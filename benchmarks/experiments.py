"""The experiments table of docs/experiments.md: one factor at a time from a base recipe, each
row trained with the same budget (epochs x examples) and scored on the fixed valid set.

    python -m benchmarks.experiments --out runs/experiments [--epochs 6] [--examples 2000]

Each row is a `speechmask train` command (printed in the table, so any row can be re-run
alone); runs that already have a finished best.pt are not trained again, so the script resumes
after a kill. Prints a markdown table: valid SNR / SI-SDR (and PESQ / STOI with --full).
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import subprocess
import sys
from pathlib import Path

BASE = ["--cell", "lstm", "--hidden", "256", "--target", "irm", "--loss", "bce+snr"]
ROWS = {
    "base: LSTM 2x256, IRM, BCE+SNR loss, augmentation": [],
    "GRU instead of LSTM": ["--cell", "gru"],
    "IBM target (seed), BCE+SNR loss": ["--target", "ibm"],
    "IBM target + BCE only (the seed's recipe)": ["--target", "ibm", "--loss", "bce"],
    "IRM target + BCE only": ["--loss", "bce"],
    "hidden 128": ["--hidden", "128"],
    "hidden 384": ["--hidden", "384"],
    "no augmentation": ["--no-augment"],
}


def _override(base: list[str], extra: list[str]) -> list[str]:
    args = list(base)
    i = 0
    while i < len(extra):
        flag = extra[i]
        takes_value = i + 1 < len(extra) and not extra[i + 1].startswith("--")
        if flag in args and takes_value:
            args[args.index(flag) + 1] = extra[i + 1]
        else:
            args += extra[i : i + 1 + takes_value]
        i += 1 + takes_value
    return args


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/experiments")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--full", action="store_true", help="also PESQ and STOI")
    parser.add_argument("--only", default=None, help="comma list of row numbers to run")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads per training run (0 = all cores)")
    parser.add_argument("--jobs", type=int, default=1, help="evaluation worker processes")
    args = parser.parse_args()
    out = Path(args.out)
    rows = list(ROWS.items())
    chosen = {int(i) for i in args.only.split(",")} if args.only else set(range(len(rows)))
    budget = ["--epochs", str(args.epochs), "--examples-per-epoch", str(args.examples)]
    table = []
    for i, (label, extra) in enumerate(rows):
        if i not in chosen:
            continue
        run_dir = out / f"row{i}"
        train = ["speechmask", "-q", "train", "--out", str(run_dir),
                 *_override(BASE, extra), *budget]
        log = run_dir / "train_log.csv"
        done = log.is_file() and len(log.read_text().splitlines()) - 1 >= args.epochs
        if not done:
            resume = ["--resume"] if (run_dir / "last.pt").is_file() else []
            subprocess.run(train + resume + ["--threads", str(args.threads)], check=True)
        # Training wall time as the run logged it (cumulative over resumes).
        with log.open() as handle:
            minutes = float(list(csv.DictReader(handle))[-1]["seconds"]) / 60
        metrics = "snr,si_sdr,pesq,stoi" if args.full else "snr,si_sdr"
        report = run_dir / "valid.json"
        subprocess.run(["speechmask", "-q", "evaluate", "--model", str(run_dir / "best.pt"),
                        "--set", "valid", "--systems", "model", "--metrics", metrics,
                        "--jobs", str(args.jobs), "--json", str(report)], check=True,
                       stdout=subprocess.DEVNULL)
        overall = json.loads(report.read_text())["overall"]["model"]
        table.append((label, overall, minutes, " ".join(shlex.quote(a) for a in train[2:])))
        print(f"row {i} done: {label}: {overall}", file=sys.stderr)
    cols = ["snr", "si_sdr"] + (["pesq", "stoi"] if args.full else [])
    print("| experiment | " + " | ".join(c.upper() for c in cols) + " | train min | command |")
    print("|---|" + "---:|" * (len(cols) + 1) + "---|")
    for label, overall, minutes, cmd in table:
        vals = " | ".join(f"{overall[c]:.2f}" for c in cols)
        print(f"| {label} | {vals} | {minutes:.0f} | `speechmask {cmd}` |")


if __name__ == "__main__":
    main()
