"""The rules the commands apply, called as the library functions they are: a training run's
settings and run folder (trainsetup), where enhance writes (outputs)."""

from types import SimpleNamespace

import pytest

from speechmask.augment import AugmentConfig
from speechmask.model import ModelConfig
from speechmask.outputs import OutputError, plan_outputs, refuse_target
from speechmask.train import TrainConfig
from speechmask.trainsetup import (
    RunRequest,
    SetupError,
    explicit_settings,
    prepare,
    train_config,
)


def test_settings_layer_file_shorthands_and_overrides(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("epochs = 7\nlr = 0.002\nholdout_noise = ['city']\n")
    settings = explicit_settings(path, {"epochs": 9, "model.cell": "gru"},
                                 snr_range=(-3.0, 12.0), holdout_noise=("rain", "wind"),
                                 augment=False, overrides=["lr=0.003"])
    cfg = train_config(settings)
    assert (cfg.epochs, cfg.lr, cfg.model.cell) == (9, 0.003, "gru")
    assert (cfg.mix.snr_low_db, cfg.mix.snr_high_db) == (-3.0, 12.0)
    assert cfg.holdout_noise == ("rain", "wind") and cfg.mix.augment == AugmentConfig.off()
    assert train_config(explicit_settings()) == TrainConfig()


@pytest.mark.parametrize("where", ["file", "override"])
def test_a_teacher_in_a_config_file_is_found_beside_it(tmp_path, where):
    (tmp_path / "cfg").mkdir()
    path = tmp_path / "cfg" / "c.toml"
    path.write_text("teacher = '../t.pt'\n" if where == "file" else "epochs = 2\n")
    overrides = ["teacher='runs/t.pt'"] if where == "override" else []
    cfg = train_config(explicit_settings(path, overrides=overrides))
    # In the file: beside the file; on the command line: as given (the shell's folder).
    assert cfg.teacher == (str(tmp_path / "t.pt") if where == "file" else "runs/t.pt")


def test_run_folder_rules(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(SetupError, match="nothing to resume"):
        prepare(RunRequest(out=out, resume=True))
    out.mkdir()
    (out / "last.pt").write_bytes(b"")
    with pytest.raises(SetupError, match="holds a training run"):
        prepare(RunRequest(out=out))
    assert prepare(RunRequest(out=out, overwrite=True, settings={"epochs": 2})).epochs == 2
    init = SimpleNamespace(cfg=ModelConfig(hidden=16, lookahead=2))
    with pytest.raises(SetupError, match="--init starts a new run"):
        prepare(RunRequest(out=out, resume=True), init)
    with pytest.raises(SetupError, match="--init: look-ahead 1"):
        prepare(RunRequest(out=tmp_path / "new", settings={"model": {"lookahead": 1}}), init)
    cfg = prepare(RunRequest(out=tmp_path / "new", settings={"model": {"dropout": 0.0}}), init)
    assert (cfg.model.hidden, cfg.model.lookahead, cfg.model.dropout) == (16, 2, 0.0)
    with pytest.raises(SetupError, match="--init: hidden 8: the model has 16 units"):
        prepare(RunRequest(out=tmp_path / "new", settings={"model": {"hidden": 8}}), init)
    cfg = prepare(RunRequest(out=tmp_path / "new", settings={"model": {"hidden": 24}}), init)
    assert (cfg.model.hidden, cfg.model.lookahead) == (24, 2)  # widened: build_model grows it


def test_output_plan_and_targets(tmp_path):
    for sub in ("a", "b"):
        (tmp_path / "in" / sub).mkdir(parents=True)
        (tmp_path / "in" / sub / "host.wav").write_bytes(b"")
    plan = plan_outputs([tmp_path / "in"], tmp_path / "out", fmt="flac")
    # A folder input keeps its tree; two files of one name from two folders get the folder's.
    assert sorted(dst.relative_to(tmp_path / "out").as_posix() for _, dst in plan) == [
        "a/host.flac", "b/host.flac"]
    one = tmp_path / "in" / "a" / "host.wav"
    flat = plan_outputs([one, tmp_path / "in" / "b" / "host.wav"], tmp_path / "out")
    assert sorted(dst.name for _, dst in flat) == ["host-a.wav", "host-b.wav"]
    with pytest.raises(OutputError, match="is one file but the input is a folder"):
        plan_outputs([tmp_path / "in"], tmp_path / "o.wav")
    with pytest.raises(OutputError, match="would overwrite the input model"):
        refuse_target(one, [one], overwrite=True)
