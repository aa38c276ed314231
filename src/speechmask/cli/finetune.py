"""``speechmask finetune``: adapt a model to your data or your noise."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import EXIT_OK, UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    ft = sub.add_parser("finetune", help="adapt a model to your data or your noise")
    ft.add_argument("--from", dest="init", default=None,
                    help="model to start from (default: shipped model)")
    ft.add_argument("--data", default=None, help="dataset folder from `speechmask data import`")
    ft.add_argument("--noise", nargs="+", default=None, metavar="FILE",
                    help="recordings of your noise (a few seconds or more), mixed with the "
                         "bundled clean speech")
    ft.add_argument("--out", default="runs/finetune", help="run folder (model: OUT/best.pt)")
    ft.add_argument("--corpus", default=None)
    ft.add_argument("--epochs", type=int, default=4)
    ft.add_argument("--lr", type=float, default=2e-4)
    ft.add_argument("--examples-per-epoch", type=int, default=400)
    ft.add_argument("--no-freeze", action="store_true",
                    help="also train the first recurrent layer (frozen by default)")
    ft.add_argument("--metrics", default="snr,si_sdr,pesq,stoi")
    ft.add_argument("--seed", type=int, default=0)
    ft.add_argument("--threads", type=int, default=0)
    ft.add_argument("--overwrite", action="store_true")
    ft.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu",
                    help="where to train (auto: CUDA when present)")
    ft.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..finetune import finetune, format_before_after

    if bool(args.data) == bool(args.noise):
        raise UserError("give either --data DATASET (from `speechmask data import`) or "
                        "--noise FILE... (recordings of your noise)")
    out = Path(args.out)
    if (out / "best.pt").exists() and not args.overwrite:
        raise UserError(f"{out}: holds a fine-tuned model; pass --overwrite or another --out")
    result = finetune(
        args.init, out, data_dir=args.data, noise_files=args.noise, corpus=args.corpus,
        epochs=args.epochs, lr=args.lr, freeze_first_layer=not args.no_freeze,
        examples_per_epoch=args.examples_per_epoch, seed=args.seed, threads=args.threads,
        metrics=tuple(args.metrics.split(",")), progress=not args.quiet,
        base_cfg_overrides={"device": args.device},
    )
    print(format_before_after(result))
    before, after = result["before"].get("snr"), result["after"].get("snr")
    if before is not None and after is not None and after <= before:
        print(f"note: fine-tuning did not improve SNR ({before:.2f} -> {after:.2f} dB); keep "
              "using the original model")
    print(f"fine-tuned model: {result['model']}  (use: speechmask enhance IN -o OUT --model "
          f"{result['model']})")
    return EXIT_OK
