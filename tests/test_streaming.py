"""Streaming == offline (after the fixed latency) on random chunkings, for LSTM and GRU."""

import numpy as np
import pytest
import torch

from speechmask import pipeline
from speechmask.enhance import Enhancer
from speechmask.features import StftConfig
from speechmask.model import MaskNet, ModelConfig
from speechmask.pipeline import FrameStream
from speechmask.streaming import StreamingEnhancer


@pytest.fixture(params=[("lstm", 1.0, 0, 0), ("gru", 1.0, 0, 0), ("gru", 1.3, 0, 0),
                        ("lstm", 1.0, 1, 0), ("gru", 1.0, 2, 0), ("gru", 1.0, 1, 40),
                        ("lstm", 1.0, 0, 9)])
def model(request):
    """Both cells, a calibrated mask exponent (a pointwise power: streams like the rest),
    look-ahead of 1 and 2 frames (masks come k frames late; flush feeds k silent frames), and
    deep filters (their taps reach from the frames before to the look-ahead's), with random
    coefficients."""
    cell, mask_exponent, lookahead, df_bins = request.param
    torch.manual_seed(0)
    m = MaskNet(ModelConfig(cell=cell, hidden=24, layers=2, dropout=0.0,
                            mask_exponent=mask_exponent, lookahead=lookahead, df_bins=df_bins))
    m.set_normalization(torch.full((257,), -8.0), torch.full((257,), 4.0))
    if df_bins:  # a new filter starts at zero: make it do something
        torch.nn.init.normal_(m.df_head.weight, std=0.5)
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


class _ToyStream(FrameStream):
    """A FrameStream with a stateful numpy "network" that is exactly frame-wise (a running
    mean of the magnitudes k frames late), so one frame per call and many frames per call must
    give bit-identical output: the per-hop shortcuts of FrameStream change nothing."""

    def _reset_state(self) -> None:
        self.run = None
        self.history: list[np.ndarray] = []

    def _network(self, mag: np.ndarray) -> np.ndarray:
        masks = []
        for row in mag:
            self.run = row if self.run is None else np.float32(0.9) * self.run + row / 10
            self.history.append(self.run / (self.run + np.float32(1.0)))
            k = self.lookahead
            masks.append(self.history[-1 - k] if len(self.history) > k else np.ones_like(row))
        return np.stack(masks).astype(np.float32)


@pytest.mark.parametrize("strength", [0.8, 1.0])
@pytest.mark.parametrize("lookahead", [0, 1, 2])
@pytest.mark.parametrize("rate", [16000, 48000])
def test_one_frame_per_call_equals_many_frames_per_call(lookahead, rate, strength):
    audio = (np.random.default_rng(lookahead).standard_normal(rate // 2) * 0.1).astype(np.float32)
    stream = _ToyStream(StftConfig(), strength, None, lookahead, rate)
    hop = stream.cfg.hop
    per_hop = stream.enhance(audio, chunk=hop)  # exactly one frame per call
    assert stream._frames_done == len(audio) // hop + 1 + lookahead
    ten_ms = stream.enhance(audio, chunk=rate // 100)  # what `speechmask stream` feeds
    whole = stream.enhance(audio, chunk=len(audio))  # all frames in one call
    assert np.array_equal(per_hop, whole) and np.array_equal(ten_ms, whole)


@pytest.mark.parametrize("kernels", ["numpy's own", "public"])
@pytest.mark.parametrize("n", [512, 1412, 16])  # 16 kHz, 44.1 kHz frames, tiny
def test_frame_ffts_give_exactly_what_numpy_fft_gives(n, kernels, monkeypatch):
    if np.lib.NumpyVersion(np.__version__) >= "2.0.0":  # the fast kernels are found there
        assert pipeline._FFT_KERNELS is not None
    if kernels == "public":
        monkeypatch.setattr(pipeline, "_FFT_KERNELS", None)
    frames = np.random.default_rng(n).standard_normal((3, n)).astype(np.float32)
    spec = pipeline.rfft_frames(frames)
    assert spec.dtype == np.complex64
    assert np.array_equal(spec, np.fft.rfft(frames, axis=-1).astype(np.complex64))
    out = np.empty((3, n), np.float32)
    back = pipeline.irfft_frames(spec, n, out)
    assert back is out and np.array_equal(back, np.fft.irfft(spec, n=n, axis=-1))
    assert np.array_equal(pipeline.irfft_frames(spec, n), back)


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
    # 32 ms of leading silence, + 16 ms per frame of look-ahead (in whole frames of the rate)
    lead = Enhancer(model, StftConfig()).pipeline(rate).stream.latency
    assert abs(lead - (0.032 + 0.016 * model.cfg.lookahead) * rate) < 2
    assert len(aligned) == 2 * len(pcm)
    if not len(pcm):
        assert delayed == b"" or set(delayed) == {0}
        return
    assert len(delayed) == 2 * (len(pcm) + lead)
    assert delayed[: 2 * lead] == bytes(2 * lead) and delayed[2 * lead :] == aligned


@pytest.mark.parametrize("rate", [16000, 22050, 44100, 48000])
def test_live_latency_is_the_stated_one_at_any_rate(model, rate):
    """Item 8: fed 10 ms chunks, every output sample leaves within the stated latency plus one
    chunk, at 44.1/48 kHz as at 16 kHz (no resampler bursts)."""
    enh = Enhancer(model, StftConfig())
    pipe = enh.pipeline(rate)
    chunk = rate // 100
    audio = (np.random.default_rng(0).standard_normal(rate) * 0.1).astype(np.float32)
    emitted, worst = 0, 0
    for start in range(0, len(audio), chunk):
        out = pipe.push(audio[start : start + chunk])
        if len(out):
            worst = max(worst, start + chunk - emitted)
        emitted += len(out)
    assert pipe.latency_ms == pytest.approx(32 + 16 * model.cfg.lookahead, abs=0.1)
    assert worst / rate * 1000 <= pipe.latency_ms + 10 + 0.1


def test_stream_cli_stereo_and_bad_block(tmp_path):
    """Item 8: interleaved stereo PCM in and out (each channel enhanced on its own, equal to
    the offline stereo result); --block 0 is a one-line error, not a silent empty output."""
    import subprocess
    import sys

    from speechmask import checkpoint as ckpt

    torch.manual_seed(0)  # one model (the shipped kind: GRU, one frame of look-ahead)
    model = MaskNet(ModelConfig(cell="gru", hidden=24, layers=2, dropout=0.0, lookahead=1))
    model.set_normalization(torch.full((257,), -8.0), torch.full((257,), 4.0))
    model.eval()
    rate = 44100
    path = ckpt.save(tmp_path / "m.pt", ckpt.model_payload(model, StftConfig()))
    pcm = (np.random.default_rng(2).standard_normal((rate // 3, 2)) * 3000).astype("<i2")
    base = [sys.executable, "-m", "speechmask", "stream", "--rate", str(rate), "--model",
            str(path)]
    result = subprocess.run(base + ["--channels", "2", "--block", "100"],
                            input=pcm.tobytes(), capture_output=True, check=True)
    out = np.frombuffer(result.stdout, dtype="<i2").reshape(-1, 2) / 32768.0
    offline = Enhancer(model, StftConfig())(pcm / 32768.0, rate)
    assert out.shape == pcm.shape and np.max(np.abs(out - offline)) < 2 / 32768
    assert f"latency {32 + 16 * model.cfg.lookahead} ms" in result.stderr.decode()
    bad = subprocess.run(base + ["--block", "0"], input=pcm.tobytes(), capture_output=True)
    err = bad.stderr.decode().strip().splitlines()
    assert bad.returncode != 0 and len(err) == 1 and "--block" in err[0] and not bad.stdout
