"""Training configuration as data: dicts, TOML files, --set overrides, `train --config`."""

import pytest

from speechmask.augment import AugmentConfig
from speechmask.cli import build_parser
from speechmask.cli.train import train_config
from speechmask.config import (
    ConfigError,
    diff,
    dump_toml,
    from_dict,
    merge,
    parse_overrides,
    read_toml,
    to_dict,
)
from speechmask.rooms import RoomConfig
from speechmask.train import TrainConfig

SETTINGS = {
    "epochs": 3,
    "holdout_noise": ["city"],
    "mix": {"speech_sources": {"vcc2016": 0.5, "picovoice_intent": 0.5},
            "level_dbfs": [-50.0, -1.0],
            "augment": {"room": 0.3, "rooms": {"count": 5, "length_m": [3.0, 5.0]}}},
}


def test_nested_tables_become_dataclasses():
    cfg = from_dict(TrainConfig, SETTINGS)
    assert cfg.epochs == 3 and cfg.holdout_noise == ("city",)
    assert cfg.mix.level_dbfs == (-50.0, -1.0)
    assert cfg.mix.augment.rooms == RoomConfig(count=5, length_m=(3.0, 5.0))
    assert cfg.model == TrainConfig().model  # untouched tables keep their defaults


def test_dict_and_toml_round_trips(tmp_path):
    cfg = from_dict(TrainConfig, SETTINGS)
    assert from_dict(TrainConfig, to_dict(cfg)) == cfg
    path = tmp_path / "c.toml"
    path.write_text(dump_toml(diff(cfg, TrainConfig())))
    assert from_dict(TrainConfig, read_toml(path)) == cfg
    assert diff(TrainConfig(), TrainConfig()) == {}


@pytest.mark.parametrize("settings, message", [
    ({"mix": {"snr_lo": 1}}, "unknown setting 'mix.snr_lo'; known at this level: augment"),
    ({"mix": {"clean_fraction": 2}}, "mix: clean_fraction must be in"),
    ({"mix": {"augment": {"generated_kinds": ["siren"]}}}, "unknown generated noise 'siren'"),
    ({"model": 3}, "model: expected a table"),
])
def test_bad_settings_are_one_line_errors(settings, message):
    with pytest.raises(ConfigError, match=message) as err:
        from_dict(TrainConfig, settings)
    assert "\n" not in str(err.value)


def test_overrides_parse_toml_values_and_bare_words():
    assert parse_overrides(["mix.snr_low_db=-10", "model.cell=gru", "lr=3e-4",
                            "mix.speech_sources={vcc2016=1}"]) == {
        "mix": {"snr_low_db": -10, "speech_sources": {"vcc2016": 1}},
        "model": {"cell": "gru"}, "lr": 3e-4}
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_overrides(["epochs"])


def test_merge_replaces_source_tables_whole():
    base = {"mix": {"speech_sources": {"a": 1, "b": 1}, "snr_low_db": -5}}
    merged = merge(base, {"mix": {"speech_sources": {"c": 1}}})
    assert merged == {"mix": {"speech_sources": {"c": 1}, "snr_low_db": -5}}


def test_unreadable_files_name_themselves(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        read_toml(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("epochs = = 3")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        read_toml(bad)


def test_train_flags_lay_over_the_file_and_set_over_both(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("epochs = 7\nlr = 0.002\n[mix]\nsnr_low_db = -10.0\n"
                    "[mix.augment]\nroom = 0.5\n")
    args = build_parser().parse_args([
        "train", "--out", str(tmp_path / "run"), "--config", str(path), "--epochs", "9",
        "--set", "lr=0.003", "--set", "mix.augment.lowpass=0.2"])
    cfg = train_config(args)
    assert (cfg.epochs, cfg.lr, cfg.mix.snr_low_db) == (9, 0.003, -10.0)
    assert cfg.mix.augment.room == 0.5 and cfg.mix.augment.lowpass == 0.2
    off = train_config(build_parser().parse_args(
        ["train", "--out", "x", "--config", str(path), "--no-augment"]))
    assert off.mix.augment == AugmentConfig.off()
    # Without a file or flags, every setting is the dataclass default.
    assert train_config(build_parser().parse_args(["train", "--out", "x"])) == TrainConfig()
