"""``speechmask enhance``: denoise files or folders, one process or ``--jobs`` of them. Where
the outputs go is :func:`speechmask.outputs.plan_outputs`'; this module runs the files and
reports on them."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from .common import EXIT_OK, EXIT_PARTIAL, UserError, load_enhancer, log, threads_per_process


def add_parser(sub: argparse._SubParsersAction) -> None:
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
    en.add_argument("--precision", choices=("auto", "int8", "float32"), default="auto",
                    help="ONNX backend: auto (default): the model's graph with int8 recurrent "
                    "products where it has one beside it (model.int8.onnx: shipped; written "
                    "by `speechmask export --onnx`), else float32; 0.72-0.76x float32's CPU, "
                    "within 0.01 dB SI-SDR and 0.002 PESQ-WB of it on noisy speech "
                    "(docs/benchmark.md). int8 "
                    "insists on that graph; float32: the whole float32 graph, the output "
                    "torch gives")
    en.add_argument("--threads", type=int, default=None,
                    help="threads per process for the model (default: OMP_NUM_THREADS when "
                    "set, else 1: the fastest on a shared machine; --jobs runs files in "
                    "parallel)")
    # -q after the subcommand too (SUPPRESS: an absent flag keeps the top-level value).
    en.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                    help="no progress bars")
    en.set_defaults(func=run)


# The enhancer of a --jobs worker process (loaded once per process by _init_worker).
_WORKER_ENHANCER = None


def _init_worker(model: str | None, strength: float, backend: str, device: str,
                 atten_lim_db: float | None = None, precision: str | None = None) -> None:
    global _WORKER_ENHANCER
    logging.basicConfig(level=logging.WARNING)
    _WORKER_ENHANCER = load_enhancer(model, strength, backend, threads=1, device=device,
                                     prefer_onnx=True, atten_lim_db=atten_lim_db,
                                     precision=precision)


def _enhance_in_worker(src: Path, dst: Path, subtype: str | None = None,
                       residual: bool = False) -> tuple[dict | None, str | None]:
    """Worker side of --jobs: ``(summary, None)`` or ``(None, one-line error)``."""
    from ..audio import AudioError
    from ..pipeline import enhance_file

    try:
        return enhance_file(_WORKER_ENHANCER, src, dst, overwrite=True, subtype=subtype,
                            residual=residual), None
    except AudioError as err:
        return None, str(err)


def _what_ran(enhancer: object) -> str:
    """What ran the files: the ONNX graph's file name and weights, or torch."""
    model = getattr(enhancer, "model", None)
    weights = getattr(model, "weights", None)
    if weights is None:
        return "torch"
    kind = "int8 recurrences" if weights == "int8" and not model.frame_graph else weights
    return f"{model.path.name} (ONNX, {kind})"


def _write_report(path: Path, rows: list[dict]) -> None:
    """``--report``: one row per input (CSV, or JSON for a .json name), written atomically."""
    import csv
    import io

    from ..atomic import write_text_atomic

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


def _check_args(args: argparse.Namespace) -> None:
    """One-line errors for flag values out of range, before any file is touched."""
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


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..audio import AudioError
    from ..outputs import plan_outputs, refuse_overwriting_inputs
    from ..pipeline import enhance_file

    _check_args(args)
    jobs = plan_outputs(args.inputs, args.output, args.format)
    refuse_overwriting_inputs(jobs, args.residual)
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
            from ..loudness import normalise_file

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
        enhancer = load_enhancer(args.model, args.strength, args.backend,
                                 threads=threads_per_process(args.threads), device=args.device,
                                 prefer_onnx=True, atten_lim_db=args.atten_lim_db,
                                 precision=args.precision)
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
        enhancer = load_enhancer(args.model, args.strength, args.backend, threads=1,
                                 device=args.device, prefer_onnx=True,
                                 atten_lim_db=args.atten_lim_db, precision=args.precision)
        # spawn, not fork: a forked child of a process that has run torch can hang in OpenMP.
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_init_worker,
                                 initargs=(args.model, args.strength, args.backend,
                                           args.device, args.atten_lim_db,
                                           args.precision)) as pool:
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
                    f"{wall / seconds:.4f}) with {_what_ran(enhancer)}")
    print(summary)
    if args.report:
        _write_report(Path(args.report), list(rows.values()))
    return EXIT_PARTIAL if failed else EXIT_OK
