"""Real-time (causal, frame-by-frame) enhancement with the same model and explicit state.

:class:`StreamingEnhancer` takes chunks of any size and returns, for each chunk, as many samples
as it was given: the offline output delayed by a fixed :attr:`StreamingEnhancer.latency` samples
(n_fft/2 look-ahead of the centred frame + one hop of block buffering = 512 samples = 32 ms at
16 kHz). ``flush()`` returns the last ``latency`` samples at the end of a stream. Dropping the
first ``latency`` output samples gives exactly the offline output (tested on random chunkings).
"""

from __future__ import annotations

import numpy as np
import torch

from .checkpoint import load_model
from .features import StftConfig
from .model import MaskNet, State


class StreamingEnhancer:
    """Causal chunk-wise enhancement of a mono 16 kHz stream."""

    # Frames per model call when a chunk holds many (bounds memory for long chunks: 1024 frames
    # = 16 s of audio, a 2 MB frame matrix).
    MAX_FRAMES_PER_CALL = 1024

    def __init__(self, model: MaskNet, stft_cfg: StftConfig = StftConfig(),
                 strength: float = 1.0, gain_band: tuple[int, int] | None = None):
        """``gain_band = (first_bin, end_bin)``: also record, per frame, the mean of the applied
        mask over those bins in :attr:`frame_gains` (used to scale audio above the model band).
        """
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {strength}")
        self.model = model.eval()
        self.cfg = stft_cfg
        self.strength = strength
        self.gain_band = gain_band
        self.window = torch.hann_window(stft_cfg.n_fft, periodic=True).sqrt()
        self.reset()

    @classmethod
    def load(cls, path=None, strength: float = 1.0) -> StreamingEnhancer:
        model, stft_cfg, _ = load_model(path)
        return cls(model, stft_cfg, strength)

    @property
    def latency(self) -> int:
        """Fixed delay of the output stream, in samples (n_fft/2 + hop)."""
        return self.cfg.n_fft // 2 + self.cfg.hop

    @property
    def latency_ms(self) -> float:
        return 1000.0 * self.latency / self.cfg.sample_rate

    def reset(self) -> None:
        """Forget everything: start a new stream."""
        half = self.cfg.n_fft // 2
        self.state: State | None = None
        # Input not yet consumed by a frame, starting with the centred STFT's zero padding.
        self._pending = np.zeros(half, np.float32)
        # Overlap-add accumulator; index 0 is the first output position not yet complete.
        self._ola = np.zeros(self.cfg.n_fft, np.float32)
        self._frames_done = 0
        self.frame_gains: list[float] = []
        self._received = 0
        # Frame 0's first completed hop lies in the padding before the signal: dropped.
        self._skip = half
        # The delayed output stream: `latency` samples of silence, then the offline output.
        self._queue = np.zeros(self.latency, np.float32)

    @torch.no_grad()
    def _frames(self, frames: np.ndarray) -> np.ndarray:
        """Run ``frames: [K, n_fft]`` (time order) through STFT -> model -> iSTFT frames."""
        x = torch.from_numpy(frames) * self.window
        spec = torch.fft.rfft(x, dim=-1)  # [K, F]
        mask, self.state = self.model(spec.abs()[None], self.state)
        mask = 1.0 - self.strength * (1.0 - mask[0])
        if self.gain_band is not None:
            self.frame_gains.extend(mask[:, self.gain_band[0] : self.gain_band[1]].mean(1).tolist())
        return (torch.fft.irfft(spec * mask, n=self.cfg.n_fft, dim=-1) * self.window).numpy()

    def _run_available(self) -> None:
        """Process every complete frame in the pending input; queue the completed output."""
        n_fft, hop = self.cfg.n_fft, self.cfg.hop
        available = 0 if len(self._pending) < n_fft else (len(self._pending) - n_fft) // hop + 1
        while available > 0:
            count = min(available, self.MAX_FRAMES_PER_CALL)
            self._run_frames(count)
            available -= count

    def _run_frames(self, count: int) -> None:
        n_fft, hop = self.cfg.n_fft, self.cfg.hop
        idx = np.arange(n_fft)[None, :] + hop * np.arange(count)[:, None]
        out_frames = self._frames(np.ascontiguousarray(self._pending[idx]))
        # Overlapping sqrt-Hann^2 windows sum to n_fft / (2 hop) (1 at 50 % overlap).
        norm = n_fft / (2 * hop)
        done = []
        for frame in out_frames:
            self._ola += frame
            done.append(self._ola[:hop] / norm)
            self._ola = np.concatenate([self._ola[hop:], np.zeros(hop, np.float32)])
        self._pending = self._pending[count * hop :]
        self._frames_done += count
        ready = np.concatenate(done)
        cut = min(self._skip, len(ready))
        self._skip -= cut
        self._queue = np.concatenate([self._queue, ready[cut:]])

    def process(self, chunk: np.ndarray) -> np.ndarray:
        """Feed ``chunk: [n]`` samples; returns ``[n]`` samples of the delayed output stream."""
        chunk = np.asarray(chunk, dtype=np.float32).reshape(-1)
        self._received += len(chunk)
        self._pending = np.concatenate([self._pending, chunk])
        self._run_available()
        out, self._queue = self._queue[: len(chunk)], self._queue[len(chunk) :]
        return out

    def flush(self) -> np.ndarray:
        """End of stream: returns the last ``latency`` samples of the output stream.

        Mirrors the offline iSTFT exactly: the last frame is the one offline computes
        (``N // hop``), and the positions after it are divided by the window envelope of the
        frames that cover them, as ``torch.istft`` does.
        """
        n_fft, hop, half = self.cfg.n_fft, self.cfg.hop, self.cfg.n_fft // 2
        n = self._received
        last = n // hop  # index of the last frame of the offline STFT
        remaining = last + 1 - self._frames_done
        if remaining > 0:
            need = n_fft + hop * (remaining - 1)
            pad = np.zeros(max(0, need - len(self._pending)), np.float32)
            self._pending = np.concatenate([self._pending, pad])[:need]
            self._run_available()
        # Output positions completed so far (first `half` popped samples were padding).
        completed = self._frames_done * hop - half
        tail_len = n - completed
        if tail_len > 0:
            w2 = (self.window**2).numpy()
            positions = completed + np.arange(tail_len)
            envelope = np.zeros(tail_len)
            for t in range(max(0, last - n_fft // hop), last + 1):
                offset = positions - (t * hop - half)
                inside = (offset >= 0) & (offset < n_fft)
                envelope[inside] += w2[offset[inside]]
            tail = self._ola[:tail_len] / np.maximum(envelope, 1e-11)
            self._queue = np.concatenate([self._queue, tail.astype(np.float32)])
        out, self._queue = self._queue, np.zeros(0, np.float32)
        return out

    def enhance(self, audio: np.ndarray, chunk: int = 160) -> np.ndarray:
        """Convenience: stream ``audio`` through in ``chunk``-sample pieces (160 = 10 ms) and
        return the latency-compensated output, the same length as ``audio``."""
        self.reset()
        pieces = [self.process(audio[i : i + chunk]) for i in range(0, len(audio), chunk)]
        pieces.append(self.flush())
        return np.concatenate(pieces)[self.latency : self.latency + len(audio)]
