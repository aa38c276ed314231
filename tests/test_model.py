"""MaskNet: shapes, range, explicit state (streaming == offline), sizes."""

import pytest
import torch

from speechmask.model import MaskNet, ModelConfig, describe


@pytest.fixture(params=["lstm", "gru"])
def model(request):
    torch.manual_seed(0)
    m = MaskNet(ModelConfig(cell=request.param, hidden=32, layers=2, dropout=0.1))
    m.set_normalization(torch.full((257,), -5.0), torch.full((257,), 3.0))
    return m.eval()


def test_shapes_and_range(model):
    mag = torch.rand(3, 40, 257) * 10
    mask, state = model(mag)
    assert mask.shape == (3, 40, 257)
    assert mask.min() >= 0 and mask.max() <= 1
    assert all(s.shape == (2, 3, 32) for s in state)
    assert len(state) == (2 if model.cfg.cell == "lstm" else 1)


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
    info = describe(m, 62.5)
    assert info["macs_per_frame"] == m.macs_per_frame()
    assert info["mmacs_per_second"] == pytest.approx(m.macs_per_frame() * 62.5 / 1e6)


@pytest.mark.parametrize("bad", [dict(cell="rnn"), dict(hidden=0), dict(hidden=-3),
                                 dict(layers=0), dict(dropout=1.0), dict(dropout=-0.1),
                                 dict(compression="mel")])
def test_config_rejects_impossible_values(bad):
    with pytest.raises(ValueError):
        ModelConfig(**bad)


def test_silence_gives_finite_mask(model):
    mask, _ = model(torch.zeros(1, 10, 257))
    assert torch.isfinite(mask).all()
