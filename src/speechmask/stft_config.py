"""STFT geometry (sample rate, frame, hop): plain Python, shared by the torch code
(:mod:`speechmask.features`) and the torch-free inference (:mod:`speechmask.onnx_backend`,
:mod:`speechmask.pipeline`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StftConfig:
    """STFT geometry. Defaults: 32 ms frames, 16 ms hop at 16 kHz."""

    # Sample rate the STFT is defined at, in Hz. The corpus and the model run at 16 kHz.
    sample_rate: int = 16_000
    # FFT size = frame length in samples; 512 = 32 ms at 16 kHz, 31.25 Hz bins, F = 257.
    n_fft: int = 512
    # Hop in samples; 256 = 16 ms = 50 % overlap, the least overlap at which sqrt-Hann
    # analysis + synthesis windows reconstruct perfectly (hann^2 sums to 1 at 50 %).
    hop: int = 256

    def __post_init__(self) -> None:
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {self.sample_rate}")
        # Even n_fft and hop <= n_fft / 2: otherwise T != N // hop + 1 (odd n_fft), or the
        # centred frames do not cover the end of the signal and istft cannot reconstruct it.
        if self.n_fft <= 0 or self.n_fft % 2 or self.hop <= 0 or self.hop > self.n_fft // 2:
            raise ValueError(
                "need an even n_fft > 0 and 0 < hop <= n_fft / 2, "
                f"got n_fft={self.n_fft}, hop={self.hop}"
            )

    @property
    def n_freqs(self) -> int:
        """Number of frequency bins F."""
        return self.n_fft // 2 + 1

    @property
    def frame_ms(self) -> float:
        """Frame length in milliseconds."""
        return 1000.0 * self.n_fft / self.sample_rate

    def stream_latency(self, lookahead: int = 0) -> int:
        """Algorithmic latency of frame-by-frame enhancement, in samples: n_fft/2 look-ahead of
        the centred frame + one hop of block buffering + one hop per frame of model look-ahead
        (512 + 256 k = 32 + 16 k ms by default)."""
        return self.n_fft // 2 + self.hop * (1 + lookahead)

    def n_frames(self, n_samples: int) -> int:
        """Frames T produced for a signal of ``n_samples`` samples."""
        return n_samples // self.hop + 1
