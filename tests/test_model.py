"""MaskNet: shapes, range, explicit state (streaming == offline), sizes."""

import pytest
import torch

from speechmask.model import MaskNet, ModelConfig, describe, with_hidden, with_lookahead


@pytest.fixture(params=[("lstm", 0), ("gru", 0), ("gru", 1), ("lstm", 3)])
def model(request):
    cell, lookahead = request.param
    torch.manual_seed(0)
    m = MaskNet(ModelConfig(cell=cell, hidden=32, layers=2, dropout=0.1, lookahead=lookahead))
    m.set_normalization(torch.full((257,), -5.0), torch.full((257,), 3.0))
    return m.eval()


def test_shapes_and_range(model):
    mag = torch.rand(3, 40, 257) * 10
    mask, state = model(mag)
    assert mask.shape == (3, 40, 257)
    assert mask.min() >= 0 and mask.max() <= 1
    n_rnn = 2 if model.cfg.cell == "lstm" else 1
    assert all(s.shape == (2, 3, 32) for s in state[:n_rnn])
    k = model.cfg.lookahead
    assert len(state) == n_rnn + (1 if k else 0)
    if k:  # the last k normalised feature frames
        assert torch.equal(state[-1], model.features(mag[:, -k:]))
    assert model.offline(mag).shape == (3, 40, 257)


def test_offline_is_the_stream_flushed_with_silence(model):
    """Row t of the stream is frame t - k; offline = stream + k silent frames, shifted by k."""
    k = model.cfg.lookahead
    mag = torch.rand(2, 30, 257) * 5
    with torch.no_grad():
        stream, _ = model(torch.cat([mag, torch.zeros(2, k, 257)], 1))
        offline = model.offline(mag)
    assert torch.equal(offline, stream[:, k:])
    if k:  # the mask of a frame depends on the frames after it
        changed = mag.clone()
        changed[:, 20] *= 3
        with torch.no_grad():
            after = model.offline(changed)
        assert not torch.allclose(after[:, 20 - k], offline[:, 20 - k])
        assert torch.equal(after[:, : 20 - k], offline[:, : 20 - k])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_streaming_equals_offline_on_random_chunkings(model, seed):
    gen = torch.Generator().manual_seed(seed)
    mag = torch.rand(2, 97, 257, generator=gen) * 5
    with torch.no_grad():
        offline, _ = model(mag)
        cuts = sorted(torch.randperm(96, generator=gen)[:7].add(1).tolist())
        state, outs = None, []
        for a, b in zip([0, *cuts], [*cuts, 97], strict=True):
            out, state = model(mag[:, a:b], state)
            outs.append(out)
    assert torch.allclose(torch.cat(outs, 1), offline, atol=1e-5)


def test_state_carries_information(model):
    mag = torch.rand(1, 20, 257) * 5
    with torch.no_grad():
        _, state = model(mag)
        fresh, _ = model(mag[:, :1])
        carried, _ = model(mag[:, :1], state)
    assert not torch.allclose(fresh, carried)


@pytest.mark.parametrize("cell,hidden,layers", [("lstm", 384, 2), ("gru", 128, 3), ("lstm", 8, 1)])
def test_parameter_and_mac_counts(cell, hidden, layers):
    m = MaskNet(ModelConfig(cell=cell, hidden=hidden, layers=layers))
    gates = 4 if cell == "lstm" else 3
    rnn = sum(gates * hidden * ((257 if i == 0 else hidden) + hidden + 2) for i in range(layers))
    assert m.parameter_count() == rnn + hidden * 257 + 257
    wide = MaskNet(ModelConfig(cell=cell, hidden=hidden, layers=layers, lookahead=2))
    assert wide.parameter_count() - m.parameter_count() == gates * hidden * 2 * 257
    assert wide.macs_per_frame() - m.macs_per_frame() == gates * hidden * 2 * 257
    info = describe(m, 62.5)
    assert info["macs_per_frame"] == m.macs_per_frame()
    assert info["mmacs_per_second"] == pytest.approx(m.macs_per_frame() * 62.5 / 1e6)


@pytest.mark.parametrize("bad", [dict(cell="rnn"), dict(hidden=0), dict(hidden=-3),
                                 dict(layers=0), dict(dropout=1.0), dict(dropout=-0.1),
                                 dict(compression="mel"), dict(lookahead=-1),
                                 dict(lookahead=5)])
def test_config_rejects_impossible_values(bad):
    with pytest.raises(ValueError):
        ModelConfig(**bad)


def test_silence_gives_finite_mask(model):
    mask, _ = model(torch.zeros(1, 10, 257))
    assert torch.isfinite(mask).all()


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize(("have", "lookahead"), [(0, 1), (0, 2), (1, 2), (1, 3)])
def test_with_lookahead_starts_as_the_same_model_later(cell, have, lookahead):
    """Zero weights on the added future frames: the widened model computes the old model's
    masks (lookahead - have) frames later, given the same history, so `train --init` starts
    where the model was."""
    torch.manual_seed(1)
    old = MaskNet(ModelConfig(cell=cell, hidden=16, layers=2, lookahead=have)).eval()
    old.set_normalization(torch.randn(257), torch.rand(257) + 0.5)
    with torch.no_grad():  # non-zero weights on every slot of the old model
        old.rnn.weight_ih_l0.normal_(0, 0.1)
    wide = with_lookahead(old, lookahead).eval()
    assert wide.cfg.lookahead == lookahead and wide.cfg.hidden == 16
    prefix, mag = torch.rand(1, lookahead, 257) * 4, torch.rand(1, 25, 257) * 4
    with torch.no_grad():
        # The old model with the prefix's first `have` frames as history, then the rest + mag.
        start = (*old.initial_state(1)[: old.rnn_state_count],
                 *([old.features(prefix[:, :have])] if have else []))
        want, _ = old(torch.cat([prefix[:, have:], mag], 1), start)
        got, _ = wide(mag, (*wide.initial_state(1)[: wide.rnn_state_count],
                            wide.features(prefix)))
    torch.testing.assert_close(got, want[:, :25], atol=1e-6, rtol=0)
    assert with_lookahead(wide, lookahead) is wide
    with pytest.raises(ValueError, match="cannot reduce"):
        with_lookahead(wide, have)


def _random_model(cell, layers, hidden=12, lookahead=1):
    torch.manual_seed(1)
    model = MaskNet(ModelConfig(cell=cell, hidden=hidden, layers=layers, n_freqs=9,
                                lookahead=lookahead, dropout=0.0))
    model.set_normalization(torch.randn(9), torch.rand(9) + 0.5)
    return model.eval()


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("layers", [1, 2, 3])
def test_with_hidden_wider_computes_the_same_masks(cell, layers):
    old = _random_model(cell, layers)
    wide = with_hidden(old, 20).eval()
    assert wide.cfg.hidden == 20 and wide.parameter_count() > old.parameter_count()
    mag = torch.rand(2, 30, 9) * 3
    torch.testing.assert_close(wide.offline(mag), old.offline(mag), rtol=0, atol=1e-6)
    # ... and the new units are alive: their incoming weights are not zero, so they can learn.
    assert wide.rnn.weight_ih_l0[12:20].abs().sum() > 0


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("layers", [1, 2])
def test_with_hidden_narrower_drops_the_units_nothing_reads(cell, layers):
    """Units whose output no weight reads (next layer, own layer, dense) are the ones removed,
    and removing them changes nothing."""
    model = _random_model(cell, layers)
    dead = torch.tensor([1, 4, 7, 10])
    gates = 4 if cell == "lstm" else 3
    with torch.no_grad():
        for layer in range(layers):
            getattr(model.rnn, f"weight_hh_l{layer}")[:, dead] = 0
            reader = (model.dense.weight if layer == layers - 1
                      else getattr(model.rnn, f"weight_ih_l{layer + 1}"))
            reader[:, dead] = 0
    narrow = with_hidden(model, 8).eval()
    assert narrow.cfg.hidden == 8
    assert narrow.rnn.weight_ih_l0.shape == (gates * 8, 9 * 2)
    mag = torch.rand(2, 30, 9) * 3
    torch.testing.assert_close(narrow.offline(mag), model.offline(mag), rtol=0, atol=1e-6)


def test_with_hidden_keeps_the_model_at_its_own_width_and_rejects_zero():
    model = _random_model("gru", 2)
    same = with_hidden(model, 12)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(same.state_dict()[key], value)
    with pytest.raises(ValueError, match="hidden must be >= 1"):
        with_hidden(model, 0)
