"""``speechmask evaluate`` (score a model on a fixed set) and ``speechmask calibrate`` (fit a
model's mask exponent on such a set)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from .common import EXIT_OK, UserError, comma_list


def add_parsers(sub: argparse._SubParsersAction) -> None:
    from ..calibrate import DEFAULT_EXPONENTS  # --exponents' default

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
    ev.set_defaults(func=run_evaluate)

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
    ca.set_defaults(func=run_calibrate)


def run_evaluate(args: argparse.Namespace) -> int:
    from ..evaluate import evaluate, format_table

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
        noise_types=comma_list(args.noise_types) or None,
        reference_path=Path(args.reference) if args.reference else None,
    )
    print(format_table(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
        print(f"wrote {args.json}")
    return EXIT_OK


def run_calibrate(args: argparse.Namespace) -> int:
    from ..calibrate import best_exponent, check_exponents, score_exponents, write_calibrated
    from ..checkpoint import load_model
    from ..evaluate import load_eval_items
    from ..outputs import refuse_target

    src, out = Path(args.model), Path(args.out)
    refuse_target(out, [src], args.overwrite)
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
