"""Training: on-the-fly mixtures, AdamW + cosine schedule, per-epoch validation SNR, early
stopping, best/last checkpoints, exact resume, a CSV log and a loss-curve PNG.

A run is a short loop (:func:`train_on`) over named steps: :func:`start_run`,
:func:`build_model` and :func:`restore` (resume from ``last.pt``), then each epoch
:func:`run_epoch`, :func:`validate_epoch`, :func:`record_epoch` and :func:`save_epoch`. What it
trains on is a :class:`~speechmask.traindata.TrainData`; :func:`train` builds one from its
keyword arguments."""

from __future__ import annotations

import copy
import csv
import gc
import io
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from . import checkpoint as ckpt
from . import distributed
from .atomic import write_atomic, write_text_atomic
from .config import from_dict
from .corpus import Corpus
from .deepfilter import DeepFilter
from .distributed import DistContext
from .evalsets import HELDOUT_ID_PREFIX, EvalPair
from .features import StftConfig, compress, istft, stft
from .masks import apply_output, ideal_mask
from .metrics import si_sdr_db, snr_db
from .mixing import MixConfig
from .model import (  # noqa: F401  (ModelConfig, resolve_device re-exported)
    MaskNet,
    ModelConfig,
    offline_masks,
    resolve_device,
    with_deep_filter,
    with_hidden,
    with_lookahead,
)
from .traindata import TrainData, corpus_noise_and_valid  # noqa: F401  (re-exported)

log = logging.getLogger(__name__)

LOSSES = ("bce", "bce+snr", "bce+snr+sisdr", "snr")
SELECT_METRICS = ("valid_snr_db", "valid_si_sdr_db", "valid_heldout_si_sdr_db")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (saved in its checkpoints)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    mix: MixConfig = field(default_factory=MixConfig)
    # Mask target: "ibm" (the baseline's binary mask) or "irm" (soft, sounds better).
    target: str = "irm"
    # "bce": binary cross-entropy to the target mask (the baseline's loss). "bce+snr": BCE plus
    # snr_weight x negative SNR (dB) of the masked spectrum against the clean spectrum - the
    # quantity we report, so the net spends its capacity on the loud bins that decide it.
    # "bce+snr+sisdr": the SNR term replaced by the mean of -SNR and -SI-SDR: SNR alone rewards
    # shrinking speech along with the noise; SI-SDR does not (docs/experiments.md). The recipe
    # of the shipped model uses it.
    # "snr": the SNR term alone.
    loss: str = "bce+snr"
    # Weight of the -SNR/10 (or -(SNR+SI-SDR)/20) term (dB/10 is on the scale of BCE values,
    # ~0.1-1).
    snr_weight: float = 1.0
    # Soft ceiling of the SNR and SI-SDR terms, dB (inf = none): each example's error energy
    # gets 10^(-snr_max_db/10) of its reference energy added (Wisdom et al. 2020, "Unsupervised
    # sound separation using mixture invariant training", 30 dB), so no example scores above
    # it. Why: the gradient of a dB loss is that of the error energy divided by the error, so
    # without a ceiling clean inputs (7 % of the recipe's mixtures) and 15-40 dB ones (20 %)
    # pull as hard for 50 -> 60 dB of pass-through, far past audible, as a -5 dB mixture does
    # for 5 -> 15 dB.
    snr_max_db: float = math.inf
    # Whether the ceiling also caps clean examples (no noise: input SNR inf). False: they keep
    # the uncapped SNR/SI-SDR terms, the one pull toward giving clean speech back untouched,
    # while the noisy 15-40 dB examples stay capped. Why: with every example capped the model
    # may touch clean speech by what 30 dB allows, and does so to quiet studio speech (a loud
    # onset after a pause loses 7 dB; docs/fidelity.md), which the uncapped model passed at
    # 100 dB. True (cap every example) keeps older configs as they were; recipes/default.toml
    # sets False (the shipped model: quiet speech at 40 dB instead of 17).
    ceiling_on_clean: bool = True
    # The ceiling clean examples get instead when ceiling_on_clean is False, dB (inf: none, as
    # the shipped recipe). A finite one, e.g. 50, still asks for speech left alone far past
    # audible (the fidelity target is 20 dB) but stops the pull there.
    clean_snr_max_db: float = math.inf
    # Weight of the power-law compressed spectrum term added to any of the losses above (0 =
    # none): the error of |est|^0.3 and of its complex value against the clean spectrum's, as
    # Wilson et al. 2018 ("Exploring tradeoffs in models for low-latency speech enhancement")
    # and DeepFilterNet train. The SNR terms weigh bins by energy, so the quiet high bands that
    # PESQ and STOI hear barely count; compressed, every bin counts (see spectral_power_loss).
    spec_weight: float = 0.0
    # Distillation: a model checkpoint (path; "" = none) whose masks stand in for the ideal
    # ones on the training mixtures at or below teacher_max_snr_db (dry ones only, unless
    # teacher_in_rooms): there its mask is the BCE target and its masked spectrum the reference
    # of the SNR terms, so the student learns what the teacher does where the teacher is best,
    # and the true targets everywhere else. Why: the shipped model (the mean of the VCC2016
    # model and the broad stage) is 0.97 dB ahead of the broad stage at -5..10 dB dry, but the
    # broad stage alone keeps rooms, 20 dB inputs and clean speech closer to the input
    # (docs/experiments.md). Validation never uses the teacher.
    teacher: str = ""
    # Input SNR (dB, over the speech) up to which mixtures take the teacher's targets; clean
    # examples are +inf (taken only with inf here), mixtures of unknown SNR (nan) never. 10: the
    # bands where the shipped average beats the broad stage (-5, 0, 5, 10 dB); inf with
    # teacher_in_rooms: the teacher everywhere (a smaller model trained to follow a bigger one).
    teacher_max_snr_db: float = 10.0
    # Whether mixtures in a simulated room take the teacher's targets too (False: the broad
    # stage alone keeps reverberant speech better than the shipped average; docs/experiments.md).
    teacher_in_rooms: bool = False
    # Examples per optimiser step. 16 x 2 s: on CPU a recurrent layer costs the same per frame
    # at any batch, so small batches give more updates per minute ("Batch size on CPU" in
    # docs/experiments.md).
    # This is the global batch: with N training processes each takes about batch_size / N of
    # every batch (see distributed.shard_batches), so steps per epoch, the schedule and the
    # gradients (up to rounding and dropout) match a single-process run of the same config.
    batch_size: int = 16
    # Epochs (each MixConfig.examples_per_epoch fresh mixtures); the cosine schedule spans them.
    # 30 x 4000 x 2 s = 67 h of mixtures (7500 steps), ~55 min on 2 idle cores for 2x384 LSTM.
    epochs: int = 30
    # Peak learning rate of AdamW after warm-up; 1e-3 is the usual RNN value.
    lr: float = 1e-3
    # Warm-up steps, linear from 0; protects the LSTM from early large updates.
    warmup_steps: int = 200
    # AdamW decoupled weight decay.
    weight_decay: float = 1e-4
    # Learning rate of a deep filter's coefficient layer, as a share of lr, in (0, 1]. Adam
    # moves every weight ~lr per step whatever its gradient, and the layer's 384 inputs add
    # up: trained alone on the frozen shipped model, it diverged at 1e-3 and learnt at 3e-5,
    # and at the recipe's 3e-4 with the rest it scored 0.3-1.2 dB below the mask-only run in
    # each of its first 7 epochs. 0.1 gives it 3e-5 at the recipe's peak.
    df_lr_scale: float = 0.1
    # Gradient-norm clipping; RNN gradients spike on loud onsets.
    clip_norm: float = 1.0
    # Exponential moving average of the weights (0 = off; 0.999 averages over ~1000 steps, 4
    # epochs of the recipe's 250): each epoch validates and saves the average instead of the
    # last step's weights, which sit on one batch's gradient noise. The average starts at the
    # starting weights and its decay ramps up as (1 + step) / (10 + step), so the early
    # averages follow the training weights. last.pt keeps both, for resume.
    ema_decay: float = 0.0
    # Stop when the validation SNR has not improved for this many epochs (0 = never stop early).
    patience: int = 5
    # Pairs of the fixed valid set scored each epoch (None = all 288).
    valid_count: int | None = None
    # Corpus noise types kept out of training (labels as in `speechmask evaluate`'s by-noise
    # table, e.g. ("wind", "exercise_bike", "rooster")); the valid set then draws its noise from
    # these types only, so best.pt is chosen on noise the model never heard, as the test set's
    # four unseen types are. The valid split's noise types are the training ones, so selecting
    # on it can miss a loss on unseen noise (docs/experiments.md). () = train on every type and
    # validate on every type.
    holdout_noise: tuple[str, ...] = ()
    # Validation figure that picks best.pt and drives early stopping: "valid_snr_db" (mean
    # output SNR over the noisy validation pairs, the project's figure), "valid_si_sdr_db"
    # (scale-invariant: does not reward shrinking speech along with the noise) or
    # "valid_heldout_si_sdr_db" (the held-out speakers' noisy pairs only: the corpus' valid
    # speakers are its training speakers, so their pairs also reward memorising them).
    select_metric: str = "valid_snr_db"
    # Random seed of model init, mixtures and dropout.
    seed: int = 0
    # Fine-tuning: keep the first recurrent layer's weights fixed (the low-level spectral
    # features it learned on the big corpus transfer; fewer weights adapt to little data).
    freeze_first_layer: bool = False
    # Torch intra-op threads per process (0 = all cores; with several training processes on a
    # machine, 0 = its cores split evenly between them).
    threads: int = 0
    # Processes that build the training mixtures while the model trains (0 = in the training
    # process). Mixing with rooms and generated noise costs ~10 ms of one core per example; a
    # worker (one thread) overlaps it with the optimiser step. The mixtures do not depend on it.
    loader_workers: int = 0
    # "cpu", "cuda" or "auto".
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.target not in ("ibm", "irm"):
            raise ValueError(f"target must be 'ibm' or 'irm', got {self.target!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        for name in ("batch_size", "epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0.0 < self.df_lr_scale <= 1.0:
            raise ValueError(f"df_lr_scale must be in (0, 1], got {self.df_lr_scale}")
        if math.isnan(self.teacher_max_snr_db):
            raise ValueError("teacher_max_snr_db must be a number, got nan")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if not self.snr_max_db > 0:
            raise ValueError(f"snr_max_db must be > 0 dB (inf: no ceiling), got {self.snr_max_db}")
        if not self.spec_weight >= 0:
            raise ValueError(f"spec_weight must be >= 0, got {self.spec_weight}")
        if self.patience < 0 or self.warmup_steps < 0:
            raise ValueError("patience and warmup_steps must be >= 0")
        if self.loader_workers < 0:
            raise ValueError(f"loader_workers must be >= 0, got {self.loader_workers}")
        if self.select_metric not in SELECT_METRICS:
            raise ValueError(f"select_metric must be one of {', '.join(SELECT_METRICS)}, "
                             f"got {self.select_metric!r}")
        # A list from a checkpoint's config dict becomes the tuple a frozen config needs.
        object.__setattr__(self, "holdout_noise", tuple(self.holdout_noise))


def config_to_dict(cfg: TrainConfig) -> dict:
    return asdict(cfg)


def config_from_dict(d: dict) -> TrainConfig:
    """A TrainConfig from :func:`config_to_dict`'s dict (settings it lacks, from checkpoints
    older than them, take their defaults)."""
    return from_dict(TrainConfig, d)


def adopt_architecture(cfg: TrainConfig, init: ModelConfig, lookahead_given: bool,
                       hidden_given: bool = False, filter_given: bool = False) -> TrainConfig:
    """``cfg`` training a model of ``init``'s architecture (``train --init``): its cell, sizes,
    features and normalisation are the init model's; dropout stays ``cfg``'s (a training
    setting), and so do the look-ahead when ``lookahead_given``, the width when
    ``hidden_given`` (both may only grow: :func:`build_model` widens the init with silent new
    units, so training starts from the init's masks exactly) and the deep filter
    (``df_bins``, ``df_order``) when ``filter_given`` (a mask-only init gets one that starts
    at zero; a filter cannot be changed or removed)."""
    lookahead = cfg.model.lookahead if lookahead_given else init.lookahead
    if lookahead < init.lookahead:
        raise ValueError(f"look-ahead {lookahead}: the model has look-ahead {init.lookahead}, "
                         "which can be kept or raised, not lowered")
    hidden = cfg.model.hidden if hidden_given else init.hidden
    if hidden < init.hidden:
        raise ValueError(f"hidden {hidden}: the model has {init.hidden} units per layer, which "
                         "can be kept or raised, not lowered (a narrower model: "
                         "python -m benchmarks.resize, then train it against the original)")
    df_bins, df_order = ((cfg.model.df_bins, cfg.model.df_order) if filter_given
                         else (init.df_bins, init.df_order))
    if init.df_bins and (df_bins, df_order) != (init.df_bins, init.df_order):
        raise ValueError(f"deep filter {df_bins} bins x {df_order} frames: the model has one of "
                         f"{init.df_bins} x {init.df_order}, which cannot be changed")
    return replace(cfg, model=replace(init, dropout=cfg.model.dropout, lookahead=lookahead,
                                      hidden=hidden, df_bins=df_bins, df_order=df_order))


def grown_init(init_model: MaskNet, model_cfg: ModelConfig, seed: int) -> MaskNet:
    """``init_model`` grown to ``model_cfg``'s look-ahead, width and deep filter (new inputs,
    units and coefficients start silent: the same output), or ``init_model`` itself when there
    is nothing to grow; :func:`adopt_architecture` has refused anything smaller. ``seed``: the
    new units' incoming weights."""
    grown = with_lookahead(init_model, model_cfg.lookahead)
    if model_cfg.hidden > grown.cfg.hidden:
        grown = with_hidden(grown, model_cfg.hidden, seed=seed)
    if model_cfg.df_bins:
        grown = with_deep_filter(grown, model_cfg.df_bins, model_cfg.df_order)
    return grown


# ---------------------------------------------------------------------------------------------
# Loss


def _ceiling(max_db: float | torch.Tensor) -> float | torch.Tensor:
    """The share of the reference energy added to the error for a soft ceiling at ``max_db``
    (a float, or ``[B]`` per example; inf: none)."""
    if isinstance(max_db, torch.Tensor):
        return torch.pow(10.0, -max_db / 10.0)
    return 0.0 if math.isinf(max_db) else 10.0 ** (-max_db / 10.0)


def spectral_snr_db(est: torch.Tensor, ref: torch.Tensor,
                    max_db: float | torch.Tensor = math.inf) -> torch.Tensor:
    """Per-example SNR in dB between complex spectra ``[B, T, F]`` (the baseline's SNR computed in
    the STFT domain; equal to the waveform SNR up to iSTFT consistency); ``max_db``: soft
    ceiling (see :attr:`TrainConfig.snr_max_db`), one for all or ``[B]``. Returns ``[B]``."""
    num = ref.abs().square().sum(dim=(1, 2))
    den = (est - ref).abs().square().sum(dim=(1, 2)) + _ceiling(max_db) * num
    return 10 * torch.log10((num + 1e-8) / (den + 1e-8))


def spectral_si_sdr_db(est: torch.Tensor, ref: torch.Tensor,
                       max_db: float | torch.Tensor = math.inf) -> torch.Tensor:
    """Per-example scale-invariant SDR in dB between complex spectra ``[B, T, F]``: the SNR of
    ``est`` against ``a * ref``, with ``a`` the least-squares gain (Re<est, ref> / |ref|^2, the
    waveform inner product by Parseval up to iSTFT consistency); ``max_db``: soft ceiling (see
    :attr:`TrainConfig.snr_max_db`), one for all or ``[B]``. Returns ``[B]``."""
    ref_energy = ref.abs().square().sum(dim=(1, 2))
    gain = (est * ref.conj()).real.sum(dim=(1, 2)) / (ref_energy + 1e-8)
    target = gain[:, None, None] * ref
    num = target.abs().square().sum(dim=(1, 2))
    den = (est - target).abs().square().sum(dim=(1, 2)) + _ceiling(max_db) * num
    return 10 * torch.log10((num + 1e-8) / (den + 1e-8))


# Power of the compressed spectrum loss (Wilson et al. 2018 found 0.3 best for quality) and the
# weight of its complex part against the magnitude part (their 0.113: phase is kept from the
# noisy input, so the complex term only steers the mask where the noisy phase is wrong).
SPEC_POWER = 0.3
SPEC_COMPLEX_SHARE = 0.113


def spectral_power_loss(est: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Power-law compressed spectrum error between complex spectra ``est, ref: [B, T, F]``:
    ``|est|^c`` against ``|ref|^c`` plus SPEC_COMPLEX_SHARE x the same with their phases, c =
    SPEC_POWER. Each example's error is divided by the mean of ``|ref|^(2c)``, so the term does
    not depend on the level of the example (the mixtures span -55 to -1 dBFS). Returns a scalar:
    the mean over the batch, ~1 for an all-zero estimate, 0 for a perfect one."""
    # 1e-12 as DeepFilterNet: its power 0.3 (2.5e-4) is below any bin of the training mixtures.
    est_mag, ref_mag = est.abs().clamp_min(1e-12), ref.abs().clamp_min(1e-12)
    est_c, ref_c = est_mag.pow(SPEC_POWER), ref_mag.pow(SPEC_POWER)
    magnitude = (est_c - ref_c).square().mean(dim=(1, 2))
    complex_err = (est_c * (est / est_mag) - ref_c * (ref / ref_mag)).abs().square()
    norm = ref_c.square().mean(dim=(1, 2)) + 1e-8
    per_example = (magnitude + SPEC_COMPLEX_SHARE * complex_err.mean(dim=(1, 2))) / norm
    return per_example.mean() / (1 + SPEC_COMPLEX_SHARE)


def compute_loss(
    cfg: TrainConfig, mask: torch.Tensor, target: torch.Tensor,
    noisy_spec: torch.Tensor, clean_spec: torch.Tensor,
    input_snr_db: torch.Tensor | None = None,
) -> torch.Tensor:
    """The training loss of a batch (see :attr:`TrainConfig.loss` and ``spec_weight``) from
    the model's output rows ``mask`` (for a deep-filter model, the mask then its
    coefficients: the SNR terms see the filtered estimate, the BCE the mask);
    ``input_snr_db: [B]`` (inf: a clean example) spares clean examples the SNR ceiling when
    ``cfg.ceiling_on_clean`` is False."""
    est, mask = apply_output(mask, noisy_spec, cfg.model.n_freqs, DeepFilter.of(cfg.model))
    loss = _base_loss(cfg, mask, target, est, clean_spec, snr_ceilings_db(cfg, input_snr_db))
    if cfg.spec_weight:
        loss = loss + cfg.spec_weight * spectral_power_loss(est, clean_spec)
    return loss


def snr_ceilings_db(cfg: TrainConfig,
                    input_snr_db: torch.Tensor | None) -> float | torch.Tensor:
    """The soft ceiling of the SNR terms: ``cfg.snr_max_db`` for every example, or ``[B]`` with
    ``cfg.clean_snr_max_db`` for the clean examples of ``input_snr_db: [B]`` when
    ``cfg.ceiling_on_clean`` is False."""
    if cfg.ceiling_on_clean or input_snr_db is None or math.isinf(cfg.snr_max_db):
        return cfg.snr_max_db
    clean = torch.isposinf(input_snr_db.reshape(-1))
    return torch.where(clean, cfg.clean_snr_max_db, cfg.snr_max_db).to(torch.float32)


def _base_loss(cfg: TrainConfig, mask: torch.Tensor, target: torch.Tensor, est: torch.Tensor,
               clean_spec: torch.Tensor, top: float | torch.Tensor) -> torch.Tensor:
    if cfg.loss == "snr":
        return -spectral_snr_db(est, clean_spec, top).mean() / 10
    bce = torch.nn.functional.binary_cross_entropy(mask, target)
    if cfg.loss == "bce":
        return bce
    neg_snr = -spectral_snr_db(est, clean_spec, top).mean() / 10
    if cfg.loss == "bce+snr+sisdr":
        neg_si_sdr = -spectral_si_sdr_db(est, clean_spec, top).mean() / 10
        return bce + cfg.snr_weight * (neg_snr + neg_si_sdr) / 2
    return bce + cfg.snr_weight * neg_snr


def teacher_selection(cfg: TrainConfig, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """``[B]`` bool: the examples of ``batch`` that take the teacher's targets - ``snr_db`` at
    most ``cfg.teacher_max_snr_db`` (nan never; +inf, clean, only if the limit is inf), in a
    room only with ``cfg.teacher_in_rooms``. Items without those keys (datasets of recorded
    pairs made elsewhere) are never selected."""
    n = len(batch["noisy"])
    if "snr_db" not in batch or "room" not in batch:
        return torch.zeros(n, dtype=torch.bool)
    snr, room = batch["snr_db"].reshape(n), batch["room"].reshape(n).bool()
    selected = snr <= cfg.teacher_max_snr_db  # False for nan
    return selected if cfg.teacher_in_rooms else selected & ~room


@torch.no_grad()
def distillation_targets(
    teacher: MaskNet, selected: torch.Tensor, target: torch.Tensor,
    noisy_spec: torch.Tensor, clean_spec: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(target, reference)`` of a batch with the teacher standing in on the ``selected: [B]``
    examples: its mask ``[B, T, F]`` replaces the ideal ``target`` and its estimate (the
    masked, and with a deep filter filtered, noisy spectrum) replaces ``clean_spec`` (what the
    SNR terms compare with). The teacher runs on
    the selected examples only, in eval mode, aligned with its own look-ahead as the student's
    masks are with theirs."""
    if not bool(selected.any()):
        return target, clean_spec
    idx = selected.nonzero().squeeze(1)
    was_training = teacher.training
    teacher.eval()
    out = offline_masks(teacher, noisy_spec[idx].abs(), teacher.cfg.lookahead)
    est, mask = teacher.estimate(out, noisy_spec[idx])
    teacher.train(was_training)
    target, reference = target.clone(), clean_spec.clone()
    target[idx] = mask.to(target.dtype)
    reference[idx] = est.to(noisy_spec.dtype)
    return target, reference


def load_teacher(cfg: TrainConfig, stft_cfg: StftConfig, device: torch.device
                 ) -> MaskNet | None:
    """The frozen teacher of ``cfg.teacher`` on ``device`` (None without one); a one-line
    error if it is missing or was trained on another STFT."""
    if not cfg.teacher:
        return None
    path = Path(cfg.teacher)
    if not path.is_file():
        raise ckpt.CheckpointError(f"{path}: no such teacher model; set teacher to a "
                                   "checkpoint such as src/speechmask/pretrained/default/model.pt")
    teacher, teacher_stft, _ = ckpt.load_model(path)
    if teacher_stft != stft_cfg:
        raise ckpt.CheckpointError(f"{path}: the teacher was trained on another STFT "
                                   f"({teacher_stft}); training uses {stft_cfg}")
    teacher.requires_grad_(False)
    return teacher.to(device).eval()


# ---------------------------------------------------------------------------------------------
# Validation


@torch.no_grad()
def enhance_batch(model: MaskNet, noisy: np.ndarray, stft_cfg: StftConfig) -> np.ndarray:
    """Offline enhancement of one mono 16 kHz waveform ``[N]`` with ``model``."""
    x = torch.from_numpy(np.ascontiguousarray(noisy, dtype=np.float32))[None]
    spec = stft(x, stft_cfg)
    est, _ = model.estimate(model.offline(spec.abs()), spec)
    return istft(est, x.shape[-1], stft_cfg)[0].numpy()


@torch.no_grad()
def validate(
    model: MaskNet, cfg: TrainConfig, pairs: list[EvalPair], stft_cfg: StftConfig,
    dist: DistContext = distributed.SINGLE,
) -> dict[str, float]:
    """Validation figures over the fixed valid pairs: mean loss, output SNR and SI-SDR (dB)
    over the noisy pairs, and over the clean pass-through pairs (input SNR +inf, if any) the
    output's SI-SDR against the input (``valid_clean_si_sdr_db``, only with such pairs). When
    the noisy pairs are both corpus pairs and held-out speakers' (ids starting with
    :data:`speechmask.evalsets.HELDOUT_ID_PREFIX`), their SI-SDR also per group:
    ``valid_corpus_si_sdr_db`` (the corpus' valid speakers are its training speakers) and
    ``valid_heldout_si_sdr_db``.

    With several processes each scores every ``world_size``-th pair and the sums are
    all-reduced; rank 0's means are then broadcast so that early stopping and the choice of
    ``best.pt`` are decided on bit-identical numbers everywhere."""
    model.eval()
    # Sums of: loss, SNR, SI-SDR, noisy count, clean SI-SDR, clean count, then SI-SDR and
    # count of the corpus' noisy pairs and of the held-out speakers' noisy pairs.
    sums = [0.0] * 10
    for p in pairs[dist.rank::dist.world_size]:
        clean = torch.from_numpy(p.clean)[None]
        noisy = torch.from_numpy(p.noisy)[None]
        noisy_spec, clean_spec = stft(noisy, stft_cfg), stft(clean, stft_cfg)
        out = model.offline(noisy_spec.abs())
        est = istft(model.estimate(out, noisy_spec)[0], noisy.shape[-1], stft_cfg)[0].numpy()
        if math.isinf(p.input_snr_db):
            sums[4] += si_sdr_db(p.clean, est)
            sums[5] += 1
            continue
        target = ideal_mask(cfg.target, clean_spec.abs(), (noisy_spec - clean_spec).abs())
        si_sdr = si_sdr_db(p.clean, est)
        sums[0] += float(compute_loss(cfg, out, target, noisy_spec, clean_spec))
        sums[1] += snr_db(p.clean, est)
        sums[2] += si_sdr
        sums[3] += 1
        group = 8 if p.id.startswith(HELDOUT_ID_PREFIX) else 6
        sums[group] += si_sdr
        sums[group + 1] += 1
    model.train()
    if dist.enabled:
        sums = distributed.all_reduce_sum(dist, sums)
    n, n_clean = max(sums[3], 1), sums[5]
    out = {"valid_loss": sums[0] / n, "valid_snr_db": sums[1] / n,
           "valid_si_sdr_db": sums[2] / n}
    if n_clean:
        out["valid_clean_si_sdr_db"] = sums[4] / n_clean
    if sums[7] and sums[9]:
        out["valid_corpus_si_sdr_db"] = sums[6] / sums[7]
        out["valid_heldout_si_sdr_db"] = sums[8] / sums[9]
    return distributed.broadcast_object(dist, out) if dist.enabled else out


# ---------------------------------------------------------------------------------------------
# Logging and plots


LOG_COLUMNS = ("epoch", "step", "lr", "train_loss", "valid_loss", "valid_snr_db",
               "valid_si_sdr_db", "valid_clean_si_sdr_db", "valid_corpus_si_sdr_db",
               "valid_heldout_si_sdr_db", "seconds")


def write_log(rows: list[dict], out_dir: Path) -> None:
    """Per-epoch CSV log, rewritten atomically each epoch."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=LOG_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(out_dir / "train_log.csv", text.getvalue())


def _float(value: object) -> float:
    """A log cell as a float: NaN for a missing or empty one (rows from older runs)."""
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")


def plot_curves(rows: list[dict], path: Path, title: str = "") -> None:
    """Train/valid loss, and per epoch the valid SNR and SI-SDR of the noisy pairs (and per
    group: corpus and held-out speakers, where logged) and the clean pass-through SI-SDR where
    the valid set has clean pairs, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax1.plot(epochs, [r["train_loss"] for r in rows], "o-", label="train")
    ax1.plot(epochs, [r["valid_loss"] for r in rows], "s-", label="valid")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss")
    ax1.legend()
    ax1.grid(alpha=0.3)
    ax2.plot(epochs, [r["valid_snr_db"] for r in rows], "o-", color="tab:green", label="SNR")
    si_sdr = [_float(r.get("valid_si_sdr_db")) for r in rows]
    if not all(math.isnan(v) for v in si_sdr):
        ax2.plot(epochs, si_sdr, "s-", color="tab:olive", label="SI-SDR")
    for key, style, label in (("valid_corpus_si_sdr_db", "v--", "SI-SDR, corpus speakers"),
                              ("valid_heldout_si_sdr_db", "D--", "SI-SDR, held-out speakers")):
        values = [_float(r.get(key)) for r in rows]
        if not all(math.isnan(v) for v in values):
            ax2.plot(epochs, values, style, label=label, markersize=4)
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("valid, noisy pairs (dB)")
    ax2.legend(loc="lower right")
    clean = [_float(r.get("valid_clean_si_sdr_db")) for r in rows]
    if not all(math.isnan(v) for v in clean):
        ax3 = ax2.twinx()
        ax3.plot(epochs, clean, "^:", color="tab:purple")
        ax3.set_ylabel("clean pass-through SI-SDR (dB)", color="tab:purple")
    ax2.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    try:
        write_atomic(path, lambda handle: fig.savefig(handle, format="png", dpi=100))
    finally:
        plt.close(fig)


# ---------------------------------------------------------------------------------------------
# The steps of a run


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Linear warm-up then cosine decay to 1 % of the peak."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps))
    return cfg.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def feature_statistics(model: MaskNet, dataset: torch.utils.data.Dataset, n: int = 256
                       ) -> tuple:
    """Per-bin mean/std ``[F]`` of the compressed noisy magnitude over ``n`` training items."""
    n = min(n, len(dataset))
    feats = torch.cat([compress(dataset[i]["mag"], model.cfg.features) for i in range(n)])
    return feats.mean(0), feats.std(0)


class WeightEma:
    """An exponential moving average of a model's weights (:attr:`TrainConfig.ema_decay`).

    ``model`` is the averaged copy (eval mode, no gradients): what is validated and saved."""

    def __init__(self, model: MaskNet, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        self._params = list(self.model.parameters())  # updated in place every step
        for param in self._params:
            param.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: MaskNet, step: int) -> None:
        """Move the average towards ``model``'s weights after optimiser step ``step`` (0-based);
        buffers (the input normalisation) are copied."""
        decay = min(self.decay, (1 + step) / (10 + step))
        torch._foreach_lerp_(self._params, list(model.parameters()), 1 - decay)
        for mine, theirs in zip(self.model.buffers(), model.buffers(), strict=True):
            mine.copy_(theirs)


@dataclass(frozen=True)
class Run:
    """The fixed facts of a training run, shared by its steps."""

    # What is trained, and how.
    cfg: TrainConfig
    # The run folder; rank 0 writes every file in it.
    out: Path
    # Where the model trains (validation runs on the CPU).
    device: torch.device
    # Optimiser steps of the whole schedule (steps per epoch x epochs): the cosine spans them.
    total_steps: int
    # This process' part of a multi-process run (SINGLE: the only process).
    dist: DistContext = distributed.SINGLE
    # STFT of the features and of the spectral losses.
    stft_cfg: StftConfig = StftConfig()
    # The frozen model of cfg.teacher (None: no distillation).
    teacher: MaskNet | None = None


@dataclass
class RunState:
    """How far a run has come: what ``last.pt`` holds besides the weights, the optimiser and
    the random state. Updated in place by the steps of each epoch."""

    # Best-epoch metrics of the earlier runs the starting weights came from, oldest first.
    history: list[dict] = field(default_factory=list)
    # One log row (LOG_COLUMNS) per finished epoch.
    rows: list[dict] = field(default_factory=list)
    # The next epoch to run, 0-based.
    epoch: int = 0
    # Optimiser steps taken.
    step: int = 0
    # Best ``cfg.select_metric`` so far.
    best: float = -math.inf
    # Epochs since ``best`` last improved.
    stale: int = 0


def start_run(cfg: TrainConfig, out_dir: str | os.PathLike, epoch_size: int,
              dist: DistContext = distributed.SINGLE) -> Run:
    """Set this process up for a run of ``epoch_size`` examples per epoch: the run folder
    (rank 0), the device, torch threads and the torch seed (model init, dropout)."""
    out = Path(out_dir)
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
    device = distributed.local_device(dist, resolve_device(cfg.device))
    threads = cfg.threads or distributed.default_threads(dist)
    if threads > 0:
        torch.set_num_threads(threads)
    torch.manual_seed(cfg.seed)
    total_steps = math.ceil(epoch_size / cfg.batch_size) * cfg.epochs
    stft_cfg = StftConfig()
    teacher = load_teacher(cfg, stft_cfg, device)
    if teacher is not None and dist.is_main:
        log.info("teacher %s: its masks are the targets of %s mixtures at <= %g dB",
                 cfg.teacher, "all" if cfg.teacher_in_rooms else "dry", cfg.teacher_max_snr_db)
    return Run(cfg, out, device, total_steps, dist, stft_cfg, teacher)


def build_model(run: Run, train_set: torch.utils.data.Dataset,
                init_model: MaskNet | None = None) -> MaskNet:
    """A :class:`MaskNet` of ``run.cfg.model`` on ``run.device``: ``init_model``'s weights
    (look-ahead and width grown to the config's), else a random init whose input normalisation
    is measured on ``train_set``; the first recurrent layer frozen if the config says so."""
    cfg = run.cfg
    model = MaskNet(cfg.model)
    if init_model is not None:
        model.load_state_dict(grown_init(init_model, cfg.model, cfg.seed).state_dict())
    else:
        # Computed once (every rank would get the same numbers, but they share the cores).
        mean, std = distributed.on_main(run.dist, lambda: feature_statistics(model, train_set))
        model.set_normalization(mean, std)
    model.to(run.device)
    if cfg.freeze_first_layer:
        for name, param in model.rnn.named_parameters():
            if name.endswith("_l0"):
                param.requires_grad_(False)
    return model


def make_optimizer(cfg: TrainConfig, model: MaskNet) -> torch.optim.Optimizer:
    """AdamW over the trainable weights of ``model``; a deep filter's coefficient layer in a
    group of its own, whose ``lr_scale`` (``cfg.df_lr_scale``) scales the schedule's rate."""
    head = [] if model.df_head is None else list(model.df_head.parameters())
    in_head = {id(p) for p in head}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in in_head]
    groups = [{"params": rest, "lr_scale": 1.0}]
    if head:
        groups.append({"params": head, "lr_scale": cfg.df_lr_scale})
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def restore(run: Run, model: MaskNet, opt: torch.optim.Optimizer,
            ema: WeightEma | None = None) -> RunState:
    """Continue the run in ``run.out`` where its ``last.pt`` left it: weights (and their
    average), optimiser and torch random state are loaded in place, the rest is returned (rank
    0 reads the file and hands it to the others)."""
    path = run.out / "last.pt"
    saved = distributed.on_main(run.dist, lambda: ckpt.load_raw(path))
    try:
        if ema is not None:
            # With an average, "state_dict" is the average (what the metrics describe).
            model.load_state_dict(saved["train_state_dict"])
            ema.model.load_state_dict(saved["state_dict"])
        else:
            model.load_state_dict(saved["state_dict"])
        opt.load_state_dict(saved["optimizer"])
        torch.set_rng_state(saved["torch_rng"])
        state = RunState(history=list(saved.get("history", [])), rows=list(saved["log"]),
                         epoch=int(saved["epoch"]) + 1, step=int(saved["step"]),
                         best=float(saved["best"]), stale=int(saved["stale"]))
    except (KeyError, ValueError, RuntimeError, TypeError) as err:
        raise ckpt.CheckpointError(f"{path}: cannot resume from it ({err})") from None
    if run.dist.is_main:
        log.info("resuming after epoch %d (best %s %.2f dB)", state.epoch,
                 run.cfg.select_metric, state.best)
    return state


def run_epoch(run: Run, net: torch.nn.Module, opt: torch.optim.Optimizer,
              train_set: torch.utils.data.Dataset, state: RunState, epoch: int,
              progress: bool = True, ema: WeightEma | None = None) -> float:
    """One pass over epoch ``epoch``'s examples of ``train_set`` (this rank's share of each
    global batch); advances ``state.step`` (and ``ema``). Returns the mean training loss over
    all ranks."""
    cfg, dist, device = run.cfg, run.dist, run.device
    train_set.set_epoch(epoch)
    loader_gen = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
    # The same order on every rank, and the order single-process runs always had: a
    # DataLoader(shuffle=True, generator=g) draws a base seed from g, then shuffles with g.
    torch.empty((), dtype=torch.int64).random_(generator=loader_gen)
    order = torch.randperm(len(train_set), generator=loader_gen).tolist()
    parts = distributed.shard_batches(order, cfg.batch_size, dist.rank, dist.world_size)
    if dist.enabled:
        # Dropout draws its own stream on each rank, fixed by (seed, epoch, rank): masks
        # differ between ranks and a resumed run repeats the killed one exactly.
        torch.manual_seed((cfg.seed * 1000 + epoch) * 1000 + dist.rank)
    # generator=: the loader's own seed draw must not touch the global (dropout) stream.
    loader = torch.utils.data.DataLoader(
        train_set, batch_sampler=[part for part, _ in parts], generator=loader_gen,
        num_workers=cfg.loader_workers, prefetch_factor=4 if cfg.loader_workers else None)
    trainable = [p for group in opt.param_groups for p in group["params"]]
    net.train()
    total, count = 0.0, 0
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}",
               disable=not (progress and dist.is_main), leave=False, unit="batch")
    for batch, (_, weight) in zip(bar, parts, strict=True):
        lr = lr_at(state.step, run.total_steps, cfg)
        for group in opt.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        noisy = batch["noisy"].to(device)
        clean = batch["clean"].to(device)
        noisy_spec, clean_spec = stft(noisy, run.stft_cfg), stft(clean, run.stft_cfg)
        target = batch["mask"].to(device)
        if run.teacher is not None:
            target, clean_spec = distillation_targets(
                run.teacher, teacher_selection(cfg, batch).to(device), target, noisy_spec,
                clean_spec)
        mask = offline_masks(net, noisy_spec.abs(), cfg.model.lookahead)
        loss = compute_loss(cfg, mask, target, noisy_spec, clean_spec,
                            batch["snr_db"].to(device) if "snr_db" in batch else None)
        opt.zero_grad(set_to_none=True)
        (loss * weight if dist.enabled else loss).backward()
        torch.nn.utils.clip_grad_norm_(trainable, cfg.clip_norm)
        opt.step()
        if ema is not None:
            ema.update(net.module if dist.enabled else net, state.step)
        state.step += 1
        if weight > 0:
            total += loss.item() * len(noisy)
            count += len(noisy)
        bar.set_postfix(loss=f"{total / max(count, 1):.4f}", lr=f"{lr:.1e}")
    if dist.enabled:
        total, count = distributed.all_reduce_sum(dist, [total, count])
    return total / max(count, 1)


def validate_epoch(run: Run, model: MaskNet, valid: list[EvalPair]) -> dict[str, float]:
    """:func:`validate` of ``model`` on the CPU (numpy I/O, full-length pairs); a model
    elsewhere is copied, so that DDP keeps the one it wraps where it expects it."""
    on_cpu = model if run.device.type == "cpu" else copy.deepcopy(model).cpu()
    return validate(on_cpu, run.cfg, valid, run.stft_cfg, run.dist)


def record_epoch(run: Run, state: RunState, epoch: int, train_loss: float,
                 metrics: dict[str, float], t0: float) -> bool:
    """Add epoch ``epoch``'s log row to ``state`` (rank 0's, on every rank), log it and update
    the best score and the stale count. Returns whether the epoch is the best so far."""
    cfg = run.cfg
    row = {"epoch": epoch + 1, "step": state.step, "lr": lr_at(state.step, run.total_steps, cfg),
           "train_loss": train_loss, **metrics, "seconds": time.time() - t0}
    row = distributed.broadcast_object(run.dist, row)  # rank 0's clock, for identical logs
    state.rows.append(row)
    if run.dist.is_main:
        clean = row.get("valid_clean_si_sdr_db")
        held = row.get("valid_heldout_si_sdr_db")
        log.info("epoch %d: train loss %.4f, valid loss %.4f, valid SNR %.2f dB, SI-SDR "
                 "%.2f dB%s%s (%.0f s)", row["epoch"], row["train_loss"], row["valid_loss"],
                 row["valid_snr_db"], row["valid_si_sdr_db"],
                 "" if held is None else (f" (corpus {row['valid_corpus_si_sdr_db']:.2f}, "
                                          f"held-out {held:.2f})"),
                 "" if clean is None else f", clean pass-through SI-SDR {clean:.2f} dB",
                 row["seconds"])
    score = metrics[cfg.select_metric]
    improved = score > state.best
    state.best = max(state.best, score)
    state.stale = 0 if improved else state.stale + 1
    state.epoch = epoch + 1
    return improved


def save_epoch(run: Run, model: MaskNet, opt: torch.optim.Optimizer, state: RunState,
               epoch: int, improved: bool, ema: WeightEma | None = None) -> None:
    """Epoch ``epoch``'s files, written by rank 0 for every rank: ``best.pt`` if it
    ``improved``, ``last.pt`` (with optimiser state, RNG, log and the step/best/stale counters
    for resuming), the CSV log and the loss curve. With ``ema``, both checkpoints' weights are
    the average (the validated model) and ``last.pt`` adds the training weights."""
    distributed.check_same_weights(run.dist, model)  # rank 0's files stand for every rank
    distributed.on_main(run.dist, partial(_write_epoch, run, model, opt, state, epoch, improved,
                                          ema))


def _write_epoch(run: Run, model: MaskNet, opt: torch.optim.Optimizer, state: RunState,
                 epoch: int, improved: bool, ema: WeightEma | None) -> None:
    cfg, out, rows = run.cfg, run.out, state.rows
    common = {"train_config": config_to_dict(cfg), "epoch": epoch, "metrics": rows[-1],
              "history": state.history}
    scored = model if ema is None else ema.model
    if improved:
        ckpt.save(out / "best.pt", ckpt.model_payload(scored, run.stft_cfg, **common))
    training = {} if ema is None else {"train_state_dict": ckpt.cpu_state_dict(model)}
    ckpt.save(out / "last.pt", {
        **ckpt.model_payload(scored, run.stft_cfg, **common), **training,
        "optimizer": opt.state_dict(), "torch_rng": torch.get_rng_state(), "log": rows,
        "step": state.step, "best": state.best, "stale": state.stale,
    })
    write_log(rows, out)
    plot_curves(rows, out / "loss_curve.png",
                f"{cfg.model.cell.upper()} {cfg.model.layers}x{cfg.model.hidden}, "
                f"{cfg.target.upper()}, loss {cfg.loss}")


def _ask(on_epoch: Callable[[dict], bool], row: dict) -> bool:
    return bool(on_epoch(row))


def run_summary(run: Run, state: RunState, model: MaskNet) -> dict:
    """What :func:`train` returns: the best epoch's log row, epochs, seconds, the parameter
    count and the trained model (last epoch's weights, or their average with an EMA)."""
    best_row = max(state.rows, key=lambda r: _float(r.get(run.cfg.select_metric)))
    return {"best": best_row, "epochs": len(state.rows), "seconds": state.rows[-1]["seconds"],
            "parameters": model.parameter_count(), "model": model}


# ---------------------------------------------------------------------------------------------
# The loop


def train_on(
    data: TrainData,
    cfg: TrainConfig,
    out_dir: str | os.PathLike,
    *,
    resume: bool = False,
    init_model: MaskNet | None = None,
    init_history: list[dict] | None = None,
    progress: bool = True,
    on_epoch: Callable[[dict], bool] | None = None,
    dist: DistContext = distributed.SINGLE,
) -> dict:
    """Train a model of ``cfg`` on ``data`` into ``out_dir``; see :func:`train`."""
    if cfg.select_metric == "valid_heldout_si_sdr_db" and not (
            any(p.id.startswith(HELDOUT_ID_PREFIX) for p in data.valid)
            and any(not p.id.startswith(HELDOUT_ID_PREFIX) for p in data.valid)):
        raise ValueError("select_metric valid_heldout_si_sdr_db needs the held-out speakers' "
                         "pairs beside the corpus' (speech from the corpus extension); use "
                         "valid_si_sdr_db")
    run = start_run(cfg, out_dir, len(data.train_set), dist)
    if dist.is_main:
        log.info("training on %s", data.description)
    model = build_model(run, data.train_set, init_model)
    opt = make_optimizer(cfg, model)
    ema = WeightEma(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
    state = (restore(run, model, opt, ema) if resume
             else RunState(history=list(init_history or [])))
    scored = model if ema is None else ema.model  # what is validated, saved and returned
    # What runs forward and backward; `model` stays the plain MaskNet that is saved/validated.
    net = distributed.wrap_model(dist, model, run.device)
    t0 = time.time() - (state.rows[-1]["seconds"] if state.rows else 0.0)
    for epoch in range(state.epoch, cfg.epochs):
        if cfg.patience and state.stale >= cfg.patience:
            if dist.is_main:
                log.info("early stop: no valid SNR gain for %d epochs", state.stale)
            break
        train_loss = run_epoch(run, net, opt, data.train_set, state, epoch, progress, ema)
        metrics = validate_epoch(run, scored, data.valid)
        improved = record_epoch(run, state, epoch, train_loss, metrics, t0)
        save_epoch(run, model, opt, state, epoch, improved, ema)
        if on_epoch is not None and distributed.on_main(
                dist, partial(_ask, on_epoch, state.rows[-1])):
            if dist.is_main:
                log.info("stopped after epoch %d by on_epoch", epoch + 1)
            break
    if net is not model:
        # The DDP wrapper (its reducer holds the process group) is freed now, not by a later
        # garbage collection after the group is destroyed or at interpreter exit, where a
        # gloo rank aborted twice in CI ("terminate called without an active exception").
        del net
        gc.collect()
    return run_summary(run, state, scored)


def train(
    cfg: TrainConfig,
    out_dir: str | os.PathLike,
    corpus: Corpus | None = None,
    resume: bool = False,
    init_model: MaskNet | None = None,
    init_history: list[dict] | None = None,
    speech: list[np.ndarray] | None = None,
    noise: list[np.ndarray] | None = None,
    valid: list[EvalPair] | None = None,
    train_set: torch.utils.data.Dataset | None = None,
    progress: bool = True,
    on_epoch: Callable[[dict], bool] | None = None,
    dist: DistContext = distributed.SINGLE,
) -> dict:
    """Train a model and return the best validation metrics.

    Writes to ``out_dir``: ``best.pt`` (best ``cfg.select_metric``, inference checkpoint),
    ``last.pt`` (full state for ``resume``), ``train_log.csv`` and ``loss_curve.png``. Data
    (:class:`TrainData`): ``train_set`` (any Dataset yielding MixtureDataset's item dict and
    having ``set_epoch``) with ``valid`` (imported user data), else ``corpus`` (train/valid
    splits, or the sources ``cfg.mix`` names) with any of ``speech``/``noise``/``valid`` given
    used instead. ``init_model`` starts from given weights; ``init_history`` (the best-epoch
    metrics of the runs that made them, oldest first) is kept in every checkpoint as
    ``history``, so a model trained in stages says so. ``on_epoch(row)`` is called after each
    epoch's checkpoints are written, with that epoch's log row; returning True stops training
    there (hyper-parameter search prunes with it).

    ``dist`` (from :func:`speechmask.distributed.init_from_env`, in every process of a
    torchrun launch) trains with DistributedDataParallel: each rank loads the data, takes its
    share of every global batch (:attr:`TrainConfig.batch_size`) and validates its share of
    the valid pairs. Rank 0 alone logs, shows progress, reads ``last.pt`` (handing it to the
    others) and writes every file - in the same format as a single process, so ``resume``,
    evaluation and export do not care how a run was trained - and calls ``on_epoch``. Every rank
    returns the same result; ``"model"`` is this rank's trained model (last epoch's weights).
    """
    if train_set is not None:
        data = TrainData.from_dataset(train_set, valid)
    elif speech is not None and noise is not None and valid is not None:
        data = TrainData.from_arrays(cfg, speech, noise, valid)
    else:
        data = TrainData.from_corpus(cfg, corpus, speech=speech, noise=noise, valid=valid,
                                     verbose=dist.is_main)
    return train_on(data, cfg, out_dir, resume=resume, init_model=init_model,
                    init_history=init_history, progress=progress, on_epoch=on_epoch, dist=dist)


def with_overrides(cfg: TrainConfig, **kw) -> TrainConfig:
    """``cfg`` with top-level and ``model__x`` / ``mix__x`` fields replaced."""
    model = {k[7:]: v for k, v in kw.items() if k.startswith("model__")}
    mix = {k[5:]: v for k, v in kw.items() if k.startswith("mix__")}
    top = {k: v for k, v in kw.items() if "__" not in k}
    return replace(cfg, model=replace(cfg.model, **model), mix=replace(cfg.mix, **mix), **top)
