"""Audio tracks of M4A/AAC and video files (mp4, mov, mkv, webm, ...), decoded with PyAV.

PyAV (``pip install 'speechmask[media]'``; its wheels carry ffmpeg) is optional: without it
such a file fails with a one-line error saying what to install, never a silent skip.
:class:`MediaReader` offers the part of ``soundfile.SoundFile`` that reading needs, decoding
block by block (bounded memory for hour-long videos).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import fsync_path, temp_beside
from .errors import first_line

# Extensions read with PyAV (libsndfile reads none of them).
MEDIA_EXTENSIONS = (".m4a", ".aac", ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".wma", ".3gp")


class MediaError(Exception):
    """A media file cannot be decoded; ``str(err)`` is the reason (one line)."""


def have_pyav() -> bool:
    import importlib.util

    return importlib.util.find_spec("av") is not None


class MediaReader:
    """The first audio track of a media file as float32 ``[samples, channels]`` blocks."""

    format = "MEDIA"
    subtype = None  # decoded to float: outputs default to their format's own subtype

    def __init__(self, path: str | os.PathLike):
        if not have_pyav():
            raise MediaError("decoding M4A/AAC and video files needs PyAV: pip install "
                             "'speechmask[media]' (or convert to WAV/FLAC with ffmpeg)")
        import av

        self.path = Path(path)
        try:
            self._container = av.open(str(self.path))
        except (av.error.FFmpegError, OSError, ValueError) as err:
            raise MediaError(f"cannot decode ({first_line(err, 160)})") from None
        streams = self._container.streams.audio
        if not streams:
            self._container.close()
            raise MediaError("holds no audio track")
        self._stream = streams[0]
        ctx = self._stream.codec_context
        self.samplerate = int(ctx.sample_rate or 0)
        self.channels = int(ctx.layout.nb_channels if ctx.layout else ctx.channels)
        if self.samplerate <= 0 or self.channels <= 0:
            self._container.close()
            raise MediaError("audio track has no sample rate or channels")
        seconds = 0.0
        if self._stream.duration is not None and self._stream.time_base is not None:
            seconds = float(self._stream.duration * self._stream.time_base)
        elif self._container.duration is not None:
            seconds = self._container.duration / 1e6
        # An estimate from the container: the decoded length is what counts.
        self.frames = int(round(seconds * self.samplerate))
        self._resampler = av.AudioResampler(format="flt", layout=ctx.layout,
                                            rate=self.samplerate)
        self._decoder = self._container.decode(self._stream)
        self._buffer = np.zeros((0, self.channels), np.float32)
        self._done = False

    def _decode_more(self) -> None:
        import av

        try:
            frame = next(self._decoder)
        except StopIteration:
            self._done = True
            frame = None
        except av.error.FFmpegError as err:
            raise MediaError(f"decoding failed part-way ({first_line(err, 160)})") from None
        for out in self._resampler.resample(frame):
            data = out.to_ndarray().reshape(-1, self.channels).astype(np.float32, copy=False)
            self._buffer = np.concatenate([self._buffer, data])

    def read(self, frames: int, dtype: str = "float32", always_2d: bool = True) -> np.ndarray:
        """Up to ``frames`` samples ``[n, channels]`` float32 (0 rows at the end)."""
        while len(self._buffer) < frames and not self._done:
            self._decode_more()
        out, self._buffer = self._buffer[:frames], self._buffer[frames:]
        return out if always_2d or self.channels > 1 else out[:, 0]

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> MediaReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class AtomicM4aWriter:
    """AAC in an .m4a file, block by block, to a hidden temporary file renamed on
    :meth:`commit` (the interface of :class:`speechmask.audio.AtomicAudioWriter`)."""

    subtype = "AAC"

    def __init__(self, path: Path, rate: int, channels: int, bit_rate: int | None = None):
        if not have_pyav():
            raise MediaError("writing .m4a needs PyAV: pip install 'speechmask[media]' (or "
                             "write .wav/.flac/.ogg/.mp3)")
        import av

        self.path, self.channels, self.frames = Path(path), channels, 0
        self.clipped, self.peak = 0, 0.0
        if channels > 2:
            raise MediaError(f"{channels} channels: .m4a here takes mono or stereo; write "
                             ".wav or .flac")
        fd, self.tmp = temp_beside(self.path)
        os.close(fd)  # PyAV opens the file by name
        try:
            self._container = av.open(str(self.tmp), "w", format="ipod")
            self._stream = self._container.add_stream("aac", rate=rate)
            self._stream.layout = "stereo" if channels == 2 else "mono"
            self._stream.bit_rate = bit_rate or 96_000 * channels
            self._layout = self._stream.layout.name
            self._rate = rate
        except (av.error.FFmpegError, ValueError) as err:
            self.tmp.unlink(missing_ok=True)
            raise MediaError(f"cannot write AAC ({first_line(err, 160)})") from None

    def _mux(self, frame: Any) -> None:
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def write(self, block: np.ndarray) -> None:
        import av

        block = np.clip(np.asarray(block, np.float32), -1.0, 1.0)
        if not block.shape[-1]:
            return
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block), format="fltp",
                                           layout=self._layout)
        frame.sample_rate = self._rate
        self._mux(frame)
        self.frames += block.shape[-1]

    def commit(self) -> Path:
        self._mux(None)
        self._container.close()
        fsync_path(self.tmp)
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        try:
            self._container.close()
        except Exception:  # already closed or broken: the file is deleted anyway
            pass
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> AtomicM4aWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.tmp.exists():
            self.abort()
