"""Where the outputs of a run go: the (input, output) pairs of ``speechmask enhance`` and the
rules that keep a written file from replacing an input or an existing file.

Torch-free; the errors are :class:`OutputError` (a ``ValueError``), one line naming the file.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)

# `-o` names a file (not a folder) when it ends in one of these.
FILE_OUTPUT_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".opus", ".aiff", ".aif",
                        ".au", ".m4a", ".aac", ".mp4", ".mov", ".mkv", ".webm", ".caf")
# Input formats whose folder outputs keep their format by default (lossless); others -> .wav.
KEPT_SUFFIXES = (".wav", ".flac", ".aiff", ".aif")


class OutputError(ValueError):
    """An input or output that cannot be used as given (one line, names the path)."""


def refuse_target(target: Path, inputs: Sequence[Path], overwrite: bool) -> None:
    """A model file is written only where nothing is, or with ``overwrite``, and never over an
    input model."""
    if target.exists() and not overwrite:
        raise OutputError(f"{target}: exists; pass --overwrite to replace it")
    if any(src.exists() and src.resolve() == target.resolve() for src in inputs):
        which = "the input model" if len(inputs) == 1 else "an input model"
        raise OutputError(f"{target}: would overwrite {which}; choose another name")


def collect_inputs(inputs: Sequence[str | Path],
                   exclude: Path | None = None) -> list[tuple[Path, Path]]:
    """(file, path relative to its INPUT root) for every audio file named or under a folder;
    files under ``exclude`` (the output folder, when it lies inside an input folder) are left
    out, so a second run does not enhance the first run's outputs."""
    from .audio import find_audio_files

    found: list[tuple[Path, Path]] = []
    skip = exclude.resolve() if exclude is not None else None
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = [f for f in find_audio_files(path)
                     if skip is None or not f.resolve().is_relative_to(skip)]
            if not files:
                raise OutputError(f"{path}: folder holds no audio files (.wav, .flac, .ogg, ...)")
            found += [(f, f.relative_to(path)) for f in files]
        elif path.exists():
            found.append((path, Path(path.name)))
        else:
            raise OutputError(f"{path}: no such file or folder")
    return found


def unique_outputs(jobs: Sequence[tuple[Path, Path]]) -> list[tuple[Path, Path]]:
    """Give outputs that several inputs map to distinct names (a/host.wav and b/host.wav ->
    host-a.wav and host-b.wav; episode.mp3 and episode.wav -> episode-mp3.wav and
    episode-wav.wav; else -2, -3, ...), saying so once each. Names compare case-insensitively
    (one file on macOS and Windows)."""
    def key(path: Path) -> str:
        return str(path.resolve()).lower()

    groups: dict[str, list[int]] = {}
    for i, (_, dst) in enumerate(jobs):
        groups.setdefault(key(dst), []).append(i)
    taken = set(groups)
    out = list(jobs)
    for members in groups.values():
        if len(members) < 2:
            continue
        srcs = [jobs[i][0] for i in members]
        exts = [s.suffix.lower().lstrip(".") for s in srcs]
        parents = [s.resolve().parent.name for s in srcs]
        tags = (exts if len(set(exts)) == len(exts) else
                parents if len(set(parents)) == len(parents) else
                [str(n + 1) for n in range(len(members))])
        taken.discard(key(jobs[members[0]][1]))
        for i, tag in zip(members, tags, strict=True):
            src, dst = jobs[i]
            new, n = dst.with_name(f"{dst.stem}-{tag}{dst.suffix}"), 2
            while key(new) in taken:
                new, n = dst.with_name(f"{dst.stem}-{tag}-{n}{dst.suffix}"), n + 1
            taken.add(key(new))
            log.warning("%s -> %s (another input has the same output name)", src, new)
            out[i] = (src, new)
    return out


def plan_outputs(inputs: Sequence[str | Path], output: str | Path,
                 fmt: str | None = None) -> list[tuple[Path, Path]]:
    """(input, output) pairs of an ``enhance`` run: ``output`` ending in an audio extension is
    one file (format from the extension) for one input file; otherwise a folder, where folder
    inputs keep their tree, outputs take ``fmt`` (default: keep a lossless input's format,
    else WAV) and every output name is unique."""
    out = Path(output)
    is_file = out.suffix.lower() in FILE_OUTPUT_SUFFIXES and not out.is_dir()
    inside = out if out.is_dir() or not is_file else None
    files = collect_inputs(inputs, exclude=inside)
    if is_file:
        if len(files) != 1 or Path(inputs[0]).is_dir():
            what = "a folder" if any(Path(i).is_dir() for i in inputs) else \
                f"{len(files)} inputs"
            raise OutputError(f"-o {out} is one file but the input is {what}; give a folder "
                              f"(-o {out.with_suffix('')}/) for several outputs")
        if fmt and out.suffix.lower().lstrip(".") != fmt:
            raise OutputError(f"-o {out} and --format {fmt} disagree; drop --format (the "
                              "extension of -o sets the format)")
        return [(files[0][0], out)]
    from .media import MEDIA_EXTENSIONS

    jobs = []
    for src, rel in files:
        media = src.suffix.lower() in MEDIA_EXTENSIONS
        ext = "." + fmt if fmt else (
            src.suffix.lower() if src.suffix.lower() in KEPT_SUFFIXES else ".wav")
        jobs.append((src, out / rel.with_suffix(ext)))
        if media and not fmt:
            # WAV, not AAC: AAC's encoder priming would make the output longer than the input
            # and shift it by ~21 ms against the video; --format m4a when size matters more.
            log.info("%s: its audio track is written as %s (WAV; --format m4a for AAC)", src,
                     jobs[-1][1])
    return unique_outputs(jobs)


def refuse_overwriting_inputs(jobs: Sequence[tuple[Path, Path]], residual: bool) -> None:
    """No output (nor, with ``residual``, its ``.residual`` file) may be one of the inputs."""
    from .pipeline import residual_path

    inputs = {s.resolve() for s, _ in jobs}
    for _, dst in jobs:
        for target in (dst, residual_path(dst)) if residual else (dst,):
            if target.resolve() in inputs:
                raise OutputError(f"{target}: output would overwrite an input; choose another -o")
