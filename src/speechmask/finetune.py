"""Fine-tuning (transfer learning): adapt a trained model to the user's own noise or data.

Two sources of adaptation data:

``noise_files``
    A few seconds of the user's own noise (fan, hum, street...), any rate and channel count.
    Each recording is split by samples: the first 80 % is mixed on the fly with the bundled
    clean training speech, the last 20 % (at least 0.5 s) is mixed with held-out clean speech
    into a small fixed validation set, so the before/after figures are measured on noise the
    fine-tuned model never trained on.
``data_dir``
    A dataset folder written by ``speechmask data import`` (its train split to adapt on, its
    valid split to measure on).

The run starts from a checkpoint (the shipped default model unless told otherwise), keeps its
architecture, feature normalisation, mask target and loss, trains with a small learning rate
for a few epochs (by default with the first recurrent layer frozen) and scores the model on the
validation pairs before and after. The output folder gets what :func:`speechmask.train.train`
writes (``best.pt``, ``last.pt``, ``train_log.csv``, ``loss_curve.png``) plus
``finetune.json``, the returned summary.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from . import checkpoint as ckpt
from .atomic import write_text_atomic
from .audio import AudioError, load_mono
from .augment import AugmentConfig
from .corpus import Corpus, DataError, load_files
from .enhance import Enhancer
from .errors import first_line
from .evalsets import EVAL_SEED, EVAL_SNRS_DB, EvalPair
from .evaluate import METRIC_LABELS
from .features import StftConfig
from .importers import load_user_data, make_train_dataset
from .metrics import METRICS, score
from .mixing import mix
from .model import MaskNet, ModelConfig
from .train import TrainConfig, config_from_dict, train_on, with_overrides
from .traindata import TrainData

log = logging.getLogger(__name__)

# Shortest usable noise recording, seconds: 80 % of it trains, the rest (>= 0.5 s) validates.
MIN_NOISE_SECONDS = 1.0
# Share of each noise recording held out (its tail) for validation, and the held-out minimum.
VALID_NOISE_FRACTION = 0.2
MIN_VALID_NOISE_SECONDS = 0.5
# Noise whose peak is below this level (dBFS) counts as silent.
SILENCE_DBFS = -80.0
# Bundled training utterances mixed with the user's noise (a fixed subset keeps loading fast).
TRAIN_UTTERANCES = 150
# Validation utterances of the noise_files path: each at one SNR of EVAL_SNRS_DB, in turn
# (24 = 6 per SNR).
VALID_UTTERANCES = 24
# Warm-up steps of the fine-tuning schedule: short, the weights are already good.
WARMUP_STEPS = 20
# Salt of the seeded subset / mixture choices (so they differ from the corpus' eval sets).
_SALT_TRAIN, _SALT_VALID, _SALT_MIX = 31, 32, 33


# ---------------------------------------------------------------------------------------------
# Starting point


def _load_init(init: str | os.PathLike | None) -> tuple[Path, MaskNet, StftConfig, dict]:
    """The checkpoint to start from (``None``: the shipped default model)."""
    if init is None:
        path = ckpt.default_model_path()
        if not path.is_file():
            raise DataError(f"no shipped default model at {path}; pass --from MODEL.pt with the "
                            "checkpoint to fine-tune (e.g. runs/NAME/best.pt)")
    else:
        path = Path(init)
    model, stft_cfg, payload = ckpt.load_model(path)
    return path, model, stft_cfg, payload


def _base_config(payload: dict) -> TrainConfig:
    """The checkpoint's training config, or the defaults with its target/loss when the stored
    config is missing or from another version."""
    stored = payload.get("train_config")
    if isinstance(stored, dict):
        try:
            return config_from_dict(stored)
        except (KeyError, TypeError, ValueError):
            keep = {k: stored[k] for k in ("target", "loss", "snr_weight", "spec_weight")
                    if k in stored}
            try:
                return TrainConfig(**keep)
            except (TypeError, ValueError):
                log.warning("checkpoint train_config unusable; using default target and loss")
    return TrainConfig()


def finetune_config(
    payload: dict,
    *,
    epochs: int,
    lr: float,
    freeze_first_layer: bool,
    examples_per_epoch: int,
    crop_seconds: float,
    seed: int,
    threads: int,
    augment: AugmentConfig | None,
    overrides: dict | None = None,
) -> TrainConfig:
    """The :class:`TrainConfig` of a fine-tuning run from checkpoint ``payload``.

    Architecture from the checkpoint's ``model_config``; target, loss, batch size, SNR and gain
    ranges from its ``train_config`` when present; ``epochs``, ``lr``, ``freeze_first_layer``,
    crop length and epoch size as given; a short warm-up, no early stop. ``augment`` replaces
    the mixture augmentation (``None`` keeps the checkpoint's minus babble and coloured noise).
    ``overrides`` are :func:`speechmask.train.with_overrides` keywords applied last
    (e.g. ``{"batch_size": 8, "mix__snr_low_db": 0.0}``).
    """
    base = _base_config(payload)
    aug = augment if augment is not None else replace(base.mix.augment, babble=0.0, colored=0.0)
    try:
        cfg = replace(
            base,
            model=ModelConfig(**payload["model_config"]),
            mix=replace(base.mix, crop_seconds=crop_seconds,
                        examples_per_epoch=examples_per_epoch, augment=aug),
            epochs=epochs, lr=lr, freeze_first_layer=freeze_first_layer,
            warmup_steps=WARMUP_STEPS, patience=0, valid_count=None, seed=seed,
            threads=threads, device="cpu",
        )
        return with_overrides(cfg, **(overrides or {}))
    except (TypeError, ValueError) as err:
        raise DataError(f"invalid fine-tuning setting: {first_line(err)}") from None


# ---------------------------------------------------------------------------------------------
# The user's noise recordings


def load_noise_files(paths: Sequence[str | os.PathLike]) -> list[tuple[str, np.ndarray]]:
    """``(path, mono 16 kHz audio)`` of each noise recording. Raises :class:`DataError` (one
    line) for a missing/unreadable file, one shorter than :data:`MIN_NOISE_SECONDS` or a silent
    one."""
    if not paths:
        raise DataError("no noise files given; pass one or more recordings of your noise")
    out = []
    for p in paths:
        path = Path(p)
        try:
            audio = load_mono(path)
        except AudioError as err:
            raise DataError(str(err)) from None
        seconds = len(audio) / StftConfig().sample_rate
        if seconds < MIN_NOISE_SECONDS:
            raise DataError(f"need at least {MIN_NOISE_SECONDS:g} s of noise, got {seconds:.1f} s "
                            f"in {path}")
        if _silent(audio):
            raise DataError(f"{path}: noise is silent (peak below {SILENCE_DBFS:g} dBFS); record "
                            "the noise itself")
        out.append((str(path), audio))
    return out


def _silent(audio: np.ndarray) -> bool:
    return audio.size == 0 or float(np.max(np.abs(audio))) < 10.0 ** (SILENCE_DBFS / 20.0)


def split_noise(audio: np.ndarray, rate: int = 16_000) -> tuple[np.ndarray, np.ndarray]:
    """``(train, valid)``: the recording without its tail, and the tail (the last
    :data:`VALID_NOISE_FRACTION` of the samples, at least :data:`MIN_VALID_NOISE_SECONDS`)."""
    held = max(int(round(VALID_NOISE_FRACTION * len(audio))),
               int(round(MIN_VALID_NOISE_SECONDS * rate)))
    held = min(held, len(audio) - 1)
    return audio[: len(audio) - held], audio[len(audio) - held :]


def noise_valid_pairs(
    utterances: Sequence[np.ndarray],
    noises: Sequence[tuple[str, np.ndarray]],
    snrs_db: Sequence[float] = EVAL_SNRS_DB,
) -> list[EvalPair]:
    """Fixed validation pairs: utterance ``i`` at SNR ``snrs_db[i % len(snrs_db)]`` with the
    held-out noise ``i % len(noises)`` (every recording and SNR used in turn), mixed with a
    seeded offset."""
    pairs = []
    for i, utt in enumerate(utterances):
        snr = float(snrs_db[i % len(snrs_db)])
        name, noise = noises[i % len(noises)]
        rng = np.random.default_rng([EVAL_SEED, _SALT_MIX, i])
        m = mix(utt, noise, snr, rng)
        pairs.append(EvalPair(
            id=f"finetune_{i:03d}_snr{int(snr):+d}", clean=m.clean, noisy=m.noisy,
            input_snr_db=snr, noise_type=Path(name).stem, speaker="", speech_file="",
            noise_file=name,
        ))
    return pairs


def _subset(n: int, k: int, seed: Sequence[int]) -> list[int]:
    """``k`` of ``range(n)`` chosen by a seeded permutation, in ascending order."""
    order = np.random.default_rng(list(seed)).permutation(n)
    return sorted(int(i) for i in order[:k])


def _as_corpus(corpus: Corpus | str | os.PathLike | None) -> Corpus:
    return corpus if isinstance(corpus, Corpus) else Corpus(corpus)


def _speech_sets(
    corpus: Corpus | str | os.PathLike | None,
    speech: Sequence[np.ndarray] | None,
    valid_speech: Sequence[np.ndarray] | None,
    seed: int,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Clean training and validation speech: the given arrays, else fixed subsets of the
    bundled corpus' train and valid speech."""
    loaded: Corpus | None = None
    if speech is None:
        loaded = _as_corpus(corpus)
        files = loaded.select("train", "speech")
        pick = _subset(len(files), TRAIN_UTTERANCES, (seed, _SALT_TRAIN))
        log.info("loading %d clean training utterances from %s", len(pick), loaded.root)
        speech = load_files([files[i] for i in pick])
    if valid_speech is None:
        loaded = loaded if loaded is not None else _as_corpus(corpus)
        files = loaded.select("valid", "speech")
        pick = _subset(len(files), VALID_UTTERANCES, (EVAL_SEED, _SALT_VALID))
        valid_speech = load_files([files[i] for i in pick])
    speech = [np.asarray(s, np.float32) for s in speech if len(s)]
    valid_speech = [np.asarray(s, np.float32) for s in valid_speech if len(s)]
    if not speech:
        raise DataError("no clean training speech to mix the noise with")
    if not valid_speech:
        raise DataError("no clean validation speech to mix the held-out noise with")
    return speech, valid_speech


# ---------------------------------------------------------------------------------------------
# Scoring


def score_model(
    model: MaskNet, stft_cfg: StftConfig, pairs: Sequence[EvalPair],
    metrics: Sequence[str] = tuple(METRICS),
) -> dict[str, float]:
    """Mean of each metric over ``pairs`` enhanced by ``model`` (NaN values, e.g. an
    unscorable PESQ, are left out of the mean)."""
    enhancer = Enhancer(model, stft_cfg)
    rows = [score(p.clean, enhancer(p.noisy, stft_cfg.sample_rate), tuple(metrics))
            for p in pairs]
    return _means(rows, metrics)


def score_noisy(pairs: Sequence[EvalPair], metrics: Sequence[str] = tuple(METRICS)) -> dict:
    """Mean of each metric of the unprocessed noisy inputs."""
    return _means([score(p.clean, p.noisy, tuple(metrics)) for p in pairs], metrics)


def _means(rows: list[dict], metrics: Sequence[str]) -> dict[str, float]:
    out = {}
    for m in metrics:
        vals = [r[m] for r in rows if not math.isnan(r[m])]
        out[m] = float(np.mean(vals)) if vals else float("nan")
    return out


# ---------------------------------------------------------------------------------------------
# The run


def finetune(
    init: str | os.PathLike | None,
    out_dir: str | os.PathLike,
    *,
    data_dir: str | os.PathLike | None = None,
    noise_files: Sequence[str | os.PathLike] | str | os.PathLike | None = None,
    corpus: Corpus | str | os.PathLike | None = None,
    speech: Sequence[np.ndarray] | None = None,
    valid_speech: Sequence[np.ndarray] | None = None,
    epochs: int = 4,
    lr: float = 2e-4,
    freeze_first_layer: bool = True,
    examples_per_epoch: int = 400,
    crop_seconds: float = 3.0,
    max_valid_pairs: int | None = 200,
    seed: int = 0,
    threads: int = 0,
    metrics: Sequence[str] = ("snr", "si_sdr", "pesq", "stoi"),
    progress: bool = True,
    base_cfg_overrides: dict | None = None,
) -> dict:
    """Fine-tune checkpoint ``init`` (``None``: the shipped default model) into ``out_dir``.

    Data is exactly one of ``data_dir`` (a folder written by ``speechmask data import``) or
    ``noise_files`` (the user's noise recordings, mixed with clean speech: the bundled corpus'
    train speech, or ``speech``; validated on their held-out tails mixed with ``corpus`` valid
    speech, or ``valid_speech``). ``max_valid_pairs`` caps an imported validation set (a
    seeded subset; ``None`` keeps all). ``base_cfg_overrides`` are
    :func:`speechmask.train.with_overrides` keywords for the :class:`TrainConfig`.

    Returns ``{"before", "after", "noisy"}`` (mean ``metrics`` of the initial model, of the
    fine-tuned ``out_dir/best.pt`` and of the unprocessed input on the validation pairs),
    ``"model"`` (path of best.pt), ``"init"``, ``"valid_pairs"``, ``"train_items"`` (training
    pairs, or clean utterances mixed with noise), ``"best_epoch"``, ``"epochs"`` and
    ``"seconds"``. Raises :class:`DataError` or :class:`~speechmask.checkpoint.CheckpointError`
    (one line) for unusable inputs.
    """
    t0 = time.time()
    metrics = _check_request(data_dir, noise_files, metrics)
    if isinstance(noise_files, (str, os.PathLike)):
        noise_files = [noise_files]
    # Check the cheap inputs before loading anything big.
    noises = load_noise_files(noise_files) if noise_files is not None else None
    init_path, model, stft_cfg, payload = _load_init(init)
    cfg = finetune_config(
        payload, epochs=epochs, lr=lr, freeze_first_layer=freeze_first_layer,
        examples_per_epoch=examples_per_epoch, crop_seconds=crop_seconds, seed=seed,
        threads=threads, augment=AugmentConfig.off() if noises is not None else None,
        overrides=base_cfg_overrides,
    )
    if threads > 0:
        torch.set_num_threads(threads)
    if noises is not None:
        data, train_items, extra = noise_data(cfg, noises, stft_cfg, seed, corpus, speech,
                                              valid_speech)
        extra = {"noise_files": [str(p) for p in noise_files], **extra}
    else:
        data, train_items, extra = imported_data(cfg, data_dir, stft_cfg, seed, max_valid_pairs)

    log.info("scoring the initial model %s on %d validation pairs", init_path, len(data.valid))
    noisy_scores = score_noisy(data.valid, metrics)
    before = score_model(model, stft_cfg, data.valid, metrics)
    out = Path(out_dir)
    result = train_on(data, cfg, out, init_model=model, progress=progress)
    best_path = out / "best.pt"
    tuned, tuned_stft, tuned_payload = ckpt.load_model(best_path)
    summary = {
        "before": before,
        "after": score_model(tuned, tuned_stft, data.valid, metrics),
        "noisy": noisy_scores,
        "model": str(best_path),
        "init": str(init_path),
        "valid_pairs": len(data.valid),
        "train_items": train_items,
        "best_epoch": int(result["best"]["epoch"]),
        "epochs": int(result["epochs"]),
        "seconds": time.time() - t0,
        **extra,
    }
    save_summary(out, tuned_payload, summary)
    log.info("fine-tuned %s -> %s in %.0f s", init_path, best_path, summary["seconds"])
    return summary


def _check_request(data_dir: str | os.PathLike | None, noise_files: object,
                   metrics: Sequence[str]) -> tuple[str, ...]:
    """The ``metrics`` to report, once the request names exactly one data source and only
    known metrics (:class:`DataError` otherwise)."""
    if (data_dir is None) == (noise_files is None):
        raise DataError("give exactly one of a dataset folder (--data, from `speechmask data "
                        "import`) or noise recordings (--noise FILE ...)"
                        + (", not both" if data_dir is not None else ""))
    for m in metrics:
        if m not in METRICS:
            raise DataError(f"unknown metric {m!r}; use some of {', '.join(METRICS)}")
    if not metrics:
        raise DataError("no metrics to report; use some of " + ", ".join(METRICS))
    return tuple(metrics)


def noise_data(
    cfg: TrainConfig,
    noises: Sequence[tuple[str, np.ndarray]],
    stft_cfg: StftConfig,
    seed: int,
    corpus: Corpus | str | os.PathLike | None = None,
    speech: Sequence[np.ndarray] | None = None,
    valid_speech: Sequence[np.ndarray] | None = None,
) -> tuple[TrainData, int, dict]:
    """``(data, clean utterances, summary fields)`` of the noise-recordings path: the head of
    each ``(name, audio)`` recording mixed with clean training speech, validation pairs of
    the held-out tails (:func:`_speech_sets` says which speech, chosen with ``seed``)."""
    rate = stft_cfg.sample_rate
    parts = [(name, split_noise(audio, rate)) for name, audio in noises]
    for name, (head, tail) in parts:
        if _silent(head) or _silent(tail):
            raise DataError(f"{name}: the {'first' if _silent(head) else 'last'} part of the "
                            "recording is silent; record the noise for its whole length")
    train_speech, valid_utts = _speech_sets(corpus, speech, valid_speech, seed)
    valid = noise_valid_pairs(valid_utts, [(name, tail) for name, (_, tail) in parts])
    data = TrainData.from_arrays(cfg, train_speech, [head for _, (head, _) in parts], valid)
    extra = {"train_noise_seconds": sum(len(h) for _, (h, _) in parts) / rate,
             "valid_noise_seconds": sum(len(t) for _, (_, t) in parts) / rate}
    return data, len(train_speech), extra


def imported_data(cfg: TrainConfig, data_dir: str | os.PathLike, stft_cfg: StftConfig,
                  seed: int, max_valid_pairs: int | None = None
                  ) -> tuple[TrainData, int, dict]:
    """``(data, training items, summary fields)`` of a folder written by ``speechmask data
    import``: its train split (mixtures drawn with ``seed``), and its valid split (a seeded
    subset of ``max_valid_pairs`` when it has more)."""
    user = load_user_data(data_dir)
    valid = list(user.valid)
    if not valid:
        raise DataError(f"{data_dir}: no validation pairs; re-run `speechmask data import` "
                        "with --overwrite")
    if max_valid_pairs is not None and len(valid) > max_valid_pairs:
        keep = _subset(len(valid), max(1, max_valid_pairs), (EVAL_SEED, _SALT_VALID))
        valid = [valid[i] for i in keep]
    train_set = make_train_dataset(user, cfg.mix, cfg.target, seed, stft_cfg)
    train_items = len(user.train_pairs) or len(user.train_speech)
    if train_items < 1:
        raise DataError(f"{data_dir}: no training data; re-run `speechmask data import`")
    data = TrainData.from_dataset(train_set, valid)
    return data, train_items, {"data_dir": str(data_dir), "layout": user.layout}


def save_summary(out: Path, payload: dict, summary: dict) -> None:
    """Record where the model came from in its own checkpoint (``out/best.pt``, whose loaded
    ``payload`` this is), and the summary beside it (``finetune.json``)."""
    ckpt.save(out / "best.pt", {k: v for k, v in payload.items() if k not in ("format",
                                                                              "version")}
              | {"finetune": _jsonable(summary)})
    write_text_atomic(out / "finetune.json", json.dumps(_jsonable(summary), indent=2) + "\n")


def _jsonable(obj):
    """``obj`` with NaN/inf floats replaced by None (strict JSON, torch-loadable)."""
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def format_before_after(result: dict) -> str:
    """A markdown table of the mean validation metrics of the unprocessed input and of the model
    before and after fine-tuning."""
    before, after, noisy = result["before"], result["after"], result.get("noisy", {})
    lines = [f"{result.get('valid_pairs', '?')} validation pairs:",
             "| metric | noisy input | before | after | change |", "|---|---:|---:|---:|---:|"]
    for m in before:
        b, a = before[m], after.get(m, float("nan"))
        digits = 3 if m == "stoi" else 2
        change = a - b
        lines.append(f"| {METRIC_LABELS.get(m, m)} | {_num(noisy.get(m), digits)} | "
                     f"{_num(b, digits)} | {_num(a, digits)} | {_num(change, digits, sign=True)} |")
    return "\n".join(lines)


def _num(value: float | None, digits: int, sign: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"
