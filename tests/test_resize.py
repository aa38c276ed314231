"""benchmarks/resize: a checkpoint with another width that loads and trains like any other."""

import pytest

from speechmask import checkpoint as ckpt
from speechmask.trainsetup import load_init


@pytest.mark.parametrize("hidden", [8, 24])
def test_resize_writes_a_checkpoint_train_can_start_from(tmp_path, tiny_model_files, capsys,
                                                         hidden):
    from benchmarks.resize import main

    src, _ = tiny_model_files()
    out = tmp_path / "resized.pt"
    main([str(src), "--hidden", str(hidden), "--out", str(out)])
    printed = capsys.readouterr().out
    assert f"16 -> {hidden} units" in printed
    model, _, payload = ckpt.load_model(out)
    assert model.cfg.hidden == hidden and payload["metrics"]["hidden"] == hidden
    if hidden > 16:
        assert "mean |mask change| 0.0000" in printed  # growing keeps the masks
    init, _ = load_init(out)
    assert init.cfg.hidden == hidden
