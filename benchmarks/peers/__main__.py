"""speechmask vs the denoisers users know, on the project's fixed test set.

    python -m benchmarks.peers --out runs/peers [--set test|ood|clean|...] [--count N]
                               [--jobs N] [--json FILE] [--systems noisy,speechmask,...]
                               [--model PATH]
                               [--merge EARLIER/peers.json]
    python -m benchmarks.peers --from-json RUN/peers.json [--json FILE]

Systems (``--systems`` keys): noisy, oracle_ibm, oracle_irm, speechmask (torch, whole file),
speechmask_onnx (the ONNX export with onnxruntime, whole file: the default of ``speechmask
enhance``), speechmask_onnx_int8 (the same with int8 recurrences, ``model.int8.onnx``: ``enhance
--precision int8``), speechmask_stream (torch, frame by frame), speechmask_onnx_stream (ONNX,
frame by frame, with the model's int8 one-frame graph: what ``speechmask stream`` runs),
speechmask_onnx_stream_f32 (the same in float32), rnnoise, deepfilternet3 (df.enhance on the
whole file, as its authors run it), deepfilternet3_stream (its real-time libDF runtime), speex,
webrtc, noisereduce. ``--merge`` adds this run's systems to an earlier report on the same pairs;
``--from-json`` prints the tables of an earlier report again, from its per-file rows, without
running anything. Peers are optional
(``pip install 'speechmask[bench]'``); a missing one is listed as "not installed" and skipped.
A missing speechmask model is reported the same way (pass ``--model runs/default/best.pt`` to
use another).

Method: each output is shifted back by its delay (FFT cross-correlation with the noisy input,
0-100 ms), then scored against the clean speech with SNR, SI-SDR, PESQ-WB and STOI; the CPU
real-time factor is measured on one thread. Means overall, by input SNR and by noise type are
printed as markdown tables; a set with room pairs (ood) also gets them by condition: dry, rooms
against the reverberant speech, rooms against the early reference (direct sound + 50 ms), each
with speechmask's paired differences to every peer. ``--out DIR`` also writes ``peers.md``,
``peers.json``, ``peers_metrics.png`` (bar chart), ``peers_spectrogram.png`` (noisy /
speechmask / clean) and ``samples/`` (3 noisy + speechmask FLAC pairs at different noise types).

Run time: about 1.75 CPU seconds per second of audio with every system (measured with
``--count 8`` on a 2-core AMD EPYC shared with a training job): the whole test set (864 pairs,
48.5 min of audio) costs about 1.5 CPU hours, i.e. about 45 min with ``--jobs 2`` on an idle
2-core machine. The largest shares: PESQ/STOI scoring of 10 systems, speechmask streaming's
per-10-ms Python loop (RTF ~0.4) and DeepFilterNet3 (RTF ~0.3). ``--count 8`` takes ~30 s.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# One thread for every numeric library, set before numpy/scipy/torch load them (inherited by the
# spawned workers): the real-time factors are single-thread figures.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
             "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "RAYON_NUM_THREADS"):
    os.environ[_var] = "1"

from tqdm import tqdm  # noqa: E402

from speechmask.audio import MODEL_RATE, write_audio  # noqa: E402
from speechmask.evalsets import SETS  # noqa: E402
from speechmask.metrics import METRICS  # noqa: E402

from .report import (  # noqa: E402
    aggregate,
    format_machine,
    format_tables,
    machine_info,
    plot_bars,
    plot_spectrograms,
    write_json,
    write_markdown,
)
from .runner import (  # noqa: E402
    MAX_DELAY_MS,
    Pair,
    RunConfig,
    default_pair_for_figures,
    load_test_pairs,
    run_pairs,
    sample_pairs,
)
from .systems import ALL_KEYS, SpeechmaskOffline, build_systems  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peers",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--set", dest="split", choices=SETS, default="test",
                        help="fixed set built in memory: the corpus' valid/test splits (test: "
                        "864 pairs), ood (500 pairs: unseen speakers, noises and rooms), clean "
                        "(140 clean files: pass-through), heldout (default: test)")
    parser.add_argument("--pairs", default=None, help="score the pairs of this pairs.csv instead")
    parser.add_argument("--corpus", default=None, help="corpus folder (default: bundled)")
    parser.add_argument("--count", type=int, default=None,
                        help="use the first N pairs (default: the whole set)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="worker processes (default: all cores)")
    parser.add_argument("--model", default=None,
                        help="speechmask checkpoint (default: the shipped model)")
    parser.add_argument("--systems", default=",".join(ALL_KEYS),
                        help=f"comma list of systems (default: all: {','.join(ALL_KEYS)})")
    parser.add_argument("--max-delay-ms", type=float, default=MAX_DELAY_MS,
                        help="largest output delay searched (default: 100 ms)")
    parser.add_argument("--json", default=None, help="also write the report as JSON here")
    parser.add_argument("--merge", default=None, metavar="PEERS_JSON",
                        help="peers.json of an earlier run on the same pairs: the systems this "
                        "run does not score are taken from it (add one system to a long run)")
    parser.add_argument("--from-json", default=None, metavar="PEERS_JSON",
                        help="run nothing: re-make the tables of an earlier report from its "
                        "per-file rows (e.g. after the report gained a table)")
    parser.add_argument("--out", default=None,
                        help="folder for peers.md, peers.json, figures and sample clips")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.count is not None and args.count < 1:
        parser.error(f"--count must be >= 1, got {args.count}")
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    keys = tuple(k.strip() for k in args.systems.split(",") if k.strip())
    unknown = [k for k in keys if k not in ALL_KEYS]
    if unknown or not keys:
        parser.error(f"unknown system(s) {', '.join(unknown) or '(none)'}; use some of "
                     f"{', '.join(ALL_KEYS)}")
    args.keys = keys
    if args.from_json and (args.out or args.merge):
        parser.error("--from-json re-makes tables only: use it without --out and --merge")
    return args


# What pystoi returns for a reference with too little speech to score (< 30 frames);
# speechmask.metrics.stoi now gives NaN there, and the reports skip NaN.
PYSTOI_UNSCORABLE = 1e-5


def report_again(path: str) -> dict:
    """The report of an earlier run, aggregated again from its per-file rows and systems (the
    tables then include whatever :func:`aggregate` computes today). A STOI of exactly
    :data:`PYSTOI_UNSCORABLE`, stored by runs before metrics.stoi returned NaN for it, is
    taken as the NaN it stands for."""
    import json

    try:
        earlier = json.loads(Path(path).read_text())
        rows, infos = earlier["per_pair"], earlier["systems"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"{path}: not a peers report ({exc}); pass the peers.json an earlier "
                         "run wrote") from None
    for row in rows:
        if row.get("stoi") == PYSTOI_UNSCORABLE:
            row["stoi"] = float("nan")
    report = aggregate(rows, infos, earlier.get("metrics", list(METRICS)),
                       source=earlier.get("source", ""), machine=earlier.get("machine"))
    for key in ("jobs", "elapsed_s"):
        if key in earlier:
            report[key] = earlier[key]
    return report


def merge_earlier(path: str, rows: list[dict], infos: list[dict], ids: set[str]
                  ) -> tuple[list[dict], list[dict]]:
    """Add the per-pair rows and system infos of an earlier report for the systems this run did
    not score. The earlier run must have scored exactly the same pairs."""
    import json

    earlier = json.loads(Path(path).read_text())
    old_ids = {r["id"] for r in earlier["per_pair"]}
    if old_ids != ids:
        raise SystemExit(f"{path}: scored {len(old_ids)} other pairs than this run's {len(ids)}; "
                         "merge only runs on the same set and --count")
    new_keys = {i["key"] for i in infos}
    kept = [i for i in earlier["systems"] if i["key"] not in new_keys]
    order = {key: n for n, key in enumerate(ALL_KEYS)}
    merged = sorted(kept + infos, key=lambda i: order.get(i["key"], len(order)))
    return [r for r in earlier["per_pair"] if r["system"] not in new_keys] + rows, merged


def write_figures_and_clips(pairs: list[Pair], report: dict, out: Path,
                            model_path: str | None) -> list[str]:
    """Bar chart, spectrogram and sample clips under ``out``; returns markdown lines for them."""
    lines = ["## Figures and clips", ""]
    bars = plot_bars(report, out / "peers_metrics.png")
    lines.append(f"![means per system]({bars.name})")
    enh = SpeechmaskOffline(model_path)
    if not enh.available():
        msg = f"speechmask {enh.status()}: no spectrogram or sample clips"
        print(msg)
        return [*lines, "", msg]
    shown = default_pair_for_figures(pairs)
    spec = plot_spectrograms(
        [("noisy", shown.noisy), ("speechmask", enh.process(shown.noisy)),
         ("clean", shown.clean)],
        out / "peers_spectrogram.png",
        title=f"{shown.id} ({shown.noise_type}, input SNR {shown.input_snr_db:g} dB)")
    lines += ["", f"![noisy / speechmask / clean]({spec.name})", "", "Sample clips (16 kHz FLAC):",
              ""]
    for p in sample_pairs(pairs, 3):
        noisy = write_audio(out / "samples" / f"{p.id}_noisy.flac", p.noisy, MODEL_RATE)
        clean = write_audio(out / "samples" / f"{p.id}_speechmask.flac", enh.process(p.noisy),
                            MODEL_RATE)
        lines.append(f"- {p.noise_type}, input SNR {p.input_snr_db:g} dB: "
                     f"[noisy](samples/{noisy.name}) / [speechmask](samples/{clean.name})")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit code."""
    args = parse_args(argv)
    if args.from_json:
        report = report_again(args.from_json)
        print(format_tables(report))
        if args.json:
            print(f"\nwrote {write_json(report, args.json)}")
        return 0
    start = time.perf_counter()
    machine = machine_info()
    print(format_machine(machine))
    systems = build_systems(args.keys, args.model)
    infos = [s.info() for s in systems]
    for info in infos:
        if not info["available"]:
            print(f"  skipped {info['name']}: {info['status']}")
    runnable = tuple(i["key"] for i in infos if i["available"])
    if not runnable:
        print("no system can run: nothing to do", file=sys.stderr)
        return 1

    pairs, source = load_test_pairs(args.split, args.count, args.corpus, args.pairs)
    seconds = sum(len(p.noisy) for p in pairs) / MODEL_RATE
    print(f"{len(pairs)} pairs, {seconds / 60:.1f} min of audio, {len(runnable)} systems, "
          f"{args.jobs} job(s)")
    cfg = RunConfig(keys=runnable, model_path=args.model, metrics=tuple(METRICS),
                    max_delay_ms=args.max_delay_ms)
    bar = tqdm(total=len(pairs), desc="pairs", disable=args.quiet, leave=False)

    def progress(done: int, total: int) -> None:
        bar.update(done - bar.n)

    rows = run_pairs(pairs, cfg, jobs=min(args.jobs, len(pairs)), progress=progress)
    bar.close()
    if args.merge:
        rows, infos = merge_earlier(args.merge, rows, infos, {p.id for p in pairs})
    report = aggregate(rows, infos, cfg.metrics, source=source, machine=machine)
    report["jobs"] = args.jobs
    report["elapsed_s"] = time.perf_counter() - start
    tables = format_tables(report)
    print()
    print(tables)
    if args.json:
        print(f"\nwrote {write_json(report, args.json)}")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        extras = write_figures_and_clips(pairs, report, out, args.model)
        report["elapsed_s"] = time.perf_counter() - start
        write_json(report, out / "peers.json")
        write_markdown(report, tables, out / "peers.md", extras)
        written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
        print(f"wrote in {out}: {', '.join(written)}")
    print(f"done in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
