"""The bundled corpus: its manifest, splits and files, and reading them as arrays.

``manifest.csv`` lists every file with its split (train/valid/test), kind (speech/noise),
source and duration; speakers and noise types come from the file paths.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .audio import load_mono

SPLITS = ("train", "valid", "test")


class DataError(Exception):
    """A dataset or corpus cannot be used. ``str(err)`` is one line saying what to do."""


def default_corpus_dir() -> Path:
    """Where the bundled corpus lives: ``$SPEECHMASK_CORPUS``, else ``data/corpus`` of the
    source checkout this package was installed from, else ``./data/corpus``."""
    env = os.environ.get("SPEECHMASK_CORPUS")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2] / "data" / "corpus"
    return repo if repo.is_dir() else Path("data/corpus")


def noise_type_of(path: Path) -> str:
    """Noise type from a corpus file name: ESC-10 ``sea_waves_1-123-A`` -> ``sea_waves``;
    Blanket / Speech Commands files are named after their type (``coffee-shop``)."""
    stem = path.stem
    if "-" in stem and stem.split("_")[-1][:1].isdigit():
        return stem.rsplit("_", 1)[0]
    return stem


@dataclass(frozen=True)
class CorpusFile:
    """One file of the corpus manifest."""

    path: Path  # absolute path of the FLAC file
    split: str  # train | valid | test
    kind: str  # speech | noise
    label: str  # speaker (speech) or noise type (noise)
    source: str  # vcc2016 | esc10 | blanket | speechcommands
    seconds: float  # duration from the manifest


class Corpus:
    """The clean-speech + noise corpus described by ``manifest.csv`` in ``root``."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else default_corpus_dir()
        manifest = self.root / "manifest.csv"
        if not manifest.is_file():
            raise DataError(
                f"{self.root}: no corpus here (manifest.csv missing); pass --corpus DIR pointing "
                "at a folder with manifest.csv, speech/ and noise/"
            )
        with open(manifest, newline="") as handle:
            rows = list(csv.DictReader(handle))
        self.files: list[CorpusFile] = []
        for line, row in enumerate(rows, start=2):
            try:
                path = self.root / row["path"]
                # Speech: the manifest's speaker column where it has one (corpus_ext), else the
                # speaker folder (corpus: speech/<split>/<speaker>/<utt>.flac).
                label = ((row.get("speaker") or path.parent.name) if row["kind"] == "speech"
                         else noise_type_of(path))
                self.files.append(CorpusFile(path, row["split"], row["kind"], label,
                                             row["source"], float(row["seconds"])))
            except (KeyError, TypeError, ValueError):
                raise DataError(f"{manifest}:{line}: malformed row; expected columns "
                                "split,kind,path,seconds,source,license") from None
        if not self.files:
            raise DataError(f"{manifest}: manifest lists no files")

    def select(self, split: str, kind: str) -> list[CorpusFile]:
        """Files of one split (train/valid/test) and kind (speech/noise)."""
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
        chosen = [f for f in self.files if f.split == split and f.kind == kind]
        if not chosen:
            raise DataError(f"{self.root}: corpus has no {kind} files in split {split!r}")
        return chosen

    def check_noise_types(self, types: Collection[str], split: str) -> None:
        """Raise DataError unless every noise type in ``types`` has files in ``split``."""
        known = sorted({f.label for f in self.select(split, "noise")})
        unknown = sorted(set(types) - set(known))
        if unknown:
            raise DataError(f"{self.root}: no {split} noise of type {', '.join(unknown)}; "
                            f"the {split} split has: {', '.join(known)}")

    def stats(self) -> list[dict]:
        """Per split and kind: files, hours, and distinct speakers / noise types."""
        out = []
        for split in SPLITS:
            for kind in ("speech", "noise"):
                files = [f for f in self.files if f.split == split and f.kind == kind]
                out.append({
                    "split": split,
                    "kind": kind,
                    "files": len(files),
                    "hours": sum(f.seconds for f in files) / 3600,
                    "labels": len({f.label for f in files}),
                })
        return out


def load_files(files: Sequence[CorpusFile | Path]) -> list[np.ndarray]:
    """Read files as mono 16 kHz float32 arrays (the corpus fits in memory: ~450 MB float32)."""
    return [load_mono(f.path if isinstance(f, CorpusFile) else f) for f in files]
