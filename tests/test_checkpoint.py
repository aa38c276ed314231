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


def _saved(path, seed, hidden=16, stages=0):
    torch.manual_seed(seed)
    m = MaskNet(ModelConfig(hidden=hidden, layers=1, dropout=0.0))
    m.set_normalization(torch.randn(257), torch.rand(257) + 0.5)
    history = [{"epoch": i + 1, "valid_snr_db": 10.0 + i, "seconds": 60.0} for i in range(stages)]
    own = {"epoch": 3, "valid_snr_db": 12.5 + seed, "seconds": 120.0}
    return ckpt.save(path, ckpt.model_payload(m.eval(), StftConfig(), metrics=own,
                                              history=history)), m


@pytest.mark.parametrize("half,tol", [(False, 1e-7), (True, 2e-3)])
@pytest.mark.parametrize("count", [2, 3])
def test_average_is_the_mean_of_the_weights(tmp_path, half, tol, count):
    saved = [_saved(tmp_path / f"m{i}.pt", seed=i, stages=i) for i in range(count)]
    out = ckpt.average_models([p for p, _ in saved], tmp_path / "avg.pt", half=half)
    model, stft_cfg, payload = ckpt.load_model(out)
    for key, value in model.state_dict().items():
        want = sum(m.state_dict()[key] for _, m in saved) / count
        assert torch.allclose(value, want, atol=tol, rtol=0), key
    assert stft_cfg == StftConfig()
    assert payload["metrics"] == {"averaged_from": [str(p) for p, _ in saved]}
    # The history is the longest lineage's (the last source has count - 1 earlier stages),
    # then the average itself.
    stages = ckpt.training_stages(payload)
    assert len(stages) == count + 1 and stages[-2]["valid_snr_db"] == 12.5 + count - 1
    assert stages[-1] == payload["metrics"]


def test_average_of_a_model_with_itself_is_the_model(tmp_path):
    path, m = _saved(tmp_path / "m.pt", seed=0)
    out = ckpt.average_models([path, path], tmp_path / "avg.pt", half=False)
    x = torch.rand(1, 9, 257)
    assert torch.equal(ckpt.load_model(out)[0](x)[0], m(x)[0])


def test_average_refuses_other_architectures_and_single_models(tmp_path):
    a, _ = _saved(tmp_path / "a.pt", seed=0)
    b, _ = _saved(tmp_path / "b.pt", seed=1, hidden=8)
    with pytest.raises(ckpt.CheckpointError, match="b.pt: architecture"):
        ckpt.average_models([a, b], tmp_path / "avg.pt")
    with pytest.raises(ckpt.CheckpointError, match="at least two"):
        ckpt.average_models([a], tmp_path / "avg.pt")
    assert not (tmp_path / "avg.pt").exists()
