"""``speechmask tune``: hyper-parameter search with Optuna."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import EXIT_OK, UserError, comma_list


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..train import TrainConfig  # --batch-size's default

    tu = sub.add_parser("tune", help="hyper-parameter search with Optuna (resumable, "
                        "several processes can share one study)")
    tu.add_argument("--trials", type=int, default=10, help="new trials for this process")
    tu.add_argument("--storage", default="sqlite:///study.db", help="Optuna storage URL")
    tu.add_argument("--study", default="speechmask", help="study name in the storage")
    tu.add_argument("--out", default="runs/tune", help="folder for the trials' runs")
    tu.add_argument("--corpus", default=None)
    tu.add_argument("--epochs", type=int, default=6, help="epochs per trial")
    tu.add_argument("--examples-per-epoch", type=int, default=2000)
    tu.add_argument("--batch-size", type=int, default=TrainConfig().batch_size)
    tu.add_argument("--valid-count", type=int, default=None,
                    help="score each epoch on the first N valid pairs (default: all 288); "
                    "fewer makes short trials cheaper")
    tu.add_argument("--lookahead", type=int, nargs="+", default=[0], metavar="FRAMES",
                    help="look-ahead frames the search may choose from, 0-4 (default 0: causal "
                    "models only; each frame adds 16 ms of streaming latency)")
    tu.add_argument("--hold-out-noise", default=None, metavar="TYPE[,TYPE...]",
                    help="as for train: every trial trains without these noise types and is "
                    "scored on them only (rank configurations on unseen noise)")
    tu.add_argument("--seed", type=int, default=0)
    tu.add_argument("--threads", type=int, default=0)
    tu.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu")
    tu.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..mixing import MixConfig
    from ..train import TrainConfig

    try:
        from ..tune import SearchSpace, best_command, plot_trials, run_study, summary_table
    except ImportError as err:  # optuna is an optional extra
        raise UserError(f"tuning needs optuna ({err.name} missing): pip install "
                        "'speechmask[tune]'") from None

    if args.trials < 0:
        raise UserError(f"--trials must be >= 0, got {args.trials}")
    if args.valid_count is not None and args.valid_count < 1:
        raise UserError(f"--valid-count must be >= 1, got {args.valid_count}")
    try:
        space = SearchSpace(lookaheads=tuple(args.lookahead))
    except ValueError as err:
        raise UserError(f"--lookahead: {err}") from None
    base = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                       threads=args.threads, device=args.device, valid_count=args.valid_count,
                       holdout_noise=comma_list(args.hold_out_noise),
                       mix=MixConfig(examples_per_epoch=args.examples_per_epoch))
    out = Path(args.out)
    study = run_study(args.storage, args.study, args.trials, out, base, space, corpus=args.corpus,
                      seed=args.seed, progress=not args.quiet)
    print(summary_table(study))
    png = plot_trials(study, out / "trials.png")
    print(f"plot: {png}")
    if any(t.value is not None for t in study.trials):
        print("reproduce the best trial with:")
        print(best_command(study, base, corpus=args.corpus))
    return EXIT_OK
