"""Torch-free block processing shared by the torch and the ONNX backends.

- :class:`FrameStream`: causal chunk-wise STFT -> mask -> iSTFT with overlap-add, for a mono
  16 kHz stream, the network call left to a subclass (torch in :mod:`speechmask.streaming`,
  onnxruntime in :mod:`speechmask.onnx_backend`).
- :class:`ChannelPipeline`: one channel at any sample rate through a :class:`FrameStream`,
  resampling with soxr's streaming resampler and keeping the band the 16 kHz model cannot see.
- :func:`enhance_file`: a file of any length, block by block in bounded memory, written
  atomically.

Nothing here imports torch, so the ONNX backend runs in an install without it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import soxr

from .audio import AudioError, open_audio, open_writer, output_subtype, read_blocks
from .deepfilter import DeepFilter, FilterHistory
from .media import MediaReader
from .stft_config import StftConfig

log = logging.getLogger(__name__)

# Model bins whose mean mask sets the gain of the band above 8 kHz: 6-8 kHz (bins 192-256 at
# 31.25 Hz per bin), the part of the model's band closest in content to what lies above it.
HIGH_BAND_FROM_HZ = 6000.0

# Block length for files: 10 s keeps memory flat (a few MB per channel) at any file length.
BLOCK_SECONDS = 10.0


def _fft_gufuncs() -> tuple[Any, Any] | None:
    """numpy's own real FFT kernels ``(rfft_n_even, irfft)``, called with an output array, or
    None where they are not there or not as expected (numpy < 2, or a later change).

    ``np.fft.rfft`` / ``irfft`` wrap them in ~2 us of argument handling and allocation per
    call: a stream makes two calls of ~6 us every 16 ms hop. The kernels are numpy's private
    module, so they are checked once to give exactly what the public functions give.
    """
    try:
        from numpy.fft import _pocketfft_umath as kernels

        x = np.sin(np.arange(32, dtype=np.float32))[None]
        spec = kernels.rfft_n_even(x, 1.0, out=np.empty((1, 17), np.complex64))
        back = kernels.irfft(spec, np.float32(1.0 / 32), out=np.empty((1, 32), np.float32))
        if (np.array_equal(spec, np.fft.rfft(x).astype(np.complex64))
                and np.array_equal(back, np.fft.irfft(spec, n=32))):
            return kernels.rfft_n_even, kernels.irfft
    except Exception:  # noqa: BLE001 - any failure means: use the public functions
        pass
    return None


_FFT_KERNELS = _fft_gufuncs()


def rfft_frames(frames: np.ndarray) -> np.ndarray:
    """``frames: [K, n]`` float32 (n even) -> ``[K, n // 2 + 1]`` complex64, as ``np.fft.rfft``
    along the last axis."""
    n = frames.shape[-1]
    if _FFT_KERNELS is None or n % 2:
        return np.fft.rfft(frames, axis=-1).astype(np.complex64, copy=False)
    # A Python float scale picks the float64 kernel, as np.fft.rfft does for float32 input
    # (the float32 kernel differs by ~1e-5 relative and would part a stream from a file).
    return _FFT_KERNELS[0](frames, 1.0, out=np.empty((len(frames), n // 2 + 1), np.complex64))


def irfft_frames(spec: np.ndarray, n: int, out: np.ndarray | None = None) -> np.ndarray:
    """``spec: [K, n // 2 + 1]`` complex64 -> ``[K, n]`` float32, as ``np.fft.irfft(spec, n)``
    along the last axis; into ``out`` when given (``[K, n]`` float32)."""
    if _FFT_KERNELS is None:
        signal = np.fft.irfft(spec, n=n, axis=-1).astype(np.float32, copy=False)
        if out is None:
            return signal
        out[...] = signal
        return out
    if out is None:
        out = np.empty((len(spec), n), np.float32)
    return _FFT_KERNELS[1](spec, np.float32(1.0 / n), out=out)  # float32, as np.fft.irfft


def sqrt_hann(n_fft: int) -> np.ndarray:
    """Periodic sqrt-Hann window ``[n_fft]`` float32 (analysis and synthesis)."""
    return np.sqrt(0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)


def high_band(cfg: StftConfig, rate: int) -> tuple[int, int] | None:
    """Model bins ``(first, end)`` whose mean mask scales what the model cannot see at ``rate``
    (None at the model rate): 6-8 kHz above 16 kHz, the top 20 % of the band below."""
    if rate == cfg.sample_rate:
        return None
    bin_hz = cfg.sample_rate / cfg.n_fft
    top_hz = min(rate, cfg.sample_rate) / 2
    from_hz = HIGH_BAND_FROM_HZ if rate > cfg.sample_rate else 0.8 * top_hz
    return int(from_hz / bin_hz), min(int(top_hz / bin_hz) + 1, cfg.n_freqs)


# An empty top of the model band (content made at 16 kHz and upsampled, or a recording
# resampled on the way: soxr leaves 7.6-8 kHz empty) makes the model, trained on full-band
# speech, remove 4-8 kHz of speech. Above the model rate, a stream whose EMPTY_HZ band
# stays below EMPTY_RATIO of the REFERENCE_HZ band (ratio smoothed over ~20 frames, then a peak
# with a BAND_DECAY per frame, so full-band sound anywhere in the last few seconds marks the
# recording full-band; corpus speech: median 0.65, upsampled 16 kHz speech: 0.02, at most 0.07)
# is band-limited: the model's input magnitudes from FILL_FROM_HZ up are raised to FILL_LEVEL times
# the frame's reference mean. Only the model's input changes; the mask is applied to the signal
# as it is. At the model rate nothing changes: there, band-limited noise is a cue the model
# uses (filling per frame costs 1 dB SNR on the valid set).
FILL_FROM_HZ = 7500.0
# 7.78-7.94 kHz: inside any resampler's transition band, clear of leakage from content at 8 kHz+.
EMPTY_HZ = (7780.0, 7940.0)
REFERENCE_HZ = (6500.0, 7500.0)
EMPTY_RATIO = 0.12
RATIO_SMOOTHING = 0.05
FILL_LEVEL = 0.7
BAND_DECAY = 0.995  # per 16 ms frame: the peak falls 10x in 7 s


def top_band_ratio(mag: np.ndarray, cfg: StftConfig) -> np.ndarray:
    """``mag: [K, F]`` -> ``[K]`` mean magnitude of the EMPTY_HZ bins over that of the
    REFERENCE_HZ bins (0 for frames without energy there)."""
    bin_hz = cfg.sample_rate / cfg.n_fft
    d_lo, d_hi = (int(round(hz / bin_hz)) for hz in EMPTY_HZ)
    lo, hi = (int(round(hz / bin_hz)) for hz in REFERENCE_HZ)
    ref = mag[:, lo:hi].mean(axis=-1)
    return np.where(ref > 1e-6, mag[:, d_lo:d_hi].mean(axis=-1) / np.maximum(ref, 1e-6), 0.0)


def fill_top_band(mag: np.ndarray, cfg: StftConfig, frames: np.ndarray) -> np.ndarray:
    """``mag: [K, F]`` with the top band (FILL_FROM_HZ up) of the ``frames: [K]`` (bool) raised
    to FILL_LEVEL times the bins just below it, shifted up (the texture of the speech there)."""
    bin_hz = cfg.sample_rate / cfg.n_fft
    first = int(round(FILL_FROM_HZ / bin_hz))
    width = mag.shape[-1] - first
    out = np.array(mag, dtype=np.float32, copy=True)
    if width <= 0 or width > first or not frames.any():
        return out
    source = FILL_LEVEL * out[:, first - width : first]
    out[:, first:] = np.where(frames[:, None], np.maximum(out[:, first:], source),
                              out[:, first:])
    return out


# Quiet input: the model's log-magnitude features of speech peaking below about -40 dBFS fall
# where it saw little speech, and it removes speech (-42 dBFS: 16.5 dB SNR against the input,
# -52 dBFS: -3.9 dB of level). The model's input magnitudes (never the signal) are multiplied by
# a gain that brings the recent peak up to LEVEL_TARGET: peak = the largest |sample| per frame,
# held with a release of LEVEL_RELEASE_DB_PER_S; gain = LEVEL_TARGET / peak, between 1 (loud
# input is left as it is) and LEVEL_MAX_GAIN, rising by at most LEVEL_RISE_DB_PER_S (a file
# that starts with near-silence before loud sound is not amplified 35 dB at its start: that
# cost 4 dB SNR on one valid pair) and falling at once. Frame by frame and causal, so a stream
# and a whole file get the same gains.
LEVEL_TARGET = 0.03  # -30 dBFS
LEVEL_MAX_GAIN = 1000.0  # +60 dB: -80 dBFS peaks reach the target
LEVEL_RELEASE_DB_PER_S = 3.0
LEVEL_RISE_DB_PER_S = 20.0


class LevelTracker:
    """Per-frame gains for the model's input (see LEVEL_TARGET)."""

    def __init__(self, frames_per_second: float):
        self.release = 10.0 ** (-LEVEL_RELEASE_DB_PER_S / 20.0 / frames_per_second)
        self.rise = 10.0 ** (LEVEL_RISE_DB_PER_S / 20.0 / frames_per_second)
        self.peak = 0.0
        self.gain = 1.0

    def step(self, peak: float) -> float:
        """The gain of the next frame, whose largest |sample| is ``peak``."""
        self.peak = max(peak, self.peak * self.release)
        wanted = min(LEVEL_MAX_GAIN, max(1.0, LEVEL_TARGET / max(self.peak, 1e-12)))
        self.gain = min(wanted, self.gain * self.rise)
        return self.gain

    def gains(self, frame_peaks: np.ndarray) -> np.ndarray:
        """``frame_peaks: [K]`` largest |sample| of each frame -> ``[K]`` gains (float32)."""
        # tolist(): Python floats, the same values as float64 elements, at a third of the cost.
        return np.array([self.step(peak) for peak in
                         np.asarray(frame_peaks, dtype=np.float64).tolist()], np.float32)


def frame_peaks_offline(audio: np.ndarray, cfg: StftConfig) -> np.ndarray:
    """``[T]`` largest |sample| of each centred STFT frame of ``audio: [N]`` (as a stream sees
    them: zero padding at both ends)."""
    half = cfg.n_fft // 2
    padded = np.abs(np.pad(np.asarray(audio, dtype=np.float32), (half, half)))
    return np.lib.stride_tricks.sliding_window_view(padded, cfg.n_fft)[:: cfg.hop].max(axis=1)


def level_gains_offline(audio: np.ndarray, cfg: StftConfig) -> np.ndarray:
    """``[T]`` the model-input gains a stream of ``audio: [N]`` uses, frame by frame."""
    return LevelTracker(cfg.sample_rate / cfg.hop).gains(frame_peaks_offline(audio, cfg))


def _scaled_stft(cfg: StftConfig, rate: int) -> StftConfig:
    """The STFT at ``rate`` whose frame and hop last as long as ``cfg``'s (to the nearest even
    number of samples: at 44.1 kHz 1412 samples, bins of 31.23 Hz instead of 31.25 Hz, a 0.06 %
    stretch the model does not notice), so its first ``cfg.n_freqs`` bins are the model's."""
    n_fft = 2 * max(1, round(cfg.n_fft * rate / cfg.sample_rate / 2))
    hop = max(1, round(n_fft * cfg.hop / cfg.n_fft))
    return StftConfig(rate, n_fft, min(hop, n_fft // 2))


def processing_rate(cfg: StftConfig, rate: int) -> int:
    """The rate a channel at ``rate`` is enhanced at: ``rate`` itself above the model rate,
    the model rate (16 kHz) at or below it (lower rates are upsampled to it).

    Above the model rate the STFT runs at the input rate with frames of the model's duration
    (see :func:`_scaled_stft`), so its bins are the model's and reach higher: the model gets
    the 0-8 kHz bins (scaled to what a 16 kHz STFT gives), every bin above gets the mean mask
    of the model's 6-8 kHz bins. A signal is never resampled down to 16 kHz, whose anti-alias
    filter empties 7.6-8 kHz: the model, trained on full-band 16 kHz speech, removes 4-8 kHz of
    speech it sees with an empty top band (issue 22, item 1); and a live stream has no
    resampler delay (item 8).
    """
    return max(rate, cfg.sample_rate)


class FrameStream:
    """Causal chunk-wise enhancement of a mono stream; subclasses run the network.

    The stream runs at the model rate (16 kHz), or at a higher ``rate`` with frames of the
    same duration (see :func:`processing_rate`): the model sees the 0-8 kHz bins, the bins above get
    the mean mask of ``gain_band``.

    :meth:`process` takes chunks of any size and returns as many samples: the offline output
    delayed by :attr:`latency` samples (n_fft/2 look-ahead of the centred frame + one hop of
    block buffering = 32 ms, plus one hop (16 ms) per frame of the model's look-ahead).
    :meth:`flush` returns the last ``latency`` samples at the end of a stream.

    A model with look-ahead k returns, for the frames it is given, the masks of the frames k
    earlier; the stream keeps the spectra of its last k frames to apply them to (see
    :meth:`delay_spectra`), and :meth:`flush` feeds k silent frames, as offline pads k.

    Non-finite input samples are replaced by 0 (with a warning) before they reach the network,
    so one bad chunk cannot poison the recurrent state of everything after it.
    """

    # Frames per network call when a chunk holds many (bounds memory for long chunks: 1024
    # frames = 16 s of audio, a 2 MB frame matrix).
    MAX_FRAMES_PER_CALL = 1024

    def __init__(self, stft_cfg: StftConfig, strength: float = 1.0,
                 gain_band: tuple[int, int] | None = None, lookahead: int = 0,
                 rate: int | None = None, deep_filter: DeepFilter | None = None):
        """``stft_cfg``: the model's STFT. ``gain_band = (first_bin, end_bin)``: model bins whose
        mean applied mask scales every bin above the model's band, recorded per frame in
        :attr:`frame_gains` (also used to scale audio above the stream's band).
        ``lookahead``: the model's (frames). ``rate``: the stream's sample rate (default: the
        model's; else one :func:`processing_rate` returns). ``deep_filter``: the model's, whose
        coefficients follow the mask in each row the network gives (None: mask only).
        """
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {strength}")
        self.model_cfg = stft_cfg
        rate = stft_cfg.sample_rate if rate is None else rate
        if rate < stft_cfg.sample_rate:
            raise ValueError(f"a FrameStream runs at {stft_cfg.sample_rate} Hz or above, "
                             f"not {rate} Hz (ChannelPipeline resamples lower rates)")
        self.cfg = stft_cfg if rate == stft_cfg.sample_rate else _scaled_stft(stft_cfg, rate)
        # STFT magnitudes grow with the samples per frame: scaled back to the model's.
        self.scale = self.cfg.n_fft / stft_cfg.n_fft
        self.lookahead = lookahead
        self.strength = strength
        self.deep_filter = deep_filter
        if gain_band is None and rate > stft_cfg.sample_rate:
            gain_band = high_band(stft_cfg, rate)
        self.gain_band = gain_band
        self.window_np = sqrt_hann(self.cfg.n_fft)
        # A stream's hop (one frame) windows into and synthesises into these (_masked_frames).
        self._hop_in = np.empty((1, self.cfg.n_fft), np.float32)
        self._hop_out = np.empty((1, self.cfg.n_fft), np.float32)
        self.reset()

    # -- what a backend provides -------------------------------------------------------------
    def _reset_state(self) -> None:
        """Forget the network's recurrent state."""
        raise NotImplementedError

    def _network(self, mag: np.ndarray) -> np.ndarray:
        """``mag: [K, F]`` model-scale magnitudes of K new frames -> the network's rows for the
        K frames ``lookahead`` earlier: raw masks ``[K, F]``, or with a deep filter ``[K,
        deep_filter.width]`` (the mask, then the coefficients); advances the recurrent state by
        K frames."""
        raise NotImplementedError

    def _state_is_finite(self) -> bool:
        """Whether the recurrent state holds only finite numbers."""
        return True

    # -- shared ------------------------------------------------------------------------------
    def _masked_frames(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``frames: [K, n_fft]`` raw samples (time order) -> (windowed iFFT of the masked
        spectrum ``[K, n_fft]``, the applied model-band mask ``[K, F]``), both for the K frames
        ``lookahead`` earlier."""
        # A stream runs this once per 16 ms hop with K = 1, so every numpy call counts (~0.5-1
        # us each): results are computed in place, into the hop's buffers, and the FFTs call
        # numpy's kernels directly; the values are the same as with fresh arrays and np.fft.
        f_model = self.model_cfg.n_freqs
        one_frame = len(frames) == 1  # a stream's hop: its two frame buffers are reused
        windowed = np.multiply(frames, self.window_np, out=self._hop_in if one_frame else None)
        spec = rfft_frames(windowed)  # [K, F_rate]
        mag = np.abs(spec[:, :f_model])
        if self.scale != 1.0:  # above the model rate: fill an empty top band
            mag = mag / np.float32(self.scale)
            mag = fill_top_band(mag, self.model_cfg, self._band_limited(mag))
        if one_frame:  # one gain, no arrays around it (_hop_out is free until the iFFT below)
            gain = self._level.step(float(np.abs(frames, out=self._hop_out).max()))
            if gain != 1.0:  # input peaking at -30 dBFS or above: left as it is
                mag *= np.float32(gain)
        else:
            mag *= self._level.gains(np.abs(frames).max(axis=1))[:, None]
        rows = self._network(np.ascontiguousarray(mag, dtype=np.float32))
        # A mask lies in [0, 1] and coefficients in [-1, 1]: the sum of a row is finite unless
        # an element is not (one reduction).
        if not (math.isfinite(float(rows.sum())) and self._state_is_finite()):
            log.warning("the network produced NaN/inf; its state is reset and those frames "
                        "are passed through")
            self._reset_state()
            rows = np.zeros_like(rows)
            rows[:, :f_model] = 1.0  # mask 1, no filter: the input
        mask = np.asarray(self.apply_strength(rows[:, :f_model]), dtype=np.float32)
        # The filter reads the frames just given (the newest of its taps) and its history.
        filtered = None if self._filter is None else self._filter.step(rows, spec)
        spec = self.delay_spectra(spec)  # the frames the masks are for
        if spec.shape[1] > f_model:
            full = np.empty(spec.shape, np.float32)
            full[:, :f_model] = mask
            first, end = self.gain_band or high_band(self.model_cfg, self.cfg.sample_rate)
            full[:, f_model:] = mask[:, first:end].mean(axis=1, keepdims=True)
        else:
            full = mask
        est = spec * full
        if filtered is not None:
            low = est[:, : self.deep_filter.bins]
            low += filtered if self.strength == 1.0 else np.float32(self.strength) * filtered
        # The hop's output buffer is free again: _emit adds the last one into _ola.
        out = irfft_frames(est, self.cfg.n_fft, self._hop_out if one_frame else None)
        out *= self.window_np
        return out, mask

    def _band_limited(self, mag: np.ndarray) -> np.ndarray:
        """``[K]`` bool: whether the stream is band-limited at each of these frames (see
        EMPTY_RATIO); updates the decaying peak of the top band's level."""
        flags = np.empty(len(mag), bool)
        for i, ratio in enumerate(top_band_ratio(mag, self.model_cfg)):
            self._top_ratio += RATIO_SMOOTHING * (float(ratio) - self._top_ratio)
            self._top_peak = max(self._top_ratio, self._top_peak * BAND_DECAY)
            flags[i] = self._top_peak < EMPTY_RATIO
        return flags

    def delay_spectra(self, spec: Any) -> Any:
        """``spec: [K, F]`` of the frames just given -> the spectra of the K frames
        ``lookahead`` earlier (zeros before the stream's first frame)."""
        if not self.lookahead:
            return spec
        if self._spectra is None:  # silence before the stream's first frame
            self._spectra = np.zeros((self.lookahead, spec.shape[1]), spec.dtype)
        if len(spec) == self.lookahead:  # a stream with 1 frame of look-ahead, every hop
            delayed, self._spectra = self._spectra, spec
            return delayed
        joined = np.concatenate([self._spectra, spec])
        self._spectra = joined[len(spec):]
        return joined[: len(spec)]

    @property
    def latency(self) -> int:
        """Fixed delay of the output stream, in samples (see StftConfig.stream_latency)."""
        return self.cfg.stream_latency(self.lookahead)

    @property
    def latency_ms(self) -> float:
        return 1000.0 * self.latency / self.cfg.sample_rate

    def reset(self) -> None:
        """Forget everything: start a new stream."""
        half = self.cfg.n_fft // 2
        self._reset_state()
        # Input not yet consumed by a frame, starting with the centred STFT's zero padding.
        self._pending = np.zeros(half, np.float32)
        # Overlap-add accumulator; index 0 is the first output position not yet complete.
        self._ola = np.zeros(self.cfg.n_fft, np.float32)
        self._zeros = np.zeros(self.cfg.hop, np.float32)  # what enters _ola each hop (read only)
        self._frames_done = 0  # frames given to the network
        self._top_ratio = self._top_peak = 0.0  # band-limited until the top band shows
        self._level = LevelTracker(self.cfg.sample_rate / self.cfg.hop)
        self.frame_gains: list[float] = []
        self._received = 0
        # Spectra of the last `lookahead` frames (see delay_spectra).
        self._spectra: Any = None
        # The low band of the last frames a deep filter reads (None: no filter).
        self._filter = None if self.deep_filter is None else FilterHistory(self.deep_filter)
        # The first `lookahead` masks are of frames before the signal: no gains for them.
        self._gains_skip = self.lookahead
        # Frame 0's first completed hop lies in the padding before the signal, and the
        # look-ahead's silent frames before frame 0 complete one hop each: dropped.
        self._skip = half + self.lookahead * self.cfg.hop
        # The delayed output stream: `latency` samples of silence, then the offline output.
        self._queue = np.zeros(self.latency, np.float32)

    # Lowest gain of the applied mask (``--atten-lim-db``: 10 ** (-dB / 20); 0 = no limit).
    floor = 0.0
    # Whether to record frame_gains (a ChannelPipeline that does not resample needs none).
    keep_gains = True

    def apply_strength(self, mask: Any) -> Any:
        """``1 - strength * (1 - mask)``: strength 0 is the input, 1 the full mask; then at
        least :attr:`floor`."""
        if self.strength != 1.0:  # strength 1 without a floor (the default): the mask as is
            mask = 1.0 - self.strength * (1.0 - mask)
        return np.maximum(mask, self.floor) if self.floor else mask

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
        # _pending is only ever replaced, never written into, so frames may be views of it.
        if count == 1:  # a stream: one frame per hop
            frames = self._pending[None, :n_fft]
        else:
            windows = np.lib.stride_tricks.sliding_window_view(self._pending, n_fft)
            frames = np.ascontiguousarray(windows[: hop * (count - 1) + 1 : hop])
        self._emit(frames)
        self._pending = self._pending[count * hop :]

    def _emit(self, frames: np.ndarray) -> None:
        """Run ``frames: [K, n_fft]`` through the network; overlap-add and queue the output."""
        n_fft, hop = self.cfg.n_fft, self.cfg.hop
        out_frames, mask = self._masked_frames(frames)
        if self.gain_band is not None and self.keep_gains:
            cut = min(self._gains_skip, len(mask))
            self._gains_skip -= cut
            self.frame_gains.extend(
                mask[cut:, self.gain_band[0] : self.gain_band[1]].mean(1).tolist())
        # Overlapping sqrt-Hann^2 windows sum to n_fft / (2 hop) (1 at 50 % overlap, where
        # the division, exact anyway, is skipped).
        norm = n_fft / (2 * hop)
        done = []
        for frame in out_frames:
            self._ola += frame
            # The slice is a view, but _ola is replaced (not written into) right after.
            done.append(self._ola[:hop] / norm if norm != 1.0 else self._ola[:hop])
            self._ola = np.concatenate([self._ola[hop:], self._zeros])
        self._frames_done += len(frames)
        ready = done[0] if len(done) == 1 else np.concatenate(done)
        if self._skip:
            cut = min(self._skip, len(ready))
            self._skip -= cut
            ready = ready[cut:]
        self._queue = np.concatenate([self._queue, ready])

    def process(self, chunk: np.ndarray) -> np.ndarray:
        """Feed ``chunk: [n]`` samples; returns ``[n]`` samples of the delayed output stream."""
        chunk = np.asarray(chunk, dtype=np.float32).reshape(-1)
        # A NaN or inf makes the sum non-finite: one reduction per chunk (a live stream's 100
        # chunks a second), the element-wise test only then. Summed in float64, finite samples
        # never overflow (float32 ones did, with a RuntimeWarning, near 3e38).
        if not math.isfinite(chunk.sum(dtype=np.float64)) and not np.isfinite(chunk).all():
            log.warning("NaN/inf input samples replaced by 0")
            chunk = np.nan_to_num(chunk, nan=0.0, posinf=0.0, neginf=0.0)
        self._received += len(chunk)
        self._pending = np.concatenate([self._pending, chunk])
        self._run_available()
        out, self._queue = self._queue[: len(chunk)], self._queue[len(chunk) :]
        return out

    def flush(self) -> np.ndarray:
        """End of stream: returns the last ``latency`` samples of the output stream.

        Mirrors the offline iSTFT exactly: the last frame is the one offline computes
        (``N // hop``), and the positions after it are divided by the window envelope of the
        frames that cover them, as ``torch.istft`` does. A model with look-ahead gets as many
        silent (all-zero) frames after the last one, as offline pads.
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
        if self.lookahead:
            self._emit(np.zeros((self.lookahead, n_fft), np.float32))
        # Output positions completed so far (the first `half` + look-ahead hops popped were
        # before the signal).
        completed = (self._frames_done - self.lookahead) * hop - half
        tail_len = n - completed
        if tail_len > 0:
            w2 = self.window_np.astype(np.float64) ** 2
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


class ChannelPipeline:
    """One channel of any rate through the model in blocks, carrying all state across blocks.

    below 16 kHz: resample to 16 kHz -> :class:`FrameStream` (latency removed) -> resample
    back, plus the part of the input the round trip loses (the resampler's roll-off below the
    Nyquist of the lower rate), scaled per frame by the mean applied mask of the model bands
    next to it (see :func:`high_band`), so strength 0 returns the input exactly. At 16 kHz and
    above, no resampling: the :class:`FrameStream` runs at the input rate.
    soxr's streaming resampler gives exactly the whole-signal result, so the concatenated output
    does not depend on the blocking (tested).
    """

    def __init__(self, make_stream: Callable[[tuple[int, int] | None, int], FrameStream],
                 stft_cfg: StftConfig, rate: int):
        """``make_stream(gain_band, stream_rate)`` builds the backend's :class:`FrameStream`."""
        if rate <= 0:
            raise ValueError(f"sample rate must be positive, got {rate}")
        self.rate = rate
        self.stream_rate = processing_rate(stft_cfg, rate)
        self.resampled = rate != self.stream_rate
        self.stream = make_stream(high_band(stft_cfg, rate), self.stream_rate)
        self._to_drop = self.stream.latency
        self._frame_seconds = self.stream.cfg.hop / self.stream_rate
        if self.resampled:
            def make(a: int, b: int) -> soxr.ResampleStream:
                return soxr.ResampleStream(a, b, 1, dtype="float32", quality="VHQ")

            self._down, self._up, self._round_trip = (
                make(rate, self.stream_rate), make(self.stream_rate, rate),
                make(self.stream_rate, rate))
        self._input = self._enhanced = self._low = np.zeros(0, np.float32)
        self._emitted = 0
        self._gains_dropped = 0  # frame_gains already dropped from the front
        # Above the model rate nothing reads the per-frame gains: do not collect them.
        self.stream.keep_gains = self.resampled

    @property
    def latency_ms(self) -> float:
        """The algorithmic latency of the stream (the resamplers add their own buffering)."""
        return self.stream.latency_ms

    def push(self, block: np.ndarray, last: bool = False) -> np.ndarray:
        """Feed the next ``block: [n]`` of input; returns the output that is complete so far.
        After the ``last`` block, everything has been returned (as many samples as were fed)."""
        block = np.asarray(block, dtype=np.float32).reshape(-1)
        if not np.all(np.isfinite(block)):
            log.warning("NaN/inf input samples replaced by 0")
            block = np.nan_to_num(block, nan=0.0, posinf=0.0, neginf=0.0)
        low = self._down.resample_chunk(block, last=last) if self.resampled else block
        enhanced = self.stream.process(low)
        if last:
            enhanced = np.concatenate([enhanced, self.stream.flush()])
        cut = min(self._to_drop, len(enhanced))
        enhanced, self._to_drop = enhanced[cut:], self._to_drop - cut
        if not self.resampled:
            return enhanced
        self._input = np.concatenate([self._input, block])
        self._enhanced = np.concatenate([self._enhanced,
                                         self._up.resample_chunk(enhanced, last=last)])
        self._low = np.concatenate([self._low, self._round_trip.resample_chunk(low, last=last)])
        if last:
            n = len(self._input)
            self._enhanced, self._low = fit_length(self._enhanced, n), fit_length(self._low, n)
        else:
            n = min(len(self._input), len(self._enhanced), len(self._low))
        if n == 0 or not self.stream.frame_gains:  # small first blocks: nothing complete yet
            return np.zeros(0, np.float32)
        gains = np.asarray(self.stream.frame_gains, dtype=np.float64)
        times = (self._emitted + np.arange(n)) / self.rate
        first = self._gains_dropped
        gain = np.interp(times, (first + np.arange(len(gains))) * self._frame_seconds, gains)
        # Gains of frames wholly before the next output are not needed again: a live stream
        # keeps a few, not one per 16 ms since it started.
        drop = int((self._emitted + n) / self.rate / self._frame_seconds) - 2 - first
        if drop > 0:
            del self.stream.frame_gains[:drop]
            self._gains_dropped += drop
        out = self._enhanced[:n] + gain.astype(np.float32) * (self._input[:n] - self._low[:n])
        self._input, self._enhanced, self._low = (
            self._input[n:], self._enhanced[n:], self._low[n:])
        self._emitted += n
        return out.astype(np.float32)


def fit_length(x: np.ndarray, n: int) -> np.ndarray:
    """Trim or zero-pad ``x`` to ``n`` samples (resampler round trips may be off by one)."""
    if len(x) >= n:
        return x[:n]
    return np.pad(x, (0, n - len(x)))


class PipelineFactory(Protocol):
    """Anything that makes per-channel pipelines: ``Enhancer`` and ``OnnxEnhancer``."""

    def pipeline(self, rate: int) -> ChannelPipeline: ...


# Integer PCM as numpy holds it (sf.read(dtype="int16"), scipy.io.wavfile, wave): divided by
# full scale (uint8 is offset binary), so int16 32767 is 32767/32768.
_INT_SCALE = {np.dtype(np.int16): (0.0, 32768.0), np.dtype(np.int32): (0.0, 2147483648.0),
              np.dtype(np.uint8): (128.0, 128.0), np.dtype(np.int8): (0.0, 128.0)}


def mask_floor(atten_lim_db: float | None) -> float:
    """The lowest mask gain for a reduction limit in dB (None or 0: no limit)."""
    if atten_lim_db is None:
        return 0.0
    if isinstance(atten_lim_db, bool) or not isinstance(atten_lim_db, (int, float)) \
            or not atten_lim_db >= 0:
        raise ValueError(f"atten_lim_db must be a number of dB >= 0, got {atten_lim_db!r}")
    return 10.0 ** (-float(atten_lim_db) / 20.0) if atten_lim_db else 0.0


def with_floor(stream: FrameStream, floor: float) -> FrameStream:
    """``stream`` with its mask floor set (see :attr:`FrameStream.floor`)."""
    stream.floor = floor
    return stream


def check_rate(sample_rate: Any) -> int:
    """``sample_rate`` as a positive int: TypeError for anything but an integer (a whole float
    such as 44100.0 is accepted), ValueError for one <= 0."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float, np.integer,
                                                                      np.floating)):
        raise TypeError(f"sample_rate must be an int in Hz (e.g. 16000), got "
                        f"{type(sample_rate).__name__} {sample_rate!r}")
    if float(sample_rate) != int(sample_rate):
        raise TypeError(f"sample_rate must be a whole number of Hz, got {sample_rate!r}")
    if int(sample_rate) <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate!r}")
    return int(sample_rate)


def to_float(audio: Any) -> np.ndarray:
    """``audio`` as float32: floats as they are, integer PCM (int8/16/32, uint8) scaled to
    [-1, 1); TypeError for other types (strings, objects, int64)."""
    array = np.asarray(audio)
    if array.dtype in _INT_SCALE:
        offset, scale = _INT_SCALE[array.dtype]
        return ((array.astype(np.float32) - offset) / scale).astype(np.float32)
    if array.dtype.kind in "fb" or (array.dtype.kind in "iu" and array.dtype.itemsize <= 2):
        return array.astype(np.float32)
    raise TypeError(f"audio must be float or int16/int32/uint8 PCM samples, got dtype "
                    f"{array.dtype}")


def check_audio(audio: Any) -> np.ndarray:
    """``audio`` as float32 ``[samples]`` or 2-D; ValueError (one line) for no samples, NaN/inf
    or another shape; integer PCM scaled (see :func:`to_float`)."""
    audio = to_float(audio)
    if audio.size == 0:
        raise ValueError("audio has 0 samples")
    if not np.all(np.isfinite(audio)):
        raise ValueError("audio contains NaN or infinite samples")
    if audio.ndim not in (1, 2):
        raise ValueError(f"audio must be [samples], [samples, channels] or [channels, samples], "
                         f"got shape {audio.shape}")
    return audio


def channels_first_of(shape: tuple[int, ...], channels_first: bool | None) -> bool:
    """Which axis of a 2-D ``shape`` holds the channels.

    ``channels_first`` True: ``[channels, samples]``; False: ``[samples, channels]`` (what
    ``soundfile.read`` returns); None: the shorter axis is the channel axis (a recording has
    more samples than channels), and a square array is refused (say which it is).
    """
    if channels_first is not None:
        return bool(channels_first)
    if shape[0] == shape[1]:
        raise ValueError(f"audio of shape {shape} is ambiguous: pass channels_first=True for "
                         "[channels, samples] or False for [samples, channels]")
    return shape[0] < shape[1]


def enhance_array(enhancer: PipelineFactory, audio: Any, rate: Any,
                  channels_first: bool | None = None,
                  whole: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """``audio`` at ``rate`` through fresh pipelines in one block: ``[samples]``,
    ``[samples, channels]`` (as ``soundfile.read`` gives) or ``[channels, samples]`` (see
    :func:`channels_first_of`); integer PCM is scaled to float. Returns float32 of the same
    shape (and layout) and length. ``whole(channel)``: enhance one ``[samples]`` channel in
    one call instead of a pipeline (the backends' offline path at the model rate)."""
    rate = check_rate(rate)
    audio = check_audio(audio)

    def one(channel: np.ndarray) -> np.ndarray:
        channel = np.ascontiguousarray(channel)
        return whole(channel) if whole else enhancer.pipeline(rate).push(channel, last=True)

    if audio.ndim == 1:
        return one(audio)
    first = channels_first_of(audio.shape, channels_first)
    out = np.stack([one(ch) for ch in (audio if first else audio.T)])
    return out if first else np.ascontiguousarray(out.T)


class MultiChannelStream:
    """Live enhancement of interleaved ``[n, channels]`` (or mono ``[n]``) chunks at any rate.

    :meth:`process` returns the output completed so far in the same layout (its length varies
    from call to call while resamplers fill; the total equals the input once :meth:`flush` has
    returned the rest). Each channel is enhanced on its own; chunks are never flattened.
    """

    def __init__(self, enhancer: PipelineFactory, rate: Any, channels: int = 1):
        if isinstance(channels, bool) or not isinstance(channels, (int, np.integer)) \
                or channels < 1:
            raise ValueError(f"channels must be an int >= 1, got {channels!r}")
        self.rate = check_rate(rate)
        self.channels = int(channels)
        self.pipes = [enhancer.pipeline(self.rate) for _ in range(self.channels)]

    @property
    def latency_ms(self) -> float:
        """The algorithmic latency (32 ms + 16 ms per look-ahead frame)."""
        return self.pipes[0].latency_ms

    def _push(self, chunk: Any, last: bool) -> np.ndarray:
        data = to_float(chunk)
        if data.ndim == 1 and self.channels == 1:
            data = data[:, None]
        if data.ndim != 2 or data.shape[1] != self.channels:
            raise ValueError(f"chunk must be [samples, channels={self.channels}] "
                             f"{'or [samples] ' if self.channels == 1 else ''}"
                             f"for this stream, got shape {np.shape(chunk)}")
        out = [p.push(np.ascontiguousarray(data[:, c]), last)
               for c, p in enumerate(self.pipes)]
        n = min(len(o) for o in out)
        assert all(len(o) == n for o in out)  # every channel's pipeline runs in step
        stacked = np.stack(out, axis=1) if n else np.zeros((0, self.channels), np.float32)
        return stacked[:, 0] if np.ndim(chunk) == 1 else stacked

    def process(self, chunk: Any) -> np.ndarray:
        """Feed ``chunk: [n, channels]`` (or ``[n]`` for mono); returns completed output."""
        return self._push(chunk, last=False)

    def flush(self) -> np.ndarray:
        """End of stream: the rest of the output, ``[m, channels]``."""
        return self._push(np.zeros((0, self.channels), np.float32), last=True)


def residual_path(dst: Path) -> Path:
    """Where ``--residual`` writes what was removed: ``out.wav`` -> ``out.residual.wav``."""
    return dst.with_name(f"{dst.stem}.residual{dst.suffix}")


def enhance_file(enhancer: PipelineFactory, src: Path, dst: Path, overwrite: bool = False,
                 progress: bool = False, subtype: str | None = None,
                 residual: bool = False) -> dict:
    """Enhance one file into ``dst`` (same rate, channels and length; format from ``dst``'s
    extension; ``subtype`` or the input's when the format holds it, see
    :func:`speechmask.audio.output_subtype`), block by block in bounded memory, written
    atomically. ``residual``: also write the input minus the output (what was removed) to
    :func:`residual_path`. Returns a summary dict. Raises AudioError for bad files."""
    import contextlib
    import time

    from tqdm import tqdm

    t0 = time.perf_counter()
    src, dst = Path(src), Path(dst)
    if dst.resolve() == src.resolve():
        raise AudioError(dst, "output would overwrite the input; choose another -o")
    with open_audio(src) as handle:
        rate, channels, frames = handle.samplerate, handle.channels, handle.frames
        block = max(1, int(BLOCK_SECONDS * rate))
        try:
            out_subtype = output_subtype(dst.suffix, handle.subtype, subtype)
        except (KeyError, ValueError) as err:
            raise AudioError(dst, str(err)) from None
        pipes = [enhancer.pipeline(rate) for _ in range(channels)]
        with open_writer(dst, rate, channels, overwrite, out_subtype) as writer, \
                contextlib.ExitStack() as extra:
            removed = extra.enter_context(open_writer(
                residual_path(dst), rate, channels, overwrite, out_subtype)) if residual else None
            pending = np.zeros((channels, 0), np.float32)  # input not yet matched by output
            bar = tqdm(total=frames / rate, unit="s", desc=src.name, leave=False,
                       disable=not progress or frames < 60 * rate, bar_format="{l_bar}{bar}| "
                       "{n:.0f}/{total:.0f} s audio [{elapsed}<{remaining}]")
            done = 0
            # One block of look-ahead: the last block is known when the next one is empty (a
            # decoded media file's length is only an estimate until then).
            blocks = read_blocks(handle, src, block)
            data = next(blocks, None)
            while data is not None:
                following = next(blocks, None)
                done += data.shape[-1]
                out = np.stack([p.push(ch, following is None)
                                for p, ch in zip(pipes, data, strict=True)])
                writer.write(out)
                if removed is not None:
                    pending = np.concatenate([pending, data], axis=1)
                    removed.write(pending[:, : out.shape[1]] - out)
                    pending = pending[:, out.shape[1] :]
                bar.update(data.shape[-1] / rate)
                data = following
            exact = not isinstance(handle, MediaReader)
            if done == 0 or writer.frames != done or (exact and done < frames):
                raise AudioError(src, f"file ended after {done} of {frames} samples; is it "
                                 "truncated?")
            bar.close()
            if removed is not None:
                removed.commit()
            writer.commit()
    frames = done
    return {"input": str(src), "output": str(dst), "seconds": frames / rate,
            "rate": rate, "channels": channels, "subtype": out_subtype,
            "seconds_taken": time.perf_counter() - t0}


class ArrayEnhancer:
    """The array API both backends share (:class:`speechmask.enhance.Enhancer`,
    :class:`speechmask.onnx_backend.OnnxEnhancer`). Subclasses provide ``stft_cfg``,
    ``pipeline(rate)`` and ``mask_16k(channel) -> (enhanced, mask)``, the one-call offline path
    at the model rate."""

    stft_cfg: StftConfig

    def pipeline(self, rate: int) -> ChannelPipeline:
        raise NotImplementedError

    def mask_16k(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def __call__(self, audio: np.ndarray, sample_rate: int,
                 channels_first: bool | None = None) -> np.ndarray:
        """Enhance ``audio`` at ``sample_rate`` (an int, Hz); returns float32 of the same shape
        and length.

        ``audio``: ``[samples]``, ``[samples, channels]`` (what ``soundfile.read`` returns) or
        ``[channels, samples]``; float, or integer PCM (int16/int32/uint8, scaled to [-1, 1)).
        For 2-D input the shorter axis is the channel axis, or say which it is with
        ``channels_first``. Each channel is denoised on its own.
        """
        rate = check_rate(sample_rate)
        whole = None
        if rate == self.stft_cfg.sample_rate:
            def whole(channel: np.ndarray) -> np.ndarray:
                return self.mask_16k(channel)[0]
        return enhance_array(self, audio, rate, channels_first, whole)

    def stream(self, sample_rate: int, channels: int = 1) -> MultiChannelStream:
        """Live enhancement at any rate and channel count: ``process([n, channels] chunk)``
        returns the output completed so far, ``flush()`` the rest (see
        :class:`MultiChannelStream`)."""
        return MultiChannelStream(self, sample_rate, channels)
