"""benchmarks.interpolate: models on the line between a start and the far end of a lineage."""

import pytest
import torch

from benchmarks.interpolate import line_state


def _states():
    start = {"a": torch.zeros(3), "b": torch.ones(2), "n": torch.tensor([7])}
    mid = {"a": torch.full((3,), 1.0), "b": torch.full((2,), 2.0), "n": torch.tensor([7])}
    return start, mid


@pytest.mark.parametrize("share, a, b", [(0.0, 0.0, 1.0), (0.5, 1.0, 2.0), (1.0, 2.0, 3.0)])
def test_line_runs_from_start_through_mid_to_the_far_end(share, a, b):
    start, mid = _states()
    state = line_state(start, mid, share)
    assert torch.equal(state["a"], torch.full((3,), a))
    assert torch.equal(state["b"], torch.full((2,), b))
    assert torch.equal(state["n"], mid["n"])  # integer buffers are not interpolated


def test_only_moves_the_named_weights():
    start, mid = _states()
    state = line_state(start, mid, 1.0, {"a"})
    assert torch.equal(state["a"], torch.full((3,), 2.0))
    assert torch.equal(state["b"], mid["b"])


def test_only_refuses_unknown_names():
    start, mid = _states()
    with pytest.raises(SystemExit, match="no such weights"):
        line_state(start, mid, 1.0, {"rnn.weight_ih_l9"})
