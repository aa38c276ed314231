"""Streaming == offline (after the fixed latency) on random chunkings, for LSTM and GRU."""

import numpy as np
import pytest
import torch

from speechmask.enhance import Enhancer
from speechmask.features import StftConfig
from speechmask.model import MaskNet, ModelConfig
from speechmask.streaming import StreamingEnhancer


@pytest.fixture(params=[("lstm", 1.0, 0), ("gru", 1.0, 0), ("gru", 1.3, 0), ("lstm", 1.0, 1),
                        ("gru", 1.0, 2)])
def model(request):
    """Both cells, a calibrated mask exponent (a pointwise power: streams like the rest), and
    look-ahead of 1 and 2 frames (masks come k frames late; flush feeds k silent frames)."""
    cell, mask_exponent, lookahead = request.param
    torch.manual_seed(0)
    m = MaskNet(ModelConfig(cell=cell, hidden=24, layers=2, dropout=0.0,
                            mask_exponent=mask_exponent, lookahead=lookahead))
    m.set_normalization(torch.full((257,), -8.0), torch.full((257,), 4.0))
    return m.eval()


@pytest.mark.parametrize("n", [100, 256, 4000, 16037])
@pytest.mark.parametrize("seed", [0, 1])
def test_streaming_equals_offline_on_random_chunkings(model, n, seed):
    rng = np.random.default_rng(seed)
    audio = (rng.standard_normal(n) * 0.1).astype(np.float32)
    offline = Enhancer(model, StftConfig())(audio, 16000)
    stream = StreamingEnhancer(model)
    pieces, pos = [], 0
    while pos < n:
        size = int(rng.integers(1, 700))
        chunk = audio[pos : pos + size]
        out = stream.process(chunk)
        assert len(out) == len(chunk)  # one sample out per sample in
        pieces.append(out)
        pos += size
    tail = stream.flush()
    assert len(tail) == stream.latency
    total = np.concatenate([*pieces, tail])
    assert np.all(total[: min(stream.latency, n)] == 0)
    assert np.allclose(total[stream.latency :], offline, atol=1e-5)


@pytest.mark.parametrize("lookahead", [0, 1, 2])
def test_latency_is_one_frame_plus_a_hop_per_lookahead_frame(lookahead):
    stream = StreamingEnhancer(MaskNet(ModelConfig(hidden=8, layers=1, lookahead=lookahead)))
    assert stream.latency == 512 + 256 * lookahead
    assert stream.latency_ms == pytest.approx(32.0 + 16.0 * lookahead)


def test_reset_starts_a_new_stream(model):
    audio = (np.random.default_rng(3).standard_normal(3000) * 0.1).astype(np.float32)
    stream = StreamingEnhancer(model)
    first = stream.enhance(audio)
    stream.process(np.ones(999, np.float32))
    stream.reset()
    assert np.array_equal(stream.enhance(audio), first)


@pytest.mark.parametrize("strength", [0.0, 0.5])
def test_strength(model, strength):
    audio = (np.random.default_rng(4).standard_normal(4000) * 0.1).astype(np.float32)
    out = StreamingEnhancer(model, strength=strength).enhance(audio)
    offline = Enhancer(model, StftConfig(), strength=strength)(audio, 16000)
    assert np.allclose(out, offline, atol=1e-5)
    if strength == 0.0:
        assert np.allclose(out, audio, atol=1e-5)


@pytest.mark.parametrize("rate", [16000, 48000])
def test_stream_cli_through_a_real_pipe(tmp_path, model, rate):
    """`speechmask stream` in a shell pipe: PCM in, same-length PCM out, equal to offline."""
    import subprocess
    import sys

    from speechmask import checkpoint as ckpt

    path = ckpt.save(tmp_path / "m.pt", ckpt.model_payload(model, StftConfig()))
    rng = np.random.default_rng(5)
    audio = (rng.standard_normal(rate // 2) * 0.1).astype(np.float32)
    pcm = (audio * 32767).astype("<i2")
    (tmp_path / "in.raw").write_bytes(pcm.tobytes())
    cmd = (f"cat {tmp_path / 'in.raw'} | {sys.executable} -m speechmask -q stream --rate {rate} "
           f"--model {path} --block 333 | cat > {tmp_path / 'out.raw'}")
    subprocess.run(cmd, shell=True, check=True)
    out = np.frombuffer((tmp_path / "out.raw").read_bytes(), dtype="<i2") / 32768.0
    assert len(out) == len(pcm)
    # Equal to offline at any rate: at 48 kHz too, with the band above 8 kHz kept.
    offline = Enhancer(model, StftConfig())(pcm / 32768.0, rate)
    assert np.max(np.abs(out - offline)) < 2 / 32768


@pytest.mark.parametrize(("rate", "seconds"), [(16000, 0.3), (44100, 0.3), (16000, 0.0)])
def test_stream_cli_keep_latency_and_empty_input(tmp_path, model, rate, seconds):
    import subprocess
    import sys

    from speechmask import checkpoint as ckpt

    path = ckpt.save(tmp_path / "m.pt", ckpt.model_payload(model, StftConfig()))
    pcm = (np.random.default_rng(1).standard_normal(int(rate * seconds)) * 3000).astype("<i2")
    base = [sys.executable, "-m", "speechmask", "-q", "stream", "--rate", str(rate), "--model",
            str(path)]
    aligned = subprocess.run(base, input=pcm.tobytes(), capture_output=True, check=True).stdout
    delayed = subprocess.run(base + ["--keep-latency"], input=pcm.tobytes(),
                             capture_output=True, check=True).stdout
    # 32 ms of leading silence, + 16 ms per frame of look-ahead
    lead = round((0.032 + 0.016 * model.cfg.lookahead) * rate)
    assert len(aligned) == 2 * len(pcm)
    if not len(pcm):
        assert delayed == b"" or set(delayed) == {0}
        return
    assert len(delayed) == 2 * (len(pcm) + lead)
    assert delayed[: 2 * lead] == bytes(2 * lead) and delayed[2 * lead :] == aligned
