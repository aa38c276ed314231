"""Process every test pair with every system, align, score and time it.

Per pair and system: the output of :meth:`System.run`, its delay against the noisy input
(:func:`~benchmarks.peers.delay.estimate_delay`, 0..``max_delay``), the aligned output scored
against the clean speech with :func:`speechmask.metrics.score` (SNR, SI-SDR, PESQ-WB, STOI; a room
pair also against its early reference, as ``METRIC_early``), and
the CPU real-time factor: ``time.process_time()`` around ``run()`` / audio seconds, with one
thread (``torch.set_num_threads(1)``; BLAS/OpenMP pinned by ``__main__``). Each system is reset
before each file (fresh state, not timed) and warmed up once per process (not timed).

With ``jobs > 1`` pairs are spread over worker processes (``spawn``), each building its own
systems; results do not depend on ``jobs`` because every pair starts from fresh state.
"""

from __future__ import annotations

import math
import multiprocessing
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from speechmask.audio import MODEL_RATE
from speechmask.metrics import METRICS, score

from .delay import estimate_delay, shift_back
from .systems import System, build_systems

# Largest delay searched: 100 ms covers every system here (the latest: DeepFilterNet3's real-time
# runtime, 30 ms).
MAX_DELAY_MS = 100.0


@dataclass(frozen=True, eq=False)
class Pair:
    """One test mixture: ``[samples]`` float32 at 16 kHz."""

    id: str
    clean: np.ndarray  # the reference (reverberant speech for a room pair)
    noisy: np.ndarray
    input_snr_db: float
    noise_type: str
    room: str = ""  # "" for a dry pair, else the simulated room's name
    early: np.ndarray | None = None  # a room pair's early reference (direct + first 50 ms)


@dataclass(frozen=True)
class RunConfig:
    """What every worker needs to build and run the systems (picklable)."""

    keys: tuple[str, ...]
    model_path: str | None = None
    metrics: tuple[str, ...] = tuple(METRICS)
    max_delay_ms: float = MAX_DELAY_MS


def pairs_from_eval(eval_pairs: Iterable) -> list[Pair]:
    """:class:`Pair` objects from ``speechmask.evalsets.EvalPair`` objects."""
    return [Pair(p.id, p.clean, p.noisy, float(p.input_snr_db), p.noise_type,
                 p.room, p.early) for p in eval_pairs]


def load_test_pairs(
    split: str = "test",
    count: int | None = None,
    corpus_dir: str | None = None,
    pairs_csv: str | None = None,
) -> tuple[list[Pair], str]:
    """The fixed set ``split`` (one of ``speechmask.evalsets.SETS``: the corpus' valid/test
    splits, the out-of-domain set, clean pass-through, held-out speakers) built in memory, or the
    pairs of a ``pairs.csv``. Returns ``(pairs, description)``."""
    from speechmask.corpus import Corpus
    from speechmask.evalsets import eval_set, load_early, load_pair, read_pairs

    if pairs_csv is not None:
        rows = read_pairs(pairs_csv)[:count]
        pairs = []
        for row in rows:
            clean, noisy = load_pair(row)
            pairs.append(Pair(row.id, clean, noisy, row.input_snr_db, row.noise_type or "?",
                              row.room, load_early(row, len(clean))))
        return pairs, str(pairs_csv)
    main = Corpus(corpus_dir) if corpus_dir is not None else None
    return pairs_from_eval(eval_set(split, count, main=main)), (
        f"fixed {split} set (speechmask.evalsets.eval_set, in memory)")


def warm_up(systems: Sequence[System]) -> None:
    """Run each system once on 0.5 s of noise: first calls pay for lazy initialisation (model
    load, allocator, kernel selection) that is not part of steady-state speed."""
    rng = np.random.default_rng(0)
    noise = (0.05 * rng.standard_normal(MODEL_RATE // 2)).astype(np.float32)
    for system in systems:
        system.reset()
        system.run(noise, np.zeros_like(noise))


def _scores(ref: np.ndarray, out: np.ndarray, metrics: Sequence[str],
            finite: bool) -> dict[str, float]:
    """``metrics`` of ``out`` against ``ref``; all NaN for an output that is not finite."""
    return score(ref, out, tuple(metrics)) if finite else {m: float("nan") for m in metrics}


def score_pair(pair: Pair, systems: Sequence[System], metrics: Sequence[str] = tuple(METRICS),
               max_delay_ms: float = MAX_DELAY_MS) -> list[dict]:
    """Rows of one pair, one per system: metrics of the aligned output, ``delay`` (samples at
    16 kHz), ``rtf`` (CPU s / audio s) and the pair's metadata (``room``); a room pair with an
    early reference also gets every metric against it, as ``METRIC_early``."""
    seconds = len(pair.noisy) / MODEL_RATE
    max_delay = int(round(max_delay_ms * MODEL_RATE / 1000))
    rows = []
    for system in systems:
        system.reset()
        t0 = time.process_time()
        out = system.run(pair.noisy, pair.clean)
        cpu = time.process_time() - t0
        if len(out) != len(pair.noisy):
            raise RuntimeError(f"{system.name}: output has {len(out)} samples, input "
                               f"{len(pair.noisy)}")
        lag = estimate_delay(pair.noisy, out, max_delay)
        aligned = shift_back(out, lag)
        finite = bool(np.all(np.isfinite(aligned)))
        scores = _scores(pair.clean, aligned, metrics, finite)
        if pair.early is not None:
            early = _scores(pair.early, aligned, metrics, finite)
            scores.update({f"{m}_early": v for m, v in early.items()})
        rows.append({"id": pair.id, "system": system.key, "input_snr_db": pair.input_snr_db,
                     "noise_type": pair.noise_type, "room": pair.room, "seconds": seconds,
                     **scores, "delay": lag, "rtf": cpu / seconds})
    return rows


# Worker-process state (one set of systems per process).
_WORKER: dict = {}


def _single_thread() -> int:
    """Pin torch to one thread; returns the previous thread count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    return before


def _init_worker(cfg: RunConfig) -> None:
    _single_thread()
    systems = [s for s in build_systems(cfg.keys, cfg.model_path) if s.available()]
    warm_up(systems)
    _WORKER.update(systems=systems, cfg=cfg)


def _worker_score(pair: Pair) -> list[dict]:
    cfg: RunConfig = _WORKER["cfg"]
    return score_pair(pair, _WORKER["systems"], cfg.metrics, cfg.max_delay_ms)


def run_pairs(pairs: Sequence[Pair], cfg: RunConfig, jobs: int = 1,
              progress: Callable[[int, int], None] | None = None) -> list[dict]:
    """Score every pair with every *available* system of ``cfg.keys``; rows in pair order.

    ``progress(done, total)`` is called after each pair. With ``jobs == 1`` everything runs in
    this process (torch's thread count is restored afterwards).
    """
    total = len(pairs)
    rows: list[dict] = []
    if jobs <= 1 or total <= 1:
        before = _single_thread()
        try:
            systems = [s for s in build_systems(cfg.keys, cfg.model_path) if s.available()]
            warm_up(systems)
            for i, pair in enumerate(pairs):
                rows += score_pair(pair, systems, cfg.metrics, cfg.max_delay_ms)
                if progress:
                    progress(i + 1, total)
        finally:
            import torch

            torch.set_num_threads(before)
        return rows
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker,
                             initargs=(cfg,)) as pool:
        for i, pair_rows in enumerate(pool.map(_worker_score, pairs, chunksize=1)):
            rows += pair_rows
            if progress:
                progress(i + 1, total)
    return rows


def default_pair_for_figures(pairs: Sequence[Pair], snr_db: float = 0.0) -> Pair:
    """The pair shown in the spectrogram: the bundled quick-start pair when it is in the set
    (``test_0130_TF2_200038_snr+0``, the cafe sample), else the first pair at ``snr_db``."""
    for p in pairs:
        if p.id == "test_0130_TF2_200038_snr+0":
            return p
    return _closest_snr(pairs, snr_db)[0]


def _closest_snr(pairs: Sequence[Pair], snr_db: float) -> list[Pair]:
    finite = [p for p in pairs if math.isfinite(p.input_snr_db)]
    if not finite:
        return list(pairs)
    best = min(abs(p.input_snr_db - snr_db) for p in finite)
    return [p for p in finite if abs(p.input_snr_db - snr_db) == best]


def sample_pairs(pairs: Sequence[Pair], k: int = 3, snr_db: float = 0.0) -> list[Pair]:
    """Up to ``k`` pairs at the input SNR closest to ``snr_db``, each with a different noise
    type (first in set order), topped up from other SNRs when the set has few types."""
    chosen: list[Pair] = []
    seen: set[str] = set()
    for pool in (_closest_snr(pairs, snr_db), list(pairs)):
        for p in pool:
            if len(chosen) >= k:
                return chosen
            if p.noise_type not in seen:
                chosen.append(p)
                seen.add(p.noise_type)
    for p in pairs:  # fewer noise types than k: any other pairs
        if len(chosen) >= k:
            break
        if all(p.id != c.id for c in chosen):
            chosen.append(p)
    return chosen

