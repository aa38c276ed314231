"""Audio file I/O: read anything libsndfile reads, resample with soxr, write atomically.

All audio inside speechmask is float32 in [-1, 1], shaped ``[channels, samples]`` when read from
a file (``[samples]`` for mono helpers). The model works at :data:`MODEL_RATE`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from .atomic import temp_beside
from .media import MEDIA_EXTENSIONS, AtomicM4aWriter, MediaError, MediaReader

log = logging.getLogger(__name__)

# 16 kHz: the corpus rate and the model rate (8 kHz of speech bandwidth is enough for a mask net).
MODEL_RATE = 16_000

# Extensions written by :class:`AtomicAudioWriter`, mapped to libsndfile format and default
# subtype. PCM_16 is what every player reads; FLAC is lossless at ~half the size; the lossy
# ones (OGG Vorbis, MP3, Opus) have their codec as subtype.
_WRITE_FORMATS = {
    ".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".aiff": ("AIFF", "PCM_16"),
    ".aif": ("AIFF", "PCM_16"), ".ogg": ("OGG", "VORBIS"), ".oga": ("OGG", "VORBIS"),
    ".mp3": ("MP3", "MPEG_LAYER_III"), ".opus": ("OGG", "OPUS"),
}
WRITE_EXTENSIONS = (*_WRITE_FORMATS, ".m4a")  # .m4a: AAC through PyAV (speechmask.media)
# Subtypes that hold samples above full scale (everything else is clipped to [-1, 1]).
FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")
# The rates libsndfile's Opus encoder takes.
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)


def open_writer(path: str | os.PathLike, rate: int, channels: int, overwrite: bool = True,
                subtype: str | None = None) -> AtomicAudioWriter | AtomicM4aWriter:
    """An atomic writer for ``path``: AAC through PyAV for ``.m4a``, libsndfile otherwise."""
    path = Path(path)
    if path.suffix.lower() != ".m4a":
        return AtomicAudioWriter(path, rate, channels, overwrite, subtype)
    if path.exists() and not overwrite:
        raise AudioError(path, "output exists; pass --overwrite to replace it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return AtomicM4aWriter(path, rate, channels)
    except MediaError as err:
        raise AudioError(path, str(err)) from None
    except OSError as err:
        raise AudioError(path, f"cannot write here ({err.strerror or err})") from None


def output_subtype(ext: str, source_subtype: str | None, requested: str | None = None) -> str:
    """The subtype to write an ``ext`` file with: ``requested`` (checked), else the source
    file's when that format holds it (a 24-bit or float WAV stays 24-bit or float), else the
    format's default (PCM_16; float into FLAC, which has no float: PCM_24)."""
    if ext.lower() == ".m4a":
        if requested and requested.upper() != "AAC":
            raise ValueError(f"--subtype {requested} cannot be written to .m4a files (AAC)")
        return "AAC"
    fmt, default = _WRITE_FORMATS[ext.lower()]
    if requested:
        requested = requested.upper()
        if not sf.check_format(fmt, requested):
            choices = ", ".join(sorted(sf.available_subtypes(fmt)))
            raise ValueError(f"--subtype {requested} cannot be written to {ext} files "
                             f"(choose from {choices})")
        return requested
    if source_subtype and sf.check_format(fmt, source_subtype) and fmt not in ("OGG", "MP3"):
        return source_subtype
    if source_subtype in FLOAT_SUBTYPES and fmt in ("FLAC", "AIFF"):
        return "PCM_24" if fmt == "FLAC" else "FLOAT"
    if source_subtype in ("PCM_24", "PCM_32") and sf.check_format(fmt, "PCM_24"):
        return "PCM_24"
    return default

# Extensions treated as audio when scanning folders: everything libsndfile reads that is common,
# and the M4A/AAC/video files read with PyAV (speechmask.media; a clear error without it).
SOUNDFILE_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".au", ".mp3", ".opus")
AUDIO_EXTENSIONS = SOUNDFILE_EXTENSIONS + MEDIA_EXTENSIONS


class AudioError(Exception):
    """A file could not be used as audio. ``str(err)`` is one line: ``<path>: <reason>``."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def open_audio(path: str | os.PathLike) -> sf.SoundFile | MediaReader:
    """Open an audio file for (block-wise) reading, checking it is usable: libsndfile's
    formats, and M4A/AAC/video files through PyAV (:class:`speechmask.media.MediaReader`).

    Raises :class:`AudioError` for a missing, unreadable, corrupt or empty (0-sample) file.
    The caller closes the returned ``SoundFile`` (it is a context manager).
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(path, "no such file")
    if path.is_dir():
        raise AudioError(path, "is a folder, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError(path, "file is empty (0 bytes)")
    if path.suffix.lower() in MEDIA_EXTENSIONS:
        try:
            return MediaReader(path)
        except MediaError as err:
            raise AudioError(path, str(err)) from None
    try:
        handle = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, ValueError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise AudioError(
            path, f"cannot decode audio ({reason}); is it a WAV/FLAC/OGG file?"
        ) from None
    except OSError as err:
        raise AudioError(path, f"cannot read file ({err.strerror or err})") from None
    if handle.frames == 0:
        handle.close()
        raise AudioError(path, "audio has 0 samples")
    if handle.format in ("WAV", "WAVEX") and (cut := wav_truncation(path)):
        log.warning("%s: truncated: its header announces %.1f s of audio, the file holds %.1f s; "
                    "processing what is there", path,
                    cut[0] / max(cut[1], 1) * handle.frames / handle.samplerate,
                    handle.frames / handle.samplerate)
    return handle


def wav_truncation(path: str | os.PathLike) -> tuple[int, int] | None:
    """``(bytes the WAV header announces, bytes present)`` of the data chunk when the file is
    shorter than its header says (a copy or recording cut short), else None."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(12)
            if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
                return None
            size = os.fstat(handle.fileno()).st_size
            order = "little" if head[:4] == b"RIFF" else "big"
            while True:
                chunk = handle.read(8)
                if len(chunk) < 8:
                    return None
                length = int.from_bytes(chunk[4:], order)
                if chunk[:4] == b"data":
                    present = size - handle.tell()
                    # 0 and 0xFFFFFFFF: streaming writers that never filled the size in.
                    if length in (0, 0xFFFFFFFF) or present >= length:
                        return None
                    return length, present
                handle.seek(length + (length & 1), os.SEEK_CUR)
    except OSError:
        return None


def read_blocks(handle: sf.SoundFile | MediaReader, path: str | os.PathLike, block: int):
    """Yield ``[channels, <=block]`` float32 blocks of an open file; :class:`AudioError` on
    non-finite samples or a read error part-way (e.g. a truncated file)."""
    while True:
        try:
            data = handle.read(block, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as err:
            raise AudioError(path, f"read error part-way ({err})") from None
        except MediaError as err:
            raise AudioError(path, str(err)) from None
        if data.shape[0] == 0:
            return
        if not np.all(np.isfinite(data)):
            raise AudioError(path, "audio contains NaN or infinite samples")
        yield np.ascontiguousarray(data.T)


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read a whole audio file as float32.

    Returns ``(audio, sample_rate)`` with ``audio: [channels, samples]`` in [-1, 1].
    Raises :class:`AudioError` for a missing, unreadable, corrupt, empty or non-finite file.
    """
    with open_audio(path) as handle:
        blocks = list(read_blocks(handle, path, max(handle.frames, 1)))
        rate = handle.samplerate
    if not blocks:
        raise AudioError(path, "audio has 0 samples")
    return np.concatenate(blocks, axis=1), int(rate)


def resample(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Resample ``audio: [..., samples]`` from ``rate_in`` to ``rate_out`` Hz.

    soxr "VHQ" (polyphase, 28-bit). Measured with ``python -m benchmarks.resampler``: 44.1 ->
    16 kHz keeps 40 tones up to 7.5 kHz at 45.5 dB SNR (scipy ``resample_poly``: 28.5 dB),
    leaves a 10 kHz alias at -199 dB (scipy: -57 dB) and is 2x faster than scipy.
    The output has ``round(samples * rate_out / rate_in)`` samples.
    """
    if rate_in == rate_out:
        return audio.astype(np.float32, copy=False)
    if rate_in <= 0 or rate_out <= 0:
        raise ValueError(f"sample rates must be positive, got {rate_in} -> {rate_out}")
    flat = audio.reshape(-1, audio.shape[-1])
    # soxr wants [samples, channels]
    out = soxr.resample(flat.T.astype(np.float32), rate_in, rate_out, quality="VHQ")
    out = np.asarray(out, dtype=np.float32).reshape(-1, flat.shape[0]).T
    return out.reshape(*audio.shape[:-1], out.shape[-1])


def load_mono(path: str | os.PathLike, rate: int = MODEL_RATE) -> np.ndarray:
    """Read a file, average its channels and resample to ``rate``. Returns ``[samples]``."""
    audio, file_rate = read_audio(path)
    return resample(audio.mean(axis=0), file_rate, rate)


class AtomicAudioWriter:
    """Write an audio file (format from the extension, see ``_WRITE_FORMATS``) block by block to
    a hidden temporary file in the destination folder; :meth:`commit` renames it to ``path``.
    Leaving the ``with`` block without commit (an error, a kill signal turned into an exception)
    deletes the temporary file, so a half-written file never appears under the final name.

    ``subtype``: libsndfile's (PCM_16, PCM_24, FLOAT, ...; default: the format's). Samples above
    full scale are kept by FLOAT/DOUBLE and clipped otherwise, with a warning saying how many.
    """

    def __init__(self, path: str | os.PathLike, rate: int, channels: int,
                 overwrite: bool = True, subtype: str | None = None):
        self.path = Path(path)
        ext = self.path.suffix.lower()
        if ext not in _WRITE_FORMATS:
            raise AudioError(self.path, f"cannot write '{ext}' files; use one of "
                             f"{', '.join(WRITE_EXTENSIONS)}")
        if self.path.exists() and not overwrite:
            raise AudioError(self.path, "output exists; pass --overwrite to replace it")
        fmt, default_subtype = _WRITE_FORMATS[ext]
        subtype = (subtype or default_subtype).upper()
        if not sf.check_format(fmt, subtype):
            raise AudioError(self.path, f"{ext} files cannot hold {subtype} samples; choose "
                             f"one of {', '.join(sorted(sf.available_subtypes(fmt)))}")
        if subtype == "OPUS" and rate not in OPUS_RATES:
            rates = "/".join(str(r // 1000) for r in OPUS_RATES)
            raise AudioError(self.path, f"Opus files are {rates} kHz, this audio is {rate} Hz; "
                             "write .ogg, .flac or .wav instead")
        self.subtype = subtype
        self.clipped = 0
        self.peak = 0.0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, self.tmp = temp_beside(self.path)
        except OSError as err:
            raise AudioError(self.path, f"cannot write here ({err.strerror or err})") from None
        try:
            self._raw = os.fdopen(fd, "wb")
            self._sf = sf.SoundFile(self._raw, "w", rate, channels, subtype, format=fmt)
        except (OSError, sf.LibsndfileError, RuntimeError, ValueError) as err:
            self.tmp.unlink(missing_ok=True)
            raise AudioError(self.path, f"cannot write audio ({err})") from None
        self.frames = 0

    def write(self, block: np.ndarray) -> None:
        """Append ``block: [channels, n]`` (NaN refused; above full scale: see the class)."""
        block = np.asarray(block, dtype=np.float32)
        if not np.all(np.isfinite(block)):
            raise AudioError(self.path, "refusing to write NaN or infinite samples")
        if block.size:
            self.peak = max(self.peak, float(np.abs(block).max()))
        if self.subtype not in FLOAT_SUBTYPES:
            self.clipped += int(np.count_nonzero(np.abs(block) > 1.0))
            block = np.clip(block, -1.0, 1.0)
        try:
            self._sf.write(block.T)
        except (OSError, sf.LibsndfileError, RuntimeError) as err:
            reason = getattr(err, "strerror", None) or str(err).splitlines()[0]
            raise AudioError(self.path, f"cannot write audio ({reason})") from None
        self.frames += block.shape[-1]

    def commit(self) -> Path:
        if self.clipped:
            log.warning("%s: %d sample(s) above full scale (peak %+.1f dBFS) clipped in %s; "
                        "write --subtype FLOAT (.wav) to keep them", self.path, self.clipped,
                        20 * np.log10(self.peak), self.subtype)
        try:
            self._sf.close()
            self._raw.flush()
            os.fsync(self._raw.fileno())
            self._raw.close()
            os.replace(self.tmp, self.path)
        except (OSError, sf.LibsndfileError, RuntimeError) as err:
            self.abort()
            reason = getattr(err, "strerror", None) or str(err).splitlines()[0]
            raise AudioError(self.path, f"cannot write audio ({reason})") from None
        return self.path

    def abort(self) -> None:
        for close in (self._sf.close, self._raw.close):
            try:
                close()
            except Exception:  # already closed or broken: the file is deleted anyway
                pass
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> AtomicAudioWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.tmp.exists():
            self.abort()


def write_audio(
    path: str | os.PathLike, audio: np.ndarray, rate: int, *, overwrite: bool = True
) -> Path:
    """Write ``audio: [samples]`` or ``[channels, samples]`` as 16-bit WAV/FLAC (or what the
    extension says; AAC for ``.m4a``), atomically (see :func:`open_writer`). Samples are clipped to
    [-1, 1]. Raises :class:`AudioError` when the file cannot be written.
    """
    path = Path(path)
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[None]
    if audio.ndim != 2 or audio.shape[-1] == 0:
        raise AudioError(path, f"nothing to write (audio shape {tuple(audio.shape)})")
    if not np.all(np.isfinite(audio)):
        raise AudioError(path, "refusing to write NaN or infinite samples")
    with open_writer(path, rate, audio.shape[0], overwrite) as writer:
        writer.write(audio)
        return writer.commit()


def find_audio_files(folder: str | os.PathLike) -> list[Path]:
    """All audio files under ``folder`` (recursive, sorted, hidden files skipped)."""
    folder = Path(folder)
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.suffix.lower() in AUDIO_EXTENSIONS
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
