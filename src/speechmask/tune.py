"""Hyper-parameter search with Optuna: TPE sampling, median pruning on the per-epoch validation
SNR, and a study kept in a database (SQLite file) so it survives a kill and can be shared by
several ``speechmask tune`` processes at once.

The search covers the cell type, depth, width, dropout, peak learning rate, mask target,
feature compression and, when allowed, the look-ahead (:class:`SearchSpace`); everything else
comes from a base :class:`~speechmask.train.TrainConfig`. Each trial is an ordinary
:func:`~speechmask.train.train` run in ``OUT/trial_<number>`` and its objective is the run's best
validation SNR (dB), so the best trial is reproduced exactly by ``speechmask train --config
OUT/best_config.toml``: :func:`write_best_config` writes that file, :func:`best_command` the
command.

Per-epoch pruning: ``train(on_epoch=...)`` hands each finished epoch to a reporter that
reports the valid SNR to the trial and raises :class:`optuna.TrialPruned` when the pruner says
so; the run itself (schedule, data, random streams) is exactly the full ``train()`` run.

A trial killed without warning (SIGKILL, closed terminal, power loss) stops sending heartbeats;
after a grace period the next trial any process starts marks it failed and queues a retry with
the same parameters, which continues from the killed run's ``last.pt`` (``train``'s exact
resume). A trial stopped by Ctrl-C is failed at once and retried the same way by the next
:func:`run_study` on the study.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shlex
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.trial import FrozenTrial, TrialState

from .atomic import write_atomic, write_text_atomic
from .config import diff, dump_toml, merge
from .corpus import Corpus, DataError, load_files
from .evalsets import EvalPair
from .model import MAX_LOOKAHEAD
from .train import (
    TrainConfig,
    config_from_dict,
    config_to_dict,
    corpus_noise_and_valid,
    train,
    with_overrides,
)

log = logging.getLogger(__name__)

# Names of the searched parameters, as stored in the study (and as table columns).
PARAM_NAMES = ("cell", "layers", "hidden", "dropout", "lr", "target", "compression",
               "lookahead")
# Study user attributes: the settings a study was started with (checked when it is resumed).
BASE_ATTR = "speechmask.base_config"
SPACE_ATTR = "speechmask.search_space"
# Config fields that do not change a run's results (may differ between processes of a study).
_FREE_FIELDS = ("threads", "device")
# Config fields set by the search (the base's values for them are ignored).
_SEARCHED_FIELDS = ("model.cell", "model.layers", "model.hidden", "model.dropout",
                    "model.compression", "model.lookahead", "lr", "target")
# Pruner settings: judge a trial only once 3 trials have finished, and never on its first epoch
# (steps are 0-based epoch indices, so step 0 = epoch 1 is the warm-up).
PRUNER_STARTUP_TRIALS = 3
PRUNER_WARMUP_STEPS = 1
# A killed trial is retried at most this many times (then it stays failed).
MAX_RETRIES = 2
# The best trial's config file, written in the study's output folder.
BEST_CONFIG = "best_config.toml"
# Settings the best trial's config file always names, defaults or not: the searched model
# fields and lr/target (_SEARCHED_FIELDS), and the run length and seed the trials ran with.
_MODEL_PARAMS = ("cell", "layers", "hidden", "dropout", "compression", "lookahead")
_ALWAYS_NAMED = ("lr", "target", "epochs", "batch_size", "seed")


# ---------------------------------------------------------------------------------------------
# Search space


@dataclass(frozen=True)
class SearchSpace:
    """What the search varies. Pairs are inclusive ``(low, high)`` ranges, tuples of choices are
    categorical. The defaults are the documented ranges."""

    # Recurrent cell, subset of {"lstm", "gru"}.
    cells: tuple[str, ...] = ("lstm", "gru")
    # Recurrent layers, integer range.
    layers: tuple[int, int] = (1, 3)
    # Hidden units per layer, categorical (the widths the CPU budget allows).
    hidden: tuple[int, ...] = (128, 192, 256, 384)
    # Dropout, uniform in [low, high] with high < 1.
    dropout: tuple[float, float] = (0.0, 0.4)
    # Peak learning rate, log-uniform.
    lr: tuple[float, float] = (3e-4, 3e-3)
    # Mask target, subset of {"ibm", "irm"}.
    targets: tuple[str, ...] = ("ibm", "irm")
    # Magnitude compression, subset of {"log", "power"}.
    compressions: tuple[str, ...] = ("log", "power")
    # Look-ahead frames, subset of 0-4. Default (0,): causal trials only. Each frame costs 16 ms
    # of streaming latency and usually buys SNR, so how much to allow is a product choice the
    # search should not make by maximising SNR; give e.g. (0, 1) to let it weigh one frame.
    lookaheads: tuple[int, ...] = (0,)

    def __post_init__(self) -> None:
        for f in fields(self):  # lists (e.g. from JSON) become tuples, so the space stays hashable
            object.__setattr__(self, f.name, tuple(getattr(self, f.name)))
        for name, allowed in (("cells", {"lstm", "gru"}), ("targets", {"ibm", "irm"}),
                              ("compressions", {"log", "power"})):
            values = getattr(self, name)
            if not values or not set(values) <= allowed:
                raise ValueError(f"{name} must be a non-empty subset of {sorted(allowed)}, "
                                 f"got {values}")
        if not self.lookaheads or not set(self.lookaheads) <= set(range(MAX_LOOKAHEAD + 1)):
            raise ValueError(f"lookaheads must be a non-empty subset of 0-{MAX_LOOKAHEAD}, got "
                             f"{self.lookaheads}")
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"hidden must be a non-empty tuple of sizes >= 1, got {self.hidden}")
        if len(self.layers) != 2 or not 1 <= self.layers[0] <= self.layers[1]:
            raise ValueError(f"layers must be (low, high) with 1 <= low <= high, got {self.layers}")
        if len(self.dropout) != 2 or not 0.0 <= self.dropout[0] <= self.dropout[1] < 1.0:
            raise ValueError(f"dropout must be (low, high) with 0 <= low <= high < 1, got "
                             f"{self.dropout}")
        if len(self.lr) != 2 or not 0.0 < self.lr[0] <= self.lr[1]:
            raise ValueError(f"lr must be (low, high) with 0 < low <= high, got {self.lr}")


def config_from_params(params: dict[str, Any], base: TrainConfig) -> TrainConfig:
    """``base`` with the searched parameters of a trial (names of :data:`PARAM_NAMES`) set."""
    model_keys = ("cell", "layers", "hidden", "dropout", "compression", "lookahead")
    kw: dict[str, Any] = {f"model__{k}": params[k] for k in model_keys if k in params}
    kw.update({k: params[k] for k in ("lr", "target") if k in params})
    for key in ("layers", "hidden", "lookahead"):
        if f"model__{key}" in kw:
            kw[f"model__{key}"] = int(kw[f"model__{key}"])
    for key in ("model__dropout", "lr"):
        if key in kw:
            kw[key] = float(kw[key])
    return with_overrides(base, **kw)


def suggest(trial: optuna.trial.BaseTrial, space: SearchSpace, base: TrainConfig) -> TrainConfig:
    """Draw one configuration from ``space`` with ``trial`` and return ``base`` with it set."""
    params = {
        "cell": trial.suggest_categorical("cell", space.cells),
        "layers": trial.suggest_int("layers", space.layers[0], space.layers[1]),
        "hidden": trial.suggest_categorical("hidden", space.hidden),
        "dropout": trial.suggest_float("dropout", space.dropout[0], space.dropout[1]),
        "lr": trial.suggest_float("lr", space.lr[0], space.lr[1], log=True),
        "target": trial.suggest_categorical("target", space.targets),
        "compression": trial.suggest_categorical("compression", space.compressions),
        # Recorded even when fixed, so a trial's params alone rebuild its config.
        "lookahead": trial.suggest_categorical("lookahead", space.lookaheads),
    }
    return config_from_params(params, base)


# ---------------------------------------------------------------------------------------------
# Storage


def _storage_error(shown: str, reason: str) -> DataError:
    return DataError(f"cannot use {shown!r} as the study storage: {reason}; give a database URL "
                     "such as sqlite:///study.db (a file in the current folder)")


# Database errors of processes opening a new database at the same time (worth a retry).
_TRANSIENT = ("already exists", "UNIQUE constraint failed", "database is locked")


def open_storage(url: str, heartbeat_seconds: int = 60) -> optuna.storages.RDBStorage:
    """Open (creating if needed) the study database at ``url`` (e.g. ``sqlite:///study.db``).

    Trials send a heartbeat every ``heartbeat_seconds``; a running trial silent for twice that
    is failed by the next trial started on the study and retried (:data:`MAX_RETRIES` times).
    Raises :class:`DataError` (one line) when the URL cannot be used.
    """
    import sqlalchemy.engine
    import sqlalchemy.exc

    if heartbeat_seconds < 1:
        raise ValueError(f"heartbeat_seconds must be >= 1, got {heartbeat_seconds}")
    if "://" not in url:
        raise _storage_error(url, "it is not a database URL (no scheme://)")
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise _storage_error(url, "it is not a valid database URL") from None
    shown = parsed.render_as_string(hide_password=True)
    engine_kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        db = parsed.database or ""
        if db in ("", ":memory:") or db.startswith("file::memory:"):
            raise _storage_error(shown, "an in-memory database would lose the study on exit")
        path = Path(db)
        if path.is_dir():
            raise _storage_error(shown, f"{path} is a folder, not a database file")
        if not path.parent.is_dir():
            raise _storage_error(shown, f"folder {path.parent} does not exist (create it first)")
        if not os.access(path if path.exists() else path.parent, os.W_OK):
            raise _storage_error(shown, f"{path if path.exists() else path.parent} is not "
                                 "writable")
        # Several processes share the file: wait for a lock instead of failing at once.
        engine_kwargs["connect_args"] = {"timeout": 60}
    try:
        for attempt in range(5):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ExperimentalWarning)
                    return optuna.storages.RDBStorage(
                        url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_seconds,
                        heartbeat_stale_trial_callback=(
                            optuna.storages.RetryHeartbeatStaleTrialCallback(
                                max_retry=MAX_RETRIES)),
                    )
            except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.IntegrityError) as err:
                # Processes creating a new database together race on its tables and version
                # rows; the losers only have to open it again.
                if attempt == 4 or not any(m in str(err) for m in _TRANSIENT):
                    raise
                time.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")
    except sqlalchemy.exc.NoSuchModuleError:
        raise _storage_error(shown, f"unknown database kind {parsed.drivername!r}") from None
    except ImportError as err:
        cause = err.__cause__ or err
        raise _storage_error(shown, f"its database driver is not installed ({cause})") from None
    except (sqlalchemy.exc.SQLAlchemyError, RuntimeError, ValueError, OSError) as err:
        reason = str(getattr(err, "orig", None) or err).strip().splitlines()
        raise _storage_error(shown, reason[0] if reason else type(err).__name__) from None


# ---------------------------------------------------------------------------------------------
# Study settings (checked on resume)


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _json(obj: Any) -> Any:
    return json.loads(json.dumps(obj))


def _comparable(base: dict) -> dict[str, Any]:
    skip = set(_FREE_FIELDS) | set(_SEARCHED_FIELDS)
    return {k: v for k, v in _flatten(base).items() if k not in skip}


def _check_settings(study: optuna.Study, base: TrainConfig, space: SearchSpace) -> None:
    """Record the settings of a new study; refuse to continue one made with other settings
    (trials run with other data, epochs or ranges are not comparable)."""
    base_d, space_d = _json(config_to_dict(base)), _json(asdict(space))
    attrs = study.user_attrs
    if BASE_ATTR not in attrs:
        study.set_user_attr(BASE_ATTR, base_d)
        study.set_user_attr(SPACE_ATTR, space_d)
        return
    # A config field added since the study started counts as its default then.
    defaults = _comparable(_json(config_to_dict(TrainConfig())))
    old, new = {**defaults, **_comparable(attrs[BASE_ATTR])}, _comparable(base_d)
    diffs = [f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new))
             if old.get(k) != new.get(k)]
    # A field added to the space since the study started counts as its default then.
    old_space = {**_json(asdict(SearchSpace())), **attrs.get(SPACE_ATTR, space_d)}
    diffs += [f"search {k} {old_space.get(k)!r} -> {v!r}" for k, v in space_d.items()
              if old_space.get(k) != v]
    if diffs:
        raise DataError(f"study {study.study_name!r} was started with other settings "
                        f"({'; '.join(diffs[:4])}{'; ...' if len(diffs) > 4 else ''}); continue "
                        "it with the same settings or start a new study name")


def study_base(study: optuna.Study) -> TrainConfig:
    """The base training config a study was started with (stored in the study)."""
    stored = study.user_attrs.get(BASE_ATTR)
    if stored is None:
        raise DataError(f"study {study.study_name!r} holds no base config; pass it explicitly")
    return config_from_dict(stored)


# ---------------------------------------------------------------------------------------------
# Per-epoch reporting


def read_log(run_dir: str | os.PathLike) -> list[dict[str, float]]:
    """Rows of ``run_dir/train_log.csv`` as floats (``[]`` when there is no log yet; an empty
    cell, a figure the run's validation set has no pairs for, is left out)."""
    path = Path(run_dir) / "train_log.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return [{k: float(v) for k, v in row.items() if v != ""}
                for row in csv.DictReader(handle)]


class _Reporter:
    """Reports finished epochs of a trial's run to Optuna; used as ``train(on_epoch=...)``.

    Each call reports the log rows not reported yet (step = 0-based epoch index, value = valid
    SNR in dB; a resumed run's earlier rows included) and raises :class:`optuna.TrialPruned`
    out of ``train()`` when the pruner says so.
    """

    def __init__(self, trial: optuna.Trial, run_dir: Path):
        self.trial, self.run_dir = trial, run_dir
        self.reported: dict[int, float] = {}

    def __call__(self, row: dict) -> bool:
        self.report(prune=True)
        return False

    def report(self, prune: bool) -> None:
        """Report log rows not reported yet; with ``prune``, stop the trial if it should be."""
        new = False
        for row in read_log(self.run_dir):
            step = int(row["epoch"]) - 1
            if step not in self.reported:
                self.reported[step] = row["valid_snr_db"]
                self.trial.report(row["valid_snr_db"], step)
                new = True
        if self.reported:
            self.trial.set_user_attr("epochs", len(self.reported))
        if prune and new and self.trial.should_prune():
            last = max(self.reported)
            raise optuna.TrialPruned(
                f"valid SNR {self.reported[last]:.2f} dB after epoch {last + 1} (best "
                f"{max(self.reported.values()):.2f} dB) is below the median of earlier trials")


# ---------------------------------------------------------------------------------------------
# The study


Data = tuple[list[np.ndarray], list[np.ndarray], list[EvalPair]]


class _Objective:
    """Trains one trial's configuration; returns its best validation SNR (dB)."""

    def __init__(self, space: SearchSpace, base: TrainConfig, out: Path,
                 load: Callable[[], Data], progress: bool):
        self.space, self.base, self.out, self.progress = space, base, out, progress
        self._load, self._data = load, None

    def data(self) -> Data:
        if self._data is None:  # loaded once per process, on the first trial
            self._data = self._load()
        return self._data

    def __call__(self, trial: optuna.Trial) -> float:
        cfg = suggest(trial, self.space, self.base)
        run_dir = (self.out / f"trial_{trial.number}").resolve()
        # A retry of a killed trial inherits its user attrs, among them the killed run's folder.
        previous = trial.user_attrs.get("run_dir")
        resume = False
        if previous and Path(previous) != run_dir and (Path(previous) / "last.pt").is_file():
            shutil.copytree(previous, run_dir, dirs_exist_ok=True)
            resume = True
            log.info("trial %d: continuing killed trial run %s", trial.number, previous)
        elif (run_dir / "last.pt").exists():
            raise DataError(f"{run_dir}: holds a training run that is not trial {trial.number} "
                            f"of study {trial.study.study_name!r}; give each study its own "
                            "output folder")
        trial.set_user_attr("run_dir", str(run_dir))
        trial.set_user_attr("interrupted", False)
        log.info("trial %d: %s", trial.number, ", ".join(f"{k}={v}" for k, v in
                                                        trial.params.items()))
        speech, noise, valid = self.data()
        reporter = _Reporter(trial, run_dir)
        try:
            result = train(cfg, run_dir, resume=resume, speech=speech, noise=noise, valid=valid,
                           progress=self.progress, on_epoch=reporter)
        except KeyboardInterrupt:  # Optuna marks the trial failed; the next run_study retries it
            trial.set_user_attr("interrupted", True)
            raise
        reporter.report(prune=False)  # rows of a resumed run that ended without a new epoch
        best = result["best"]
        trial.set_user_attr("epochs", int(result["epochs"]))
        trial.set_user_attr("best_epoch", int(best["epoch"]))
        trial.set_user_attr("seconds", float(result["seconds"]))
        trial.set_user_attr("parameters", int(result["parameters"]))
        return float(best["valid_snr_db"])


def _requeue_interrupted(study: optuna.Study) -> None:
    """Queue a retry of each trial stopped by Ctrl-C (failed, ``interrupted``) that has none
    yet; the retry continues from the trial's ``last.pt`` like a retry of a killed trial."""
    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES)
    for t in trials:
        if t.state == TrialState.FAIL and t.user_attrs.get("interrupted") and (
                t.number not in retried):
            log.info("trial %d was interrupted; queueing it to continue", t.number)
            retry(study, t)


def _trial_seed(seed: int, number: int) -> int:
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


class TrialSeededTPESampler(optuna.samplers.BaseSampler):
    """TPE (constant liar, for parallel workers) whose random state is seeded from ``(seed,
    trial number)`` at the start of each trial.

    A plain ``TPESampler(seed=s)`` restarts its random stream in every process, so a resumed
    study, or several processes started together, would draw the same start-up configurations
    again. Trial numbers are unique within a study, so here every trial gets its own stream, and
    a study run by one process is still reproducible from ``seed``.
    """

    def __init__(self, seed: int):
        self.seed = seed
        self._number: int | None = None
        self._tpe = optuna.samplers.TPESampler(seed=seed, constant_liar=True)

    def _for(self, trial: FrozenTrial) -> optuna.samplers.TPESampler:
        if trial.number != self._number:
            self._number = trial.number
            self._tpe = optuna.samplers.TPESampler(seed=_trial_seed(self.seed, trial.number),
                                                   constant_liar=True)
        return self._tpe

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._for(trial).before_trial(study, trial)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict:
        return self._for(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict) -> dict[str, Any]:
        return self._for(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: optuna.distributions.BaseDistribution) -> Any:
        return self._for(trial).sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self._for(trial).after_trial(study, trial, state, values)


def make_sampler(seed: int | None) -> optuna.samplers.BaseSampler:
    """The study's sampler: TPE seeded per trial from ``seed`` (``None``: not reproducible)."""
    if seed is None:
        return optuna.samplers.TPESampler(constant_liar=True)
    return TrialSeededTPESampler(seed)


def _load_corpus_data(corpus: Corpus | str | os.PathLike | None, base: TrainConfig) -> Data:
    corpus = corpus if isinstance(corpus, Corpus) else Corpus(corpus)
    log.info("loading corpus from %s", corpus.root)
    # With base.holdout_noise every trial trains without those noise types and is scored on
    # them only: the study then ranks configurations by how they do on unseen noise.
    noise_files, valid = corpus_noise_and_valid(corpus, base)
    return load_files(corpus.select("train", "speech")), load_files(noise_files), valid


def run_study(
    storage: str,
    study_name: str,
    trials: int,
    out_dir: str | os.PathLike,
    base: TrainConfig,
    space: SearchSpace | None = None,
    data: Data | None = None,
    corpus: Corpus | str | os.PathLike | None = None,
    seed: int | None = 0,
    progress: bool = False,
    heartbeat_seconds: int = 60,
) -> optuna.Study:
    """Run ``trials`` new trials of the study ``study_name`` in ``storage`` and return it.

    The study is created on first use and continued afterwards (also by several processes at
    once). Each trial trains ``base`` with a configuration drawn from ``space`` (default: the
    documented :class:`SearchSpace`) in ``out_dir/trial_<number>``; its value is the best
    validation SNR (dB). Sampler: TPE seeded from ``seed`` and each trial's number
    (:class:`TrialSeededTPESampler`; ``seed=None``: not reproducible). Pruner: median of the
    per-epoch valid SNR over finished trials, from the 2nd epoch once 3 trials have finished.
    Data: ``data`` = ``(speech, noise, valid_pairs)``, else the train/valid splits of ``corpus``
    (a :class:`Corpus` or its folder; default: the bundled corpus), loaded once, on the first
    trial.

    Raises :class:`DataError` (one line) when the storage cannot be opened or the study was
    started with other settings; errors of a trial end the run (the trial is marked failed).
    """
    if trials < 0:
        raise ValueError(f"trials must be >= 0, got {trials}")
    if not study_name:
        raise ValueError("study_name must not be empty")
    space = space if space is not None else SearchSpace()
    rdb = open_storage(storage, heartbeat_seconds)
    study = optuna.create_study(
        storage=rdb, study_name=study_name, direction="maximize", load_if_exists=True,
        sampler=make_sampler(seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=PRUNER_STARTUP_TRIALS,
                                           n_warmup_steps=PRUNER_WARMUP_STEPS),
    )
    if list(study.directions) != [optuna.study.StudyDirection.MAXIMIZE]:
        raise DataError(f"study {study_name!r} in {storage} is not a speechmask tune study "
                        "(it does not maximise one value); pick another study name")
    _check_settings(study, base, space)
    if trials == 0:
        return study
    if data is not None and len(data) != 3:
        raise ValueError("data must be (speech, noise, valid_pairs)")

    def load() -> Data:
        return tuple(data) if data is not None else _load_corpus_data(corpus, base)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _requeue_interrupted(study)
    study.optimize(_Objective(space, base, out, load, progress), n_trials=trials,
                   gc_after_trial=True)
    return study


# ---------------------------------------------------------------------------------------------
# Reports


def _trial_snr(t: FrozenTrial) -> float | None:
    """A trial's valid SNR: its value if finished, else its best reported epoch (pruned...)."""
    if t.state == TrialState.COMPLETE and t.value is not None:
        return float(t.value)
    if t.intermediate_values:
        return float(max(t.intermediate_values.values()))
    return None


def _best_trial(study: optuna.Study) -> FrozenTrial | None:
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return max(done, key=lambda t: t.value) if done else None


def _format_param(name: str, value: Any) -> str:
    if name == "lr":
        return f"{value:.2e}"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def summary_table(study: optuna.Study) -> str:
    """Markdown table of the study's trials (number, state, valid SNR, epochs, parameters) and a
    line naming the best trial. Pruned trials show their best epoch's SNR."""
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    names = list(PARAM_NAMES) + sorted({k for t in trials for k in t.params} - set(PARAM_NAMES))
    header = ["trial", "state", "valid SNR (dB)", "epochs", *names]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for t in trials:
        snr = _trial_snr(t)
        epochs = t.user_attrs.get("epochs", len(t.intermediate_values) or "")
        cells = [str(t.number), t.state.name.lower(), "" if snr is None else f"{snr:.2f}",
                 str(epochs)]
        cells += [_format_param(n, t.params[n]) if n in t.params else "" for n in names]
        lines.append("| " + " | ".join(cells) + " |")
    best = _best_trial(study)
    counts = {s: sum(t.state == s for t in trials) for s in TrialState}
    tally = ", ".join(f"{n} {s.name.lower()}" for s, n in counts.items() if n)
    lines.append("")
    lines.append(f"{len(trials)} trials ({tally or 'none yet'}); " + (
        f"best: trial {best.number}, valid SNR {best.value:.2f} dB" if best is not None
        else "no finished trial yet"))
    return "\n".join(lines)


def plot_trials(study: optuna.Study, path: str | os.PathLike) -> Path:
    """PNG of the valid SNR of each trial by trial number, coloured by state (pruned trials at
    their best epoch), with the best-so-far line of finished trials."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    path = Path(path)
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    styles = {TrialState.COMPLETE: ("tab:blue", "o"), TrialState.PRUNED: ("tab:orange", "x"),
              TrialState.FAIL: ("tab:red", "v"), TrialState.RUNNING: ("tab:gray", "."),
              TrialState.WAITING: ("tab:gray", ".")}
    fig, ax = plt.subplots(figsize=(8, 4))
    for state, (color, marker) in styles.items():
        pts = [(t.number, _trial_snr(t)) for t in trials if t.state == state]
        pts = [(n, v) for n, v in pts if v is not None]
        if pts:
            xs, ys = zip(*pts, strict=True)
            ax.scatter(xs, ys, color=color, marker=marker,
                       label=f"{state.name.lower()} ({len(pts)})", zorder=3)
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    if done:
        best_so_far = list(np.maximum.accumulate([t.value for t in done]))
        xs = [t.number for t in done]
        if trials[-1].number > xs[-1]:  # carry the line on to the last trial
            xs.append(trials[-1].number)
            best_so_far.append(best_so_far[-1])
        ax.step(xs, best_so_far, where="post", color="tab:green",
                label=f"best so far ({best_so_far[-1]:.2f} dB)", zorder=2)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel("valid SNR (dB)")
    ax.set_title(f"study {study.study_name}: {len(trials)} trials")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best")
    fig.tight_layout()
    try:
        return write_atomic(path, lambda handle: fig.savefig(handle, format="png", dpi=100))
    finally:
        plt.close(fig)


def best_config(study: optuna.Study, base: TrainConfig | None = None) -> TrainConfig:
    """The training config of the study's best finished trial (``base``: default the one the
    study was started with). Raises :class:`DataError` when no trial has finished."""
    best = _best_trial(study)
    if best is None:
        raise DataError(f"study {study.study_name!r} has no finished trial yet; run some trials")
    return config_from_params(best.params, base if base is not None else study_base(study))


def best_config_toml(study: optuna.Study, base: TrainConfig | None = None,
                     path: str | os.PathLike = BEST_CONFIG) -> str:
    """The best finished trial's training config as the TOML of ``speechmask train --config``
    (see :mod:`speechmask.config`), headed by a comment naming the study, trial and score and
    the command that trains it from ``path``. It names the searched settings, the run length
    and seed, and every other setting that differs from the :class:`TrainConfig` defaults."""
    best = _best_trial(study)
    cfg = best_config(study, base)
    named = {"model": {k: getattr(cfg.model, k) for k in _MODEL_PARAMS},
             "mix": {"examples_per_epoch": cfg.mix.examples_per_epoch},
             **{k: getattr(cfg, k) for k in _ALWAYS_NAMED}}
    settings = merge(named, diff(cfg, TrainConfig()))
    header = (f"# Best trial of study {study.study_name!r}: trial {best.number}, valid SNR "
              f"{best.value:.2f} dB (written by speechmask tune).\n"
              "# Settings not named here are the TrainConfig defaults. Train it with:\n"
              f"#   {_train_command(path)}\n\n")
    return header + dump_toml(settings)


def write_best_config(study: optuna.Study, path: str | os.PathLike | None = None,
                      base: TrainConfig | None = None) -> Path:
    """Write :func:`best_config_toml` to ``path`` (default: :data:`BEST_CONFIG` beside the best
    trial's run folder, i.e. in the study's output folder), atomically; returns the path."""
    if path is None:
        best = _best_trial(study)
        run_dir = best.user_attrs.get("run_dir") if best is not None else None
        if run_dir is None:
            best_config(study, base)  # no finished trial: its one-line error
            raise DataError(f"study {study.study_name!r}: the best trial has no run folder; "
                            "say where to write its config")
        path = Path(run_dir).parent / BEST_CONFIG
    written = write_text_atomic(Path(path), best_config_toml(study, base, path))
    log.info("the best trial's config: %s", written)
    return written


def best_command(study: optuna.Study, base: TrainConfig | None = None, out: str = "runs/best",
                 corpus: str | os.PathLike | None = None,
                 config: str | os.PathLike | None = None) -> str:
    """Write the best trial's config file (:func:`write_best_config`, to ``config`` or the
    default place) and return the ``speechmask train --config FILE --out OUT`` command line
    that reruns the trial exactly (``--corpus`` when given: the data is not in the config)."""
    return _train_command(write_best_config(study, config, base), out, corpus)


def _train_command(config: str | os.PathLike, out: str = "runs/best",
                   corpus: str | os.PathLike | None = None) -> str:
    path = Path(config)
    if path.is_absolute() and path.is_relative_to(Path.cwd()):
        path = path.relative_to(Path.cwd())  # shorter, and the same from here
    args = ["speechmask", "train", "--config", str(path), "--out", str(out)]
    if corpus is not None:
        args += ["--corpus", str(corpus)]
    return shlex.join(args)


def describe_best(study: optuna.Study) -> str:
    """One line about the best trial (for logs and the CLI)."""
    best = _best_trial(study)
    if best is None:
        return f"study {study.study_name!r}: no finished trial yet"
    return (f"best: trial {best.number}, valid SNR {best.value:.2f} dB, "
            + ", ".join(f"{k}={_format_param(k, v)}" for k, v in best.params.items()))


__all__ = [
    "BEST_CONFIG", "PARAM_NAMES", "SearchSpace", "TrialSeededTPESampler", "best_command",
    "best_config", "best_config_toml", "config_from_params", "describe_best", "make_sampler",
    "open_storage", "plot_trials", "read_log", "run_study", "study_base", "suggest",
    "summary_table", "write_best_config",
]
