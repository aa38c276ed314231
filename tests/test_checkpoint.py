"""Checkpoints: save -> load round trip, atomic writes, clear errors for bad files."""

import os
import stat

import pytest
import torch

from speechmask import checkpoint as ckpt
from speechmask.features import StftConfig
from speechmask.model import MaskNet, ModelConfig


def _model(cell="gru"):
    torch.manual_seed(0)
    m = MaskNet(ModelConfig(cell=cell, hidden=16, layers=1, dropout=0.0))
    m.set_normalization(torch.randn(257), torch.rand(257) + 0.5)
    return m.eval()


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_round_trip(tmp_path, cell):
    m = _model(cell)
    path = ckpt.save(tmp_path / "m.pt", ckpt.model_payload(m, StftConfig(), metrics={"snr": 1.5}))
    loaded, stft_cfg, payload = ckpt.load_model(path)
    x = torch.rand(1, 12, 257)
    assert torch.equal(loaded(x)[0], m(x)[0])
    assert stft_cfg == StftConfig()
    assert payload["metrics"] == {"snr": 1.5}
    assert not list(tmp_path.glob("*.part"))


def test_checkpoint_holds_no_pickled_classes(tmp_path):
    path = ckpt.save(tmp_path / "m.pt", ckpt.model_payload(_model(), StftConfig()))
    # weights_only=True refuses arbitrary classes: loading proves the file is plain data.
    torch.load(path, weights_only=True)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", b"PK\x03\x04garbage" * 10])
def test_corrupt_file_is_one_line_error(tmp_path, content):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(ckpt.CheckpointError) as err:
        ckpt.load_model(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(ckpt.CheckpointError, match="no such model"):
        ckpt.load_model(tmp_path / "none.pt")


def test_truncated_file(tmp_path):
    path = ckpt.save(tmp_path / "m.pt", ckpt.model_payload(_model(), StftConfig()))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ckpt.CheckpointError):
        ckpt.load_model(path)


def test_other_version_and_foreign_dicts(tmp_path):
    payload = ckpt.model_payload(_model(), StftConfig())
    path = ckpt.save(tmp_path / "m.pt", payload)
    data = torch.load(path, weights_only=True)
    torch.save({**data, "version": 99}, path)
    with pytest.raises(ckpt.CheckpointError, match="version 99"):
        ckpt.load_model(path)
    torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(ckpt.CheckpointError, match="not a speechmask checkpoint"):
        ckpt.load_model(path)
    torch.save({**data, "model_config": {**data["model_config"], "hidden": 99}}, path)
    with pytest.raises(ckpt.CheckpointError, match="does not match"):
        ckpt.load_model(path)


def test_saved_model_is_readable_by_others(tmp_path):
    # mkstemp makes 0600 files; a model shared with a group or another user must keep the umask
    # mode (0644 here).
    old = os.umask(0o022)
    try:
        path = ckpt.save(tmp_path / "m.pt", ckpt.model_payload(_model(), StftConfig()))
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_failed_save_leaves_nothing(tmp_path):
    with pytest.raises((AttributeError, TypeError, RuntimeError)):  # pickling a lambda fails
        ckpt.save(tmp_path / "m.pt", {"bad": lambda: None})
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("half", [True, False])
def test_export_inference_is_slim_and_equivalent(tmp_path, half):
    m = _model("lstm")
    full = ckpt.save(tmp_path / "full.pt", {**ckpt.model_payload(m, StftConfig()),
                                            "optimizer": {"big": torch.zeros(10000)}})
    slim = ckpt.export_inference(full, tmp_path / "slim.pt", half=half)
    assert slim.stat().st_size < full.stat().st_size
    loaded, _, payload = ckpt.load_model(slim)
    assert "optimizer" not in payload
    x = torch.rand(1, 12, 257) * 3
    assert torch.allclose(loaded(x)[0], m(x)[0], atol=2e-3 if half else 0)
