"""The ``speechmask`` command line. The only module that parses arguments.

Every user-facing failure is reported as one line on stderr (``speechmask: error: ...``) with a
non-zero exit code; tracebacks are shown only with ``--debug``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

from .errors import first_line

log = logging.getLogger("speechmask")

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3


class UserError(Exception):
    """An error to show as one line, without a traceback."""


def _known_errors() -> tuple[type[BaseException], ...]:
    from .audio import AudioError

    errors: tuple[type[BaseException], ...] = (UserError, AudioError, ValueError)
    try:  # these modules import torch; an ONNX-only install has neither them nor their errors
        from .checkpoint import CheckpointError
        from .data import DataError
    except ImportError:
        return errors
    return (*errors, CheckpointError, DataError)


# ---------------------------------------------------------------------------------------------
# data


def cmd_data_testset(args: argparse.Namespace) -> int:
    from .data import Corpus, write_pairs
    from .evalsets import eval_set

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


def cmd_data_stats(args: argparse.Namespace) -> int:
    from .data import Corpus

    corpus = Corpus(args.corpus)
    print(f"corpus: {corpus.root}")
    print("| split | kind | files | hours | speakers / noise types |")
    print("|---|---|---:|---:|---:|")
    for row in corpus.stats():
        print(f"| {row['split']} | {row['kind']} | {row['files']} | {row['hours']:.3f} | "
              f"{row['labels']} |")
    return EXIT_OK


def cmd_data_import(args: argparse.Namespace) -> int:
    from .importers import import_dataset

    summary = import_dataset(
        Path(args.src), Path(args.out), layout=args.layout,
        noise_dir=Path(args.noise) if args.noise else None,
        valid_fraction=args.valid_fraction, seed=args.seed, overwrite=args.overwrite,
    )
    print(json.dumps(summary, indent=2))
    return EXIT_OK


# ---------------------------------------------------------------------------------------------
# train / evaluate


def _comma_list(text: str | None) -> tuple[str, ...]:
    """``"a, b,"`` -> ``("a", "b")``; None or empty -> ``()``."""
    return tuple(t.strip() for t in (text or "").split(",") if t.strip())


# `speechmask train` flags that are shorthands for TrainConfig settings (dest -> dotted key).
# They default to None ("not given") and are laid over --config; the defaults live in the
# dataclasses alone.
TRAIN_FLAGS = {
    "cell": "model.cell", "hidden": "model.hidden", "layers": "model.layers",
    "dropout": "model.dropout", "compression": "model.compression",
    "lookahead": "model.lookahead", "target": "target", "loss": "loss",
    "snr_weight": "snr_weight", "epochs": "epochs", "batch_size": "batch_size", "lr": "lr",
    "patience": "patience", "valid_count": "valid_count", "seed": "seed", "threads": "threads",
    "device": "device", "examples_per_epoch": "mix.examples_per_epoch",
    "crop_seconds": "mix.crop_seconds", "select": "select_metric",
}


def _explicit_settings(args: argparse.Namespace) -> dict:
    """The TrainConfig settings this command names: --config's file, then the flags given,
    then each --set KEY=VALUE, as one nested dict."""
    from .config import merge, parse_overrides, read_toml

    settings = read_toml(args.config) if args.config else {}
    flags = [f"{key}={value!r}" if isinstance(value, str) else f"{key}={value}"
             for dest, key in TRAIN_FLAGS.items()
             if (value := getattr(args, dest, None)) is not None]
    settings = merge(settings, parse_overrides(flags))
    if args.snr_range is not None:
        settings = merge(settings, {"mix": {"snr_low_db": args.snr_range[0],
                                            "snr_high_db": args.snr_range[1]}})
    if args.hold_out_noise is not None:
        settings["holdout_noise"] = list(_comma_list(args.hold_out_noise))
    if args.augment is False:
        from .config import to_dict
        from .data import AugmentConfig

        settings = merge(settings, {"mix": {"augment": to_dict(AugmentConfig.off())}})
    return merge(settings, parse_overrides(args.set or []))


def _train_config(args: argparse.Namespace):
    from .config import from_dict
    from .train import TrainConfig

    return from_dict(TrainConfig, _explicit_settings(args))


def _prepare_train(args: argparse.Namespace, init_model=None):
    """Check --out against --resume/--overwrite and return the run's TrainConfig (from
    last.pt when resuming; with the architecture of ``init_model``, the loaded --init model,
    when given). Runs where the run folder is: in the launching process, or on rank 0 of a
    multi-process run."""
    out = Path(args.out)
    if args.resume and not (out / "last.pt").is_file():
        raise UserError(f"{out / 'last.pt'}: nothing to resume; drop --resume to start fresh")
    if not args.resume and (out / "last.pt").exists() and not args.overwrite:
        raise UserError(f"{out}: holds a training run; pass --resume to continue it or "
                        "--overwrite to start again")
    explicit = _explicit_settings(args)
    cfg = _train_config(args)
    if init_model is not None:
        if args.resume:
            raise UserError("--init starts a new run from a model's weights; --resume continues "
                            f"the run in {out}: use one of them")
        from .train import adopt_architecture

        try:
            cfg = adopt_architecture(cfg, init_model.cfg,
                                     "lookahead" in explicit.get("model", {}))
        except ValueError as err:
            raise UserError(f"--init: {err}") from None
    if args.resume:
        from .checkpoint import load_raw
        from .train import config_from_dict

        try:
            cfg = config_from_dict(load_raw(out / "last.pt")["train_config"])
        except (KeyError, TypeError, ValueError) as err:
            raise UserError(f"{out / 'last.pt'}: holds no usable training config ({err}); "
                            "start again with --overwrite") from None
        if args.epochs is not None and args.epochs > cfg.epochs:
            # More epochs stretch the cosine schedule from here on (the rate rises a little).
            cfg = replace(cfg, epochs=args.epochs)
        # Where and how fast to run are not part of the recipe: take them from this command.
        cfg = replace(cfg, threads=args.threads or 0, device=args.device or cfg.device,
                      loader_workers=explicit.get("loader_workers", cfg.loader_workers))
        if args.patience is not None:
            cfg = replace(cfg, patience=args.patience)
    return cfg


def _init_model(path: str | None):
    """``(model, training stages)`` of the --init checkpoint (``(None, None)`` without one);
    one-line error when it cannot seed a run (unreadable, or trained on another STFT than
    training uses)."""
    from .checkpoint import load_model, training_stages
    from .features import StftConfig

    if path is None:
        return None, None
    if not Path(path).is_file():
        raise UserError(f"{path}: no such model file; pass a checkpoint such as "
                        "runs/NAME/best.pt or the shipped model.pt")
    model, stft_cfg, payload = load_model(path)
    if stft_cfg != StftConfig():
        raise UserError(f"{path}: trained on another STFT ({stft_cfg}); training uses "
                        f"{StftConfig()}")
    return model, training_stages(payload)


def _launch_train(args: argparse.Namespace) -> int:
    """Run this same command in ``--nproc`` processes on this machine, started the way
    ``torchrun --standalone`` starts them (torch's elastic launcher). The workers see --nproc
    again but, started by torchrun, do not launch further processes."""
    import signal
    import uuid

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=args.nproc,
                          run_id=uuid.uuid4().hex, rdzv_backend="c10d",
                          rdzv_endpoint="localhost:0", max_restarts=0)
    # Its multi-line failure report would bury the worker's own one-line error.
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    log.info("starting %d training processes", args.nproc)
    # The launcher installs signal handlers raising its SignalException and leaves them.
    handled = [sig for sig in (getattr(signal, name, None) for name in
                               ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT")) if sig is not None]
    handlers = {sig: signal.getsignal(sig) for sig in handled}
    try:
        elastic_launch(config, sys.executable)("-m", "speechmask", *args.argv)
    except ChildFailedError as err:
        rank, failure = err.get_first_failure()
        raise UserError(f"training process {rank} of {args.nproc} failed (exit code "
                        f"{failure.exitcode}); see its message above") from None
    except SignalException:
        raise KeyboardInterrupt from None
    finally:
        for sig, handler in handlers.items():
            if handler is not None:  # None: set outside Python, cannot be put back
                signal.signal(sig, handler)
    return EXIT_OK


def _run_recipe(args: argparse.Namespace) -> int:
    """``train --recipe``: every stage of the file, skipping the finished ones."""
    from .config import ConfigError
    from .data import Corpus
    from .recipe import load_recipe, run_recipe, split_runtime

    named = [f"--{dest.replace('_', '-')}" for dest in (*TRAIN_FLAGS, "snr_range",
                                                         "hold_out_noise", "init", "data",
                                                         "config")
             if dest not in ("threads", "device") and getattr(args, dest, None) is not None]
    named += ["--resume"] * bool(args.resume) + ["--no-augment"] * (args.augment is False)
    named += ["--nproc"] * (args.nproc is not None and args.nproc > 1)
    if named:
        raise UserError(f"--recipe holds every training setting; drop {named[0]} (change a "
                        "setting for every stage with --set KEY=VALUE)")
    try:
        overrides, runtime = split_runtime(tuple(args.set or []))
        recipe = load_recipe(args.recipe, overrides)
        runtime.setdefault("threads", args.threads or 0)
        if args.device is not None:
            runtime["device"] = args.device
        final = run_recipe(recipe, Path(args.out), runtime=runtime,
                           corpus=Corpus(args.corpus), progress=not args.quiet)
    except ConfigError as err:
        raise UserError(str(err)) from None
    print(f"recipe {recipe.name}: {len(recipe.stages)} stage(s) done; model {final}")
    return EXIT_OK


def cmd_train(args: argparse.Namespace) -> int:
    from . import distributed
    from .data import Corpus
    from .train import resolve_device, train

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
        _prepare_train(args, _init_model(args.init)[0])
        return _launch_train(args)
    ctx = distributed.init_from_env(device)  # single process unless started by torchrun
    if not ctx.is_main:
        logging.getLogger("speechmask").setLevel(logging.WARNING)  # rank 0 reports for all
    elif args.nproc is not None and args.nproc != ctx.local_world_size:
        log.warning("--nproc %d ignored: torchrun started %d processes here", args.nproc,
                    ctx.local_world_size)
    out = Path(args.out)
    try:
        init_model, init_history = _init_model(args.init)
        cfg = distributed.on_main(ctx, lambda: _prepare_train(args, init_model))
        if args.data:
            from .importers import load_user_data, make_train_dataset

            user = load_user_data(args.data)
            result = train(cfg, out, valid=user.valid, resume=args.resume,
                           init_model=init_model, init_history=init_history,
                           progress=not args.quiet, dist=ctx,
                           train_set=make_train_dataset(user, cfg.mix, cfg.target, cfg.seed))
        else:
            result = train(cfg, out, corpus=Corpus(args.corpus), resume=args.resume,
                           init_model=init_model, init_history=init_history,
                           progress=not args.quiet, dist=ctx)
        if args.dump_weights:  # tests: each rank's final weights, to compare across ranks
            import torch

            Path(args.dump_weights).mkdir(parents=True, exist_ok=True)
            torch.save(result["model"].state_dict(),
                       Path(args.dump_weights) / f"rank{ctx.rank}.pt")
    except distributed.MainRankFailed:
        return EXIT_ERROR  # rank 0 has reported the error
    finally:
        distributed.cleanup(ctx)
    if ctx.is_main:
        best = result["best"]
        print(f"trained {result['epochs']} epochs in {result['seconds'] / 60:.1f} min; best "
              f"valid SNR {best['valid_snr_db']:.2f} dB at epoch {best['epoch']}; model: "
              f"{out / 'best.pt'}")
    return EXIT_OK


def cmd_finetune(args: argparse.Namespace) -> int:
    from .finetune import finetune, format_before_after

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


def cmd_tune(args: argparse.Namespace) -> int:
    from .data import MixConfig
    from .train import TrainConfig

    try:
        from .tune import SearchSpace, best_command, plot_trials, run_study, summary_table
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
                       holdout_noise=_comma_list(args.hold_out_noise),
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


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate, format_table

    if args.pairs is None and args.set is None:
        raise UserError("give --pairs DIR/pairs.csv or --set valid|test|ood|clean|heldout")
    systems = tuple(args.systems.split(","))
    if args.reference and "reference" not in systems:
        systems += ("reference",)
    report = evaluate(
        model_path=Path(args.model) if args.model else None,
        pairs_csv=Path(args.pairs) if args.pairs else None,
        split=args.set, count=args.count, corpus_dir=args.corpus,
        systems=systems, metrics=tuple(args.metrics.split(",")),
        jobs=args.jobs, progress=not args.quiet, device=args.device,
        noise_types=_comma_list(args.noise_types) or None,
        reference_path=Path(args.reference) if args.reference else None,
    )
    print(format_table(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
        print(f"wrote {args.json}")
    return EXIT_OK


# ---------------------------------------------------------------------------------------------
# calibrate


def _refuse_target(target: Path, inputs: list[Path], overwrite: bool) -> None:
    """A model file is written only where nothing is, or with --overwrite, and never over an
    input model."""
    if target.exists() and not overwrite:
        raise UserError(f"{target}: exists; pass --overwrite to replace it")
    if any(src.exists() and src.resolve() == target.resolve() for src in inputs):
        which = "the input model" if len(inputs) == 1 else "an input model"
        raise UserError(f"{target}: would overwrite {which}; choose another name")


def cmd_calibrate(args: argparse.Namespace) -> int:
    from .calibrate import best_exponent, check_exponents, score_exponents, write_calibrated
    from .checkpoint import load_model
    from .evaluate import load_eval_items

    src, out = Path(args.model), Path(args.out)
    _refuse_target(out, [src], args.overwrite)
    try:
        exponents = [float(v) for v in args.exponents.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"--exponents {args.exponents!r}: give numbers like 1.0,1.2,1.4") from None
    check_exponents(exponents)  # before the minute of loading and scoring
    model, stft_cfg, _ = load_model(src)
    if stft_cfg.sample_rate != 16_000:
        raise UserError(f"{src}: calibration runs on 16 kHz mixtures; this model is "
                        f"{stft_cfg.sample_rate} Hz")
    items, source = load_eval_items(Path(args.pairs) if args.pairs else None,
                                    None if args.pairs else args.set, args.count, args.corpus)
    pairs = [(clean, noisy) for _, clean, noisy, *_ in items]
    scores = score_exponents(model, stft_cfg, pairs, exponents, progress=not args.quiet)
    chosen = best_exponent(scores)
    print(f"mask exponent on {len(pairs)} pairs of the {source} "
          f"(model trained at {model.cfg.mask_exponent:g}):")
    print("| exponent | SNR dB | SI-SDR dB |\n|---:|---:|---:|")
    for s in scores:
        mark = " (chosen)" if s is chosen else ""
        print(f"| {s.exponent:g}{mark} | {s.snr_db:.2f} | {s.si_sdr_db:.2f} |")
    written = write_calibrated(src, out, scores, chosen, source)
    print(f"wrote {written} with mask exponent {chosen.exponent:g}")
    return EXIT_OK


# ---------------------------------------------------------------------------------------------
# enhance


def _collect_inputs(inputs: list[str], exclude: Path | None = None) -> list[tuple[Path, Path]]:
    """(file, path relative to its INPUT root) for every audio file named or under a folder;
    files under ``exclude`` (the output folder, when it lies inside an input folder) are left
    out, so a second run does not enhance the first run's outputs."""
    from .audio import find_audio_files

    found: list[tuple[Path, Path]] = []
    skip = exclude.resolve() if exclude is not None else None
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = [f for f in find_audio_files(path)
                     if skip is None or not f.resolve().is_relative_to(skip)]
            if not files:
                raise UserError(f"{path}: folder holds no audio files (.wav, .flac, .ogg, ...)")
            found += [(f, f.relative_to(path)) for f in files]
        elif path.exists():
            found.append((path, Path(path.name)))
        else:
            raise UserError(f"{path}: no such file or folder")
    return found


# `-o` names a file (not a folder) when it ends in one of these.
_FILE_OUTPUT_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".opus", ".aiff", ".aif",
                         ".au", ".m4a", ".aac", ".mp4", ".mov", ".mkv", ".webm", ".caf")
# Input formats whose folder outputs keep their format by default (lossless); others -> .wav.
_KEPT_SUFFIXES = (".wav", ".flac", ".aiff", ".aif")


def _unique_outputs(jobs: list[tuple[Path, Path]]) -> list[tuple[Path, Path]]:
    """Give outputs that several inputs map to distinct names (a/host.wav and b/host.wav ->
    host-a.wav and host-b.wav; episode.mp3 and episode.wav -> episode-mp3.wav and
    episode-wav.wav; else -2, -3, ...), saying so once each. Names compare case-insensitively
    (one file on macOS and Windows)."""
    def key(path: Path) -> str:
        return str(path.resolve()).lower()

    groups: dict[str, list[int]] = {}
    for i, (_, dst) in enumerate(jobs):
        groups.setdefault(key(dst), []).append(i)
    taken = set(groups)
    out = list(jobs)
    for members in groups.values():
        if len(members) < 2:
            continue
        srcs = [jobs[i][0] for i in members]
        exts = [s.suffix.lower().lstrip(".") for s in srcs]
        parents = [s.resolve().parent.name for s in srcs]
        tags = (exts if len(set(exts)) == len(exts) else
                parents if len(set(parents)) == len(parents) else
                [str(n + 1) for n in range(len(members))])
        taken.discard(key(jobs[members[0]][1]))
        for i, tag in zip(members, tags, strict=True):
            src, dst = jobs[i]
            new, n = dst.with_name(f"{dst.stem}-{tag}{dst.suffix}"), 2
            while key(new) in taken:
                new, n = dst.with_name(f"{dst.stem}-{tag}-{n}{dst.suffix}"), n + 1
            taken.add(key(new))
            log.warning("%s -> %s (another input has the same output name)", src, new)
            out[i] = (src, new)
    return out


def _plan_outputs(args: argparse.Namespace) -> list[tuple[Path, Path]]:
    """(input, output) pairs of an ``enhance`` run: ``-o`` ending in an audio extension is one
    file (format from the extension) for one input file; otherwise a folder, where folder
    inputs keep their tree and every output name is unique."""
    out = Path(args.output)
    is_file = out.suffix.lower() in _FILE_OUTPUT_SUFFIXES and not out.is_dir()
    inside = out if out.is_dir() or not is_file else None
    files = _collect_inputs(args.inputs, exclude=inside)
    if is_file:
        if len(files) != 1 or Path(args.inputs[0]).is_dir():
            what = "a folder" if any(Path(i).is_dir() for i in args.inputs) else \
                f"{len(files)} inputs"
            raise UserError(f"-o {out} is one file but the input is {what}; give a folder "
                            f"(-o {out.with_suffix('')}/) for several outputs")
        if args.format and out.suffix.lower().lstrip(".") != args.format:
            raise UserError(f"-o {out} and --format {args.format} disagree; drop --format (the "
                            "extension of -o sets the format)")
        return [(files[0][0], out)]
    from .media import MEDIA_EXTENSIONS

    jobs = []
    for src, rel in files:
        media = src.suffix.lower() in MEDIA_EXTENSIONS
        ext = "." + args.format if args.format else (
            src.suffix.lower() if src.suffix.lower() in _KEPT_SUFFIXES else ".wav")
        jobs.append((src, out / rel.with_suffix(ext)))
        if media and not args.format:
            # WAV, not AAC: AAC's encoder priming would make the output longer than the input
            # and shift it by ~21 ms against the video; --format m4a when size matters more.
            log.info("%s: its audio track is written as %s (WAV; --format m4a for AAC)", src,
                     jobs[-1][1])
    return _unique_outputs(jobs)


def _resolve_backend(backend: str, model: str | None, prefer_onnx: bool = False) -> str:
    """``auto``: ONNX for an ``.onnx`` model or when torch is not installed, else torch; with
    ``prefer_onnx``, the shipped model runs with ONNX too."""
    import importlib.util

    is_onnx = model is not None and str(model).lower().endswith(".onnx")
    if backend == "torch" and is_onnx:
        raise UserError(f"{model}: an ONNX model runs with --backend onnx (or auto)")
    if backend == "onnx" and model is not None and not is_onnx:
        raise UserError(f"{model}: --backend onnx needs an .onnx model; make one with "
                        "`speechmask export MODEL --onnx OUT.onnx`")
    if backend != "auto":
        return backend
    if is_onnx or (prefer_onnx and model is None):
        return "onnx"
    if importlib.util.find_spec("torch") is None:
        if model is not None:
            raise UserError(f"{model}: a torch checkpoint needs PyTorch, which is not installed; "
                            "pip install 'speechmask[torch]', or use an .onnx model")
        return "onnx"
    return "torch"


def _threads(requested: int | None) -> int | None:
    """Threads per process for the model: ``--threads`` when given (>= 1); else None when the
    user set OMP_NUM_THREADS (torch reads it, onnxruntime gets it too); else 1. One thread is
    the fastest on a busy machine (shipped model, 2 cores shared with a training job: torch
    with 2 threads 30-60x slower than with 1, onnxruntime 2.5x) and nearly so on an idle one;
    use --jobs for files in parallel."""
    if requested is not None:
        if requested < 1:
            raise UserError(f"--threads must be >= 1, got {requested}")
        return requested
    return None if os.environ.get("OMP_NUM_THREADS") else 1


def _load_enhancer(model: str | None, strength: float, backend: str, threads: int | None,
                   device: str = "cpu", prefer_onnx: bool = False,
                   atten_lim_db: float | None = None):
    """An ``Enhancer`` (torch, on ``device``) or ``OnnxEnhancer`` (CPU) for the backend;
    ``threads`` None: as OMP_NUM_THREADS says."""
    if device != "cpu" and backend == "auto":
        backend = "torch"  # a GPU means the torch backend
    if _resolve_backend(backend, model, prefer_onnx) == "onnx":
        if device == "cuda":
            raise UserError("--device cuda runs the torch backend; drop --backend onnx")
        from .onnx_backend import OnnxEnhancer

        if threads is None:
            try:
                threads = max(1, int(os.environ.get("OMP_NUM_THREADS", "1")))
            except ValueError:
                threads = 1
        return OnnxEnhancer.load(model, strength=strength, threads=threads,
                                 atten_lim_db=atten_lim_db)
    import torch

    from .enhance import Enhancer

    if threads is not None:
        torch.set_num_threads(threads)
    return Enhancer.load(model, strength=strength, device=device, atten_lim_db=atten_lim_db)


# The enhancer of a --jobs worker process (loaded once per process by _init_worker).
_WORKER_ENHANCER = None


def _init_worker(model: str | None, strength: float, backend: str, device: str,
                 atten_lim_db: float | None = None) -> None:
    global _WORKER_ENHANCER
    logging.basicConfig(level=logging.WARNING)
    _WORKER_ENHANCER = _load_enhancer(model, strength, backend, threads=1, device=device,
                                      prefer_onnx=True, atten_lim_db=atten_lim_db)


def _enhance_in_worker(src: Path, dst: Path, subtype: str | None = None,
                       residual: bool = False) -> tuple[dict | None, str | None]:
    """Worker side of --jobs: ``(summary, None)`` or ``(None, one-line error)``."""
    from .audio import AudioError
    from .pipeline import enhance_file

    try:
        return enhance_file(_WORKER_ENHANCER, src, dst, overwrite=True, subtype=subtype,
                            residual=residual), None
    except AudioError as err:
        return None, str(err)


def _write_report(path: Path, rows: list[dict]) -> None:
    """``--report``: one row per input (CSV, or JSON for a .json name), written atomically."""
    import csv
    import io

    from .atomic import write_text_atomic

    fields = ["input", "output", "status", "seconds", "rate", "channels", "subtype",
              "seconds_taken", "error"]
    if path.suffix.lower() == ".json":
        write_text_atomic(path, json.dumps([{k: r.get(k) for k in fields} for r in rows],
                                           indent=2) + "\n")
        return
    text = io.StringIO()
    writer = csv.DictWriter(text, fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in fields})
    write_text_atomic(path, text.getvalue())


def cmd_enhance(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .audio import AudioError
    from .pipeline import enhance_file

    if not 0.0 <= args.strength <= 1.0:
        raise UserError(f"--strength must be between 0 and 1, got {args.strength}")
    if args.atten_lim_db is not None and not args.atten_lim_db >= 0:
        raise UserError(f"--atten-lim-db must be >= 0 dB, got {args.atten_lim_db}")
    if args.loudness is not None and not -70 < args.loudness < 0:
        raise UserError(f"--loudness is a target in LUFS between -70 and 0 (e.g. -16), got "
                        f"{args.loudness}")
    if args.jobs < 0:
        raise UserError(f"--jobs must be >= 0 (0 = one per core), got {args.jobs}")
    if args.report and Path(args.report).suffix.lower() not in (".csv", ".json"):
        raise UserError(f"--report {args.report}: give a .csv or .json file name")
    if args.subtype:
        import soundfile as sf

        if args.subtype.upper() not in sf.available_subtypes():
            raise UserError(f"--subtype {args.subtype}: not a sound file subtype (PCM_16, "
                            "PCM_24, PCM_32, FLOAT, ...)")
    jobs = _plan_outputs(args)
    inputs = {s.resolve() for s, _ in jobs}
    from .pipeline import residual_path

    for _, dst in jobs:
        for target in (dst, residual_path(dst)) if args.residual else (dst,):
            if target.resolve() in inputs:
                raise UserError(f"{target}: output would overwrite an input; choose another -o")
    rows: dict[Path, dict] = {src: {"input": str(src), "output": str(dst)} for src, dst in jobs}
    todo = []
    for src, dst in jobs:
        if dst.exists() and not args.overwrite:
            log.warning("%s: exists, skipped (pass --overwrite to replace)", dst)
            rows[src]["status"] = "skipped"
        else:
            todo.append((src, dst))
    skipped = len(jobs) - len(todo)
    workers = min(args.jobs or os.cpu_count() or 1, len(todo)) or 1
    t0 = time.time()
    done, failed, seconds = 0, 0, 0.0

    def report(src: Path, dst: Path, info: dict | None, error: str | None) -> None:
        nonlocal done, failed, seconds
        if info is not None and args.loudness is not None:
            from .loudness import normalise_file

            try:
                before, gain_db = normalise_file(dst, args.loudness)
                info = {**info, "loudness_before": before, "loudness_gain_db": gain_db}
            except AudioError as err:
                info, error = None, f"{err} (loudness normalisation)"
        if info is None:
            failed += 1
            rows[src].update(status="failed", error=error)
            print(f"speechmask: failed: {error}", file=sys.stderr)
            return
        done += 1
        seconds += info["seconds"]
        rows[src].update(info, status="enhanced")
        rows[src]["input"] = str(src)
        if len(jobs) == 1:
            print(f"enhanced {src} ({info['seconds']:.1f} s, {info['rate']} Hz, "
                  f"{info['channels']} ch, {info['subtype']}) -> {dst}")

    bar = tqdm(total=len(todo), desc="enhance", unit="file", disable=args.quiet or len(todo) < 2)
    if workers == 1:
        enhancer = _load_enhancer(args.model, args.strength, args.backend,
                                  threads=_threads(args.threads), device=args.device,
                                  prefer_onnx=True, atten_lim_db=args.atten_lim_db)
        for src, dst in todo:
            try:
                report(src, dst, enhance_file(enhancer, src, dst, overwrite=True,
                                              progress=not args.quiet, subtype=args.subtype,
                                              residual=args.residual), None)
            except AudioError as err:
                report(src, dst, None, str(err))
            bar.update()
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # Fail fast, once, on a bad model or device.
        _load_enhancer(args.model, args.strength, args.backend, threads=1, device=args.device,
                       prefer_onnx=True, atten_lim_db=args.atten_lim_db)
        # spawn, not fork: a forked child of a process that has run torch can hang in OpenMP.
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_init_worker,
                                 initargs=(args.model, args.strength, args.backend,
                                           args.device, args.atten_lim_db)) as pool:
            futures = {pool.submit(_enhance_in_worker, src, dst, args.subtype,
                                   args.residual): (src, dst) for src, dst in todo}
            for future in as_completed(futures):
                report(*futures[future], *future.result())
                bar.update()
    bar.close()
    wall = time.time() - t0
    summary = f"{done} file(s) enhanced, {skipped} skipped, {failed} failed"
    if seconds:  # nothing enhanced (all skipped or failed): no speed to report
        summary += (f"; {seconds / 3600:.4f} h of audio in {wall:.1f} s (real-time factor "
                    f"{wall / seconds:.4f})")
    print(summary)
    if args.report:
        _write_report(Path(args.report), list(rows.values()))
    return EXIT_PARTIAL if failed else EXIT_OK


def cmd_stream(args: argparse.Namespace) -> int:
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
    backend = _resolve_backend(args.backend, args.model, prefer_onnx=True)
    if args.atten_lim_db is not None and not args.atten_lim_db >= 0:
        raise UserError(f"--atten-lim-db must be >= 0 dB, got {args.atten_lim_db}")
    enhancer = _load_enhancer(args.model, args.strength, backend, threads=1,
                              atten_lim_db=args.atten_lim_db)
    # The same block code as `enhance`: above 16 kHz the STFT runs at the input rate (no
    # resampler delay); below, resampled to 16 kHz and back.
    from .pipeline import MultiChannelStream

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
        log.info("streamed %.1f s of audio at %d Hz, %d channel(s): latency %.0f ms "
                 "(algorithmic) + up to one --block of %.0f ms; measured at most %.0f ms",
                 total_in / args.rate, args.rate, args.channels, latency_ms,
                 1000 * args.block / args.rate, worst_ms)
    return EXIT_OK


def _info_onnx(path: Path) -> int:
    """``info`` for an exported .onnx model: what its metadata says (no torch needed)."""
    from .onnx_backend import OnnxMaskModel, OnnxModelError

    try:
        model = OnnxMaskModel(path)
    except OnnxModelError as err:
        raise UserError(str(err)) from None
    cfg, stft_cfg = model.model_config, model.stft_cfg
    gates = 4 if model.cell == "lstm" else 3
    h, f, k = model.hidden, model.n_freqs, model.lookahead
    macs = sum(gates * h * ((f * (k + 1) if i == 0 else h) + h) for i in range(model.layers))
    macs += h * f
    params = sum(gates * (h * (f * (k + 1) if i == 0 else h) + h * h + 2 * h)
                 for i in range(model.layers)) + h * f + f
    ms_per_sample = 1000 / stft_cfg.sample_rate
    print(f"model: {path} (ONNX, runs with onnxruntime)")
    print(f"architecture: {model.cell.upper()} {model.layers}x{h} + dense {h}->{f} + sigmoid, "
          f"{cfg.get('compression', 'log')} features, "
          + (f"look-ahead {k} frame(s)" if k else "causal"))
    print(f"parameters: {params:,}")
    print(f"multiply-accumulates: {macs:,} per frame, "
          f"{macs * stft_cfg.sample_rate / stft_cfg.hop / 1e6:.1f} M per second of audio")
    print(f"STFT: {stft_cfg.sample_rate} Hz, n_fft {stft_cfg.n_fft}, hop {stft_cfg.hop} "
          f"(algorithmic latency {stft_cfg.stream_latency(k) * ms_per_sample:.0f} ms)")
    return EXIT_OK


def cmd_info(args: argparse.Namespace) -> int:
    if args.model and str(args.model).lower().endswith(".onnx"):
        return _info_onnx(Path(args.model))
    import importlib.util

    if args.model is None and importlib.util.find_spec("torch") is None:
        from .onnx_backend import default_onnx_path

        return _info_onnx(default_onnx_path())
    from .checkpoint import default_model_path, load_model, training_stages
    from .model import describe

    path = Path(args.model) if args.model else default_model_path()
    model, stft_cfg, payload = load_model(path)
    frames_per_second = stft_cfg.sample_rate / stft_cfg.hop
    info = describe(model, frames_per_second)
    print(f"model: {path}")
    print(f"architecture: {info['cell'].upper()} {info['layers']}x{info['hidden']} + dense "
          f"{info['hidden']}->{info['n_freqs']} + sigmoid, {info['compression']} features, "
          + (f"look-ahead {info['lookahead']} frame(s)" if info["lookahead"] else "causal"))
    print(f"parameters: {info['parameters']:,}")
    print(f"multiply-accumulates: {info['macs_per_frame']:,} per frame, "
          f"{info['mmacs_per_second']:.1f} M per second of audio")
    lookahead = info["lookahead"]
    ms_per_sample = 1000 / stft_cfg.sample_rate
    latency = stft_cfg.stream_latency(lookahead) * ms_per_sample
    print(f"STFT: {stft_cfg.sample_rate} Hz, n_fft {stft_cfg.n_fft}, hop {stft_cfg.hop} "
          f"(algorithmic latency {latency:.0f} ms"
          + (f", of which {lookahead * stft_cfg.hop * ms_per_sample:.0f} ms look-ahead: "
             f"{lookahead} frame(s))" if lookahead else ")"))
    stages = training_stages(payload)
    # One line per run or average the weights went through (earlier ones: `train --init`).
    for i, stage in enumerate(stages, 1):
        label = f"training (stage {i} of {len(stages)})" if len(stages) > 1 else "training"
        if stage.get("averaged_from"):
            print(f"{label}: weights = mean of {', '.join(map(str, stage['averaged_from']))}")
        else:
            print(f"{label}: epoch {stage.get('epoch')}, valid SNR "
                  f"{stage.get('valid_snr_db', float('nan')):.2f} dB, "
                  f"{stage.get('seconds', 0) / 60:.0f} min")
    train_config = payload.get("train_config")
    held = train_config.get("holdout_noise") if isinstance(train_config, dict) else None
    if held:
        print(f"noise types held out of training: {', '.join(held)} (the last stage's valid "
              "SNR is on these only)")
    calibration = payload.get("calibration")
    if isinstance(calibration, dict):
        by_exponent = {s["exponent"]: s for s in calibration.get("scores", [])}
        trained, chosen = by_exponent.get(1.0), by_exponent.get(model.cfg.mask_exponent)
        gain = (f": SNR {trained['snr_db']:.2f} -> {chosen['snr_db']:.2f} dB, SI-SDR "
                f"{trained['si_sdr_db']:.2f} -> {chosen['si_sdr_db']:.2f} dB"
                if trained and chosen else "")
        print(f"mask exponent: {model.cfg.mask_exponent:g} (calibrated on the "
              f"{calibration.get('set')}{gain})")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from .checkpoint import default_model_path, export_inference, load_model

    if not args.out and not args.onnx:
        raise UserError("give --out FILE.pt (slim checkpoint) and/or --onnx FILE.onnx")
    src = Path(args.model) if args.model else default_model_path()
    for target in filter(None, (args.out, args.onnx)):
        _refuse_target(Path(target), [src], args.overwrite)
    model, stft_cfg, _ = load_model(src)
    if args.out:
        out = export_inference(src, args.out, half=not args.float32)
        print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {model.parameter_count():,} "
              f"parameters, {'float32' if args.float32 else 'float16'} weights)")
    if args.onnx:
        try:
            from .onnx_backend import export_onnx
        except ImportError as err:  # onnx is an optional extra
            raise UserError(f"ONNX export needs the onnx package ({err.name} missing): "
                            "pip install 'speechmask[torch]'") from None
        out = export_onnx(model, stft_cfg, args.onnx)
        print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): frame-by-frame model with its "
              "recurrent state as inputs/outputs, runs with onnxruntime alone")
    return EXIT_OK


def cmd_average(args: argparse.Namespace) -> int:
    from .checkpoint import average_models, load_model

    target = Path(args.out)
    _refuse_target(target, [Path(src) for src in args.models], args.overwrite)
    out = average_models(args.models, target, half=not args.float32)
    model, _, _ = load_model(out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {model.parameter_count():,} "
          f"parameters): the mean of {len(args.models)} models' weights")
    return EXIT_OK


# ---------------------------------------------------------------------------------------------
# bench


def _find_checkout(start: Path) -> Path | None:
    """The source checkout holding ``benchmarks/peers`` at or above ``start``, if any."""
    for folder in (start, *start.parents):
        if (folder / "benchmarks" / "peers" / "__main__.py").is_file():
            return folder
    return None


def cmd_bench(args: argparse.Namespace) -> int:
    if args.peers is not None:  # the peer comparison needs the repo's benchmarks/ and [bench]
        import subprocess

        checkout = _find_checkout(Path.cwd())
        if checkout is None:
            raise UserError("`speechmask bench --peers` runs from a source checkout (it needs "
                            "benchmarks/peers): cd into the repository, pip install -e "
                            "'.[bench]', and run it again")
        cmd = [sys.executable, "-m", "benchmarks.peers", *args.peers]
        return subprocess.run(cmd, cwd=checkout).returncode
    from .bench import (
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
        from .atomic import write_text_atomic

        write_text_atomic(Path(args.json),
                          json.dumps(report_json(rows, hops, args.seconds), indent=2) + "\n")
    return EXIT_OK


# ---------------------------------------------------------------------------------------------
# serve


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        from .serve import ServeConfig, ServeError, run
    except ImportError as err:  # fastapi / uvicorn are the [serve] extra
        raise UserError(f"`speechmask serve` needs the web server packages ({err.name} missing):"
                        " pip install 'speechmask[serve]'") from None
    try:
        config = ServeConfig(host=args.host, port=args.port, model=args.model,
                             max_upload_mb=args.max_upload_mb, workers=args.workers,
                             token=args.token or os.environ.get("SPEECHMASK_TOKEN") or None)
    except ServeError as err:
        raise UserError(str(err)) from None
    print(f"speechmask serve: {config.url}" + (" (add ?token=YOUR_TOKEN)" if config.token else "")
          + "  API docs: " + config.url + "docs  (Ctrl+C stops)", flush=True)
    run(config)
    return EXIT_OK


def _add_serve_parser(sub: argparse._SubParsersAction) -> None:
    se = sub.add_parser("serve", help="local web page + HTTP API: drop files, hear before/after, "
                        "denoise the microphone live")
    se.add_argument("--host", default="127.0.0.1",
                    help="interface to bind (default 127.0.0.1: this machine only)")
    se.add_argument("--port", type=int, default=8000)
    se.add_argument("--model", default=None,
                    help="exported .onnx or .pt checkpoint (default: shipped model, ONNX)")
    se.add_argument("--max-upload-mb", type=float, default=100.0,
                    help="largest accepted upload in MB (default 100)")
    se.add_argument("--workers", type=int, default=1,
                    help="files enhanced at once, one core each (default 1)")
    se.add_argument("--token", default=None,
                    help="require this secret on every request (Authorization: Bearer or "
                    "?token=); also read from $SPEECHMASK_TOKEN")
    se.set_defaults(func=cmd_serve)


# ---------------------------------------------------------------------------------------------
# parser


def _needs_torch(args: argparse.Namespace) -> int:
    raise ModuleNotFoundError("No module named 'torch'", name="torch")


def _add_training_parsers(sub: argparse._SubParsersAction) -> None:
    """train, finetune, tune and evaluate (their defaults come from torch-importing modules)."""
    # train
    from .calibrate import DEFAULT_EXPONENTS
    from .data import AugmentConfig, MixConfig  # noqa: F401  (defaults below mirror them)
    from .model import ModelConfig
    from .train import LOSSES, SELECT_METRICS, TrainConfig

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
    tr.add_argument("--compression", choices=("log", "power"), default=None,
                    help=f"default {mdef.compression}")
    tr.add_argument("--target", choices=("ibm", "irm"), default=None,
                    help=f"mask target (default {tdef.target})")
    tr.add_argument("--loss", choices=LOSSES, default=None, help=f"default {tdef.loss}")
    tr.add_argument("--snr-weight", type=float, default=None,
                    help=f"default {tdef.snr_weight}")
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
                         "architecture replaces --cell/--hidden/--layers/--compression)")
    tr.add_argument("--resume", action="store_true", help="continue the run in --out")
    tr.add_argument("--overwrite", action="store_true", help="start again in a used --out")
    # Tests: every process saves its final weights to DIR/rank<R>.pt.
    tr.add_argument("--dump-weights", default=None, metavar="DIR", help=argparse.SUPPRESS)
    tr.set_defaults(func=cmd_train)

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
    ft.set_defaults(func=cmd_finetune)

    tu = sub.add_parser("tune", help="hyper-parameter search with Optuna (resumable, "
                        "several processes can share one study)")
    tu.add_argument("--trials", type=int, default=10, help="new trials for this process")
    tu.add_argument("--storage", default="sqlite:///study.db", help="Optuna storage URL")
    tu.add_argument("--study", default="speechmask", help="study name in the storage")
    tu.add_argument("--out", default="runs/tune", help="folder for the trials' runs")
    tu.add_argument("--corpus", default=None)
    tu.add_argument("--epochs", type=int, default=6, help="epochs per trial")
    tu.add_argument("--examples-per-epoch", type=int, default=2000)
    tu.add_argument("--batch-size", type=int, default=tdef.batch_size)
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
    tu.set_defaults(func=cmd_tune)

    ev = sub.add_parser("evaluate", help="score a model on a fixed evaluation set")
    ev.add_argument("--model", default=None, help="checkpoint (default: shipped model)")
    ev.add_argument("--pairs", default=None, help="pairs.csv of a set made by `data testset`")
    ev.add_argument("--set", choices=("valid", "test", "ood", "clean", "heldout"), default=None,
                    help="build a fixed set in memory instead of --pairs: the corpus valid/test "
                    "splits; ood (unseen speakers, noises and rooms); clean (clean speech "
                    "only: does the model leave it alone?); heldout (the training run's "
                    "held-out speakers)")
    ev.add_argument("--count", type=int, default=None, help="first N pairs only")
    ev.add_argument("--noise-types", default=None, metavar="TYPE[,TYPE...]",
                    help="with --set: only these noise types (e.g. the ones a run held out of "
                    "training with --hold-out-noise)")
    ev.add_argument("--corpus", default=None)
    ev.add_argument("--systems", default="noisy,oracle_ibm,oracle_irm,model",
                    help="comma list of noisy, oracle_ibm, oracle_irm, model, reference")
    ev.add_argument("--reference", default=None, metavar="MODEL",
                    help="a second model to compare --model with on the same files (adds the "
                    "reference system; the paired difference and its standard error are shown)")
    ev.add_argument("--metrics", default="snr,si_sdr,pesq,stoi")
    ev.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                    help="processes for PESQ/STOI scoring")
    ev.add_argument("--json", default=None, help="also write the report as JSON")
    ev.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu",
                    help="where the model runs (auto: CUDA when present)")
    ev.set_defaults(func=cmd_evaluate)

    ca = sub.add_parser("calibrate", help="fit a trained model's mask exponent on held-out "
                        "pairs like the audio you will enhance, and write the calibrated model")
    ca.add_argument("model", help="checkpoint to calibrate, e.g. RUN/best.pt")
    ca.add_argument("--out", required=True, help="calibrated checkpoint to write")
    ca.add_argument("--pairs", default=None,
                    help="pairs.csv (columns id,noisy,clean; paths relative to it) of held-out "
                    "pairs like the recordings you will enhance, instead of --set")
    ca.add_argument("--set", choices=("valid",), default="valid",
                    help="the corpus split to fit on (never test: it is kept for reporting)")
    ca.add_argument("--count", type=int, default=None, help="first N pairs only")
    ca.add_argument("--corpus", default=None)
    ca.add_argument("--exponents", default=",".join(f"{p:g}" for p in DEFAULT_EXPONENTS),
                    help="comma list of candidate mask exponents, each in (0, 4]")
    ca.add_argument("--overwrite", action="store_true")
    ca.set_defaults(func=cmd_calibrate)


# Help of the training commands in a parser built without them (see _needs_training).
_LIGHT_HELP = {"train": "train a mask model on the corpus", "finetune": "adapt a model to your "
               "data or your noise", "tune": "hyper-parameter search with Optuna",
               "evaluate": "score a model on a fixed evaluation set", "calibrate": "fit a "
               "trained model's mask exponent and write the calibrated model"}


def _needs_training(argv: list[str]) -> bool:
    """Whether the command line may need the training parsers, whose defaults import torch
    (~1.5 s): not for --version, enhance, stream, info and other inference commands."""
    if "--version" in argv[:1]:
        return False
    command = next((a for a in argv if not a.startswith("-")), None)
    return command in (None, *_LIGHT_HELP)


def build_parser(training: bool = True) -> argparse.ArgumentParser:
    """The parser; ``training=False`` builds train/finetune/tune/evaluate/calibrate as stubs,
    without importing torch."""
    from . import __version__

    p = argparse.ArgumentParser(prog="speechmask", description="Speech denoising with a "
                                "recurrent time-frequency mask network.")
    p.add_argument("--version", action="version", version=f"speechmask {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = p.add_subparsers(dest="command", required=True)

    # data
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
    ts.set_defaults(func=cmd_data_testset)
    st = dsub.add_parser("stats", help="files, hours, speakers and noise types per split")
    st.add_argument("--corpus", default=None)
    st.set_defaults(func=cmd_data_stats)
    im = dsub.add_parser("import", help="convert your own data into a training dataset folder")
    im.add_argument("src", help="course layout (trs/trn/trx + vs/vn/vx), clean_*/noisy_* pairs, "
                    "or clean/ + noise/ folders")
    im.add_argument("--out", required=True, help="dataset folder to write")
    im.add_argument("--layout", choices=("auto", "course", "pairs", "mixed"), default="auto")
    im.add_argument("--noise", default=None, help="noise folder (mixed layout)")
    im.add_argument("--valid-fraction", type=float, default=0.1)
    im.add_argument("--seed", type=int, default=0)
    im.add_argument("--overwrite", action="store_true")
    im.set_defaults(func=cmd_data_import)

    try:
        if not training:  # a command that needs no torch: do not import it for these parsers
            raise ImportError("not needed")
        _add_training_parsers(sub)
    except ImportError:  # an ONNX-only install: no torch, so no training tools
        for name in ("train", "finetune", "tune", "evaluate", "calibrate"):
            stub = sub.add_parser(name, help="(needs PyTorch: pip install 'speechmask[torch]')"
                                  if training else _LIGHT_HELP[name])
            stub.set_defaults(func=_needs_torch)

    en = sub.add_parser("enhance", help="denoise files or folders")
    en.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files or folders")
    en.add_argument("-o", "--output", required=True,
                    help="output file when it ends in an audio extension (.wav, .flac, .ogg, "
                    ".mp3, .opus, .aiff, .m4a: the format), for one input file; else a folder "
                    "(folder inputs keep their tree; outputs with the same name get a suffix)")
    en.add_argument("--model", default=None,
                    help="checkpoint .pt or exported .onnx (default: shipped model)")
    en.add_argument("--strength", type=float, default=1.0,
                    help="0 = input unchanged, 1 = full mask (default 1)")
    en.add_argument("--atten-lim-db", type=float, default=None, metavar="DB",
                    help="remove at most DB dB anywhere (e.g. 12: noise is lowered, never "
                    "gated; default: no limit)")
    en.add_argument("--format", choices=("wav", "flac", "aiff", "ogg", "mp3", "opus", "m4a"),
                    default=None, help="output format for a folder -o (default: keep "
                    ".wav/.flac/.aiff, else .wav; m4a is AAC, up to ~2k samples longer)")
    en.add_argument("--subtype", default=None, metavar="SUBTYPE",
                    help="sample format: PCM_16, PCM_24, PCM_32, FLOAT, ... (default: the "
                    "input's when the output format holds it, e.g. 24-bit and float WAV stay "
                    "so; else 16-bit). Samples above full scale survive only in FLOAT")
    en.add_argument("--loudness", type=float, default=None, metavar="LUFS",
                    help="normalise each output to this integrated loudness (ITU-R BS.1770, "
                    "e.g. -16 for podcasts, -23 for broadcast); a PCM output is not raised "
                    "past a -1 dBFS peak")
    en.add_argument("--residual", action="store_true",
                    help="also write what was removed (input minus output) as "
                    "NAME.residual.EXT next to each output")
    en.add_argument("--report", default=None, metavar="FILE.csv|FILE.json",
                    help="also write one row per input: input, output, status (enhanced, "
                    "skipped, failed), duration, rate, channels, subtype, seconds taken, error")
    en.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    en.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu",
                    help="torch backend: where the model runs (auto: CUDA when present)")
    en.add_argument("--jobs", type=int, default=1,
                    help="files processed in parallel, one process each (0 = one per core)")
    en.add_argument("--backend", choices=("auto", "torch", "onnx"), default="auto",
                    help="auto (default): onnxruntime for the shipped model or an .onnx model "
                    "(2x faster than torch on a CPU, 30x on a busy one), torch for a .pt "
                    "checkpoint or --device cuda")
    en.add_argument("--threads", type=int, default=None,
                    help="threads per process for the model (default: OMP_NUM_THREADS when "
                    "set, else 1: the fastest on a shared machine; --jobs runs files in "
                    "parallel)")
    # -q after the subcommand too (SUPPRESS: an absent flag keeps the top-level value).
    en.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                    help="no progress bars")
    en.set_defaults(func=cmd_enhance)
    inf = sub.add_parser("info", help="size, cost and training figures of a model")
    inf.add_argument("--model", default=None, help="checkpoint (default: shipped model)")
    inf.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                     help=argparse.SUPPRESS)
    inf.set_defaults(func=cmd_info)

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
    sm.add_argument("--keep-latency", action="store_true",
                    help="output the delayed stream (the latency as leading silence: 32 ms, "
                    "+ 16 ms per look-ahead frame; then the signal) instead of trimming it to "
                    "the input's length and alignment")
    sm.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                    help="no log line at the end")
    sm.set_defaults(func=cmd_stream)

    ex = sub.add_parser("export", help="write a slim checkpoint and/or an ONNX model")
    ex.add_argument("model", nargs="?", default=None,
                    help="checkpoint, e.g. RUN/best.pt (default: shipped model)")
    ex.add_argument("--out", default=None, help="slim .pt checkpoint to write")
    ex.add_argument("--onnx", default=None, help="ONNX model to write")
    ex.add_argument("--float32", action="store_true", help="keep float32 weights (default: "
                    "float16, half the size)")
    ex.add_argument("--overwrite", action="store_true")
    ex.set_defaults(func=cmd_export)

    av = sub.add_parser("average", help="average the weights of models of one training "
                        "lineage (e.g. a model and the run trained on from it)")
    av.add_argument("models", nargs="+", help="two or more checkpoints")
    av.add_argument("--out", required=True, help="averaged .pt checkpoint to write")
    av.add_argument("--float32", action="store_true", help="keep float32 weights (default: "
                    "float16, half the size)")
    av.add_argument("--overwrite", action="store_true")
    av.set_defaults(func=cmd_average)

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
    be.set_defaults(func=cmd_bench)
    _add_serve_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(training=_needs_training(argv))
    args, unknown = parser.parse_known_args(argv)
    if unknown and getattr(args, "func", None) is not _needs_torch:
        args = parser.parse_args(argv)  # reports the unknown arguments as usual
    if getattr(args, "command", None) == "train" and hasattr(args, "epochs"):
        args.argv = argv  # `train --nproc N` re-runs this command line in N processes
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(levelname)s: %(message)s" if not args.debug else
        "%(asctime)s %(name)s %(levelname)s: %(message)s",
    )
    for noisy in ("matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("speechmask: interrupted", file=sys.stderr)
        return 130
    except ModuleNotFoundError as err:
        if args.debug or err.name != "torch":
            raise
        print(f"speechmask: error: `speechmask {args.command}` needs PyTorch, which is not "
              "installed: pip install 'speechmask[torch]' (enhance and stream run without it)",
              file=sys.stderr)
        return EXIT_ERROR
    except _known_errors() as err:
        if args.debug:
            raise
        message = first_line(err)
        print(f"speechmask: error: {message}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as err:
        if args.debug:
            raise
        where = f"{err.filename}: " if getattr(err, "filename", None) else ""
        print(f"speechmask: error: {where}{err.strerror or err}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
