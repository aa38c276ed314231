"""The low-band deep filter: taps read the frames they say, the filter works only where the mask
removes something, a mask model given a filter starts from its own output, and numpy (ONNX,
streams) and torch (training, offline) apply it alike."""

import numpy as np
import pytest
import torch

from speechmask.deepfilter import DeepFilter, FilterHistory
from speechmask.masks import apply_output
from speechmask.model import MaskNet, ModelConfig, with_deep_filter, with_hidden, with_lookahead
from speechmask.train import TrainConfig, adopt_architecture, compute_loss, grown_init

F, BINS = 257, 8


def _rows(mask: np.ndarray, coefs: np.ndarray) -> np.ndarray:
    """``mask: [T, F]``, complex ``coefs: [T, order, BINS]`` -> network rows ``[T, width]``."""
    pairs = np.stack([coefs.real, coefs.imag], -1).reshape(len(mask), -1)
    return np.concatenate([mask, pairs], 1).astype(np.float32)


def _spec(frames: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((frames, F)) + 1j * rng.standard_normal((frames, F))).astype(
        np.complex64)


@pytest.mark.parametrize("order, lookahead", [(3, 1), (3, 0), (2, 1), (4, 2), (1, 0)])
def test_each_tap_reads_its_frame(order, lookahead):
    """Mask 0 and coefficient 1 on tap n: the output of frame t is the input of frame t - (order
    - 1 - lookahead) + n (zero outside the signal), in numpy and in torch."""
    df = DeepFilter(BINS, order, lookahead, F)
    spec, frames = _spec(12), 12
    for n in range(order):
        coefs = np.zeros((frames, order, BINS), np.complex64)
        coefs[:, n] = 1.0
        rows = _rows(np.zeros((frames, F), np.float32), coefs)
        shift = order - 1 - lookahead - n  # output t reads frame t - shift
        want = np.zeros((frames, BINS), np.complex64)
        for t in range(frames):
            if 0 <= t - shift < frames:
                want[t] = spec[t - shift, :BINS]
        assert np.allclose(df.offline(rows, spec), want)
        est, _ = apply_output(torch.from_numpy(rows)[None], torch.from_numpy(spec)[None], F, df)
        assert np.allclose(est[0, :, :BINS].numpy(), want, atol=1e-6)
        assert np.allclose(est[0, :, BINS:].numpy(), 0.0)  # mask 0 above the filter


@pytest.mark.parametrize("exponent", [1.0, 2.0])
def test_the_filter_works_only_where_the_mask_removes(exponent):
    """The filter's output is weighted by 1 - mask of its bin, in torch and in numpy: a mask of
    1 passes the input whatever the filter layer says, and the coefficients, which the rows
    carry unweighted, do not depend on the mask exponent (which calibrate changes)."""
    model = with_deep_filter(_tiny(lookahead=1, mask_exponent=exponent), BINS, 3)
    torch.nn.init.normal_(model.df_head.weight, std=0.5)
    mag = torch.rand(1, 20, F)
    spec = torch.polar(mag, torch.rand(1, 20, F) * 6.28)
    with torch.no_grad():
        rows = model.offline(mag)
        est, mask = model.estimate(rows, spec)
        filtered = model.deep_filter.offline(rows[0].numpy(), spec[0].numpy())
        assert np.abs(filtered).max() > 0.05
        assert np.allclose(est[0, :, :BINS].numpy(), (spec * mask)[0, :, :BINS].numpy()
                           + filtered, atol=1e-5)
        # By hand: 1 - mask times the taps' sum (order 3, look-ahead 1: frames t-1, t, t+1).
        coefs = torch.view_as_complex(rows[0, :, F:].unflatten(-1, (3, BINS, 2)).contiguous())
        low = torch.cat([torch.zeros(1, BINS), spec[0, :, :BINS], torch.zeros(1, BINS)])
        taps = sum(coefs[:, n] * low[n : n + 20] for n in range(3))
        assert np.allclose(filtered, ((1 - rows[0, :, :BINS]) * taps).numpy(), atol=1e-5)
        model.dense.bias.fill_(30.0)  # mask 1: nothing removed, nothing filtered
        est, mask = model.estimate(model.offline(mag), spec)
        assert torch.equal(mask, torch.ones_like(mask))
        assert torch.allclose(est, spec, atol=1e-6)
        model.dense.bias.zero_()
        other = MaskNet(ModelConfig(**{**model.cfg.__dict__, "mask_exponent": 3 - exponent}))
        other.load_state_dict(model.state_dict())
        a, b = model.offline(mag), other.eval().offline(mag)
        assert torch.allclose(b[..., :F] ** exponent, a[..., :F] ** (3 - exponent), atol=1e-6)
        assert torch.equal(b[..., F:], a[..., F:])


@pytest.mark.parametrize("order", [2, 3, 4])
@pytest.mark.parametrize("sizes", [[1] * 9, [4, 5], [9], [2, 1, 6], [1, 1, 4, 1, 1, 1]])
def test_stream_history_equals_offline(sizes, order):
    """Frames fed in any grouping (single frames go round the history's ring, groups reset
    it), then ``lookahead`` silent frames (a flushed stream), give the offline filter of the
    whole signal."""
    df = DeepFilter(BINS, order, 1, F)
    rng = np.random.default_rng(3)
    spec = _spec(9, seed=4)
    rows = _rows(rng.random((9, F)), rng.uniform(-1, 1, (9, order, BINS))
                 + 1j * rng.uniform(-1, 1, (9, order, BINS)))
    # The stream gets each row lookahead frames after its frame: row t with frame t + 1.
    fed = np.concatenate([spec, np.zeros((1, F), np.complex64)])
    late = np.concatenate([np.zeros((1, rows.shape[1]), np.float32), rows])
    history, got, start = FilterHistory(df), [], 0
    for size in [*sizes, 1]:
        got.append(history.step(late[start : start + size], fed[start : start + size]))
        start += size
    assert np.allclose(np.concatenate(got)[1:], df.offline(rows, spec), atol=1e-6)


def _tiny(**kw) -> MaskNet:
    torch.manual_seed(0)
    model = MaskNet(ModelConfig(hidden=12, layers=2, dropout=0.0, **kw))
    model.set_normalization(torch.full((F,), -8.0), torch.full((F,), 4.0))
    return model.eval()


@pytest.mark.parametrize("cell, lookahead", [("gru", 1), ("lstm", 0)])
def test_a_new_filter_starts_from_the_mask_models_output(cell, lookahead):
    model = _tiny(cell=cell, lookahead=lookahead)
    filtered = with_deep_filter(model, 16, lookahead + 2)
    assert filtered.cfg.output_size == F + 2 * 16 * (lookahead + 2)
    mag = torch.rand(2, 30, F)
    spec = torch.polar(mag, torch.rand(2, 30, F) * 6.28)
    with torch.no_grad():
        plain = model.estimate(model.offline(mag), spec)[0]
        rows = filtered.offline(mag)
        assert torch.equal(rows[..., :F], model.offline(mag))
        assert torch.equal(filtered.estimate(rows, spec)[0], plain)
    assert with_deep_filter(filtered, 16, lookahead + 2) is filtered
    with pytest.raises(ValueError, match="cannot become"):
        with_deep_filter(filtered, 32, lookahead + 2)
    with pytest.raises(ValueError, match="deep filter"):
        with_lookahead(filtered, lookahead + 1)
    # Width grows around it: the copy keeps the filter's output exactly.
    wide = with_hidden(filtered, 20)
    with torch.no_grad():
        assert torch.allclose(wide.offline(mag), filtered.offline(mag), atol=1e-6)


@pytest.mark.parametrize("kw, message", [
    ({"df_bins": 300}, "df_bins"), ({"df_bins": 8, "df_order": 1, "lookahead": 1}, "df_order"),
    ({"df_bins": 8, "df_order": 9}, "df_order")])
def test_config_rejects_impossible_filters(kw, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**kw)


def test_training_init_grows_a_filter_and_the_loss_sees_it():
    """``train --init MODEL --df-bins N``: the config takes the filter, the start is MODEL's
    output, and the SNR terms see the filtered estimate (a gradient reaches the filter)."""
    init = _tiny(lookahead=1)
    cfg = TrainConfig(model=ModelConfig(df_bins=16))
    cfg = adopt_architecture(cfg, init.cfg, lookahead_given=False, filter_given=True)
    assert (cfg.model.df_bins, cfg.model.df_order, cfg.model.hidden) == (16, 3, 12)
    model = grown_init(init, cfg.model, seed=0).train()
    assert model.df_head is not None and not model.df_head.weight.any()
    clean = torch.polar(torch.rand(2, 20, F), torch.rand(2, 20, F) * 6.28)
    noisy = clean + 0.3 * torch.polar(torch.rand(2, 20, F), torch.rand(2, 20, F) * 6.28)
    rows = model.offline(noisy.abs())
    loss = compute_loss(cfg, rows, torch.rand(2, 20, F), noisy, clean)
    loss.backward()
    assert model.df_head.weight.grad.abs().sum() > 0
    # A filter cannot be changed or dropped by the config of a run from it.
    with pytest.raises(ValueError, match="cannot be changed"):
        adopt_architecture(TrainConfig(model=ModelConfig(df_bins=32)), model.cfg, False,
                           filter_given=True)
    assert adopt_architecture(TrainConfig(), model.cfg, False).model.df_bins == 16


def test_info_describes_the_filter_alike_for_checkpoint_and_onnx(tmp_path, capsys):
    from speechmask import checkpoint as ckpt
    from speechmask.cli import main
    from speechmask.features import StftConfig
    from speechmask.onnx_backend import export_onnx

    model = with_deep_filter(_tiny(lookahead=1), 64, 3)
    pt = ckpt.save(tmp_path / "df.pt", ckpt.model_payload(model, StftConfig()))
    onnx_path = export_onnx(model, StftConfig(), tmp_path / "df.onnx")
    lines = []
    for path in (pt, onnx_path):
        assert main(["info", "--model", str(path)]) == 0
        out = capsys.readouterr().out
        assert "deep filter on the lowest 64 bins over 3 frames" in out
        lines.append([line for line in out.splitlines()
                      if line.startswith(("parameters", "multiply"))])
    assert lines[0] == lines[1]
    assert f"parameters: {model.parameter_count():,}" in lines[0]
    assert f"{model.macs_per_frame():,} per frame" in lines[0][1]


def test_the_filter_layer_learns_at_its_own_rate():
    from speechmask.train import make_optimizer

    model = with_deep_filter(_tiny(lookahead=1), 16, 3)
    opt = make_optimizer(TrainConfig(lr=3e-4, df_lr_scale=0.1), model)
    rest, head = opt.param_groups
    assert [p for p in head["params"]] == list(model.df_head.parameters())
    assert head["lr_scale"] == 0.1 and rest["lr_scale"] == 1.0
    assert len(rest["params"]) + 2 == len(list(model.parameters()))
    assert len(make_optimizer(TrainConfig(), _tiny()).param_groups) == 1
    with pytest.raises(ValueError, match="df_lr_scale"):
        TrainConfig(df_lr_scale=0.0)
