"""``speechmask train``: one run from flags or ``--config``, a ``--recipe`` of stages, or a run
in ``--nproc`` processes. The setup rules (settings, run folder, ``--init``, ``--resume``) are
:mod:`speechmask.trainsetup`'s; this module turns the flags into its typed inputs."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from .common import EXIT_ERROR, EXIT_OK, UserError, comma_list, log

# `speechmask train` flags that are shorthands for TrainConfig settings (dest -> dotted key).
# They default to None ("not given") and are laid over --config; the defaults live in the
# dataclasses alone.
TRAIN_FLAGS = {
    "cell": "model.cell", "hidden": "model.hidden", "layers": "model.layers",
    "dropout": "model.dropout", "compression": "model.compression",
    "lookahead": "model.lookahead", "df_bins": "model.df_bins", "df_order": "model.df_order",
    "target": "target", "loss": "loss",
    "snr_weight": "snr_weight", "snr_max_db": "snr_max_db", "spec_weight": "spec_weight",
    "epochs": "epochs",
    "batch_size": "batch_size", "lr": "lr", "ema_decay": "ema_decay",
    "patience": "patience", "valid_count": "valid_count", "seed": "seed", "threads": "threads",
    "device": "device", "examples_per_epoch": "mix.examples_per_epoch",
    "crop_seconds": "mix.crop_seconds", "select": "select_metric",
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    # Help texts show the defaults of these torch-importing modules.
    from ..mixing import MixConfig
    from ..model import ModelConfig
    from ..train import LOSSES, SELECT_METRICS, TrainConfig

    mdef, tdef, xdef = ModelConfig(), TrainConfig(), MixConfig()
    tr = sub.add_parser(
        "train", help="train a mask model on the corpus",
        description="Train a mask model. Settings come from the TrainConfig defaults, then "
        "--config FILE.toml, then the flags below (shorthands), then each --set KEY=VALUE "
        "(any setting, e.g. --set mix.clean_fraction=0.1 --set mix.augment.room=0.3).")
    tr.add_argument("--out", required=True, help="run folder: best.pt, last.pt, log, curve")
    tr.add_argument("--recipe", default=None, metavar="RECIPE.toml",
                    help="run a recipe (e.g. recipes/default.toml): its stages one after "
                    "the other in OUT/01_NAME, ...; the final model is OUT/model.pt. Run the "
                    "same command again to resume; --set applies to every stage")
    tr.add_argument("--config", default=None, metavar="FILE.toml",
                    help="training settings as TOML tables (top level, [model], [mix], "
                    "[mix.augment], ...; recipes/*.toml [base] tables are examples)")
    tr.add_argument("--set", action="append", default=None, metavar="KEY=VALUE",
                    help="one setting by its dotted name, after --config and the flags "
                    "(repeatable; VALUE is a TOML value)")
    tr.add_argument("--corpus", default=None, help="corpus folder (default: bundled)")
    tr.add_argument("--data", default=None,
                    help="train on a dataset folder made by `speechmask data import` instead")
    tr.add_argument("--cell", choices=("lstm", "gru"), default=None,
                    help=f"recurrent cell (default {mdef.cell})")
    tr.add_argument("--hidden", type=int, default=None, help=f"default {mdef.hidden}")
    tr.add_argument("--layers", type=int, default=None, help=f"default {mdef.layers}")
    tr.add_argument("--dropout", type=float, default=None, help=f"default {mdef.dropout}")
    tr.add_argument("--lookahead", type=int, default=None, metavar="FRAMES",
                    help="future frames each mask may use, 0-4 (16 ms of latency each; default "
                    "0, or the --init model's). With --init MODEL of less look-ahead, the new "
                    "inputs start at zero weight, so training starts from MODEL's masks")
    tr.add_argument("--df-bins", type=int, default=None, metavar="BINS",
                    help="give the lowest BINS bins a deep filter: complex coefficients over "
                    "--df-order frames added to the mask (64 = 0-2 kHz; default "
                    f"{mdef.df_bins}: mask only). With --init MODEL without one, the filter "
                    "starts at zero, so training starts from MODEL's output")
    tr.add_argument("--df-order", type=int, default=None, metavar="FRAMES",
                    help="frames each deep filter reads, ending with the newest the model sees "
                    f"(default {mdef.df_order}; at least --lookahead + 1)")
    tr.add_argument("--compression", choices=("log", "power"), default=None,
                    help=f"default {mdef.compression}")
    tr.add_argument("--target", choices=("ibm", "irm"), default=None,
                    help=f"mask target (default {tdef.target})")
    tr.add_argument("--loss", choices=LOSSES, default=None, help=f"default {tdef.loss}")
    tr.add_argument("--snr-weight", type=float, default=None,
                    help=f"default {tdef.snr_weight}")
    tr.add_argument("--snr-max-db", type=float, default=None,
                    help="soft ceiling of the loss' SNR/SI-SDR terms per example, e.g. 30: "
                         "easy examples stop pulling past it (default: none)")
    tr.add_argument("--spec-weight", type=float, default=None,
                    help="weight of the power-law compressed spectrum term added to the loss "
                         f"(default {tdef.spec_weight}: none)")
    tr.add_argument("--ema-decay", type=float, default=None,
                    help="validate and save an exponential moving average of the weights with "
                         f"this decay per step, e.g. 0.999 (default {tdef.ema_decay}: off)")
    tr.add_argument("--epochs", type=int, default=None,
                    help=f"epochs (default {tdef.epochs}; with --resume, extends the run)")
    tr.add_argument("--examples-per-epoch", type=int, default=None,
                    help=f"default {xdef.examples_per_epoch}")
    tr.add_argument("--crop-seconds", type=float, default=None,
                    help=f"default {xdef.crop_seconds}")
    tr.add_argument("--snr-range", type=float, nargs=2, default=None,
                    metavar=("LOW_DB", "HIGH_DB"),
                    help=f"default {xdef.snr_low_db:g} {xdef.snr_high_db:g}")
    tr.add_argument("--no-augment", dest="augment", action="store_false", default=None,
                    help="every augmentation probability 0")
    tr.add_argument("--batch-size", type=int, default=None, help=f"default {tdef.batch_size}")
    tr.add_argument("--lr", type=float, default=None, help=f"peak rate (default {tdef.lr})")
    tr.add_argument("--patience", type=int, default=None,
                    help=f"epochs without a validation gain before stopping (default "
                         f"{tdef.patience}; 0 = never)")
    tr.add_argument("--select", choices=SELECT_METRICS, default=None,
                    help=f"validation figure that picks best.pt (default {tdef.select_metric})")
    tr.add_argument("--valid-count", type=int, default=None)
    tr.add_argument("--hold-out-noise", default=None, metavar="TYPE[,TYPE...]",
                    help="corpus noise types to keep out of training; validation (and so "
                    "best.pt) then uses only these types: selection on unseen noise, e.g. "
                    "city,doing_the_dishes (types: the by-noise table of `speechmask "
                    "evaluate --set valid`)")
    tr.add_argument("--seed", type=int, default=None, help=f"default {tdef.seed}")
    tr.add_argument("--threads", type=int, default=None,
                    help="torch threads per process (0 = all cores, split between processes)")
    tr.add_argument("--device", choices=("cpu", "cuda", "auto"), default=None,
                    help=f"default {tdef.device}")
    tr.add_argument("--nproc", type=int, default=None, metavar="N",
                    help="train with N processes on this machine (DistributedDataParallel; "
                         "--batch-size stays the global batch); for several machines start "
                         "`torchrun ... -m speechmask train` on each instead")
    tr.add_argument("--init", default=None, metavar="MODEL.pt",
                    help="start from this model's weights, with a new schedule (its "
                         "architecture replaces --cell/--layers/--compression; a larger "
                         "--hidden widens it, new units silent); with --recipe: instead of "
                         "the recipe's init")
    tr.add_argument("--resume", action="store_true", help="continue the run in --out")
    tr.add_argument("--overwrite", action="store_true", help="start again in a used --out")
    tr.set_defaults(func=run)


def explicit_settings(args: argparse.Namespace) -> dict:
    """The TrainConfig settings this command names: --config's file, then the flags given,
    then each --set KEY=VALUE, as one nested dict."""
    from ..trainsetup import explicit_settings as merge_settings

    shorthands = {key: value for dest, key in TRAIN_FLAGS.items()
                  if (value := getattr(args, dest, None)) is not None}
    return merge_settings(
        args.config, shorthands, snr_range=args.snr_range,
        holdout_noise=(comma_list(args.hold_out_noise) if args.hold_out_noise is not None
                       else None),
        augment=args.augment is not False, overrides=args.set or ())


def train_config(args: argparse.Namespace):
    """The TrainConfig a ``train`` command line asks for (before the run-folder rules)."""
    from ..trainsetup import train_config as from_settings

    return from_settings(explicit_settings(args))


def run_request(args: argparse.Namespace):
    """The :class:`~speechmask.trainsetup.RunRequest` of a ``train`` command line."""
    from ..trainsetup import RunRequest

    return RunRequest(out=Path(args.out), settings=explicit_settings(args), resume=args.resume,
                      overwrite=args.overwrite, epochs=args.epochs, patience=args.patience,
                      threads=args.threads, device=args.device)


def _run_recipe(args: argparse.Namespace) -> int:
    """``train --recipe``: every stage of the file, skipping the finished ones."""
    from ..config import ConfigError
    from ..corpus import Corpus
    from ..recipe import load_recipe, run_recipe, split_runtime

    named = [f"--{dest.replace('_', '-')}" for dest in (*TRAIN_FLAGS, "snr_range",
                                                         "hold_out_noise", "data", "config")
             if dest not in ("threads", "device") and getattr(args, dest, None) is not None]
    named += ["--resume"] * bool(args.resume) + ["--no-augment"] * (args.augment is False)
    named += ["--nproc"] * (args.nproc is not None and args.nproc > 1)
    if named:
        raise UserError(f"--recipe holds every training setting; drop {named[0]} (change a "
                        "setting for every stage with --set KEY=VALUE)")
    try:
        overrides, runtime = split_runtime(tuple(args.set or []))
        recipe = load_recipe(args.recipe, overrides, init=args.init)
        runtime.setdefault("threads", args.threads or 0)
        if args.device is not None:
            runtime["device"] = args.device
        final = run_recipe(recipe, Path(args.out), runtime=runtime,
                           corpus=Corpus(args.corpus), progress=not args.quiet)
    except ConfigError as err:
        raise UserError(str(err)) from None
    print(f"recipe {recipe.name}: {len(recipe.stages)} stage(s) done; model {final}")
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    from .. import distributed
    from ..corpus import Corpus
    from ..train import resolve_device, train
    from ..trainsetup import load_init, prepare

    if args.recipe:
        return _run_recipe(args)
    if args.nproc is not None and args.nproc < 1:
        raise UserError(f"--nproc must be >= 1, got {args.nproc}")
    if args.data and args.hold_out_noise:
        raise UserError("--hold-out-noise holds corpus noise types out; with --data the "
                        "dataset's own valid pairs are used: drop one of them")
    device = resolve_device(args.device or "cpu")
    if args.nproc is not None and args.nproc > 1 and not distributed.launched_by_torchrun():
        # Refuse a bad --out or --init here, before any process starts.
        init_model = load_init(args.init)[0]
        prepare(run_request(args), init_model)
        log.info("starting %d training processes", args.nproc)
        try:
            # The workers see --nproc again but, started by the launcher, do not launch more.
            distributed.launch_local(args.nproc, args.argv)
        except distributed.WorkerFailed as err:
            raise UserError(str(err)) from None
        return EXIT_OK
    ctx = distributed.init_from_env(device)  # single process unless started by torchrun
    if not ctx.is_main:
        logging.getLogger("speechmask").setLevel(logging.WARNING)  # rank 0 reports for all
    elif args.nproc is not None and args.nproc != ctx.local_world_size:
        log.warning("--nproc %d ignored: torchrun started %d processes here", args.nproc,
                    ctx.local_world_size)
    out = Path(args.out)
    try:
        init_model, init_history = load_init(args.init)
        # On rank 0 alone, which reports a bad setting once for all ranks.
        cfg = distributed.on_main(ctx, lambda: prepare(run_request(args), init_model))
        if args.data:
            from ..importers import load_user_data, make_train_dataset

            user = load_user_data(args.data)
            result = train(cfg, out, valid=user.valid, resume=args.resume,
                           init_model=init_model, init_history=init_history,
                           progress=not args.quiet, dist=ctx,
                           train_set=make_train_dataset(user, cfg.mix, cfg.target, cfg.seed))
        else:
            result = train(cfg, out, corpus=Corpus(args.corpus), resume=args.resume,
                           init_model=init_model, init_history=init_history,
                           progress=not args.quiet, dist=ctx)
        # Every rank done with its last collective before any leaves the group: a rank torn
        # down while another still had gloo work in flight aborted once in CI ("terminate
        # called without an active exception", 2026-12-08, test_distributed).
        distributed.barrier(ctx)
    except distributed.MainRankFailed:
        return EXIT_ERROR  # rank 0 has reported the error
    finally:
        distributed.cleanup(ctx)
    if ctx.is_main:
        best = result["best"]
        chosen_by = {"valid_snr_db": "SNR", "valid_si_sdr_db": "SI-SDR",
                     "valid_heldout_si_sdr_db": "held-out SI-SDR"}[cfg.select_metric]
        print(f"trained {result['epochs']} epochs in {result['seconds'] / 60:.1f} min; best "
              f"epoch {best['epoch']} (by valid {chosen_by}): valid SNR "
              f"{best['valid_snr_db']:.2f} dB, SI-SDR {best['valid_si_sdr_db']:.2f} dB; model: "
              f"{out / 'best.pt'}")
    return EXIT_OK
