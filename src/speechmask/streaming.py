"""Real-time (causal, frame-by-frame) enhancement with the same model and explicit state.

:class:`StreamingEnhancer` takes chunks of any size and returns, for each chunk, as many samples
as it was given: the offline output delayed by a fixed :attr:`StreamingEnhancer.latency`
samples (n_fft/2 look-ahead of the centred frame + one hop of block buffering = 512 samples =
32 ms at 16 kHz, + 16 ms per frame of the model's look-ahead). ``flush()`` returns the last
``latency`` samples at the end of a stream. Dropping the first ``latency`` output samples gives
exactly the offline output (tested on random chunkings).
The buffering lives in :class:`speechmask.pipeline.FrameStream`, shared with the ONNX backend.
"""

from __future__ import annotations

import numpy as np
import torch

from .checkpoint import load_model
from .features import StftConfig
from .model import MaskNet, State
from .pipeline import FrameStream


class StreamingEnhancer(FrameStream):
    """Causal chunk-wise enhancement of a mono stream with a torch :class:`MaskNet` (at the
    model rate, or a ``rate`` :func:`speechmask.pipeline.processing_rate` gives)."""

    def __init__(self, model: MaskNet, stft_cfg: StftConfig = StftConfig(),
                 strength: float = 1.0, gain_band: tuple[int, int] | None = None,
                 rate: int | None = None):
        self.model = model.eval()
        # Runs where the model's weights are (CPU, or a GPU for an Enhancer built with one).
        self.device = next(model.parameters()).device
        super().__init__(stft_cfg, strength, gain_band, model.cfg.lookahead, rate,
                         model.deep_filter)

    @classmethod
    def load(cls, path=None, strength: float = 1.0) -> StreamingEnhancer:
        model, stft_cfg, _ = load_model(path)
        return cls(model, stft_cfg, strength)

    def _reset_state(self) -> None:
        self.state: State | None = None

    def _state_is_finite(self) -> bool:
        return self.state is None or all(bool(torch.isfinite(s).all()) for s in self.state)

    @torch.no_grad()
    def _network(self, mag: np.ndarray) -> np.ndarray:
        mask, self.state = self.model(torch.from_numpy(mag).to(self.device)[None], self.state)
        return mask[0].float().cpu().numpy()
