"""``speechmask data``: fixed test sets, corpus statistics, importing your own data."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from .common import EXIT_OK, UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="corpus tools: fixed test sets, statistics, importers")
    dsub = data.add_subparsers(dest="data_command", required=True)
    ts = dsub.add_parser("testset", help="write a fixed noisy/clean evaluation set")
    ts.add_argument("--split", choices=("valid", "test", "ood", "clean", "heldout"),
                    default="test", help="valid/test: the corpus' splits; ood: unseen speakers, "
                    "noises and rooms (500 pairs); clean: pass-through (140 clean files); "
                    "heldout: the held-out training speakers (default: test)")
    ts.add_argument("--out", required=True, help="output folder (pairs.csv, noisy/, clean/)")
    ts.add_argument("--count", type=int, default=None, help="number of pairs (default: all)")
    ts.add_argument("--corpus", default=None, help="corpus folder (default: bundled)")
    ts.add_argument("--overwrite", action="store_true")
    ts.set_defaults(func=run_testset)
    st = dsub.add_parser("stats", help="files, hours, speakers and noise types per split")
    st.add_argument("--corpus", default=None)
    st.set_defaults(func=run_stats)
    im = dsub.add_parser("import", help="convert your own data into a training dataset folder")
    im.add_argument("src", help="course layout (trs/trn/trx + vs/vn/vx), clean_*/noisy_* pairs, "
                    "or clean/ + noise/ folders")
    im.add_argument("--out", required=True, help="dataset folder to write")
    im.add_argument("--layout", choices=("auto", "course", "pairs", "mixed"), default="auto")
    im.add_argument("--noise", default=None, help="noise folder (mixed layout)")
    im.add_argument("--valid-fraction", type=float, default=0.1)
    im.add_argument("--seed", type=int, default=0)
    im.add_argument("--overwrite", action="store_true")
    im.set_defaults(func=run_import)


def run_testset(args: argparse.Namespace) -> int:
    from ..corpus import Corpus
    from ..evalsets import eval_set, write_pairs

    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise UserError(f"{out}: folder exists and is not empty; pass --overwrite or pick "
                        "another --out")
    if args.count is not None and args.count < 1:
        raise UserError(f"--count must be >= 1, got {args.count}")
    corpus = Corpus(args.corpus) if args.corpus is not None else None
    t0 = time.time()
    pairs = eval_set(args.split, args.count, main=corpus)
    csv_path = write_pairs(pairs, out)
    seconds = sum(len(p.clean) for p in pairs) / 16000
    snrs = sorted({p.input_snr_db for p in pairs})
    print(f"wrote {len(pairs)} {args.split} pairs ({seconds / 60:.1f} min of audio, input SNR "
          f"{snrs if snrs != [float('inf')] else 'none: clean input'} dB) to {csv_path} in "
          f"{time.time() - t0:.1f} s")
    return EXIT_OK


def run_stats(args: argparse.Namespace) -> int:
    from ..corpus import Corpus

    corpus = Corpus(args.corpus)
    print(f"corpus: {corpus.root}")
    print("| split | kind | files | hours | speakers / noise types |")
    print("|---|---|---:|---:|---:|")
    for row in corpus.stats():
        print(f"| {row['split']} | {row['kind']} | {row['files']} | {row['hours']:.3f} | "
              f"{row['labels']} |")
    return EXIT_OK


def run_import(args: argparse.Namespace) -> int:
    from ..importers import import_dataset

    summary = import_dataset(
        Path(args.src), Path(args.out), layout=args.layout,
        noise_dir=Path(args.noise) if args.noise else None,
        valid_fraction=args.valid_fraction, seed=args.seed, overwrite=args.overwrite,
    )
    print(json.dumps(summary, indent=2))
    return EXIT_OK
