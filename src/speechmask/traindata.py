"""What a training run trains and validates on (:class:`TrainData`), from one of three sources:
the bundled corpus (its splits, or the speech and noise sources a config names), speech and
noise arrays, or any training Dataset (data a user imported)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from .corpus import Corpus, CorpusFile, DataError, load_files
from .dataset import MixtureDataset
from .evalsets import EvalPair, eval_pairs
from .features import StftConfig
from .sources import training_data

if TYPE_CHECKING:  # (train imports this module)
    from .train import TrainConfig

log = logging.getLogger(__name__)


def corpus_noise_and_valid(corpus: Corpus, cfg: TrainConfig, valid_pairs: bool = True
                           ) -> tuple[list[CorpusFile], list[EvalPair]]:
    """The corpus' training noise files and validation pairs for ``cfg``: every train-split
    noise and the fixed valid set, or, with ``cfg.holdout_noise``, the noise of the other types
    and valid pairs whose noise is of the held-out types only (``[]`` unless ``valid_pairs``)."""
    held = cfg.holdout_noise
    if held:  # (eval_pairs checks that valid has them)
        corpus.check_noise_types(held, "train")
    noise = [f for f in corpus.select("train", "noise") if f.label not in held]
    if not noise:
        raise DataError(f"--hold-out-noise {','.join(held)} leaves no training noise")
    valid = (eval_pairs(corpus, "valid", cfg.valid_count, noise_types=held or None)
             if valid_pairs else [])
    return noise, valid


def _shares(weights: dict[str, float]) -> str:
    return ", ".join(f"{name} {w:g}" for name, w in weights.items())


@dataclass(frozen=True)
class TrainData:
    """What a run trains and validates on. Built from one of three sources: the bundled corpus
    (:meth:`from_corpus`), speech and noise arrays (:meth:`from_arrays`) or any training
    Dataset, such as data a user imported (:meth:`from_dataset`)."""

    # Items are MixtureDataset's dict (``noisy, clean, noise: [N]``, ``mag, mask: [T, F]``);
    # ``set_epoch(epoch)`` draws that epoch's examples, ``len()`` is the examples per epoch.
    train_set: torch.utils.data.Dataset
    # The fixed validation pairs, scored after every epoch; never empty.
    valid: list[EvalPair]
    # Where the data came from, one line for the log.
    description: str = ""

    def __post_init__(self) -> None:
        if not self.valid:
            raise DataError("no validation pairs")

    @classmethod
    def from_dataset(cls, train_set: torch.utils.data.Dataset, valid: list[EvalPair] | None
                     ) -> TrainData:
        """``train_set`` as it is, validated on ``valid``."""
        if valid is None:
            raise DataError("a custom training set needs validation pairs too")
        return cls(train_set, valid, f"a custom training set of {len(train_set)} examples per "
                   f"epoch, {len(valid)} validation pairs")

    @classmethod
    def from_arrays(
        cls, cfg: TrainConfig, speech: list[np.ndarray], noise: list[np.ndarray],
        valid: list[EvalPair], speech_groups: list[str] | None = None,
        noise_groups: list[str] | None = None,
    ) -> TrainData:
        """Mixtures of ``speech`` and ``noise`` (``[samples]`` arrays at 16 kHz) drawn by
        ``cfg.mix`` with ``cfg.target`` masks and ``cfg.seed`` (:class:`MixtureDataset`);
        ``*_groups`` name each array's source for the source shares of ``cfg.mix``."""
        if not valid:  # before the Dataset: its room bank can take a while to build
            raise DataError("no validation pairs")
        dataset = MixtureDataset(speech, noise, cfg.mix, cfg.target, cfg.seed, StftConfig(),
                                 speech_groups, noise_groups)
        return cls(dataset, valid, f"{len(speech)} utterances, {len(noise)} noise recordings, "
                   f"{len(valid)} validation pairs")

    @classmethod
    def from_corpus(
        cls, cfg: TrainConfig, corpus: Corpus | None = None, *,
        speech: list[np.ndarray] | None = None, noise: list[np.ndarray] | None = None,
        valid: list[EvalPair] | None = None, verbose: bool = True,
    ) -> TrainData:
        """Training speech and noise of ``corpus`` (default: the bundled one) and its validation
        pairs: by source share when ``cfg.mix`` names sources (:func:`sources.training_data`),
        else its train split less the ``cfg.holdout_noise`` types and its valid split
        (:func:`corpus_noise_and_valid`). ``speech``, ``noise`` or ``valid`` given are used
        instead of loading them. ``verbose``: log what is loaded."""
        corpus = corpus if corpus is not None else Corpus()
        speech_groups = noise_groups = None
        if cfg.mix.speech_sources or cfg.mix.noise_sources:
            if verbose:
                log.info("loading speech (%s) and noise (%s)",
                         _shares(cfg.mix.speech_sources) or f"{corpus.root} train split",
                         _shares(cfg.mix.noise_sources) or f"{corpus.root} train split")
            loaded = training_data(cfg.mix.speech_sources, cfg.mix.noise_sources,
                                   cfg.holdout_noise, cfg.valid_count, main=corpus,
                                   with_valid=valid is None)
            if speech is None:
                speech, speech_groups = loaded.speech, loaded.speech_groups
            if noise is None:
                noise, noise_groups = loaded.noise, loaded.noise_groups
            valid = valid if valid is not None else loaded.valid
        else:
            if verbose:
                log.info("loading corpus from %s", corpus.root)
            # Noise and valid first: a bad --hold-out-noise fails before the speech is read.
            noise_files, valid_pairs = corpus_noise_and_valid(corpus, cfg,
                                                              valid_pairs=valid is None)
            if verbose and cfg.holdout_noise:
                log.info("noise types held out of training: %s (%d training noise files left; "
                         "validation on %d pairs of the held-out types)",
                         ", ".join(cfg.holdout_noise), len(noise_files), len(valid_pairs))
            speech = speech if speech is not None else load_files(corpus.select("train",
                                                                                "speech"))
            noise = noise if noise is not None else load_files(noise_files)
            valid = valid if valid is not None else valid_pairs
        return cls.from_arrays(cfg, speech, noise, valid, speech_groups, noise_groups)
