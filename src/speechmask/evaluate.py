"""Evaluation on a fixed set: noisy input, oracle IBM/IRM upper bounds, a model and optionally a
second model to compare with, scored with SNR (the baseline's formula), SI-SDR, PESQ-WB and STOI;
means overall, by input SNR, by noise type and dry/room, and the paired difference (model minus
the reference system) with its standard error over files."""

from __future__ import annotations

import logging
import math
import os
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .corpus import Corpus, DataError
from .evalsets import load_pair, read_pairs
from .masks import oracle_enhance
from .metrics import METRICS, score

log = logging.getLogger(__name__)

SYSTEMS = ("noisy", "oracle_ibm", "oracle_irm", "model", "reference")
METRIC_LABELS = {"snr": "SNR dB", "si_sdr": "SI-SDR dB", "pesq": "PESQ-WB", "stoi": "STOI"}


def _score_job(job: tuple) -> tuple:
    key, clean, est, metrics = job
    return key, score(clean, est, metrics)


def _mean(values: list[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return float(np.mean(vals)) if vals else float("nan")


def load_eval_items(
    pairs_csv: Path | None = None,
    split: str | None = None,
    count: int | None = None,
    corpus_dir: str | None = None,
    noise_types: Sequence[str] | None = None,
) -> tuple[list[tuple], str]:
    """The pairs of a ``pairs.csv`` set, or of the fixed set ``split`` (one of
    :data:`speechmask.evalsets.SETS`) built in memory, as ``(id, clean [N], noisy [N],
    input_snr_db, noise_type, room)`` tuples (first ``count`` only), with a label naming where
    they came from; ``noise_types`` keeps a valid/test set's noise to those types (e.g. the ones
    a run held out of training). DataError when there are none."""
    if pairs_csv is not None:
        items = []
        for row in read_pairs(pairs_csv)[:count]:
            clean, noisy = load_pair(row)
            items.append((row.id, clean, noisy, row.input_snr_db, row.noise_type, row.room))
        source = str(pairs_csv)
    elif split is not None:
        from .evalsets import eval_set

        pairs = eval_set(split, count, main=Corpus(corpus_dir), noise_types=noise_types)
        items = [(p.id, p.clean, p.noisy, p.input_snr_db, p.noise_type, p.room) for p in pairs]
        source = f"fixed {split} set (in memory)"
        if noise_types:
            source = f"{split} set with {', '.join(noise_types)} noise only (in memory)"
    else:
        raise DataError("give a pairs.csv or a fixed set (valid, test, ood, clean, heldout) to "
                        "evaluate on")
    if not items:
        raise DataError(f"{source}: no pairs to evaluate")
    return items, source


def paired_difference(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, int]:
    """Mean of ``a - b`` over the files where both are finite, its standard error
    (``std(ddof=1) / sqrt(n)``) and ``n``: the honest way to say one system beats another on
    the same files (a 0.1 dB mean with a 0.3 dB error is no difference)."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return float("nan"), float("nan"), 0
    se = float(d.std(ddof=1) / math.sqrt(d.size)) if d.size > 1 else float("nan")
    return float(d.mean()), se, int(d.size)


def evaluate(
    model_path: Path | None = None,
    pairs_csv: Path | None = None,
    split: str | None = None,
    count: int | None = None,
    corpus_dir: str | None = None,
    systems: Sequence[str] = SYSTEMS,
    metrics: Sequence[str] = tuple(METRICS),
    jobs: int = 1,
    progress: bool = True,
    device: str = "cpu",
    noise_types: Sequence[str] | None = None,
    reference_path: Path | None = None,
) -> dict:
    """Score ``systems`` on a ``pairs.csv`` set or on the fixed ``split`` set built in memory
    (the models run on ``device``: cpu, cuda or auto; ``noise_types``: only those noises in
    a valid/test set). ``reference`` is a second model (``reference_path``) that ``model`` is
    compared with, file by file.

    Returns a JSON-able report: ``overall``, ``by_snr``, ``by_noise`` and ``by_room`` (dry /
    room) means per system and metric, ``paired`` (model minus reference, or minus the noisy
    input without one: mean, standard error, files) per metric, plus the per-pair scores.
    """
    for s in systems:
        if s not in SYSTEMS:
            raise DataError(f"unknown system {s!r}; use some of {', '.join(SYSTEMS)}")
    for m in metrics:
        if m not in METRICS:
            raise DataError(f"unknown metric {m!r}; use some of {', '.join(METRICS)}")
    if noise_types and pairs_csv is not None:
        raise DataError("noise types choose the noise of a --set; a pairs.csv has its own")
    if ("reference" in systems) != (reference_path is not None):
        raise DataError("the reference system is the model given as reference: give both or "
                        "neither")
    items, source = load_eval_items(pairs_csv, split, count, corpus_dir, noise_types)

    from .enhance import Enhancer

    enhancers = {}
    if "model" in systems:
        enhancers["model"] = Enhancer.load(model_path, device=device)
    if "reference" in systems:
        enhancers["reference"] = Enhancer.load(reference_path, device=device)
    estimates: list[tuple] = []
    for pid, clean, noisy, *_ in tqdm(items, desc="enhance", disable=not progress, leave=False):
        for system in systems:
            if system == "noisy":
                est = noisy
            elif system in enhancers:
                est = enhancers[system](noisy, 16000)
            else:
                with torch.no_grad():
                    est = oracle_enhance(
                        torch.from_numpy(clean)[None],
                        torch.from_numpy(noisy - clean)[None],
                        system.split("_")[1],
                    )[0].numpy()
            estimates.append(((pid, system), clean, est, tuple(metrics)))

    scores: dict[tuple, dict] = {}
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            for key, sc in tqdm(pool.map(_score_job, estimates, chunksize=8),
                                total=len(estimates), desc="score", disable=not progress,
                                leave=False):
                scores[key] = sc
    else:
        for job in tqdm(estimates, desc="score", disable=not progress, leave=False):
            key, sc = _score_job(job)
            scores[key] = sc

    meta = {pid: (snr, noise, room) for pid, _, _, snr, noise, room in items}
    groups: dict[str, dict] = {name: defaultdict(lambda: defaultdict(list))
                               for name in ("overall", "by_snr", "by_noise", "by_room")}
    for (pid, system), sc in scores.items():
        snr, noise, room = meta[pid]
        for m, v in sc.items():
            groups["overall"][system][m].append(v)
            groups["by_snr"][f"{system}|{snr:g}"][m].append(v)
            groups["by_noise"][f"{system}|{noise}"][m].append(v)
            groups["by_room"][f"{system}|{'room' if room else 'dry'}"][m].append(v)
    report: dict = {"source": source, "pairs": len(items), "systems": list(systems),
                    "metrics": list(metrics),
                    "model": str(model_path) if model_path else "default (shipped)"}
    if reference_path is not None:
        report["reference"] = str(reference_path)
    for name, grp in groups.items():
        report[name] = {key: {m: _mean(v) for m, v in ms.items()} for key, ms in grp.items()}
    base = "reference" if "reference" in systems else "noisy"
    if "model" in systems and base in systems:
        ids = [item[0] for item in items]
        report["paired"] = {"of": f"model - {base}", **{
            m: dict(zip(("mean", "se", "n"), paired_difference(
                [scores[(i, "model")][m] for i in ids], [scores[(i, base)][m] for i in ids]),
                strict=True))
            for m in metrics}}
    report["per_pair"] = [{"id": pid, "system": system, **sc}
                          for (pid, system), sc in scores.items()]
    return report


def format_table(report: dict) -> str:
    """Markdown tables: overall means per system, then per system and input SNR."""
    metrics = report["metrics"]
    head = "| system | " + " | ".join(METRIC_LABELS[m] for m in metrics) + " |"
    sep = "|---|" + "---:|" * len(metrics)
    lines = [f"{report['pairs']} pairs from {report['source']}", "", head, sep]
    for system in report["systems"]:
        vals = report["overall"][system]
        lines.append(f"| {system} | " + " | ".join(_fmt(m, vals[m]) for m in metrics) + " |")
    snrs = sorted({float(k.split("|")[1]) for k in report["by_snr"]})
    if len(snrs) > 1 or (snrs and not math.isnan(snrs[0])):
        lines += ["", "| system | input SNR dB | " + " | ".join(METRIC_LABELS[m] for m in metrics)
                  + " |", "|---|---:|" + "---:|" * len(metrics)]
        for system in report["systems"]:
            for snr in snrs:
                vals = report["by_snr"].get(f"{system}|{snr:g}")
                if vals:
                    lines.append(f"| {system} | {snr:g} | "
                                 + " | ".join(_fmt(m, vals[m]) for m in metrics) + " |")
    if len({k.split("|")[1] for k in report.get("by_room", {})}) > 1:
        lines += ["", "| system | room | " + " | ".join(METRIC_LABELS[m] for m in metrics)
                  + " |", "|---|---|" + "---:|" * len(metrics)]
        for system in report["systems"]:
            for room in ("dry", "room"):
                vals = report["by_room"][f"{system}|{room}"]
                lines.append(f"| {system} | {room} | "
                             + " | ".join(_fmt(m, vals[m]) for m in metrics) + " |")
    if "paired" in report:
        paired = report["paired"]
        lines += ["", f"{paired['of']}, paired over files (mean ± standard error): "
                  + ", ".join(f"{METRIC_LABELS[m]} {_fmt(m, paired[m]['mean'])} ± "
                              f"{_fmt(m, paired[m]['se'])}" for m in metrics)]
    return "\n".join(lines)


def _fmt(metric: str, value: float) -> str:
    return f"{value:.3f}" if metric == "stoi" else f"{value:.2f}"


def default_jobs() -> int:
    return os.cpu_count() or 1
