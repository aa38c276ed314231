"""Recipes: parsing (every mistake a one-line error before training), stage by stage runs that
skip finished stages and resume interrupted ones, the final model carrying its recipe."""

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from speechmask import checkpoint as ckpt
from speechmask.cli import main
from speechmask.config import ConfigError
from speechmask.evalsets import EvalPair
from speechmask.mixing import mix
from speechmask.recipe import (
    load_recipe,
    parse_recipe,
    run_recipe,
    split_runtime,
    stage_status,
)

TINY = """
name = "tiny"
description = "two stages of a toy model"
[base]
epochs = 1
batch_size = 8
lr = 5e-3
warmup_steps = 1
patience = 0
threads = 1
[base.model]
cell = "gru"
hidden = 8
layers = 1
dropout = 0.0
[base.mix]
crop_seconds = 0.5
examples_per_epoch = 16
[base.mix.augment]
babble = 0.0
colored = 0.0
second_noise = 0.0
eq = 0.0
[[stage]]
name = "first"
[[stage]]
name = "second"
lr = 1e-3
"""


def _recipe(tmp_path, text=TINY, name="r.toml", overrides=()):
    path = tmp_path / name
    path.write_text(text)
    return load_recipe(path, overrides)


def test_stages_merge_base_and_their_own_table(tmp_path):
    recipe = _recipe(tmp_path)
    assert recipe.name == "tiny" and [s.name for s in recipe.stages] == ["first", "second"]
    first, second = (s.config for s in recipe.stages)
    assert first.lr == 5e-3 and second.lr == 1e-3 and second.model.hidden == 8
    assert recipe.init is None and recipe.record == TINY


def test_overrides_apply_to_every_stage_and_are_recorded(tmp_path):
    recipe = _recipe(tmp_path, overrides=("lr=0.01", "mix.examples_per_epoch=8"))
    assert all(s.config.lr == 0.01 and s.config.mix.examples_per_epoch == 8
               for s in recipe.stages)
    assert recipe.record.endswith("# run with --set lr=0.01 --set mix.examples_per_epoch=8\n")


def test_runtime_settings_are_not_part_of_the_recipe():
    kept, runtime = split_runtime(("threads=2", "lr=0.1", "loader_workers=1"))
    assert kept == ("lr=0.1",) and runtime == {"threads": 2, "loader_workers": 1}


@pytest.mark.parametrize(("text", "needle"), [
    ("epochs = 3\n[[stage]]\nname = 'a'\n", "unknown recipe key 'epochs'"),
    ("name = 'x'\n", "no [[stage]]"),
    ("[[stage]]\nname = 'a b'\n", "letters, digits"),
    ("[[stage]]\nname = 'a'\n[[stage]]\nname = 'a'\n", "two stages named 'a'"),
    ("[[stage]]\nname = 'a'\n[[stage]]\nname = 'b'\nlrr = 1\n", "stage 'b'"),
    ("init = 'none.pt'\n[[stage]]\nname = 'a'\n", "no such model file"),
    ("[[stage]\n", "not valid TOML"),
    ("average = ['a', 'b']\n[[stage]]\nname = 'a'\n", "neither a stage nor init"),
    ("average = ['a']\n[[stage]]\nname = 'a'\n", "two or more"),
    ("average = 'a'\n[[stage]]\nname = 'a'\n", "must be a list"),
    ("[[stage]]\nname = 'a'\nteacher = 'none.pt'\n", "teacher 'none.pt': no such model file"),
])
def test_mistakes_are_one_line_errors(tmp_path, text, needle):
    with pytest.raises(ConfigError) as err:
        parse_recipe(text, tmp_path / "r.toml")
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_missing_recipe_file(tmp_path):
    with pytest.raises(ConfigError, match="no such recipe file"):
        load_recipe(tmp_path / "none.toml")


@pytest.fixture(scope="module")
def toy_data():
    from conftest import _speech_like

    rng = np.random.default_rng(0)
    speech = [_speech_like(seconds=1.0, seed=i, f0=110 + 15 * i) for i in range(4)]
    noise = [rng.standard_normal(8000).astype(np.float32) for _ in range(2)]
    valid = []
    for i, snr in enumerate((0.0, 5.0)):
        m = mix(_speech_like(seconds=1.0, seed=50 + i), rng.standard_normal(9000)
                .astype(np.float32), snr, rng)
        valid.append(EvalPair(f"v{i}", m.clean, m.noisy, snr, "white", "toy", "", ""))
    return {"speech": speech, "noise": noise, "valid": valid, "progress": False}


def test_two_stages_run_chain_and_skip_when_done(tmp_path, toy_data):
    recipe = _recipe(tmp_path)
    out = tmp_path / "run"
    final = run_recipe(recipe, out, **toy_data)
    assert stage_status(out, recipe) == ["done", "done"]
    for d in ("01_first", "02_second"):
        assert {"best.pt", "last.pt", "train_log.csv", "done.json"} <= {
            p.name for p in (out / d).iterdir()}
    payload = ckpt.load_raw(final)
    assert payload["recipe"] == {"name": "tiny", "text": TINY}
    # The second stage started from the first: its model says it went through two stages.
    assert len(ckpt.training_stages(payload)) == 2
    second = ckpt.load_raw(out / "02_second" / "best.pt")["state_dict"]
    assert all(torch.equal(second[k], payload["state_dict"][k]) for k in second)
    assert json.loads((out / "02_second" / "done.json").read_text())["stage"] == "second"
    assert (out / "recipe.toml").read_text() == TINY

    calls = []
    run_recipe(recipe, out, train_fn=lambda *a, **k: calls.append(a), **toy_data)
    assert calls == []  # both stages done: nothing trains again


def test_final_model_can_be_the_average_of_stages(tmp_path, toy_data):
    # A top-level key comes before the TOML tables.
    text = 'average = ["first", "second"]\n' + TINY
    recipe = _recipe(tmp_path, text)
    assert recipe.average == ("first", "second")
    out = tmp_path / "run"
    final = run_recipe(recipe, out, **toy_data)
    first = ckpt.load_raw(out / "01_first" / "best.pt")["state_dict"]
    second = ckpt.load_raw(out / "02_second" / "best.pt")["state_dict"]
    payload = ckpt.load_raw(final)
    for key, value in payload["state_dict"].items():
        if value.is_floating_point():
            torch.testing.assert_close(value, (first[key].float() + second[key].float()) / 2)
    assert payload["recipe"]["text"] == text
    stages = ckpt.training_stages(payload)  # first, second, then the average of both
    assert len(stages) == 3 and "02_second" in str(stages[-1])


def test_an_interrupted_stage_resumes_from_last(tmp_path, toy_data):
    recipe = _recipe(tmp_path)
    out = tmp_path / "run"
    run_recipe(recipe, out, **toy_data)
    (out / "02_second" / "done.json").unlink()  # as if killed after the epoch was saved
    assert stage_status(out, recipe) == ["done", "interrupted"]
    seen = []

    def fake_train(cfg, out_dir, resume, init_model, init_history, **_):
        seen.append((Path(out_dir).name, resume, init_model))
        return {"best": {"valid_snr_db": 1.0}, "epochs": 1}

    run_recipe(recipe, out, train_fn=fake_train, **toy_data)
    assert seen == [("02_second", True, None)]


def test_another_recipe_cannot_continue_a_run(tmp_path, toy_data):
    out = tmp_path / "run"
    out.mkdir()
    (out / "recipe.toml").write_text("other")
    with pytest.raises(ConfigError, match="another recipe"):
        run_recipe(_recipe(tmp_path), out, **toy_data)


def test_init_from_the_command_line_replaces_the_recipes_and_is_recorded(tmp_path, toy_data):
    # The same recipe from other weights (e.g. a widened init): the average uses them too.
    text = 'average = ["init", "second"]\n' + TINY
    path = tmp_path / "r.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="average names 'init'"):
        load_recipe(path)  # no init in the file, none given
    start = tmp_path / "start.pt"
    run_recipe(_recipe(tmp_path, TINY, name="s.toml"), tmp_path / "s", **toy_data)
    (tmp_path / "s" / "model.pt").rename(start)
    recipe = load_recipe(path, ("lr=0.002",), init=start)
    assert recipe.init == start.resolve() and recipe.init_overridden
    assert recipe.record.endswith(f"# run with --init {start.resolve()} --set lr=0.002\n")
    final = run_recipe(recipe, tmp_path / "run", **toy_data)
    init_sd = ckpt.load_raw(start)["state_dict"]
    second = ckpt.load_raw(tmp_path / "run" / "02_second" / "best.pt")["state_dict"]
    for key, value in ckpt.load_raw(final)["state_dict"].items():
        if value.is_floating_point():
            torch.testing.assert_close(value, (init_sd[key].float() + second[key].float()) / 2)
    with pytest.raises(ConfigError, match="another recipe"):  # resumed without --init
        run_recipe(replace(recipe, init_overridden=False), tmp_path / "run", **toy_data)
    with pytest.raises(ConfigError, match="none.pt: no such model file"):
        load_recipe(path, init=tmp_path / "none.pt")


def test_a_recipe_can_widen_its_init_and_average_the_widened_start(tmp_path, toy_data):
    start = tmp_path / "start.pt"
    run_recipe(_recipe(tmp_path, TINY, name="s.toml"), tmp_path / "s", **toy_data)
    (tmp_path / "s" / "model.pt").rename(start)  # hidden 8
    path = tmp_path / "r.toml"
    path.write_text('average = ["init", "second"]\n' + TINY)
    recipe = load_recipe(path, ("model.hidden=12",), init=start)
    final = run_recipe(recipe, tmp_path / "run", **toy_data)
    widened = ckpt.load_raw(tmp_path / "run" / "01_first" / "start.pt")
    assert widened["model_config"]["hidden"] == 12
    second = ckpt.load_raw(tmp_path / "run" / "02_second" / "best.pt")
    assert second["model_config"]["hidden"] == 12
    assert not (tmp_path / "run" / "02_second" / "start.pt").exists()  # 12 -> 12: no widening
    for key, value in ckpt.load_raw(final)["state_dict"].items():
        if value.is_floating_point():
            torch.testing.assert_close(value, (widened["state_dict"][key].float()
                                               + second["state_dict"][key].float()) / 2)
    with pytest.raises(ConfigError, match="stage 'first': hidden 4: the model has 8 units"):
        run_recipe(load_recipe(path, ("model.hidden=4",), init=start), tmp_path / "narrow",
                   **toy_data)


def test_cli_recipe_refuses_training_flags(capsys, tmp_path):
    (tmp_path / "r.toml").write_text(TINY)
    code = main(["-q", "train", "--recipe", str(tmp_path / "r.toml"), "--out",
                 str(tmp_path / "run"), "--epochs", "3"])
    err = capsys.readouterr().err
    assert code == 1 and "drop --epochs" in err and len(err.strip().splitlines()) == 1


def test_shipped_recipes_parse():
    recipes = sorted((Path(__file__).parents[1] / "recipes").glob("*.toml"))
    assert recipes, "the project ships its recipes"
    for path in recipes:
        recipe = load_recipe(path)
        assert recipe.stages and recipe.description


_ROOT = Path(__file__).resolve().parents[1]
_TOMLS = sorted([*(_ROOT / "recipes").glob("*.toml"), *(_ROOT / "docs/experiments").glob("*.toml")])


@pytest.mark.parametrize("path", _TOMLS, ids=lambda p: str(p.relative_to(_ROOT)))
def test_every_committed_recipe_and_config_loads(path):
    """The recipes and the experiment configs the docs tell people to run stay valid as
    TrainConfig grows (a recipe: stages and init resolve; a --config file: a TrainConfig)."""
    from speechmask.config import from_dict, read_toml
    from speechmask.train import TrainConfig

    data = read_toml(path)
    if "stage" in data:
        recipe = load_recipe(path)
        assert recipe.stages and (recipe.init is None or recipe.init.is_file())
    else:
        assert isinstance(from_dict(TrainConfig, data, str(path)), TrainConfig)


def _before_filter(config):
    """A stage config of the shipped recipe as it was before it gained the deep filter
    (``[base.model] df_bins = 64``, 2026-12-07): the experiments below were run from that."""
    return replace(config, model=replace(config.model, df_bins=0))


@pytest.mark.parametrize("name, change", [("clean_cap50", {"clean_snr_max_db": 50.0})])
def test_experiment_is_the_shipped_recipe_plus_one_setting(name, change):
    shipped = load_recipe(_ROOT / "recipes/default.toml")
    experiment = load_recipe(_ROOT / f"docs/experiments/{name}.toml")
    assert experiment.init == shipped.init and experiment.average == shipped.average
    for a, b in zip(shipped.stages, experiment.stages, strict=True):
        assert b.config == replace(_before_filter(a.config), **change)


def test_spec_loss_experiment_is_the_shipped_recipe_of_its_day_plus_one_setting():
    """docs/experiments/spec_loss.toml predates the 30 dB ceiling and the 2/3 share: it is
    today's recipe without them (and so without the ceiling's clean exemption), plus the
    spectral term, so its stages pair file by file with the broad stage of the recipe it was
    measured against."""
    shipped = load_recipe(_ROOT / "recipes/default.toml")
    experiment = load_recipe(_ROOT / "docs/experiments/spec_loss.toml")
    assert experiment.init == shipped.init and experiment.average == ("init", "broad")
    for a, b in zip(shipped.stages, experiment.stages, strict=True):
        assert b.config == replace(_before_filter(a.config), spec_weight=5.0, snr_max_db=math.inf,
                                      ceiling_on_clean=True)


def _save_tiny_model(path):
    from speechmask.features import StftConfig
    from speechmask.model import MaskNet, ModelConfig

    path.parent.mkdir(parents=True, exist_ok=True)
    ckpt.save(path, ckpt.model_payload(MaskNet(ModelConfig(hidden=8, layers=1)), StftConfig()))


def test_a_teacher_is_found_beside_the_recipe(tmp_path):
    _save_tiny_model(tmp_path / "models/t.pt")
    (tmp_path / "recipes").mkdir()
    recipe = _recipe(tmp_path / "recipes", TINY.replace("[base]\n", "[base]\nteacher = "
                                                         "'../models/t.pt'\n"))
    for stage in recipe.stages:
        assert stage.config.teacher == str((tmp_path / "models/t.pt").resolve())


def test_a_teacher_given_with_set_is_relative_to_the_working_directory(tmp_path, monkeypatch):
    _save_tiny_model(tmp_path / "models/t.pt")
    (tmp_path / "recipes").mkdir()
    monkeypatch.chdir(tmp_path)
    recipe = _recipe(tmp_path / "recipes", overrides=("teacher='models/t.pt'",))
    for stage in recipe.stages:
        assert stage.config.teacher == str((tmp_path / "models/t.pt").resolve())


def test_distill_experiment_is_the_shipped_recipe_with_a_teacher_from_the_shipped_model():
    shipped = load_recipe(_ROOT / "recipes/default.toml")
    experiment = load_recipe(_ROOT / "docs/experiments/distill.toml")
    model = (_ROOT / "src/speechmask/pretrained/default/model.pt").resolve()
    assert experiment.init == model
    (stage,) = experiment.stages
    assert stage.config == replace(_before_filter(shipped.stages[0].config),
                                   teacher=str(model), epochs=12,
                                   lr=1e-4, warmup_steps=50, snr_max_db=math.inf,
                                   ceiling_on_clean=True)
