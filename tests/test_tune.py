"""Hyper-parameter search: tiny Optuna studies on synthetic data in a SQLite file."""

import shlex
import time
from dataclasses import replace

import numpy as np
import optuna
import pytest
import torch
from optuna.trial import FixedTrial, TrialState

from speechmask import tune
from speechmask.augment import AugmentConfig
from speechmask.config import from_dict, read_toml
from speechmask.corpus import DataError
from speechmask.evalsets import EvalPair
from speechmask.mixing import MixConfig, mix
from speechmask.model import ModelConfig
from speechmask.train import TrainConfig, train

SPACE = tune.SearchSpace(hidden=(8, 16), layers=(1, 2))


def _base(**kw) -> TrainConfig:
    cfg = dict(
        model=ModelConfig(hidden=8, layers=1),
        mix=MixConfig(crop_seconds=0.5, examples_per_epoch=12, augment=AugmentConfig.off()),
        batch_size=6, epochs=2, warmup_steps=1, patience=0, threads=1,
    )
    cfg.update(kw)
    return TrainConfig(**cfg)


@pytest.fixture(scope="module")
def toy():
    from conftest import _speech_like

    rng = np.random.default_rng(0)
    speech = [_speech_like(seconds=1.0, seed=i, f0=110 + 15 * i) for i in range(6)]
    noise = [rng.standard_normal(8000).astype(np.float32) * (0.5 + i) for i in range(2)]
    valid = []
    for i, snr in enumerate((0.0, 5.0, 10.0)):
        m = mix(_speech_like(seconds=0.75, seed=100 + i), rng.standard_normal(9000).astype(
            np.float32), snr, rng)
        valid.append(EvalPair(f"v{i}", m.clean, m.noisy, snr, "white", "toy", "", ""))
    return speech, noise, valid


@pytest.fixture(scope="module")
def resumed(tmp_path_factory, toy):
    """A study run for 2 trials, then continued by a second run_study call for 1 more."""
    root = tmp_path_factory.mktemp("study")
    url = f"sqlite:///{root / 'study.db'}"
    first = tune.run_study(url, "s", 2, root / "runs", _base(), SPACE, data=toy)
    first_trials = first.get_trials()
    second = tune.run_study(url, "s", 1, root / "runs", _base(), SPACE, data=toy)
    return root, url, first_trials, second


# ---------------------------------------------------------------------------------------------
# Search space


def test_default_space_is_the_documented_one():
    space = tune.SearchSpace()
    assert set(space.cells) == {"lstm", "gru"}
    assert space.layers == (1, 3)
    assert space.hidden == (128, 192, 256, 384)
    assert space.dropout == (0.0, 0.4)
    assert space.lr == (3e-4, 3e-3)
    assert set(space.targets) == {"ibm", "irm"}
    assert set(space.compressions) == {"log", "power"}
    assert space.lookaheads == (0,)  # causal unless the user allows look-ahead


def test_fixed_trial_sets_the_searched_fields_only():
    params = {"cell": "gru", "layers": 3, "hidden": 256, "dropout": 0.25, "lr": 1e-3,
              "target": "ibm", "compression": "power", "lookahead": 2}
    base = _base(seed=7)
    cfg = tune.suggest(FixedTrial(params), tune.SearchSpace(lookaheads=(0, 2)), base)
    assert (cfg.model.cell, cfg.model.layers, cfg.model.hidden, cfg.model.dropout,
            cfg.model.compression, cfg.model.lookahead) == ("gru", 3, 256, 0.25, "power", 2)
    assert (cfg.lr, cfg.target) == (1e-3, "ibm")
    assert (cfg.mix, cfg.epochs, cfg.seed, cfg.batch_size) == (base.mix, 2, 7, 6)
    assert tune.config_from_params(params, base) == cfg


@pytest.mark.parametrize("lookaheads", [(0,), (0, 1), (2,)])
def test_suggestions_stay_in_range(lookaheads):
    space = tune.SearchSpace(lookaheads=lookaheads)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    drawn = set()
    for _ in range(60):
        cfg = tune.suggest(study.ask(), space, _base(model=ModelConfig(hidden=8, lookahead=3)))
        m = cfg.model
        drawn.add(m.lookahead)
        assert m.cell in space.cells and m.hidden in space.hidden
        assert space.layers[0] <= m.layers <= space.layers[1]
        assert space.dropout[0] <= m.dropout <= space.dropout[1]
        assert space.lr[0] <= cfg.lr <= space.lr[1]
        assert cfg.target in space.targets and m.compression in space.compressions
    assert drawn == set(lookaheads)  # the base's look-ahead (3) is never used


def test_sampler_is_reproducible_and_differs_between_workers():
    def draws(seed, n=12):
        study = optuna.create_study(direction="maximize", sampler=tune.make_sampler(seed))
        study.optimize(lambda t: -abs(tune.suggest(t, SPACE, _base()).lr - 1e-3), n_trials=n)
        return [t.params for t in study.trials]

    assert draws(0) == draws(0)  # also past the 10 random start-up trials
    assert draws(0) != draws(1)
    # Two processes on one study (same seed) draw different configurations.
    storage = optuna.storages.InMemoryStorage()
    a = optuna.create_study(storage=storage, study_name="w", sampler=tune.make_sampler(0))
    b = optuna.load_study(storage=storage, study_name="w", sampler=tune.make_sampler(0))
    ta, tb = a.ask(), b.ask()
    assert tune.suggest(ta, SPACE, _base()) != tune.suggest(tb, SPACE, _base())


@pytest.mark.parametrize("bad", [dict(layers=(0, 2)), dict(layers=(3, 1)), dict(hidden=()),
                                 dict(dropout=(0.0, 1.0)), dict(lr=(0.0, 1e-3)),
                                 dict(cells=("rnn",)), dict(targets=()), dict(lookaheads=()),
                                 dict(lookaheads=(0, 5))])
def test_search_space_rejects_bad_ranges(bad):
    with pytest.raises(ValueError):
        tune.SearchSpace(**bad)


# ---------------------------------------------------------------------------------------------
# Storage


@pytest.mark.parametrize("kind", ["scheme", "no-url", "folder", "missing-folder", "not-a-db",
                                  "memory"])
def test_bad_storage_is_a_one_line_data_error(tmp_path, kind):
    (tmp_path / "junk.db").write_text("not a database\n")
    url = {"scheme": "foo://x", "no-url": "study.db", "folder": f"sqlite:///{tmp_path}",
           "missing-folder": f"sqlite:///{tmp_path}/nope/study.db",
           "not-a-db": f"sqlite:///{tmp_path}/junk.db", "memory": "sqlite://"}[kind]
    with pytest.raises(DataError) as err:
        tune.run_study(url, "s", 1, tmp_path / "runs", _base(), SPACE, data=([], [], []))
    message = str(err.value)
    assert "\n" not in message and "sqlite:///study.db" in message
    assert not (tmp_path / "runs").exists()


def test_resuming_with_other_settings_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    tune.run_study(url, "s", 0, tmp_path, _base(), SPACE)  # creates the study, trains nothing
    tune.run_study(url, "s", 0, tmp_path, _base(threads=2), SPACE)  # threads don't matter
    with pytest.raises(DataError, match="epochs 2 -> 3"):
        tune.run_study(url, "s", 0, tmp_path, _base(epochs=3), SPACE)
    with pytest.raises(DataError, match="search hidden"):
        tune.run_study(url, "s", 0, tmp_path, _base(), tune.SearchSpace(hidden=(8,)))
    with pytest.raises(DataError, match=r"search lookaheads \[0\] -> \[0, 1\]"):
        tune.run_study(url, "s", 0, tmp_path, _base(), replace(SPACE, lookaheads=(0, 1)))


@pytest.mark.parametrize("attr,field,refused,needle", [
    (tune.SPACE_ATTR, "lookaheads", dict(space=replace(SPACE, lookaheads=(1,))),
     "search lookaheads"),
    (tune.BASE_ATTR, "holdout_noise", dict(base=_base(holdout_noise=("city",))), "holdout_noise"),
])
def test_a_study_started_before_a_field_existed_continues(tmp_path, attr, field, refused, needle):
    """Studies stored without a newer space or config field (older versions) continue with its
    default, and still refuse another value for it."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = tune.run_study(url, "s", 0, tmp_path, _base(), SPACE)
    stored = dict(study.user_attrs[attr])
    del stored[field]
    study.set_user_attr(attr, stored)
    tune.run_study(url, "s", 0, tmp_path, _base(), SPACE)
    settings = {"base": _base(), "space": SPACE, **refused}
    with pytest.raises(DataError, match=needle):
        tune.run_study(url, "s", 0, tmp_path, settings["base"], settings["space"])


# ---------------------------------------------------------------------------------------------
# Studies


def test_study_trains_trials_and_a_second_call_continues_it(resumed):
    root, url, first, study = resumed
    assert [t.state for t in first] == [TrialState.COMPLETE] * 2
    trials = optuna.load_study(study_name="s", storage=url).get_trials()
    assert [t.number for t in trials] == [0, 1, 2]
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert len(optuna.get_all_study_names(url)) == 1
    # The resumed process does not replay the first process's start-up configurations.
    assert trials[2].params["lr"] not in {t.params["lr"] for t in first}
    for t in trials:
        rows = tune.read_log(root / "runs" / f"trial_{t.number}")
        assert [r["epoch"] for r in rows] == [1, 2]
        assert t.value == max(r["valid_snr_db"] for r in rows)
        assert t.intermediate_values == {i: r["valid_snr_db"] for i, r in enumerate(rows)}
        assert (root / "runs" / f"trial_{t.number}" / "best.pt").is_file()
        assert t.user_attrs["epochs"] == 2


def test_a_trial_is_exactly_the_train_run_of_its_config(resumed, toy, tmp_path):
    root, _, _, study = resumed
    trial = study.trials[0]
    cfg = tune.config_from_params(trial.params, _base())
    speech, noise, valid = toy
    train(cfg, tmp_path, speech=speech, noise=noise, valid=valid, progress=False)
    plain = torch.load(tmp_path / "last.pt", weights_only=True)
    tuned = torch.load(root / "runs" / "trial_0" / "last.pt", weights_only=True)
    assert all(torch.equal(plain["state_dict"][k], v) for k, v in tuned["state_dict"].items())
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in plain["log"]]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in tuned["log"]]


def test_study_on_a_corpus_folder(tmp_path, toy):
    from speechmask.audio import write_audio

    speech, noise, _ = toy
    root = tmp_path / "corpus"
    rows = ["split,kind,path,seconds,source,license"]
    for split, utts, noises in (("train", speech[:4], noise[:1]), ("valid", speech[4:], noise)):
        for kind, signals in (("speech", utts), ("noise", noises)):
            for i, x in enumerate(signals):
                rel = f"speech/{split}{i}/u.flac" if kind == "speech" else f"noise/{split}{i}.flac"
                write_audio(root / rel, x, 16000)
                rows.append(f"{split},{kind},{rel},{len(x) / 16000},toy,cc0")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = tune.run_study(url, "c", 1, tmp_path / "runs", _base(epochs=1, valid_count=2), SPACE,
                           corpus=root)
    assert study.trials[0].state == TrialState.COMPLETE
    cmd = tune.best_command(study, corpus=root)
    assert cmd.endswith(f"--out runs/best --corpus {root}")
    assert "valid_count = 2" in (tmp_path / "runs" / tune.BEST_CONFIG).read_text()


def test_summary_plot_and_best_command(resumed, tmp_path):
    from speechmask.cli import build_parser
    from speechmask.cli.train import train_config

    root, _, _, study = resumed
    best = study.best_trial
    table = tune.summary_table(study)
    lines = table.splitlines()
    assert lines[0].startswith("| trial | state | valid SNR (dB) |")
    assert len([ln for ln in lines if ln.startswith("| ") and "complete" in ln]) == 3
    assert f"best: trial {best.number}, valid SNR {best.value:.2f} dB" in table

    png = tune.plot_trials(study, tmp_path / "plots" / "trials.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    cmd = tune.best_command(study, _base(), corpus="data/my corpus")
    config = (root / "runs").resolve() / tune.BEST_CONFIG
    assert cmd == f"speechmask train --config {config} --out runs/best --corpus 'data/my corpus'"
    # The real CLI reads the file (and any flags given with it) into the best trial's config.
    again = train_config(build_parser().parse_args(shlex.split(cmd)[1:]))
    assert again == tune.best_config(study, _base())
    # Without a base, the one stored in the study is used.
    written = config.read_text()
    assert tune.best_command(study) == cmd.removesuffix(" --corpus 'data/my corpus'")
    assert config.read_text() == written


@pytest.mark.parametrize("base", [
    _base(), _base(holdout_noise=("city", "rooster"), valid_count=8),
    _base(mix=MixConfig(crop_seconds=0.5, examples_per_epoch=12, augment=AugmentConfig(),
                        speech_sources={"vcc2016": 1.0}, level_dbfs=(-40.0, -3.0))),
])
def test_best_config_file_loads_as_the_best_trials_config(resumed, tmp_path, base):
    _, _, _, study = resumed
    path = tune.write_best_config(study, tmp_path / "best.toml", base)
    text = path.read_text()
    best = study.best_trial
    assert text.startswith(f"# Best trial of study 's': trial {best.number}, valid SNR "
                           f"{best.value:.2f} dB")
    assert f"#   speechmask train --config {path} --out runs/best\n" in text
    assert from_dict(TrainConfig, read_toml(path)) == tune.best_config(study, base)
    assert f"cell = {best.params['cell']!r}".replace("'", '"') in text  # named even if default
    assert not list(tmp_path.glob("*.tmp*"))


def test_reports_of_a_study_without_finished_trials(tmp_path):
    study = optuna.create_study(study_name="empty", direction="maximize")
    assert "no finished trial yet" in tune.summary_table(study)
    assert tune.plot_trials(study, tmp_path / "p.png").is_file()
    with pytest.raises(DataError, match="no finished trial"):
        tune.best_command(study, _base())


def test_a_trial_below_the_median_is_pruned_after_its_second_epoch(tmp_path, toy):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(storage=url, study_name="p", direction="maximize")
    for _ in range(3):  # three finished trials far better than any tiny model
        study.add_trial(optuna.create_trial(
            value=99.0, intermediate_values={0: 90.0, 1: 95.0, 2: 99.0}))
    study = tune.run_study(url, "p", 1, tmp_path / "runs", _base(epochs=3), SPACE, data=toy)
    trial = study.trials[3]
    assert trial.state == TrialState.PRUNED
    assert sorted(trial.intermediate_values) == [0, 1]  # epoch 1 is the warm-up
    assert len(tune.read_log(tmp_path / "runs" / "trial_3")) == 2  # epoch 3 never ran
    assert trial.user_attrs["epochs"] == 2
    assert "| 3 | pruned |" in tune.summary_table(study)
    assert tune.plot_trials(study, tmp_path / "trials.png").is_file()


def _stop_after_first_epoch(monkeypatch, exc):
    """Make the next trial end like a killed/interrupted process once epoch 1 is saved."""
    original = tune._Reporter.__call__

    def call(self, row):
        original(self, row)
        if row["epoch"] == 1:
            raise exc

    monkeypatch.setattr(tune._Reporter, "__call__", call)


def test_interrupted_trial_continues_exactly_in_the_next_run(tmp_path, toy, monkeypatch):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    _stop_after_first_epoch(monkeypatch, KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt):
        tune.run_study(url, "s", 1, tmp_path / "runs", _base(), SPACE, data=toy)
    monkeypatch.undo()
    study = tune.run_study(url, "s", 1, tmp_path / "runs", _base(), SPACE, data=toy)
    killed, retry = study.trials
    assert (killed.state, retry.state) == (TrialState.FAIL, TrialState.COMPLETE)
    assert retry.params == killed.params
    assert tune.read_log(tmp_path / "runs" / "trial_1")[0] == tune.read_log(
        tmp_path / "runs" / "trial_0")[0]
    # Continuing is exact: same weights as an uninterrupted run of the config.
    speech, noise, valid = toy
    cfg = tune.config_from_params(killed.params, _base())
    train(cfg, tmp_path / "plain", speech=speech, noise=noise, valid=valid, progress=False)
    plain = torch.load(tmp_path / "plain" / "last.pt", weights_only=True)["state_dict"]
    resumed = torch.load(tmp_path / "runs" / "trial_1" / "last.pt", weights_only=True)
    assert all(torch.equal(plain[k], v) for k, v in resumed["state_dict"].items())
    assert retry.value == pytest.approx(max(r["valid_snr_db"] for r in resumed["log"]))
    # Nothing left to retry: a third run starts a new configuration.
    study = tune.run_study(url, "s", 0, tmp_path / "runs", _base(), SPACE, data=toy)
    assert len(study.trials) == 2


def test_killed_trial_is_retried_after_its_heartbeat_stops(tmp_path, toy, monkeypatch):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    _stop_after_first_epoch(monkeypatch, SystemExit)  # escapes Optuna: the trial stays RUNNING
    with pytest.raises(SystemExit):
        tune.run_study(url, "s", 1, tmp_path / "runs", _base(), SPACE, data=toy,
                       heartbeat_seconds=1)
    monkeypatch.undo()
    assert optuna.load_study(study_name="s", storage=url).trials[0].state == TrialState.RUNNING
    time.sleep(3.5)  # > grace period (2 heartbeats) at SQLite's 1 s clock resolution
    study = tune.run_study(url, "s", 1, tmp_path / "runs", _base(), SPACE, data=toy,
                           heartbeat_seconds=1)
    killed, retry = study.trials
    assert (killed.state, retry.state) == (TrialState.FAIL, TrialState.COMPLETE)
    assert retry.params == killed.params
    rows = tune.read_log(tmp_path / "runs" / "trial_1")
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[0] == tune.read_log(tmp_path / "runs" / "trial_0")[0]
    assert sorted(retry.intermediate_values) == [0, 1]
