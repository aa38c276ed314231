"""Models (and mask post-processing) compared file by file on the validation sets.

    python -m benchmarks.compare MODEL[@RULE] MODEL[@RULE] ... [--sets valid,heldout]
                                 [--count N] [--no-pesq] [--jobs 2]

The first system is the reference: every other one gets its mean and its paired difference to
the reference (mean ± standard error over files) in SI-SDR (dB), PESQ-WB and STOI, overall, for
the clean clips (``noisy == clean``: pass-through) and by input SNR band (``R`` = in a room).
Room pairs are scored against the reverberant speech (we remove noise, not the room), then in a
second set of tables against their early reference (direct sound + the first
``evalsets.EARLY_REF_MS`` of reflections), for models that also remove the tail.
Only the sets a recipe selects on belong here (``valid``: corpus validation pairs; ``heldout``:
held-out speakers, rooms and clean clips); the test sets (test, ood, clean) are for the
benchmark run of a model already chosen (``python -m benchmarks.peers``).

MODEL is a checkpoint (``default`` = the shipped model). RULE changes the applied mask, for
experiments that are not in the enhancer:

- ``atten=L``: remove at most L dB anywhere (what ``speechmask enhance --atten-lim-db L`` does);
- ``adaptive=C,LMIN,TAU``: an attenuation limit that follows the input's SNR, causal: the
  SNR is estimated every frame from the mask itself (exponential means, time constant TAU s,
  of the masked and the removed power) and the limit is ``clip(C - SNR, LMIN, 100)`` dB, so a
  good recording is touched at most LMIN..C-SNR dB and a noisy one not limited at all;
- ``postfilter=BETA``: DeepFilterNet's post-filter (after PercepNet), which deepens what the
  mask removes and leaves a mask of 1 alone: ``(1 + BETA) M / (1 + BETA / sin(pi M / 2)^2)``
  (DeepFilterNet's ``--pf`` uses BETA 0.02).

Run time: each model runs once per file, whatever rules are asked of it; scoring dominates.
Four systems with PESQ on both sets (504 files) took about 6 min with ``--jobs 2`` on an idle
2-core machine, three without PESQ about 2.5 min.
"""

from __future__ import annotations

import argparse
import math
import os
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from speechmask.checkpoint import default_model_path
from speechmask.evalsets import EARLY_REF_MS, EvalPair, eval_set
from speechmask.metrics import pesq_wb, si_sdr_db, stoi
from speechmask.pipeline import mask_floor

from .stats import mean_se

METRIC_NAMES = ("si_sdr", "pesq", "stoi")


def parse_system(text: str) -> tuple[str, str, tuple[float, ...]]:
    """``PATH[@rule=a,b,...]`` -> (path, rule, numbers); path ``default`` = the shipped model."""
    path, _, rule_text = text.partition("@")
    path = str(default_model_path()) if path == "default" else path
    if not rule_text:
        return path, "", ()
    rule, _, numbers = rule_text.partition("=")
    values = tuple(float(v) for v in numbers.split(",")) if numbers else ()
    expected = {"atten": 1, "adaptive": 3, "postfilter": 1}
    if rule not in expected or len(values) != expected[rule]:
        raise SystemExit(f"{text}: rule must be atten=L, adaptive=C,LMIN,TAU or postfilter=BETA")
    return path, rule, values


def running_snr_db(power: np.ndarray, mask: np.ndarray, frames_per_s: float,
                   tau_s: float) -> np.ndarray:
    """``[T]`` causal SNR estimate (dB) of the input from ``power: [T, F]`` (|X|^2) and
    ``mask: [T, F]``: exponential means of the masked power sum(M^2 |X|^2) and the removed
    power sum((1 - M)^2 |X|^2), time constant ``tau_s``."""
    kept = (mask ** 2 * power).sum(axis=1)
    removed = ((1 - mask) ** 2 * power).sum(axis=1)
    decay = math.exp(-1.0 / (tau_s * frames_per_s))
    out = np.empty(len(kept))
    s = n = 0.0
    for t in range(len(kept)):
        s = decay * s + (1 - decay) * kept[t]
        n = decay * n + (1 - decay) * removed[t]
        out[t] = 10 * math.log10((s + 1e-10) / (n + 1e-10))
    return out


def apply_rule(mask: np.ndarray, spec: np.ndarray, rule: str, values: tuple[float, ...],
               frames_per_s: float) -> np.ndarray:
    """``mask: [T, F]`` after the rule (see the module doc)."""
    if rule == "atten":
        return np.maximum(mask, mask_floor(values[0]))
    if rule == "adaptive":
        c, lmin, tau = values
        snr = running_snr_db(np.abs(spec) ** 2, mask, frames_per_s, tau)
        limit_db = np.clip(c - snr, lmin, 100.0)
        return np.maximum(mask, (10 ** (-limit_db / 20))[:, None])
    if rule == "postfilter":
        beta = values[0]
        sine = np.maximum(np.sin(np.pi * mask / 2), 1e-6)
        return ((1 + beta) * mask / (1 + beta / sine**2)).astype(mask.dtype)
    return mask


# Per worker: the distinct models (path -> Enhancer) and the systems as (path, rule, values).
_MODELS: dict = {}
_SYSTEMS: list[tuple[str, str, tuple[float, ...]]] = []


def _init(systems: Sequence[str]) -> None:
    import torch

    from speechmask.enhance import Enhancer

    torch.set_num_threads(1)
    _SYSTEMS[:] = [parse_system(text) for text in systems]
    _MODELS.clear()
    for path, _, _ in _SYSTEMS:
        if path not in _MODELS:
            _MODELS[path] = Enhancer.load(path)


def _score(args: tuple[EvalPair, bool]) -> dict:
    import torch

    from speechmask.features import istft, stft

    pair, with_pesq = args
    clean = np.asarray(pair.clean, np.float32)
    noisy = np.asarray(pair.noisy, np.float32)
    early = None if pair.early is None else np.asarray(pair.early, np.float32)
    row: dict = {"id": pair.id, "snr": pair.input_snr_db, "room": bool(pair.room)}
    # The same keys (input, system index) scored against the early reference, room pairs only.
    early_row: dict = {**row}

    def metrics(est: np.ndarray, ref: np.ndarray = clean) -> tuple[float, float, float]:
        return (si_sdr_db(ref, est), pesq_wb(ref, est) if with_pesq else math.nan,
                stoi(ref, est))

    def score_all(key: object, est: np.ndarray) -> None:
        row[key] = metrics(est)
        if early is not None:
            early_row[key] = metrics(est, early)

    score_all("noisy", noisy)
    # Each model runs once per file, whatever rules its systems apply to its mask.
    outputs = {path: enh.mask_16k(noisy) for path, enh in _MODELS.items()}
    spec = None
    for i, (path, rule, values) in enumerate(_SYSTEMS):
        out, mask = outputs[path]
        if rule:
            cfg = _MODELS[path].stft_cfg
            if spec is None:
                spec = stft(torch.from_numpy(noisy)[None], cfg)[0]
            mask = apply_rule(mask, spec.numpy(), rule, values, cfg.sample_rate / cfg.hop)
            out = istft(spec[None] * torch.from_numpy(mask.astype(np.float32))[None],
                        len(noisy), cfg)[0].numpy()
        score_all(i, out)
    if early is not None:
        row["early"] = early_row
    return row


def group_of(row: dict) -> str:
    if not math.isfinite(row["snr"]):
        return "clean"
    return f"{row['snr']:g}{'R' if row['room'] else ''}"


def paired(rows: Sequence[dict], key: object, ref: object, m: int) -> tuple[float, float]:
    """Mean and standard error over files of metric ``m`` of ``key`` minus ``ref``."""
    mean, se, n = mean_se(r[key][m] - r[ref][m] for r in rows)
    return (mean, se) if n > 1 else (math.nan, math.nan)


def print_tables(rows: Sequence[dict], systems: Sequence[str], overall: bool = True,
                 title: str = "") -> None:
    """Per metric that was computed, a table of systems x groups (``overall``: all noisy pairs
    and all clean clips first, then the SNR bands)."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[group_of(r)].append(r)
        if overall:
            groups["noisy pairs" if math.isfinite(r["snr"]) else "all clean"].append(r)
            if math.isfinite(r["snr"]):  # per set: the corpus' valid pairs, the held-out ones
                groups[f"{r['id'].split('_')[0]} noisy"].append(r)

    def order(name: str) -> tuple[int, float]:
        if name in ("noisy pairs", "all clean", "clean") or name.endswith(" noisy"):
            rank = {"noisy pairs": 0, "valid noisy": 1, "heldout noisy": 2, "all clean": 3}
            return (0, rank.get(name, 2.5))
        return (2, float(name.rstrip("R")) + (0.5 if name.endswith("R") else 0.0))

    names = [g for g in sorted(groups, key=order) if g != "clean"]
    for m, metric in enumerate(METRIC_NAMES):
        if not any(math.isfinite(r["noisy"][m]) for r in rows):
            continue  # not computed (PESQ with --no-pesq)
        print(f"\n### {metric}{title} (mean; paired difference to system 0 ± s.e.)\n")
        print("| system | " + " | ".join(f"{g} ({len(groups[g])})" for g in names) + " |")
        print("|---|" + "---:|" * len(names))
        for key, label in [("noisy", "input"), *enumerate(systems)]:
            cells = []
            for g in names:
                mean = float(np.nanmean([r[key][m] for r in groups[g]]))
                text = f"{mean:.3f}" if metric == "stoi" else f"{mean:.2f}"
                if key not in ("noisy", 0):
                    d, se = paired(groups[g], key, 0, m)
                    text += f" ({d:+.3f} ± {se:.3f})" if metric == "stoi" else \
                        f" ({d:+.2f} ± {se:.2f})"
                cells.append(text)
            print(f"| {label} | " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("systems", nargs="+", help="MODEL[@RULE]; the first is the reference")
    parser.add_argument("--sets", default="valid,heldout", help="comma list of valid, heldout")
    parser.add_argument("--count", type=int, default=None, help="first N pairs of each set")
    parser.add_argument("--no-pesq", action="store_true", help="skip PESQ (3x faster)")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args(argv)
    for text in args.systems:
        parse_system(text)
    sets = args.sets.split(",")
    if not set(sets) <= {"valid", "heldout"}:
        raise SystemExit("--sets: only the validation sets (valid, heldout); the test sets are "
                         "for python -m benchmarks.peers")
    pairs = [p for name in sets for p in eval_set(name, args.count)]
    from tqdm import tqdm

    work = [(p, not args.no_pesq) for p in pairs]
    with ProcessPoolExecutor(args.jobs, initializer=_init, initargs=(args.systems,)) as pool:
        rows = list(tqdm(pool.map(_score, work, chunksize=4), total=len(work), unit="file"))
    print("systems: " + ", ".join(f"{i}: {s}" for i, s in enumerate(args.systems)))
    print_tables(rows, args.systems)
    early_rows = [r["early"] for r in rows if "early" in r]
    if early_rows:
        print(f"\n## Room pairs against the early reference (direct sound + {EARLY_REF_MS:g} ms)")
        print_tables(early_rows, args.systems, overall=False,
                     title=f", rooms vs direct + {EARLY_REF_MS:g} ms")


if __name__ == "__main__":
    main()
