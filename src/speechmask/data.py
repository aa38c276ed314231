"""The names that used to live here, re-exported so ``from speechmask.data import ...`` keeps
working. New code imports from the module of each idea:

- :mod:`speechmask.corpus`: the bundled corpus, its splits and files, :class:`DataError`;
- :mod:`speechmask.mixing`: speech + noise at an SNR, :class:`MixConfig`;
- :mod:`speechmask.augment`: :class:`AugmentConfig` and the augmentations it draws;
- :mod:`speechmask.dataset`: :class:`MixtureDataset`, the training Dataset;
- :mod:`speechmask.evalsets`: :class:`EvalPair`, the fixed evaluation sets, ``pairs.csv``.
"""

from __future__ import annotations

from .augment import AugmentConfig, colored_noise, random_eq
from .corpus import (
    SPLITS,
    Corpus,
    CorpusFile,
    DataError,
    default_corpus_dir,
    load_files,
    noise_type_of,
)
from .dataset import MixtureDataset, WeightedPool, training_item
from .evalsets import (
    EVAL_SEED,
    EVAL_SNRS_DB,
    PAIRS_COLUMNS,
    EvalPair,
    PairRow,
    eval_pairs,
    load_pair,
    read_pairs,
    write_pairs,
)
from .mixing import MixConfig, Mixture, loop_to_length, mix, scale_to_snr

__all__ = [
    "EVAL_SEED", "EVAL_SNRS_DB", "PAIRS_COLUMNS", "SPLITS", "AugmentConfig", "Corpus",
    "CorpusFile", "DataError", "EvalPair", "MixConfig", "Mixture", "MixtureDataset", "PairRow",
    "WeightedPool", "colored_noise", "default_corpus_dir", "eval_pairs", "load_files",
    "load_pair", "loop_to_length", "mix", "noise_type_of", "random_eq", "read_pairs",
    "scale_to_snr", "training_item", "write_pairs",
]
